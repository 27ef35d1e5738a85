"""How a translator's test output is scored: corpus BLEU both ways (tokenized multi-bleu and
sacreBLEU with its signature) and tokenized BLEU per source-length bucket (Sutskever et al. 2014, Fig. 3)."""

from __future__ import annotations

import math

from repro.metrics.translation import multi_bleu, sacrebleu_score
from repro.translation.text import detokenize


def bucket_names(edges: tuple[int, ...]) -> list[tuple[int, float, str]]:
    """(low, high, name) of each source-length bucket: edges (7, 10) -> 1-7, 8-10, 11+."""
    bounds, low = [], 1
    for edge in edges:
        bounds.append((low, edge, f"{low}-{edge}"))
        low = edge + 1
    return bounds + [(low, math.inf, f"{low}+")]


def bleu_names(lowercase: bool) -> tuple[str, str]:
    """The names of tokenized BLEU and sacreBLEU: ``test/bleu``, ``test/sacrebleu`` case-sensitive as the
    paper; ``test/bleu_lc``, ``test/sacrebleu_lc`` when the run lowercases, so no case-insensitive score
    sits in a case-sensitive column."""
    suffix = "_lc" if lowercase else ""
    return f"test/bleu{suffix}", f"test/sacrebleu{suffix}"


def score_translations(items: list, target_language: str, edges: tuple[int, ...], lowercase: bool = False) -> dict:
    """Corpus BLEU both ways, tokenized BLEU per source-length bucket (Fig. 3), and sacrebleu's signature
    of each corpus score; case-insensitive (``case:lc``) when the run lowercases its text."""
    hypotheses = [" ".join(tokens) for tokens, _, _, _ in items]
    references = [reference for _, reference, _, _ in items]
    detokenized = [detokenize(tokens, target_language) for tokens, _, _, _ in items]
    bleu_name, sacrebleu_name = bleu_names(lowercase)
    tokenized = multi_bleu(hypotheses, references, lowercase)
    detokenized_score = sacrebleu_score(detokenized, [text for _, _, text, _ in items], lowercase)
    metrics = {bleu_name: tokenized["bleu"], sacrebleu_name: detokenized_score["bleu"]}
    for low, high, name in bucket_names(tuple(edges)):
        chosen = [i for i, (_, _, _, length) in enumerate(items) if low <= length <= high]
        if chosen:
            metrics[f"{bleu_name}_len_{name}"] = multi_bleu([hypotheses[i] for i in chosen],
                                                            [references[i] for i in chosen], lowercase)["bleu"]
            metrics[f"test/sentences_len_{name}"] = float(len(chosen))
    signatures = {bleu_name: tokenized["signature"], sacrebleu_name: detokenized_score["signature"]}
    return {"metrics": metrics, "detokenized": detokenized, "signatures": signatures}
