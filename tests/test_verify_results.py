"""CI's proof that HEAD still trains as the committed records' runs did: ``repro verify`` replays the
first training steps of each embedded-sample row of the results pages (its latest record: the seeds of
a row run the same code and config, so one replay per row finds a change; ``table --check`` checks every
record's code fingerprint) and of one real-data record, where the data is present, and compares the
losses with the record's.

The tests run with one thread (conftest), the records' runs with the machine's, so the comparison is
the cross-environment one (relative 1e-3, see ``repro.app.verify``): a change of code or config moves
the first losses far more than summation order does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.app.cli import main
from repro.app.records import load_records
from repro.app.rows import rows_of
from repro.registry import all_papers
from tests.conftest import SHARED_DATA

STEPS = 5  # of the 20 a record keeps: a change of code or config shows from the first step; CI time is tight
RUNS = Path(__file__).resolve().parents[1] / "results" / "runs"


def verifiable(real: bool) -> list[Path]:
    """The latest record of each row that the pages show, where it keeps its first losses."""
    records = load_records(RUNS)
    found = []
    for entry in all_papers():
        for row in rows_of(entry, [record for record in records if record["paper"] == entry.name]):
            latest = row.records[-1]
            if latest.get("first_losses") and (latest.get("data_source") == "real") == real:
                found.append(Path(latest["_path"]))
    return sorted(found)


@pytest.mark.slow
@pytest.mark.parametrize("record", verifiable(real=False), ids=lambda path: path.stem)
def test_every_sample_row_still_trains_the_same_at_head(record, capsys):
    init_from = json.loads(record.read_text())["config"].get("init_from")
    if init_from and not Path(init_from).is_file():
        pytest.skip(f"starts from another run's checkpoint, not kept in git: {init_from}")
    assert main(["verify", str(record), "--steps", str(STEPS)]) == 0, capsys.readouterr().out


REAL = verifiable(real=True)


@pytest.mark.realdata
@pytest.mark.skipif(not REAL or not SHARED_DATA.is_dir(), reason="no real-data record with first losses, or no data")
def test_a_real_data_row_still_trains_the_same_at_head(capsys):
    fastest = min(REAL, key=lambda path: json.loads(path.read_text()).get("wall_time_s", 0))
    assert main(["verify", str(fastest), "--steps", str(STEPS), "--data-dir", str(SHARED_DATA)]) == 0, \
        capsys.readouterr().out
