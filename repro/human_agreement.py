"""``python -m repro human-agreement flickr8k``: how well people agree, scored by the suite's metrics.

Each test image's caption k is scored against its other captions (leave-one-out, averaged over k),
the "Human" rows of captioning tables. The result is a run record of ``vinyals2014`` (the paper
whose Table 2 reports a human row on Flickr8k), so ``repro table`` puts it beside the published one.
It doubles as a real-data check of the whole metric path.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from datamodules.catalog import folder_checksum, get_dataset, resolve_data_dir
from datamodules.flickr8k_text import SPLIT_FILES, TOKEN_FILE, split_references
from repro.caption_metrics import human_agreement
from repro.errors import UserError
from repro.records import git_state, hardware, library_versions, write_record

METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d")


def run_human_agreement(dataset: str, data_dir: str | None, results: Path, split: str = "test") -> dict:
    if dataset != "flickr8k":
        raise UserError(f"human-agreement {dataset}: only flickr8k is supported so far")
    root, origin = resolve_data_dir(data_dir)
    spec = get_dataset(dataset)
    missing = spec.missing_files(root)
    if missing:
        raise UserError(f"human-agreement {dataset}: {missing[0]} not found (data root from {origin}); "
                        f"run `python -m repro data prepare {dataset}`")
    folder = spec.location(root)
    started = time.time()
    references = split_references(folder, split)
    scores = human_agreement(references)
    finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record = {
        "paper": "vinyals2014",
        "producer": "repro/human_agreement.py",
        "preset": "human-agreement",
        "system": "Human (leave-one-out, this suite's metrics)",
        "dataset": dataset,
        "data_source": "real",
        "dataset_checksum": folder_checksum(folder, [TOKEN_FILE, SPLIT_FILES[split]]),
        "metrics": {f"{split}/{name}": scores[name] for name in METRICS if scores.get(name) is not None},
        "scoring": {key: scores[key] for key in scores if key not in METRICS},
        "config": {"split": split, "protocol": "each caption against the other captions of its image, mean over rounds"},
        "epochs": 0,
        "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "finished_at": finished_at,
        "wall_time_s": round(time.time() - started, 1),
        "git": git_state(),
        "versions": library_versions(),
        "hardware": hardware(),
    }
    path = write_record(record, results / "runs")
    for name, value in record["metrics"].items():
        print(f"{name:>14}  {value:6.2f}")
    if scores.get("meteor") is None:
        print(f"METEOR: {scores.get('meteor_status')}")
    print(f"run record: {path}")
    return record
