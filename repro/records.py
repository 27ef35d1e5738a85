"""Run records: one JSON per finished run, written atomically at the very end.

A record holds everything needed to trust and regenerate a number: metrics, the fully resolved
config, the dataset and its checksum, the git commit, library versions, hardware, wall time and
epochs. A failed or interrupted run writes none, so ``results/`` only ever holds finished runs.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import tempfile
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

RECORD_SCHEMA = 1
LIBRARIES = ("torch", "lightning", "torchmetrics", "numpy", "pycocoevalcap", "sacrebleu")


def git_state() -> dict[str, Any]:
    source = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": commit, "dirty": dirty}
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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(trainer=None) -> dict[str, Any]:
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    info = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpus": gpus, "hostname": platform.node()}
    if trainer is not None:
        info.update({"accelerator": type(trainer.accelerator).__name__, "devices_per_node": trainer.num_devices,
                     "nodes": trainer.num_nodes, "world_size": trainer.world_size})
    return info


def read_history(logs_dir: Path, keys: tuple[str, ...]) -> list[dict[str, float]]:
    """Per-epoch values of ``keys`` from Lightning's CSV logs, across resumed segments (versions)."""
    history: dict[int, dict[str, float]] = {}
    versions = sorted(logs_dir.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    for metrics_csv in versions:
        with open(metrics_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                values = {k: float(row[k]) for k in keys if row.get(k) not in (None, "")}
                if values and row.get("epoch") not in (None, ""):
                    history.setdefault(int(float(row["epoch"])), {}).update(values)
    return [{"epoch": epoch, **values} for epoch, values in sorted(history.items())]


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it in: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_record(record: dict[str, Any], runs_dir: Path) -> Path:
    stamp = record["finished_at"].replace(":", "").replace("-", "")[:15]
    name = f"{record['paper']}-{record['preset']}-{record['dataset']}-{stamp}-{uuid.uuid4().hex[:6]}.json"
    path = runs_dir / name
    write_atomic(path, json.dumps({"schema": RECORD_SCHEMA, **record}, indent=2, sort_keys=False) + "\n")
    return path


def load_records(runs_dir: Path) -> list[dict[str, Any]]:
    """Every record under ``runs_dir``, oldest first; unreadable files are reported and skipped."""
    records = []
    for path in sorted(runs_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            print(f"warning: skipping unreadable run record {path}: {error}")
            continue
        record["_path"] = str(path)
        records.append(record)
    return sorted(records, key=lambda r: r.get("finished_at", ""))


def matmul_peak_gflops(seconds: float, size: int = 2048) -> float:
    """This machine's measured fp32 matrix-multiply rate: the ceiling benchmarks compare GFLOP/s with."""
    import time

    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - start) / 1e9
