"""The official Flickr8k text bundle: ``Flickr8k.token.txt`` and the train/dev/test image lists.

Hodosh, Young, Hockenmaier 2013, "Framing image description as a ranking task", JAIR 47. The
official splits (6000/1000/1000 images) are the ones Karpathy's ``dataset_flickr8k.json`` uses.
This reader is shared by everything that needs Flickr8k captions (human agreement, and the caption
datamodule through the ``flickr8k`` entry that ``datamodules.captioning.captions`` registers).
"""

from __future__ import annotations

import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

from datamodules.catalog import Source, download, numbered_lines, unzip
from repro.errors import UserError

TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}
TEXT_BUNDLE = Source(
    url="https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip",
    description="Flickr8k_text.zip (the official text bundle, originally from the University of Illinois "
                "request form); images: Flickr8k_Dataset.zip from the same release",
)


def read_captions(path: Path) -> dict[str, list[str]]:
    """``<image>.jpg#<k><TAB>caption`` lines -> image name -> its captions in order of k."""
    captions: dict[str, list[str]] = defaultdict(list)
    for line_number, line in numbered_lines(path):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        image, hash_sign, index = key.partition("#")
        if not tab or not hash_sign or not index.isdigit() or not caption.strip():
            raise UserError(f"{path}:{line_number}: expected '<image>.jpg#<k><TAB>caption', got {line[:60]!r}")
        captions[image].append(caption.strip())
    if not captions:
        raise UserError(f"{path}: no captions found")
    return dict(captions)


def read_split(folder: Path, split: str) -> list[str]:
    if split not in SPLIT_FILES:
        raise UserError(f"unknown Flickr8k split {split!r}; splits: {', '.join(SPLIT_FILES)}")
    return [line.strip() for _, line in numbered_lines(folder / SPLIT_FILES[split]) if line.strip()]


def split_references(folder: Path, split: str) -> dict[str, list[str]]:
    """The captions of every image in an official split; a listed image without captions is an error."""
    captions = read_captions(folder / TOKEN_FILE)
    images = read_split(folder, split)
    unknown = [image for image in images if image not in captions]
    if unknown:
        raise UserError(f"{folder / SPLIT_FILES[split]}: {len(unknown)} image(s) have no captions in "
                        f"{TOKEN_FILE}, e.g. {unknown[0]}")
    return {image: captions[image] for image in images}


IMAGES_ARCHIVE = Source(
    url="https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip",
    description="Flickr8k_Dataset.zip: the 8,091 JPEGs, unpacked to <data root>/Flicker8k_Dataset/ (sic)",
)


def _unpack(archive: Path, data_root: Path) -> None:
    """The text bundle goes to <root>/flickr8k_text/, the images zip to <root>/Flicker8k_Dataset/."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            images = sum(name.lower().endswith(".jpg") for name in bundle.namelist())
    except (zipfile.BadZipFile, FileNotFoundError) as error:
        raise UserError(f"--archive {archive}: not a readable zip archive ({error})") from None
    if images:
        unzip(archive, data_root)  # the official zip holds Flicker8k_Dataset/*.jpg
        print(f"flickr8k: unpacked {images} images into {data_root}")
        return
    unzip(archive, data_root / "flickr8k_text", [TOKEN_FILE, *SPLIT_FILES.values()])
    print(f"flickr8k: prepared {data_root / 'flickr8k_text'}")


def prepare_flickr8k(data_root: Path, archive: Path | None) -> None:
    """Captions and splits (``Flickr8k_text.zip``) and images (``Flickr8k_Dataset.zip``): a local
    archive of either, or both downloaded."""

    if archive is not None:
        _unpack(archive, data_root)
        return
    with tempfile.TemporaryDirectory() as scratch:
        for source in (TEXT_BUNDLE, IMAGES_ARCHIVE):
            try:
                print(f"flickr8k: downloading {source.url}", flush=True)
                fetched = download(source.url, Path(scratch) / Path(source.url).name)
            except OSError as error:
                raise UserError(
                    f"flickr8k: could not download {source.url} ({error}). Download {TEXT_BUNDLE.url} and "
                    f"{IMAGES_ARCHIVE.url} (research use; Hodosh et al. 2013) and run `python -m repro data prepare "
                    f"flickr8k --archive FILE.zip` for each, or place {TOKEN_FILE} and the split lists in "
                    f"{data_root / 'flickr8k_text'}/ and the images in {data_root / 'Flicker8k_Dataset'}/") from None
            _unpack(fetched, data_root)
