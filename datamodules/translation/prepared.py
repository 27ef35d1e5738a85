"""A parallel corpus prepared once into memory-mapped token arrays, as fairseq-preprocess binarizes one.

Why: holding every tokenized pair as Python lists of strings costs ~6.6 KiB a pair (80-100 GB for
WMT'14's 12M pairs, in every DDP process), and re-reading a JSON cache took 18 s per 100k pairs. Here
each split is, per side, one flat int32 array of token ids with an int64 offsets array (pair ``i`` is
``ids[offsets[i]:offsets[i + 1]]``), read with ``np.memmap`` / ``np.load(mmap_mode="r")``: mapping
costs nothing up front, the pages are the operating system's page cache, shared by every process on
the node, and batching by length reads only offset differences.

The ids index the corpus's own dictionaries (every token type in the order first seen, with its count
in the training split), not a model's vocabulary, so one prepared corpus serves every vocabulary
size, ``min_count``, ``max_length`` and source order; the datamodule cuts the vocabulary from the
counts and maps the ids through one array per side.

Per split it also keeps the untokenized reference text (lowercased when the tokens are; for
sacreBLEU) as UTF-8 bytes with offsets, and for each pair the file and line it came from (for the
one-line errors).

Preparing reads the corpus as a stream (never all sentences at once), tokenizes chunks of lines on
every core (a multiprocessing pool, sacremoses in each worker, the same tokens as
``repro.translation.text.tokenize``), and counts the vocabulary as it goes. The result is keyed by the
input files' md5, the reader's stems, the language pair, lowercasing, the tokenizer's version and
this format's version; it is written into a staging folder and renamed into place, so an interrupted
or failed preparation leaves nothing that is read later, and a file lock makes one process prepare
while the others (DDP ranks, other runs) wait and then map the same files.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.preparation import TypeTable, build_once, cached_md5, mapped, prepared_folder, worker_count
from repro.translation.text import TOKENIZATION_VERSION, tokenize

FORMAT_VERSION = 1
SIDES = ("source", "target")
CHUNK_PAIRS = 2000  # pairs a worker tokenizes at a time


@dataclass
class StreamStats:
    """What a reader's stream skipped: pairs with an empty side (counted, the first one named)."""

    skipped_empty: int = 0
    first_empty: str = ""

    def skip(self, where: str) -> None:
        self.skipped_empty += 1
        self.first_empty = self.first_empty or where


def corpus_key(reader, source: str, target: str, lowercase: bool) -> tuple[str, dict]:
    # the installed version from its metadata: importing sacremoses to ask (it compiles ~100 regular
    # expressions) took 1.2 s of every warm start
    try:
        sacremoses_version = importlib.metadata.version("sacremoses")
    except importlib.metadata.PackageNotFoundError:
        sacremoses_version = "?"
    files = reader.files(source, target)
    key = {"reader": type(reader).__name__, "stems": getattr(reader, "stems", None),
           "files": [(p.name, cached_md5(p)) for p in files], "source": source, "target": target,
           "lowercase": lowercase, "version": TOKENIZATION_VERSION,
           "sacremoses": sacremoses_version, "format": FORMAT_VERSION}
    return hashlib.md5(json.dumps(key, sort_keys=True).encode()).hexdigest(), key


# --- tokenizing, in worker processes ---------------------------------------------------------------

def _encode(texts: list[str], language: str, lowercase: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Tokens of ``texts`` as ids into a dictionary local to this chunk: (its types, ids, lengths)."""
    index: dict[str, int] = {}
    ids: list[int] = []
    lengths = np.empty(len(texts), dtype=np.int64)
    for k, text in enumerate(texts):
        tokens = tokenize(text, language, lowercase)
        lengths[k] = len(tokens)
        ids.extend([index.setdefault(token, len(index)) for token in tokens])
    return list(index), np.array(ids, dtype=np.int32), lengths


def tokenize_chunk(job: tuple) -> tuple:
    sources, targets, source_language, target_language, lowercase = job
    return _encode(sources, source_language, lowercase), _encode(targets, target_language, lowercase)


# --- writing ----------------------------------------------------------------------------------------

class Dictionary:
    """Token types in the order first seen, with their count in the training split."""

    def __init__(self):
        self.index: dict[str, int] = {}
        self.counts = np.zeros(1024, dtype=np.int64)

    def add(self, types: list[str], local_ids: np.ndarray, count: bool) -> np.ndarray:
        index = self.index
        mapping = np.fromiter((index.setdefault(t, len(index)) for t in types), dtype=np.int32, count=len(types))
        ids = mapping[local_ids] if len(local_ids) else local_ids
        if count and len(types):
            if len(index) > len(self.counts):
                self.counts = np.concatenate([self.counts, np.zeros(max(len(index), 2 * len(self.counts)) - len(self.counts),
                                                                   dtype=np.int64)])
            self.counts[mapping] += np.bincount(local_ids, minlength=len(types))
        return ids

    def save(self, folder: Path, side: str) -> None:
        (folder / f"{side}.types.txt").write_text("\n".join(self.index), encoding="utf-8")
        np.save(folder / f"{side}.counts.npy", self.counts[:len(self.index)])


class SplitWriter:
    """One split's arrays, appended chunk by chunk: ids go straight to disk, per-pair numbers stay small."""

    def __init__(self, folder: Path, split: str):
        self.folder, self.split = folder, split
        self.ids = {side: open(folder / f"{split}.{side}.ids", "wb") for side in SIDES}  # noqa: SIM115 (closed in close())
        self.text = open(folder / f"{split}.text.bin", "wb")  # noqa: SIM115
        self.lengths: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
        self.text_lengths: list[np.ndarray] = []
        self.lines: list[np.ndarray] = []
        self.file_indices: list[np.ndarray] = []

    def add(self, ids: dict[str, np.ndarray], lengths: dict[str, np.ndarray], texts: list[str],
            lines: list[int], file_indices: list[int]) -> None:
        for side in SIDES:
            ids[side].astype(np.int32, copy=False).tofile(self.ids[side])
            self.lengths[side].append(lengths[side])
        encoded = [t.encode("utf-8") for t in texts]
        self.text.write(b"".join(encoded))
        self.text_lengths.append(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
        self.lines.append(np.array(lines, dtype=np.int64))
        self.file_indices.append(np.array(file_indices, dtype=np.int16))

    def close(self) -> dict:
        for handle in (*self.ids.values(), self.text):
            handle.close()
        summary = {}
        for side in SIDES:
            offsets = _offsets(self.lengths[side])
            np.save(self.folder / f"{self.split}.{side}.offsets.npy", offsets)
            summary[f"{side}_tokens"] = int(offsets[-1])
        np.save(self.folder / f"{self.split}.text.offsets.npy", _offsets(self.text_lengths))
        lines = np.concatenate(self.lines) if self.lines else np.zeros(0, dtype=np.int64)
        np.save(self.folder / f"{self.split}.lines.npy", lines.astype(np.int32 if lines.size == 0 or lines.max() < 2**31 else np.int64))
        np.save(self.folder / f"{self.split}.files.npy",
                np.concatenate(self.file_indices) if self.file_indices else np.zeros(0, dtype=np.int16))
        summary["pairs"] = len(lines)
        return summary


def _offsets(lengths: list[np.ndarray]) -> np.ndarray:
    offsets = np.zeros(sum(len(a) for a in lengths) + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return offsets


def _progress(total_hint: str):
    from tqdm import tqdm

    return tqdm(desc=f"tokenizing {total_hint}", unit=" pairs", unit_scale=True, mininterval=1.0,
                disable=None, file=sys.stderr)


def write_prepared(folder: Path, stream: Iterator[tuple], files: list[Path], source: str, target: str,
                   lowercase: bool, workers: int, stats: StreamStats) -> dict:
    """Tokenize ``stream`` ((split, source text, target text, file index, line) per pair) into ``folder``."""
    writers: dict[str, SplitWriter] = {}
    dictionaries = {side: Dictionary() for side in SIDES}
    pending: deque = deque()
    started = time.perf_counter()

    def finish(result, meta, bar) -> None:
        split, texts, lines, file_indices = meta
        writer = writers.get(split) or writers.setdefault(split, SplitWriter(folder, split))
        ids, lengths = {}, {}
        for side, (types, local_ids, side_lengths) in zip(SIDES, result):
            ids[side] = dictionaries[side].add(types, local_ids, count=split == "train")
            lengths[side] = side_lengths
        writer.add(ids, lengths, texts, lines, file_indices)
        bar.update(len(texts))

    def chunks() -> Iterator[tuple]:
        """Runs of consecutive pairs of one split, CHUNK_PAIRS at most."""
        current, buffer = None, ([], [], [], [], [])
        for split, source_text, target_text, file_index, line in stream:
            if split != current or len(buffer[0]) >= CHUNK_PAIRS:
                if buffer[0]:
                    yield current, buffer
                current, buffer = split, ([], [], [], [], [])
            buffer[0].append(source_text)
            buffer[1].append(target_text)
            buffer[2].append(target_text.lower() if lowercase else target_text)
            buffer[3].append(line)
            buffer[4].append(file_index)
        if buffer[0]:
            yield current, buffer

    with _progress(f"{source}-{target} with sacremoses on {workers} process(es)") as bar:
        if workers == 1:
            for split, (sources, targets, texts, lines, file_indices) in chunks():
                finish(tokenize_chunk((sources, targets, source, target, lowercase)),
                       (split, texts, lines, file_indices), bar)
        else:
            import multiprocessing

            # fork: the workers need only sacremoses, and start at once (spawn would re-import the app)
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with multiprocessing.get_context(method).Pool(workers) as pool:
                for split, (sources, targets, texts, lines, file_indices) in chunks():
                    pending.append((pool.apply_async(tokenize_chunk, ((sources, targets, source, target, lowercase),)),
                                    (split, texts, lines, file_indices)))
                    while len(pending) > 4 * workers:  # bounded: never the whole corpus in flight
                        job, meta = pending.popleft()
                        finish(job.get(), meta, bar)
                while pending:
                    job, meta = pending.popleft()
                    finish(job.get(), meta, bar)
    summary = {split: writers[split].close() if split in writers else SplitWriter(folder, split).close()
               for split in ("train", "valid", "test")}
    for side in SIDES:
        dictionaries[side].save(folder, side)
    meta = {"format": FORMAT_VERSION, "splits": summary, "skipped_empty": stats.skipped_empty,
            "first_empty": stats.first_empty, "files": [str(p) for p in files], "source": source, "target": target,
            "lowercase": lowercase, "workers": workers, "seconds": round(time.perf_counter() - started, 3)}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def prepare(reader, source: str, target: str, lowercase: bool, workers: int | None = None,
            root: Path | None = None, announce: Callable[[str], None] = print) -> Path:
    """The prepared corpus's folder: made on first use (by one process; the others wait), then reused."""
    key, _ = corpus_key(reader, source, target, lowercase)
    folder = prepared_folder(key, root)
    count = workers or worker_count()

    def write(staging: Path) -> None:
        stats = StreamStats()
        write_prepared(staging, reader.stream(source, target, stats), reader.files(source, target), source, target,
                       lowercase, count, stats)

    return build_once(folder, write, lambda: announce(
        f"tokenizing sentence pairs of {reader.name} with sacremoses ({source}-{target}, {count} process(es)); "
        f"prepared once into {folder}"))


# --- reading ----------------------------------------------------------------------------------------

class PreparedSplit:
    """One split, mapped: ``source(i)``/``target(i)`` are corpus ids, ``text(i)`` the reference text."""

    def __init__(self, folder: Path, split: str, files: list[str]):
        load = lambda name: np.load(folder / f"{split}.{name}.npy", mmap_mode="r")
        self.source_ids, self.target_ids = mapped(folder / f"{split}.source.ids"), mapped(folder / f"{split}.target.ids")
        self.source_offsets, self.target_offsets = load("source.offsets"), load("target.offsets")
        self.text_offsets = load("text.offsets")
        text_path = folder / f"{split}.text.bin"
        self.text_bytes = np.memmap(text_path, dtype=np.uint8, mode="r") if text_path.stat().st_size else np.zeros(0, np.uint8)
        self.lines, self.file_indices, self.files = load("lines"), load("files"), files
        self._source_lengths: np.ndarray | None = None
        self._target_lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.source_offsets) - 1

    def source_lengths(self) -> np.ndarray:
        """Tokens of each pair's source (int32, computed once: every caller shares one array)."""
        if self._source_lengths is None:
            self._source_lengths = np.diff(self.source_offsets).astype(np.int32)
        return self._source_lengths

    def target_lengths(self) -> np.ndarray:
        if self._target_lengths is None:
            self._target_lengths = np.diff(self.target_offsets).astype(np.int32)
        return self._target_lengths

    def source(self, i: int) -> np.ndarray:
        return self.source_ids[self.source_offsets[i]:self.source_offsets[i + 1]]

    def target(self, i: int) -> np.ndarray:
        return self.target_ids[self.target_offsets[i]:self.target_offsets[i + 1]]

    def text(self, i: int) -> str:
        return self.text_bytes[self.text_offsets[i]:self.text_offsets[i + 1]].tobytes().decode("utf-8")

    def where(self, i: int) -> str:
        return f"{self.files[int(self.file_indices[i])]}:{int(self.lines[i])}"

    def token_counts(self, side: str, pairs: np.ndarray, size: int, chunk: int = 100_000) -> np.ndarray:
        """How often each corpus id occurs in the given pairs, counted in bounded memory."""
        ids, offsets = (self.source_ids, self.source_offsets) if side == "source" else (self.target_ids, self.target_offsets)
        counts = np.zeros(size, dtype=np.int64)
        for start in range(0, len(pairs), chunk):
            part = pairs[start:start + chunk]
            starts, lengths = offsets[part], offsets[part + 1] - offsets[part]
            total = int(lengths.sum())
            if total == 0:
                continue
            positions = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths - starts, lengths)
            counts += np.bincount(ids[positions], minlength=size)
        return counts


class PreparedCorpus:
    """A prepared corpus mapped from its folder: the dictionaries, counts and the three splits."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        self.types, self.counts = {}, {}
        for side in SIDES:
            self.types[side] = TypeTable(folder / f"{side}.types.txt")
            self.counts[side] = np.load(folder / f"{side}.counts.npy")
        self.splits = {split: PreparedSplit(folder, split, self.meta["files"]) for split in ("train", "valid", "test")}

    @property
    def skipped_empty(self) -> int:
        return self.meta["skipped_empty"]

    @property
    def first_empty(self) -> str:
        return self.meta["first_empty"]

    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir())
