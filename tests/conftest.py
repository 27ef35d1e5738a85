"""Shared fixtures: small files in the real formats, and a sandbox for runs.

Tests never touch the user's cache or the repository's results. REPRO_DATA points into a temporary
folder for every test; REPRO_CACHE points to one cache for the whole session (``shared_cache_dir``),
shared by the pytest-xdist workers, so each embedded sample and its features are generated once, as
on a user's machine (generation is atomic and locked, so workers racing for it are safe). A test that
needs an empty cache sets its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import repro.app  # noqa: F401  (registers every paper and dataset, as the commands do)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests train tiny networks in this process; on a shared 2-core machine a second intra-op thread
    made them up to 20x slower (a 1-epoch smoke run, while other jobs shared the machine: 26 s, 1 s with one)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline(monkeypatch):
    """No network: every socket connect and name lookup fails, as on a machine without internet."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable (cut by the test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(autouse=True, scope="session")
def session_cache(request, tmp_path_factory) -> Path:
    """The session's cache folder: under the session's temporary root, which xdist's workers share."""
    root = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # a pytest-xdist worker: its basetemp is one per worker
        root = root.parent
    # kept in the environment: tests import this file both as ``conftest`` and ``tests.conftest``
    os.environ["REPRO_TEST_SHARED_CACHE"] = str(root / "repro-cache")
    return root / "repro-cache"


def shared_cache_dir() -> Path:
    """The session's shared cache (for module-scoped fixtures, which cannot take function fixtures)."""
    return Path(os.environ["REPRO_TEST_SHARED_CACHE"])


def score_without_java(patch: pytest.MonkeyPatch) -> None:
    """Captions scored as when no ``java`` is installed: the Python PTB tokenizer, no METEOR.

    For the default test run's captioning runs: a METEOR JVM spends about 10 s of CPU loading its
    paraphrase tables at each scoring (a smoke run scores the model and its baseline, and a rescore
    both again), which made up a third of those tests' time. What they check is the same without it.
    Java scoring itself is tested in tests/test_caption_metrics.py (the tokenizer against Java's, METEOR
    on Flickr8k), and end to end by the slow runs (tests/test_no_flags.py, the two-process runs).
    """
    patch.setattr("repro.metrics.captions._use_java", lambda use_java: bool(use_java))  # None: no Java


def sandboxed_run(root: Path, argv: list[str]) -> dict:
    """``repro run ARGV`` with its data root, outputs and records under ``root`` and the session's
    shared cache, captions scored without Java (``score_without_java``); its run record."""
    import json

    from repro.app.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(shared_cache_dir()))
        patch.setenv("REPRO_DATA", str(root / "data"))
        patch.delenv("REPRO_RUN_ID", raising=False)
        score_without_java(patch)
        assert main(["run", *argv, "--out", str(root / "out"), "--results", str(root / "results")]) == 0
    [path] = (root / "results" / "runs").glob("*.json")
    return json.loads(path.read_text())


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch, session_cache):
    monkeypatch.setenv("REPRO_CACHE", str(session_cache))
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("REPRO_RUN_ID", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache of this test's own, for a test of what a first use on a new machine does."""
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "fresh-cache"))
    return tmp_path / "fresh-cache"


def write_text_corpus(folder: Path, lines: dict[str, list[str]]) -> Path:
    """Write ptb.{train,valid,test}.txt in Mikolov's format (leading/trailing space per line)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, sentences in lines.items():
        (folder / f"ptb.{split}.txt").write_text("".join(f" {s} \n" for s in sentences), encoding="utf-8")
    return folder


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    train = ["the cat sat on the mat", "the dog sat on the log", "a cat saw a dog", "<unk> sat on a mat"] * 5
    return write_text_corpus(tmp_path / "corpus", {
        "train": train, "valid": ["the cat sat on a log", "a dog saw the cat"],
        "test": ["the dog sat on the mat", "a cat saw zebra"]})


def shared_data(name: str) -> Path:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"real data {folder} not present")
    return folder
