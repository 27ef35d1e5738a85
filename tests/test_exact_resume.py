"""A run resumed from any checkpoint ends exactly as the run that was never interrupted.

For each paper whose training carries state beyond the weights, one uninterrupted run of a tiny config
writes last.ckpt after every step (``--checkpoint-every-n-steps 1``); a copy of the checkpoints folder is
kept at every save. The run is then resumed, in the same run directory, from the copies at several
steps: mid-epoch, at the end of an epoch, and where a periodic update falls (mikolov2010's L2 decay
every 10th update). Each resumed run must end with the reference's weights, optimizer and schedule
state, record metrics and per-epoch history to the last bit.

The state that has to travel: the random generators (dropout is on in every case), the data position
mid-epoch (the LM's chunks, the translation batch sampler), the LM's carried hidden state and its
epoch's training sums, mikolov2010's L2 decay and validation-driven schedule (halving starts within the
run here: ``min_improvement`` is set high), sutskever2014's step-wise LambdaLR (its decay starts
mid-run here), venugopalan2014's StepLR (SGD, halved every 50 steps), the captioners' training sums of
the epoch (train/ppl_epoch), and for xu2015 the hard-attention moving-average baseline.

The captioners are scored here with the Python tokenizer and no METEOR: each Java scoring starts a JVM
that loads METEOR's paraphrase tables (about 10 s, several times a resumed run), and what is compared
(BLEU, ROUGE-L, CIDEr-D, perplexity, to the last bit) is as strict without it. Java scoring is tested in
tests/test_caption_metrics.py, and a whole run with it in the no-flag and distributed tests.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import shared_cache_dir
from test_distributed_training import like_a_subprocess, records

from repro.app.cli import main
from repro.training.trainer import AtomicCheckpointIO

COMMON = ["--accelerator", "cpu", "--devices", "1", "--no-progress", "--checkpoint-every-n-steps", "1"]

# 3 epochs of about 50 steps; dropout so the random generators matter; min_improvement 1.5 starts the
# schedule's halving after the first epoch and stops the run after the next (the toolkit's schedule)
LM = ["mikolov2010", "--preset", "smoke", "--set", "hidden_size=8", "--set", "num_classes=4",
      "--set", "batch_size=64", "--set", "dropout=0.3", "--set", "kneser_ney_baseline=false",
      "--set", "min_improvement=1.05", "--max-epochs", "3"]

# 2 epochs; the rate decays from epoch 1, every half epoch (a LambdaLR stepped every step); dropout on
TRANSLATOR = ["sutskever2014", "--preset", "smoke", "--set", "hidden_size=8", "--set", "embedding_size=8",
              "--set", "dropout=0.2", "--set", "batch_size=128", "--set", "training_epochs=2",
              "--set", "decay_after_epochs=1", "--set", "decay_every_epochs=0.5", "--set", "beam_size=1",
              "--max-epochs", "2"]

# Hard attention on a 20-image Flickr8k-format fixture (tests/test_captions.py): 12 training images, 60
# captions, 7 batches an epoch; its sampled locations and moving-average REINFORCE baseline are part of
# training, and dropout is on
ATTENTION = ["xu2015", "--preset", "smoke", "--data", "flickr8k", "--set", "attention=hard", "--set", "dropout=0.3",
             "--set", "batch_size=8", "--set", "min_word_count=1", "--set", "image_size=32",
             "--set", "learning_rate=0.01", "--max-epochs", "3"]


def copy_linking_checkpoints(source: Path, target: Path) -> None:
    """Copy a folder, hard-linking its checkpoints: each is written once and then only ever replaced
    (``AtomicCheckpointIO`` renames a new file over it), so a link keeps the old one for no extra disk.
    xu2015's smoke checkpoint is 43 MB (1,280-wide features, Adam's moments); copied, the snapshots of
    one test took 4.5 GB."""
    def link_or_copy(src, dst):
        return os.link(src, dst) if src.endswith(".ckpt") else shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def snapshots_of_every_save(patch, snapshots: Path, only_step: int | None = None) -> None:
    """After each write of last.ckpt (at ``only_step`` alone, when given), keep the checkpoints folder
    (and config.json) in snapshots/step-N."""
    real_save = AtomicCheckpointIO.save_checkpoint

    def save(self, checkpoint, path, storage_options=None):
        real_save(self, checkpoint, path, storage_options)
        path = Path(path)
        if path.name == "last.ckpt" and only_step in (None, checkpoint["global_step"]):
            target = snapshots / f"step-{checkpoint['global_step']}"
            shutil.rmtree(target, ignore_errors=True)
            copy_linking_checkpoints(path.parent, target / "checkpoints")
            shutil.copy(path.parent.parent / "config.json", target / "config.json")

    patch.setattr(AtomicCheckpointIO, "save_checkpoint", save)


def run(args: list[str], root: Path, results: Path, resume: Path | None = None, snapshots: Path | None = None,
        only_step: int | None = None) -> dict:
    with pytest.MonkeyPatch.context() as patch, like_a_subprocess():
        patch.setenv("REPRO_CACHE", str(shared_cache_dir()))
        patch.setenv("REPRO_DATA", str(root / "data"))
        patch.setenv("REPRO_RUN_ID", "exact-resume")
        patch.setattr("repro.metrics.captions._use_java", lambda use_java: bool(use_java))  # None: no Java
        if snapshots is not None:
            snapshots_of_every_save(patch, snapshots, only_step)
        extra = ["--resume", str(resume)] if resume is not None else []
        assert main(["run", *args, *COMMON, *extra, "--out", str(root / "out"), "--results", str(results)]) == 0
    (record,) = records(results)
    return record


def position(checkpoint: Path) -> tuple[int, int, int]:
    """(global step, epoch, batches of that epoch done) of a checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    progress = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    return state["global_step"], state["epoch"], progress


def training_state(checkpoint: Path) -> dict:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return {key: state[key] for key in ("state_dict", "optimizer_states", "lr_schedulers", "global_step", "epoch")}


def assert_identical(actual, expected, where: str = "") -> None:
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and actual.dtype == expected.dtype and torch.equal(actual, expected), where
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            assert_identical(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for index, (mine, theirs) in enumerate(zip(actual, expected)):
            assert_identical(mine, theirs, f"{where}[{index}]")
    else:
        assert actual == expected, where


def check_resumes(paper: str, args: list[str], choose, tmp_path: Path) -> list[tuple[int, int, int]]:
    """Run the reference, then resume from the steps ``choose(positions)`` picks; returns them."""
    snapshots = tmp_path / "snapshots"
    reference = run(args, tmp_path, tmp_path / "results-reference", snapshots=snapshots)
    run_dir = tmp_path / "out" / paper / "exact-resume"
    final = training_state(run_dir / "checkpoints" / "last.ckpt")
    folders = {position(folder / "checkpoints" / "last.ckpt"): folder for folder in snapshots.iterdir()}
    positions = sorted(folders)
    chosen = choose(positions)
    batches_per_epoch = max(done for _, _, done in positions)
    print(f"{paper}: {len(positions)} checkpoints; resumed at (step, epoch, batch) {chosen}; "
          f"reference history {reference['history']}")
    for place, folder in folders.items():  # only the chosen ones are needed from here on
        if place not in chosen:
            shutil.rmtree(folder)
    for step, epoch, done in chosen:
        shutil.rmtree(run_dir)
        copy_linking_checkpoints(snapshots / f"step-{step}", run_dir)
        resumed_snapshots = tmp_path / f"snapshots-resumed-{step}"
        resumed = run(args, tmp_path, tmp_path / f"results-{step}", resume=run_dir, snapshots=resumed_snapshots,
                      only_step=final["global_step"])
        where = f"{paper} resumed at step {step} (epoch {epoch}, batch {done})"
        assert resumed["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
        assert resumed["metrics"] == reference["metrics"], where  # bit for bit
        assert resumed["global_step"] == reference["global_step"], where
        # the resumed run's logs (started empty here) hold the epochs from the resumed one on: each epoch's
        # validation and training metrics, and the rate where the segment logged a step (every 20 steps)
        by_epoch = {entry["epoch"]: entry for entry in reference["history"]}
        first = epoch + 1 if done == batches_per_epoch else epoch  # an end-of-epoch checkpoint starts the next
        assert [entry["epoch"] for entry in resumed["history"]] == sorted(by_epoch)[first:], where
        for entry in resumed["history"]:
            expected = by_epoch[entry["epoch"]]
            assert {key: expected[key] for key in entry} == entry, where
            assert {key for key in expected if key != "lr"} <= entry.keys(), where
        # the state at the reference's last checkpoint (venugopalan2014's uninterrupted run writes none after
        # its last epoch's validation, a resumed one does: compared at the same step)
        same_step = resumed_snapshots / f"step-{final['global_step']}" / "checkpoints" / "last.ckpt"
        assert_identical(training_state(same_step), final, where)
        shutil.rmtree(resumed_snapshots)
    return chosen


def mid_epoch(positions, batches_per_epoch: int) -> list:
    return [p for p in positions if 0 < p[2] < batches_per_epoch]


def test_mikolov2010_resumes_exactly_from_any_step(tmp_path):
    def choose(positions):
        batches = max(done for _, _, done in positions)
        middle = mid_epoch(positions, batches)
        on_decay = [p for p in middle if p[0] % 10 == 0]  # the L2 decay's update
        end_of_epoch = [p for p in positions if p[2] == batches and p[1] == 0]
        return [on_decay[1], end_of_epoch[0], next(p for p in middle if p[1] == 1 and p[0] % 10 == 7),
                [p for p in on_decay if p[1] == 1][-1]]

    chosen = check_resumes("mikolov2010", LM, choose, tmp_path)
    assert any(step % 10 == 0 for step, _, _ in chosen)


def mid_end_mid(first, from_end: int):
    """Resume points: a mid-epoch step of the first epoch (``first(count of them)``), the first epoch's
    end, and a mid-epoch step ``from_end`` from the second epoch's end."""
    def choose(positions):
        batches = max(done for _, _, done in positions)
        middle = mid_epoch(positions, batches)
        end_of_epoch = [p for p in positions if p[2] == batches and p[1] == 0]
        return [middle[first(len(middle))], end_of_epoch[0], [p for p in middle if p[1] == 1][-from_end]]
    return choose


@pytest.mark.slow
def test_sutskever2014_resumes_exactly_from_any_step(tmp_path):
    check_resumes("sutskever2014", TRANSLATOR, mid_end_mid(lambda count: count // 4, 2), tmp_path)


@pytest.mark.slow
def test_xu2015_hard_attention_resumes_exactly_from_any_step(tmp_path):
    from test_captions import write_flickr8k

    write_flickr8k(tmp_path / "data", per_split=(12, 4, 4))

    check_resumes("xu2015", ATTENTION, mid_end_mid(lambda count: 2, 2), tmp_path)


@pytest.mark.slow
def test_venugopalan2014_resumes_exactly_from_any_step(tmp_path):
    """The embedded motion sample; SGD with its StepLR halving the rate every 50 steps, so resumes fall between decays."""
    args = ["venugopalan2014", "--preset", "smoke", "--set", "optimizer=sgd", "--set", "batch_size=20",
            "--set", "lr_decay_every_steps=50", "--set", "lr_decay=0.5", "--max-epochs", "2"]

    check_resumes("venugopalan2014", args, mid_end_mid(lambda count: count // 3, 3), tmp_path)
