"""``python -m repro rescore RECORD``: every metric a run's outputs determine, recomputed from the
predictions file kept beside its record, and compared with the record.

A run record ``NAME.json`` has ``NAME.predictions.json.gz`` beside it: the test outputs (each test
medium's caption, of the model and of each baseline; each test sentence's translation and source
length) and the references they were scored against. References that come with a real dataset are not
copied into the project: the file keeps their SHA-256, and rescoring reads them from the dataset (so
it needs ``--data-dir``) and refuses if they differ from the run's.

A language model's file keeps each test sentence's log-probability (static and dynamic evaluation), from
which the per-word perplexities follow with no data at all.

The scorers are the suite's own, which are coco-caption's (pycocoevalcap's BLEU, METEOR, ROUGE-L and
CIDEr-D with its PTB tokenizer) and sacreBLEU's; metrics are logged as float32 during the test, so a
re-scored caption or BLEU score must equal the record's at float32 precision; a perplexity within a
relative 1e-4 (``PERPLEXITY_TOLERANCE`` says why). What the outputs do not determine (a
perplexity needs the model) is not re-scored, and the report says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from datamodules.catalog import get_dataset, resolve_data_dir
from repro.app.records import predictions_path, read_predictions, references_digest
from repro.captioning.module import CAPTION_METRICS
from repro.config import config_from_dict
from repro.errors import UserError
from repro.metrics.captions import score_captions
from repro.registry import get_paper
from repro.translation.scoring import score_translations


def _references(record: dict, predictions: dict, data_dir: str | None) -> dict:
    if predictions["kind"] == "sentence_log_probs":
        return {}  # a perplexity needs no reference: the log-probabilities are of the test text itself
    if "references" in predictions:
        return predictions["references"]
    entry = get_paper(record["paper"])
    config = config_from_dict(entry.config_class, record["config"])
    data_root, _ = resolve_data_dir(data_dir)
    spec = get_dataset(record["dataset"])
    if not spec.is_present(data_root):
        raise UserError(f"--data-dir {data_root}: {record['dataset']} is not there; its references are needed to "
                        f"re-score a real-data record")
    references = spec.make_datamodule(config, data_root).references("test")
    references = {key: references[key] for key in predictions["outputs"] if key in references}
    if references_digest(references) != predictions["references_digest"]:
        raise UserError(f"{data_root / spec.folder}: its test references differ from those the run was scored "
                        f"against (another version or subset of {record['dataset']})")
    return references


def rescored_metrics(record: dict, predictions: dict, data_dir: str | None = None) -> dict[str, float]:
    references = _references(record, predictions, data_dir)
    if predictions["kind"] == "captions":
        systems = {"": predictions["outputs"], **{f"@{name}": outputs
                                                  for name, outputs in predictions.get("baselines", {}).items()}}
        metrics = {}
        for suffix, outputs in systems.items():
            scores = score_captions(outputs, {key: references[key] for key in outputs})
            metrics.update({f"test/{name}{suffix}": scores[name] for name in CAPTION_METRICS
                            if scores.get(name) is not None})
        return metrics
    if predictions["kind"] == "translations":
        config = record["config"]
        items = [(output["tokens"], references[key][0], references[key][1], output["source_length"])
                 for key, output in sorted(predictions["outputs"].items(), key=lambda item: int(item[0]))]
        return score_translations(items, config["target_language"], tuple(config["length_bucket_edges"]),
                                  config.get("lowercase", False))["metrics"]
    if predictions["kind"] == "sentence_log_probs":  # per-word perplexity, <eos> counted as a word
        # a baseline's outputs are keyed by its metrics too (e.g. KN5, and the RNN interpolated with it)
        outputs = {**predictions["outputs"], **{key: scores for baseline in predictions.get("baselines", {}).values()
                                                for key, scores in baseline.items()}}
        return {key: math.exp(-math.fsum(scores["log_prob"]) / sum(scores["words"]))
                for key, scores in outputs.items() if scores["words"]}
    raise UserError(f"predictions of kind {predictions['kind']!r} cannot be re-scored")


# A perplexity logged during the test sums float32 log-probabilities batch by batch (the accumulator
# stays float32 so that every accelerator can hold it); the file's per-sentence sums are float64, so the
# two differ by that rounding (measured: 6e-7 relative over 6,350 words). 1e-4 is below the tables'
# one decimal at any perplexity under 500, and far below what a changed word score does.
PERPLEXITY_TOLERANCE = 1e-4


def agrees(kind: str, recorded: float, rescored: float) -> bool:
    if kind == "sentence_log_probs":
        return math.isclose(recorded, rescored, rel_tol=PERPLEXITY_TOLERANCE)
    return bool(np.float32(recorded) == np.float32(rescored))  # caption and translation scores: float32 as logged


def rescore(record_path: Path, data_dir: str | None = None) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """({metric: (recorded, re-scored)}, [metrics that differ]) of one record; UserError when it has no
    predictions file."""
    record = json.loads(Path(record_path).read_text(encoding="utf-8"))
    predictions = read_predictions(record_path)
    if predictions is None:
        raise UserError(f"{record_path}: no predictions file beside it ({predictions_path(record_path).name}); "
                        f"made before records kept their outputs: re-run its command to make one")
    rescored = rescored_metrics(record, predictions, data_dir)
    compared = {key: (record["metrics"][key], value) for key, value in rescored.items()
                if record["metrics"].get(key) is not None}
    differing = [key for key, (then, now) in compared.items() if not agrees(predictions["kind"], then, now)]
    return compared, differing


def print_rescore(record_path: Path, data_dir: str | None = None) -> bool:
    compared, differing = rescore(record_path, data_dir)
    record = json.loads(Path(record_path).read_text(encoding="utf-8"))
    print(f"{'metric':<40} {'recorded':>12} {'re-scored':>12}")
    for key, (then, now) in sorted(compared.items()):
        print(f"{key:<40} {then:>12.6g} {now:>12.6g}{'  <- differs' if key in differing else ''}")
    left = sorted(key for key in record["metrics"] if key not in compared)
    if left:
        print(f"not determined by the outputs (not re-scored): {', '.join(left)}")
    kind = read_predictions(record_path)["kind"]
    criterion = f"within a relative {PERPLEXITY_TOLERANCE:g}" if kind == "sentence_log_probs" else "at float32 precision"
    print(f"rescore {Path(record_path).name}: {len(compared)} metrics, "
          + (f"{len(differing)} DIFFER" if differing else f"all equal {criterion}"))
    return not differing
