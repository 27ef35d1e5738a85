"""Line-aligned parallel text for translation: the readers, the registry entry, the datamodule.

One LightningDataModule reads every corpus; what differs is only the reader, and each registered
corpus (``ParallelTextSpec``: Multi30k, Tatoeba, WMT'14 and your own files in
``datamodules.translation.corpora``, the embedded sample in ``datamodules.translation.sample``) carries
its own, with its languages and test sets. Nothing branches on a corpus's name.

- ``ParallelFiles``: one sentence per line, line ``i`` of the source file translates line ``i`` of
  the target file, plain or gzipped (``train.en`` or ``train.en.gz``). A split may be several files
  read one after the other (WMT'14 validates on newstest2012 followed by newstest2013); the test split
  is the test set the run chose (``--set test_set=test_2017_flickr`` on Multi30k). Multi30k, WMT'14,
  the embedded sample and the ``parallel`` dataset (your own corpus in
  ``<data root>/parallel/{train,valid,test}.<lang>``) all go through it.
- ``TatoebaPairs``: the manythings.org file ``fra.txt``, one pair per line,
  ``English<TAB>French[<TAB>attribution]``. It has no official split, so the suite makes one that
  never changes: the md5 of the English sentence, as an integer modulo 100, puts a pair in test
  (0-1), valid (2-3) or train (4-99). All translations of the same English sentence land in the
  same split, so no test source is seen in training.

Then, the same for every corpus: Moses tokenization (sacremoses on every core) and optional
lowercasing, done once into a prepared corpus of memory-mapped token arrays under ``cache_dir()``
(``datamodules.translation.prepared``, keyed by the files' md5, so a second run, or a second process,
maps it instead of tokenizing again), source and target
vocabularies cut to the most frequent words (the rest become ``<unk>``), the source-reversal
transform of Sutskever et al. 2014 (the source words are reversed, never the target), and batches of
sentences of similar length (``BucketBatchSampler``), sharded by rank so it also works under DDP.

Bad input is a one-line error: files with different line counts (both named, with their counts), a
pair with an empty side (counted and skipped, said once), an evaluation source longer than
``max_length``, a language pair the corpus does not have, a test set it does not have or that lacks
one of the two languages (with the test sets that have both), a missing file (named, with the
languages present for that split), a corpus folder that is not there.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.catalog import DatasetSpec, get_dataset, numbered_lines
from datamodules.preparation import TypeTable
from datamodules.resumable import ResumableDataLoader
from datamodules.translation.prepared import PreparedCorpus, StreamStats, cached_md5, prepare
from repro.errors import UserError
from repro.translation.text import BOS, EOS, SPECIALS, UNKNOWN
from repro.vocabulary import Vocabulary

SPLITS = ("train", "valid", "test")


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


def check_language_pair(corpus: str, languages: tuple[str, ...], source: str, target: str) -> None:
    """A one-line error unless ``source`` and ``target`` are two different languages of the corpus
    (``languages`` () means: whatever its files have, checked when they are opened)."""
    if source == target:
        raise UserError(f"source and target language are both {source!r}")
    if languages and not {source, target} <= set(languages):
        has = (f"{languages[0]}-{languages[1]} and {languages[1]}-{languages[0]}" if len(languages) == 2
               else f"any two of {', '.join(languages)}")
        raise UserError(f"unknown language pair {source}-{target} for {corpus}: it has {has} "
                        f"(--set source_language=... --set target_language=...)")


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
        check_language_pair(self.name, self.languages, source, target)
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

    def stream(self, source: str, target: str, stats: StreamStats) -> Iterator[tuple[str, str, str, int, int]]:
        """(split, source text, target text, index of the source file in ``files()``, line) of every pair,
        read a line at a time; pairs with an empty side are counted in ``stats`` and skipped."""
        files = self.files(source, target)
        for split in SPLITS:
            for stem in self.stems[split]:
                source_path = find_text_file(self.folder, stem, source)
                target_path = find_text_file(self.folder, stem, target)
                file_index = files.index(source_path)
                source_count = target_count = 0
                for source_line, target_line in zip_longest(text_lines(source_path), text_lines(target_path)):
                    source_count += source_line is not None
                    target_count += target_line is not None
                    if source_line is None or target_line is None:
                        continue  # counting the rest of the longer file, for the error below
                    (line_number, source_text), target_text = source_line, target_line[1]
                    if not source_text.strip() or not target_text.strip():
                        stats.skip(f"{source_path}:{line_number}")
                        continue
                    yield split, source_text.strip(), target_text.strip(), file_index, line_number
                if source_count != target_count:
                    raise UserError(f"{source_path} has {source_count} lines but {target_path} has "
                                    f"{target_count}: parallel files must be line-aligned")

    def read(self, source: str, target: str) -> RawCorpus:
        """Every pair as Python strings (for small corpora and tests; the datamodule streams instead)."""
        return read_stream(self, source, target)


def read_stream(reader, source: str, target: str) -> RawCorpus:
    stats = StreamStats()
    files = reader.files(source, target)
    corpus = RawCorpus({split: [] for split in SPLITS})
    for split, source_text, target_text, file_index, line in reader.stream(source, target, stats):
        corpus.splits[split].append(Pair(source_text, target_text, f"{files[file_index]}:{line}"))
    corpus.skipped_empty, corpus.first_empty = stats.skipped_empty, stats.first_empty
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
        check_language_pair(self.name, self.languages, source, target)
        if not self.path.is_file():
            raise UserError(f"{self.path}: file not found")

    def files(self, source: str, target: str) -> list[Path]:
        self.check_pair(source, target)
        return [self.path]

    def stream(self, source: str, target: str, stats: StreamStats) -> Iterator[tuple[str, str, str, int, int]]:
        self.check_pair(source, target)
        for line_number, line in text_lines(self.path):
            fields = line.split("\t")
            where = f"{self.path}:{line_number}"
            if not line.strip():
                stats.skip(where)
                continue
            if len(fields) < 2:
                raise UserError(f"{where}: expected English<TAB>French[<TAB>attribution], found no tab")
            english, french = fields[0].strip(), fields[1].strip()
            if not english or not french:
                stats.skip(where)
                continue
            texts = {"en": english, "fr": french}
            yield tatoeba_split(english), texts[source], texts[target], 0, line_number

    def read(self, source: str, target: str) -> RawCorpus:
        return read_stream(self, source, target)


# --- tokenization, prepared once ---------------------------------------------------------------------


@dataclass
class TokenizedPair:
    source: list[str]
    target: list[str]
    target_text: str  # the untokenized reference (lowercased when the tokens are), for sacreBLEU
    where: str


class TokenizedPairs(Sequence):
    """A split of a prepared corpus seen as ``TokenizedPair``s, made one at a time when asked for
    (for tests and inspection; training reads the mapped arrays through ``ParallelDataset``)."""

    def __init__(self, corpus: PreparedCorpus, split: str, indices: np.ndarray):
        self.corpus, self.split, self.indices = corpus, split, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> TokenizedPair:
        part, i = self.corpus.splits[self.split], int(self.indices[index])
        source_types, target_types = self.corpus.types["source"], self.corpus.types["target"]
        return TokenizedPair([source_types[t] for t in part.source(i)], [target_types[t] for t in part.target(i)],
                             part.text(i), part.where(i))


def prepared_corpus(reader, source: str, target: str, lowercase: bool, workers: int | None = None) -> PreparedCorpus:
    """The corpus tokenized and prepared once under cache_dir() (keyed by its files' md5), mapped."""
    return PreparedCorpus(prepare(reader, source, target, lowercase, workers, announce=say))


# --- vocabularies and the source-reversal transform ------------------------------------------------

def vocabulary_from_counts(counts: Counter, max_size: int, min_count: int, source: str) -> Vocabulary:
    """The ``max_size`` most frequent words seen at least ``min_count`` times, plus the special words."""
    kept = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS), key=lambda w: (-counts[w], w))
    kept = Counter({w: counts[w] for w in kept[:max_size]})
    return Vocabulary.from_counts(kept, specials=SPECIALS, unknown=UNKNOWN, source=source)


def corpus_vocabulary(types: Sequence[str], counts: np.ndarray, max_size: int, min_count: int,
                      source: str) -> tuple[Vocabulary, np.ndarray]:
    """``vocabulary_from_counts`` over a corpus dictionary (``counts[i]`` is how often ``types[i]`` occurs),
    and the map from corpus id to vocabulary id, without a Python object per word type: the counts pick
    the candidates in numpy, and only the words kept (and those tied at the cut) are made strings. The
    same vocabulary and ids, word for word, as counting strings gave."""
    specials = positions_of(types, SPECIALS)  # the special words, wherever a corpus holds them as text
    eligible = counts >= max(min_count, 1)
    eligible[specials] = False
    ids = np.flatnonzero(eligible)
    if len(ids) > max_size:
        chosen = counts[ids]
        threshold = np.partition(chosen, len(chosen) - max_size)[len(chosen) - max_size]  # the max_size-th largest
        sure, tied = ids[chosen > threshold], ids[chosen == threshold]
        tied = sorted(tied.tolist(), key=types.__getitem__)[:max_size - len(sure)]  # ties: alphabetical
        ids = np.concatenate([sure, np.asarray(tied, dtype=ids.dtype)])
    words = {i: types[i] for i in ids.tolist()}
    vocabulary = Vocabulary.from_counts(Counter({word: int(counts[i]) for i, word in words.items()}),
                                        specials=SPECIALS, unknown=UNKNOWN, source=source)
    lookup = np.full(len(types), vocabulary.index(UNKNOWN), dtype=np.int64)  # words cut: <unk>
    for i, word in words.items():
        lookup[i] = vocabulary.index(word)
    for i in specials:
        lookup[i] = vocabulary.index(types[i])
    return vocabulary, lookup


def positions_of(types: Sequence[str], words) -> list[int]:
    if isinstance(types, TypeTable):
        return types.positions_of(words)
    return [i for i, word in enumerate(types) if word in words]


def build_vocabulary(sentences: list[list[str]], max_size: int, min_count: int, source: str) -> Vocabulary:
    return vocabulary_from_counts(Counter(word for sentence in sentences for word in sentence), max_size, min_count,
                                  source)


class ParallelDataset(Dataset):
    """One split's pairs (``indices`` into the prepared split), each sliced from the mapped arrays when
    asked for and mapped from corpus ids to vocabulary ids; no Python object is kept per pair."""

    def __init__(self, corpus: PreparedCorpus, split: str, indices: np.ndarray, source_map: np.ndarray,
                 target_map: np.ndarray, reverse: bool):
        self.part, self.indices, self.reverse = corpus.splits[split], indices, reverse
        self.target_types = corpus.types["target"]
        # corpus id -> vocabulary id, one array per side (words cut from the vocabulary map to <unk>)
        self.source_map, self.target_map = source_map, target_map

    def __len__(self) -> int:
        return len(self.indices)

    def lengths(self) -> np.ndarray:
        """(source length, target length) of each pair, from the offsets alone: shape (pairs, 2)."""
        return np.stack([self.part.source_lengths()[self.indices], self.part.target_lengths()[self.indices]], axis=1)

    def __getitem__(self, index: int) -> dict:
        i = int(self.indices[index])
        source = self.source_map[self.part.source(i)]
        target_ids = self.part.target(i)
        return {"id": index, "source": torch.from_numpy(np.ascontiguousarray(source[::-1] if self.reverse else source)),
                "target": torch.from_numpy(self.target_map[target_ids]),
                "reference_tokens": self.target_types.join(target_ids),
                "reference_text": self.part.text(i)}


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

    ``lengths`` is a (pairs, 2) array (or a list of pairs); the order is kept as numpy arrays. The
    random tie-break is Python's ``random.Random(seed + epoch).shuffle`` of the positions, as it always
    was, so a seed gives the batches it gave before (a transient list of ints, ~1 s per million pairs).
    """

    def __init__(self, lengths, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        if len(lengths) == 0:
            raise UserError("no sentence pairs to batch")
        self.lengths = np.asarray(lengths, dtype=np.int32).reshape(-1, 2)  # a sentence is < 2**31 tokens
        self.batch_size, self.shuffle = batch_size, shuffle
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> tuple[np.ndarray, list[int]]:
        """The sorted order of all pairs, and the start of each batch in it, in batch order."""
        count = len(self.lengths)
        generator = random.Random(self.seed + self.epoch)
        positions = np.int32 if count < 2**31 else np.int64  # 4 bytes a pair in every process, not 8
        order = np.arange(count, dtype=positions)
        if self.shuffle:
            shuffled = list(range(count))
            generator.shuffle(shuffled)
            order = np.fromiter(shuffled, dtype=positions, count=count)
            del shuffled
        keys = self.lengths[order]
        order = order[np.lexsort((keys[:, 1], keys[:, 0]))]  # stable: the shuffle breaks ties
        starts = list(range(0, count, self.batch_size))
        if self.shuffle:
            generator.shuffle(starts)
        per_rank = math.ceil(len(starts) / self.world_size)
        padding = per_rank * self.world_size - len(starts)
        return order, starts + [starts[i % len(starts)] for i in range(padding)]

    def __iter__(self) -> Iterator[list[int]]:
        order, starts = self._all_batches()
        for start in starts[self.rank::self.world_size]:
            yield order[start:start + self.batch_size].tolist()

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.lengths) / self.batch_size) / self.world_size)


class ParallelTextDataModule(L.LightningDataModule):
    """Tokenized, numbericalized parallel text in length-bucketed batches; vocabularies from train.

    ``batch_size`` is per process. ``max_length``: training pairs with a longer source or target are
    dropped (counted, said once); a longer source in valid or test is an error naming its line. The
    corpus is prepared once into memory-mapped arrays (``datamodules.translation.prepared``); every
    process maps the same files.
    """

    shards_by_process = True  # BucketBatchSampler gives each process its own batches; no DistributedSampler

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
        self._corpus: PreparedCorpus | None = None
        self._indices: dict[str, np.ndarray] | None = None
        self._vocabularies: tuple[Vocabulary, Vocabulary] | None = None
        self._source_map: np.ndarray | None = None
        self._target_map: np.ndarray | None = None
        self._datasets: dict[str, ParallelDataset] = {}

    @property
    def corpus(self) -> PreparedCorpus:
        """The prepared corpus, checked: the pairs each split uses are in ``indices``."""
        if self._corpus is None:
            corpus = prepared_corpus(self.reader, self.source_language, self.target_language, self.lowercase)
            if corpus.skipped_empty:
                say(f"skipped {corpus.skipped_empty} sentence pair(s) with an empty side (first: {corpus.first_empty})")
            train = corpus.splits["train"]
            keep = np.flatnonzero((train.source_lengths() <= self.max_length)
                                  & (train.target_lengths() <= self.max_length)).astype(np.int32 if len(train) < 2**31 else np.int64)
            if len(keep) < len(train):
                say(f"dropped {len(train) - len(keep)} training pair(s) longer than max_length={self.max_length} tokens")
            if len(keep) == 0:
                raise UserError(f"{self.reader.name}: no training sentence pairs left (max_length={self.max_length})")
            indices = {"train": keep}
            for split in ("valid", "test"):
                part = corpus.splits[split]
                if len(part) == 0:
                    raise UserError(f"{self.reader.name}: the {split} split is empty")
                too_long = np.flatnonzero(part.source_lengths() > self.max_length)
                if len(too_long):
                    first = int(too_long[0])
                    raise UserError(f"{part.where(first)}: source sentence of {int(part.source_lengths()[first])} tokens "
                                    f"is longer than max_length={self.max_length} (--set max_length=N)")
                indices[split] = np.arange(len(part))
            used = f" ({len(keep):,} used)" if len(keep) < len(train) else ""
            say(f"DATA: read {self.reader.name} {self.source_language}-{self.target_language}: train {len(train):,} "
                f"pairs{used} of {int(train.source_offsets[-1]):,} {self.source_language} and "
                f"{int(train.target_offsets[-1]):,} {self.target_language} tokens, valid {len(indices['valid']):,}, "
                f"test {len(indices['test']):,} (prepared in {corpus.folder})")
            self._corpus, self._indices = corpus, indices
        return self._corpus

    @property
    def pairs(self) -> dict[str, TokenizedPairs]:
        corpus = self.corpus
        return {split: TokenizedPairs(corpus, split, self._indices[split]) for split in SPLITS}

    def _train_counts(self, side: str) -> np.ndarray:
        """Each corpus word's count in the training pairs kept (streaming: bincounts over the mapped ids)."""
        corpus, keep = self.corpus, self._indices["train"]
        train, total = corpus.splits["train"], corpus.counts[side]
        if len(keep) == len(train):
            return total
        if len(keep) * 2 >= len(train):  # few dropped: subtract theirs
            dropped = np.setdiff1d(np.arange(len(train)), keep, assume_unique=True)
            return total - train.token_counts(side, dropped, len(total))
        return train.token_counts(side, keep, len(total))

    @property
    def vocabularies(self) -> tuple[Vocabulary, Vocabulary]:
        if self._vocabularies is None:
            types, made = self.corpus.types, []
            for side, size, language in (("source", self.source_vocabulary_size, self.source_language),
                                         ("target", self.target_vocabulary_size, self.target_language)):
                made.append(corpus_vocabulary(types[side], self._train_counts(side), size, self.min_count,
                                              f"{self.reader.name} train ({language})"))
            (source, self._source_map), (target, self._target_map) = made
            self._vocabularies = (source, target)
        return self._vocabularies

    @property
    def source_vocabulary(self) -> Vocabulary:
        return self.vocabularies[0]

    @property
    def target_vocabulary(self) -> Vocabulary:
        return self.vocabularies[1]

    def dataset(self, split: str) -> ParallelDataset:
        if split not in self._datasets:
            corpus = self.corpus
            _ = self.vocabularies  # and the maps from corpus ids to theirs
            self._datasets[split] = ParallelDataset(corpus, split, self._indices[split], self._source_map, self._target_map,
                                                    reverse=self.reverse_source)
        return self._datasets[split]

    def references(self, split: str) -> dict[str, list[str]]:
        """Each sentence of a split (by its id in the test) with its reference: the tokens BLEU is computed
        on, and the raw text sacreBLEU reads."""
        dataset = self.dataset(split)
        return {str(index): [dataset[index]["reference_tokens"], dataset[index]["reference_text"]]
                for index in range(len(dataset))}

    def checksum(self) -> str:
        digest = hashlib.md5()
        for path in self.reader.files(self.source_language, self.target_language):
            digest.update(f"{path.name}:{cached_md5(path)}\n".encode())
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
        # training resumes mid-epoch at the right batch (datamodules/resumable.py)
        loader = ResumableDataLoader if shuffle else DataLoader
        return loader(dataset, batch_sampler=sampler, collate_fn=lambda e: collate(e, bos, eos))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


# --- the registry: each translation corpus says how it is read ---------------------------------------

@dataclass
class ParallelTextSpec(DatasetSpec):
    """A translation corpus: the catalog's entry plus how it is read.

    ``reader(corpus folder, test set)`` returns the corpus reader (``ParallelFiles``, ``TatoebaPairs``)
    whose test split is that test set; ``languages`` are the corpus's languages (() means: whatever its
    files have); ``test_sets`` name each test set with the languages it exists in (() means: any), the
    first being the standard one. ``--set test_set=NAME`` chooses another, ``--set corpus_dir=FOLDER``
    reads the files from a folder other than the registered one (relative to the data root, or absolute).
    Nothing here, and nothing that calls it, branches on a corpus's name.

    Which files a run needs depends on its config (language pair, test set, ``corpus_dir``), so before
    the config is known nothing is required (``missing_files``), and the reader checks the files when
    the run opens the corpus, naming the first one missing. ``is_present`` (what ``--data auto`` and
    ``data list`` look for) is the registered folder holding ``required_files``, each plain or gzipped
    (``train.en`` or ``train.en.gz``); ``train.*`` is present when ``train.<any language>`` is.
    """

    reader: Callable[[Path, str], ParallelFiles | TatoebaPairs] | None = None
    languages: tuple[str, ...] = ()
    test_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def missing_files(self, data_root: Path) -> list[Path]:
        return []

    def is_present(self, data_root: Path) -> bool:
        if self.embedded:
            return True
        folder = Path(data_root) / self.folder
        return all((folder / f).is_file() or (folder / f"{f}.gz").is_file() or (f.endswith(".*") and any(folder.glob(f)))
                   for f in self.required_files)

    def corpus_folder(self, data_root: Path, corpus_dir: str = "") -> Path:
        if not corpus_dir:
            return self.location(Path(data_root))
        if self.embedded:
            raise UserError(f"--set corpus_dir={corpus_dir}: {self.name} is generated by the suite and has no folder to choose")
        folder = Path(corpus_dir).expanduser()
        folder = folder if folder.is_absolute() else Path(data_root) / folder
        if not folder.is_dir():
            raise UserError(f"--set corpus_dir={corpus_dir}: {folder} is not a folder")
        return folder

    def test_set(self, requested: str, source: str, target: str) -> str:
        """The test set to score on: ``requested``, or the standard one when it is ""; a one-line error
        when the corpus has no such test set or it lacks one of the two languages."""
        check_language_pair(self.name, self.languages, source, target)
        if not requested:
            requested = next(iter(self.test_sets))
        if requested not in self.test_sets:
            raise UserError(f"--set test_set={requested}: {self.name} has no such test set; its test sets: "
                            f"{', '.join(self.test_sets)}")
        has = self.test_sets[requested]
        lacking = [language for language in (source, target) if has and language not in has]
        if lacking:
            others = [name for name, languages in self.test_sets.items()
                      if not languages or {source, target} <= set(languages)]
            raise UserError(f"--set test_set={requested}: {self.name}'s {requested} has no {lacking[0]!r} side "
                            f"(it exists in {', '.join(has)}); test sets with {source} and {target}: "
                            f"{', '.join(others) or 'none'}")
        return requested

    def open(self, data_root: Path, source: str, target: str, test_set: str = "", corpus_dir: str = ""):
        """The reader of this corpus for one run: its folder, language pair and test set checked."""
        chosen = self.test_set(test_set, source, target)
        folder = self.corpus_folder(data_root, corpus_dir)
        if not folder.is_dir():
            how = (f"run `python -m repro data prepare {self.name}`" if self.prepare is not None
                   else "put its files there (`python -m repro data list` says which)")
            raise UserError(f"{self.name}: {folder} not found; {how}, or name a copy elsewhere with "
                            f"--set corpus_dir=FOLDER")
        if corpus_dir:
            say(f"DATA: {self.name} files from {folder} (--set corpus_dir={corpus_dir})")
        reader = self.reader(folder, chosen)
        reader.check_pair(source, target)
        return reader

    def prepare_compact(self, data_root: Path, options: dict) -> str:
        """The corpus tokenized once into memory-mapped arrays, for one language pair (the corpus's first two
        languages unless ``--source``/``--target`` say), test set and lowercasing: what a run of that
        configuration then maps."""
        source = options.get("source") or (self.languages[0] if len(self.languages) > 1 else "")
        target = options.get("target") or (next((x for x in self.languages if x != source), "") if self.languages else "")
        if not source or not target:
            raise UserError(f"data prepare {self.name}: name the language pair (--source LANG --target LANG)")
        reader = self.open(data_root, source, target, options.get("test_set") or "")
        corpus = PreparedCorpus(prepare(reader, source, target, bool(options.get("lowercase")), options.get("workers"),
                                        announce=say))
        train = corpus.splits["train"]
        return (f"{self.name} {source}-{target}: {len(train):,} training pairs of {int(train.source_offsets[-1]):,} + "
                f"{int(train.target_offsets[-1]):,} tokens, prepared in {corpus.folder} "
                f"({corpus.size_on_disk() / 2**20:,.1f} MiB); runs with this language pair, test set and lowercasing map it")

    def make_datamodule(self, config, data_root: Path) -> ParallelTextDataModule:
        """From a translator's config: its language pair, test set, vocabulary sizes, batching and source order."""
        reader = self.open(data_root, config.source_language, config.target_language, config.test_set,
                           config.corpus_dir)
        return ParallelTextDataModule(
            reader, config.source_language, config.target_language, config.batch_size,
            config.reverse_source, config.lowercase, config.source_vocabulary_size, config.target_vocabulary_size,
            config.min_count, config.max_length, config.eval_batch_size, config.seed)


def parallel_text_spec(dataset: str) -> ParallelTextSpec:
    spec = get_dataset(dataset)
    if not isinstance(spec, ParallelTextSpec):
        raise UserError(f"{dataset}: not a translation corpus")
    return spec


def line_aligned(name: str, train: tuple[str, ...], valid: tuple[str, ...], languages: tuple[str, ...] = ()):
    """The reader of a corpus in line-aligned files ``<stem>.<language>[.gz]``: ``train`` and ``valid``
    stems fixed, the test stem the run's test set."""
    def reader(folder: Path, test_set: str) -> ParallelFiles:
        return ParallelFiles(folder, {"train": train, "valid": valid, "test": (test_set,)}, name, languages)
    return reader
