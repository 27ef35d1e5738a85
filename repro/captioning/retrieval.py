"""The captioning baseline from before the generative papers: retrieve a caption from the nearest images.

Devlin, Gupta, Girshick, Mitchell, Zitnick 2015, "Exploring nearest neighbor approaches for image
captioning" (arXiv:1505.04467), Sec. 3: find the k training images nearest to the test image in CNN
feature space (cosine similarity), pool their captions, and return the "consensus caption", the
candidate with the highest mean similarity to the other candidates. Similarity here is CIDEr-D
(their best-scoring choice), computed over the candidate pool. It reuses the captioner's own cached
features (the pooled vectors of ``repro.captioning.module.EvaluationSet``; a video's are its mean-pooled frames),
so the table shows what a generative model adds over retrieval with the same encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pycocoevalcap.cider.cider import Cider

from repro.captioning.module import CAPTION_METRICS, EvaluationSet
from repro.metrics.captions import score_captions
from repro.registry import BaselineResult

BASELINE = "nearest-neighbour"  # the system suffix of its metrics: test/bleu_4@nearest-neighbour
METRICS = CAPTION_METRICS


def consensus_caption(candidates: list[str]) -> int:
    """Index of the candidate (space-separated words) most similar, by CIDEr-D, to all the others."""
    if len(candidates) < 2:
        return 0
    references = {j: candidates[:j] + candidates[j + 1:] for j in range(len(candidates))}
    _, per_candidate = Cider().compute_score(references, {j: [c] for j, c in enumerate(candidates)})
    return int(max(range(len(candidates)), key=lambda j: (per_candidate[j], -j)))


def nearest_neighbour_captions(train_features: torch.Tensor, train_captions: list[list[tuple[str, str]]],
                               query_features: torch.Tensor, k: int) -> list[str]:
    """For each query vector, the consensus caption of its k nearest training images.

    ``train_captions[i]`` holds (raw caption, preprocessed words) pairs of training image i; the raw
    text of the chosen candidate is returned, so it is scored exactly like a generated caption.
    """
    k = min(k, train_features.shape[0])
    similarity = F.normalize(query_features.float(), dim=1) @ F.normalize(train_features.float(), dim=1).T
    neighbours = similarity.topk(k, dim=1).indices.tolist()
    chosen = []
    for images in neighbours:
        pool = [pair for image in images for pair in train_captions[image]]
        chosen.append(pool[consensus_caption([words for _, words in pool])][0])
    return chosen


def nearest_neighbour_baseline(train: EvaluationSet, test: EvaluationSet, k: int) -> BaselineResult:
    """Score the retrieval baseline on ``test`` with training images ``train``; returns its captions too."""
    captions = nearest_neighbour_captions(
        train.pooled, [[(raw, " ".join(words)) for raw, words in zip(references, tokens)]
                       for references, tokens in zip(train.references, train.tokens)], test.pooled, k)
    predictions = dict(zip(test.ids, captions))
    scores = score_captions(predictions, dict(zip(test.ids, test.references)))
    metrics = {f"{test.split}/{name}@{BASELINE}": scores[name] for name in METRICS if scores.get(name) is not None}
    return BaselineResult(BASELINE, metrics, predictions)


def retrieval_baseline(config, datamodule) -> BaselineResult:
    """Nearest-neighbour retrieval (Devlin et al. 2015) on the same features, scored with the same metrics."""
    return nearest_neighbour_baseline(datamodule.evaluation_set("train"), datamodule.evaluation_set("test"),
                                      config.nearest_neighbours)
