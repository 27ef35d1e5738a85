"""Training throughput of the RNNLM: class-based output layer against the full softmax.

    python -m repro bench mikolov2010 [--quick]      (or: python -m benchmarks.mikolov2010)

Measures training tokens/s (forward, backward, SGD step) at the paper's size on Penn Treebank when it
is under the data root, else on a Zipf-distributed stream with PTB's 10k vocabulary (the output
layer's cost depends only on the vocabulary and the class sizes, not on the text). Achieved GFLOP/s
count the model's multiply-adds (2 FLOPs each, backward = 2x forward) and are set against this
machine's measured fp32 matmul peak. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from pathlib import Path

import torch

from datamodules.catalog import resolve_data_dir
from datamodules.ptb import PennTreebankDataModule
from datamodules.vocabulary import Vocabulary
from papers.mikolov2010 import ClassFactorizedSoftmax, Mikolov2010Config, build_network
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


def tokens_per_second(config: Mikolov2010Config, vocabulary, stream, seconds: float) -> tuple[float, float]:
    torch.manual_seed(0)
    network = build_network(config, vocabulary)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    state = network.initial_state(stream.shape[0], "cpu")
    flops, tokens, step, start = 0.0, 0, 0, None
    while start is None or time.perf_counter() - start < seconds:
        window = slice(step * config.bptt % (stream.shape[1] - config.bptt - 1), None)
        words = stream[:, window][:, : config.bptt]
        targets = stream[:, window][:, 1: config.bptt + 1]
        log_prob, keep, state = network.log_prob(words, targets, state.detach())
        optimizer.zero_grad()
        (-log_prob.mean()).backward()
        optimizer.step()
        step += 1
        if step == 3:  # warm-up steps are not timed
            start = time.perf_counter()
        elif step > 3:
            tokens += targets.numel()
            flops += model_flops_per_token(network, targets, config.hidden_size) * targets.numel()
    elapsed = time.perf_counter() - start
    return tokens / elapsed, flops / elapsed / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every code path in seconds: for tests, not numbers")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[Mikolov2010Config.batch_size, 64],
                        help="streams per update; the class layer's per-class overhead shrinks per word as it grows")
    args = parser.parse_args(argv)
    seconds = 0.5 if args.quick else 20.0

    peak = matmul_peak_gflops(seconds / 2)
    rows, speedups = [], {}
    for batch_size in args.batch_sizes:
        vocabulary, stream, data = training_stream(batch_size)
        for output_layer in ("classes", "full"):
            config = Mikolov2010Config(output_layer=output_layer, batch_size=batch_size)
            rate, gflops = tokens_per_second(config, vocabulary, stream, seconds)
            rows.append({"output_layer": output_layer, "hidden_size": config.hidden_size, "batch_size": batch_size,
                         "bptt": config.bptt, "tokens_per_s": round(rate, 1), "gflops": round(gflops, 2),
                         "fraction_of_peak": round(gflops / peak, 3)})
        speedups[batch_size] = round(rows[-2]["tokens_per_s"] / rows[-1]["tokens_per_s"], 2)

    print(f"mikolov2010 training throughput on {data} ({cpu_model()}, {torch.get_num_threads()} threads); "
          f"fp32 matmul peak {peak:.1f} GFLOP/s; hidden 200, bptt 20")
    print(f"{'output layer':<14}{'batch':>6}{'tokens/s':>12}{'GFLOP/s':>10}{'of peak':>10}")
    for row in rows:
        print(f"{row['output_layer']:<14}{row['batch_size']:>6}{row['tokens_per_s']:>12.0f}{row['gflops']:>10.1f}"
              f"{row['fraction_of_peak']:>10.1%}")
    for batch_size, speedup in speedups.items():
        print(f"class-based speed-up over the full softmax at batch {batch_size}: {speedup:.1f}x (target: at least 5x)")

    result = {"benchmark": "mikolov2010-training-throughput", "data": data, "quick": args.quick,
              "matmul_peak_gflops": round(peak, 1), "rows": rows, "class_speedup_by_batch": speedups,
              "cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "python": platform.python_version(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = args.out / "mikolov2010.json"
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
