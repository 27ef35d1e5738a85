"""Training throughput of the RNNLM: class-based output layer against the full softmax.

    python -m repro bench mikolov2010 [--quick]      (or: python -m benchmarks.mikolov2010)

Measures training tokens/s (forward, backward, gradient clipping, SGD step) at the paper's size on
Penn Treebank when it is under the data root, else on a Zipf-distributed stream with PTB's 10k
vocabulary (the output layer's cost depends only on the vocabulary and the class sizes, not on the
text), for several (streams, words per update): one stream updated every 10 words is the RNNLM
toolkit's own schedule (per-word SGD with a BPTT block of 10), the ``ptb`` preset's streams are what
the suite trains with, and 32 and 64 streams are the minibatch path. Each measurement is the best of
several timed rounds, so a machine shared with other jobs reports its speed, not its load. Achieved
GFLOP/s count the model's multiply-adds (2 FLOPs each, backward = 2x forward) and are set against this
machine's measured fp32 matmul peak. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from collections import Counter
from pathlib import Path

import torch

from datamodules.catalog import resolve_data_dir
from datamodules.ptb import PennTreebankDataModule
from datamodules.vocabulary import Vocabulary
from papers.mikolov2010 import PRESETS, ClassFactorizedSoftmax, Mikolov2010Config, build_network
from repro.records import cpu_model, matmul_peak_gflops, write_atomic


def training_stream(batch_size: int) -> tuple[Vocabulary, torch.Tensor, str]:
    root, _ = resolve_data_dir(None)
    if (root / "ptb" / "ptb.train.txt").is_file():
        data = PennTreebankDataModule(root / "ptb", batch_size=batch_size)
        return data.vocabulary, data.train_dataloader().chunks.inputs, "ptb"
    generator = torch.Generator().manual_seed(0)
    ranks = torch.arange(1, 10001, dtype=torch.float)
    stream = torch.multinomial(1 / ranks, batch_size * 30000, replacement=True, generator=generator)
    counts = Counter(stream.tolist())
    vocabulary = Vocabulary([str(i) for i in range(10000)], [counts.get(i, 0) + 1 for i in range(10000)])
    return vocabulary, stream.view(batch_size, -1), "zipf-10k"


def model_flops_per_token(network, targets: torch.Tensor, hidden: int) -> float:
    """Multiply-adds x 2 of the paper's network (Eq. 1-3) per training word, forward + backward."""
    recurrence = hidden * hidden  # W s(t-1); the input is a lookup
    output = network.output
    if isinstance(output, ClassFactorizedSoftmax):
        sizes = torch.tensor(output.class_sizes, dtype=torch.float)
        mean_class_size = sizes[output.word_class[targets.flatten()]].mean().item()
        output_cost = hidden * (len(output.class_sizes) + mean_class_size)
    else:
        output_cost = hidden * output.output.out_features
    return 3 * 2 * (recurrence + output_cost)


def tokens_per_second(config: Mikolov2010Config, vocabulary, stream, seconds: float, rounds: int = 5) -> tuple[float, float]:
    """Best of ``rounds`` timed rounds of ``seconds / rounds`` each, after 3 untimed warm-up steps."""
    torch.manual_seed(0)
    network = build_network(config, vocabulary)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    state = network.initial_state(stream.shape[0], "cpu")
    step, best = 0, (0.0, 0.0)

    def train_step() -> tuple[int, float]:
        nonlocal state, step
        window = slice(step * config.bptt % (stream.shape[1] - config.bptt - 1), None)
        words = stream[:, window][:, : config.bptt]
        targets = stream[:, window][:, 1: config.bptt + 1]
        log_prob, keep, state = network.log_prob(words, targets, state.detach())
        optimizer.zero_grad()
        (-log_prob.mean()).backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
        step += 1
        return targets.numel(), model_flops_per_token(network, targets, config.hidden_size) * targets.numel()

    for _ in range(3):
        train_step()
    for _ in range(rounds):
        tokens, flops, start = 0, 0.0, time.perf_counter()
        while time.perf_counter() - start < seconds / rounds:
            step_tokens, step_flops = train_step()
            tokens, flops = tokens + step_tokens, flops + step_flops
        elapsed = time.perf_counter() - start
        best = max(best, (tokens / elapsed, flops / elapsed / 1e9))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every code path in seconds: for tests, not numbers")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    preset = {**dataclasses.asdict(Mikolov2010Config()), **PRESETS["ptb"]}
    parser.add_argument("--shapes", nargs="+", default=["1x10", f"{preset['batch_size']}x{preset['bptt']}", "32x20", "64x20"],
                        help="STREAMSxWORDS per update: 1x10 is the toolkit's per-word SGD with its BPTT block of 10; "
                             "the class layer's per-class overhead shrinks per word as the update grows")
    parser.add_argument("--hidden-size", type=int, default=preset["hidden_size"])
    args = parser.parse_args(argv)
    seconds = 0.5 if args.quick else 20.0

    peak = matmul_peak_gflops(seconds / 2)
    rows, speedups = [], {}
    for shape in args.shapes:
        batch_size, bptt = (int(part) for part in shape.split("x"))
        vocabulary, stream, data = training_stream(batch_size)
        for output_layer in ("classes", "full"):
            config = Mikolov2010Config(output_layer=output_layer, batch_size=batch_size, bptt=bptt,
                                       hidden_size=args.hidden_size, class_assignment=preset["class_assignment"])
            rate, gflops = tokens_per_second(config, vocabulary, stream, seconds)
            rows.append({"output_layer": output_layer, "hidden_size": config.hidden_size, "batch_size": batch_size,
                         "bptt": config.bptt, "tokens_per_s": round(rate, 1), "gflops": round(gflops, 2),
                         "fraction_of_peak": round(gflops / peak, 3)})
        speedups[shape] = round(rows[-2]["tokens_per_s"] / rows[-1]["tokens_per_s"], 2)

    print(f"mikolov2010 training throughput on {data} ({cpu_model()}, {torch.get_num_threads()} threads); "
          f"fp32 matmul peak {peak:.1f} GFLOP/s; hidden {args.hidden_size}")
    print(f"{'output layer':<14}{'streams':>8}{'words':>6}{'tokens/s':>12}{'GFLOP/s':>10}{'of peak':>10}")
    for row in rows:
        print(f"{row['output_layer']:<14}{row['batch_size']:>8}{row['bptt']:>6}{row['tokens_per_s']:>12.0f}"
              f"{row['gflops']:>10.1f}{row['fraction_of_peak']:>10.1%}")
    for shape, speedup in speedups.items():
        print(f"class-based speed-up over the full softmax at {shape} (streams x words): {speedup:.1f}x "
              f"(target at the ptb preset's {preset['batch_size']}x{preset['bptt']}: at least 5x)")

    result = {"benchmark": "mikolov2010-training-throughput", "data": data, "quick": args.quick,
              "matmul_peak_gflops": round(peak, 1), "rows": rows, "class_speedup_by_shape": speedups,
              "cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "python": platform.python_version(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = args.out / "mikolov2010.json"
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
