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

Gradient clipping is timed where the preset that trains at that shape clips: not at 1x10 (the
``toolkit`` preset, as the toolkit), at 1.0 elsewhere (the ``ptb`` preset). The JSON records the load
average, because the machine these numbers come from is shared.

A second set of rows takes a WikiText-2-sized vocabulary (33,278 words, Merity et al. 2016's Table 1)
as a synthetic Zipf stream with the ``wikitext2`` preset's classes (182, about sqrt(V)): the full
softmax's cost grows with the vocabulary and the class layer's with about its square root, so what
the class-based output buys grows with the corpus (WikiText-103's 268k words: more still).

What makes the class layer fast (papers/mikolov2010.py, repro/language_modeling/class_output.py,
recurrence.py, sparse_rows.py): profiled at the toolkit's 1x10, a step spent most of its time on
work proportional to the whole vocabulary (dense [V, H] gradients of U and the word layer, zeroed,
added and freed every update), then on a Python loop over the classes present and on the CPU RNN's
graph node per word. Now U and the word layer get row-sparse gradients (only the rows the block
used), one C++ call computes every word's within-class softmax and one its backward (PyTorch's loop
over classes where no compiler is found, or on a GPU), and the sigmoid recurrence is backpropagated
by hand. The numbers: results/benchmarks/mikolov2010.json, written by this script (none are typed here).

What bounds the speed now (the "anatomy" section of the output, for the ``toolkit`` preset's one stream
and the ``ptb`` preset's streams): an update runs a fixed number of PyTorch operators, at one stream most
of them per word (the recurrence's forward and its hand-written backward), and each costs the dispatcher's
few microseconds whatever its size. The script counts them with torch.profiler (the outermost ``aten::``
calls, each one dispatch from Python or autograd), times the cheapest operator this machine can run (an
in-place add on one number), and sets their product, the dispatch floor, beside the measured time per
update and the arithmetic's time at the matmul peak. The rest is the operators' work beyond that floor
(matrices of one to eight rows run far below the matmul peak) and the Python and autograd around them.
Where the arithmetic is a small part of an update, a faster kernel cannot help much: fewer operators per
word can (one native call for a whole block's recurrence, forward and backward, as the toolkit's own C
loop is), and so can more streams per update.

Each anatomy also times an update's phases by the clock (forward, backward, gradient clipping, the SGD
step; ``phase`` in ``training_step``) and splits each among its largest steps by a torch.profiler trace
(the profiler's cost is per event, so only the split within a phase is taken from it). At one stream the
recurrence's forward and hand-written backward, the within-class kernel and the row-sparse lookup's
backward lead, each a fraction of a millisecond: per-operator cost, as above. At the ``ptb`` preset's
streams the classes of one update's targets hold most of the word layer's rows
(``word_rows_in_gradient``), so its row-sparse gradient is nearly the full softmax's in size: zeroing and
filling it (the within-class kernel's backward, the largest step), clipping it (sparse COO tensors,
uncoalesced by then, through ``clip_grad_norm_``'s generic sparse paths) and the SGD step over it are
memory work the class layer saves only in part, while it saves most of the output's arithmetic. That is
what bounds the speed-up at few streams per update; more streams share the same rows among more words,
and the speed-up grows with them (the 32 and 64-stream rows). Past that bound, what would help is what
the toolkit does: no gradient tensors at all, each word's update applied to the weights in place, which
the ``ptb`` preset's norm clipping (a norm over the whole gradient first) rules out; and gradients that
reach clipping and the SGD step coalesced. Either changes mikolov2010's fingerprinted code, so every
mikolov2010 record would have to be run again with it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path

import torch
from torch.profiler import record_function

from datamodules.catalog import resolve_data_dir
from datamodules.language_modeling.ptb import PennTreebankDataModule
from papers.mikolov2010 import PRESETS, ClassFactorizedSoftmax, Mikolov2010Config, build_network
from repro.files import write_atomic
from repro.training.hardware import cpu_model, matmul_peak_gflops
from repro.vocabulary import Vocabulary

WIKITEXT2_VOCABULARY = 33_278  # Merity et al. 2016, Table 1


def zipf_stream(batch_size: int, size: int, words_per_stream: int = 30000) -> tuple[Vocabulary, torch.Tensor, str]:
    """A Zipf-distributed stream over ``size`` words (rank r drawn with probability ~ 1/r), and its counts."""
    generator = torch.Generator().manual_seed(0)
    ranks = torch.arange(1, size + 1, dtype=torch.float)
    stream = torch.multinomial(1 / ranks, batch_size * words_per_stream, replacement=True, generator=generator)
    counts = Counter(stream.tolist())
    vocabulary = Vocabulary([str(i) for i in range(size)], [counts.get(i, 0) + 1 for i in range(size)])
    return vocabulary, stream.view(batch_size, -1), f"zipf-{size // 1000}k"


def training_stream(batch_size: int) -> tuple[Vocabulary, torch.Tensor, str]:
    root, _ = resolve_data_dir(None)
    if (root / "ptb" / "ptb.train.txt").is_file():
        data = PennTreebankDataModule(root / "ptb", batch_size=batch_size)
        return data.vocabulary, data.train_dataloader().chunks.inputs, "ptb"
    return zipf_stream(batch_size, 10000)


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


PHASES = ("forward", "backward", "clipping", "sgd step")


def window_start(step: int, bptt: int, stream: torch.Tensor) -> int:
    """Where update ``step``'s words begin in each stream: consecutive blocks, wrapping before the end."""
    return step * bptt % (stream.shape[1] - bptt - 1)


@contextlib.contextmanager
def phase(name: str, seconds: dict[str, float] | None):
    """A phase of an update: labelled for a profile (about a microsecond), and timed when ``seconds`` is given."""
    start = time.perf_counter()
    with record_function(name):
        yield
    if seconds is not None:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start


def training_step(config: Mikolov2010Config, vocabulary, stream, clip: float | None,
                  seconds: dict[str, float] | None = None):
    """One update per call over ``stream`` (forward, backward, clipping, SGD), as the presets train; each call
    returns the words it trained on and the model's FLOPs for them, and adds each phase's time to ``seconds``."""
    torch.manual_seed(0)
    network = build_network(config, vocabulary)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    state = network.initial_state(stream.shape[0], "cpu")
    step = 0
    # over the whole stream, once: per update it would be timed with it (a tensor of the class sizes each time)
    flops_per_token = model_flops_per_token(network, stream[:, 1:], config.hidden_size)

    def train_step() -> tuple[int, float]:
        nonlocal state, step
        window = slice(window_start(step, config.bptt, stream), None)
        words = stream[:, window][:, : config.bptt]
        targets = stream[:, window][:, 1: config.bptt + 1]
        with phase("forward", seconds):
            log_prob, _, state = network.log_prob(words, targets, state.detach())
        with phase("backward", seconds):
            optimizer.zero_grad()
            (-log_prob.mean()).backward()
        with phase("clipping", seconds):
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(network.parameters(), clip)
        with phase("sgd step", seconds):
            optimizer.step()
        step += 1
        return targets.numel(), flops_per_token * targets.numel()

    return train_step


def tokens_per_second(config: Mikolov2010Config, vocabulary, stream, seconds: float, rounds: int = 5,
                      warm_up: int = 3, clip: float | None = 1.0) -> tuple[float, float]:
    """Best of ``rounds`` timed rounds of ``seconds / rounds`` each, after ``warm_up`` untimed steps."""
    train_step = training_step(config, vocabulary, stream, clip)
    best = (0.0, 0.0)
    for _ in range(warm_up):
        train_step()
    for _ in range(rounds):
        tokens, flops, start = 0, 0.0, time.perf_counter()
        while time.perf_counter() - start < seconds / rounds:
            step_tokens, step_flops = train_step()
            tokens, flops = tokens + step_tokens, flops + step_flops
        elapsed = time.perf_counter() - start
        best = max(best, (tokens / elapsed, flops / elapsed / 1e9))
    return best


def word_rows_per_update(config: Mikolov2010Config, vocabulary, stream, updates: int) -> float | None:
    """The mean share of the word layer's rows in the classes an update's targets fall in: the rows its
    row-sparse gradient holds (None for the full softmax, whose gradient holds them all)."""
    output = build_network(config, vocabulary).output
    if not isinstance(output, ClassFactorizedSoftmax):
        return None
    shares = []
    for step in range(updates):
        start = window_start(step, config.bptt, stream)
        classes = output.word_class[stream[:, start + 1: start + config.bptt + 1].flatten()].unique()
        shares.append(output.class_size[classes].sum().item() / len(output.word_class))
    return sum(shares) / len(shares)


def dispatch_floor_us(calls: int = 20000) -> float:
    """Microseconds of the cheapest PyTorch operator here (an in-place add on one number): the best of 5."""
    one = torch.zeros(1)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            one.add_(1)
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def update_anatomy(config: Mikolov2010Config, vocabulary, stream, updates: int, peak: float, clip: float | None) -> dict:
    """Where one update's time goes at ``config``'s shape: operators dispatched, their floor, the arithmetic."""
    from torch.profiler import ProfilerActivity, profile

    seconds: dict[str, float] = {}
    train_step = training_step(config, vocabulary, stream, clip, seconds)
    flops = []
    for _ in range(3):
        train_step()
    best, best_phases = float("inf"), {}
    for _ in range(3):  # best of 3, as the throughput rows
        seconds.clear()
        start = time.perf_counter()
        for _ in range(updates):
            flops.append(train_step()[1])
        elapsed = (time.perf_counter() - start) / updates
        if elapsed < best:
            best, best_phases = elapsed, {name: seconds[name] / updates * 1e3 for name in PHASES}
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(updates):
            train_step()

    def outermost(event) -> bool:
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::"):
                return False
            parent = parent.cpu_parent
        return event.name.startswith("aten::")

    operators = sum(outermost(event) for event in profiler.events()) / updates
    phases = where_the_time_goes(profiler.events(), best_phases)
    floor_us = dispatch_floor_us()
    words = stream.shape[0] * config.bptt
    arithmetic_ms = sum(flops) / len(flops) / (peak * 1e9) * 1e3
    dispatch_ms = operators * floor_us / 1e3
    return {"streams": stream.shape[0], "words_per_update": words, "ms_per_update": round(best * 1e3, 3),
            "operators_per_update": round(operators, 1), "operators_per_word": round(operators / words, 1),
            "dispatch_floor_us_per_operator": round(floor_us, 2), "dispatch_floor_ms_per_update": round(dispatch_ms, 3),
            "arithmetic_ms_at_peak": round(arithmetic_ms, 4),
            # the operators' work beyond their floor (small matrices far below peak), Python and autograd
            "other_ms_per_update": round(best * 1e3 - dispatch_ms - arithmetic_ms, 3),
            "tokens_per_s_at_dispatch_floor": round(words / (dispatch_ms / 1e3), 1),
            "phases": phases,
            # where most rows are in it, the class layer's gradient is nearly the full softmax's in size:
            # zeroing, accumulating, clipping it and the SGD step over it cost about as much as there
            "word_rows_in_gradient": round(word_rows_per_update(config, vocabulary, stream, updates), 3)}


def where_the_time_goes(events, phase_ms: dict[str, float], top: int = 4) -> dict:
    """Each phase of an update in ms, as timed by the clock around it in the unprofiled updates, and the
    largest steps within it (the network's own autograd Functions, PyTorch operators, the backward's graph
    nodes): the profile's shares of the phase, scaled to that time. The profiler's own cost is per event,
    so it would inflate a phase of many small operators against one of few large ones: only the split
    within a phase is taken from it."""
    totals, parts = dict.fromkeys(PHASES, 0.0), {name: {} for name in PHASES}
    for event in events:
        if event.name not in totals:
            continue
        totals[event.name] += event.cpu_time_total
        for child in event.cpu_children:
            name = child.name.removeprefix("autograd::engine::evaluate_function: ")
            parts[event.name][name] = parts[event.name].get(name, 0.0) + child.cpu_time_total
    result = {}
    for name in PHASES:
        scale = phase_ms[name] / totals[name] if totals[name] else 0.0
        largest = sorted(parts[name].items(), key=lambda item: -item[1])[:top]
        result[name] = {"ms": round(phase_ms[name], 3), "largest": {step: round(time * scale, 3) for step, time in largest}}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every code path in seconds: for tests, not numbers")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    preset = {**dataclasses.asdict(Mikolov2010Config()), **PRESETS["ptb"]}
    parser.add_argument("--shapes", nargs="+", default=["1x10", f"{preset['batch_size']}x{preset['bptt']}", "32x20", "64x20"],
                        help="STREAMSxWORDS per update: 1x10 is the toolkit's per-word SGD with its BPTT block of 10; "
                             "the class layer's per-class overhead shrinks per word as the update grows")
    parser.add_argument("--hidden-size", type=int, default=preset["hidden_size"])
    wikitext = {**dataclasses.asdict(Mikolov2010Config()), **PRESETS["wikitext2"]}
    parser.add_argument("--wikitext-shapes", nargs="*", default=[f"{wikitext['batch_size']}x{wikitext['bptt']}", "32x20"],
                        help="STREAMSxWORDS for the WikiText-2-sized vocabulary (33,278 words, the wikitext2 "
                             "preset's classes); none: skip those rows")
    args = parser.parse_args(argv)
    # --quick: every code path once, not numbers
    seconds, rounds, warm_up = (0.2, 2, 1) if args.quick else (20.0, 5, 3)

    load_at_start = os.getloadavg()
    peak = matmul_peak_gflops(0.25 if args.quick else seconds / 2)
    rows, speedups = [], {}

    def measure(shape: str, stream_for, num_classes: int, key: str) -> str:
        batch_size, bptt = (int(part) for part in shape.split("x"))
        vocabulary, stream, data = stream_for(batch_size)
        for output_layer in ("classes", "full"):
            config = Mikolov2010Config(output_layer=output_layer, batch_size=batch_size, bptt=bptt,
                                       hidden_size=args.hidden_size, class_assignment=preset["class_assignment"],
                                       num_classes=num_classes)
            toolkit = {**dataclasses.asdict(Mikolov2010Config()), **PRESETS["toolkit"]}
            trains_at = toolkit if (batch_size, bptt) == (toolkit["batch_size"], toolkit["bptt"]) else preset
            rate, gflops = tokens_per_second(config, vocabulary, stream, seconds, rounds, warm_up,
                                             clip=trains_at["gradient_clip_val"])
            rows.append({"data": data, "vocabulary_size": len(vocabulary), "output_layer": output_layer,
                         "num_classes": num_classes if output_layer == "classes" else None,
                         "hidden_size": config.hidden_size, "batch_size": batch_size, "bptt": config.bptt,
                         "gradient_clip_val": trains_at["gradient_clip_val"],
                         "tokens_per_s": round(rate, 1), "gflops": round(gflops, 2),
                         "fraction_of_peak": round(gflops / peak, 3)})
        speedups[key] = round(rows[-2]["tokens_per_s"] / rows[-1]["tokens_per_s"], 2)
        return data

    for shape in args.shapes:
        data = measure(shape, training_stream, preset["num_classes"], shape)
    # --quick: the 33k path once, at the smallest shape (a full softmax over 33k words at 32x20 is 0.5 s a step)
    for shape in args.wikitext_shapes[:1] if args.quick else args.wikitext_shapes:
        measure(shape, lambda batch_size: zipf_stream(batch_size, WIKITEXT2_VOCABULARY), wikitext["num_classes"],
                f"{shape} at {WIKITEXT2_VOCABULARY} words")

    anatomies = {}
    for name in ("toolkit", "ptb"):  # the toolkit's one stream; the ptb preset's streams, which the suite trains with
        trained = {**dataclasses.asdict(Mikolov2010Config()), **PRESETS[name]}
        vocabulary, stream, _ = training_stream(trained["batch_size"])
        anatomies[name] = update_anatomy(Mikolov2010Config(**{key: trained[key] for key in (
            "output_layer", "batch_size", "bptt", "hidden_size", "class_assignment", "num_classes")}),
            vocabulary, stream, 5 if args.quick else 200, peak, trained["gradient_clip_val"])

    print(f"mikolov2010 training throughput on {data} ({cpu_model()}, {torch.get_num_threads()} threads); "
          f"fp32 matmul peak {peak:.1f} GFLOP/s; hidden {args.hidden_size}")
    print(f"{'data':<10}{'vocabulary':>11}{'output layer':>14}{'streams':>8}{'words':>6}{'tokens/s':>12}"
          f"{'GFLOP/s':>10}{'of peak':>10}")
    for row in rows:
        layer = f"{row['num_classes']} classes" if row["output_layer"] == "classes" else "full"
        print(f"{row['data']:<10}{row['vocabulary_size']:>11,}{layer:>14}{row['batch_size']:>8}{row['bptt']:>6}"
              f"{row['tokens_per_s']:>12.0f}{row['gflops']:>10.1f}{row['fraction_of_peak']:>10.1%}")
    for shape, speedup in speedups.items():
        print(f"class-based speed-up over the full softmax at {shape} (streams x words): {speedup:.1f}x "
              f"(target at the ptb preset's {preset['batch_size']}x{preset['bptt']}: at least 5x)")

    for name, a in anatomies.items():
        print(f"anatomy of the {name} preset's update ({a['streams']} stream(s) x {a['words_per_update'] // a['streams']} "
              f"words): "
              f"{a['ms_per_update']:.2f} ms. The arithmetic at the matmul peak: {a['arithmetic_ms_at_peak']:.3f} ms. "
              f"{a['operators_per_update']:.0f} operators ({a['operators_per_word']:.1f} a word) at this machine's "
              f"{a['dispatch_floor_us_per_operator']:.1f} us floor each: {a['dispatch_floor_ms_per_update']:.2f} ms (with "
              f"these operators no kernel passes {a['tokens_per_s_at_dispatch_floor']:.0f} tokens/s). The rest, "
              f"{a['other_ms_per_update']:.2f} ms: the operators' work beyond that floor, and Python and autograd")
        print(f"    the classes of an update's targets hold {a['word_rows_in_gradient']:.0%} of the word layer's rows "
              f"(the rows of its row-sparse gradient)")
        for phase, part in a["phases"].items():
            largest = ", ".join(f"{name} {ms:.2f}" for name, ms in part["largest"].items())
            print(f"    {phase:<9} {part['ms']:6.2f} ms" + (f"   of which: {largest}" if largest else ""))

    result = {"benchmark": "mikolov2010-training-throughput", "data": data, "quick": args.quick,
              "update_anatomy": anatomies,
              "matmul_peak_gflops": round(peak, 1), "rows": rows, "class_speedup_by_shape": speedups,
              "cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "python": platform.python_version(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
              # 1, 5 and 15-minute load averages at the start and the end: other jobs on the cores slow every row
              "load_average": {"start": [round(x, 2) for x in load_at_start], "end": [round(x, 2) for x in os.getloadavg()]}}
    path = args.out / "mikolov2010.json"
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
