"""Image captioning throughput: CNN feature extraction, and training on cached features vs. the CNN.

    python -m repro bench vinyals2014 [--quick]      (or: python -m benchmarks.vinyals2014)

(a) Feature extraction, frozen CNN in eval mode under ``torch.inference_mode`` at batch 32: images/s
    of the network alone on preprocessed 224x224 tensors, set against its FLOP floor on this machine
    (FLOPs per image from ``torch.utils.flop_counter.FlopCounterMode``, divided by this machine's
    measured fp32 matmul peak), and images/s of the whole cache path (JPEG decode, resize, crop,
    encode, write) on real Flickr8k images when they are under the data root.
(b) Training Show and Tell (``papers.vinyals2014.ShowAndTellNetwork``, embedding and LSTM of 512 as
    in Sec. 4.3.1) on cached pooled features, against running the frozen CNN at every step, and
    against fine-tuning it end to end. The plain CNN rows get already-decoded image tensors, so their
    cost is a lower bound and the cache's speed-up an underestimate; with Flickr8k images under the
    data root, one more row decodes and resizes 32 real JPEGs every step, as a pipeline without the
    cache must.
Images/s are from the fastest call (other processes on a shared machine only slow calls down), with
the median beside them. FLOPs: the CNN's backward counted as twice its forward (see training_rows).
Run with REPRO_DATA pointing at the data root for the real-image rows. Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from datamodules.captioning.feature_cache import cached_features
from datamodules.catalog import resolve_data_dir
from papers.vinyals2014 import ShowAndTellNetwork
from repro.captioning.image_encoders import build_encoder
from repro.captioning.images import load_image
from repro.files import write_atomic
from repro.training.hardware import cpu_model

BATCH_SIZE = 32
CAPTION_LENGTH = 16  # words after <start>, the datamodule's default maximum caption length
VOCABULARY_SIZE = 2537  # words seen >= 5 times in the official Flickr8k training captions (measured)
ENCODER_ROWS = (("efficientnet-lite0", "imagenet"), ("resnet50", "random"))


def matmul_peak_gflops(seconds: float, size: int = 2048) -> float:
    """This machine's fp32 matrix-multiply rate (the fastest of many products, as timeit reports)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best, _ = timed(lambda: torch.mm(a, b), seconds, min_steps=5)
    return 2 * size**3 / best / 1e9


def count_flops(step) -> float:
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def timed(step, seconds: float, warmup: int = 1, min_steps: int = 3) -> tuple[float, float]:
    """(fastest, median) seconds per call of ``step``, after ``warmup`` untimed calls.

    The fastest call is the headline figure: on a shared machine other processes only ever slow a
    call down, so the minimum is the best estimate of what this machine does (Python's timeit
    reasons the same way); the median is kept beside it to show how noisy the machine was.
    """
    for _ in range(warmup):
        step()
    times, start = [], time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        step()
        times.append(time.perf_counter() - begin)
    return min(times), statistics.median(times)


def extraction_rows(seconds: float, peak: float, encoders=ENCODER_ROWS, batch_size: int = BATCH_SIZE,
                    image_size: int = 224) -> list[dict]:
    rows = []
    images = torch.randn(batch_size, 3, image_size, image_size)
    for name, weights in encoders:
        encoder = build_encoder(name, weights, image_size).eval()

        def forward():
            with torch.inference_mode():
                encoder(images)

        with torch.inference_mode():
            flops_per_image = count_flops(lambda: encoder(images[:1]))
        per_batch, median = timed(forward, seconds)
        rate = batch_size / per_batch
        rows.append({"encoder": name, "weights": weights, "batch_size": batch_size, "image_size": image_size,
                     "gflops_per_image": round(flops_per_image / 1e9, 3), "images_per_s": round(rate, 1),
                     "images_per_s_median": round(batch_size / median, 1),
                     "floor_images_per_s": round(peak * 1e9 / flops_per_image, 1),
                     "gflops": round(rate * flops_per_image / 1e9, 1),
                     "fraction_of_peak": round(rate * flops_per_image / 1e9 / peak, 3)})
    return rows


def flickr8k_photos(count: int) -> list[Path]:
    """The first ``count`` Flickr8k JPEGs under the data root ($REPRO_DATA), or none."""
    root, _ = resolve_data_dir(None)
    folder = root / "flickr8k_images_subset" / "images"
    return sorted(folder.glob("*.jpg"))[:count] if folder.is_dir() else []


def cache_path_row(count: int) -> dict | None:
    """Images/s of ``cached_features`` end to end on real JPEGs (decode + resize + encode + write)."""
    files = flickr8k_photos(count)
    if not files:
        return None

    encoder = build_encoder("efficientnet-lite0", "imagenet")
    previous = os.environ.get("REPRO_CACHE")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["REPRO_CACHE"] = scratch  # a fresh cache, so this measures extraction, not reuse
        try:
            start = time.perf_counter()
            cached_features("bench", {f.stem: f for f in files}, encoder, spatial=True, batch_size=BATCH_SIZE,
                            progress=False)
            elapsed = time.perf_counter() - start
        finally:
            if previous is None:
                os.environ.pop("REPRO_CACHE")
            else:
                os.environ["REPRO_CACHE"] = previous
    return {"encoder": "efficientnet-lite0", "images": len(files), "spatial": True,
            "images_per_s": round(len(files) / elapsed, 1)}


def training_rows(seconds: float, peak: float, encoders=ENCODER_ROWS, batch_size: int = BATCH_SIZE,
                  image_size: int = 224) -> tuple[list[dict], dict[str, float]]:

    photos = flickr8k_photos(batch_size)
    rows, speedups = [], {}
    images = torch.randn(batch_size, 3, image_size, image_size)
    captions = torch.randint(4, VOCABULARY_SIZE, (batch_size, CAPTION_LENGTH + 1))
    for name, weights in encoders:
        torch.manual_seed(0)
        encoder = build_encoder(name, weights, image_size).eval()
        with torch.no_grad():  # not inference_mode: these features take part in autograd below
            cached = encoder(images)[0]
            # FlopCounterMode ignores groups in the backward of a depthwise convolution (it counts
            # 64x too many FLOPs for a 64-channel one), so the CNN's backward is taken as twice its
            # forward, the usual count; the decoder's forward and backward are counted as they run.
            encoder_forward = count_flops(lambda: encoder(images))
        network = ShowAndTellNetwork(encoder.feature_dim, VOCABULARY_SIZE, embedding_size=512, hidden_size=512,
                                     dropout=0.5).train()
        decoder_optimizer = torch.optim.SGD(network.parameters(), lr=0.01)
        everything_optimizer = torch.optim.SGD([*network.parameters(), *encoder.parameters()], lr=0.01)

        def decoder_step(features: torch.Tensor, optimizer) -> None:
            logits = network(features, captions[:, :-1])  # [B, T + 1, V]; output 0 follows the image
            loss = F.cross_entropy(logits[:, 1:].reshape(-1, VOCABULARY_SIZE), captions[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        def on_cached_features():
            decoder_step(cached, decoder_optimizer)

        def frozen_cnn_every_step():
            with torch.no_grad():
                features = encoder(images)[0]
            decoder_step(features, decoder_optimizer)

        def frozen_cnn_from_jpeg():  # what a pipeline without the cache does: decode, resize, encode
            batch = torch.stack([encoder.transform(load_image(path)) for path in photos])
            frozen_cnn_every_step_on(batch)

        def frozen_cnn_every_step_on(batch: torch.Tensor) -> None:
            with torch.no_grad():
                features = encoder(batch)[0]
            decoder_step(features, decoder_optimizer)

        def fine_tuned_cnn():
            encoder.train()
            decoder_step(encoder(images)[0], everything_optimizer)

        decoder = count_flops(on_cached_features)
        settings = [("cached features", on_cached_features, decoder),
                    ("frozen CNN every step", frozen_cnn_every_step, decoder + encoder_forward)]
        if name == "efficientnet-lite0":  # one row each is enough to show these costs
            if photos:
                settings.append(("frozen CNN every step, from JPEG", frozen_cnn_from_jpeg, decoder + encoder_forward))
            settings.append(("CNN fine-tuned end to end", fine_tuned_cnn, decoder + 3 * encoder_forward))
        for setting, step, flops in settings:
            per_step, median = timed(step, seconds)
            rows.append({"setting": setting, "encoder": name, "weights": weights, "batch_size": batch_size,
                         "image_size": image_size, "caption_length": CAPTION_LENGTH, "vocabulary": VOCABULARY_SIZE,
                         "images_per_s": round(batch_size / per_step, 1),
                         "images_per_s_median": round(batch_size / median, 1),
                         "gflops_per_image": round(flops / batch_size / 1e9, 3),
                         "gflops": round(flops / per_step / 1e9, 1),
                         "fraction_of_peak": round(flops / per_step / 1e9 / peak, 3)})
        cached_row, frozen_row = (next(r for r in rows if r["encoder"] == name and r["setting"] == setting)
                                  for setting in ("cached features", "frozen CNN every step"))
        speedups[name] = round(cached_row["images_per_s"] / frozen_row["images_per_s"], 1)
        if name == "efficientnet-lite0" and photos:
            from_jpeg = next(r for r in rows if r["setting"] == "frozen CNN every step, from JPEG")
            speedups[f"{name} (CNN row decoding JPEGs)"] = round(
                cached_row["images_per_s"] / from_jpeg["images_per_s"], 1)
    return rows, speedups


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="every code path in seconds (EfficientNet-Lite0 only, short timings): for tests, not numbers")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args(argv)
    seconds = 0.2 if args.quick else 15.0
    # quick: one encoder, 4 images of 64 px, the shortest timings (every code path, no meaningful numbers)
    sizes = {"encoders": ENCODER_ROWS[:1], "batch_size": 4, "image_size": 64} if args.quick else {}

    load_before = os.getloadavg()
    peak = matmul_peak_gflops(seconds / 2)
    extraction = extraction_rows(seconds, peak, **sizes)
    end_to_end = cache_path_row(4 if args.quick else 256)
    training, speedups = training_rows(seconds, peak, **sizes)

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    title = (f"vinyals2014 feature extraction, batch {extraction[0]['batch_size']} at {extraction[0]['image_size']} px, "
             f"eval + inference_mode "
             f"({cpu_model()}, {torch.get_num_threads()} threads; fp32 matmul peak {peak:.1f} GFLOP/s)")
    table = Table(title=title)
    for column in ("encoder", "weights", "GFLOP/image", "images/s", "(median)", "floor images/s", "GFLOP/s",
                   "of peak"):
        table.add_column(column, justify="left" if column in ("encoder", "weights") else "right")
    for row in extraction:
        table.add_row(row["encoder"], row["weights"], f"{row['gflops_per_image']:.2f}", f"{row['images_per_s']:.1f}",
                      f"{row['images_per_s_median']:.1f}", f"{row['floor_images_per_s']:.1f}", f"{row['gflops']:.1f}",
                      f"{row['fraction_of_peak']:.1%}")
    console.print(table)
    if end_to_end is None:
        console.print("no Flickr8k images under the data root ($REPRO_DATA): the whole-cache-path and JPEG rows "
                      "are left out")
    else:
        console.print(f"whole cache path (JPEG decode + resize + encode + write pooled and spatial), "
                      f"{end_to_end['images']} Flickr8k images: {end_to_end['images_per_s']:.1f} images/s")

    table = Table(title=f"vinyals2014 training, Show and Tell (512/512), batch {training[0]['batch_size']} images x "
                        f"{CAPTION_LENGTH + 1} steps, vocabulary {VOCABULARY_SIZE}")
    for column in ("setting", "encoder", "weights", "images/s", "(median)", "GFLOP/image", "GFLOP/s", "of peak"):
        table.add_column(column, justify="left" if column in ("setting", "encoder", "weights") else "right")
    for row in training:
        table.add_row(row["setting"], row["encoder"], row["weights"], f"{row['images_per_s']:.1f}",
                      f"{row['images_per_s_median']:.1f}",
                      f"{row['gflops_per_image']:.2f}", f"{row['gflops']:.1f}", f"{row['fraction_of_peak']:.1%}")
    console.print(table)
    for name, speedup in speedups.items():
        console.print(f"training images/s, cached features over the frozen CNN at every step, {name}: "
                      f"{speedup:.1f}x (target: at least 20x)")
    load_after = os.getloadavg()
    console.print(f"1-minute load average {load_before[0]:.1f} before the benchmark, {load_after[0]:.1f} after "
                  f"({os.cpu_count()} CPUs): other processes running at the same time slow every row")

    result = {"benchmark": "vinyals2014-features-and-training-throughput", "quick": args.quick,
              "matmul_peak_gflops": round(peak, 1), "extraction": extraction, "cache_path": end_to_end,
              "training": training, "cached_speedup_by_encoder": speedups,
              "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)], "cpu": cpu_model(),
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "python": platform.python_version(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = args.out / "vinyals2014.json"
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
