"""Running text for word-level language models: the readers, the registry entry, the datamodule.

One LightningDataModule reads every corpus; what differs is only where a corpus's three files are and
how a line of them becomes a sentence, and each registered corpus (``LanguageModelCorpusSpec``: Penn
Treebank in ``datamodules.language_modeling.ptb``, WikiText-2/-103 and your own text in ``datamodules.language_modeling.wikitext``, the
embedded grammar in ``datamodules.language_modeling.agreement_grammar``) carries its own reader. Nothing branches on a
corpus's name.

Lines and sentences (``TextFiles``): one sentence (or paragraph) per line, words separated by white
space. Every sentence ends with an end-of-sentence token ``<eos>`` that is predicted and counted in
perplexity, as in the RNNLM toolkit and the published PTB figures. What a blank line is depends on the
corpus: an error in PTB's files (they have none), a sentence of its own in WikiText's (the released
files separate paragraphs and headings with blank lines, and the literature's token counts and
perplexities give each line, blank or not, its ``<eos>``: pytorch/examples word_language_model's
``data.py``), skipped in your own text.

Vocabulary: the training words seen at least ``min_count`` times. The others, and words of valid/test
that training never saw, become ``<unk>`` when the vocabulary has it: when the training text has
``<unk>`` itself (PTB and tokenized WikiText, whose vocabularies are closed as released) or when the
cut-off removed words. A valid/test word outside a vocabulary without ``<unk>`` is an error naming its
file and line (it could only be scored as impossible). Each corpus says its own cut-off
(``TextFiles.min_count``); ``min_count`` of the datamodule overrides it.

Training batches follow the usual truncated-BPTT layout (pytorch/examples word_language_model): the
training text is cut into ``batch_size`` parallel streams and read ``bptt`` words at a time, so the
hidden state can be carried from one batch to the next. Evaluation reads valid/test as one stream,
carrying the state through the whole text, so perplexities are comparable with the literature.

Prepared once (``datamodules.language_modeling.prepared``): the three files are read a line at a time
into memory-mapped int32 id streams keyed by their md5, on first use by one process while the others
wait; every process then maps the same files, and batches are sliced from the mapped stream and mapped
to vocabulary ids one at a time, so no process holds a copy of the text.

Several processes: ``batch_size`` is the number of streams of the whole run, and process ``r`` of
``N`` reads streams ``r*batch_size/N ... (r+1)*batch_size/N - 1``. The streams do not depend on ``N``,
so 1 process with 16 streams and 2 processes with 8 each train on the same words at every step.
Evaluation is one stream that cannot be split (the state and dynamic evaluation run through the text
in order), so every process scores the whole text and all get the 1-process number.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from datamodules.catalog import DatasetSpec, get_dataset, numbered_lines
from datamodules.language_modeling.prepared import PreparedSentences, PreparedText, prepare_text
from datamodules.preparation import cached_md5
from repro.errors import UserError
from repro.language_modeling import END_OF_SENTENCE, IGNORE_INDEX, UNKNOWN
from repro.vocabulary import Vocabulary

SPLITS = ("train", "valid", "test")


@rank_zero_only
def say(message: str) -> None:
    print(message, flush=True)


# --- reading ------------------------------------------------------------------------------------

@dataclass
class TextFiles:
    """A corpus on disk, as its reader found it: one file per split, and how its lines are read."""

    name: str  # the corpus, for messages
    paths: dict[str, Path]  # split -> file
    # what a blank line is: "error" (PTB's files have none), "sentence" (WikiText: <eos> alone), "skip"
    blank_lines: Literal["error", "sentence", "skip"] = "error"
    tabs: bool = True  # whether a tab may separate words (in PTB's format it is an error)
    min_count: int = 1  # the corpus's own vocabulary cut-off: 1 keeps every training word
    # (file, its lines, its words) -> None: a released corpus's known sizes, an error when a file differs
    check: Callable[[Path, int, int], None] | None = None


def line_of_word(path: Path, word: str) -> int:
    """The first line of ``path`` that holds ``word`` (for an error message; the file is read again)."""
    return next((number for number, line in numbered_lines(path) if word in line.split()), 0)


def vocabulary_from_counts(types: list[str], counts: np.ndarray, sentences: int, min_count: int,
                           source: str) -> Vocabulary:
    """Training words seen at least ``min_count`` times, most frequent first, and ``<eos>`` counted once
    per sentence; ``<unk>`` takes the count of the words cut (and its own), and is in the vocabulary
    when that count is not zero. ``counts[i]`` is how often ``types[i]`` occurs in the training text."""
    kept: Counter = Counter()
    unknown = cut = 0
    for i in np.flatnonzero(counts).tolist():
        word, count = types[i], int(counts[i])
        if word == END_OF_SENTENCE:  # the end of each sentence, counted below, whatever the text holds
            continue
        if word == UNKNOWN:
            unknown = count
        elif count >= min_count:
            kept[word] = count
        else:
            cut += count
    if not kept:
        raise UserError(f"{source}: no word is seen at least {min_count} times (min_count={min_count}), so the "
                        f"vocabulary would be nothing but {UNKNOWN}; lower the cut-off (--set min_count=N)")
    kept[END_OF_SENTENCE] = sentences
    if unknown + cut:
        kept[UNKNOWN] = unknown + cut
    return Vocabulary.from_counts(kept, unknown=UNKNOWN if UNKNOWN in kept else None, source=source)


def vocabulary_lookup(types: list[str], vocabulary: Vocabulary) -> np.ndarray:
    """Corpus id -> vocabulary id (words outside the vocabulary: ``<unk>``'s id, or -1 without one)."""
    unknown = vocabulary.index(vocabulary.unknown) if vocabulary.unknown is not None else -1
    return np.fromiter((vocabulary.index(word) if word in vocabulary else unknown for word in types),
                       dtype=np.int64, count=len(types))


# --- batches ------------------------------------------------------------------------------------

class StreamChunks(Dataset):
    """Chunk ``i`` of parallel streams: (inputs, targets) of shape [streams, <= bptt].

    With ``lookup``, ``inputs`` and ``targets`` are (mapped) arrays of corpus ids and each chunk is
    mapped to vocabulary ids when asked for: only the chunk is ever copied into this process."""

    def __init__(self, inputs, targets, bptt: int, lookup: np.ndarray | None = None):
        self.inputs, self.targets, self.bptt, self.lookup = inputs, targets, bptt, lookup

    def __len__(self) -> int:
        return (self.inputs.shape[1] + self.bptt - 1) // self.bptt

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = slice(i * self.bptt, (i + 1) * self.bptt)
        if self.lookup is None:
            return self.inputs[:, window], self.targets[:, window]
        return (torch.from_numpy(self.lookup[self.inputs[:, window]]),
                torch.from_numpy(self.lookup[self.targets[:, window]]))


class ResumableChunks:
    """The training loader: chunks in order, resumable in the middle of an epoch.

    Lightning saves ``state_dict()`` in every checkpoint and calls ``load_state_dict()`` before the
    resumed epoch starts, so a run restarted from a mid-epoch checkpoint continues with the next chunk
    instead of re-reading the epoch from its start (Lightning fetches without prefetching when the
    length is known, so the chunks handed out are exactly the chunks trained on).
    """

    def __init__(self, chunks: Dataset):
        self.chunks = chunks
        self.position = 0  # chunks handed out in the current epoch
        self._start = 0

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self):
        start, self._start = self._start, 0
        for index in range(start, len(self.chunks)):
            self.position = index + 1
            yield self.chunks[index]

    def state_dict(self) -> dict:
        return {"position": self.position, "length": len(self.chunks)}

    def load_state_dict(self, state: dict) -> None:
        # a checkpoint from the end of an epoch starts the next epoch from its first chunk
        position = int(state.get("position", 0))
        self._start = position if 0 < position < len(self.chunks) else 0
        self.position = self._start


def split_streams(ids: torch.Tensor, count: int, pad_to_equal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a text into ``count`` contiguous streams of (input, next-word target).

    Training drops the last ``< count`` words so the streams are equal; evaluation keeps every word and
    pads the targets with IGNORE_INDEX, so each word is scored exactly once.
    """
    inputs, targets = ids[:-1], ids[1:]
    if pad_to_equal:
        length = -(-inputs.numel() // count)
        padding = length * count - inputs.numel()
        inputs = torch.cat([inputs, inputs.new_zeros(padding)])
        targets = torch.cat([targets, targets.new_full((padding,), IGNORE_INDEX)])
    else:
        length = inputs.numel() // count
        inputs, targets = inputs[: length * count], targets[: length * count]
    return inputs.view(count, length), targets.view(count, length)


# --- the datamodule -------------------------------------------------------------------------------

class LanguageModelDataModule(L.LightningDataModule):
    """A corpus's three files as training streams and evaluation texts; the vocabulary from training.

    ``batch_size`` is the number of training streams of the whole run; with N processes each reads
    ``batch_size / N`` of them (see the module docstring), so the result does not depend on N.
    ``min_count``: the vocabulary cut-off; 0 takes the corpus's own (``TextFiles.min_count``).
    """

    shards_by_process = True  # each process reads its own streams (world-size invariant); no DistributedSampler

    def __init__(self, files: TextFiles, batch_size: int = 32, bptt: int = 32, eval_bptt: int = 512,
                 min_count: int = 0):
        super().__init__()
        self.files = files
        self.batch_size, self.bptt, self.eval_bptt = batch_size, bptt, eval_bptt
        self.min_count = min_count or files.min_count
        self._prepared: PreparedText | None = None
        self._vocabulary: Vocabulary | None = None
        self._lookup: np.ndarray | None = None

    # Every process needs the text: the first to get here prepares it (the others wait on the lock),
    # then each maps the same files.
    @property
    def prepared(self) -> PreparedText:
        if self._prepared is None:
            # every file's format first (an error there names file and line), then the released sizes
            prepared = PreparedText(prepare_text(self.files.paths, self.files.blank_lines, self.files.tabs,
                                                 self.files.name, announce=say))
            for split in SPLITS:
                if prepared.split_meta(split)["skipped_blank"]:
                    say(f"DATA: skipped {prepared.split_meta(split)['skipped_blank']} blank line(s) of "
                        f"{self.files.paths[split]}")
            if self.files.check is not None:
                for split in SPLITS:
                    meta = prepared.split_meta(split)
                    self.files.check(self.files.paths[split], meta["sentences"], meta["words"])
            self._prepared = prepared
        return self._prepared

    @property
    def sentences(self) -> dict[str, PreparedSentences]:
        """Each split's sentences as lists of words, read from the prepared text when asked for."""
        return {split: self.prepared.sentences(split) for split in SPLITS}

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            prepared = self.prepared
            train = self.files.paths["train"]
            source = f"{train}" + (f" (min_count={self.min_count})" if self.min_count > 1 else "")
            vocabulary = vocabulary_from_counts(prepared.types, prepared.counts["train"],
                                                prepared.split_meta("train")["sentences"], self.min_count, source)
            self._vocabulary, self._lookup = vocabulary, vocabulary_lookup(prepared.types, vocabulary)
            for split in ("valid", "test"):
                self._check_covered(split)
            rule = (f"training words seen at least {self.min_count} times, the rest {UNKNOWN}" if self.min_count > 1
                    else "every training word")
            say(f"VOCABULARY: {len(self._vocabulary):,} words ({rule}; {self.out_of_vocabulary('test'):.1%} of "
                f"the test words are {UNKNOWN} or unseen)")
        return self._vocabulary

    @property
    def lookup(self) -> np.ndarray:
        """Corpus id -> vocabulary id, one entry per word of the prepared text's dictionary."""
        _ = self.vocabulary  # built with it
        return self._lookup

    def _check_covered(self, split: str) -> None:
        if self._vocabulary.unknown is not None:
            return
        outside = self._lookup < 0
        if self.prepared.counts[split][outside].any():
            word = self.prepared.types[self.prepared.first_occurrence(split, outside)]
            path = self.files.paths[split]
            raise UserError(f"{path}:{line_of_word(path, word)}: word {word!r} is not in the training "
                            f"vocabulary and the text has no {UNKNOWN} token to map it to; a vocabulary "
                            f"cut-off makes one (--set min_count=2: words seen once in training become "
                            f"{UNKNOWN})")

    def out_of_vocabulary(self, split: str) -> float:
        """The share of a split's words scored as <unk> (the released <unk> and the words outside the vocabulary)."""
        lookup, vocabulary = self._lookup, self._vocabulary
        unknown_id = vocabulary.index(vocabulary.unknown) if vocabulary.unknown is not None else -1
        unknown = int(self.prepared.counts[split][(lookup == unknown_id) | (lookup < 0)].sum())
        return unknown / max(self.prepared.split_meta(split)["words"], 1)

    def sentences_in_vocabulary(self, split: str):
        """A split's sentences as the model reads them, words outside the vocabulary as <unk>: what a
        baseline must be fit and scored on to count the same words (a cut-off vocabulary maps words of
        training too)."""
        vocabulary = self.vocabulary
        for sentence in self.sentences[split]:
            if all(word in vocabulary for word in sentence):
                yield sentence
            else:
                yield [word if word in vocabulary else vocabulary.unknown for word in sentence]

    def checksum(self) -> str:
        """One md5 over the three files' md5s: identifies exactly which data a run trained on."""
        digest = hashlib.md5()
        for path in sorted(self.files.paths.values(), key=lambda p: p.name):
            digest.update(f"{path.name}:{cached_md5(path)}\n".encode())
        return digest.hexdigest()

    def token_count(self, split: str) -> int:
        """Words scored in perplexity: every word plus one <eos> per sentence."""
        return self.prepared.split_meta(split)["tokens"] - 1

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def streams_per_process(self, world: int) -> int:
        if self.batch_size % world:
            raise UserError(f"--set batch_size={self.batch_size}: the training streams must divide evenly over "
                            f"{world} processes (batch_size is the whole run's number of streams)")
        return self.batch_size // world

    def train_dataloader(self) -> ResumableChunks:
        rank, world = self._rank_and_world()
        per_process = self.streams_per_process(world)
        stream, count = self.prepared.streams["train"], self.batch_size
        length = (len(stream) - 1) // count  # the streams are equal: the last < count words are dropped
        inputs = stream[:-1][:length * count].reshape(count, length)
        targets = stream[1:][:length * count].reshape(count, length)
        mine = slice(rank * per_process, (rank + 1) * per_process)
        return ResumableChunks(StreamChunks(inputs[mine], targets[mine], self.bptt, self.lookup))

    def _evaluation_loader(self, split: str) -> DataLoader:
        # The whole text as one stream, in every process (module docstring): the literature's number.
        stream = self.prepared.streams[split]
        chunks = StreamChunks(stream[:-1].reshape(1, -1), stream[1:].reshape(1, -1), self.eval_bptt, self.lookup)
        return DataLoader(chunks, batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")


# --- the registry: each language-model corpus says how it is read -----------------------------------

@dataclass
class LanguageModelCorpusSpec(DatasetSpec):
    """A language-model corpus: the catalog's entry plus its reader.

    ``reader(corpus folder)`` finds the corpus's three files there (or says, in one line, what is
    missing and how to get it) and returns them with the rules for reading them (``TextFiles``).
    """

    reader: Callable[[Path], TextFiles] | None = None

    def open(self, data_root: Path) -> TextFiles:
        return self.reader(self.location(Path(data_root)))

    def prepare_compact(self, data_root: Path, options: dict) -> str:
        """The three files read once into memory-mapped id streams (and checked as a run checks them)."""
        data = LanguageModelDataModule(self.open(data_root))
        prepared = data.prepared
        meta = prepared.split_meta("train")
        return (f"{self.name}: {meta['tokens'] - 1:,} training tokens ({len(prepared.types):,} word types), prepared in "
                f"{prepared.folder} ({prepared.size_on_disk() / 2**20:,.1f} MiB); every run on these files maps it")

    def make_datamodule(self, config, data_root: Path) -> LanguageModelDataModule:
        """From a language model's config: ``batch_size`` streams, ``bptt`` / ``eval_bptt`` and ``min_count``."""
        return LanguageModelDataModule(self.open(data_root), batch_size=config.batch_size, bptt=config.bptt,
                                       eval_bptt=config.eval_bptt, min_count=config.min_count)


def language_model_corpus(dataset: str) -> LanguageModelCorpusSpec:
    spec = get_dataset(dataset)
    if not isinstance(spec, LanguageModelCorpusSpec):
        raise UserError(f"{dataset}: not a language-model corpus")
    return spec
