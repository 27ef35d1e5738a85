"""Rows that still hold at HEAD: code fingerprints, the printed command against the record's config,
``repro verify`` replaying a record's first steps, and the same seed giving the same numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from repro.app import fingerprints
from repro.app.cli import main
from repro.app.fingerprints import code_changes, code_hash, fingerprint
from repro.app.records import load_records
from repro.app.rescore import agrees
from repro.app.rows import rows_of
from repro.app.staleness import config_changes, stale_reason
from repro.app.tables import mark_stale, shown_command
from repro.registry import all_papers
from tests.conftest import sandboxed_run

ROOT = Path(__file__).resolve().parents[1]

PAPER = '''"""A paper."""
import math

_SOURCE = "Someone et al., Table 1"
PUBLISHED = (("ptb", 124.7, _SOURCE),)


def loss(x):
    """The loss."""
    return math.log(x)  # natural log
'''


def test_a_fingerprint_ignores_comments_docstrings_and_published_numbers_but_not_code():
    same = [PAPER.replace("# natural log", "# the natural logarithm"),
            PAPER.replace('"""The loss."""', '"""The loss, in nats."""'),
            PAPER.replace("124.7", "124.8").replace("Table 1", "Table 2, p. 4"),
            PAPER.replace("    return", "\n    return")]
    for text in same:
        assert code_hash(text) == code_hash(PAPER), text
    for text in [PAPER.replace("math.log(x)", "math.log2(x)"), PAPER + "\nSTEP = 2\n"]:
        assert code_hash(text) != code_hash(PAPER), text


def test_the_scope_follows_imports_from_the_roots_and_stops_at_the_reports():
    files, missing = fingerprint(["papers.mikolov2010", "repro.app.run", "datamodules.language_modeling.ptb"])
    assert not missing
    assert {"papers/mikolov2010.py", "repro/app/run.py", "repro/language_modeling/module.py",
            "datamodules/language_modeling/text.py", "repro/training/trainer.py"} <= set(files)
    # reports and the other papers cannot change this paper's numbers
    assert not {"repro/app/tables.py", "repro/app/figures.py", "repro/app/records.py", "papers/xu2015.py"} & set(files)


def test_code_changes_names_the_file_that_moved(tmp_path):
    roots = ["papers.mikolov2010", "repro.app.run"]
    for package in fingerprints.PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    files, _ = fingerprint(roots, tmp_path)
    recorded = {"roots": roots, "files": files}
    assert code_changes(recorded, tmp_path) == []
    paper = tmp_path / "papers" / "mikolov2010.py"
    paper.write_text(paper.read_text() + "\n# a comment changes nothing\n")
    assert code_changes(recorded, tmp_path) == []
    module = tmp_path / "repro" / "language_modeling" / "module.py"
    module.write_text(module.read_text() + "\nEXTRA_STEP = 1\n")
    assert code_changes(recorded, tmp_path) == ["repro/language_modeling/module.py changed"]
    paper.unlink()
    assert "papers.mikolov2010 (a root) is gone" in code_changes(recorded, tmp_path)


@pytest.fixture(scope="module")
def smoke_records(tmp_path_factory):
    """Two runs of the same command with the same seed, in this process (the same machine and threads)."""
    roots = [tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")]
    argv = ["mikolov2010", "--preset", "smoke", "--max-epochs", "1", "--seed", "7", "--no-progress"]
    return [sandboxed_run(root, argv) for root in roots], roots


def test_the_same_seed_on_the_same_machine_gives_the_same_row_bit_for_bit(smoke_records):
    (first, second), _ = smoke_records
    assert first["metrics"] == second["metrics"]
    assert first["first_losses"] == second["first_losses"] and len(first["first_losses"]) > 5
    assert first["determinism"]["threads"] >= 1 and first["code"]["files"]


def test_the_rnn_interpolated_with_kn5_is_no_worse_on_validation_than_either(smoke_records):
    """The weight is chosen on validation from a grid holding 0 (KN5 alone) and 1 (the RNN alone, the
    best checkpoint's validation perplexity), so the combination cannot be worse there than either."""
    (record, _), _ = smoke_records
    metrics = record["metrics"]
    assert 0.0 <= metrics["rnn_kn5_weight"] <= 1.0
    assert metrics["val/ppl_rnn_kn5"] <= min(metrics["best_val/ppl"], metrics["val/ppl_kn5"]) * (1 + 1e-5)
    assert metrics["test/ppl_rnn_kn5"] < max(metrics["test/ppl"], metrics["test/ppl_kn5"])


def test_a_record_whose_code_or_preset_moved_on_is_stale(smoke_records):
    (record, _), _ = smoke_records
    command = shown_command(record["command"])
    assert stale_reason(record, command) is None
    moved = {**record, "code": {**record["code"], "files": {**record["code"]["files"], "repro/files.py": "0" * 16}}}
    assert "repro/files.py changed" in stale_reason(moved, command)
    edited = {**record, "config": {**record["config"], "hidden_size": 999}}
    assert "hidden_size: 999 -> 32" in stale_reason(edited, command)
    # table --check fails on a stale fingerprinted record; a record without fingerprints is marked, not current
    for item, path in ((moved, "moved.json"), (record, "current.json")):
        item["_path"] = path
    legacy = {key: value for key, value in record.items() if key != "code"} | {
        "_path": "legacy.json", "config": {**record["config"], "seed": 8}, "command": record["command"] + " --seed 8"}
    problems = mark_stale([legacy, moved])
    assert len(problems) == 1 and problems[0].startswith("moved.json: stale: code moved since")
    assert legacy["_stale"].startswith("UNCHECKED")


def test_verify_replays_the_first_steps_and_finds_a_different_loss(smoke_records, tmp_path, capsys):
    _, roots = smoke_records
    [path] = (roots[0] / "results" / "runs").glob("*.json")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_DATA", str(roots[0] / "data"))
        assert main(["verify", str(path), "--steps", "4"]) == 0
        assert "4 steps agree, bit for bit" in capsys.readouterr().out
        record = json.loads(path.read_text())
        record["first_losses"][2] = float(record["first_losses"][2]) * (1 + 1e-7)  # one rounding step off
        changed = tmp_path / path.name
        changed.write_text(json.dumps(record))
        assert main(["verify", str(changed), "--steps", "4"]) == 1
        assert "<- differs" in capsys.readouterr().out
        assert main(["verify", str(changed), "--steps", "999"]) == 2


def test_a_language_model_record_is_rescored_from_its_sentence_log_probabilities(smoke_records, tmp_path, capsys):
    import gzip

    _, roots = smoke_records
    [path] = (roots[0] / "results" / "runs").glob("*.json")
    predictions = path.with_name(path.stem + ".predictions.json.gz")
    kept = json.loads(gzip.decompress(predictions.read_bytes()))
    scores = kept["outputs"]["test/ppl"]
    assert kept["kind"] == "sentence_log_probs" and len(scores["log_prob"]) == len(scores["words"]) > 100
    # KN5 and the RNN interpolated with it are re-scored from their own sentence scores
    assert set(kept["baselines"]["kn5"]) == {"test/ppl_kn5", "test/ppl_rnn_kn5"}
    assert main(["rescore", str(path)]) == 0
    printed = capsys.readouterr().out
    assert all(f"{name} " in printed for name in ("test/ppl", "test/ppl_kn5", "test/ppl_rnn_kn5")), printed
    scores["log_prob"][0] -= 5.0  # one sentence five nats less likely
    copy = tmp_path / path.name
    copy.write_text(path.read_text())
    copy.with_name(predictions.name).write_bytes(gzip.compress(json.dumps(kept).encode()))
    assert main(["rescore", str(copy)]) == 1


def test_every_printed_command_resolves_to_its_records_config():
    """The command a results page prints for a row, parsed as the command line parses it and resolved at
    HEAD, gives the config its record ran with (for every record that names its code; older ones are
    marked on the pages instead)."""
    records = load_records(ROOT / "results" / "runs")
    checked = 0
    for entry in all_papers():
        for row in rows_of(entry, [r for r in records if r["paper"] == entry.name]):
            for record in row.records:
                if record.get("code") and record.get("command", "").startswith("python -m repro run"):
                    command = shown_command(record["command"], several_seeds=row.seeds > 1)
                    assert "/tmp/" not in command and "/work/" not in command, command
                    assert config_changes(record, command) == [], (record["_path"], command)
                    checked += 1
    assert checked or not any(r.get("code") for r in records)


def test_a_printed_command_keeps_every_override_and_no_machine_path():
    command = ("python -m repro run mikolov2010 --preset ptb --data ptb --data-dir /work/shared/data --set dropout=0.5 "
               "--seed 3 --no-progress --out /tmp/x/out --results /tmp/x/results")
    assert shown_command(command) == ("python -m repro run mikolov2010 --preset ptb --data ptb --data-dir DATA_ROOT "
                                      "--set dropout=0.5 --seed 3")
    assert shown_command(command, several_seeds=True).endswith("--set dropout=0.5 --seed SEED")


def test_caption_and_bleu_scores_must_match_at_float32_and_perplexities_within_1e_4():
    logged = float(np.float32(27.123456789))  # a metric as the test logs it
    assert agrees("captions", logged, 27.123456789) and not agrees("captions", logged, 27.1235)
    assert agrees("sentence_log_probs", 120.0, 120.0 * (1 + 5e-5)) and not agrees("sentence_log_probs", 120.0, 120.05)
