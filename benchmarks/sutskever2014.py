"""Throughput of the seq2seq LSTM: training tokens/s and beam-12 decoding sentences/s, with GFLOP/s.

    python -m repro bench sutskever2014 [--quick]      (or: python -m benchmarks.sutskever2014)

Measured on random sentences of a fixed length (the cost depends on the sizes, not on the words):
the ``cpu`` preset's network at Multi30k's sizes (vocabularies of 5923 English / 6484 French
words with min_count 2 and lowercasing, 13 source and 14 target words per sentence), and, outside
``--quick``, the paper's network (4 x 1000, vocabularies 160k / 80k) at WMT'14's length of about 30
words. Achieved GFLOP/s count the network's multiply-adds (2 FLOPs each; backward = 2x forward):
per source word the encoder's 4 gate matrices per layer, per target word the decoder's plus the
softmax layer. Decoding runs the suite's beam search (beam 12, as published) for a fixed number of
steps; its top-k bookkeeping is not counted as FLOPs. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from papers.sutskever2014 import PRESETS, Seq2SeqLSTM, Sutskever2014Config
from repro.config import resolve_config
from repro.decoding.beam_search import beam_search
from repro.files import write_atomic
from repro.training.hardware import cpu_model, matmul_peak_gflops

MULTI30K = {"source_vocabulary": 5923, "target_vocabulary": 6484, "source_length": 13, "target_length": 14}
WMT14 = {"source_vocabulary": 160004, "target_vocabulary": 80004, "source_length": 30, "target_length": 32}


def lstm_multiply_adds(config: Sutskever2014Config) -> int:
    """Per word and per LSTM: 4 gates of (input + hidden) x hidden in each layer."""
    first = 4 * config.hidden_size * (config.embedding_size + config.hidden_size)
    rest = 4 * config.hidden_size * 2 * config.hidden_size * (config.num_layers - 1)
    return first + rest


def network(config: Sutskever2014Config, sizes: dict) -> Seq2SeqLSTM:
    torch.manual_seed(0)
    return Seq2SeqLSTM(sizes["source_vocabulary"], sizes["target_vocabulary"], config.embedding_size,
                       config.hidden_size, config.num_layers, config.dropout, config.init_range)


def training_throughput(config: Sutskever2014Config, sizes: dict, batch_size: int, seconds: float,
                        max_steps: int) -> dict:
    model = network(config, sizes).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    source = torch.randint(4, sizes["source_vocabulary"], (batch_size, sizes["source_length"]))
    target = torch.randint(4, sizes["target_vocabulary"], (batch_size, sizes["target_length"] + 1))
    lengths = torch.full((batch_size,), sizes["source_length"])
    per_sentence = (sizes["source_length"] * lstm_multiply_adds(config)
                    + (sizes["target_length"] + 1) * (lstm_multiply_adds(config)
                                                      + config.hidden_size * sizes["target_vocabulary"]))
    steps, start = 0, None
    while start is None or (time.perf_counter() - start < seconds and steps < max_steps):
        logits = model(source, lengths, target[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), target[:, 1:].flatten(), reduction="sum") / batch_size
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if start is None:  # the first step (allocation, kernel choice) is not timed
            start = time.perf_counter()
        else:
            steps += 1
    elapsed = time.perf_counter() - start
    tokens = steps * batch_size * (sizes["source_length"] + sizes["target_length"] + 1)
    return {"tokens_per_s": round(tokens / elapsed, 1), "gflops": round(3 * 2 * per_sentence * steps * batch_size
                                                                        / elapsed / 1e9, 2), "steps": steps}


@torch.no_grad()
def decoding_throughput(config: Sutskever2014Config, sizes: dict, batch_size: int, beam_size: int,
                        seconds: float) -> dict:
    model = network(config, sizes).eval()
    source = torch.randint(4, sizes["source_vocabulary"], (batch_size, sizes["source_length"]))
    lengths = torch.full((batch_size,), sizes["source_length"])
    decode_steps = sizes["target_length"] + 1

    def step(last_tokens, state):
        h, c = (t.transpose(0, 1).contiguous() for t in state)
        logits, (h, c) = model.decode(last_tokens.unsqueeze(1), (h, c))
        logits = logits[:, 0]
        logits[:, 2] = -torch.inf  # no </s> (index 2): every sentence runs the same number of steps
        return F.log_softmax(logits, -1), (h.transpose(0, 1), c.transpose(0, 1))

    sentences, start = 0, time.perf_counter()
    while sentences == 0 or time.perf_counter() - start < seconds:
        state = tuple(t.transpose(0, 1).contiguous() for t in model.encode(source, lengths))
        beam_search(step, state, batch_size, bos=1, eos=2, beam_size=beam_size, max_length=decode_steps)
        sentences += batch_size
    elapsed = time.perf_counter() - start
    per_sentence = (sizes["source_length"] * lstm_multiply_adds(config) + beam_size * decode_steps
                    * (lstm_multiply_adds(config) + config.hidden_size * sizes["target_vocabulary"]))
    return {"sentences_per_s": round(sentences / elapsed, 2), "gflops": round(2 * per_sentence * sentences
                                                                              / elapsed / 1e9, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="cpu preset only, short timings: every code path in seconds")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args(argv)
    seconds = 0.5 if args.quick else 20.0
    peak = matmul_peak_gflops(seconds / 2)
    setups = [("cpu", MULTI30K, resolve_config(Sutskever2014Config, PRESETS, "cpu").batch_size, 64)]
    if not args.quick:  # one training step of the paper's network takes seconds on a CPU
        setups.append(("paper", WMT14, 32, 8))
    rows = []
    for preset, sizes, batch_size, decode_batch in setups:
        config = resolve_config(Sutskever2014Config, PRESETS, preset)
        train = training_throughput(config, sizes, batch_size, seconds, max_steps=1000 if preset == "cpu" else 3)
        decode = decoding_throughput(config, sizes, decode_batch, 12, seconds)
        rows.append({"preset": preset, "layers": config.num_layers, "hidden": config.hidden_size,
                     "vocabularies": f"{sizes['source_vocabulary']}/{sizes['target_vocabulary']}",
                     "train_batch": batch_size, "train_tokens_per_s": train["tokens_per_s"],
                     "train_gflops": train["gflops"], "decode_batch": decode_batch, "beam_size": 12,
                     "decode_sentences_per_s": decode["sentences_per_s"], "decode_gflops": decode["gflops"]})

    print(f"sutskever2014 throughput ({cpu_model()}, {torch.get_num_threads()} threads); fp32 matmul peak "
          f"{peak:.1f} GFLOP/s")
    print(f"{'preset':<8}{'network':>10}{'vocab':>16}{'train tok/s':>13}{'GFLOP/s':>9}{'beam-12 sent/s':>16}{'GFLOP/s':>9}")
    for row in rows:
        print(f"{row['preset']:<8}{str(row['layers']) + 'x' + str(row['hidden']):>10}{row['vocabularies']:>16}"
              f"{row['train_tokens_per_s']:>13.0f}{row['train_gflops']:>9.1f}{row['decode_sentences_per_s']:>16.1f}"
              f"{row['decode_gflops']:>9.1f}")
    result = {"benchmark": "sutskever2014-throughput", "quick": args.quick, "matmul_peak_gflops": round(peak, 1),
              "rows": rows, "cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "python": platform.python_version(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = args.out / "sutskever2014.json"
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
