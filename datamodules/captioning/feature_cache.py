"""Run a frozen image CNN once over a dataset's images and keep the features on disk.

Training a captioning model on cached CNN features is what makes it feasible on a CPU: the encoder is
by far the most expensive part of a step, and with the CNN frozen (Vinyals et al. 2015, Sec. 4.3.1:
the CNN is kept fixed at first) its output for an image never changes. The cache is keyed by

    cache_dir() / "features" / <dataset> / <encoder.cache_tag> / <hash of the sorted image ids>

so every paper and run using the same images, encoder, weights and preprocessing shares one copy.
A folder holds ``pooled.npy`` (float32 [N, D], small), optionally ``spatial.npy`` (float16
[N, h*w, D_s], read as a memory map so COCO-sized maps need no RAM) and ``meta.json`` (the ids in row
order, the skipped images and why), written last: a folder with ``meta.json`` is complete.

Extraction is resumable: rows go straight into ``*.partial.npy`` memory maps in sorted-id order and
``progress.json`` records, after each batch is flushed, how many images are done; a rerun after a
kill continues from there. A missing or unreadable image is named (the first few) and counted, and
its row left out; only when every image fails is it an error.

Distributed training: call ``cached_features`` in the datamodule's ``prepare_data`` (rank 0) and
``load_features(feature_cache_path(...))`` in ``setup`` (every rank). A file lock serialises two
processes extracting into the same folder (e.g. local rank 0 of two nodes on a shared disk); the
second finds the cache complete and reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.catalog import cache_dir
from repro.captioning.images import ImageLoadError, load_image
from repro.errors import UserError
from repro.files import write_atomic

FORMAT_VERSION = 1
NAMED_FAILURES = 5  # failures printed one per line; the rest are only counted


@dataclass
class FeatureSet:
    ids: list[str]  # images that were encoded, in row order (sorted ids)
    index: dict[str, int]  # image id -> row
    pooled: torch.Tensor  # [N, D] float32
    spatial: torch.Tensor | None  # [N, h*w, D_s] float16, a view of a memory map; None if not extracted
    skipped: dict[str, str]  # image id -> why it was left out
    path: Path

    def __len__(self) -> int:
        return len(self.ids)


def ids_hash(image_ids) -> str:
    return hashlib.sha1("\n".join(sorted(image_ids)).encode()).hexdigest()[:16]


def feature_cache_path(dataset: str, images: dict[str, Path] | list[str], encoder) -> Path:
    """Where the features of these images under this encoder live (whether or not extracted yet)."""
    return cache_dir() / "features" / dataset / encoder.cache_tag / ids_hash(images)


def is_complete(path: Path, spatial: bool = False) -> bool:
    meta_file = Path(path) / "meta.json"
    if not meta_file.is_file():
        return False
    meta = json.loads(meta_file.read_text())
    return meta.get("format") == FORMAT_VERSION and (meta["spatial"] or not spatial)


def load_features(path: Path, spatial: bool = False) -> FeatureSet:
    """A complete cache folder as tensors; the spatial maps (if asked for) stay on disk, memory-mapped."""
    path = Path(path)
    if not is_complete(path, spatial):
        what = "spatial features" if spatial else "features"
        raise UserError(f"{path}: no complete cache of {what}; run `python -m repro features extract` "
                        f"(or the datamodule's prepare_data) first")
    meta = json.loads((path / "meta.json").read_text())
    ids = meta["ids"]
    # mapped too (copy-on-write, as the maps below): COCO's 123k pooled VGG vectors are 2 GB, which every
    # process would otherwise hold its own copy of
    pooled = torch.from_numpy(np.load(path / "pooled.npy", mmap_mode="c"))
    maps = None
    if spatial:
        # copy-on-write: a writable array for torch.from_numpy that never writes back to the file
        maps = torch.from_numpy(np.load(path / "spatial.npy", mmap_mode="c"))
    if pooled.shape[0] != len(ids) or (maps is not None and maps.shape[0] != len(ids)):
        raise UserError(f"{path}: cache files disagree with meta.json ({len(ids)} ids); delete the folder")
    return FeatureSet(ids=ids, index={image_id: row for row, image_id in enumerate(ids)}, pooled=pooled,
                      spatial=maps, skipped=meta["skipped"], path=path)


class _ImageFiles(Dataset):
    def __init__(self, items: list[tuple[str, Path]], first_row: int, transform):
        self.items, self.first_row, self.transform = items, first_row, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        _, path = self.items[i]
        try:
            return self.first_row + i, self.transform(load_image(path)), None
        except ImageLoadError as error:
            return self.first_row + i, None, str(error)


def _collate(samples):
    rows = [row for row, tensor, _ in samples if tensor is not None]
    tensors = [tensor for _, tensor, _ in samples if tensor is not None]
    failures = [(row, message) for row, tensor, message in samples if tensor is None]
    return rows, (torch.stack(tensors) if tensors else None), failures


@contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on ``path/.lock`` (POSIX); a no-op where fcntl does not exist."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no second process is expected there
        yield
        return
    with open(path / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_partial(file: Path, shape: tuple[int, ...], dtype, resume: bool) -> tuple[np.memmap, bool]:
    """The partial array, and whether it holds earlier rows (False: created afresh, all zeros)."""
    if resume and file.is_file():
        array = np.load(file, mmap_mode="r+")
        if array.shape == shape and array.dtype == dtype:
            return array, True
    return np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=shape), False


def _save_npy_atomic(file: Path, array: np.ndarray) -> None:
    temporary = file.with_name(file.name + ".tmp")
    with open(temporary, "wb") as handle:
        np.save(handle, array)
    os.replace(temporary, file)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _extract(path: Path, items: list[tuple[str, Path]], encoder, spatial: bool, batch_size: int,
             num_workers: int, device, progress: bool) -> None:
    n = len(items)
    progress_file = path / "progress.json"
    state = json.loads(progress_file.read_text()) if progress_file.is_file() else None
    resume = (state is not None and state.get("spatial") == spatial and state.get("n") == n
              and state.get("format") == FORMAT_VERSION)
    pooled, kept_pooled = _open_partial(path / "pooled.partial.npy", (n, encoder.feature_dim), np.float32, resume)
    maps, kept_maps = (_open_partial(path / "spatial.partial.npy", (n, encoder.spatial_locations, encoder.spatial_dim),
                                     np.float16, resume) if spatial else (None, True))
    # a marker without its rows (a kill while the finished files were being renamed) means starting over
    resume = resume and kept_pooled and kept_maps
    done, skipped_rows = (state["done"], {int(k): v for k, v in state["skipped"].items()}) if resume else (0, {})
    if done:
        print(f"features: resuming {encoder.name} extraction at image {done}/{n} ({path})")

    from tqdm.auto import tqdm

    loader = DataLoader(_ImageFiles(items[done:], done, encoder.transform), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=_collate)
    encoder = encoder.to(device).eval()
    start = time.perf_counter()
    with tqdm(total=n, initial=done, unit="img", desc=f"features {encoder.name}", disable=not progress,
              file=sys.stderr) as bar, torch.inference_mode():
        for rows, batch, failures in loader:
            for row, message in failures:
                if len(skipped_rows) < NAMED_FAILURES:
                    _warn(f"skipping image: {message}")
                skipped_rows[row] = message
            if batch is not None:
                vectors, feature_maps = encoder(batch.to(device))
                pooled[rows] = vectors.float().cpu().numpy()
                if maps is not None:
                    maps[rows] = feature_maps.flatten(2).transpose(1, 2).to(torch.float16).cpu().numpy()
            done += len(rows) + len(failures)
            # rows reach the disk before the marker that says they are there
            pooled.flush()
            if maps is not None:
                maps.flush()
            write_atomic(progress_file, json.dumps({"format": FORMAT_VERSION, "n": n, "spatial": spatial,
                                                    "done": done, "skipped": skipped_rows}))
            bar.update(len(rows) + len(failures))
    elapsed = time.perf_counter() - start

    if len(skipped_rows) == n:
        del pooled, maps  # start afresh next time: the files may have been fixed meanwhile
        for leftover in ("pooled.partial.npy", "spatial.partial.npy", "progress.json"):
            (path / leftover).unlink(missing_ok=True)
        folders = sorted({str(Path(p).parent) for _, p in items})
        raise UserError(f"features: none of the {n} images could be read (in {', '.join(folders[:3])}"
                        f"{' ...' if len(folders) > 3 else ''}); first: {skipped_rows[min(skipped_rows)]}")
    keep = [row for row in range(n) if row not in skipped_rows]
    _save_npy_atomic(path / "pooled.npy", np.ascontiguousarray(pooled[keep]))
    if maps is not None:
        if len(keep) == n:
            del maps
            os.replace(path / "spatial.partial.npy", path / "spatial.npy")
        else:  # leave out the skipped rows, copying in slices so the maps never sit in RAM
            compact = np.lib.format.open_memmap(path / "spatial.npy.tmp", mode="w+", dtype=np.float16,
                                                shape=(len(keep), *maps.shape[1:]))
            for start_row in range(0, len(keep), 256):
                compact[start_row:start_row + 256] = maps[keep[start_row:start_row + 256]]
            compact.flush()
            del compact, maps
            os.replace(path / "spatial.npy.tmp", path / "spatial.npy")
            (path / "spatial.partial.npy").unlink()
    meta = {"format": FORMAT_VERSION, "spatial": spatial, "encoder": encoder.cache_tag,
            "feature_dim": encoder.feature_dim, "spatial_dim": encoder.spatial_dim,
            "spatial_grid": list(encoder.spatial_grid), "ids": [items[row][0] for row in keep],
            "skipped": {items[row][0]: message for row, message in sorted(skipped_rows.items())},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_atomic(path / "meta.json", json.dumps(meta))
    del pooled
    (path / "pooled.partial.npy").unlink()
    progress_file.unlink()
    if skipped_rows:
        _warn(f"features: {len(skipped_rows)} of {n} images skipped (unreadable or missing); "
              f"listed in {path / 'meta.json'} (delete that folder to retry them)")
    print(f"features: encoded {len(keep)} images with {encoder.cache_tag} in {elapsed:.1f}s -> {path}")


def default_batch_size(device) -> int:
    """Images per forward pass when extracting. On a CPU, small batches are faster: EfficientNet-Lite0 at
    224 px ran at 24 img/s with batches of 4, 19 with 8 and 12 with 32 on this project's 2-core machine
    (large activations are allocated and returned to the OS at every batch); a GPU wants large ones."""
    return 32 if torch.device(device).type == "cuda" else 4


def cached_features(dataset: str, images: dict[str, Path], encoder, spatial: bool = False,
                    batch_size: int | None = None, num_workers: int = 0, device: str | torch.device = "cpu",
                    progress: bool = True) -> FeatureSet:
    """The encoder's features of ``images`` (id -> file), extracted on first use, then reused.

    Pooled vectors are float32; spatial maps (``spatial=True``) float16, memory-mapped, [N, h*w, D_s].
    """
    if not images:
        raise UserError(f"features {dataset}: no images given")
    if batch_size is None:
        batch_size = default_batch_size(device)
    path = feature_cache_path(dataset, images, encoder)
    if is_complete(path, spatial):
        print(f"features: reusing the cached {encoder.cache_tag} features of {dataset} from {path}")
        return load_features(path, spatial)
    with _exclusive(path):
        if not is_complete(path, spatial):  # another process may have finished while we waited
            items = sorted((image_id, Path(file)) for image_id, file in images.items())
            was_training = encoder.training
            try:
                # the global random generators are left as they were: a run that builds the cache then
                # trains exactly as one that finds it built (a DataLoader draws its base seed from them)
                with torch.random.fork_rng(devices=[]):
                    _extract(path, items, encoder, spatial, batch_size, num_workers, device, progress)
            except KeyboardInterrupt:
                marker = path / "progress.json"
                done = json.loads(marker.read_text())["done"] if marker.is_file() else 0
                print(f"features: interrupted after {done} of {len(items)} images; the same command continues "
                      f"from there ({path})", file=sys.stderr)
                raise
            finally:
                encoder.train(was_training)
        else:
            print(f"features: reusing the cached {encoder.cache_tag} features of {dataset} from {path}")
    return load_features(path, spatial)
