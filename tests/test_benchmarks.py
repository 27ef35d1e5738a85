"""Every benchmark's --quick path runs (so none rots), through the command and from an installed package."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from repro.app.cli import main

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(path.stem for path in (ROOT / "benchmarks").glob("*.py") if path.stem != "__init__")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_quick_benchmark_runs_and_writes_its_json(name, tmp_path, capsys):
    assert main(["bench", name, "--quick", "--out", str(tmp_path)]) == 0
    [written] = tmp_path.glob("*.json")
    result = json.loads(written.read_text())
    assert result["quick"] is True and "cpu" in json.dumps(result) or "threads" in result


@pytest.mark.slow
def test_benchmarks_are_part_of_the_installed_package(tmp_path):
    """`repro bench` imports benchmarks as a package: a wheel (what a non-editable install gets) holds them."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    if built.returncode != 0 and "No module named" in built.stderr:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip().splitlines()[-1]}")
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("repro-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"benchmarks/{name}.py" for name in BENCHMARKS} <= names and "benchmarks/__init__.py" in names


def test_the_toolkit_update_is_taken_apart(tmp_path):
    """mikolov2010's benchmark says what bounds the toolkit's one-stream update: its operators, counted."""
    from benchmarks.mikolov2010 import main as bench

    bench(["--quick", "--shapes", "1x10", "--wikitext-shapes", "--out", str(tmp_path)])
    anatomies = json.loads((tmp_path / "mikolov2010.json").read_text())["update_anatomy"]
    anatomy = anatomies["toolkit"]
    assert anatomies["ptb"]["streams"] > 1 and anatomies["ptb"]["operators_per_update"] > 0
    assert anatomy["streams"] == 1 and anatomy["words_per_update"] == 10
    # the recurrence runs operators for every word, forward and backward: far more than one per word
    assert anatomy["operators_per_word"] > 5 and anatomy["operators_per_update"] == pytest.approx(
        10 * anatomy["operators_per_word"], abs=0.5)
    assert 0 < anatomy["dispatch_floor_us_per_operator"] < 1000 and 0 < anatomy["arithmetic_ms_at_peak"]
    assert anatomy["dispatch_floor_ms_per_update"] == pytest.approx(
        anatomy["operators_per_update"] * anatomy["dispatch_floor_us_per_operator"] / 1e3, rel=0.01)
    # the phases, each timed by the clock, are most of the measured update (the rest: choosing the batch's
    # window); the toolkit does not clip, the ptb preset does
    for preset in anatomies.values():
        phases = preset["phases"]
        assert list(phases) == ["forward", "backward", "clipping", "sgd step"]
        assert 0.7 * preset["ms_per_update"] < sum(phase["ms"] for phase in phases.values()) <= preset["ms_per_update"]
        backward = phases["backward"]
        assert "SigmoidRecurrenceBackward" in backward["largest"] and sum(backward["largest"].values()) <= backward["ms"]
    assert not anatomy["phases"]["clipping"]["largest"] and anatomies["ptb"]["phases"]["clipping"]["largest"]
    # more words an update, more of the word layer's rows in its gradient
    assert 0 < anatomy["word_rows_in_gradient"] < anatomies["ptb"]["word_rows_in_gradient"] <= 1
