"""Beam search throughput: 64 images captioned as one batch against one image at a time.

    python -m repro bench beam_search [--quick]      (or: python -m benchmarks.beam_search)

The decoder is Show-and-Tell-sized (Vinyals et al. 2015): word embeddings, one LSTM of 512 units and
a 10,000-word softmax, with random weights; each "image" is a random feature vector projected to the
LSTM's initial state. Both runs use the same model and ``repro.decoding.beam_search`` at beam 3 for 20 steps
(random weights almost never emit eos, so every search runs all 20 steps: the same work both ways).
Prints a table and writes JSON.

What bounds the gain on a CPU: the batched step is one 192 x 512 x 10,000 matrix product (compute
bound), the one-image step streams the same 20 MB of output weights for 3 rows, which a CPU does
only about 4x less efficiently per row; measured here, 3.3x with one thread. Where a small step
costs a fixed launch overhead (a GPU) the batch gains far more. Other processes' load distorts
multi-threaded timings most: ``--threads 1`` is the steadier measure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from repro.decoding.beam_search import beam_search
from repro.files import write_atomic
from repro.training.hardware import cpu_model

BOS, EOS = 1, 2


class LstmCaptioner(nn.Module):
    def __init__(self, vocabulary: int = 10_000, hidden: int = 512, feature: int = 512):
        super().__init__()
        self.image_to_state = nn.Linear(feature, hidden)
        self.embed = nn.Embedding(vocabulary, hidden)
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.output = nn.Linear(hidden, vocabulary)

    def initial_state(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.tanh(self.image_to_state(features))
        return hidden, torch.zeros_like(hidden)

    def step(self, last_tokens: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        hidden, cell = self.lstm(self.embed(last_tokens), state)
        return torch.log_softmax(self.output(hidden), dim=-1), (hidden, cell)


def caption(model: LstmCaptioner, features: torch.Tensor, beam_size: int, max_length: int) -> list:
    return beam_search(model.step, model.initial_state(features), len(features), BOS, EOS, beam_size, max_length)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 images, one timed run of each: every code path in seconds")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    if args.quick:
        args.images = min(args.images, 8)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = LstmCaptioner().eval()
    features = torch.randn(args.images, 512)
    with torch.inference_mode():
        caption(model, features[:2], args.beam_size, args.max_length)  # warm-up
        batched = caption(model, features, args.beam_size, args.max_length)
        alone = [caption(model, features[i:i + 1], args.beam_size, args.max_length)[0] for i in range(args.images)]
        batched_s = best_time(lambda: caption(model, features, args.beam_size, args.max_length), repeats)
        alone_s = best_time(lambda: [caption(model, features[i:i + 1], args.beam_size, args.max_length)
                                     for i in range(args.images)], repeats)
    same = sum(b[0][0] == a[0][0] for b, a in zip(batched, alone))
    rows = [{"mode": mode, "seconds": round(seconds, 3), "captions_per_s": round(args.images / seconds, 1)}
            for mode, seconds in ((f"batch of {args.images}", batched_s), ("one image at a time", alone_s))]
    speedup = alone_s / batched_s

    load = os.getloadavg()[0]  # other processes' load distorts CPU timings, multi-threaded ones most
    print(f"beam search, LSTM 512 / vocabulary 10k, beam {args.beam_size}, {args.max_length} steps "
          f"({cpu_model()}, {torch.get_num_threads()} threads, load average {load:.1f} on {os.cpu_count()} cores)")
    print(f"{'mode':<22}{'seconds':>10}{'captions/s':>12}")
    for row in rows:
        print(f"{row['mode']:<22}{row['seconds']:>10.3f}{row['captions_per_s']:>12.1f}")
    print(f"batched speed-up: {speedup:.1f}x (target: at least 10x); same best caption both ways: {same}/{args.images}")

    result = {"benchmark": "beam-search-batched-vs-single", "quick": args.quick, "images": args.images,
              "beam_size": args.beam_size, "max_length": args.max_length, "hidden": 512, "vocabulary": 10_000,
              "rows": rows, "speedup": round(speedup, 2), "same_best_caption": same, "device": "cpu",
              "cpu": cpu_model(), "threads": torch.get_num_threads(), "load_average": round(load, 2),
              "torch": torch.__version__, "python": platform.python_version(),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = args.out / "beam_search.json"
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
