"""Image captions in the formats people have, as one LightningDataModule for every captioning paper.

Readers for the three formats in use:
- Karpathy's split files (``dataset_coco.json``, ``dataset_flickr8k.json``, ``dataset_flickr30k.json``
  from Karpathy and Fei-Fei 2015, "Deep visual-semantic alignments"), which most later work uses;
- the official Flickr8k text bundle (``Flickr8k.token.txt`` + ``Flickr_8k.{train,dev,test}Images.txt``,
  Hodosh et al. 2013), whose splits are the ones Karpathy's file holds;
- the official COCO caption annotations (``annotations/captions_{train,val}2014.json``) through
  pycocotools, with Karpathy's split when ``dataset_coco.json`` sits beside them.
Plus an images folder. Only the images actually present are used: a partial copy works, and the
count is reported.

Preprocessing is neuraltalk2's (Karpathy's ``prepro.py``), which the captioning papers' released code
shares: lowercase, punctuation stripped, words seen fewer than ``min_word_count`` (5) times in the
training captions become ``<unk>``, training captions cut at ``max_caption_length`` (16) words.
Evaluation always scores against the raw reference sentences (coco-caption tokenizes them itself).

By default the model trains on pooled CNN features, computed once by the frozen encoder and cached
(``datamodules.feature_cache``); with ``fine_tune_encoder`` the batches hold images instead.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from datamodules.catalog import DatasetSpec, Source, get_dataset, register_dataset, unzip
from datamodules.vocabulary import Vocabulary
from repro.errors import UserError

PAD, START, END, UNKNOWN = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNKNOWN)
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


# --- readers ----------------------------------------------------------------------------------------------

def read_karpathy_json(path: Path, image_root: Path) -> list[CaptionedImage]:
    """Karpathy's ``dataset_*.json``: images with split, file path and tokenized sentences.

    ``restval`` (COCO validation images outside Karpathy's 5k val / 5k test) is training data, as in
    Karpathy's and Vinyals et al.'s setups.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UserError(f"{path}: expected Karpathy's format, an object with an 'images' list")
    images = []
    for number, entry in enumerate(data["images"]):
        try:
            split = {"restval": "train"}.get(entry["split"], entry["split"])
            sentences = entry["sentences"]
            raw = [s["raw"].strip() if "raw" in s else " ".join(s["tokens"]) for s in sentences]
            tokens = [list(s["tokens"]) if "tokens" in s else tokenize_caption(s["raw"]) for s in sentences]
            relative = Path(entry.get("filepath", "")) / entry["filename"]
        except (KeyError, TypeError) as error:
            raise UserError(f"{path}: images[{number}] lacks {error} (needs filename, split, sentences)") from None
        if split not in SPLITS:
            raise UserError(f"{path}: images[{number}] has split {entry['split']!r}; expected train, restval, val or test")
        if not sentences:
            raise UserError(f"{path}: images[{number}] ({entry['filename']}) has no sentences")
        image_id = str(entry.get("cocoid", entry["filename"]))
        images.append(CaptionedImage(image_id, image_root / relative, split, raw, tokens))
    return images


def read_flickr8k_bundle(text_folder: Path, image_folder: Path) -> list[CaptionedImage]:
    """The official text bundle; its ``dev`` list is the validation split."""
    from datamodules.flickr8k_text import SPLIT_FILES, TOKEN_FILE, read_captions, read_split

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


# --- where each dataset's captions and images are ---------------------------------------------------------

FLICKR8K_IMAGE_FOLDERS = ("flickr8k_images", "Flicker8k_Dataset", "Flickr8k_Dataset", "flickr8k_images_subset/images",
                          "flickr8k_text/Flicker8k_Dataset")


def _first_folder(data_root: Path, candidates: tuple[str, ...], image_dir: str, dataset: str) -> Path:
    if image_dir:
        folder = Path(image_dir).expanduser()
        folder = folder if folder.is_absolute() else data_root / folder
        if not folder.is_dir():
            raise UserError(f"--set image_dir={image_dir}: {folder} is not a folder")
        return folder
    for candidate in candidates:
        if (data_root / candidate).is_dir():
            return data_root / candidate
    raise UserError(f"{dataset}: no images folder under {data_root} (looked for {', '.join(candidates)}); "
                    f"see `python -m repro data prepare {dataset}`, or pass --set image_dir=FOLDER")


def read_dataset(dataset: str, data_root: Path, image_dir: str = "") -> list[CaptionedImage]:
    """Every captioned image of a dataset (present or not), from whichever format is on disk."""
    spec = get_dataset(dataset)
    if spec.embedded:
        folder = spec.generate()
        return read_karpathy_json(folder / f"dataset_{dataset}.json", folder)
    folder = data_root / spec.folder
    if dataset == "flickr8k":
        images = _first_folder(data_root, FLICKR8K_IMAGE_FOLDERS, image_dir, dataset)
        karpathy = folder / "dataset_flickr8k.json"
        return read_karpathy_json(karpathy, images) if karpathy.is_file() else read_flickr8k_bundle(folder, images)
    if dataset == "flickr30k":
        images = _first_folder(data_root, ("flickr30k/flickr30k-images", "flickr30k/images", "flickr30k-images"),
                               image_dir, dataset)
        return read_karpathy_json(folder / "dataset_flickr30k.json", images)
    if dataset == "coco":
        root = _first_folder(data_root, ("coco",), image_dir, dataset)
        karpathy = folder / "dataset_coco.json"
        return read_karpathy_json(karpathy, root) if karpathy.is_file() else read_coco_annotations(folder)
    raise UserError(f"{dataset}: not a caption dataset")


def image_files(dataset: str, data_root: Path, image_dir: str = "") -> dict[str, Path]:
    """Image id -> file, for the images of ``dataset`` actually present (``repro features extract``)."""
    images = read_dataset(dataset, data_root, image_dir)
    present = {image.image_id: image.path for image in images if image.path.is_file()}
    if not present:
        raise UserError(f"{dataset}: none of its {len(images)} images were found (e.g. {images[0].path})")
    return present


# --- batches ----------------------------------------------------------------------------------------------

class CaptionItems(Dataset):
    """Training: one item per (image, caption). Evaluation: one item per image, with all its captions.

    An item is (image position, encoder input, list of caption tensors); the encoder input is the
    cached pooled feature vector, or the transformed image when the encoder is fine-tuned.
    """

    def __init__(self, images: list[CaptionedImage], encoded: list[list[torch.Tensor]], encoder_input,
                 per_caption: bool):
        self.images, self.encoded, self.encoder_input = images, encoded, encoder_input
        self.pairs = ([(i, k) for i, captions in enumerate(encoded) for k in range(len(captions))]
                      if per_caption else [(i, None) for i in range(len(images))])

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        image, caption = self.pairs[index]
        captions = self.encoded[image] if caption is None else [self.encoded[image][caption]]
        return image, self.encoder_input(self.images[image]), captions


@dataclass
class CaptionBatch:
    image_positions: torch.Tensor  # [B] position of each image in its split
    encoder_inputs: torch.Tensor  # [B, D] features or [B, 3, H, W] images
    captions: torch.Tensor  # [C, T] <start> w1 .. wn <end> <pad>..., C >= B in evaluation
    caption_image: torch.Tensor  # [C] which row of the batch each caption belongs to


def collate(items) -> CaptionBatch:
    captions = [caption for _, _, captions in items for caption in captions]
    return CaptionBatch(
        image_positions=torch.tensor([image for image, _, _ in items]),
        encoder_inputs=torch.stack([encoder_input for _, encoder_input, _ in items]),
        captions=pad_sequence(captions, batch_first=True, padding_value=SPECIALS.index(PAD)),
        caption_image=torch.tensor([row for row, (_, _, captions) in enumerate(items) for _ in captions]))


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
    """

    def __init__(self, dataset: str, data_root: Path, encoder: str, encoder_weights: str = "imagenet",
                 batch_size: int = 32, min_word_count: int = 5, max_caption_length: int = 16,
                 fine_tune_encoder: bool = False, spatial_features: bool = False, image_dir: str = "",
                 num_workers: int = 0, seed: int = 0, image_size: int | None = None):
        super().__init__()
        self.dataset, self.data_root, self.image_dir = dataset, Path(data_root), image_dir
        self.encoder_name, self.encoder_weights, self.image_size = encoder, encoder_weights, image_size
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.min_word_count, self.max_caption_length = min_word_count, max_caption_length
        self.fine_tune_encoder, self.spatial_features = fine_tune_encoder, spatial_features
        self._images: dict[str, list[CaptionedImage]] | None = None
        self._vocabulary: Vocabulary | None = None
        self._encoder = None
        self.features = None
        self.nearest_neighbour_captions: dict[str, str] = {}  # filled by the retrieval baseline

    # -- captions and vocabulary: cheap, needed by every process (and by the module before fit) --
    @property
    def images(self) -> dict[str, list[CaptionedImage]]:
        """Split -> the captioned images whose files are present."""
        if self._images is None:
            everything = read_dataset(self.dataset, self.data_root, self.image_dir)
            present = [image for image in everything if image.path.is_file()]
            missing = len(everything) - len(present)
            if not present:
                raise UserError(f"{self.dataset}: none of its {len(everything)} listed images were found "
                                f"(e.g. {everything[0].path})")
            self._images = {split: [i for i in present if i.split == split] for split in SPLITS}
            counts = " / ".join(f"{len(self._images[s])} {s}" for s in SPLITS)
            note = f"; {missing} listed image(s) are not on disk and are skipped" if missing else ""
            print(f"DATA: {self.dataset}: {len(present)} of {len(everything)} images found under "
                  f"{present[0].path.parent} ({counts}){note}", flush=True)
            for split in SPLITS:
                if not self._images[split]:
                    raise UserError(f"{self.dataset}: no {split} images are present under {present[0].path.parent}")
        return self._images

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            counts = Counter(word for image in self.images["train"] for words in image.tokens for word in words)
            self._vocabulary = Vocabulary.from_counts(
                counts, specials=SPECIALS, min_count=self.min_word_count, unknown=UNKNOWN,
                source=f"{self.dataset} training captions ({len(self.images['train'])} images, "
                       f"--set min_word_count={self.min_word_count})")
        return self._vocabulary

    def encode(self, words: list[str], truncate: bool) -> torch.Tensor:
        words = words[: self.max_caption_length] if truncate else words
        return torch.tensor(self.vocabulary.encode([START, *words, END]))

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
            from repro.image_encoders import build_encoder

            self._encoder = build_encoder(self.encoder_name, self.encoder_weights, self.image_size)
        return self._encoder

    def _all_images(self) -> dict[str, Path]:
        return {image.image_id: image.path for split in SPLITS for image in self.images[split]}

    def _features(self, device="cpu"):
        from datamodules.feature_cache import cached_features

        return cached_features(self.dataset, self._all_images(), self.encoder, spatial=self.spatial_features,
                               device=device)

    def prepare_data(self) -> None:
        # One process per node extracts; the others load the finished cache in setup().
        if not self.fine_tune_encoder:
            device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
            self._features(device)

    def setup(self, stage: str | None = None) -> None:
        if self.fine_tune_encoder or self.features is not None:
            return
        self.features = self._features()
        if self.features.skipped:  # unreadable images: drop them from every split, counted once
            self._images = {split: [i for i in images if i.image_id in self.features.index]
                            for split, images in self.images.items()}

    def pooled_features(self, split: str) -> torch.Tensor:
        self.setup()
        return self.features.pooled[[self.features.index[i.image_id] for i in self.images[split]]]

    def _encoder_input(self, training: bool):
        if not self.fine_tune_encoder:
            pooled, index = self.features.pooled, self.features.index
            return lambda image: pooled[index[image.image_id]]
        from datamodules.feature_cache import load_image

        transform = self.encoder.train_transform if training else self.encoder.transform
        return lambda image: transform(load_image(image.path))

    def split_items(self, split: str, per_caption: bool) -> CaptionItems:
        images = self.images[split]
        encoded = [[self.encode(words, truncate=per_caption) for words in image.tokens] for image in images]
        return CaptionItems(images, encoded, self._encoder_input(training=split == "train"), per_caption)

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
        return DataLoader(items, batch_size=self.batch_size // world, sampler=sampler, collate_fn=collate, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def evaluation_dataloader(self, split: str) -> DataLoader:
        rank, world = self._rank_and_world()
        items = self.split_items(split, per_caption=False)
        return DataLoader(items, batch_size=self.batch_size, sampler=ShardSampler(len(items), rank, world),
                          collate_fn=collate, num_workers=self.num_workers)

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
    from datamodules.catalog import download

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


register_dataset(DatasetSpec(
    name="flickr30k",
    description="Flickr30k: 31,783 images, 5 captions each, Karpathy's 29k/1k/1k split",
    folder="flickr30k",
    required_files=("dataset_flickr30k.json",),
    license="research use (images are Flickr users'); Young et al. 2014",
    sources=(Source("https://shannon.cs.illinois.edu/DenotationGraph/", "the images, by request form"), KARPATHY_SPLITS),
    prepare=prepare_flickr30k,
))

register_dataset(DatasetSpec(
    name="coco",
    description="MS COCO 2014 captions: 123,287 images, 5+ captions each (Karpathy's split if present)",
    folder="coco",
    required_files=("annotations/captions_train2014.json", "annotations/captions_val2014.json"),
    license="annotations CC-BY 4.0; images under Flickr terms",
    sources=(Source("https://cocodataset.org/#download", "train2014.zip, val2014.zip, annotations_trainval2014.zip"),
             KARPATHY_SPLITS),
    prepare=prepare_coco,
))
