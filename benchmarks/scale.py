"""Data at the size of the papers: preparing, mapping and batching a parallel corpus, and LM text.

    python -m repro bench scale [--quick] [--sizes 20000,200000] [--lm-sizes 2000000]

Generates synthetic corpora in the Multi30k layout (``train``/``val``/``test_2016_flickr`` ``.en``/``.fr``,
Zipf-distributed words over a 50k-word vocabulary, 10-45 tokens a sentence with commas and a full
stop) at several sizes, and measures, each in its own process (so ``ru_maxrss`` is that measurement's
peak):

- preparation (``datamodules.translation.prepared``: sacremoses, id arrays) on 1 and 2 processes:
  pairs/s, and the prepared size on disk;
- cold start (preparation included) and warm start (mapping a prepared corpus) to the first training
  batch; the page cache is not dropped (that needs root), so warm means warm pages too;
- peak memory growth over the process's baseline after its imports, per sentence pair, with one
  process and with two processes mapping the same prepared corpus at once (what the second adds is its
  private memory: the mapped pages are shared);
- batches per second over the training loader (slicing, mapping ids, padding), at each size against
  the smallest;
``--quick`` runs every path once in this process, at sizes of seconds: its memory numbers are not
per measurement.

- for language-model text (``datamodules.language_modeling.text``, WikiText layout): peak memory
  growth per token up to the first training batch.

Then a table extrapolates linearly from the largest size to WMT'14 (12M pairs, 348M French and 304M
English words, Schwenk's selection that Sutskever et al. trained on) and WikiText-103 (103M tokens).
Synthetic words tokenize faster than real text (Moses has little to split), so the preparation rate
is an upper bound; on a machine shared with other jobs every rate is a lower bound of the machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from datamodules.captioning.captions import CaptionDataModule
from datamodules.captioning.feature_cache import FORMAT_VERSION as FEATURE_FORMAT
from datamodules.captioning.feature_cache import feature_cache_path
from datamodules.captioning.msvd import MAPPING, TSV_FILES, split_of
from datamodules.captioning.video import VideoCaptionDataModule
from datamodules.language_modeling.text import LanguageModelDataModule, TextFiles
from datamodules.translation.parallel_text import ParallelFiles, ParallelTextDataModule
from datamodules.translation.prepared import PreparedCorpus, prepare
from repro.files import write_atomic
from repro.training.hardware import cpu_model

WMT14_PAIRS, WMT14_FRENCH_WORDS, WMT14_ENGLISH_WORDS = 12_000_000, 348_000_000, 304_000_000
WIKITEXT103_TOKENS = 103_000_000
VOCABULARY = 50_000


# --- synthetic corpora ----------------------------------------------------------------------------

def zipf_words(rng: np.random.Generator, count: int, prefix: str) -> list[str]:
    ranks = np.arange(1, VOCABULARY + 1)
    probabilities = 1 / ranks ** 1.05
    probabilities /= probabilities.sum()
    drawn = rng.choice(VOCABULARY, size=count, p=probabilities)
    words = np.array([f"{prefix}{i:x}" for i in range(VOCABULARY)], dtype=object)
    words[::97] = ","  # some punctuation for Moses to split
    return words[drawn].tolist()


def write_side(path: Path, rng: np.random.Generator, lengths: np.ndarray, prefix: str) -> int:
    words = zipf_words(rng, int(lengths.sum()), prefix)
    with open(path, "w", encoding="utf-8") as out:
        position = 0
        for length in lengths.tolist():
            out.write(" ".join(words[position:position + length - 1]) + " .\n")
            position += length
    return int(lengths.sum())


def synthetic_parallel(folder: Path, pairs: int, seed: int = 0) -> Path:
    """Multi30k's layout, ``pairs`` training pairs (and 1% for val and test), 10-45 tokens a sentence."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, count in (("train", pairs), ("val", max(pairs // 100, 10)), ("test_2016_flickr", max(pairs // 100, 10))):
        source_lengths = rng.integers(10, 46, size=count)
        target_lengths = np.clip(source_lengths + rng.integers(-3, 4, size=count), 10, 45)
        write_side(folder / f"{stem}.en", rng, source_lengths, "e")
        write_side(folder / f"{stem}.fr", rng, target_lengths, "f")
    return folder


def synthetic_text(folder: Path, tokens: int, seed: int = 0) -> Path:
    """WikiText's layout (``wiki.{train,valid,test}.tokens``), lines of 10-45 Zipf words."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", tokens), ("valid", max(tokens // 100, 1000)), ("test", max(tokens // 100, 1000))):
        lengths = rng.integers(10, 46, size=count // 27 + 1)
        write_side(folder / f"wiki.{split}.tokens", rng, lengths, "w")
    return folder


# --- measurements, one process each -----------------------------------------------------------------

def maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def start_peak() -> int:
    """Resident memory now, with the peak reset to it (Linux: ``clear_refs`` 5), so ``peak_bytes() - start``
    is the peak of what follows. The peak since start-up would hide any growth below the imports' own
    transient peak (the first runs of this benchmark read 0 B a pair at 1M pairs that way)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux: the peak since start-up, over the memory now (an overestimate)
        pass
    now = _status_bytes("VmRSS")
    return now if now is not None else maxrss_bytes()


def peak_bytes() -> int:
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else maxrss_bytes()


def private_bytes() -> int:
    """This process's anonymous resident memory (its heap and private copies: what no other process can
    share), where /proc tells it; else 0. Mapped file pages are the page cache, shared by every process
    that maps the same files, so they are not counted (``Private_Clean`` would count them while only
    one process maps a file, and the interpreter's own libraries the same way)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:])
    except OSError:
        return 0
    return int(fields["Anonymous"].split()[0]) * 1024 if "Anonymous" in fields else 0


def reader_of(folder: Path):
    return ParallelFiles(folder, {"train": ("train",), "valid": ("val",), "test": ("test_2016_flickr",)}, "synthetic")


def child_prepare(folder: str, workers: int) -> dict:
    baseline = start_peak()
    started = time.perf_counter()
    prepared = prepare(reader_of(Path(folder)), "en", "fr", False, workers=workers, announce=lambda message: None)
    seconds = time.perf_counter() - started
    corpus = PreparedCorpus(prepared)
    return {"seconds": seconds, "pairs": sum(len(s) for s in corpus.splits.values()),
            "disk_bytes": corpus.size_on_disk(), "peak_growth_bytes": peak_bytes() - baseline,
            "tokens": sum(int(s.source_offsets[-1] + s.target_offsets[-1]) for s in corpus.splits.values())}


def child_load(folder: str, batches: int, hold: float) -> dict:
    torch.set_num_threads(1)
    baseline, private_baseline = start_peak(), private_bytes()
    started = time.perf_counter()
    data = ParallelTextDataModule(reader_of(Path(folder)), "en", "fr", batch_size=128)
    loader = data.train_dataloader()
    iterator = iter(loader)
    next(iterator)
    first_batch = time.perf_counter() - started
    rate = batch_rate(loader, iterator, batches)
    private = private_bytes() - private_baseline
    time.sleep(hold)  # two processes at once: both hold their mappings while the other measures
    return {"first_batch_s": first_batch, "batches_per_s": rate, "pairs": len(data.dataset("train")),
            "peak_growth_bytes": peak_bytes() - baseline, "private_growth_bytes": private}


def child_language_model(folder: str) -> dict:
    torch.set_num_threads(1)
    paths = {split: Path(folder) / f"wiki.{split}.tokens" for split in ("train", "valid", "test")}
    measured = {}
    for start in ("cold", "warm"):  # cold prepares the text; warm maps what cold prepared
        baseline, private_baseline = start_peak(), private_bytes()
        started = time.perf_counter()
        data = LanguageModelDataModule(TextFiles("synthetic", paths, blank_lines="sentence"), batch_size=32, bptt=35,
                                       min_count=2)
        next(iter(data.train_dataloader()))
        measured[f"{start}_first_batch_s"] = time.perf_counter() - started
        if start == "cold":
            measured.update(peak_growth_bytes=peak_bytes() - baseline,
                            private_growth_bytes=private_bytes() - private_baseline)
    return {**measured, "tokens": data.token_count("train"), "disk_bytes": data.prepared.size_on_disk()}


# --- captions at COCO size, captions of MSVD size ------------------------------------------------------

COCO_IMAGES, COCO_CAPTIONS_PER_IMAGE, COCO_EVALUATION = 123_287, 5, 5_000  # Karpathy: 113,287 / 5k / 5k
MSVD_CLIPS, MSVD_CAPTIONS = 1_970, 80_839  # English descriptions, Chen and Dolan 2011


def synthetic_coco(data_root: Path, images: int, captions_per_image: int, seed: int = 0) -> Path:
    """Karpathy's ``dataset_coco.json`` with ``images`` images (the last 2x4% val and test), Zipf captions
    of 8-20 words, and an empty file per image (the datamodule uses the images present; the features
    come from the cache, so no image is ever decoded)."""
    rng = np.random.default_rng(seed)
    folder = data_root / "coco"
    (folder / "train2014").mkdir(parents=True, exist_ok=True)
    evaluation = max(images * COCO_EVALUATION // COCO_IMAGES, 2)
    lengths = rng.integers(8, 21, size=images * captions_per_image)
    words = zipf_words(rng, int(lengths.sum()), "w")
    entries, position = [], 0
    for number in range(images):
        name = f"COCO_train2014_{number:012d}.jpg"
        (folder / "train2014" / name).touch()
        sentences = []
        for length in lengths[number * captions_per_image:(number + 1) * captions_per_image].tolist():
            tokens = words[position:position + length]
            position += length
            sentences.append({"tokens": tokens, "raw": " ".join(tokens).capitalize() + "."})
        split = "test" if number < evaluation else "val" if number < 2 * evaluation else "train"
        entries.append({"filepath": "train2014", "filename": name, "cocoid": number, "split": split,
                        "sentences": sentences})
    (folder / "dataset_coco.json").write_text(json.dumps({"images": entries}), encoding="utf-8")
    return folder


def fake_feature_cache(dataset: str, image_ids: list[str], encoder) -> Path:
    """The feature cache's folder for these images, as extraction leaves it, with sparse (all-zero) arrays:
    mapped exactly as real features are, at no disk cost (COCO's VGG maps are 25 GB)."""
    path = feature_cache_path(dataset, image_ids, encoder)
    path.mkdir(parents=True, exist_ok=True)
    ids = sorted(image_ids)
    np.lib.format.open_memmap(path / "pooled.npy", mode="w+", dtype=np.float32,
                              shape=(len(ids), encoder.feature_dim)).flush()
    np.lib.format.open_memmap(path / "spatial.npy", mode="w+", dtype=np.float16,
                              shape=(len(ids), encoder.spatial_locations, encoder.spatial_dim)).flush()
    meta = {"format": FEATURE_FORMAT, "spatial": True, "encoder": encoder.cache_tag, "feature_dim": encoder.feature_dim,
            "spatial_dim": encoder.spatial_dim, "spatial_grid": list(encoder.spatial_grid), "ids": ids, "skipped": {}}
    (path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return path


def batch_rate(loader, iterator, batches: int) -> float:
    """Batches per second over ``batches`` more batches, starting a new epoch when one ends."""
    began = time.perf_counter()
    for _ in range(batches):
        try:
            next(iterator)
        except StopIteration:
            iterator = iter(loader)
            next(iterator)
    return batches / max(time.perf_counter() - began, 1e-9)


def child_captions(data_root: str, images: int, visual_features: str, batches: int, encoder_name: str) -> dict:
    """COCO's layout through ``CaptionDataModule``: captions read, vocabulary, features mapped, batches."""
    torch.set_num_threads(1)
    data = CaptionDataModule("coco", Path(data_root), encoder_name, "random", batch_size=32,
                             visual_features=visual_features)
    image_ids = [str(i) for i in range(images)]
    fake_feature_cache("coco", image_ids, data.encoder)  # the CNN is built first: its weights are not data
    baseline, private_baseline = start_peak(), private_bytes()
    started = time.perf_counter()
    data.setup("fit")
    loader = data.train_dataloader()
    iterator = iter(loader)
    next(iterator)
    first_batch = time.perf_counter() - started
    rate = batch_rate(loader, iterator, batches)
    captions = sum(len(image.captions) for split in data.images.values() for image in split)
    return {"first_batch_s": first_batch, "batches_per_s": rate, "images": len(image_ids), "captions": captions,
            "peak_growth_bytes": peak_bytes() - baseline, "private_growth_bytes": private_bytes() - private_baseline}


def child_video_captions(data_root: str, batches: int) -> dict:
    """MSVD's caption files through ``VideoCaptionDataModule`` (captions only: the frame vectors are the
    feature cache's, measured with COCO's), to the first training batch."""
    torch.set_num_threads(1)
    baseline, private_baseline = start_peak(), private_bytes()
    started = time.perf_counter()
    data = VideoCaptionDataModule("msvd", Path(data_root), "alexnet", "random", batch_size=32, captions_only=True)
    loader = data.train_dataloader()
    iterator = iter(loader)
    next(iterator)
    first_batch = time.perf_counter() - started
    rate = batch_rate(loader, iterator, batches)
    captions = sum(len(clip.captions) for split in data.images.values() for clip in split)
    return {"first_batch_s": first_batch, "batches_per_s": rate, "clips": sum(map(len, data.images.values())),
            "captions": captions, "peak_growth_bytes": peak_bytes() - baseline,
            "private_growth_bytes": private_bytes() - private_baseline}


def synthetic_msvd(data_root: Path, clips: int, captions: int, seed: int = 0) -> Path:
    """MSVD's TSV layout (``youtube_mapping.txt`` and the three split files), Zipf captions of 4-12 words."""
    rng = np.random.default_rng(seed)
    folder = data_root / "msvd"
    folder.mkdir(parents=True, exist_ok=True)
    per_clip = np.full(clips, captions // clips)
    per_clip[: captions % clips] += 1
    lengths = rng.integers(4, 13, size=captions)
    words = zipf_words(rng, int(lengths.sum()), "v")
    names = [f"clip{number:05d}_1_9" for number in range(1, clips + 1)]
    (folder / MAPPING).write_text("".join(f"{name} vid{n}\n" for n, name in enumerate(names, start=1)), encoding="utf-8")
    rows: dict[str, list[str]] = {split: [] for split in TSV_FILES}
    position = caption = 0
    for number, name in enumerate(names, start=1):
        texts = []
        for _ in range(int(per_clip[number - 1])):
            length = int(lengths[caption])
            texts.append(" ".join(words[position:position + length]).replace(",", "and"))
            position, caption = position + length, caption + 1
        rows[split_of(number)].append(", ".join(texts) + "\t" + name)
    for split, name in TSV_FILES.items():
        (folder / name).write_text("\n".join(rows[split]) + "\n", encoding="utf-8")
    return folder


CHILDREN = {"prepare": child_prepare, "load": child_load, "language_model": child_language_model,
            "captions": child_captions, "video_captions": child_video_captions}


IN_PROCESS = False  # --quick: every measurement in this process (the paths once; memory numbers not per measurement)


def run_child(kind: str, cache: Path, *arguments, wait: bool = True):
    """Start ``kind`` in a fresh interpreter with the cache at ``cache``; its result (or the process)."""
    if IN_PROCESS:
        saved = os.environ.get("REPRO_CACHE")
        os.environ["REPRO_CACHE"] = str(cache)
        try:
            return CHILDREN[kind](*[str(a) if isinstance(a, Path) else a for a in arguments])
        finally:
            if saved is None:
                os.environ.pop("REPRO_CACHE", None)
            else:
                os.environ["REPRO_CACHE"] = saved
    environment = {**os.environ, "REPRO_CACHE": str(cache), "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))}
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.scale", "--child", kind,
                                json.dumps([str(a) if isinstance(a, Path) else a for a in arguments])],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    return collect(process) if wait else process


def collect(process) -> dict:
    if isinstance(process, dict):  # measured in this process
        return process
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({process.returncode}): {err.strip()[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


# --- the benchmark ----------------------------------------------------------------------------------

def measure_parallel(size: int, scratch: Path, batches: int, workers: tuple[int, ...], one_core_up_to: int) -> dict:
    folder = synthetic_parallel(scratch / f"parallel-{size}", size)
    row = {"pairs": size}
    counts = workers if size <= one_core_up_to else tuple(c for c in workers if c > 1) or workers
    for count in counts:  # each from nothing: its own cache
        cache = scratch / f"cache-{size}-{count}"
        prepared = run_child("prepare", cache, folder, count)
        row[f"prepare_{count}p_pairs_per_s"] = prepared["pairs"] / prepared["seconds"]
        row[f"prepare_{count}p_seconds"] = prepared["seconds"]
        row[f"prepare_{count}p_peak_growth_bytes"] = prepared["peak_growth_bytes"]
        row["disk_bytes"], row["tokens"] = prepared["disk_bytes"], prepared["tokens"]
    warm_cache = scratch / f"cache-{size}-{max(counts)}"
    if size <= one_core_up_to:
        cold = run_child("load", scratch / f"cache-{size}-cold", folder, batches, 0)  # prepares on first use
        row["cold_first_batch_s"] = cold["first_batch_s"]
    warm = run_child("load", warm_cache, folder, batches, 0)
    if "cold_first_batch_s" not in row:  # not measured again at this size: preparing on every core, then a warm start
        row["cold_first_batch_s"] = row[f"prepare_{max(counts)}p_seconds"] + warm["first_batch_s"]
        row["cold_first_batch_estimated"] = True
    row.update(warm_first_batch_s=warm["first_batch_s"], batches_per_s=warm["batches_per_s"],
               peak_growth_1p_bytes=warm["peak_growth_bytes"], private_growth_1p_bytes=warm["private_growth_bytes"])
    hold = 0.0 if IN_PROCESS else 1.0
    both = [run_child("load", warm_cache, folder, batches, hold, wait=False) for _ in range(2)]
    results = [collect(process) for process in both]
    row["peak_growth_2p_bytes"] = max(r["peak_growth_bytes"] for r in results)
    row["second_process_private_bytes"] = min(r["private_growth_bytes"] for r in results)
    row["second_process_share"] = row["second_process_private_bytes"] / max(warm["peak_growth_bytes"], 2**20)
    for path in scratch.glob(f"cache-{size}-*"):
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    return row


def measure_captions(scratch: Path, images: int, clips: int, video_captions: int, batches: int, encoder: str) -> dict:
    root = scratch / "caption-data"
    synthetic_coco(root, images, COCO_CAPTIONS_PER_IMAGE)
    synthetic_msvd(root, clips, video_captions)
    cache = scratch / "caption-cache"
    coco = run_child("captions", cache, root, images, "spatial", batches, encoder)
    msvd = run_child("video_captions", cache, root, batches)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    for row in (coco, msvd):
        row["private_growth_per_caption_bytes"] = row["private_growth_bytes"] / row["captions"]
        row["peak_growth_per_caption_bytes"] = row["peak_growth_bytes"] / row["captions"]
    coco["encoder"] = encoder
    return {"coco": coco, "msvd": msvd}


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for row in [columns, *rows]:
            print("  ".join(f"{cell:>14}" for cell in row))
        return
    shown = Table(title=title)
    for column in columns:
        shown.add_column(column, justify="right")
    for row in rows:
        shown.add_row(*row)
    Console(width=200).print(shown)


def mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repro bench scale", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, every path once (seconds, for CI)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--sizes", default="", help="training pairs, comma-separated (default 20000,200000,1000000)")
    parser.add_argument("--lm-sizes", default="", help="LM training tokens, comma-separated (default 2000000,20000000)")
    parser.add_argument("--batches", type=int, default=0, help="batches timed per size (default 300; quick 20)")
    parser.add_argument("--one-core-up-to", type=int, default=0,
                        help="measure 1-process preparation and a separate cold start only up to this many pairs "
                             "(default: every size); above it, cold = 2-process preparation + warm start")
    parser.add_argument("--coco-images", type=int, default=0, help=f"images of the COCO-sized set (default {COCO_IMAGES:,})")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](*json.loads(args.child[1]))), flush=True)
        return 0
    global IN_PROCESS
    IN_PROCESS = args.quick
    sizes = [int(s) for s in args.sizes.split(",") if s] or ([500, 2000] if args.quick else [20_000, 200_000, 1_000_000])
    lm_sizes = [int(s) for s in args.lm_sizes.split(",") if s] or ([50_000] if args.quick else [2_000_000, 20_000_000])
    batches = args.batches or (20 if args.quick else 300)
    workers = (1, 2)
    one_core_up_to = args.one_core_up_to or max(sizes)
    coco_images = args.coco_images or (40 if args.quick else COCO_IMAGES)
    clips, video_captions = (MSVD_CLIPS, MSVD_CLIPS) if args.quick else (MSVD_CLIPS, MSVD_CAPTIONS)  # the split needs every clip
    encoder = "efficientnet-lite0" if args.quick else "vgg19"  # xu2015's CNN: conv5_4 maps, 14x14x512

    began_all, load_before = time.perf_counter(), os.getloadavg() if hasattr(os, "getloadavg") else None
    scratch = Path(tempfile.mkdtemp(prefix="repro-scale-"))
    try:
        rows = [measure_parallel(size, scratch, batches, workers, one_core_up_to) for size in sizes]
        lm_rows = []
        for tokens in lm_sizes:
            folder = synthetic_text(scratch / f"text-{tokens}", tokens)
            lm_rows.append({"tokens_requested": tokens, **run_child("language_model", scratch / "lm-cache", folder)})
            shutil.rmtree(folder, ignore_errors=True)
        captions = measure_captions(scratch, coco_images, clips, video_captions, batches, encoder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    smallest, largest = rows[0], rows[-1]
    for row in rows:
        row["batches_per_s_vs_smallest"] = row["batches_per_s"] / smallest["batches_per_s"]
        if "prepare_1p_pairs_per_s" in row:
            row["tokenize_speedup_2p"] = row["prepare_2p_pairs_per_s"] / row["prepare_1p_pairs_per_s"]
        row["peak_growth_per_pair_bytes"] = row["peak_growth_1p_bytes"] / row["pairs"]
    both_cores = [row for row in rows if "tokenize_speedup_2p" in row][-1]
    for row in lm_rows:
        row["peak_growth_per_token_bytes"] = row["peak_growth_bytes"] / row["tokens"]
        row["prepare_tokens_per_s"] = row["tokens"] / row["cold_first_batch_s"]

    dash = lambda row, key, form: form.format(row[key]) if key in row else "-"
    parallel_table = (["train pairs", "prep 1p pairs/s", "prep 2p pairs/s", "2p speed-up", "on disk", "cold 1st batch",
                       "warm 1st batch", "peak/pair 1p", "2nd process adds", "batches/s", "vs smallest"],
                      [[f"{r['pairs']:,}", dash(r, "prepare_1p_pairs_per_s", "{:,.0f}"),
                        f"{r['prepare_2p_pairs_per_s']:,.0f}", dash(r, "tokenize_speedup_2p", "{:.2f}x"),
                        mib(r["disk_bytes"]),
                        f"{r['cold_first_batch_s']:.2f} s" + (" (est.)" if r.get("cold_first_batch_estimated") else ""),
                        f"{r['warm_first_batch_s']:.2f} s", f"{r['peak_growth_per_pair_bytes']:,.0f} B",
                        f"{r['second_process_share']:.1%}", f"{r['batches_per_s']:,.1f}",
                        f"{r['batches_per_s_vs_smallest']:.2f}x"] for r in rows])
    lm_table = (["train tokens", "cold 1st batch (prepares)", "warm 1st batch", "on disk", "peak growth", "per token",
                 "2nd process adds"],
                [[f"{r['tokens']:,}", f"{r['cold_first_batch_s']:.2f} s", f"{r['warm_first_batch_s']:.2f} s",
                  mib(r["disk_bytes"]), mib(r["peak_growth_bytes"]), f"{r['peak_growth_per_token_bytes']:.1f} B",
                  f"{r['private_growth_bytes'] / max(r['tokens'], 1):.2f} B/token"] for r in lm_rows])
    coco, msvd = captions["coco"], captions["msvd"]
    caption_table = (["set", "media", "captions", "1st batch", "peak growth", "per caption", "own (anonymous) memory",
                      "per caption", "batches/s"],
                     [[f"COCO-sized ({coco['encoder']} maps, mapped)", f"{coco['images']:,} images", f"{coco['captions']:,}",
                       f"{coco['first_batch_s']:.2f} s", mib(coco["peak_growth_bytes"]),
                       f"{coco['peak_growth_per_caption_bytes']:,.0f} B", mib(coco["private_growth_bytes"]),
                       f"{coco['private_growth_per_caption_bytes']:,.0f} B", f"{coco['batches_per_s']:,.1f}"],
                      ["MSVD-sized (captions)", f"{msvd['clips']:,} clips", f"{msvd['captions']:,}",
                       f"{msvd['first_batch_s']:.2f} s", mib(msvd["peak_growth_bytes"]),
                       f"{msvd['peak_growth_per_caption_bytes']:,.0f} B", mib(msvd["private_growth_bytes"]),
                       f"{msvd['private_growth_per_caption_bytes']:,.0f} B", f"{msvd['batches_per_s']:,.1f}"]])
    table("parallel text, prepared and mapped (synthetic Multi30k layout)", *parallel_table)
    table("language-model text, prepared and mapped (synthetic WikiText layout)", *lm_table)
    table("captions through the datamodules", *caption_table)

    # linear in pairs (tokens) from the largest size measured; warm start as a + b * pairs from two sizes
    per_pair_tokens = largest["tokens"] / (largest["pairs"] * 1.02)
    wmt_tokens = WMT14_FRENCH_WORDS + WMT14_ENGLISH_WORDS
    if len(rows) > 1 and largest["pairs"] > smallest["pairs"]:
        slope = (largest["warm_first_batch_s"] - smallest["warm_first_batch_s"]) / (largest["pairs"] - smallest["pairs"])
    else:
        slope = largest["warm_first_batch_s"] / largest["pairs"]
    slope = max(slope, 0.0)
    warm_at = lambda pairs: largest["warm_first_batch_s"] + slope * (pairs - largest["pairs"])
    scale_wmt = wmt_tokens / max(largest["tokens"], 1)
    extrapolated = {
        "wmt14": {"pairs": WMT14_PAIRS, "tokens": wmt_tokens,
                  "prepare_hours_1p": WMT14_PAIRS / both_cores["prepare_1p_pairs_per_s"] / 3600,
                  "prepare_hours_2p": WMT14_PAIRS / largest["prepare_2p_pairs_per_s"] / 3600,
                  "disk_bytes": largest["disk_bytes"] * scale_wmt,
                  "peak_growth_bytes": largest["peak_growth_per_pair_bytes"] * WMT14_PAIRS,
                  "second_process_private_bytes": largest["second_process_private_bytes"] / largest["pairs"] * WMT14_PAIRS,
                  "warm_first_batch_s": warm_at(WMT14_PAIRS), "warm_first_batch_s_at_1m": warm_at(1_000_000),
                  "tokens_per_pair_measured": per_pair_tokens},
    }
    if lm_rows:
        lm = lm_rows[-1]
        per_token = lambda key: lm[key] / lm["tokens"] * WIKITEXT103_TOKENS
        extrapolated["wikitext103"] = {"tokens": WIKITEXT103_TOKENS, "peak_growth_bytes": per_token("peak_growth_bytes"),
                                       "second_process_private_bytes": max(per_token("private_growth_bytes"), 0),
                                       "disk_bytes": per_token("disk_bytes"),
                                       "prepare_hours": WIKITEXT103_TOKENS / lm["prepare_tokens_per_s"] / 3600,
                                       "warm_first_batch_s": lm["warm_first_batch_s"]}
    coco_scale, msvd_scale = COCO_IMAGES * COCO_CAPTIONS_PER_IMAGE / coco["captions"], MSVD_CAPTIONS / msvd["captions"]
    extrapolated["coco"] = {"images": COCO_IMAGES, "captions": COCO_IMAGES * COCO_CAPTIONS_PER_IMAGE,
                            "peak_growth_bytes": coco["peak_growth_bytes"] * coco_scale,
                            "second_process_private_bytes": coco["private_growth_bytes"] * coco_scale,
                            "first_batch_s": coco["first_batch_s"] * coco_scale}
    extrapolated["msvd"] = {"clips": MSVD_CLIPS, "captions": MSVD_CAPTIONS,
                            "peak_growth_bytes": msvd["peak_growth_bytes"] * msvd_scale,
                            "second_process_private_bytes": msvd["private_growth_bytes"] * msvd_scale,
                            "first_batch_s": msvd["first_batch_s"] * msvd_scale}
    wmt, wiki = extrapolated["wmt14"], extrapolated.get("wikitext103")
    extrapolated_table = (["corpus", "prepare 1p", "prepare 2p", "on disk", "peak growth / process",
                           "2nd process adds", "start (warm 1st batch)"],
                          [["WMT'14 en-fr (12M pairs)", f"{wmt['prepare_hours_1p']:.1f} h", f"{wmt['prepare_hours_2p']:.1f} h",
                            mib(wmt["disk_bytes"]), mib(wmt["peak_growth_bytes"]), mib(wmt["second_process_private_bytes"]),
                            f"{wmt['warm_first_batch_s']:.1f} s (1M pairs: {wmt['warm_first_batch_s_at_1m']:.1f} s)"]]
                          + ([["WikiText-103 (103M tokens)", f"{wiki['prepare_hours'] * 60:.1f} min", "-",
                               mib(wiki["disk_bytes"]), mib(wiki["peak_growth_bytes"]),
                               mib(wiki["second_process_private_bytes"]), f"{wiki['warm_first_batch_s']:.1f} s"]]
                             if wiki else [])
                          + [["COCO (123k images, 616k captions)", "features: the cache's extraction", "-",
                              "VGG maps 24.7 GB (mapped)", mib(extrapolated["coco"]["peak_growth_bytes"]),
                              mib(extrapolated["coco"]["second_process_private_bytes"]),
                              f"{extrapolated['coco']['first_batch_s']:.1f} s"],
                             ["MSVD (1,970 clips, 80k captions)", "frames: the cache's extraction", "-", "-",
                              mib(extrapolated["msvd"]["peak_growth_bytes"]),
                              mib(extrapolated["msvd"]["second_process_private_bytes"]),
                              f"{extrapolated['msvd']['first_batch_s']:.1f} s"]])
    table("extrapolated to the papers' datasets (linear from the largest size measured)", *extrapolated_table)
    targets = {
        "peak_growth_per_pair_le_1KiB": largest["peak_growth_per_pair_bytes"] <= 1024,
        "lm_peak_growth_per_token_le_16B": bool(lm_rows) and lm_rows[-1]["peak_growth_per_token_bytes"] <= 16,
        "second_process_adds_le_10pct": largest["second_process_share"] <= 0.10,
        "warm_first_batch_at_1m_le_5s": wmt["warm_first_batch_s_at_1m"] <= 5,
        "tokenize_2p_ge_1.8x": both_cores["tokenize_speedup_2p"] >= 1.8,
        "batches_per_s_largest_within_10pct": largest["batches_per_s_vs_smallest"] >= 0.9,
    }
    if IN_PROCESS:  # memory and rates of one shared process at toy sizes say nothing about the targets
        targets = {name: None for name in targets}
    for name, met in targets.items():
        print(f"target {name}: {'not measured (--quick)' if met is None else 'met' if met else 'NOT met'}")
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {"benchmark": "scale", "quick": args.quick, "rows": rows, "language_model_rows": lm_rows,
              "captions": captions, "extrapolated": extrapolated, "targets": targets, "cpu": cpu_model(),
              "cores": os.cpu_count(), "load_average_start": load_before, "load_average_end": load_after,
              "commit": commit_of(Path(__file__).resolve().parents[1]), "argv": sys.argv[1:] if argv is None else argv,
              "python": platform.python_version(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "seconds": round(time.perf_counter() - began_all, 1)}
    path = args.out / "scale.json"
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    write_atomic(args.out / "scale.md", markdown(result, [("Parallel text, prepared and mapped (synthetic Multi30k layout)",
                                                           parallel_table),
                                                          ("Language-model text, prepared and mapped (synthetic WikiText layout)",
                                                           lm_table),
                                                          ("Captions through the datamodules", caption_table),
                                                          ("Extrapolated to the papers' datasets", extrapolated_table)]))
    print(f"wrote {path} and {args.out / 'scale.md'}")
    return 0


def commit_of(folder: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True,
                              timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def markdown(result: dict, tables: list[tuple[str, tuple[list[str], list[list[str]]]]]) -> str:
    """The report as Markdown, generated from the measurements (never typed)."""
    load = result["load_average_start"], result["load_average_end"]
    lines = ["# Data at the size of the papers (`python -m repro bench scale`)", "",
             (f"Generated by `benchmarks/scale.py` at commit {result['commit'] or '?'} on {result['measured_at']} "
             f"({result['cpu']}, {result['cores']} cores; arguments: `{' '.join(result['argv']) or '(defaults)'}`; "
             f"{result['seconds'] / 60:.0f} min). The machine was shared with other jobs: load average "
             f"{', '.join(f'{x:.1f}' for x in load[0] or ())} at the start and "
             f"{', '.join(f'{x:.1f}' for x in load[1] or ())} at the end, so every rate is a lower bound of "
             f"the machine's. Synthetic corpora: Zipf words, which Moses tokenizes faster than real text."), "",
             ("Memory: *peak growth* is a measurement process's peak resident memory over its baseline after imports "
             "(mapped file pages included: they are the page cache, shared by every process); *2nd process adds* "
             "and *own memory* are the growth of its anonymous memory (its heap: what no other process can share)."),
             ""]
    for title, (columns, rows) in tables:
        lines += [f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    lines += ["## Targets (issue 20)", ""]
    lines += [f"- {name}: {'not measured (--quick)' if met is None else 'met' if met else '**not met**'}"
              for name, met in result["targets"].items()]
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    raise SystemExit(main())
