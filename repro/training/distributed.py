"""Corpus scores under multi-process evaluation: gather every prediction once, score on one rank.

Corpus metrics (BLEU, CIDEr-D, perplexity) cannot be averaged across processes: each process holds
a slice of the test set, and CIDEr-D even takes its document frequencies from the whole set. So
every process gathers all predictions, and one process scores them. ``DistributedSampler`` pads
the last batches by repeating examples so that every process gets as many; those copies are
dropped by example id so that each example counts exactly once.

Both functions work unchanged without ``torch.distributed`` (one process).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Hashable
from typing import Any

import torch.distributed as dist


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_for_scoring(local_items: list, local_ids: list[Hashable]) -> list[tuple[Hashable, Any]]:
    """All processes' ``(id, item)`` pairs, each id once, sorted by id, returned on every process.

    A padded duplicate keeps the first copy seen (lowest rank); decoding is deterministic, so the
    copies are equal. The order does not depend on the number of processes, so float sums over it
    give the same bits as a one-process run.
    """
    if len(local_items) != len(local_ids):
        raise ValueError(f"{len(local_items)} items but {len(local_ids)} ids: they must align")
    per_rank = [list(zip(local_ids, local_items))]
    if _world_size() > 1:
        per_rank = [None] * _world_size()
        dist.all_gather_object(per_rank, list(zip(local_ids, local_items)))
    merged = {}
    for pairs in per_rank:
        for example_id, item in pairs:
            merged.setdefault(example_id, item)
    try:
        return sorted(merged.items(), key=lambda pair: pair[0])
    except TypeError:  # ids that do not sort: keep first-seen order
        return list(merged.items())


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
        return True
    except Exception:  # noqa: BLE001
        return False


def score_once(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` computed on rank 0 only, its result (or its exception) broadcast to every rank."""
    if _world_size() == 1:
        return fn(*args)
    payload = [None]
    if dist.get_rank() == 0:
        try:
            payload = [("result", fn(*args))]
        except Exception as error:  # noqa: BLE001 - re-raised on every rank, so none waits forever
            payload = [("error", error if _picklable(error) else RuntimeError(f"{type(error).__name__}: {error}"))]
    dist.broadcast_object_list(payload, src=0)
    kind, value = payload[0]
    if kind == "error":
        raise value
    return value
