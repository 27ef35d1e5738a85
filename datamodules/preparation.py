"""Prepared data, shared by every family: made once into a folder keyed by its inputs, then mapped.

A prepared form (a parallel corpus's token arrays, a language model's id stream) lives in
``cache_dir()/prepared/<key>``, where the key is an md5 over the input files' md5s and everything else
that decides the result (reader, tokenizer and format versions). ``build_once`` writes it into a
staging folder and renames that into place, so an interrupted or failed preparation leaves nothing
that is read later; a file lock makes one process prepare while the others (DDP ranks, other runs)
wait and then map the same files. ``meta.json`` is written last: a folder without it is never read.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from datamodules.catalog import cache_dir
from repro.files import file_md5

_MD5: dict[tuple, str] = {}
MD5_INDEX = "md5-index.json"  # (path, size, mtime) -> md5 of files already hashed, kept beside the prepared folders


def cached_md5(path: Path, root: Path | None = None) -> str:
    """A file's md5, computed once for one (path, size, modification time): in this process, and on disk
    beside the prepared folders so a later process (a warm start, a second DDP rank) does not read a
    WMT'14-sized file again only to find the key it already knows."""
    stat = Path(path).stat()
    resolved = str(Path(path).resolve())
    key = (resolved, stat.st_size, stat.st_mtime_ns)
    if key in _MD5:
        return _MD5[key]
    index_path = (root or cache_dir() / "prepared") / MD5_INDEX
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = {}
    known = index.get(resolved)
    if isinstance(known, list) and known[:2] == [stat.st_size, stat.st_mtime_ns]:
        _MD5[key] = known[2]
        return known[2]
    _MD5[key] = file_md5(path)
    if stat.st_size >= 2**20:  # worth remembering: small files hash faster than the index is read
        index[resolved] = [stat.st_size, stat.st_mtime_ns, _MD5[key]]
        try:
            index_path.parent.mkdir(parents=True, exist_ok=True)
            handle, staged = tempfile.mkstemp(dir=index_path.parent, prefix=".md5-index-")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(index, out)
            os.replace(staged, index_path)
        except OSError:  # a read-only cache only costs the next process the hashing
            pass
    return _MD5[key]


def key_of(description: dict) -> str:
    return hashlib.md5(json.dumps(description, sort_keys=True).encode()).hexdigest()


def worker_count(workers: int | None = None) -> int:
    if workers:
        return max(1, workers)
    if os.environ.get("REPRO_PREPARE_WORKERS"):
        return max(1, int(os.environ["REPRO_PREPARE_WORKERS"]))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def exclusive(lock_file: Path):
    """An exclusive lock on ``lock_file`` (POSIX fcntl); a no-op where fcntl does not exist."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepared_folder(key: str, root: Path | None = None) -> Path:
    return (root or cache_dir() / "prepared") / key


def build_once(folder: Path, write: Callable[[Path], None], announce: Callable[[], None] | None = None) -> Path:
    """``folder``, made by ``write(staging folder)`` unless it is there already (``meta.json`` in it, which
    ``write`` must write last). One process writes, the others wait on the lock and find it made."""
    if (folder / "meta.json").is_file():
        return folder
    with exclusive(folder.parent / f"{folder.name}.lock"):
        if (folder / "meta.json").is_file():  # another process made it while this one waited
            return folder
        if announce is not None:
            announce()
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".staging-{folder.name[:8]}-"))
        try:
            write(staging)
            if folder.exists():  # a stale, incomplete folder (no meta.json): never read, replaced
                shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def mapped(path: Path, dtype=np.int32) -> np.ndarray:
    """A flat array file mapped read-only (an empty file is an empty array: mmap cannot map 0 bytes)."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


class TypeTable(Sequence):
    """A dictionary's words (one a line in a UTF-8 file) without a Python string per word: the file's
    bytes mapped, the start of each line in one array, a word decoded when asked for. WMT'14 has
    millions of word types; as a list of strings they would cost ~70 bytes each in every process."""

    def __init__(self, path: Path):
        size = path.stat().st_size
        if size:
            with open(path, "rb") as handle:
                self.data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            breaks = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == ord("\n"))
        else:
            self.data, breaks = b"", np.zeros(0, dtype=np.int64)
        self.starts = np.concatenate([[0], breaks + 1]).astype(np.int64) if size else np.zeros(0, np.int64)
        self.ends = np.concatenate([breaks, [size]]).astype(np.int64) if size else self.starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self.starts)
        if not 0 <= i < len(self.starts):
            raise IndexError(i)
        return self.data[self.starts[i]:self.ends[i]].decode("utf-8")

    def __iter__(self):
        if len(self):
            yield from self.data[:].decode("utf-8").split("\n")

    def join(self, ids: np.ndarray, separator: str = " ") -> str:
        """The words of ``ids`` joined by ``separator`` (a sentence's text, decoded once)."""
        data = self.data
        return separator.encode().join([data[s:e] for s, e in zip(self.starts[ids].tolist(), self.ends[ids].tolist())]
                                       ).decode("utf-8")

    def positions_of(self, words) -> list[int]:
        """The lines holding exactly one of ``words`` (a byte search of the mapped file)."""
        found = []
        for word in words:
            line = word.encode("utf-8")
            if self.data[:len(line) + 1] == line + b"\n" or (len(self) == 1 and self.data[:] == line):
                found.append(0)
            position = self.data.find(b"\n" + line + b"\n")
            if position < 0 and self.data[-len(line) - 1:] == b"\n" + line:
                position = len(self.data) - len(line) - 1
            if position >= 0:
                found.append(int(np.searchsorted(self.starts, position + 1)))
        return sorted(set(found))

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and list(self) == list(other)

    __hash__ = None
