"""``repro submit``: the generated SLURM batch script, and what is refused before anything is queued."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from repro.app.cli import main


def dry_run(capsys, *args: str) -> str:
    assert main(["submit", "mikolov2010", *args, "--dry-run"]) == 0
    return capsys.readouterr().out


def directives(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


def test_the_script_asks_slurm_for_the_flags_and_requeue_on_preemption(capsys, tmp_path):
    script = dry_run(capsys, "--preset", "paper", "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu",
                     "--time", "1-00:00:00", "--account", "lab", "--cpus-per-task", "8", "--out", str(tmp_path / "out"))
    assert script.startswith("#!/bin/bash\n")
    assert directives(script) == [
        "--job-name=repro-mikolov2010-paper", "--nodes=2", "--ntasks-per-node=4", "--gres=gpu:4",
        "--cpus-per-task=8", "--partition=gpu", "--time=1-00:00:00", "--account=lab",
        "--requeue", "--signal=SIGUSR1@90", "--open-mode=append",
        f"--output={tmp_path / 'out' / 'mikolov2010' / 'slurm'}/%x-%j.out",
    ]
    (step,) = [line for line in script.splitlines() if line.startswith("srun ")]
    command = shlex.split(step)
    assert command[:6] == ["srun", sys.executable, "-m", "repro", "run", "mikolov2010"]
    # one task per GPU, and Lightning told the same numbers (it checks them against the allocation)
    for flag, value in (("--accelerator", "gpu"), ("--devices", "4"), ("--nodes", "2"), ("--strategy", "ddp"),
                        ("--out", str(tmp_path / "out")), ("--checkpoint-every-minutes", "30")):
        assert command[command.index(flag) + 1] == value, flag
    assert "--no-progress" in command and "--resume" not in command  # the job resumes by its job id
    # with no --preset, the job gets what `repro run` would choose here: no real data, so the sample's
    assert "--job-name=repro-mikolov2010-sample" in directives(dry_run(capsys, "--gpus-per-node", "1"))
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_run_flags_are_passed_through_quoted(capsys, tmp_path):
    script = dry_run(capsys, "--gpus-per-node", "1", "--preset", "cpu", "--set", "hidden_size=400",
                     "--set", "gradient_clip_val=none", "--seed", "7", "--max-epochs", "3", "--precision", "bf16-mixed",
                     "--accumulate-grad-batches", "2", "--checkpoint-every-n-steps", "500", "--deterministic",
                     "--compile", "--wandb", "--data-dir", str(tmp_path / "my data"), "--results", "res")
    command = shlex.split([line for line in script.splitlines() if line.startswith("srun ")][0])
    for flag, value in (("--preset", "cpu"), ("--seed", "7"), ("--max-epochs", "3"), ("--precision", "bf16-mixed"),
                        ("--accumulate-grad-batches", "2"), ("--checkpoint-every-n-steps", "500"),
                        ("--data-dir", str(tmp_path / "my data")), ("--results", str(Path("res").resolve()))):
        assert command[command.index(flag) + 1] == value, flag
    assert [command[i + 1] for i, part in enumerate(command) if part == "--set"] == ["hidden_size=400",
                                                                                     "gradient_clip_val=none"]
    assert {"--deterministic", "--compile", "--wandb"} <= set(command)
    assert "--checkpoint-every-minutes" not in command
    assert "--nodes=1" in directives(script) and "--time" not in script.split("srun")[0].replace("#SBATCH --", "")


@pytest.mark.parametrize("args, message", [
    (["--gpus-per-node", "2", "--time", "two hours"], "--time two hours: not a SLURM time"),
    (["--gpus-per-node", "0"], "--gpus-per-node 0: must be at least 1"),
    (["--gpus-per-node", "2", "--preset", "huge"], "unknown preset 'huge'"),
    (["--gpus-per-node", "2", "--set", "hidden_size=big"], "--set hidden_size=big: expected int"),
])
def test_bad_requests_fail_before_anything_is_queued(args, message, capsys):
    assert main(["submit", "mikolov2010", *args, "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1


def test_without_slurm_submit_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert main(["submit", "mikolov2010", "--gpus-per-node", "1", "--out", str(tmp_path / "out")]) == 2
    assert "sbatch is not on PATH" in capsys.readouterr().err


def test_submit_writes_the_script_beside_the_runs_and_calls_sbatch(capsys, tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'called'}\necho 'Submitted batch job 991'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    assert main(["submit", "mikolov2010", "--gpus-per-node", "2", "--out", str(tmp_path / "out")]) == 0
    (script,) = (tmp_path / "out" / "mikolov2010" / "slurm").glob("*.sbatch")
    assert (tmp_path / "called").read_text().strip() == str(script)
    assert "--ntasks-per-node=2" in script.read_text()
    assert "Submitted batch job 991" in capsys.readouterr().out


def test_several_seeds_are_one_job_array_one_seed_a_task(capsys, tmp_path):
    import subprocess

    script = dry_run(capsys, "--preset", "smoke", "--gpus-per-node", "1", "--seeds", "1,2,3", "--out", str(tmp_path))
    assert directives(script)[0] == "--array=0-2"
    assert directives(script)[-1].endswith("/%x-%A_%a.out")  # one log per task
    assert "SEEDS=(1 2 3)" in script
    (step,) = [line for line in script.splitlines() if line.startswith("srun ")]
    assert "--seed ${SEEDS[$SLURM_ARRAY_TASK_ID]}" in step
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0  # valid bash
    # each task runs its seed in its own directory: job and task ids in the name, so a requeue finds it
    (task,) = [line for line in script.splitlines() if line.startswith("SEEDS=")]
    expanded = subprocess.run(["bash", "-c", f"{task}\nSLURM_ARRAY_TASK_ID=2\necho ${{SEEDS[$SLURM_ARRAY_TASK_ID]}}"],
                              capture_output=True, text=True).stdout.strip()
    assert expanded == "3"


@pytest.mark.parametrize("seeds", ["1,x", "1,1", "2,-1"])
def test_bad_seeds_are_refused(seeds, capsys):
    assert main(["submit", "mikolov2010", "--gpus-per-node", "1", "--seeds", seeds, "--dry-run"]) == 2
    assert f"--seeds {seeds}: expected" in capsys.readouterr().err
