"""sutskever2014: the published config, the network, decoding, and the CLI end to end on the sample."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import shared_cache_dir

from papers.sutskever2014 import PRESETS, Seq2SeqLSTM, Sutskever2014, Sutskever2014Config, learning_rate_factor
from repro.config import config_to_dict, resolve_config
from repro.translation.scoring import bucket_names, score_translations
from repro.vocabulary import Vocabulary


def repro(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env, "OMP_NUM_THREADS": "1"})


def in_process(monkeypatch, capsys, *args: str, env: dict) -> tuple[int, str, str]:
    """``python -m repro ARGS`` run in this process (no second start of torch): exit code, stdout, stderr."""
    from repro.app.cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run through the CLI, shared below: (environment, results root, record)."""
    root = tmp_path_factory.mktemp("s2s")
    env = {"REPRO_CACHE": str(shared_cache_dir()), "REPRO_DATA": str(root / "data")}
    result = repro("run", "sutskever2014", "--preset", "smoke", "--no-progress", "--accelerator", "cpu",
                   "--devices", "1", "--out", str(root / "out"), "--results", str(root / "results"), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    records = list((root / "results" / "runs").glob("*.json"))
    assert len(records) == 1
    return env, root, json.loads(records[0].read_text())


def test_paper_preset_is_the_published_setup():
    config = resolve_config(Sutskever2014Config, PRESETS, "paper")
    assert (config.num_layers, config.hidden_size, config.embedding_size) == (4, 1000, 1000)
    assert (config.source_vocabulary_size, config.target_vocabulary_size) == (160000, 80000)
    assert (config.init_range, config.optimizer, config.learning_rate, config.batch_size) == (0.08, "sgd", 0.7, 128)
    assert (config.training_epochs, config.gradient_clip_val, config.gradient_clip_algorithm) == (7.5, 5.0, "norm")
    assert config.reverse_source and config.beam_size == 12
    forward = resolve_config(Sutskever2014Config, PRESETS, "paper-forward")
    assert not forward.reverse_source


def test_forward_ablations_differ_only_in_reverse_source():
    for reversed_name, forward_name in (("paper", "paper-forward"), ("cpu", "cpu-forward")):
        reversed_config = config_to_dict(resolve_config(Sutskever2014Config, PRESETS, reversed_name))
        forward_config = config_to_dict(resolve_config(Sutskever2014Config, PRESETS, forward_name))
        assert {k for k in reversed_config if reversed_config[k] != forward_config[k]} == {"reverse_source"}


def test_rate_is_halved_every_half_epoch_after_five_epochs():
    config = Sutskever2014Config()
    factors = [learning_rate_factor(e, config) for e in (0.0, 4.99, 5.0, 5.49, 5.5, 6.0, 7.4)]
    assert factors == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125, 0.5 ** 5]


def test_decoder_starts_from_the_encoders_final_states_ignoring_padding():
    torch.manual_seed(0)
    network = Seq2SeqLSTM(11, 9, 6, 5, 2, 0.0, 0.08).eval()
    sentence = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10]])
    alone = network.encode(sentence, torch.tensor([3]))
    together = network.encode(padded, torch.tensor([3, 5]))
    for a, b in zip(alone, together):
        assert a.shape == (2, 1, 5) and torch.allclose(a[:, 0], b[:, 0], atol=1e-6)
    assert all(p.abs().max() <= 0.08 for p in network.parameters())  # Sec. 3.4 initialisation


def _tiny_module(**overrides) -> Sutskever2014:
    words = ["<pad>", "<s>", "</s>", "<unk>", "a", "b", "c", "d"]
    vocabulary = Vocabulary(words, [0] * len(words), "<unk>").to_dict()
    config = Sutskever2014Config(num_layers=1, hidden_size=8, embedding_size=4, **overrides)
    torch.manual_seed(1)
    return Sutskever2014(config_to_dict(config), vocabulary, vocabulary).eval()


def test_beam_size_one_is_greedy_decoding():
    module = _tiny_module()
    source = torch.tensor([[4, 5, 6, 7], [5, 5, 4, 0]])
    lengths = torch.tensor([4, 3])
    with torch.no_grad():
        state = module.encode_sources(source, lengths)
        beam = module.search(state, 2, 4, module.step_function(), beam_size=1)
        step, current = module.step_function(), state
        tokens, greedy = torch.full((2,), module.bos), [[], []]
        finished = [False, False]
        for _ in range(2 * 4 + 10):
            log_probs, current = step(tokens, current)
            tokens = log_probs.argmax(-1)
            for row in range(2):
                if not finished[row]:
                    if tokens[row] == module.eos:
                        finished[row] = True
                    else:
                        greedy[row].append(module.target_vocabulary.words[tokens[row]])
    assert beam == greedy


def test_bleu_by_source_length_buckets():
    assert [name for _, _, name in bucket_names((7, 10))] == ["1-7", "8-10", "11+"]
    items = [(["le", "chat", "dort", "."], "le chat dort .", "le chat dort.", 4),
             (["un", "chien", "."], "le chien noir court .", "le chien noir court.", 12)]
    metrics = score_translations(items, "fr", (7, 10))["metrics"]
    assert metrics["test/bleu_len_1-7"] == pytest.approx(100.0)
    assert metrics["test/bleu_len_11+"] == 0.0 and "test/bleu_len_8-10" not in metrics
    assert metrics["test/sentences_len_1-7"] == 1.0
    assert 0 < metrics["test/bleu"] < 100 and 0 < metrics["test/sacrebleu"] < 100


def test_a_lowercasing_config_scores_case_insensitively_under_its_own_names():
    config = resolve_config(Sutskever2014Config, PRESETS, "cpu")
    assert config.lowercase and resolve_config(Sutskever2014Config, PRESETS, "sample").lowercase
    assert not resolve_config(Sutskever2014Config, PRESETS, "paper").lowercase
    # a lowercased run's references are lowercased too (datamodules.translation.parallel_text), its hypotheses are
    items = [(["le", "chat", "dort", "."], "le chat dort .", "le chat dort.", 4),
             (["un", "chien", "noir", "court", "."], "un chien noir court .", "un chien noir court.", 5)]
    scores = score_translations(items, "fr", (7, 10), config.lowercase)
    assert set(scores["metrics"]) == {"test/bleu_lc", "test/sacrebleu_lc", "test/bleu_lc_len_1-7", "test/sentences_len_1-7"}
    assert scores["signatures"]["test/sacrebleu_lc"].startswith("BLEU|nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:")
    assert scores["signatures"]["test/bleu_lc"].startswith("BLEU|nrefs:1|case:lc|eff:no|tok:none|smooth:none|version:")
    cased = score_translations(items, "fr", (7, 10))
    assert "case:mixed" in cased["signatures"]["test/sacrebleu"] and "test/sacrebleu_lc" not in cased["metrics"]
    from repro.registry import get_paper

    columns = get_paper("sutskever2014").metrics  # the table shows each kind in its own column
    assert {"test/bleu", "test/sacrebleu", "test/bleu_lc", "test/sacrebleu_lc"} <= set(columns)


def test_smoke_run_through_the_cli_writes_a_record(smoke_run):
    _, _, record = smoke_run
    assert record["paper"] == "sutskever2014" and record["dataset"] == "translation-sample"
    metrics = record["metrics"]
    for key in ("test/bleu", "test/sacrebleu", "test/ppl", "best_val/ppl"):
        assert key in metrics
    assert any(key.startswith("test/bleu_len_") for key in metrics)
    assert 1.0 < metrics["test/ppl"] < 60  # learned something: 53 target words, so uniform is ~53
    assert record["config"]["reverse_source"] is True
    scores = json.loads((Path(record["run_dir"]) / "test_scores.json").read_text())
    assert scores["metrics"]["test/sacrebleu"] == pytest.approx(metrics["test/sacrebleu"])
    assert scores["signatures"]["test/sacrebleu"].startswith("BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|")
    assert record["scoring"]["signatures"] == scores["signatures"]  # the record says how it was scored


def test_translate_cli_on_the_smoke_checkpoint(smoke_run, tmp_path, monkeypatch, capsys):
    env, root, record = smoke_run
    checkpoint = record["best_checkpoint"]
    single = repro("translate", "--ckpt", checkpoint, "--beam-size", "1", "the big cat sees a dog .", "a car .", env=env)
    assert single.returncode == 0, single.stderr[-2000:]
    lines = single.stdout.strip().splitlines()
    assert len(lines) == 2
    inputs = tmp_path / "in.txt"
    inputs.write_text("the big cat sees a dog .\na car .\n", encoding="utf-8")
    code, out, err = in_process(monkeypatch, capsys, "translate", "--ckpt", checkpoint, "--ckpt", checkpoint,
                                "--beam-size", "1", "--input", str(inputs), env=env)
    assert code == 0, err[-2000:]
    assert out.strip().splitlines() == lines  # an ensemble of one model twice is that model
    code, out, err = in_process(monkeypatch, capsys, "translate", "--ckpt", checkpoint, "--input",
                                str(tmp_path / "missing.txt"), env=env)
    assert code == 2 and "error: --input" in err and "Traceback" not in err


def test_translate_warns_of_a_sentence_without_a_known_source_word(smoke_run, monkeypatch, capsys):
    env, root, record = smoke_run
    code, out, err = in_process(monkeypatch, capsys, "translate", "--ckpt", record["best_checkpoint"], "--beam-size",
                                "1", "the big cat sees a dog .", "qwzx vvjk", "a car .", env=env)
    assert code == 0, err[-2000:]
    assert len(out.strip("\n").splitlines()) == 3  # still one line per input
    warnings = [line for line in err.splitlines() if line.startswith("warning: input sentence")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: input sentence 2 has no word in the model's "
                                                         "source vocabulary"), err[-2000:]


@pytest.mark.filterwarnings("ignore:No artists with labels")  # errorbar is replaced by a recorder
def test_length_figure_averages_the_seeds_of_the_newest_configuration(tmp_path, monkeypatch):
    """Fig. 3 per dataset: one line per (preset, order), the mean over the seeds of the newest config
    with sd error bars; an older config of the same preset is not mixed into it."""
    from repro.app.figures import length_figures
    from repro.registry import get_paper

    drawn = {}

    def errorbar(self, labels, means, yerr=None, **kwargs):
        drawn[kwargs["label"]] = (list(labels), list(means), yerr)

    monkeypatch.setattr("matplotlib.axes.Axes.errorbar", errorbar)
    edges = list(Sutskever2014Config().length_bucket_edges)
    first = bucket_names(tuple(edges))[0][2]

    def record(preset, reverse, seed, bleu, max_epochs=8):
        return {"dataset": "multi30k", "preset": preset,
                "config": {"reverse_source": reverse, "seed": seed, "lowercase": True, "max_epochs": max_epochs,
                           "length_bucket_edges": edges},
                "metrics": {"test/bleu_lc": bleu, f"test/bleu_lc_len_{first}": bleu + 5,
                            f"test/sentences_len_{first}": 36.0}}

    records = [record("cpu", True, 1, 99.0, max_epochs=30),  # an older config: superseded, not averaged
               record("cpu", True, 1, 17.0), record("cpu", True, 2, 18.0), record("cpu", True, 3, 19.0),
               record("cpu-forward", False, 1, 14.0)]
    written = length_figures(get_paper("sutskever2014"), records, tmp_path)
    assert [path.name for _, path in written] == ["sutskever2014_length_multi30k.png"]
    assert "mean ± sd over seeds" in written[0][0] and written[0][1].is_file()
    reversed_line = drawn["reversed source, preset cpu (BLEU 18.0 ± 1.0, 3 seeds, lowercased)"]
    assert reversed_line[1] == [pytest.approx(23.0)] and reversed_line[2] == [pytest.approx(1.0)]
    assert drawn["forward source, preset cpu-forward (BLEU 14.0, lowercased)"][1:] == ([19.0], None)


def test_the_record_can_be_rescored_from_its_predictions(smoke_run, monkeypatch, capsys):
    env, root, record = smoke_run
    [path] = (root / "results" / "runs").glob("*.json")
    code, out, err = in_process(monkeypatch, capsys, "rescore", str(path), env=env)
    assert code == 0, out + err
    assert "test/sacrebleu" in out and "all equal at float32 precision" in out
