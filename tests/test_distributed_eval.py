"""Two CPU processes (gloo) score exactly as one: each example once, despite DistributedSampler's padding."""

from __future__ import annotations

import datetime
import json
import random
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from repro.errors import UserError
from repro.metrics.captions import score_captions
from repro.metrics.translation import multi_bleu
from repro.training.distributed import gather_for_scoring, score_once

WORDS = "a the dog cat man woman runs sits on in grass water red blue small big".split()


def synthetic_test_set(images: int = 11) -> tuple[dict[int, list[str]], dict[int, str]]:
    """Images with three reference captions each, and a "decoded" caption that overlaps them."""
    rng = random.Random(0)
    references = {i: [" ".join(rng.choices(WORDS, k=rng.randint(4, 9))) for _ in range(3)] for i in range(images)}
    predictions = {i: " ".join(refs[0].split()[:-1] + [rng.choice(WORDS)]) for i, refs in references.items()}
    return references, predictions


def corpus_scores(predictions: dict[int, str], references: dict[int, list[str]]) -> dict:
    captions = score_captions(predictions, references, use_java=False)
    ids = sorted(predictions)
    bleu = multi_bleu([predictions[i] for i in ids], [references[i] for i in ids])
    return {"captions": captions, "bleu": bleu["bleu"]}


def evaluate_on_rank(rank: int, world_size: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))  # a hang fails the test instead
    try:
        references, predictions = synthetic_test_set()
        ids = list(references)
        # 11 examples over 2 processes: the sampler pads rank 1 with a copy of example 0.
        local_ids = [ids[i] for i in DistributedSampler(ids, num_replicas=world_size, rank=rank, shuffle=False)]
        merged = gather_for_scoring([predictions[i] for i in local_ids], local_ids)
        scores = score_once(corpus_scores, dict(merged), references)
        with open(f"{out}/rank{rank}.json", "w") as file:
            json.dump({"local": local_ids, "merged_ids": [i for i, _ in merged], "scores": scores}, file)
        with pytest.raises(UserError, match="on rank 0"):  # an error on rank 0 reaches every rank
            score_once(_fail)
    finally:
        dist.destroy_process_group()


def _fail():
    raise UserError("scoring failed on rank 0")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_score_exactly_like_one(tmp_path):
    mp.spawn(evaluate_on_rank, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    references, predictions = synthetic_test_set()
    expected = corpus_scores(predictions, references)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert sum(len(r["local"]) for r in ranks) == 12  # one padded duplicate ...
    for result in ranks:
        assert result["merged_ids"] == sorted(references)  # ... counted once, on every rank
        assert result["scores"] == expected  # bit for bit


def test_without_torch_distributed_it_is_the_identity():
    merged = gather_for_scoring(["b", "a", "b"], [2, 1, 2])
    assert merged == [(1, "a"), (2, "b")]
    assert score_once(lambda x, y: x + y, 2, 3) == 5
