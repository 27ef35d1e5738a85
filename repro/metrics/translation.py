"""Corpus BLEU in the two conventions papers use, both through sacrebleu (perplexity: ``repro.metrics.perplexity``).

BLEU is Papineni et al. 2002's corpus score: the geometric mean of clipped 1..4-gram precisions
times a brevity penalty, summed over the whole test set (never an average of sentence scores).

- ``multi_bleu``: Moses' multi-bleu.perl, which Sutskever et al. 2014 report: the text is scored as
  it is given (already tokenized, no detokenization, case-sensitive), reference length = the closest
  one (the shorter on a tie), and no smoothing (a zero n-gram precision gives BLEU 0).
- ``sacrebleu_score``: sacrebleu's standard BLEU on detokenized text (13a tokenization, exponential
  smoothing), the number comparable across papers since Post 2018.

Both are case-sensitive unless ``lowercase=True`` (multi-bleu.perl's ``-lc``, sacrebleu's ``-lc``):
then hypotheses and references are lowercased before counting n-grams, and the signature says
``case:lc`` instead of ``case:mixed``. A system trained on lowercased text must be scored so, and its
number reported as case-insensitive BLEU: it is not comparable with a case-sensitive score.

Every result carries sacrebleu's signature string and says its scale: 0-100, as papers print BLEU.
"""

from __future__ import annotations

from sacrebleu.metrics import BLEU

from repro.errors import UserError


def _reference_streams(hypotheses: list, references: list) -> list[list[str | None]]:
    """sacrebleu wants one stream per reference slot; we take a list of references per hypothesis."""
    if not hypotheses:
        raise UserError("no hypotheses to score: the corpus is empty")
    if len(references) != len(hypotheses):
        raise UserError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must align")
    for index, hypothesis in enumerate(hypotheses):
        if not isinstance(hypothesis, str):
            raise UserError(f"hypothesis {index}: expected a string, got {type(hypothesis).__name__}")
    per_hypothesis = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    for index, refs in enumerate(per_hypothesis):
        if not refs or not all(isinstance(ref, str) for ref in refs):
            raise UserError(f"references of hypothesis {index}: expected a string or a non-empty list of strings")
    slots = max(len(refs) for refs in per_hypothesis)
    # A hypothesis with fewer references gets None in the missing slots (sacrebleu's "nrefs:var").
    return [[refs[slot] if slot < len(refs) else None for refs in per_hypothesis] for slot in range(slots)]


def _score(metric: BLEU, hypotheses: list[str], references: list) -> dict:
    score = metric.corpus_score(hypotheses, _reference_streams(hypotheses, references))
    return {"bleu": score.score, "signature": f"BLEU|{metric.get_signature()}", "scale": "0-100",
            "precisions": score.precisions, "brevity_penalty": score.bp,
            "hypothesis_length": score.sys_len, "reference_length": score.ref_len}


def multi_bleu(hypotheses_tokenized: list[str], references_tokenized: list, lowercase: bool = False) -> dict:
    """multi-bleu.perl BLEU (``-lc`` when ``lowercase``) of space-tokenized text: ``references_tokenized[i]``
    is a string or a list of them."""
    # force: the input is tokenized on purpose
    metric = BLEU(tokenize="none", smooth_method="none", force=True, lowercase=lowercase)
    return _score(metric, hypotheses_tokenized, references_tokenized)


def sacrebleu_score(hypotheses_detokenized: list[str], references_detokenized: list, lowercase: bool = False) -> dict:
    """sacrebleu's default BLEU (tok:13a, smooth:exp; case:lc when ``lowercase``) of detokenized text;
    references as in ``multi_bleu``."""
    return _score(BLEU(lowercase=lowercase), hypotheses_detokenized, references_detokenized)
