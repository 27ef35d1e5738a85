"""Language-model text prepared once into memory-mapped id streams, as a parallel corpus is.

Why: holding every sentence as a Python list of strings and the id stream as int64 tensors cost ~30
bytes a token (3 GB for WikiText-103's 103M tokens, in every DDP process). Here each split is one flat
int32 file of corpus ids, exactly the stream the model reads: ``<eos>`` first (the context of the first
word, as in the RNNLM toolkit), then every sentence's words followed by ``<eos>``; a second file holds
where each sentence starts. Training and evaluation slice the mapped stream and map corpus ids to
vocabulary ids one batch at a time, so a process holds no per-token memory of its own: the pages
are the operating system's page cache, shared by every process on the node.

The ids index the corpus's own dictionary (every word in the order first seen, train first, so
``<eos>`` is id 0), with each word's count per split, not a model's vocabulary: one prepared text
serves every ``min_count``. The vocabulary is cut from the training counts at load time exactly as it
was cut from the sentences (``datamodules.language_modeling.text``).

Preparing reads each file a line at a time (the format checks of ``sentences_of``, with the same
one-line errors), never all sentences at once. The result is keyed by the three files' md5, the
blank-line and tab rules, the tokenizer (white space) and this format's version, and written through
``datamodules.preparation.build_once``: atomically, by one process while the others wait.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datamodules.catalog import numbered_lines
from datamodules.preparation import build_once, cached_md5, key_of, mapped, prepared_folder
from repro.errors import UserError
from repro.language_modeling import END_OF_SENTENCE

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
FLUSH_TOKENS = 1 << 20  # ids buffered before they are written (4 MiB)


def sentences_of(path: Path, blank_lines: str = "error", tabs: bool = False,
                 skipped: list[int] | None = None) -> Iterator[list[str]]:
    """The sentences of one file, a line at a time; a bad line is an error naming file and line. Blank
    lines skipped are counted in ``skipped[0]``."""
    skipped = [0] if skipped is None else skipped
    lines = sentences = 0
    for line_number, line in numbered_lines(path):
        lines += 1
        tokens = line.split()
        if not tokens:
            if blank_lines == "error":
                raise UserError(f"{path}:{line_number}: empty line; expected one sentence of space-separated words")
            if blank_lines == "skip":
                skipped[0] += 1
                continue
        if not tabs and "\t" in line.strip():
            raise UserError(f"{path}:{line_number}: tab character; expected space-separated words (PTB format)")
        sentences += bool(tokens)
        yield tokens
    if not lines:
        raise UserError(f"{path}: file is empty; expected one sentence per line")
    if not sentences:
        raise UserError(f"{path}: only blank lines ({lines}); expected one sentence or paragraph per line")


def text_key(paths: dict[str, Path], blank_lines: str, tabs: bool) -> str:
    for split in SPLITS:  # a missing file is named after the format errors of the files read before it
        if not paths[split].is_file():
            for earlier in SPLITS[:SPLITS.index(split)]:
                for _ in sentences_of(paths[earlier], blank_lines, tabs):
                    pass
            raise UserError(f"{paths[split]}: file not found")
    return key_of({"files": [(split, paths[split].name, cached_md5(paths[split])) for split in SPLITS],
                   "blank_lines": blank_lines, "tabs": tabs, "tokenizer": "str.split", "format": FORMAT_VERSION})


class _SplitWriter:
    """One split's stream, written as it is read: ids to disk in blocks, counts and sentence starts kept."""

    def __init__(self, folder: Path, split: str, end: int, progress=None):
        self.folder, self.split, self.progress = folder, split, progress
        self.handle = open(folder / f"{split}.ids", "wb")  # noqa: SIM115 (closed in close())
        self.buffer = array("i", [end])
        self.written = 0
        self.starts = array("q")
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, ids: list[int], end: int) -> None:
        self.starts.append(self.written + len(self.buffer))
        self.buffer.extend(ids)
        self.buffer.append(end)
        if len(self.buffer) >= FLUSH_TOKENS:
            self.flush()

    def flush(self) -> None:
        block = np.frombuffer(self.buffer, dtype=np.int32)
        if self.progress is not None:
            self.progress.update(len(block))
        if len(block):
            block.tofile(self.handle)
            counts = np.bincount(block)
            if len(counts) > len(self.counts):
                counts[:len(self.counts)] += self.counts
                self.counts = counts
            else:
                self.counts[:len(counts)] += counts
            self.written += len(block)
        self.buffer = array("i")

    def close(self, types: int) -> dict:
        self.flush()
        self.handle.close()
        self.starts.append(self.written)  # sentence i is stream[starts[i]:starts[i + 1] - 1], then its <eos>
        np.save(self.folder / f"{self.split}.starts.npy", np.frombuffer(self.starts, dtype=np.int64))
        counts = np.zeros(types, dtype=np.int64)
        counts[:len(self.counts)] = self.counts
        np.save(self.folder / f"{self.split}.counts.npy", counts)
        return {"tokens": self.written, "sentences": len(self.starts) - 1}


def write_prepared_text(folder: Path, paths: dict[str, Path], blank_lines: str, tabs: bool) -> dict:
    index: dict[str, int] = {END_OF_SENTENCE: 0}
    lookup = index.__getitem__
    summary = {}
    writers = []
    progress = tqdm(desc=f"reading {paths['train'].parent}", unit=" tokens", unit_scale=True, mininterval=1.0,
                    disable=None, file=sys.stderr)  # shown on a terminal: tokens per second
    for split in SPLITS:
        writer = _SplitWriter(folder, split, 0, progress)
        skipped = [0]
        for tokens in sentences_of(paths[split], blank_lines, tabs, skipped):
            try:
                ids = list(map(lookup, tokens))
            except KeyError:
                ids = [index.setdefault(token, len(index)) for token in tokens]
            writer.add(ids, 0)
        writer.flush()
        writers.append(writer)
        summary[split] = {"skipped_blank": skipped[0]}
    progress.close()
    for split, writer in zip(SPLITS, writers):
        summary[split].update(writer.close(len(index)))
        # the words of a split: its tokens less one <eos> per sentence and the leading one
        summary[split]["words"] = summary[split]["tokens"] - summary[split]["sentences"] - 1
    (folder / "types.txt").write_text("\n".join(index), encoding="utf-8")
    meta = {"format": FORMAT_VERSION, "splits": summary, "files": {split: str(paths[split]) for split in SPLITS},
            "blank_lines": blank_lines, "tabs": tabs}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def prepare_text(paths: dict[str, Path], blank_lines: str, tabs: bool, name: str, root: Path | None = None,
                 announce: Callable[[str], None] = print) -> Path:
    """The prepared text's folder: made on first use (by one process; the others wait), then reused."""
    folder = prepared_folder(text_key(paths, blank_lines, tabs), root)
    return build_once(folder, lambda staging: write_prepared_text(staging, paths, blank_lines, tabs),
                      lambda: announce(f"DATA: preparing {name} once into {folder} (ids of every word, mapped by "
                                       f"later runs and processes)"))


class PreparedSentences(Sequence):
    """A split's sentences as lists of words, made one at a time when asked for (for baselines, tests
    and inspection; the model reads the mapped stream)."""

    def __init__(self, stream: np.ndarray, starts: np.ndarray, types: list[str]):
        self.stream, self.starts, self.types = stream, starts, types

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i: int) -> list[str]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        types = self.types
        return [types[t] for t in self.stream[self.starts[i]:self.starts[i + 1] - 1].tolist()]

    def __iter__(self):
        types, stream, starts = self.types, self.stream, self.starts
        block = 1 << 16  # sentences read from the mapped stream at a time
        for first in range(0, len(self), block):
            last = min(first + block, len(self))
            ids = stream[starts[first]:starts[last]].tolist()
            base = int(starts[first])
            bounds = (starts[first:last + 1] - base).tolist()
            for k in range(last - first):
                yield [types[t] for t in ids[bounds[k]:bounds[k + 1] - 1]]


class PreparedText:
    """A prepared text mapped from its folder: the dictionary, and each split's stream, starts and counts."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        self.types = (folder / "types.txt").read_text(encoding="utf-8").split("\n")
        self.streams = {split: mapped(folder / f"{split}.ids") for split in SPLITS}
        self.starts = {split: np.load(folder / f"{split}.starts.npy", mmap_mode="r") for split in SPLITS}
        self.counts = {split: np.load(folder / f"{split}.counts.npy") for split in SPLITS}

    def sentences(self, split: str) -> PreparedSentences:
        return PreparedSentences(self.streams[split], self.starts[split], self.types)

    def split_meta(self, split: str) -> dict:
        return self.meta["splits"][split]

    def first_occurrence(self, split: str, wanted: np.ndarray, chunk: int = 1 << 22) -> int:
        """The corpus id of the first token of ``split`` whose id is flagged in ``wanted``; -1 if none."""
        stream = self.streams[split]
        for start in range(0, len(stream), chunk):
            part = np.asarray(stream[start:start + chunk])
            hits = np.flatnonzero(wanted[part])
            if len(hits):
                return int(part[hits[0]])
        return -1

    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir())
