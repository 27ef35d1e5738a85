"""The command line end to end, on the embedded sample with a tiny model (seconds on a CPU)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_cache_dir

from repro.app.cli import main

TINY = ["--preset", "smoke", "--set", "hidden_size=8", "--set", "bptt=40", "--max-epochs", "1", "--no-progress",
        "--accelerator", "cpu", "--devices", "1"]


def repro(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One real run shared by the tests below: (output root, results root, record)."""
    root = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(shared_cache_dir()))
        patch.setenv("REPRO_DATA", str(root / "data"))
        patch.delenv("REPRO_RUN_ID", raising=False)
        assert main(["run", "mikolov2010", *TINY, "--out", str(root / "out"), "--results", str(root / "results")]) == 0
    records = list((root / "results" / "runs").glob("*.json"))
    assert len(records) == 1
    return root / "out", root / "results", json.loads(records[0].read_text())


def test_list_shows_all_six_papers_and_what_is_built():
    result = repro("list")
    assert result.returncode == 0
    for name in ("mikolov2010", "sutskever2014", "vinyals2014", "mao2014", "xu2015", "venugopalan2014"):
        assert name in result.stdout
    assert "not built yet" not in result.stdout and "124.7" in result.stdout  # all six are built


def test_print_config_resolves_preset_and_overrides(capsys, tmp_path):
    assert main(["run", "mikolov2010", "--preset", "smoke", "--set", "hidden_size=7", "--seed", "3",
                 "--print-config", "--results", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["config"]["hidden_size"] == 7 and printed["config"]["seed"] == 3
    assert printed["config"]["num_classes"] == 8  # from the smoke preset
    assert not any(tmp_path.iterdir())


# Bad input (unknown paper, preset, --set, missing data, unwritable --out, ...): tests/test_bad_input.py


def test_run_record_has_what_a_reader_needs(finished_run):
    out, _, record = finished_run
    assert record["paper"] == "mikolov2010" and record["dataset"] == "agreement-grammar"
    assert record["data_source"] == "embedded sample" and len(record["dataset_checksum"]) == 32
    metrics = record["metrics"]
    for key in ("test/ppl", "test/ppl_dynamic", "test/ppl_kn5", "val/ppl_kn5", "best_val/ppl"):
        assert 1.0 < metrics[key] < 200, key  # the sample's vocabulary has about 75 words
    assert record["config"]["hidden_size"] == 8 and record["epochs"] == 1
    assert {"commit", "dirty"} <= set(record["git"]) and record["versions"]["torch"]
    assert record["hardware"]["world_size"] == 1 and record["hardware"]["cpu"]
    assert record["history"] and "val/ppl" in record["history"][0]
    run_dir = Path(record["run_dir"])
    assert json.loads((run_dir / "config.json").read_text())["config"] == record["config"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()


def test_resume_continues_the_same_run(finished_run, capsys):
    out, results, record = finished_run
    run_dir = Path(record["run_dir"])
    assert main(["run", "mikolov2010", "--preset", "smoke", "--set", "hidden_size=8", "--set", "bptt=40",
                 "--max-epochs", "2", "--no-progress", "--resume", str(run_dir),
                 "--out", str(out), "--results", str(results)]) == 0
    resumed = max((json.loads(p.read_text()) for p in (results / "runs").glob("*.json")), key=lambda r: r["finished_at"])
    assert resumed["resumed_from"].endswith("last.ckpt") and resumed["epochs"] == 2
    assert resumed["run_dir"] == str(run_dir)


def test_resume_refuses_a_checkpoint_with_another_config(finished_run, capsys):
    out, results, record = finished_run
    assert main(["run", "mikolov2010", "--preset", "smoke", "--set", "hidden_size=9", "--resume", record["run_dir"],
                 "--out", str(out), "--results", str(results)]) == 2
    error = capsys.readouterr().err
    assert "incompatible config" in error and "hidden_size: saved 8 vs now 9" in error


def test_sample_generates_text_from_the_checkpoint(finished_run, capsys):
    _, _, record = finished_run
    assert main(["sample", "--ckpt", record["best_checkpoint"], "--sentences", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_table_is_generated_from_records(finished_run, monkeypatch, capsys):
    _, results, _ = finished_run
    record = max((json.loads(p.read_text()) for p in (results / "runs").glob("*.json")), key=lambda r: r["finished_at"])
    monkeypatch.setattr("repro.app.tables.trace_problem", lambda record: None)  # as from a clean commit (tests/test_tables.py)
    assert main(["table", "--results", str(results)]) == 0
    table = (results / "mikolov2010.md").read_text()
    assert "| published (Mikolov 2012 (PhD thesis), Table 4.1, reprinting Mikolov et al. 2011" in table
    assert "checked in the thesis) | RNNLM (single) | ptb |" in table
    assert f"{record['metrics']['test/ppl']:.1f}" in table and "embedded sample" in table
    assert (results / "mikolov2010_validation.png").is_file()
    assert "vinyals2014" in (results / "README.md").read_text()
    # regenerating changes nothing, and --check says so
    assert main(["table", "--check", "--results", str(results)]) == 0
    assert "all current" in capsys.readouterr().out
    # an untraceable record is a DRAFT row and fails the check
    monkeypatch.setattr("repro.app.tables.trace_problem", lambda record: "run from uncommitted code")
    assert main(["table", "--check", "--results", str(results)]) == 1
    assert "run from uncommitted code" in capsys.readouterr().err
    assert main(["table", "--results", str(results)]) == 0
    assert "DRAFT (run from uncommitted code)" in (results / "mikolov2010.md").read_text()


# Two processes (DDP over gloo) train exactly like one: tests/test_distributed_training.py


def test_non_finite_loss_stops_with_a_message_and_no_record(tmp_path, capsys, monkeypatch):
    from papers.mikolov2010 import Mikolov2010

    training_step = Mikolov2010.training_step  # a model that diverges (a NaN rate is refused as bad input)
    monkeypatch.setattr(Mikolov2010, "training_step", lambda self, batch, i: training_step(self, batch, i) * float("nan"))
    assert main(["run", "mikolov2010", *TINY,
                 "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")]) == 2
    assert "non-finite training loss" in capsys.readouterr().err
    assert not list((tmp_path / "results").rglob("*.json"))


def test_data_list_names_the_official_source(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "simple-examples.tgz" in out and "agreement-grammar [embedded (generated)]" in out
    assert "ptb [missing]" in out
