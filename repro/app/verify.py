"""``python -m repro verify RECORD [--steps N]``: does HEAD still train the way the record's run did?

A record keeps the training losses of its run's first steps (``first_losses``). This re-runs those steps
at HEAD, from the record's own command (its preset, overrides and seed) on the data it names, and
compares the losses:

- **bit for bit** where the environment is the record's: the same CPU model (and GPUs), thread count and
  torch version; a float32 loss is exact in JSON, so equal means equal;
- **within a relative 1e-3** elsewhere, because another CPU or GPU, thread count or library version adds
  floating-point numbers in another order, and those rounding differences grow over the steps; a
  change of code or config moves the losses far more than that from the first step on.

Nothing is written: the replay trains in a temporary folder, removed at the end, and no record is made.
Exit code 0 when the losses agree, 1 when they do not, 2 on bad input.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import torch

from repro.app.arguments import request_of_command
from repro.app.records import hardware, library_versions
from repro.app.run import run
from repro.errors import UserError
from repro.training.trainer import TrainerOptions

RELATIVE_TOLERANCE = 1e-3


def read_record(path: Path) -> dict:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable run record ({error})") from None
    if not isinstance(record, dict) or "paper" not in record:
        raise UserError(f"{path}: not a run record (no paper)")
    return record


def same_environment(record: dict) -> tuple[bool, str]:
    """(bit-for-bit expected?, why not when not)."""
    then_hw, now_hw = record.get("hardware") or {}, hardware()
    then_threads = (record.get("determinism") or {}).get("threads")
    differences = []
    if then_hw.get("cpu") != now_hw.get("cpu") or (then_hw.get("gpus") or []) != now_hw.get("gpus"):
        differences.append(f"hardware {then_hw.get('cpu')} {then_hw.get('gpus') or ''} -> {now_hw.get('cpu')} "
                           f"{now_hw.get('gpus') or ''}".replace("  ", " "))
    if then_threads != torch.get_num_threads():
        differences.append(f"threads {then_threads} -> {torch.get_num_threads()}")
    then_torch = (record.get("versions") or {}).get("torch")
    if then_torch != library_versions().get("torch"):
        differences.append(f"torch {then_torch} -> {library_versions().get('torch')}")
    return not differences, "; ".join(differences)


def verify(record_path: Path, steps: int | None = None, data_dir: str | None = None) -> bool:
    record = read_record(record_path)
    recorded = record.get("first_losses")
    if not recorded:
        raise UserError(f"{record_path}: the record keeps no first training losses (made before records did, or "
                        f"resumed); re-run its command to make one that can be verified")
    if not str(record.get("command", "")).startswith("python -m repro run"):
        raise UserError(f"{record_path}: not made by `python -m repro run` (nothing to replay)")
    steps = len(recorded) if steps is None else steps
    if steps > len(recorded):
        raise UserError(f"--steps {steps}: the record keeps {len(recorded)} steps")
    request = request_of_command(record["command"])
    recorded_root = request.data_dir
    if data_dir is None and recorded_root == "DATA_ROOT":
        recorded_root = None  # $REPRO_DATA or the default, as on the machine that ran it
    exact, why = same_environment(record)
    with tempfile.TemporaryDirectory(prefix="repro-verify-") as scratch:
        request = dataclasses.replace(
            request, data=record["dataset"], data_dir=data_dir or recorded_root, resume=None, out=str(Path(scratch) / "out"),
            results=str(Path(scratch) / "results"), print_config=False,
            trainer=dataclasses.replace(request.trainer, progress_bar=False, wandb=False) if isinstance(
                request.trainer, TrainerOptions) else request.trainer)
        now = run(request, replay_steps=steps)
    print(f"{'step':>4}  {'recorded':>14}  {'at HEAD':>14}  difference")
    agree = True
    for step, (then, value) in enumerate(zip(recorded[:steps], now), start=1):
        same = then == value if exact else math.isclose(then, value, rel_tol=RELATIVE_TOLERANCE)
        agree &= same
        print(f"{step:>4}  {then:>14.8g}  {value:>14.8g}  {value - then:+.3g}{'' if same else '  <- differs'}")
    if len(now) < steps:
        agree = False
        print(f"the replay made {len(now)} steps, the record {steps}")
    criterion = "bit for bit (same CPU, threads and torch)" if exact else \
        f"within a relative {RELATIVE_TOLERANCE:g} (the environment differs: {why})"
    print(f"verify {Path(record_path).name}: {steps} steps {'agree' if agree else 'DIFFER'}, {criterion}")
    return agree
