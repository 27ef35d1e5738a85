"""Run records: one JSON per finished run, written atomically at the very end.

A record holds everything needed to trust and regenerate a number: metrics, the fully resolved
config, the dataset and its checksum, the git commit, library versions, hardware, wall time and
epochs. A failed or interrupted run writes none, so ``results/`` only ever holds finished runs.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import platform
import re
import subprocess
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from repro.errors import UserError
from repro.files import write_atomic
from repro.training.hardware import cpu_model

RECORD_SCHEMA = 1
LIBRARIES = ("torch", "torchvision", "lightning", "torchmetrics", "numpy", "pycocoevalcap", "sacrebleu")


def source_root() -> Path:
    return Path(__file__).resolve().parents[2]


def git_state() -> dict[str, Any]:
    """The commit the suite runs from, and whether the tree differs from it.

    ``dirty`` counts every change a run could have picked up: modified or staged tracked files and
    untracked files that git does not ignore (a new paper file that was never committed is exactly
    the code a record must not claim a commit for). Ignored files (outputs, caches) don't count, nor
    does ``results/``: records and tables are what runs produce, not code that produces them.
    """
    source = source_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=source,
                                 capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
        changes = [line for line in changes if not line[3:].strip('"').startswith("results/")]
        return {"commit": commit, "dirty": bool(changes),
                "changed_files": sorted(line[3:] for line in changes)[:20]}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def tested_versions(constraints: Path | None = None) -> dict[str, str]:
    """The versions this project tests with, from the exact pins (``name==version``) in the checkout's
    ``constraints.txt``; empty where there is none (an installed wheel carries no constraints file)."""
    path = constraints or source_root() / "constraints.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        name, separator, version = line.partition("==")
        if separator and name.strip() and version.strip():
            pins[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.strip()
    return pins


def hardware(trainer=None) -> dict[str, Any]:
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    info = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpus": gpus, "hostname": platform.node()}
    if trainer is not None:
        info.update({"accelerator": type(trainer.accelerator).__name__, "devices_per_node": trainer.num_devices,
                     "nodes": trainer.num_nodes, "world_size": trainer.world_size})
    return info


def determinism(trainer=None, config=None) -> dict[str, Any]:
    """What else a run's numbers depend on, beside its seed, config, data and code: the same seed on the
    same machine (CPU, thread count, library versions) gives the same numbers bit for bit; elsewhere,
    floating-point sums run in another order and the numbers move within a seed-to-seed spread."""
    info: dict[str, Any] = {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()
                            if torch.backends.cudnn.is_available() else None}
    if trainer is not None:
        info["precision"] = str(trainer.precision)
    if getattr(config, "max_time_minutes", None):  # how far training got depends on the machine's speed
        info["time_capped_minutes"] = config.max_time_minutes
        if trainer is not None:
            info["stopped_by_time_cap"] = trainer.current_epoch < config.max_epochs
    return info


def read_history(logs_dir: Path) -> list[dict[str, float]]:
    """Per-epoch values from Lightning's CSV logs, across resumed segments (versions): every ``val/*``
    metric, every epoch-level training metric (``train/*_epoch``) and the learning rate ``lr`` (its
    last value in the epoch), so the curves can set training beside validation."""
    def wanted(key: str) -> bool:
        return key.startswith("val/") or (key.startswith("train/") and key.endswith("_epoch")) or key == "lr"

    history: dict[int, dict[str, float]] = {}
    versions = sorted(logs_dir.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    for metrics_csv in versions:
        with open(metrics_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                values = {k: float(v) for k, v in row.items() if k and wanted(k) and v not in (None, "")}
                if values and row.get("epoch") not in (None, ""):
                    history.setdefault(int(float(row["epoch"])), {}).update(values)
    return [{"epoch": epoch, **values} for epoch, values in sorted(history.items())]


PREDICTIONS_SUFFIX = ".predictions.json.gz"


def predictions_path(record_path: Path) -> Path:
    return Path(record_path).with_name(Path(record_path).stem + PREDICTIONS_SUFFIX)


def references_digest(references: dict) -> str:
    return hashlib.sha256(json.dumps(references, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def write_predictions(path: Path, predictions: dict, embedded: bool) -> None:
    """Gzipped JSON (no timestamp in the header, so the same outputs give the same bytes), atomically.
    A real dataset's references are replaced by their digest."""
    predictions = dict(predictions)
    if not embedded and "references" in predictions:  # a language model's file has none
        predictions["references_digest"] = references_digest(predictions.pop("references"))
    text = json.dumps(predictions, sort_keys=True, ensure_ascii=False, indent=0)
    write_atomic(path, gzip.compress(text.encode(), mtime=0))


def read_predictions(record_path: Path) -> dict | None:
    path = predictions_path(record_path)
    if not path.is_file():
        return None
    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError, EOFError) as error:
        raise UserError(f"{path}: unreadable predictions file ({error})") from None


def write_record(record: dict[str, Any], runs_dir: Path, predictions: dict | None = None,
                 embedded: bool = False) -> Path:
    """The record, and its predictions file first (a record is never without the outputs it names)."""
    stamp = record["finished_at"].replace(":", "").replace("-", "")[:15]
    name = f"{record['paper']}-{record['preset']}-{record['dataset']}-{stamp}-{uuid.uuid4().hex[:6]}.json"
    path = runs_dir / name
    if predictions is not None:
        write_predictions(predictions_path(path), predictions, embedded)
    write_atomic(path, json.dumps({"schema": RECORD_SCHEMA, **record}, indent=2, sort_keys=False) + "\n")
    return path


def load_records(runs_dir: Path) -> list[dict[str, Any]]:
    """Every record under ``runs_dir``, oldest first. A record that cannot be read is an error naming
    it (its row would silently vanish from the pages), and so is a folder without records (a mistyped
    ``--results`` would otherwise be filled with empty tables)."""
    paths = sorted(runs_dir.glob("*.json")) if runs_dir.is_dir() else []
    if not paths:
        raise UserError(f"--results {runs_dir.parent}: no run records in {runs_dir} (a mistyped folder?)")
    records = []
    for path in paths:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(record, dict) or not {"paper", "preset", "dataset", "metrics"} <= set(record):
                raise ValueError("not a run record (it lacks paper, preset, dataset or metrics)")
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: unreadable run record ({error}); fix or remove it, the pages were left "
                            f"untouched") from None
        record["_path"] = str(path)
        records.append(record)
    return sorted(records, key=lambda r: r.get("finished_at", ""))


def producer_of(record: dict[str, Any]) -> str:
    """The file whose code made a record: the paper's file, or the tool named in the record."""
    return record.get("producer") or f"papers/{record['paper']}.py"


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=source_root(), capture_output=True, text=True, timeout=30)


def trace_problem(record: dict[str, Any]) -> str | None:
    """None when a record traces to the code that made it: a commit of this repository's history,
    a tree without uncommitted changes at run time, and that commit holding the producing file (for a
    paper, its built module, not a stub). Otherwise, why not, in a few words."""
    git = record.get("git") or {}
    commit = git.get("commit")
    if not commit:
        return "no commit recorded"
    if git.get("dirty") is not False:
        return f"run from uncommitted code (commit {commit[:7]} plus changes)"
    try:
        if _git("merge-base", "--is-ancestor", commit, "HEAD").returncode != 0:
            return f"commit {commit[:7]} is not in this branch's history"
        producer = producer_of(record)
        shown = _git("show", f"{commit}:{producer}")
    except (OSError, subprocess.SubprocessError) as error:
        return f"git could not check it ({error})"
    if shown.returncode != 0:
        return f"commit {commit[:7]} has no {producer}"
    if producer.startswith("papers/") and not re.search(r"module_class\s*=\s*(?!None\b)\w", shown.stdout):
        return f"at commit {commit[:7]}, {producer} was not built yet"
    return None
