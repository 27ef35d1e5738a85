"""Never lose a run: records land even when runs finish together, checkpoints are never half-written,
a full disk is reported before training, and the run options users expect are applied and recorded.

(The SIGKILL-and-resume test is in test_distributed_training.py, beside the run it is compared with;
a non-finite loss is in test_cli.py.)
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from repro.app.cli import main
from repro.app.records import write_record
from repro.files import write_atomic

TINY = ["run", "mikolov2010", "--preset", "smoke", "--set", "hidden_size=8", "--set", "kneser_ney_baseline=false",
        "--set", "dynamic_evaluation=false", "--max-epochs", "1", "--no-progress", "--accelerator", "cpu", "--devices", "1"]


def _finish_runs(runs_dir: str, worker: int, barrier, count: int) -> None:
    barrier.wait()  # both processes write at the same moment, with the same finishing time
    for index in range(count):
        write_record({"paper": "mikolov2010", "preset": "smoke", "dataset": "agreement-grammar",
                      "finished_at": "2026-01-01T00:00:00+00:00", "worker": worker, "index": index,
                      "payload": "x" * 20000}, Path(runs_dir))


def test_runs_finishing_at_the_same_time_all_land_whole(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_finish_runs, args=(str(tmp_path), w, barrier, 25)) for w in range(2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    records = [json.loads(path.read_text()) for path in tmp_path.glob("*.json")]
    assert sorted((r["worker"], r["index"]) for r in records) == [(w, i) for w in range(2) for i in range(25)]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_a_writer_that_dies_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "mikolov2010.md"
    target.write_text("the old table\n")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)
    with pytest.raises(OSError):
        write_atomic(target, "the new table\n")
    assert target.read_text() == "the old table\n" and [p.name for p in tmp_path.iterdir()] == ["mikolov2010.md"]


def test_a_checkpoint_write_that_fails_keeps_the_last_good_one(tmp_path, monkeypatch):
    from repro.training.trainer import AtomicCheckpointIO

    last = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, last)
    real_save = torch.save

    def killed_mid_write(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half a checkp")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(OSError):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, last)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(last, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_full_disk_is_reported_before_training(tmp_path, monkeypatch, capsys):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * 2**30, 10 * 2**30 - 5 * 2**20, 5 * 2**20))
    assert main([*TINY, "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: --out {tmp_path / 'out'}") and "only 5 MiB free" in error
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("*.json"))


def test_run_options_are_applied_and_recorded(tmp_path, monkeypatch):
    """Gradient accumulation, deterministic mode and torch.compile: what the trainer ran with is what
    the record says. Compiling for real adds about 20 s on this CPU (an end-to-end --compile run works),
    so here the compiler is stubbed and only its plumbing is checked: the module's network is compiled
    in place, so parameter names and checkpoints stay those of the plain network."""
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    deterministic = torch.are_deterministic_algorithms_enabled()
    assert main([*TINY, "--accumulate-grad-batches", "2", "--deterministic", "--compile", "--checkpoint-every-n-steps",
                 "50", "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")]) == 0
    torch.use_deterministic_algorithms(deterministic)
    assert compiled == ["ElmanLanguageModel"]
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")]
    trainer = record["trainer"]
    assert trainer["precision"] == "32-true" and trainer["deterministic"] is True and trainer["compile"] is True
    assert trainer["accumulate_grad_batches"] == 2 and record["config"]["accumulate_grad_batches"] == 2
    assert trainer["effective_batch_size"] == 16 * 2 and trainer["world_size"] == 1
    assert trainer["checkpoint_every_n_steps"] == 50 and trainer["checkpoint_every_minutes"] is None
    assert "learning rates unchanged" in trainer["world_size_rule"]
    # 2 batches per update: half as many optimizer steps as batches (199 batches per epoch here)
    assert record["global_step"] == 100


def test_bf16_mixed_precision_reaches_the_trainer(tmp_path):
    """(bf16 autocast of this network is slow on this CPU, so the trainer is built, not run.)"""
    from papers.mikolov2010 import Mikolov2010Config
    from repro.training.trainer import TrainerOptions, build_trainer

    options = TrainerOptions(accelerator="cpu", devices="1", precision="bf16-mixed", progress_bar=False)
    trainer = build_trainer(options, Mikolov2010Config(), tmp_path, "run", ("val/ppl", "min"))
    assert trainer.precision == "bf16-mixed" and trainer.precision_plugin.device == "cpu"


def test_bf16_is_refused_on_a_gpu_without_it(monkeypatch):
    from repro.errors import UserError
    from repro.training.trainer import TrainerOptions, check_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")
    with pytest.raises(UserError, match=r"--precision bf16-mixed: this GPU \(Tesla V100-SXM2-16GB\) has no bfloat16"):
        check_precision(TrainerOptions(accelerator="gpu", precision="bf16-mixed"))
    check_precision(TrainerOptions(accelerator="gpu", precision="16-mixed"))  # float16 is fine there


def test_resume_from_a_preemption_checkpoint_finds_its_run_directory(tmp_path):
    """SLURM preemption leaves RUN/hpc_ckpt_N.ckpt; checkpoints/last.ckpt sits one level down."""
    from repro.app.run import RunRequest, find_resume_checkpoint, run_directory_of

    run = tmp_path / "outputs" / "mikolov2010" / "mikolov2010-paper-ptb-job77"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    for checkpoint in (run / "hpc_ckpt_3.ckpt", run / "checkpoints" / "last.ckpt"):
        checkpoint.write_bytes(b"x")
        assert run_directory_of(checkpoint) == run.resolve()
        request = RunRequest("mikolov2010", resume=str(checkpoint))
        assert find_resume_checkpoint(request, tmp_path / "outputs" / "mikolov2010", "ptb") == (run.resolve(), checkpoint)
    # a run directory whose only checkpoint is Lightning's preemption one resumes from it
    (run / "checkpoints" / "last.ckpt").unlink()
    assert find_resume_checkpoint(RunRequest("mikolov2010", resume=str(run)), tmp_path, "ptb") == (run, run / "hpc_ckpt_3.ckpt")


def test_two_runs_started_in_the_same_second_never_share_a_directory(tmp_path, monkeypatch):
    """Seeds of one job array start in the same second: each gets its own run directory, and each record
    carries its own seed's config, checkpoints and validation history."""
    import datetime as real

    class Frozen(real.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 6, 12, 0, 0, tzinfo=tz)

    monkeypatch.setattr("repro.app.run.datetime", Frozen)
    common = [*TINY, "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")]
    assert main([*common, "--seed", "1"]) == 0
    assert main([*common, "--seed", "2"]) == 0
    run_dirs = sorted((tmp_path / "out" / "mikolov2010").iterdir())
    assert len(run_dirs) == 2 and all(d.name.startswith("mikolov2010-smoke-agreement-grammar-20261206-120000-")
                                      for d in run_dirs)
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "results" / "runs").glob("*.json"))]
    assert sorted(r["config"]["seed"] for r in records) == [1, 2]
    for record in records:
        run_dir = Path(record["run_dir"])
        assert json.loads((run_dir / "config.json").read_text())["config"]["seed"] == record["config"]["seed"]
        saved = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=False)
        assert saved["hyper_parameters"]["config"]["seed"] == record["config"]["seed"]
        assert len(record["history"]) == 1  # its own epoch, not the other run's too


def test_a_fresh_run_never_takes_over_an_existing_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_RUN_ID", "taken")
    (tmp_path / "out" / "mikolov2010" / "taken").mkdir(parents=True)
    assert main([*TINY, "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")]) == 2
    assert "taken exists already and belongs to another run" in capsys.readouterr().err


def test_leftover_temporary_files_are_removed_when_a_run_resumes(tmp_path, capsys):
    common = [*TINY, "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")]
    assert main(common) == 0
    [run_dir] = (tmp_path / "out" / "mikolov2010").iterdir()
    leftover = run_dir / "checkpoints" / ".last.ckpt.4242.tmp"  # a writer killed mid-write
    leftover.write_bytes(b"")
    assert main([*common[:-4], "--max-epochs", "2", *common[-4:], "--resume", str(run_dir)]) == 0
    assert not leftover.exists()
