"""A catalogue of bad input, across the command line and the datamodules.

Every case must end the same way: exit code 2, one line ``error: ...`` that names the file (and line)
or the option at fault, no traceback, and nothing written to results/. Most cases run the CLI in this
process (``repro.app.cli.main``, fast); a few run the real command line as a subprocess.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import lightning.pytorch  # noqa: F401  (imported at collection: its log handler must not bind to a test's captured stderr)
import pytest
import torch

from repro.app.cli import main
from repro.errors import UserError

SMOKE = ["--preset", "smoke", "--set", "hidden_size=8", "--set", "kneser_ney_baseline=false", "--max-epochs", "1",
         "--no-progress", "--accelerator", "cpu"]


def ptb_files(root: Path, **contents: bytes) -> Path:
    """A data root whose ptb/ folder holds ptb.{train,valid,test}.txt (small valid defaults)."""
    folder = root / "ptb"
    folder.mkdir(parents=True, exist_ok=True)
    defaults = {"train": b" the cat sat \n a dog ran \n", "valid": b" the dog sat \n", "test": b" a cat ran \n"}
    for split, data in {**defaults, **contents}.items():
        if data is not None:
            (folder / f"ptb.{split}.txt").write_bytes(data)
    return root


def fake_checkpoint(path: Path, paper: str, **config) -> Path:
    from papers.mikolov2010 import PRESETS, Mikolov2010Config
    from repro.config import resolve_config

    saved = vars(resolve_config(Mikolov2010Config, PRESETS, "smoke", ["hidden_size=8", "kneser_ney_baseline=false"],
                                max_epochs=1)) | config
    torch.save({"hyper_parameters": {"paper": paper, "config": saved}}, path)
    return path


def unbuilt_paper() -> str:
    from repro.registry import all_papers

    unbuilt = [entry.name for entry in all_papers() if not entry.built]
    if not unbuilt:
        pytest.skip("every registered paper is built")
    return unbuilt[0]


# (id, function of tmp_path -> argv, pattern the one error line must match)
CASES = [
    ("unknown paper", lambda t: ["run", "mikolov2011"], r"unknown paper 'mikolov2011'; registered papers: mikolov2010"),
    ("paper not built", lambda t: ["run", unbuilt_paper()], r"\w+ is registered but not built yet; built papers: mikolov2010"),
    ("unknown preset", lambda t: ["run", "mikolov2010", "--preset", "fast"],
     r"unknown preset 'fast'; valid presets: paper, cpu, .*sample, smoke"),
    ("bad override key", lambda t: ["run", "mikolov2010", "--set", "hidden=3"], r"--set hidden: unknown config key; valid keys:"),
    ("bad override type", lambda t: ["run", "mikolov2010", "--set", "hidden_size=big"], r"--set hidden_size=big: expected int"),
    ("override not key=value", lambda t: ["run", "mikolov2010", "--set", "hidden_size"], r"--set 'hidden_size': expected key=value"),
    ("override outside its choices", lambda t: ["run", "mikolov2010", "--set", "output_layer=huge"],
     r"--set output_layer=huge: must be one of classes, full"),
    ("dataset the paper does not use", lambda t: ["run", "mikolov2010", "--data", "flickr8k"],
     r"--data flickr8k: this paper trains on ptb, agreement-grammar"),
    ("missing data root", lambda t: ["run", "mikolov2010", "--data", "ptb", "--data-dir", str(t / "nowhere")],
     r"--data ptb: \S*nowhere/ptb/ptb.train.txt not found \(data root from --data-dir\)"),
    ("missing dataset file", lambda t: ["run", "mikolov2010", "--data", "ptb", "--data-dir", str(ptb_files(t, valid=None))],
     r"--data ptb: \S*/ptb/ptb.valid.txt not found"),
    ("truncated file", lambda t: ["run", "mikolov2010", *SMOKE, "--data", "ptb", "--data-dir", str(ptb_files(t))],
     r"\S*/ptb/ptb.train.txt: 2 lines / 6 words, expected 42068 lines / 887521 words .* looks truncated"),
    ("empty file", lambda t: ["run", "mikolov2010", *SMOKE, "--data", "ptb", "--data-dir", str(ptb_files(t, valid=b""))],
     r"\S*/ptb/ptb.valid.txt: file is empty"),
    ("blank line", lambda t: ["run", "mikolov2010", *SMOKE, "--data", "ptb", "--data-dir",
                              str(ptb_files(t, test=b" a cat \n a dog \n\n"))], r"\S*/ptb/ptb.test.txt:3: empty line"),
    ("malformed line", lambda t: ["run", "mikolov2010", *SMOKE, "--data", "ptb", "--data-dir",
                                  str(ptb_files(t, train=b" the cat \n the\tdog \n"))], r"\S*/ptb/ptb.train.txt:2: tab character"),
    ("non-UTF-8 bytes", lambda t: ["run", "mikolov2010", *SMOKE, "--data", "ptb", "--data-dir",
                                   str(ptb_files(t, train=b" the cat \n a \xff\xfe dog \n"))],
     r"\S*/ptb/ptb.train.txt:2: not valid UTF-8 \(invalid start byte at byte 3\)"),
    ("checkpoint from another paper", lambda t: ["run", "mikolov2010", *SMOKE, "--resume",
                                                 str(fake_checkpoint(t / "other.ckpt", "sutskever2014"))],
     r"--resume \S*other.ckpt: a checkpoint of 'sutskever2014', not 'mikolov2010'"),
    ("checkpoint from an incompatible config", lambda t: ["run", "mikolov2010", *SMOKE, "--resume",
                                                          str(fake_checkpoint(t / "big.ckpt", "mikolov2010", hidden_size=999))],
     r"--resume \S*big.ckpt: checkpoint has an incompatible config \(hidden_size: saved 999 vs now 8\)"),
    ("unreadable checkpoint", lambda t: ["run", "mikolov2010", *SMOKE, "--resume", str(junk(t / "junk.ckpt"))],
     r"--resume \S*junk.ckpt: not a readable checkpoint"),
    ("checkpoint that does not exist", lambda t: ["run", "mikolov2010", *SMOKE, "--resume", str(t / "gone.ckpt")],
     r"--resume \S*gone.ckpt: no such run directory or checkpoint"),
    ("run directory without a checkpoint", lambda t: ["run", "mikolov2010", *SMOKE, "--resume", str(t)],
     r"--resume \S+: no checkpoints/last.ckpt \(nor hpc_ckpt_N.ckpt\) in that run directory"),
    ("nothing to resume", lambda t: ["run", "mikolov2010", *SMOKE, "--resume", "--out", str(t / "empty")],
     r"--resume last: no checkpoint of mikolov2010 preset smoke on agreement-grammar under \S*empty/mikolov2010"),
    ("unwritable --out", lambda t: ["run", "mikolov2010", *SMOKE, "--out", str(junk(t / "a-file"))],
     r"--out \S*a-file/mikolov2010: not writable"),
    ("unwritable --results", lambda t: ["run", "mikolov2010", *SMOKE, "--results", str(junk(t / "a-file"))],
     r"--results \S*a-file/runs: not writable"),
    ("unknown precision", lambda t: ["run", "mikolov2010", *SMOKE, "--precision", "8"],
     r"--precision 8: Precision '8' is invalid"),
    ("float16 without a GPU", lambda t: ["run", "mikolov2010", *SMOKE, "--precision", "16-mixed"],
     r"--precision 16-mixed: float16 mixed precision needs a CUDA GPU"),
    ("a GPU that is not there", lambda t: ["run", "mikolov2010", *SMOKE, "--accelerator", "gpu"] if not torch.cuda.is_available()
     else pytest.skip("this machine has a GPU"), r"--accelerator gpu: No supported gpu backend found"),
    ("batch that does not split over the processes", lambda t: ["run", "mikolov2010", *SMOKE, "--devices", "3"],
     r"--set batch_size=16: this paper's batch_size is the whole run's batch and must divide evenly over the 3 processes"),
    ("sample from a missing checkpoint", lambda t: ["sample", "--ckpt", str(t / "none.ckpt")], r"--ckpt \S*none.ckpt: file not found"),
    ("sample from a foreign file", lambda t: ["sample", "--ckpt", str(junk(t / "junk.ckpt"))],
     r"--ckpt \S*junk.ckpt: not a readable checkpoint"),
    ("unknown dataset to prepare", lambda t: ["data", "prepare", "nope"], r"unknown dataset 'nope'; known datasets: "),
    # numbers out of range: named with where they came from, before anything is built
    ("zero hidden units", lambda t: ["run", "mikolov2010", *SMOKE, "--set", "hidden_size=0"],
     r"--set hidden_size: hidden_size=0 must be at least 1"),
    ("negative batch size", lambda t: ["run", "mikolov2010", *SMOKE, "--set", "batch_size=-4"],
     r"--set batch_size: batch_size=-4 must be at least 1"),
    ("zero learning rate", lambda t: ["run", "mikolov2010", *SMOKE, "--set", "learning_rate=0"],
     r"--set learning_rate: learning_rate=0.0 must be greater than 0"),
    ("dropout of one", lambda t: ["run", "vinyals2014", "--preset", "smoke", "--set", "dropout=1"],
     r"--set dropout: dropout=1.0 must be less than 1"),
    ("infinite clipping", lambda t: ["run", "mikolov2010", *SMOKE, "--set", "gradient_clip_val=inf"],
     r"--set gradient_clip_val: gradient_clip_val=inf must be a finite number"),
    ("zero epochs", lambda t: ["run", "mikolov2010", *SMOKE[:-3], "--max-epochs", "0"], r"--max-epochs 0: must be at least 1"),
    ("negative device count", lambda t: ["run", "mikolov2010", *SMOKE, "--devices", "-2"],
     r"--devices -2: expected a positive number of devices, a list of device indices such as 0,1, or auto"),
    ("zero devices", lambda t: ["run", "mikolov2010", *SMOKE, "--devices", "0"], r"--devices 0: expected a positive number"),
    ("zero nodes", lambda t: ["run", "mikolov2010", *SMOKE, "--nodes", "0"], r"--nodes 0: must be at least 1"),
    ("negative seed", lambda t: ["run", "mikolov2010", *SMOKE, "--seed", "-1"], r"--seed -1: must be at least 0"),
    ("checkpoint every 0 steps", lambda t: ["run", "mikolov2010", *SMOKE, "--checkpoint-every-n-steps", "0"],
     r"--checkpoint-every-n-steps 0: must be at least 1"),
    ("checkpoint every negative minutes", lambda t: ["run", "mikolov2010", *SMOKE, "--checkpoint-every-minutes", "-5"],
     r"--checkpoint-every-minutes -5.0: must be greater than 0"),
    ("accumulating 0 batches", lambda t: ["run", "mikolov2010", *SMOKE, "--accumulate-grad-batches", "0"],
     r"--accumulate-grad-batches 0: must be at least 1"),
    ("beam of 0", lambda t: ["caption", "--ckpt", str(t / "x.ckpt"), "a.jpg", "--beam-size", "0"],
     r"--beam-size 0: must be at least 1"),
    ("no sentences to sample", lambda t: ["sample", "--ckpt", str(t / "x.ckpt"), "--sentences", "0"],
     r"--sentences 0: must be at least 1"),
    ("zero temperature", lambda t: ["sample", "--ckpt", str(t / "x.ckpt"), "--temperature", "0"],
     r"--temperature 0.0: must be greater than 0"),
    ("a benchmark that does not exist", lambda t: ["bench", "nope", "--quick"], r"bench nope: no such benchmark; available: "),
    # refused, not guessed: each would otherwise exit 0 having done nothing useful, or leave a half-run behind
    ("a corpus too small for one batch", lambda t: ["run", "mikolov2010", *SMOKE, "--data", "text", "--data-dir",
                                                    str(text_corpus(t / "tiny", "a b\n", "a\n", "b\n"))],
     r"text: training made no step: the training split gives no batch of batch_size=16"),
    ("a network too large to allocate", lambda t: ["run", "mikolov2010", *SMOKE[:2], "--set", "hidden_size=3000000",
                                                   *SMOKE[4:]],
     r"building mikolov2010's model: not enough memory \(.*\); its sizes: .*hidden_size=3000000"),
    ("an unreadable run record", lambda t: ["table", "--results", str(records_folder(t / "res", b"{not json"))],
     r"\S*res/runs/bad.json: unreadable run record .*the pages were left untouched"),
    ("a record that is not a run record", lambda t: ["table", "--results", str(records_folder(t / "res", b"[1, 2]"))],
     r"\S*res/runs/bad.json: unreadable run record \(not a run record"),
    ("a results folder without records", lambda t: ["table", "--results", str(t / "reslts")],
     r"--results \S*reslts: no run records in \S*reslts/runs \(a mistyped folder\?\)"),
    ("a figure that cannot be written", lambda t: ["caption", "--ckpt", str(t / "x.ckpt"), "a.jpg", "--figure",
                                                   str(junk(t / "a-file") / "figure.png")],
     r"--figure \S*a-file: not writable \(\S*a-file is a file, not a folder\)"),
]


def text_corpus(folder: Path, train: str, valid: str, test: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{split}.txt").write_text(text, encoding="utf-8")
    return folder


def records_folder(folder: Path, bad: bytes) -> Path:
    """A results folder with one bad record and a page that must stay as it is."""
    (folder / "runs").mkdir(parents=True)
    (folder / "runs" / "bad.json").write_bytes(bad)
    (folder / "README.md").write_text("the page as it was\n")
    return folder


def junk(path: Path) -> Path:
    path.write_bytes(b"this is not a checkpoint\n")
    return path


def assert_one_line_error(stderr: str, pattern: str) -> None:
    """The error is one line, the last one (Lightning may have logged its INFO lines before it)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert lines and lines[-1].startswith("error: ") and stderr.endswith("\n"), stderr
    assert [line for line in lines if not line.startswith("INFO: ")] == lines[-1:], stderr
    assert re.search(pattern, lines[-1]), f"{pattern!r} not in {lines[-1]!r}"


def nothing_in_results(results: Path) -> bool:
    return not results.exists() or not any(path.is_file() for path in results.rglob("*"))


@pytest.mark.parametrize("argv, pattern", [pytest.param(argv, pattern, id=name) for name, argv, pattern in CASES])
def test_bad_input_is_one_line_naming_the_culprit(argv, pattern, tmp_path, capsys):
    args = argv(tmp_path)
    if args[0] == "run":
        args = [*args, "--results", str(tmp_path / "results")] if "--results" not in args else args
    out_given = "--out" in args
    if args[0] == "run" and not out_given:
        args += ["--out", str(tmp_path / "out")]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, pattern)
    assert nothing_in_results(tmp_path / "results")
    assert not (tmp_path / "out").exists() or out_given  # no run directory, not even an empty one
    assert not list(tmp_path.rglob("*.ckpt")) or "ckpt" in " ".join(args)  # nothing trained
    if args[0] == "table":  # the pages are left as they were
        assert [p.name for p in Path(args[args.index("--results") + 1]).glob("*.md")] in ([], ["README.md"])


def parallel_files(root: Path, **contents: str | None) -> Path:
    """A data root whose parallel/ folder holds {train,valid,test}.{en,fr} (one aligned pair each by default)."""
    folder = root / "parallel"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        for language, text in (("en", "a cat\n"), ("fr", "un chat\n")):
            data = contents.get(f"{split}_{language}", text)
            if data is not None:
                (folder / f"{split}.{language}").write_text(data, encoding="utf-8")
    return root


def built(paper: str) -> bool:
    from repro.registry import get_paper

    return get_paper(paper).built


TRANSLATION_CASES = [
    ("parallel files of different lengths", lambda t: parallel_files(t, train_en="a cat\nthe dog\nhello\n"),
     r"\S*/parallel/train.en has 3 lines but \S*/parallel/train.fr has 1: parallel files must be line-aligned"),
    ("an empty validation split", lambda t: parallel_files(t, valid_en="", valid_fr=""),
     r"parallel: the valid split is empty"),
    ("a missing side of a parallel corpus", lambda t: parallel_files(t, valid_fr=None),
     r"\S*/parallel/valid.fr \(or .gz\) not found: no 'fr' side for the valid split"),
]


@pytest.mark.parametrize("data, pattern", [pytest.param(data, pattern, id=name) for name, data, pattern in TRANSLATION_CASES])
def test_bad_parallel_text_is_named(data, pattern, tmp_path, capsys):
    if not built("sutskever2014"):
        pytest.skip("sutskever2014 is not built")
    argv = ["run", "sutskever2014", "--preset", "smoke", "--data", "parallel", "--data-dir", str(data(tmp_path / "data")),
            "--no-progress", "--accelerator", "cpu", "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")]
    assert main(argv) == 2
    assert_one_line_error(capsys.readouterr().err, pattern)
    assert nothing_in_results(tmp_path / "results")


def multi30k(root: Path, **options) -> Path:
    """A data root whose multi30k/ folder holds Multi30k task 1 in the official file names (tiny)."""
    from tests.test_translation_corpora import write_multi30k

    write_multi30k(root / "multi30k", **options)
    return root


# (id, function of the data root -> (data root, extra arguments), pattern); run with --data multi30k
MULTI30K_CASES = [
    ("a test set without one of the languages", lambda t: (multi30k(t), ["--set", "source_language=cs", "--set",
                                                                         "target_language=en", "--set", "test_set=test_2017_flickr"]),
     r"--set test_set=test_2017_flickr: multi30k's test_2017_flickr has no 'cs' side \(it exists in en, de, fr\); "
     r"test sets with cs and en: test_2016_flickr, test_2018_flickr"),
    ("an unknown test set", lambda t: (multi30k(t), ["--set", "test_set=test_2019"]),
     r"--set test_set=test_2019: multi30k has no such test set; its test sets: test_2016_flickr, test_2017_flickr, "
     r"test_2017_mscoco, test_2018_flickr"),
    ("a language Multi30k does not have", lambda t: (multi30k(t), ["--set", "source_language=ja"]),
     r"unknown language pair ja-fr for multi30k: it has any two of en, de, fr, cs"),
    ("a missing file of the chosen pair", lambda t: (multi30k(t, leave_out=("val.de",)), ["--set", "source_language=de",
                                                                                          "--set", "target_language=en"]),
     r"\S*/multi30k/val.de \(or .gz\) not found: no 'de' side for the valid split; languages present for 'val': cs, en, fr"),
    ("a corpus folder that is not there", lambda t: (multi30k(t), ["--set", "corpus_dir=multi30k_en_fr"]),
     r"--set corpus_dir=multi30k_en_fr: \S*/multi30k_en_fr is not a folder"),
    ("Multi30k not prepared", lambda t: (t, []),
     r"multi30k: \S*/multi30k not found; run `python -m repro data prepare multi30k`, or name a copy elsewhere "
     r"with --set corpus_dir=FOLDER"),
]


@pytest.mark.parametrize("data, pattern", [pytest.param(data, pattern, id=name) for name, data, pattern in MULTI30K_CASES])
def test_bad_multi30k_choices_are_named(data, pattern, tmp_path, capsys):
    if not built("sutskever2014"):
        pytest.skip("sutskever2014 is not built")
    (tmp_path / "data").mkdir()
    root, extra = data(tmp_path / "data")
    argv = ["run", "sutskever2014", "--preset", "smoke", *extra, "--data", "multi30k", "--data-dir", str(root),
            "--no-progress", "--accelerator", "cpu", "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")]
    assert main(argv) == 2
    assert_one_line_error(capsys.readouterr().err, pattern)
    assert nothing_in_results(tmp_path / "results")


def junk_zip(path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("dataset-master/README.md", "not the data\n")
    return path


# `data prepare` with the network cut (every socket connect and name lookup fails)
PREPARE_CASES = [
    ("Multi30k offline", lambda t: ["data", "prepare", "multi30k", "--data-dir", str(t)],
     r"multi30k: could not download https://raw.githubusercontent.com/multi30k/dataset/\w+/data/task1/raw/train.en.gz "
     r"\(.*\)\. Put the files of https://github.com/multi30k/dataset's data/task1/raw/ .* in \S*/multi30k/, or fetch "
     r"\S*\.zip and run `python -m repro data prepare multi30k --archive FILE.zip`"),
    ("Tatoeba offline", lambda t: ["data", "prepare", "tatoeba", "--data-dir", str(t)],
     r"tatoeba: could not download https://www.manythings.org/anki/fra-eng.zip .*Put its fra.txt in \S*/tatoeba/"),
    ("Multi30k archive that is not there", lambda t: ["data", "prepare", "multi30k", "--archive", str(t / "gone.zip")],
     r"--archive \S*gone.zip: file not found"),
    ("Multi30k archive that is not an archive", lambda t: ["data", "prepare", "multi30k", "--archive", str(junk(t / "x.zip"))],
     r"--archive \S*x.zip: neither a zip nor a tar archive"),
    ("Multi30k archive without its files", lambda t: ["data", "prepare", "multi30k", "--archive", str(junk_zip(t / "a.zip"))],
     r"--archive \S*a.zip: holds none of Multi30k's task 1 files \(data/task1/raw/"),
    ("Tatoeba archive without fra.txt", lambda t: ["data", "prepare", "tatoeba", "--archive", str(junk_zip(t / "t.zip"))],
     r"\S*t.zip: does not contain fra.txt"),
]


@pytest.mark.parametrize("argv, pattern", [pytest.param(argv, pattern, id=name) for name, argv, pattern in PREPARE_CASES])
def test_bad_prepare_is_one_line(argv, pattern, tmp_path, capsys, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable (cut by the test)")

    for owner, name in ((socket.socket, "connect"), (socket, "create_connection"), (socket, "getaddrinfo")):
        monkeypatch.setattr(owner, name, refuse)
    args = argv(tmp_path)
    assert main(args if "--data-dir" in args else [*args, "--data-dir", str(tmp_path / "root")]) == 2
    assert_one_line_error(capsys.readouterr().err, pattern)
    assert not (tmp_path / "root").exists() and not (tmp_path / "multi30k").exists()


def flickr30k(root: Path, corrupt: bool = False, missing: bool = False, json_text: str | None = None) -> Path:
    """A data root with a 6-image flickr30k in Karpathy's format (2 images per split)."""
    import json

    from PIL import Image

    folder, images = root / "flickr30k", root / "flickr30k" / "flickr30k-images"
    images.mkdir(parents=True, exist_ok=True)
    entries = []
    for number, split in enumerate(["train", "train", "val", "val", "test", "test"]):
        name = f"{number}.jpg"
        if not missing:
            Image.new("RGB", (32, 32), (40 * number, 90, 200)).save(images / name)
        entries.append({"filename": name, "split": split, "sentences": [{"raw": "a blue square on the grass"},
                                                                           {"raw": "a small square"}]})
    if corrupt:
        (images / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "dataset_flickr30k.json").write_text(json_text if json_text is not None else json.dumps({"images": entries}))
    return root


CAPTION_CASES = [
    ("caption file that is not JSON", lambda t: (flickr30k(t, json_text="{images: oops"), []),
     r"\S*/flickr30k/dataset_flickr30k.json: not a JSON file"),
    ("images listed but missing", lambda t: (flickr30k(t, missing=True), []),
     r"flickr30k: none of its 6 listed images were found \(e.g. \S*/flickr30k-images/0.jpg\)"),
    ("a vocabulary that comes out empty", lambda t: (flickr30k(t), ["--set", "min_word_count=1000"]),
     r"flickr30k training captions \(2 images, --set min_word_count=1000\): the vocabulary is empty"),
]


@pytest.mark.parametrize("data, pattern", [pytest.param(data, pattern, id=name) for name, data, pattern in CAPTION_CASES])
def test_bad_caption_data_is_named(data, pattern, tmp_path, capsys):
    if not built("vinyals2014"):
        pytest.skip("vinyals2014 is not built")
    root, extra = data(tmp_path / "data")
    argv = ["run", "vinyals2014", "--preset", "smoke", *extra, "--data", "flickr30k", "--data-dir", str(root),
            "--no-progress", "--accelerator", "cpu", "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")]
    assert main(argv) == 2
    assert_one_line_error(capsys.readouterr().err, pattern)
    assert nothing_in_results(tmp_path / "results")


def test_a_corrupt_image_is_named(tmp_path):
    """(A caption run skips unreadable images with a warning that lists them; the reader names the file.)"""
    if not built("vinyals2014"):
        pytest.skip("vinyals2014 is not built")
    from repro.captioning.images import load_image

    flickr30k(tmp_path, corrupt=True)
    with pytest.raises(UserError, match=r"\S*/flickr30k-images/1.jpg: corrupt or truncated image"):
        load_image(tmp_path / "flickr30k" / "flickr30k-images" / "1.jpg")


# Datamodule-level input the command line cannot reach with a standard dataset name.
def test_a_word_outside_the_vocabulary_without_unk_names_file_and_line(tmp_path):
    from datamodules.language_modeling.ptb import PennTreebankDataModule

    folder = ptb_files(tmp_path, train=b" a b \n", valid=b" a b \n a c \n") / "ptb"
    with pytest.raises(UserError, match=r"ptb.valid.txt:2: word 'c' is not in the training vocabulary"):
        PennTreebankDataModule(folder, check_standard_ptb=False).vocabulary


@pytest.mark.parametrize("argv, pattern", [
    (["run", "nope"], r"unknown paper 'nope'"),
    (["run", "mikolov2010", "--preset", "smoke", "--data", "ptb", "--data-dir", "DATA"], r"ptb.train.txt:2: not valid UTF-8"),
])
def test_bad_input_from_the_real_command_line(argv, pattern, tmp_path):
    ptb_files(tmp_path / "data", train=b" the cat \n a \xff dog \n")
    argv = [part.replace("DATA", str(tmp_path / "data")) for part in argv]
    result = subprocess.run([sys.executable, "-m", "repro", *argv, "--results", str(tmp_path / "results"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2
    assert_one_line_error(result.stderr, pattern)
    assert nothing_in_results(tmp_path / "results")
