"""MSVD (YouTube2Text): 1,970 YouTube clips with about 40 English captions each, in the formats people have.

Chen and Dolan 2011, "Collecting highly parallel data for paraphrase evaluation" (the Microsoft
Research Video Description Corpus); the split every video-captioning paper uses is Guadarrama et al.
2013's: 1,200 training, 100 validation and 670 test clips, vid1-vid1200 / vid1201-vid1300 /
vid1301-vid1970, where vidN numbers the clip names (``<YouTube id>_<start>_<end>``) in sorted order
(``youtube_mapping.txt``, which checks out against that order for all 1,970 clips).

Readers for the two caption formats in circulation:
- the corpus CSV (``MSR Video Description Corpus.csv``: one row per description, any language;
  only the English ones are kept, as every paper does); the split comes from
  ``youtube_mapping.txt`` when it sits beside the CSV, else from the sorted clip names;
- the per-split TSV files of later repositories (``MSVD_{train,val,test}.tsv``: one line per clip,
  its captions lowercased, punctuation stripped and joined with ", ", then a TAB and the clip name)
  with ``youtube_mapping.txt``.
The videos are the corpus's ``YouTubeClips.tar`` (``YouTubeClips/<clip name>.avi``); any of
.avi/.mp4/.webm/.mkv is found. Captions alone are enough for human agreement and the
language-only baseline.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from datamodules.captioning.captions import CaptionDatasetSpec, CaptionedImage, tokenize_caption
from datamodules.captioning.video import VideoCaptionDataModule
from datamodules.catalog import Source, download, numbered_lines, register_dataset
from repro.errors import UserError

SPLIT_SIZES = {"train": 1200, "val": 100, "test": 670}  # Guadarrama et al. 2013
MAPPING = "youtube_mapping.txt"
TSV_FILES = {"train": "MSVD_train.tsv", "val": "MSVD_val.tsv", "test": "MSVD_test.tsv"}
CSV_FILE = "MSR Video Description Corpus.csv"
VIDEO_SUFFIXES = (".avi", ".mp4", ".webm", ".mkv")


def split_of(number: int) -> str:
    """vidN -> train (1-1200), val (1201-1300) or test (1301-1970)."""
    if number <= SPLIT_SIZES["train"]:
        return "train"
    return "val" if number <= SPLIT_SIZES["train"] + SPLIT_SIZES["val"] else "test"


def read_mapping(path: Path) -> dict[str, int]:
    """``youtube_mapping.txt``: clip name -> N of vidN."""
    mapping = {}
    for line_number, line in numbered_lines(path):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("vid") or not parts[1][3:].isdigit():
            raise UserError(f"{path}:{line_number}: expected '<clip name> vid<N>', got {line.strip()[:60]!r}")
        mapping[parts[0]] = int(parts[1][3:])
    if not mapping:
        raise UserError(f"{path}: file is empty")
    return mapping


def video_file(media: Path, clip: str) -> Path:
    """The clip's video in the media folder, whatever its container (the .avi name if none is there)."""
    for suffix in VIDEO_SUFFIXES:
        candidate = media / f"{clip}{suffix}"
        if candidate.is_file():
            return candidate
    return media / f"{clip}{VIDEO_SUFFIXES[0]}"


def _clips(captions: dict[str, list[str]], numbers: dict[str, int], media: Path, origin: Path) -> list[CaptionedImage]:
    clips = []
    for clip, texts in captions.items():
        if clip not in numbers:
            raise UserError(f"{origin}: clip {clip} is not in {MAPPING}")
        clips.append(CaptionedImage(f"vid{numbers[clip]}", video_file(media, clip), split_of(numbers[clip]), texts,
                                    [tokenize_caption(text) for text in texts]))
    return sorted(clips, key=lambda item: int(item.image_id[3:]))


def read_msvd_tsv(folder: Path, media: Path) -> list[CaptionedImage]:
    numbers = read_mapping(folder / MAPPING)
    captions: dict[str, list[str]] = {}
    for split, name in TSV_FILES.items():
        path = folder / name
        for line_number, line in numbered_lines(path):
            if not line.strip():
                continue
            joined, tab, clip = line.rpartition("\t")
            if not tab or not clip.strip() or not joined.strip():
                raise UserError(f"{path}:{line_number}: expected '<captions joined by \", \"><TAB><clip name>'")
            clip = clip.strip()
            if clip in numbers and split_of(numbers[clip]) != split:
                raise UserError(f"{path}:{line_number}: clip {clip} is vid{numbers[clip]}, which belongs to the "
                                f"{split_of(numbers[clip])} split, not {split}")
            # (a caption that itself contained ", " is split in two: the format cannot tell)
            captions[clip] = [text.strip() for text in joined.split(", ") if text.strip()]
    return _clips(captions, numbers, media, folder)


def read_msvd_csv(path: Path, media: Path) -> list[CaptionedImage]:
    """The corpus CSV, English descriptions only, in the standard split."""
    captions: dict[str, list[str]] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = csv.DictReader(handle)
            needed = {"VideoID", "Start", "End", "Language", "Description"}
            if not rows.fieldnames or not needed <= set(rows.fieldnames):
                raise UserError(f"{path}: expected the corpus header with {', '.join(sorted(needed))}; "
                                f"got {', '.join(rows.fieldnames or [])}")
            for row in rows:
                text = (row["Description"] or "").strip()
                if row["Language"] != "English" or not text:
                    continue
                captions.setdefault(f"{row['VideoID']}_{row['Start']}_{row['End']}", []).append(text)
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error.reason})") from None
    except csv.Error as error:
        raise UserError(f"{path}: not a readable CSV file ({error})") from None
    if not captions:
        raise UserError(f"{path}: no English descriptions")
    mapping = path.parent / MAPPING
    if mapping.is_file():
        numbers = read_mapping(mapping)
    else:  # vidN numbers the clips in sorted order (checked against youtube_mapping.txt for all 1,970)
        numbers = {clip: number for number, clip in enumerate(sorted(captions), start=1)}
        if len(numbers) != sum(SPLIT_SIZES.values()):
            raise UserError(f"{path}: {len(numbers)} clips with English descriptions, not the corpus's "
                            f"{sum(SPLIT_SIZES.values())}; put {MAPPING} beside it to fix the split")
    return _clips(captions, numbers, media, path)


def read_msvd(folder: Path, media: Path) -> list[CaptionedImage]:
    """Whichever format is present: the corpus CSV first, else the TSV files."""
    if (folder / CSV_FILE).is_file():
        return read_msvd_csv(folder / CSV_FILE, media)
    return read_msvd_tsv(folder, media)


VIDEOS = Source("https://www.cs.utexas.edu/users/ml/clamp/videoDescription/YouTubeClips.tar",
                "the 1,970 clips as YouTubeClips/<clip name>.avi (1.7 GB), from the authors' data page")
CORPUS = Source("https://www.microsoft.com/en-us/download/details.aspx?id=52422",
                f"'{CSV_FILE}': every description, all languages (Chen and Dolan 2011)")
MAPPING_SOURCE = Source("https://raw.githubusercontent.com/yaoli/arctic-capgen-vid/master/youtube_mapping.txt",
                        "clip name -> vidN of the standard split (Yao et al. 2015's release)")


def prepare_msvd(data_root: Path, archive: Path | None) -> None:
    """Unpack a local YouTubeClips.tar (or copy the corpus CSV), else download what can be downloaded."""
    import shutil
    import tarfile

    target = data_root / "msvd"
    target.mkdir(parents=True, exist_ok=True)
    by_hand = (f"download {VIDEOS.url} and run `python -m repro data prepare msvd --archive YouTubeClips.tar`; "
               f"for the captions download '{CSV_FILE}' from {CORPUS.url} into {target}/ (with {MAPPING} from "
               f"{MAPPING_SOURCE.url}), or put MSVD_{{train,val,test}}.tsv and {MAPPING} there")
    if archive is not None:
        if archive.suffix == ".csv":
            shutil.copy(archive, target / CSV_FILE)
            print(f"msvd: copied {archive} to {target / CSV_FILE}")
            return
        try:
            with tarfile.open(archive) as bundle:
                bundle.extractall(target, filter="data")
        except (tarfile.TarError, FileNotFoundError) as error:
            raise UserError(f"--archive {archive}: not a readable tar archive ({error})") from None
        print(f"msvd: unpacked {archive} into {target}")
        return
    for source, name in ((MAPPING_SOURCE, MAPPING), (VIDEOS, "YouTubeClips.tar")):
        if name == MAPPING and (target / MAPPING).is_file():
            continue
        try:
            print(f"msvd: downloading {source.url}", flush=True)
            fetched = download(source.url, target / name)
        except OSError as error:
            raise UserError(f"data prepare msvd: could not download {source.url} ({error}). By hand: {by_hand}") from None
        if name.endswith(".tar"):
            with tarfile.open(fetched) as bundle:
                bundle.extractall(target, filter="data")
            fetched.unlink()
    if not (target / CSV_FILE).is_file() and not (target / TSV_FILES["train"]).is_file():
        raise UserError(f"msvd: the videos are in place; the captions are not (the corpus CSV sits behind a "
                        f"download page): {by_hand}")
    print(f"msvd: prepared {target}")


@dataclass
class MsvdSpec(CaptionDatasetSpec):
    """MSVD is present in either caption format (the corpus CSV, or the TSV files with the mapping)."""

    def missing_files(self, data_root: Path) -> list[Path]:
        folder = Path(data_root) / self.folder
        if (folder / CSV_FILE).is_file():
            return []
        return [folder / name for name in (*TSV_FILES.values(), MAPPING) if not (folder / name).is_file()]


register_dataset(MsvdSpec(
    name="msvd",
    description="MSVD / YouTube2Text: 1,970 YouTube clips, ~40 English captions each, the standard "
                "1200/100/670 split (corpus CSV or per-split TSV files; videos from YouTubeClips.tar)",
    folder="msvd",
    required_files=(*TSV_FILES.values(), MAPPING),
    license="research use (Microsoft Research Video Description Corpus); the videos are YouTube users'",
    sources=(CORPUS, VIDEOS, MAPPING_SOURCE),
    prepare=prepare_msvd,
    read=read_msvd,
    media_folders=("msvd/YouTubeClips", "msvd/videos", "YouTubeClips"),
    datamodule=VideoCaptionDataModule.from_config,
))
