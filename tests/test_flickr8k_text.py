import json

import pytest

from datamodules.captioning.flickr8k_text import read_captions, split_references
from repro.app.cli import main
from repro.errors import UserError


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "data" / "flickr8k_text"
    folder.mkdir(parents=True)
    lines = []
    for image in ("a.jpg", "b.jpg", "c.jpg"):
        lines += [f"{image}#{k}\tA dog runs on the {word} grass ." for k, word in enumerate(["green", "wet", "long"])]
    (folder / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    for split, images in (("train", ["a.jpg"]), ("dev", ["b.jpg"]), ("test", ["b.jpg", "c.jpg"])):
        name = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}[split]
        (folder / name).write_text("\n".join(images) + "\n")
    return folder


def test_reads_captions_per_image_in_order(bundle):
    references = split_references(bundle, "test")
    assert list(references) == ["b.jpg", "c.jpg"] and references["c.jpg"][1] == "A dog runs on the wet grass ."


def test_malformed_line_names_file_and_line(bundle):
    path = bundle / "Flickr8k.token.txt"
    path.write_text(path.read_text() + "d.jpg A caption without tab\n")
    with pytest.raises(UserError, match=r"Flickr8k.token.txt:10: expected '<image>.jpg#<k><TAB>caption'"):
        read_captions(path)


def test_split_naming_unknown_images_is_an_error(bundle):
    (bundle / "Flickr_8k.testImages.txt").write_text("b.jpg\nzzz.jpg\n")
    with pytest.raises(UserError, match="1 image\\(s\\) have no captions .* zzz.jpg"):
        split_references(bundle, "test")


def test_human_agreement_writes_a_vinyals2014_record(bundle, tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)  # the Java-free path: fast, METEOR unavailable
    assert main(["human-agreement", "flickr8k", "--data-dir", str(bundle.parent), "--results", str(tmp_path / "r")]) == 0
    record = json.loads(next((tmp_path / "r" / "runs").glob("*.json")).read_text())
    assert record["paper"] == "vinyals2014" and record["scoring"]["tokenizer"] == "ptb-python"
    assert "test/meteor" not in record["metrics"] and 0 < record["metrics"]["test/bleu_1"] <= 100
