"""The captioning baseline from before the generative papers: retrieve a caption from the nearest images.

Devlin, Gupta, Girshick, Mitchell, Zitnick 2015, "Exploring nearest neighbor approaches for image
captioning" (arXiv:1505.04467), Sec. 3: find the k training images nearest to the test image in CNN
feature space (cosine similarity), pool their captions, and return the "consensus caption", the
candidate with the highest mean similarity to the other candidates. Similarity here is CIDEr-D
(their best-scoring choice), computed over the candidate pool. It reuses the captioner's own cached
features, so the table shows what a generative model adds over retrieval with the same image encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pycocoevalcap.cider.cider import Cider

from repro.caption_metrics import score_captions

BASELINE = "nearest-neighbour"  # the system suffix of its metrics: test/bleu_4@nearest-neighbour
METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d")


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


def nearest_neighbour_baseline(datamodule, k: int, split: str = "test") -> dict[str, float]:
    """Score the retrieval baseline on ``split``; keeps its captions on the datamodule for the figure."""
    train = datamodule.images["train"]
    queries = datamodule.images[split]
    captions = nearest_neighbour_captions(
        datamodule.pooled_features("train"),
        [[(raw, " ".join(words)) for raw, words in zip(image.captions, image.tokens)] for image in train],
        datamodule.pooled_features(split), k)
    predictions = {image.image_id: caption for image, caption in zip(queries, captions)}
    datamodule.nearest_neighbour_captions = predictions
    scores = score_captions(predictions, {image.image_id: image.captions for image in queries})
    return {f"{split}/{name}@{BASELINE}": scores[name] for name in METRICS if scores.get(name) is not None}
