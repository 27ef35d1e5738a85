"""Image captions in the formats people have, as one LightningDataModule for every image captioner.

Readers for the three formats in use:
- Karpathy's split files (``dataset_coco.json``, ``dataset_flickr8k.json``, ``dataset_flickr30k.json``
  from Karpathy and Fei-Fei 2015, "Deep visual-semantic alignments"), which most later work uses;
- the official Flickr8k text bundle (``Flickr8k.token.txt`` + ``Flickr_8k.{train,dev,test}Images.txt``,
  Hodosh et al. 2013), whose splits are the ones Karpathy's file holds;
- the official COCO caption annotations (``annotations/captions_{train,val}2014.json``) through
  pycocotools, with Karpathy's split when ``dataset_coco.json`` sits beside them.
Plus an images folder. Each caption dataset registers a ``CaptionDatasetSpec``: its reader, the
folders its images usually unpack to, and its datamodule; nothing here branches on a dataset's name.
Only the images actually present are used: a partial copy works, and the count is reported.

Preprocessing is neuraltalk2's (Karpathy's ``prepro.py``), which the captioning papers' released code
shares: lowercase, punctuation stripped, words seen fewer than ``min_word_count`` (5) times in the
training captions become ``<unk>``, training captions cut at ``max_caption_length`` (16) words.
Evaluation always scores against the raw reference sentences (coco-caption tokenizes them itself).

The batches are ``repro.captioning.module.CaptionBatch`` with the visual input the captioner declared
(``CaptionerConfig.visual_features``): pooled vectors or spatial maps, computed once by the frozen
encoder and cached (``datamodules.captioning.feature_cache``), or images when the encoder is fine-tuned.
"""

from __future__ import annotations

import json
import re
import string
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler

from datamodules.captioning.feature_cache import cached_features
from datamodules.captioning.flickr8k_text import (
    IMAGES_ARCHIVE,
    SPLIT_FILES,
    TEXT_BUNDLE,
    TOKEN_FILE,
    prepare_flickr8k,
    read_captions,
    read_split,
)
from datamodules.catalog import DatasetSpec, Source, download, get_dataset, register_dataset, unzip
from datamodules.resumable import ResumableDataLoader
from repro.captioning.image_encoders import build_encoder, describe, get_spec
from repro.captioning.images import load_image
from repro.captioning.module import END, PAD, SPECIALS, START, UNKNOWN, CaptionBatch, EvaluationSet, Visual
from repro.errors import UserError
from repro.vocabulary import Vocabulary

SPLITS = ("train", "val", "test")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def tokenize_caption(text: str) -> list[str]:
    """neuraltalk2's prepro: lowercase, delete punctuation characters, split on white space."""
    return text.lower().translate(_PUNCTUATION).split()


@dataclass
class CaptionedImage:
    image_id: str  # file name for Flickr, COCO id for COCO
    path: Path
    split: str  # train, val or test
    captions: list[str]  # raw text, the references for scoring
    tokens: list[list[str]]  # preprocessed words, for training
    annotations: dict | None = None  # anything else the file has per image (the embedded sample's objects)


# --- readers ----------------------------------------------------------------------------------------------

ANNOTATION_KEYS = ("objects",)  # per-image keys beside Karpathy's that are kept (e.g. object boxes)


def read_karpathy_json(path: Path, image_root: Path) -> list[CaptionedImage]:
    """Karpathy's ``dataset_*.json``: images with split, file path and tokenized sentences.

    ``restval`` (COCO validation images outside Karpathy's 5k val / 5k test) is training data, as in
    Karpathy's and Vinyals et al.'s setups.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not a JSON file ({error})") from None
    try:
        return _karpathy_images(path, image_root, _images_one_by_one(text))
    except (ValueError, UserError):  # read as a whole: the same result, or the error json.loads names first
        pass
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UserError(f"{path}: expected Karpathy's format, an object with an 'images' list")
    return _karpathy_images(path, image_root, iter(data["images"]))


def _images_one_by_one(text: str):
    """The entries of the top-level ``images`` list, each parsed when reached (``json.loads`` of COCO's file
    makes every caption's objects at once, and the memory they took stays with the process: 1 GB).
    Anything but a plain Karpathy layout raises ValueError, and the caller reads the file whole."""
    decoder, space = json.JSONDecoder(), re.compile(r"[ \t\n\r]*")
    at = lambda position: space.match(text, position).end()
    position = at(0)
    if text[position:position + 1] != "{":
        raise ValueError("not an object")
    position, found = at(position + 1), False
    while text[position:position + 1] != "}":
        key, position = decoder.raw_decode(text, position)
        position = at(position)
        if text[position:position + 1] != ":" or found and key == "images":
            raise ValueError("not a plain object")
        position = at(position + 1)
        if key == "images":
            found = True
            if text[position:position + 1] != "[":
                raise ValueError("images is not a list")
            position = at(position + 1)
            while text[position:position + 1] != "]":
                entry, position = decoder.raw_decode(text, position)
                yield entry
                position = at(position)
                if text[position:position + 1] == ",":
                    position = at(position + 1)
                elif text[position:position + 1] != "]":
                    raise ValueError("images: expected , or ]")
            position += 1
        else:
            _, position = decoder.raw_decode(text, position)
        position = at(position)
        if text[position:position + 1] == ",":
            position = at(position + 1)
        elif text[position:position + 1] != "}":
            raise ValueError("expected , or }")
    if not found or at(position + 1) != len(text):
        raise ValueError("no images list, or text after the object")


def _karpathy_images(path: Path, image_root: Path, entries) -> list[CaptionedImage]:
    images = []
    words: dict[str, str] = {}  # one string per distinct word (COCO's 6.5M words would be as many strings)
    for number, entry in enumerate(entries):
        try:
            split = {"restval": "train"}.get(entry["split"], entry["split"])
            sentences = entry["sentences"]
            raw = [s["raw"].strip() if "raw" in s else " ".join(s["tokens"]) for s in sentences]
            tokens = [[words.setdefault(w, w) for w in (s["tokens"] if "tokens" in s else tokenize_caption(s["raw"]))]
                      for s in sentences]
            relative = Path(entry.get("filepath", "")) / entry["filename"]
        except (KeyError, TypeError) as error:
            raise UserError(f"{path}: images[{number}] lacks {error} (needs filename, split, sentences)") from None
        if split not in SPLITS:
            raise UserError(f"{path}: images[{number}] has split {entry['split']!r}; expected train, restval, val or test")
        if not sentences:
            raise UserError(f"{path}: images[{number}] ({entry['filename']}) has no sentences")
        image_id = str(entry.get("cocoid", entry["filename"]))
        extra = {key: value for key, value in entry.items() if key in ANNOTATION_KEYS}
        images.append(CaptionedImage(image_id, image_root / relative, split, raw, tokens, extra or None))
    return images


def read_flickr8k_bundle(text_folder: Path, image_folder: Path) -> list[CaptionedImage]:
    """The official text bundle; its ``dev`` list is the validation split."""

    captions = read_captions(text_folder / TOKEN_FILE)
    images = []
    for split, official in (("train", "train"), ("val", "dev"), ("test", "test")):
        names = read_split(text_folder, official)
        unknown = [name for name in names if name not in captions]
        if unknown:
            raise UserError(f"{text_folder / SPLIT_FILES[official]}: {len(unknown)} image(s) have no captions in "
                            f"{TOKEN_FILE}, e.g. {unknown[0]}")
        images += [CaptionedImage(name, image_folder / name, split, captions[name],
                                  [tokenize_caption(c) for c in captions[name]]) for name in names]
    return images


COCO_HELD_OUT = 5000  # Karpathy's val and test sizes, taken from COCO val2014 when his file is absent


def read_coco_annotations(folder: Path) -> list[CaptionedImage]:
    """Official COCO 2014 caption annotations through pycocotools.

    Without Karpathy's split file the 40,504 val2014 images are cut deterministically (by image id)
    into 5,000 validation, 5,000 test and the rest for training, the sizes of Karpathy's split.
    """
    from pycocotools.coco import COCO

    images = []
    for part in ("train2014", "val2014"):
        annotation_file = folder / "annotations" / f"captions_{part}.json"
        if not annotation_file.is_file():
            raise UserError(f"{annotation_file}: file not found (run `python -m repro data prepare coco`)")
        try:
            coco = COCO(str(annotation_file))
        except Exception as error:  # noqa: BLE001 - pycocotools raises bare assertions on bad files
            raise UserError(f"{annotation_file}: not a COCO caption annotation file ({type(error).__name__}: {error})") from None
        ids = sorted(coco.getImgIds())
        for position, image_id in enumerate(ids):
            info = coco.loadImgs(image_id)[0]
            raw = [a["caption"].strip() for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))]
            if not raw:
                continue
            split = "train"
            if part == "val2014":
                split = "val" if position < COCO_HELD_OUT else "test" if position < 2 * COCO_HELD_OUT else "train"
            images.append(CaptionedImage(str(image_id), folder / part / info["file_name"], split, raw,
                                         [tokenize_caption(c) for c in raw]))
    return images


# --- the registry: each caption dataset says how it is read and where its images are ----------------------

@dataclass
class CaptionDatasetSpec(DatasetSpec):
    """A caption dataset: the catalog's entry plus how to read it.

    ``read(dataset folder, media folder)`` returns every captioned image (present on disk or not);
    ``media_folders`` are where the official archives unpack the images, relative to the data root
    (``--set image_dir=FOLDER`` names another); an embedded sample's media sit in its own folder.
    ``make_datamodule(config, data_root)`` builds the datamodule (image captions by default; a video
    dataset registers its own).
    """

    read: Callable[[Path, Path], list[CaptionedImage]] | None = None
    media_folders: tuple[str, ...] = ()
    datamodule: Callable[..., L.LightningDataModule] | None = None

    def media_folder(self, data_root: Path, image_dir: str = "") -> Path:
        if image_dir:
            folder = Path(image_dir).expanduser()
            folder = folder if folder.is_absolute() else Path(data_root) / folder
            if not folder.is_dir():
                raise UserError(f"--set image_dir={image_dir}: {folder} is not a folder")
            return folder
        if self.embedded:
            return self.location(data_root)
        for candidate in self.media_folders:
            if (Path(data_root) / candidate).is_dir():
                return Path(data_root) / candidate
        raise UserError(f"{self.name}: no images folder under {data_root} (looked for {', '.join(self.media_folders)}); "
                        f"see `python -m repro data prepare {self.name}`, or pass --set image_dir=FOLDER")

    def read_all(self, data_root: Path, image_dir: str = "") -> list[CaptionedImage]:
        return self.read(self.location(data_root), self.media_folder(data_root, image_dir))

    def read_captions(self, data_root: Path) -> list[CaptionedImage]:
        """Every captioned medium, whether or not the media are on this machine (captions-only work:
        human agreement, language-only baselines)."""
        try:
            media = self.media_folder(data_root)
        except UserError:
            media = self.location(data_root) / "media-not-present"
        return self.read(self.location(data_root), media)

    def make_datamodule(self, config, data_root: Path) -> L.LightningDataModule:
        build = self.datamodule or CaptionDataModule.from_config
        return build(config, self.name, data_root)


def image_features_for(config) -> str:
    """What an image dataset gives a captioner: the kind it declares, except that a captioner of frames
    (video) reads an image as a clip of one frame, i.e. its pooled vector (pretraining for the transfer)."""
    kind = type(config).visual_features
    return "pooled" if kind == "frames" else kind


def caption_dataset_spec(dataset: str) -> CaptionDatasetSpec:
    spec = get_dataset(dataset)
    if not isinstance(spec, CaptionDatasetSpec):
        raise UserError(f"{dataset}: not a caption dataset")
    return spec


def read_dataset(dataset: str, data_root: Path, image_dir: str = "") -> list[CaptionedImage]:
    """Every captioned image of a dataset (present or not), from whichever format is on disk."""
    return caption_dataset_spec(dataset).read_all(Path(data_root), image_dir)


def image_files(dataset: str, data_root: Path, image_dir: str = "") -> dict[str, Path]:
    """Image id -> file, for the images of ``dataset`` actually present (``repro features extract``)."""
    images = read_dataset(dataset, data_root, image_dir)
    present = {image.image_id: image.path for image in images if image.path.is_file()}
    if not present:
        raise UserError(f"{dataset}: none of its {len(images)} images were found (e.g. {images[0].path})")
    return present


# --- batches ----------------------------------------------------------------------------------------------

class FlatCaptions:
    """Every caption of a split as word ids in one flat tensor: image ``i``'s captions are views of it
    (``self[i]``), so COCO's 616k captions cost two numbers each instead of a tensor object each."""

    def __init__(self, encoded: Iterable[list[list[int]]]):
        ids, lengths, counts = array("q"), array("q"), array("q")  # filled image by image: no list of all ids
        for captions in encoded:
            counts.append(len(captions))
            for caption in captions:
                lengths.append(len(caption))
                ids.extend(caption)
        self.counts = np.array(counts, dtype=np.int64)
        self.offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.frombuffer(lengths, dtype=np.int64), out=self.offsets[1:])
        self.first = np.zeros(len(counts) + 1, dtype=np.int64)  # image i's captions: first[i] ... first[i + 1] - 1
        np.cumsum(self.counts, out=self.first[1:])
        self._ids = ids  # the tensor below is a view of this buffer
        self.ids = torch.frombuffer(ids, dtype=torch.long) if len(ids) else torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        offsets = self.offsets[self.first[i]:self.first[i + 1] + 1].tolist()
        return [self.ids[start:end] for start, end in pairwise(offsets)]


class CaptionItems(Dataset):
    """Training: one item per (image, caption). Evaluation: one item per image, with all its captions.

    An item is a dict: the image's position in its split, its id, its visual input (cached features,
    or the transformed image when the encoder is fine-tuned), its captions as word ids, and, for
    evaluation, its references, relative media path and annotations.
    """

    def __init__(self, images: list[CaptionedImage], encoded: FlatCaptions, visual_input,
                 per_caption: bool, media_root: Path):
        self.images, self.encoded, self.visual_input, self.media_root = images, encoded, visual_input, media_root
        self.per_caption = per_caption
        # item -> (image position, its caption k): two arrays, not a Python tuple per caption
        counts = encoded.counts if per_caption else np.ones(len(images), dtype=np.int64)
        self.positions = np.repeat(np.arange(len(images), dtype=np.int32), counts)
        self.captions = (np.arange(len(self.positions)) - np.repeat(np.cumsum(counts) - counts, counts)).astype(np.int32)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict:
        position, caption = int(self.positions[index]), int(self.captions[index])
        image = self.images[position]
        captions = self.encoded[position]
        item = {"position": position, "id": image.image_id, "visual": self.visual_input(image),
                "captions": [captions[caption]] if self.per_caption else captions}
        if not self.per_caption:
            item.update(references=image.captions, media=relative_media(image.path, self.media_root),
                        annotations=image.annotations)
        return item


def relative_media(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


def collate(items: list[dict], kind: str, grid: tuple[int, int] | None = None) -> CaptionBatch:
    """Items -> a CaptionBatch whose visual input is of ``kind`` (pooled, spatial or images)."""
    captions = [caption for item in items for caption in item["captions"]]
    evaluation = "references" in items[0]
    return CaptionBatch(
        ids=[item["id"] for item in items],
        positions=torch.tensor([item["position"] for item in items]),
        visual=Visual(kind, torch.stack([item["visual"] for item in items]).float(), grid=grid),
        captions=pad_sequence(captions, batch_first=True, padding_value=SPECIALS.index(PAD)),
        caption_owner=torch.tensor([row for row, item in enumerate(items) for _ in item["captions"]]),
        references=[item["references"] for item in items] if evaluation else None,
        media=[item["media"] for item in items] if evaluation else None,
        annotations=[item["annotations"] for item in items] if evaluation else None)


class ShardSampler(Sampler):
    """Evaluation shard of one process: every world-th item, no padding, so each image counts once."""

    def __init__(self, length: int, rank: int, world: int):
        self.indices = list(range(rank, length, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class CaptionDataModule(L.LightningDataModule):
    """One caption dataset, its vocabulary, and its cached image features.

    ``batch_size`` is the number of captions per optimisation step for the whole run, whatever the
    number of processes: each of N processes takes batch_size / N of them. Training batches come from
    one shuffled order shared by all processes (``DistributedSampler``, seeded), each process taking
    every N-th caption, so a run sees the same captions per step on 1 device or on 8, and the paper's
    learning rate stays right (evaluation batches count images per process; they change nothing).

    ``visual_features`` is what the captioner takes: ``pooled`` vectors or ``spatial`` maps [L, D]
    (both cached once per dataset and encoder); ``fine_tune_encoder`` gives images instead.
    """

    shards_by_process = True  # each process takes its own shard of captions (no padded duplicates); no DistributedSampler

    def __init__(self, dataset: str, data_root: Path, encoder: str, encoder_weights: str = "imagenet",
                 batch_size: int = 32, min_word_count: int = 5, max_caption_length: int = 16,
                 fine_tune_encoder: bool = False, visual_features: str = "pooled", image_dir: str = "",
                 num_workers: int = 0, seed: int = 0, image_size: int | None = None):
        super().__init__()
        if visual_features not in ("pooled", "spatial"):
            raise UserError(f"{dataset}: an image dataset gives pooled vectors or spatial maps, not {visual_features!r}")
        self.dataset, self.data_root, self.image_dir = dataset, Path(data_root), image_dir
        self.encoder_name, self.encoder_weights, self.image_size = encoder, encoder_weights, image_size
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.min_word_count, self.max_caption_length = min_word_count, max_caption_length
        self.fine_tune_encoder, self.visual_features = fine_tune_encoder, visual_features
        self._images: dict[str, list[CaptionedImage]] | None = None
        self._media_root: Path | None = None
        self._vocabulary: Vocabulary | None = None
        self._word_ids: tuple | None = None
        self._encoder = None
        self.features = None

    @classmethod
    def from_config(cls, config, dataset: str, data_root: Path) -> CaptionDataModule:
        """From a ``repro.captioning.module.CaptionerConfig`` (what every captioner's config is)."""
        return cls(dataset, data_root, config.encoder, config.encoder_weights, batch_size=config.batch_size,
                   min_word_count=config.min_word_count, max_caption_length=config.max_caption_length,
                   fine_tune_encoder=config.fine_tune_encoder, visual_features=image_features_for(config),
                   image_dir=config.image_dir, seed=config.seed, image_size=config.image_size or None)

    # -- captions and vocabulary: cheap, needed by every process (and by the module before fit) --
    @property
    def images(self) -> dict[str, list[CaptionedImage]]:
        """Split -> the captioned images whose files are present."""
        if self._images is None:
            spec = caption_dataset_spec(self.dataset)
            self._media_root = spec.media_folder(self.data_root, self.image_dir)
            everything = spec.read_all(self.data_root, self.image_dir)
            present = [image for image in everything if image.path.is_file()]
            missing = len(everything) - len(present)
            if not present:
                raise UserError(f"{self.dataset}: none of its {len(everything)} listed images were found "
                                f"(e.g. {everything[0].path})")
            self._keep(everything, present)
            counts = " / ".join(f"{len(self._images[s])} {s}" for s in SPLITS)
            note = f"; {missing} listed image(s) are not on disk and are skipped" if missing else ""
            print(f"DATA: {self.dataset}: {len(present)} of {len(everything)} images found under "
                  f"{self._media_root} ({counts}){note}", flush=True)
            for split in SPLITS:
                if not self._images[split]:
                    raise UserError(f"{self.dataset}: no {split} images are present under {self._media_root}")
        return self._images

    def _keep(self, everything: list[CaptionedImage], present: list[CaptionedImage]) -> None:
        """Split the present media, remembering how many each split listed (for ``data_subset``)."""
        self._images = {split: [i for i in present if i.split == split] for split in SPLITS}
        self._listed = {split: sum(i.split == split for i in everything) for split in SPLITS}

    def references(self, split: str) -> dict[str, list[str]]:
        """Each medium of a split with its reference captions, as the test scores against them."""
        return {image.image_id: list(image.captions) for image in self.images[split]}

    def data_subset(self) -> dict | None:
        """None when every listed image was used; else which part (for the record and the tables)."""
        used = {split: len(self.images[split]) for split in SPLITS}
        if used == self._listed:
            return None
        return {"description": " / ".join(f"{used[s]} of {self._listed[s]} {s}" for s in SPLITS) + " images",
                **{f"{split}_used": used[split] for split in SPLITS}, **{f"{split}_listed": self._listed[split] for split in SPLITS}}

    @property
    def media_root(self) -> Path:
        self.images
        return self._media_root

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            counts = Counter(word for image in self.images["train"] for words in image.tokens for word in words)
            self._vocabulary = Vocabulary.from_counts(
                counts, specials=SPECIALS, min_count=self.min_word_count, unknown=UNKNOWN,
                source=f"{self.dataset} training captions ({len(self.images['train'])} images, "
                       f"--set min_word_count={self.min_word_count})")
        return self._vocabulary

    def encode_ids(self, words: list[str], truncate: bool) -> list[int]:
        """``vocabulary.encode([START, *words, END])``, with one dictionary lookup a word (COCO: 8M words)."""
        if self._word_ids is None:
            vocabulary = self.vocabulary
            index = {word: i for i, word in enumerate(vocabulary.words)}
            self._word_ids = (index.get, vocabulary.index(UNKNOWN), vocabulary.index(START), vocabulary.index(END))
        get, unknown, start, end = self._word_ids
        words = words[: self.max_caption_length] if truncate else words
        return [start, *[get(word, unknown) for word in words], end]

    def encode(self, words: list[str], truncate: bool) -> torch.Tensor:
        return torch.tensor(self.encode_ids(words, truncate))

    def checksum(self) -> str:
        """md5 over the split membership and captions of the present images (what the run trained on)."""
        import hashlib

        digest = hashlib.md5()
        for split in SPLITS:
            for image in self.images[split]:
                digest.update(f"{split}\t{image.image_id}\t{'|'.join(image.captions)}\n".encode())
        return digest.hexdigest()

    # -- the frozen encoder and its feature cache -----------------------------------------------
    @property
    def encoder(self):
        if self._encoder is None:

            self._encoder = build_encoder(self.encoder_name, self.encoder_weights, self.image_size)
        return self._encoder

    @property
    def visual_dim(self) -> int:
        """The size of one visual vector the captioner receives (pooled D, or a spatial location's D)."""

        spec = get_spec(self.encoder_name)
        return spec.spatial_dim if self.visual_features == "spatial" else spec.feature_dim

    def _all_images(self) -> dict[str, Path]:
        return {image.image_id: image.path for split in SPLITS for image in self.images[split]}

    def _features(self, device="cpu"):

        return cached_features(self.dataset, self._all_images(), self.encoder,
                               spatial=self.visual_features == "spatial", device=device)

    def prepare_data(self) -> None:

        print(f"ENCODER: {describe(self.encoder)}; "
              + ("fine-tuned end to end on images" if self.fine_tune_encoder else
                 f"frozen, its {self.visual_features} features computed once and cached"), flush=True)
        # One process per node extracts; the others load the finished cache in setup().
        if not self.fine_tune_encoder:
            device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
            self._features(device)

    def setup(self, stage: str | None = None) -> None:
        if self.features is not None or (self.fine_tune_encoder and stage != "baselines"):
            return
        self.features = self._features()
        if self.features.skipped:  # unreadable images: drop them from every split, counted once
            self._images = {split: [i for i in images if i.image_id in self.features.index]
                            for split, images in self.images.items()}

    def _visual_input(self, training: bool):
        if self.fine_tune_encoder:

            transform = self.encoder.train_transform if training else self.encoder.transform
            return lambda image: transform(load_image(image.path))
        table = self.features.spatial if self.visual_features == "spatial" else self.features.pooled
        index = self.features.index
        return lambda image: table[index[image.image_id]]

    def _collate(self, items: list[dict]) -> CaptionBatch:
        kind = "images" if self.fine_tune_encoder else self.visual_features
        grid = tuple(self.encoder.spatial_grid) if kind == "spatial" else None
        return collate(items, kind, grid)

    def split_items(self, split: str, per_caption: bool) -> CaptionItems:
        images = self.images[split]
        encoded = FlatCaptions([self.encode_ids(words, truncate=per_caption) for words in image.tokens]
                               for image in images)
        return CaptionItems(images, encoded, self._visual_input(training=split == "train"), per_caption,
                            self.media_root)

    def evaluation_set(self, split: str) -> EvaluationSet:
        """One split as the typed object baselines and figures use (pooled vectors always included)."""
        if self.features is None:
            self.setup("baselines")
        images = self.images[split]
        rows = [self.features.index[image.image_id] for image in images]
        spatial = self.features.spatial
        grid = tuple(self.encoder.spatial_grid)

        def visual(positions: list[int]) -> Visual:
            chosen = [rows[p] for p in positions]
            if self.visual_features == "spatial":
                return Visual("spatial", torch.as_tensor(spatial[chosen]).float(), grid=grid)
            return Visual("pooled", self.features.pooled[chosen])

        return EvaluationSet(
            dataset=self.dataset, split=split, ids=[image.image_id for image in images],
            references=[image.captions for image in images], tokens=[image.tokens for image in images],
            media=[relative_media(image.path, self.media_root) for image in images], media_root=self.media_root,
            pooled=self.features.pooled[rows], visual=visual, annotations=[image.annotations for image in images])

    def _rank_and_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_and_world()
        if self.batch_size % world:
            raise UserError(f"--set batch_size={self.batch_size}: this paper's batch_size is the whole run's batch and "
                            f"must divide evenly over the {world} processes (--devices x --nodes)")
        items = self.split_items("train", per_caption=True)
        # the same sampler with one process, so a run's order does not depend on the world size
        sampler = DistributedSampler(items, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=True)
        # the batches DataLoader(batch_size=..., sampler=..., drop_last=True) makes, in a loader that a run
        # resumed mid-epoch continues at the right batch (datamodules/resumable.py)
        batches = BatchSampler(sampler, self.batch_size // world, drop_last=True)
        return ResumableDataLoader(items, batch_sampler=batches, collate_fn=self._collate,
                                   num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def evaluation_dataloader(self, split: str) -> DataLoader:
        rank, world = self._rank_and_world()
        items = self.split_items(split, per_caption=False)
        return DataLoader(items, batch_size=self.batch_size, sampler=ShardSampler(len(items), rank, world),
                          collate_fn=self._collate, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self.evaluation_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.evaluation_dataloader("test")


# --- the catalog: where the data comes from ---------------------------------------------------------------

KARPATHY_SPLITS = Source(
    url="https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
    description="Karpathy's split files dataset_{coco,flickr8k,flickr30k}.json (Karpathy and Fei-Fei 2015)")


COCO_ARCHIVES = ("http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
                 "http://images.cocodataset.org/zips/train2014.zip", "http://images.cocodataset.org/zips/val2014.zip")


def _fetch(urls: tuple[str, ...], scratch: Path, dataset: str, by_hand: list[str]) -> list[Path]:
    """Download each URL, or fail with the steps to do by hand (no internet, a moved file...)."""

    fetched = []
    for url in urls:
        try:
            print(f"{dataset}: downloading {url}", flush=True)
            fetched.append(download(url, scratch / Path(url).name))
        except OSError as error:
            raise UserError(f"data prepare {dataset}: could not download {url} ({error}). By hand: "
                            + "; ".join(by_hand)) from None
    return fetched


def prepare_coco(data_root: Path, archive: Path | None) -> None:
    """COCO 2014 images and caption annotations (about 19 GB), plus Karpathy's split file if reachable."""
    import tempfile

    target = data_root / "coco"
    by_hand = [f"download {', '.join(COCO_ARCHIVES)} and run `python -m repro data prepare coco --archive FILE.zip` "
               f"for each (or unpack them into {target}/, giving annotations/, train2014/, val2014/)",
               f"optionally put dataset_coco.json from {KARPATHY_SPLITS.url} in {target}/ for Karpathy's split"]
    if archive is not None:
        unzip(archive, target)
        print(f"coco: unpacked {archive} into {target}")
        return
    with tempfile.TemporaryDirectory(dir=data_root if data_root.is_dir() else None) as scratch:
        for fetched in _fetch(COCO_ARCHIVES, Path(scratch), "coco", by_hand):
            unzip(fetched, target)
            fetched.unlink()
        try:
            unzip(_fetch((KARPATHY_SPLITS.url,), Path(scratch), "coco", by_hand)[0], target, ("dataset_coco.json",))
        except UserError as error:
            print(f"coco: no Karpathy split ({error}); the official val2014 images will be split by id instead")
    print(f"coco: prepared {target}")


def prepare_flickr30k(data_root: Path, archive: Path | None) -> None:
    """Flickr30k: Karpathy's split file can be downloaded; the images come only through a request form."""
    import tempfile

    target = data_root / "flickr30k"
    images = f"request the images at https://shannon.cs.illinois.edu/DenotationGraph/ and unpack flickr30k-images/ into {target}/"
    by_hand = [f"put dataset_flickr30k.json from {KARPATHY_SPLITS.url} in {target}/", images]
    if archive is not None:  # the images archive, or Karpathy's caption_datasets.zip
        unzip(archive, target)
        for member in ("dataset_flickr30k.json",):
            nested = next(target.rglob(member), None)
            if nested is not None and nested.parent != target:
                nested.replace(target / member)
        print(f"flickr30k: unpacked {archive} into {target}")
    elif not (target / "dataset_flickr30k.json").is_file():
        with tempfile.TemporaryDirectory() as scratch:
            unzip(_fetch((KARPATHY_SPLITS.url,), Path(scratch), "flickr30k", by_hand)[0], target,
                   ("dataset_flickr30k.json",))
    if not any((target / folder).is_dir() for folder in ("flickr30k-images", "images")):
        raise UserError(f"flickr30k: captions are in place; the images are not: {images}")
    print(f"flickr30k: prepared {target}")


def read_flickr8k(folder: Path, images: Path) -> list[CaptionedImage]:
    karpathy = folder / "dataset_flickr8k.json"
    return read_karpathy_json(karpathy, images) if karpathy.is_file() else read_flickr8k_bundle(folder, images)


def read_coco(folder: Path, images: Path) -> list[CaptionedImage]:
    karpathy = folder / "dataset_coco.json"
    return read_karpathy_json(karpathy, images) if karpathy.is_file() else read_coco_annotations(folder)


def _flickr8k_spec() -> CaptionDatasetSpec:

    return CaptionDatasetSpec(
        name="flickr8k",
        description="Flickr8k captions (40,460: 5 per image) with the official 6000/1000/1000 image splits",
        folder="flickr8k_text",
        required_files=(TOKEN_FILE, *SPLIT_FILES.values()),
        license="research use (University of Illinois; images are Flickr users')",
        sources=(TEXT_BUNDLE, IMAGES_ARCHIVE),
        prepare=prepare_flickr8k,
        read=read_flickr8k,
        # where Flickr8k_Dataset.zip unpacks (sic), and the usual renamings
        media_folders=("Flicker8k_Dataset", "Flickr8k_Dataset", "flickr8k_images", "flickr8k_text/Flicker8k_Dataset"),
    )


register_dataset(_flickr8k_spec())

register_dataset(CaptionDatasetSpec(
    name="flickr30k",
    description="Flickr30k: 31,783 images, 5 captions each, Karpathy's 29k/1k/1k split",
    folder="flickr30k",
    required_files=("dataset_flickr30k.json",),
    license="research use (images are Flickr users'); Young et al. 2014",
    sources=(Source("https://shannon.cs.illinois.edu/DenotationGraph/", "the images, by request form"), KARPATHY_SPLITS),
    prepare=prepare_flickr30k,
    read=lambda folder, images: read_karpathy_json(folder / "dataset_flickr30k.json", images),
    media_folders=("flickr30k/flickr30k-images", "flickr30k/images", "flickr30k-images"),
))

register_dataset(CaptionDatasetSpec(
    name="coco",
    description="MS COCO 2014 captions: 123,287 images, 5+ captions each (Karpathy's split if present)",
    folder="coco",
    required_files=("annotations/captions_train2014.json", "annotations/captions_val2014.json"),
    license="annotations CC-BY 4.0; images under Flickr terms",
    sources=(Source("https://cocodataset.org/#download", "train2014.zip, val2014.zip, annotations_trainval2014.zip"),
             KARPATHY_SPLITS),
    prepare=prepare_coco,
    read=read_coco,
    media_folders=("coco",),  # train2014/ and val2014/ inside it, as Karpathy's file paths expect
))
