"""``python -m repro human-agreement DATASET``: how well people agree, scored by the suite's metrics.

Each test medium's caption k is scored against its other captions (leave-one-out, averaged over k),
the "Human" rows of captioning tables. Any registered caption dataset works (its captions are read
through the dataset registry; the images or videos need not be present). The result is a run record
of the paper named by ``--paper`` (default: the first built captioner that trains on the dataset),
so ``repro table`` puts it beside that paper's published rows. It doubles as a real-data check of
the whole metric path.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from pathlib import Path

from datamodules.captioning.captions import caption_dataset_spec
from datamodules.catalog import resolve_data_dir
from repro.app.records import git_state, hardware, library_versions, write_record
from repro.captioning.module import CAPTION_METRICS
from repro.errors import UserError
from repro.metrics.captions import human_agreement
from repro.registry import all_papers, get_paper


def paper_for(dataset: str, paper: str | None) -> str:
    if paper is not None:
        entry = get_paper(paper)
        if dataset not in entry.datasets:
            raise UserError(f"--paper {paper}: it does not train on {dataset} (its datasets: {', '.join(entry.datasets)})")
        return paper
    for entry in all_papers():
        if entry.built and dataset in entry.datasets:
            return entry.name
    raise UserError(f"human-agreement {dataset}: no built paper trains on {dataset}; name one with --paper")


def run_human_agreement(dataset: str, data_dir: str | None, results: Path, split: str = "test",
                        paper: str | None = None) -> dict:
    spec = caption_dataset_spec(dataset)
    paper = paper_for(dataset, paper)
    root, origin = resolve_data_dir(data_dir)
    missing = spec.missing_files(root)
    if missing:
        raise UserError(f"human-agreement {dataset}: {missing[0]} not found (data root from {origin}); "
                        f"run `python -m repro data prepare {dataset}`")
    started = time.time()
    media = [item for item in spec.read_captions(root) if item.split == split]
    if not media:
        raise UserError(f"human-agreement {dataset}: no {split} split (splits are train, val and test)")
    references = {item.image_id: item.captions for item in media}
    scores = human_agreement(references)
    digest = hashlib.md5("".join(f"{key}\t{'|'.join(texts)}\n" for key, texts in sorted(references.items())).encode())
    record = {
        "paper": paper,
        "producer": "repro/app/human_agreement.py",
        "preset": "human-agreement",
        "system": "Human (leave-one-out, this suite's metrics)",
        "dataset": dataset,
        "data_source": "embedded sample" if spec.embedded else "real",
        "dataset_checksum": digest.hexdigest(),
        "metrics": {f"{split}/{name}": scores[name] for name in CAPTION_METRICS if scores.get(name) is not None},
        "scoring": {key: scores[key] for key in scores if key not in CAPTION_METRICS},
        "config": {"split": split, "protocol": "each caption against the other captions of its medium, mean over rounds"},
        "epochs": 0,
        "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.time() - started, 1),
        "command": f"python -m repro human-agreement {dataset} --split {split} --paper {paper}",
        "git": git_state(),
        "versions": library_versions(),
        "hardware": hardware(),
    }
    path = write_record(record, results / "runs")
    print(f"{len(references)} {split} media of {dataset}, {scores['rounds']} rounds (recorded as {paper})")
    for name, value in record["metrics"].items():
        print(f"{name:>14}  {value:6.2f}")
    if scores.get("meteor") is None:
        print(f"METEOR: {scores.get('meteor_status')}")
    print(f"run record: {path}")
    return record
