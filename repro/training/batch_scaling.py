"""What stays fixed when a run moves to more devices or nodes: each paper's config says.

A config class states two things (class attributes, not config fields, so ``--set`` cannot change
them and they never enter a checkpoint's config):

- ``batch_size_scope``: ``"per-process"`` (Lightning's usual meaning: each process takes
  ``batch_size`` examples, so the effective batch grows with the number of processes) or ``"global"``
  (``batch_size`` is the whole step's batch, split over the processes, so the effective batch and the
  result do not depend on the number of processes; the datamodule does the split).
- ``world_size_rule``: one sentence saying what that means for the learning rate, and why.

The run record stores both, the world size, and the effective batch size, which is
``per-process batch x world size x accumulate_grad_batches``.
"""

from __future__ import annotations

from typing import Any

from repro.errors import UserError

PER_PROCESS = "per-process"
GLOBAL = "global"


def batch_size_scope(config: Any) -> str:
    scope = getattr(type(config), "batch_size_scope", PER_PROCESS)
    if scope not in (PER_PROCESS, GLOBAL):
        raise ValueError(f"{type(config).__name__}.batch_size_scope must be {PER_PROCESS!r} or {GLOBAL!r}, "
                         f"not {scope!r}")
    return scope


def per_process_batch_size(config: Any, world_size: int) -> int:
    """Examples (or streams) each process takes per step; a global batch must divide evenly."""
    if batch_size_scope(config) == PER_PROCESS:
        return config.batch_size
    if config.batch_size % world_size:
        raise UserError(f"--set batch_size={config.batch_size}: this paper's batch_size is the whole run's batch and "
                        f"must divide evenly over the {world_size} processes (--devices x --nodes)")
    return config.batch_size // world_size


def scaling_record(config: Any, world_size: int) -> dict[str, Any]:
    """The run record's account of the world size (see the module docstring)."""
    per_process = per_process_batch_size(config, world_size)
    return {
        "world_size": world_size,
        "batch_size_scope": batch_size_scope(config),
        "per_process_batch_size": per_process,
        "accumulate_grad_batches": config.accumulate_grad_batches,
        "effective_batch_size": per_process * world_size * config.accumulate_grad_batches,
        "world_size_rule": getattr(type(config), "world_size_rule", "not stated"),
    }
