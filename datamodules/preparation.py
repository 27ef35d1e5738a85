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
import os
import shutil
import tempfile
from collections.abc import Callable
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
