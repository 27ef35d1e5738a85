"""Line-aligned parallel text for translation: any corpus in files, Multi30k, Tatoeba, WMT'14 En-Fr.

One LightningDataModule reads every corpus; what differs is only the reader:

- ``ParallelFiles``: one sentence per line, line ``i`` of the source file translates line ``i`` of
  the target file, plain or gzipped (``train.en`` or ``train.en.gz``). A split may be several files
  read one after the other (WMT'14 validates on newstest2012 followed by newstest2013). Multi30k
  (``train``, ``val``, ``test_2016_flickr``), WMT'14 and the ``parallel`` dataset (your own corpus in
  ``<data root>/parallel/{train,valid,test}.<lang>``) all go through it.
- ``TatoebaPairs``: the manythings.org file ``fra.txt``, one pair per line,
  ``English<TAB>French[<TAB>attribution]``. It has no official split, so the suite makes one that
  never changes: the md5 of the English sentence, as an integer modulo 100, puts a pair in test
  (0-1), valid (2-3) or train (4-99). All translations of the same English sentence land in the
  same split, so no test source is seen in training.

Then, the same for every corpus: Moses tokenization (sacremoses, cached under ``cache_dir()`` keyed by
the files' md5 so a second run does not tokenize again), optional lowercasing, source and target
vocabularies cut to the most frequent words (the rest become ``<unk>``), the source-reversal
transform of Sutskever et al. 2014 (the source words are reversed, never the target), and batches of
sentences of similar length (``BucketBatchSampler``), sharded by rank so it also works under DDP.

Bad input is a one-line error: files with different line counts (both named, with their counts), a
pair with an empty side (counted and skipped, said once), an evaluation source longer than
``max_length``, a language pair the corpus does not have.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import random
import tempfile
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.catalog import DatasetSpec, Source, cache_dir, file_md5, numbered_lines, register_dataset
from datamodules.vocabulary import Vocabulary
from repro.errors import UserError

PAD, BOS, EOS, UNKNOWN = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNKNOWN)  # PAD is index 0 in both vocabularies
SPLITS = ("train", "valid", "test")
TOKENIZATION_VERSION = 1  # bump when tokenization changes, so cached corpora are rebuilt


@rank_zero_only
def say(message: str) -> None:
    print(message, flush=True)


# --- reading ------------------------------------------------------------------------------------

def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, gzipped when its name ends in .gz; errors name file and line."""
    if path.suffix != ".gz":
        yield from numbered_lines(path)
        return
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with gzip.open(path, "rb") as handle:
            for line_number, raw in enumerate(handle, start=1):
                try:
                    yield line_number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as error:
                    raise UserError(f"{path}:{line_number}: not valid UTF-8 ({error.reason})") from None
    except (OSError, EOFError) as error:
        raise UserError(f"{path}: not a readable gzip file ({error})") from None


@dataclass
class Pair:
    source: str
    target: str
    where: str  # "file:line" of the source side, for error messages


@dataclass
class RawCorpus:
    splits: dict[str, list[Pair]]
    skipped_empty: int = 0
    first_empty: str = ""


def find_text_file(folder: Path, stem: str, language: str) -> Path | None:
    for name in (f"{stem}.{language}", f"{stem}.{language}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


@dataclass
class ParallelFiles:
    """``<folder>/<stem>.<language>[.gz]`` for each split; a split may concatenate several stems."""

    folder: Path
    stems: dict[str, tuple[str, ...]]  # split -> file stems read in order
    name: str = "parallel files"
    languages: tuple[str, ...] = ()  # the languages the corpus has; () means: whatever files exist

    def check_pair(self, source: str, target: str) -> None:
        if source == target:
            raise UserError(f"source and target language are both {source!r}")
        if self.languages and not {source, target} <= set(self.languages):
            pairs = ", ".join(f"{a}-{b}" for a in self.languages for b in self.languages if a != b)
            raise UserError(f"unknown language pair {source}-{target} for {self.name}: it has {pairs} "
                            f"(--set source_language=... --set target_language=...)")
        for split, stems in self.stems.items():
            for stem in stems:
                for language in (source, target):
                    if find_text_file(self.folder, stem, language) is None:
                        present = sorted({p.name.split(".")[1] for p in self.folder.glob(f"{stem}.*")
                                          if len(p.name.split(".")) > 1}) if self.folder.is_dir() else []
                        raise UserError(f"{self.folder / f'{stem}.{language}'} (or .gz) not found: no {language!r} "
                                        f"side for the {split} split; languages present for {stem!r}: "
                                        f"{', '.join(present) or 'none'}")

    def files(self, source: str, target: str) -> list[Path]:
        self.check_pair(source, target)
        return [find_text_file(self.folder, stem, language) for split in SPLITS for stem in self.stems[split]
                for language in (source, target)]

    def read(self, source: str, target: str) -> RawCorpus:
        self.check_pair(source, target)
        corpus = RawCorpus({split: [] for split in SPLITS})
        for split in SPLITS:
            for stem in self.stems[split]:
                source_path = find_text_file(self.folder, stem, source)
                target_path = find_text_file(self.folder, stem, target)
                source_lines = list(text_lines(source_path))
                target_lines = list(text_lines(target_path))
                if len(source_lines) != len(target_lines):
                    raise UserError(f"{source_path} has {len(source_lines)} lines but {target_path} has "
                                    f"{len(target_lines)}: parallel files must be line-aligned")
                for (line_number, source_text), (_, target_text) in zip(source_lines, target_lines):
                    where = f"{source_path}:{line_number}"
                    if not source_text.strip() or not target_text.strip():
                        corpus.skipped_empty += 1
                        corpus.first_empty = corpus.first_empty or where
                        continue
                    corpus.splits[split].append(Pair(source_text.strip(), target_text.strip(), where))
        return corpus


def tatoeba_split(english: str) -> str:
    """The documented, fixed split: md5(English sentence) mod 100 -> test 0-1, valid 2-3, train 4-99."""
    bucket = int(hashlib.md5(english.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "test" if bucket < 2 else "valid" if bucket < 4 else "train"


@dataclass
class TatoebaPairs:
    """manythings.org's ``fra.txt``: ``English<TAB>French[<TAB>attribution]`` per line."""

    path: Path
    name: str = "tatoeba"
    languages: tuple[str, ...] = ("en", "fr")

    def check_pair(self, source: str, target: str) -> None:
        if {source, target} != set(self.languages):
            raise UserError(f"unknown language pair {source}-{target} for {self.name}: it has en-fr and fr-en "
                            f"(--set source_language=... --set target_language=...)")

    def files(self, source: str, target: str) -> list[Path]:
        self.check_pair(source, target)
        return [self.path]

    def read(self, source: str, target: str) -> RawCorpus:
        self.check_pair(source, target)
        corpus = RawCorpus({split: [] for split in SPLITS})
        for line_number, line in text_lines(self.path):
            fields = line.split("\t")
            where = f"{self.path}:{line_number}"
            if not line.strip():
                corpus.skipped_empty += 1
                corpus.first_empty = corpus.first_empty or where
                continue
            if len(fields) < 2:
                raise UserError(f"{where}: expected English<TAB>French[<TAB>attribution], found no tab")
            english, french = fields[0].strip(), fields[1].strip()
            if not english or not french:
                corpus.skipped_empty += 1
                corpus.first_empty = corpus.first_empty or where
                continue
            texts = {"en": english, "fr": french}
            corpus.splits[tatoeba_split(english)].append(Pair(texts[source], texts[target], where))
        return corpus


# --- tokenization, cached -------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _moses(language: str):
    from sacremoses import MosesDetokenizer, MosesTokenizer

    return MosesTokenizer(lang=language), MosesDetokenizer(lang=language)


def tokenize(text: str, language: str, lowercase: bool = False) -> list[str]:
    """Moses tokenization (sacremoses, no XML escaping), then lowercasing if asked."""
    tokens = _moses(language)[0].tokenize(text, escape=False)
    return [t.lower() for t in tokens] if lowercase else tokens


def detokenize(tokens: list[str], language: str) -> str:
    return _moses(language)[1].detokenize(tokens)


@dataclass
class TokenizedPair:
    source: list[str]
    target: list[str]
    target_text: str  # the untokenized reference (lowercased when the tokens are), for sacreBLEU
    where: str


def tokenized_corpus(reader, source: str, target: str, lowercase: bool) -> tuple[dict[str, list[TokenizedPair]], RawCorpus]:
    """Tokenize every split once; the result is cached under cache_dir(), keyed by the files' md5."""
    import sacremoses

    files = reader.files(source, target)
    key_text = json.dumps({"reader": type(reader).__name__, "stems": getattr(reader, "stems", None),
                           "files": [(p.name, file_md5(p)) for p in files], "source": source, "target": target,
                           "lowercase": lowercase, "version": TOKENIZATION_VERSION,
                           "sacremoses": getattr(sacremoses, "__version__", "?")}, sort_keys=True)
    key = hashlib.md5(key_text.encode()).hexdigest()
    cached = cache_dir() / "tokenized" / f"{key}.json.gz"
    if cached.is_file():
        try:
            with gzip.open(cached, "rt", encoding="utf-8") as handle:
                saved = json.load(handle)
            splits = {split: [TokenizedPair(s.split(" ") if s else [], t.split(" ") if t else [], text, where)
                              for s, t, text, where in saved["splits"][split]] for split in SPLITS}
            return splits, RawCorpus({}, saved["skipped_empty"], saved["first_empty"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is rebuilt below
    raw = reader.read(source, target)
    say(f"tokenizing {sum(len(v) for v in raw.splits.values())} sentence pairs with sacremoses "
        f"({source}-{target}); cached in {cached}")
    splits = {}
    for split in SPLITS:
        splits[split] = [TokenizedPair(tokenize(p.source, source, lowercase), tokenize(p.target, target, lowercase),
                                       p.target.lower() if lowercase else p.target, p.where)
                         for p in raw.splits[split]]
    payload = {"skipped_empty": raw.skipped_empty, "first_empty": raw.first_empty,
               "splits": {split: [(" ".join(p.source), " ".join(p.target), p.target_text, p.where) for p in pairs]
                          for split, pairs in splits.items()}}
    cached.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cached.parent, prefix=".tmp-")
    with os.fdopen(handle, "wb") as raw_file, gzip.open(raw_file, "wt", encoding="utf-8") as out:
        json.dump(payload, out)
    os.replace(temporary, cached)
    return splits, RawCorpus({}, raw.skipped_empty, raw.first_empty)


# --- vocabularies and the source-reversal transform ------------------------------------------------

def build_vocabulary(sentences: list[list[str]], max_size: int, min_count: int, source: str) -> Vocabulary:
    """The ``max_size`` most frequent words seen at least ``min_count`` times, plus the special words."""
    counts = Counter(word for sentence in sentences for word in sentence)
    kept = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS), key=lambda w: (-counts[w], w))
    kept = Counter({w: counts[w] for w in kept[:max_size]})
    return Vocabulary.from_counts(kept, specials=SPECIALS, unknown=UNKNOWN, source=source)


def reverse_source(tokens: list) -> list:
    """Sutskever et al. 2014, Sec. 3.3: feed the source words in reverse order (the target is untouched),
    so the first target words are close in time to the source words they translate."""
    return list(reversed(tokens))


def encode_source(tokens: list[str], vocabulary: Vocabulary, reverse: bool) -> list[int]:
    ids = vocabulary.encode(tokens)
    return reverse_source(ids) if reverse else ids


class ParallelDataset(Dataset):
    def __init__(self, pairs: list[TokenizedPair], source_vocabulary: Vocabulary, target_vocabulary: Vocabulary,
                 reverse: bool):
        self.pairs = pairs
        self.sources = [torch.tensor(encode_source(p.source, source_vocabulary, reverse)) for p in pairs]
        self.targets = [torch.tensor(target_vocabulary.encode(p.target)) for p in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def lengths(self) -> list[tuple[int, int]]:
        return [(len(s), len(t)) for s, t in zip(self.sources, self.targets)]

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        return {"id": index, "source": self.sources[index], "target": self.targets[index],
                "reference_tokens": " ".join(pair.target), "reference_text": pair.target_text}


def collate(examples: list[dict], bos: int, eos: int, pad: int = 0) -> dict:
    """Pad to the longest sentence; the decoder reads <s> y_1..y_n and predicts y_1..y_n </s>."""
    pad_sequence = torch.nn.utils.rnn.pad_sequence
    sources = [e["source"] for e in examples]
    targets = [e["target"] for e in examples]
    return {
        "ids": [e["id"] for e in examples],
        "source": pad_sequence(sources, batch_first=True, padding_value=pad),
        "source_lengths": torch.tensor([len(s) for s in sources]),
        "target_input": pad_sequence([torch.cat([torch.tensor([bos]), t]) for t in targets], batch_first=True,
                                     padding_value=pad),
        "target_output": pad_sequence([torch.cat([t, torch.tensor([eos])]) for t in targets], batch_first=True,
                                      padding_value=pad),
        "reference_tokens": [e["reference_tokens"] for e in examples],
        "reference_text": [e["reference_text"] for e in examples],
    }


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of sentences of similar length (Sec. 3.4: "all sentences in a minibatch are roughly of
    the same length"), in a random batch order each epoch, sharded by rank.

    Sentences are sorted by (source, target) length, ties broken at random per epoch, cut into batches
    of ``batch_size``; the batch order is shuffled. Process ``rank`` of ``world_size`` takes every
    ``world_size``-th batch; the list is padded by repeating batches so every process gets the same
    number (DDP needs that; evaluation drops the repeats by example id).
    """

    def __init__(self, lengths: list[tuple[int, int]], batch_size: int, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        if not lengths:
            raise UserError("no sentence pairs to batch")
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        generator = random.Random(self.seed + self.epoch)
        if self.shuffle:
            generator.shuffle(order)
        order.sort(key=lambda i: self.lengths[i])  # stable: the shuffle breaks ties
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            generator.shuffle(batches)
        per_rank = math.ceil(len(batches) / self.world_size)
        padding = per_rank * self.world_size - len(batches)
        return batches + [batches[i % len(batches)] for i in range(padding)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches()[self.rank::self.world_size]

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.lengths) / self.batch_size) / self.world_size)


class ParallelTextDataModule(L.LightningDataModule):
    """Tokenized, numbericalized parallel text in length-bucketed batches; vocabularies from train.

    ``batch_size`` is per process. ``max_length``: training pairs with a longer source or target are
    dropped (counted, said once); a longer source in valid or test is an error naming its line.
    """

    def __init__(self, reader, source_language: str = "en", target_language: str = "fr", batch_size: int = 128,
                 reverse_source: bool = True, lowercase: bool = False, source_vocabulary_size: int = 160000,
                 target_vocabulary_size: int = 80000, min_count: int = 1, max_length: int = 100,
                 eval_batch_size: int | None = None, seed: int = 0):
        super().__init__()
        self.reader = reader
        self.source_language, self.target_language = source_language, target_language
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.reverse_source, self.lowercase = reverse_source, lowercase
        self.source_vocabulary_size, self.target_vocabulary_size = source_vocabulary_size, target_vocabulary_size
        self.min_count, self.max_length, self.seed = min_count, max_length, seed
        self._pairs: dict[str, list[TokenizedPair]] | None = None
        self._vocabularies: tuple[Vocabulary, Vocabulary] | None = None
        self._datasets: dict[str, ParallelDataset] = {}

    @property
    def pairs(self) -> dict[str, list[TokenizedPair]]:
        if self._pairs is None:
            splits, raw = tokenized_corpus(self.reader, self.source_language, self.target_language, self.lowercase)
            if raw.skipped_empty:
                say(f"skipped {raw.skipped_empty} sentence pair(s) with an empty side (first: {raw.first_empty})")
            train = [p for p in splits["train"] if len(p.source) <= self.max_length and len(p.target) <= self.max_length]
            if len(train) < len(splits["train"]):
                say(f"dropped {len(splits['train']) - len(train)} training pair(s) longer than max_length="
                    f"{self.max_length} tokens")
            if not train:
                raise UserError(f"{self.reader.name}: no training sentence pairs left (max_length={self.max_length})")
            for split in ("valid", "test"):
                if not splits[split]:
                    raise UserError(f"{self.reader.name}: the {split} split is empty")
                for pair in splits[split]:
                    if len(pair.source) > self.max_length:
                        raise UserError(f"{pair.where}: source sentence of {len(pair.source)} tokens is longer than "
                                        f"max_length={self.max_length} (--set max_length=N)")
            self._pairs = {"train": train, "valid": splits["valid"], "test": splits["test"]}
        return self._pairs

    @property
    def vocabularies(self) -> tuple[Vocabulary, Vocabulary]:
        if self._vocabularies is None:
            train = self.pairs["train"]
            self._vocabularies = (
                build_vocabulary([p.source for p in train], self.source_vocabulary_size, self.min_count,
                                 f"{self.reader.name} train ({self.source_language})"),
                build_vocabulary([p.target for p in train], self.target_vocabulary_size, self.min_count,
                                 f"{self.reader.name} train ({self.target_language})"))
        return self._vocabularies

    @property
    def source_vocabulary(self) -> Vocabulary:
        return self.vocabularies[0]

    @property
    def target_vocabulary(self) -> Vocabulary:
        return self.vocabularies[1]

    def dataset(self, split: str) -> ParallelDataset:
        if split not in self._datasets:
            self._datasets[split] = ParallelDataset(self.pairs[split], *self.vocabularies, reverse=self.reverse_source)
        return self._datasets[split]

    def checksum(self) -> str:
        digest = hashlib.md5()
        for path in self.reader.files(self.source_language, self.target_language):
            digest.update(f"{path.name}:{file_md5(path)}\n".encode())
        return digest.hexdigest()

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        rank, world = self._rank_and_world()
        sampler = BucketBatchSampler(dataset.lengths(), self.batch_size if shuffle else self.eval_batch_size,
                                     shuffle=shuffle, seed=self.seed, rank=rank, world_size=world)
        bos, eos = self.target_vocabulary.index(BOS), self.target_vocabulary.index(EOS)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=lambda e: collate(e, bos, eos))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


# --- the catalog ---------------------------------------------------------------------------------

class ParallelFilesSpec(DatasetSpec):
    """A dataset whose files may be plain or gzipped: ``train.en`` or ``train.en.gz`` both count.

    A required file named ``train.*`` is present when ``train.<any language>`` is (the ``parallel``
    dataset: the language pair comes from the config, and the reader checks it).
    """

    def missing_files(self, data_root: Path) -> list[Path]:
        if self.embedded:
            return []
        folder = data_root / self.folder
        return [folder / f for f in self.required_files
                if not (folder / f).is_file() and not (folder / f"{f}.gz").is_file()
                and not (f.endswith(".*") and any(folder.glob(f)))]


MULTI30K_STEMS = {"train": ("train",), "valid": ("val",), "test": ("test_2016_flickr",)}
WMT14_STEMS = {"train": ("train",), "valid": ("newstest2012", "newstest2013"), "test": ("newstest2014",)}
PARALLEL_STEMS = {"train": ("train",), "valid": ("valid",), "test": ("test",)}


def reader_for(dataset: str, folder: Path):
    """The reader of a registered translation dataset, given its folder."""
    if dataset == "multi30k":
        return ParallelFiles(folder, MULTI30K_STEMS, "multi30k", ("en", "fr"))
    if dataset == "wmt14":
        return ParallelFiles(folder, WMT14_STEMS, "wmt14", ("en", "fr"))
    if dataset == "tatoeba":
        return TatoebaPairs(folder / "fra.txt")
    from datamodules.translation_sample import SAMPLE_NAME

    if dataset == SAMPLE_NAME:
        return ParallelFiles(folder, PARALLEL_STEMS, SAMPLE_NAME, ("en", "fr"))
    return ParallelFiles(folder, PARALLEL_STEMS, f"parallel files in {folder}")


WMT14_SOURCES = (
    Source("https://www.statmt.org/wmt14/translation-task.html",
           "WMT'14 English-French training data (Europarl v7, Common Crawl, UN, News Commentary v9, 10^9 "
           "French-English); Sutskever et al. used the 12M-sentence subset selected by Schwenk"),
    Source("http://www-lium.univ-lemans.fr/~schwenk/cslm_joint_paper/",
           "Schwenk's selected WMT'14 En-Fr subset (348M French / 304M English words), the paper's training set"),
    Source("https://www.statmt.org/wmt14/dev.tgz", "newstest2012 and newstest2013 (validation, as in the paper)"),
    Source("https://www.statmt.org/wmt14/test-full.tgz", "newstest2014 (the test set, 3003 sentences)"),
    Source("https://huggingface.co/datasets/wmt/wmt14", "HF `datasets` wmt14 fr-en: `repro data prepare wmt14` "
           "exports it to the plain files when `datasets` is installed and the data is in its cache"),
)


def prepare_wmt14(data_root: Path, archive: Path | None) -> None:
    """Export WMT'14 fr-en from the HF datasets cache into plain files, or say which files go where."""
    target = data_root / "wmt14"
    layout = (f"put line-aligned files in {target}/: train.en train.fr (the training corpus, e.g. Schwenk's "
              f"selection), newstest2012.en/.fr, newstest2013.en/.fr (validation) and newstest2014.en/.fr (test); "
              f"plain or .gz; sgm test sets must be converted to one sentence per line first")
    if archive is not None:
        raise UserError(f"data prepare wmt14: --archive is not supported (several archives make this corpus); {layout}")
    try:
        import datasets
    except ImportError:
        raise UserError(f"data prepare wmt14: the `datasets` package is not installed, so nothing can be exported; "
                        f"{layout}") from None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # only what is already in the cache: no download here
    try:
        loaded = datasets.load_dataset("wmt14", "fr-en")
    except Exception as error:  # noqa: BLE001 - any failure means: not in the cache
        raise UserError(f"data prepare wmt14: HF datasets could not load wmt14 fr-en from its cache "
                        f"({type(error).__name__}); {layout}") from None
    target.mkdir(parents=True, exist_ok=True)
    # HF's validation is newstest2013 only; the paper validated on 2012+2013, so 2012 must come as files
    for split, stem in (("train", "train"), ("validation", "newstest2013"), ("test", "newstest2014")):
        for language in ("en", "fr"):
            with gzip.open(target / f"{stem}.{language}.gz", "wt", encoding="utf-8") as out:
                for row in loaded[split]:
                    out.write(row["translation"][language].replace("\n", " ") + "\n")
    print(f"wmt14: exported train, newstest2013 and newstest2014 to {target}; newstest2012.en/.fr must be added "
          f"from {WMT14_SOURCES[2].url}")


register_dataset(ParallelFilesSpec(
    name="wmt14",
    description="WMT'14 English-French (the paper's data: newstest2012+2013 valid, newstest2014 test)",
    folder="wmt14",
    required_files=tuple(f"{stem}.{lang}" for stems in WMT14_STEMS.values() for stem in stems for lang in ("en", "fr")),
    license="WMT'14 shared task data; each corpus under its own terms (see statmt.org)",
    sources=WMT14_SOURCES,
    prepare=prepare_wmt14,
))

register_dataset(ParallelFilesSpec(
    name="multi30k",
    description="Multi30k task 1 English-French (29000 train, 1014 val, 1000 test_2016_flickr)",
    folder="multi30k_en_fr",
    required_files=tuple(f"{stems[0]}.{lang}" for stems in MULTI30K_STEMS.values() for lang in ("en", "fr")),
    license="non-commercial research and educational use (multi30k/dataset README)",
    sources=(Source("https://github.com/multi30k/dataset", "data/task1/raw/{train,val,test_2016_flickr}.{en,fr}.gz"),),
))

register_dataset(DatasetSpec(
    name="tatoeba",
    description="Tatoeba English-French pairs, manythings.org format; split by md5 of the English sentence "
                "(test 2%, valid 2%, train 96%)",
    folder="tatoeba_eng_fra",
    required_files=("fra.txt",),
    license="CC-BY 2.0 (FR), Tatoeba terms of use; attribution www.manythings.org/anki and tatoeba.org",
    sources=(Source("https://www.manythings.org/anki/fra-eng.zip", "fra.txt inside the zip"),),
))

register_dataset(ParallelFilesSpec(
    name="parallel",
    description="your own line-aligned corpus: {train,valid,test}.<source lang>/.<target lang>, plain or .gz",
    folder="parallel",
    required_files=tuple(f"{split}.*" for split in SPLITS),
    license="yours",
))
