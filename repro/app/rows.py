"""A paper's run records as table rows: the runs of one configuration on one dataset, one per seed."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass

from repro.config import config_to_dict, resolve_config
from repro.errors import UserError
from repro.registry import PaperEntry


def _format(value) -> str:
    return "" if value is None else f"{value:.1f}"


def differences_from_preset(entry: PaperEntry, record: dict, ignore: tuple[str, ...] = ()) -> str:
    """How a run's config differs from its preset as the code defines it now (``key=value ...``).

    Presets evolve; a record keeps the config it ran with, so the table says what was different.
    """
    if entry.config_class is None or "config" not in record:
        return ""
    try:
        # through JSON, as the record was: a tuple field reads back as a list and is no difference
        current = json.loads(json.dumps(config_to_dict(resolve_config(entry.config_class, entry.presets, record["preset"]))))
    except UserError:
        return " ".join(record.get("overrides") or [])
    return portable(" ".join(f"{key}={value}" for key, value in record["config"].items()
                              if key in current and current[key] != value and key not in ignore),
                     record.get("command", ""))


def portable(text: str, command: str) -> str:
    """``text`` with the run's output folder (its ``--out``) written ``OUT``: a checkpoint another run
    left there (``init_from=...``) reads the same on every machine."""
    words = command.split()
    out = words[words.index("--out") + 1] if "--out" in words[:-1] else None
    return text.replace(out.rstrip("/") + "/", "OUT/") if out else text


@dataclass
class Row:
    """The runs of one configuration on one dataset: one per seed (the latest of each seed)."""

    preset: str
    differences: str
    dataset: str
    records: list[dict]

    @property
    def real(self) -> bool:
        return self.records[-1].get("data_source") == "real"

    def values(self, metric: str) -> list[float]:
        return [r["metrics"][metric] for r in self.records if r["metrics"].get(metric) is not None]

    def cell(self, metric: str) -> str:
        values = self.values(metric)
        if not values:
            return ""
        if len(values) == 1:
            return _format(values[0])
        return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.mean(values) if values else None

    @property
    def seeds(self) -> int:
        return len(self.records)

    @property
    def epochs(self) -> str:
        """The epochs its runs trained: one number, or the range where seeds differ (a time-capped
        preset trains as many epochs as the machine's load allows)."""
        counts = sorted({r["epochs"] for r in self.records if r.get("epochs") is not None})
        return "" if not counts else str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def rows_of(entry: PaperEntry, records: list[dict]) -> list[Row]:
    """Records grouped by (preset, config differences other than the seed, dataset, data subset)."""
    groups: dict[tuple, dict] = {}
    for record in records:  # oldest first, so the newest run of each seed wins
        subset = (record.get("data_subset") or {}).get("description", "")
        key = (record["preset"], differences_from_preset(entry, record, ignore=("seed",)), record["dataset"], subset)
        groups.setdefault(key, {})[record.get("config", {}).get("seed")] = record
    rows = [Row(preset, differences, dataset, sorted(by_seed.values(), key=lambda r: r.get("finished_at", "")))
            for (preset, differences, dataset, _), by_seed in groups.items()]
    return sorted(rows, key=lambda row: (row.dataset, row.preset, row.differences))
