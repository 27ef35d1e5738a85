"""Caption metrics exactly as the coco-caption toolkit computes them, through pycocoevalcap.

coco-caption (Chen et al. 2015, "Microsoft COCO Captions: Data Collection and Evaluation Server",
arXiv:1504.00325) lowercases and tokenizes every caption with Stanford's PTBTokenizer, drops
punctuation tokens, then scores with BLEU-1..4 (Papineni et al. 2002; coco-caption's "closest"
reference length), METEOR 1.5 (Denkowski and Lavie 2014), ROUGE-L (Lin 2004, beta 1.2) and CIDEr.
Its ``Cider`` class is the CIDEr-D variant of Vedantam et al. 2015 (arXiv:1411.5726): clipped n-gram
counts, a Gaussian penalty on the length difference (sigma 6), no stemming, times 10. Its author says
so (tylin/coco-caption issue #18) and the code shows it (``cider_scorer.py``: "added clipping",
"added a length based gaussian penalty"). CIDEr-D's document frequencies come from the references
being scored, so it is a corpus metric: one image alone scores 0.

Every score is reported multiplied by 100 (``"scale": "0-100"``), as the papers print them
(BLEU-4 27.7); CIDEr-D's own range is 0-10, so it can exceed 100 on this scale (perfect = 1000).

Without Java the pure-Python ``ptb_tokenize`` reproduces the Java tokenizer as pycocoevalcap calls it
(``-preserveLines -lowerCase``, then its punctuation list): BLEU, ROUGE-L and CIDEr-D are unchanged,
METEOR (a Java program) is reported as unavailable with the reason. SPICE is never computed: it
downloads Stanford CoreNLP models at run time, which an offline machine cannot.
"""

from __future__ import annotations

import shutil
from collections.abc import Hashable

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

from repro.errors import UserError
from repro.metrics.ptb_tokenizer import LINE_BREAKS, ptb_tokenize_lines


def ptb_tokenize(captions: dict[Hashable, list[str]], use_java: bool) -> dict[Hashable, list[str]]:
    """What pycocoevalcap's PTBTokenizer returns: lowercased tokens, punctuation dropped, space-joined."""
    # A line break inside a caption would shift every later caption by a line in the jar's output.
    captions = {key: [LINE_BREAKS.sub(" ", caption) for caption in texts] for key, texts in captions.items()}
    if use_java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        return PTBTokenizer().tokenize({key: [{"caption": c} for c in texts] for key, texts in captions.items()})
    lines = ptb_tokenize_lines([caption for texts in captions.values() for caption in texts])
    joined = iter(" ".join(token for token in line if token not in PUNCTUATIONS) for line in lines)
    return {key: [next(joined) for _ in texts] for key, texts in captions.items()}


def _text(value: object, where: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"{where}: caption is not valid UTF-8 ({error.reason} at byte {error.start})") from None
    if not isinstance(value, str):
        raise UserError(f"{where}: caption must be text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{where}: caption holds undecodable characters (lone surrogates)") from None
    return value


def _checked(predictions: dict, references: dict) -> tuple[dict, dict]:
    for name, ids in (("predictions", predictions.keys() - references.keys()),
                      ("references", references.keys() - predictions.keys())):
        if ids:
            other = "references" if name == "predictions" else "predictions"
            shown = ", ".join(repr(i) for i in sorted(ids, key=repr)[:5])
            raise UserError(f"{len(ids)} id(s) in {name} have no {other}: {shown}")
    checked_references = {}
    for key, texts in references.items():
        if isinstance(texts, (str, bytes)) or not texts:
            raise UserError(f"references[{key!r}]: expected a non-empty list of captions")
        checked_references[key] = [_text(t, f"references[{key!r}][{i}]") for i, t in enumerate(texts)]
        for i, text in enumerate(checked_references[key]):
            if not text.strip():
                raise UserError(f"references[{key!r}][{i}]: reference caption is empty")
    # In the references' order, so that float sums do not depend on the order predictions came in.
    return {key: _text(predictions[key], f"predictions[{key!r}]") for key in references}, checked_references


def _meteor_or_reason(use_java: bool):
    if not use_java:
        return None, ("unavailable: METEOR 1.5 is a Java program and Java is not used "
                      "(no `java` on PATH, or use_java=False)")
    try:
        from pycocoevalcap.meteor.meteor import Meteor

        return Meteor(), "computed"
    except Exception as error:  # noqa: BLE001 - any failure to start the JVM is reported, not fatal
        return None, f"unavailable: METEOR failed to start ({type(error).__name__}: {error})"


def _score_tokenized(references: dict, predictions: dict, meteor) -> dict:
    """coco-caption's scorers on tokenized text; ``predictions`` maps id -> [one caption]."""
    bleu, _ = Bleu(4).compute_score(references, predictions, verbose=0)
    scores = {f"bleu_{n + 1}": 100 * float(bleu[n]) for n in range(4)}
    scores["meteor"] = 100 * float(meteor.compute_score(references, predictions)[0]) if meteor else None
    scores["rouge_l"] = 100 * float(Rouge().compute_score(references, predictions)[0])
    scores["cider_d"] = 100 * float(Cider().compute_score(references, predictions)[0])
    return scores


def _use_java(use_java: bool | None) -> bool:
    available = shutil.which("java") is not None
    if use_java and not available:
        raise UserError("use_java=True but no `java` is on PATH (install Java 8+, or pass use_java=False)")
    return available if use_java is None else use_java


def _result(scores: dict, use_java: bool, meteor_status: str, **counts) -> dict:
    return {**scores, "spice": None, "scale": "0-100", "tokenizer": "ptb-java" if use_java else "ptb-python",
            "meteor_status": meteor_status,
            "spice_status": "not computed: SPICE downloads Stanford CoreNLP models at run time", **counts}


def score_captions(predictions: dict, references: dict, use_java: bool | None = None) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of one predicted caption per id, as coco-caption scores them.

    ``predictions``: id -> caption; ``references``: id -> non-empty list of captions; the two must
    have the same ids. ``use_java``: None = use Java if ``java`` is on PATH. An empty prediction
    ("" or only punctuation) is scored as it is: it matches nothing, so it scores 0 on every
    per-caption metric and still counts in BLEU's brevity penalty; ``empty_predictions`` counts
    them. Raises UserError naming the id for mismatched ids, an empty reference list or caption,
    and captions that are not text.
    """
    predictions, references = _checked(predictions, references)
    if not predictions:
        raise UserError("no captions to score: predictions and references are empty")
    use_java = _use_java(use_java)
    tokenized_references = ptb_tokenize(references, use_java)
    tokenized_predictions = ptb_tokenize({key: [caption] for key, caption in predictions.items()}, use_java)
    meteor, meteor_status = _meteor_or_reason(use_java)
    scores = _score_tokenized(tokenized_references, tokenized_predictions, meteor)
    empty = sum(not caption[0].strip() for caption in tokenized_predictions.values())
    return _result(scores, use_java, meteor_status, images=len(predictions), empty_predictions=empty)


def human_agreement(references: dict, use_java: bool | None = None) -> dict:
    """How well people agree with each other: each image's caption k scored against its other captions.

    Round k holds out caption k of every image as the "prediction" (k = 0 .. fewest captions - 1),
    and the result is the mean over rounds, e.g. one of five Flickr8k captions against the other four.
    This is the "human" row of captioning tables. Vinyals et al. 2015 report a Flickr8k BLEU-1 of 70
    for people; this protocol gives 64.7 on the Flickr8k test split (BLEU-4 21.4, CIDEr-D 82.0).
    """
    _, references = _checked(dict.fromkeys(references, ""), references)
    rounds = min((len(texts) for texts in references.values()), default=0)
    if rounds < 2:
        raise UserError("human agreement needs at least 2 reference captions for every image")
    use_java = _use_java(use_java)
    tokenized = ptb_tokenize(references, use_java)
    meteor, meteor_status = _meteor_or_reason(use_java)
    per_round = [_score_tokenized({key: texts[:k] + texts[k + 1:] for key, texts in tokenized.items()},
                                  {key: [texts[k]] for key, texts in tokenized.items()}, meteor)
                 for k in range(rounds)]
    scores = {name: None if per_round[0][name] is None else sum(r[name] for r in per_round) / rounds
              for name in per_round[0]}
    return _result(scores, use_java, meteor_status, images=len(references), rounds=rounds)
