"""Results that trace back to the code that made them, and tables that are current."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from repro.app import figures, records, rows, tables
from repro.app.records import git_state, trace_problem


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repository(tmp_path, monkeypatch):
    """A small git repository standing in for the suite's: a built paper and a stub, one commit."""
    folder = tmp_path / "repo"
    (folder / "papers").mkdir(parents=True)
    (folder / "papers" / "built.py").write_text("register_paper(PaperEntry(name='built', module_class=Built))\n")
    (folder / "papers" / "stub.py").write_text("register_paper(PaperEntry(name='stub', module_class=None))\n")
    (folder / ".gitignore").write_text("outputs/\n")
    git(folder, "init", "-q")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "papers")
    monkeypatch.setattr(records, "source_root", lambda: folder)
    return folder


def test_git_state_counts_untracked_code_but_not_results_or_ignored_files(repository):
    assert git_state()["dirty"] is False
    (repository / "outputs").mkdir()
    (repository / "outputs" / "last.ckpt").write_text("ignored")
    (repository / "results" / "runs").mkdir(parents=True)
    (repository / "results" / "runs" / "a.json").write_text("{}")  # records are what runs produce
    assert git_state()["dirty"] is False
    (repository / "papers" / "new.py").write_text("# never committed\n")
    state = git_state()
    assert state["dirty"] is True and state["changed_files"] == ["papers/new.py"]


def test_a_record_traces_only_to_a_clean_commit_holding_its_built_paper(repository):
    commit = git(repository, "rev-parse", "HEAD")
    assert trace_problem({"paper": "built", "git": {"commit": commit, "dirty": False}}) is None
    assert "uncommitted" in trace_problem({"paper": "built", "git": {"commit": commit, "dirty": True}})
    assert "not built yet" in trace_problem({"paper": "stub", "git": {"commit": commit, "dirty": False}})
    assert "has no papers/gone.py" in trace_problem({"paper": "gone", "git": {"commit": commit, "dirty": False}})
    assert "not in this branch's history" in trace_problem({"paper": "built", "git": {"commit": "0" * 40, "dirty": False}})
    assert "no commit" in trace_problem({"paper": "built", "git": {}})
    # a record made by a tool rather than a paper's module names its producer
    assert "has no repro/tool.py" in trace_problem({"paper": "stub", "producer": "repro/tool.py",
                                                    "git": {"commit": commit, "dirty": False}})


def test_a_figure_carries_the_digest_of_what_it_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def draw(values):
        figure, axis = plt.subplots()
        axis.plot([1, 2, 3], values, label="run")
        axis.set_title("curve")
        return figure

    first = figures.save_figure(draw([3.0, 2.0, 1.0]), tmp_path / "a.png")
    same = figures.save_figure(draw([3.0, 2.0, 1.0]), tmp_path / "b.png")
    other = figures.save_figure(draw([3.0, 2.0, 1.5]), tmp_path / "c.png")
    assert figures.stored_digest(first) == figures.stored_digest(same) != figures.stored_digest(other)
    assert figures.stored_digest(tmp_path / "missing.png") is None


def test_check_finds_a_stale_page(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "trace_problem", lambda record: None)
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    record = {"paper": "mikolov2010", "preset": "paper", "dataset": "ptb", "data_source": "real",
              "metrics": {"test/ppl": 130.0}, "finished_at": "2026-12-01T00:00:00+00:00", "epochs": 3}
    (results / "runs" / "r.json").write_text(json.dumps(record))
    tables.write_tables(results)
    assert tables.check_tables(results) == []
    page = results / "mikolov2010.md"
    page.write_text(page.read_text().replace("130.0", "120.0"))  # a number typed by hand
    assert [problem for problem in tables.check_tables(results) if "mikolov2010.md: stale" in problem]
    tables.write_tables(results)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    axis.plot([1, 2], [3, 4])
    figures.save_figure(figure, results / "mikolov2010_length_gone.png")  # drawn for records since removed
    assert [p for p in tables.check_tables(results) if "mikolov2010_length_gone.png: no run record draws it" in p]


def test_overview_sets_only_the_same_system_beside_a_published_number(monkeypatch):
    """A published row that names its system's config (xu2015's soft vs hard attention) is compared
    only with runs of that config; the best run of the other variant is not its row."""
    from repro.registry import get_paper

    monkeypatch.setattr(tables, "trace_problem", lambda record: None)
    entry = get_paper("xu2015")

    def record(preset, attention, bleu_4, seed=0):
        return {"paper": "xu2015", "preset": preset, "dataset": "flickr8k", "data_source": "real", "_path": preset,
                "config": {"attention": attention, "seed": seed}, "metrics": {"test/bleu_4": bleu_4},
                "finished_at": "2026-12-01T00:00:00+00:00", "epochs": 3}

    runs = [record("paper", "soft", 18.0), record("paper-hard", "hard", 25.0)]
    lines = tables.overview([entry], {"xu2015": runs}, {}).splitlines()
    soft = next(line for line in lines if "19.5 (Soft-Attention" in line)
    hard = next(line for line in lines if "21.3 (Hard-Attention" in line)
    assert "| 18.0 | -1.5 |" in soft and "| 25.0 | +3.7 |" in hard
    lines = tables.overview([entry], {"xu2015": runs[1:]}, {}).splitlines()
    soft = next(line for line in lines if "19.5 (Soft-Attention" in line)
    assert "no real-data run of this system (attention=soft) reports test/bleu_4 yet" in soft


def test_row_shows_the_range_of_epochs_its_seeds_trained():
    """A time-capped preset trains as many epochs as the load allows: a row of seeds shows the range,
    not the latest run's count alone."""
    def record(epochs, seed):
        return {"config": {"seed": seed}, "metrics": {"test/bleu_4": 15.0 + seed}, "epochs": epochs}

    assert rows.Row("cpu", "", "flickr8k", [record(18, 1), record(15, 2), record(17, 3)]).epochs == "15-18"
    assert rows.Row("cpu", "", "flickr8k", [record(8, 1), record(8, 2)]).epochs == "8"
    assert rows.Row("cpu", "", "flickr8k", [{"config": {}, "metrics": {}}]).epochs == ""


def test_commands_and_differences_write_the_runs_output_folder_as_OUT():
    """A reader retypes the command: no --out/--results/--no-progress of the machine that ran it, and a
    checkpoint another run left in that folder (init_from) is written under OUT."""
    from repro.registry import get_paper

    command = ("python -m repro run venugopalan2014 --preset sample --set pretrained_on=shapes --set "
               "init_from=/tmp/rec/out/venugopalan2014/shapes-run/checkpoints/best.ckpt --no-progress "
               "--out /tmp/rec/out --results /tmp/tree/results --seed 3")
    assert tables.shown_command(command, several_seeds=True) == (
        "python -m repro run venugopalan2014 --preset sample --set pretrained_on=shapes --set "
        "init_from=OUT/venugopalan2014/shapes-run/checkpoints/best.ckpt --seed SEED")
    entry = get_paper("venugopalan2014")
    record = {"preset": "sample", "command": command,
              "config": {"init_from": "/tmp/rec/out/venugopalan2014/shapes-run/checkpoints/best.ckpt"}}
    assert rows.differences_from_preset(entry, record) == "init_from=OUT/venugopalan2014/shapes-run/checkpoints/best.ckpt"
    assert tables.shown_command("python -m repro run mikolov2010") == "python -m repro run mikolov2010"


def test_overview_shows_a_lowercased_runs_bleu_on_other_data_never_with_a_difference(monkeypatch):
    """sutskever2014's cpu runs lowercase, so they have test/bleu_lc, not the paper's test/bleu: the
    overview shows it, named, as other data; a run with the paper's own metric would come first."""
    from repro.registry import get_paper

    monkeypatch.setattr(tables, "trace_problem", lambda record: None)
    entry = get_paper("sutskever2014")

    def record(reverse, metrics, seed=1):
        return {"paper": "sutskever2014", "preset": "cpu", "dataset": "multi30k", "data_source": "real",
                "_path": f"{reverse}{seed}{sorted(metrics)}", "config": {"reverse_source": reverse, "seed": seed},
                "metrics": metrics, "finished_at": "2026-12-01T00:00:00+00:00", "epochs": 8}

    runs = [record(True, {"test/bleu_lc": 17.0}), record(True, {"test/bleu_lc": 19.0}, seed=2),
            record(False, {"test/bleu_lc": 14.0})]
    lines = tables.overview([entry], {"sutskever2014": runs}, {}).splitlines()
    reversed_line = next(line for line in lines if "30.59 (single reversed" in line)
    forward_line = next(line for line in lines if "26.17 (single forward" in line)
    assert "| 18.0 ± 1.4 | not comparable (other data, test/bleu_lc) | multi30k" in reversed_line
    assert "| 14.0 | not comparable (other data, test/bleu_lc) |" in forward_line
    runs.append(record(False, {"test/bleu": 12.0}, seed=3))
    forward_line = next(line for line in tables.overview([entry], {"sutskever2014": runs}, {}).splitlines()
                        if "26.17 (single forward" in line)
    assert "| 12.0 | not comparable (other data) |" in forward_line


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="no `java` on PATH")
def test_a_kept_meteor_scores_as_a_new_one(monkeypatch):
    """`table --check` re-scores every record with one METEOR JVM per worker; scores after other calls
    equal a fresh JVM's, and a JVM that died is replaced."""
    from repro.app.tables import _one_meteor_per_worker
    from repro.metrics import captions

    references = {1: ["a brown dog runs across the green grass", "a dog running on grass"],
                  2: ["two children swim in the blue water", "kids swimming"]}
    first, other = {1: "a dog runs on grass", 2: "children swim in water"}, {1: "a cat sleeps", 2: "kids in the water"}
    fresh = captions.score_captions(first, references, use_java=True)["meteor"]
    monkeypatch.setattr(captions, "_meteor_or_reason", captions._meteor_or_reason)  # restored after the test
    _one_meteor_per_worker()
    assert captions.score_captions(first, references, use_java=True)["meteor"] == fresh
    kept = captions._meteor_or_reason(True)[0]
    captions.score_captions(other, references, use_java=True)
    assert captions._meteor_or_reason(True)[0] is kept  # the same JVM, not a new one
    assert captions.score_captions(first, references, use_java=True)["meteor"] == fresh and 0 < fresh < 100
    kept.meteor_p.kill()
    kept.meteor_p.wait()
    assert captions.score_captions(first, references, use_java=True)["meteor"] == fresh
    assert captions._meteor_or_reason(True)[0] is not kept
