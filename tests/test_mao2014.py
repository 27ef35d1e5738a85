"""m-RNN: each layer's equation by hand, teacher forcing against step-by-step decoding, Eq. 6, and the
presets end to end through the command line."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import score_without_java, shared_cache_dir

from papers.mao2014 import PRESETS, Mao2014, Mao2014Config, MultimodalRNN, ScaledTanh
from repro.app.cli import main
from repro.captioning.module import CaptionBatch, Visual
from repro.config import config_to_dict, resolve_config

SMOKE = ["--preset", "smoke", "--no-progress", "--accelerator", "cpu", "--devices", "1"]
VOCABULARY = {"words": ["<pad>", "<start>", "<end>", "<unk>", "a", "b"], "counts": [0, 0, 0, 0, 3, 3],
              "unknown": "<unk>"}


def small_network(activation="relu", dropout=0.0) -> MultimodalRNN:
    torch.manual_seed(0)
    return MultimodalRNN(feature_dim=6, vocabulary_size=9, embedding_1_size=3, embedding_2_size=4, multimodal_size=5,
                         embedding_activation=activation, dropout=dropout).eval()


def test_scaled_tanh_is_lecuns_function():
    g = ScaledTanh()
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0])
    assert torch.allclose(g(x), 1.7159 * torch.tanh(2 * x / 3))
    assert torch.allclose(g(torch.tensor([1.0, -1.0])), torch.tensor([1.0, -1.0]), atol=1e-4)  # g(+-1) = +-1


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_each_layer_follows_its_equation(activation):
    network = small_network(activation)
    features, captions = torch.randn(2, 6), torch.tensor([[1, 4, 5, 2], [1, 6, 2, 0]])
    logits = network(features, captions)
    assert logits.shape == (2, 4, 9)
    n = network
    nonlinearity = torch.relu if activation == "relu" else (lambda x: x)
    r = torch.zeros(2, 4)  # r(0)
    image = features @ n.multimodal_image.weight.T  # V_I I, the same at every step
    state = n.start(features)
    for t in range(captions.shape[1]):
        e1 = n.embedding_1.weight[captions[:, t]]  # layer I: a row of the embedding table, 3 units
        w = nonlinearity(e1 @ n.embedding_2.weight.T + n.embedding_2.bias)  # layer II, w(t), 4 units
        r = torch.relu(r @ n.recurrent.weight.T + n.recurrent.bias + w)  # Eq. 2: w(t) is added, no input matrix
        m = 1.7159 * torch.tanh(2 / 3 * (w @ n.multimodal_word.weight.T + n.multimodal_word.bias
                                         + r @ n.multimodal_recurrent.weight.T + image))  # Eq. 3-4
        y = m @ n.softmax_layer.weight.T + n.softmax_layer.bias
        assert torch.allclose(logits[:, t], y, atol=1e-5)
        # the step function (what the beam search calls) gives the same r(t) and distribution
        log_probs, state = n.step(captions[:, t], state)
        assert torch.allclose(state[0], r, atol=1e-6) and torch.allclose(log_probs, F.log_softmax(y, dim=-1), atol=1e-5)
    assert (r >= 0).all()  # ReLU recurrent layer


def test_teacher_forcing_equals_step_by_step_decoding_and_the_image_enters_every_step():
    network = small_network(dropout=0.5)  # eval(): dropout off in both paths
    features = torch.randn(3, 6)
    captions = torch.tensor([[1, 4, 7, 5, 2], [1, 6, 2, 0, 0], [1, 8, 8, 8, 4]])
    logits = network(features, captions)
    state = network.start(features)
    for t in range(captions.shape[1]):
        log_probs, state = network.step(captions[:, t], state)
        assert torch.allclose(log_probs, F.log_softmax(logits[:, t], dim=-1), atol=1e-5)
    # the image reaches the multimodal layer directly at every step, not through the recurrent layer
    other = network(features + 1.0, captions)
    assert not torch.allclose(other[:, -1], logits[:, -1])
    with torch.no_grad():
        network.multimodal_image.weight.zero_()
    assert torch.allclose(network(features, captions), network(features + 1.0, captions))


def test_loss_is_eq6_bits_per_word_plus_l2():
    config = config_to_dict(Mao2014Config(embedding_1_size=3, embedding_2_size=4, multimodal_size=5, l2_weight=0.01))
    module = Mao2014(config, VOCABULARY, visual_dim=3)
    module.log = lambda *args, **kwargs: None  # outside a Trainer
    features = torch.randn(2, 3)
    captions = torch.tensor([[1, 4, 5, 2], [1, 4, 2, 0]])
    batch = CaptionBatch(["x", "y"], torch.tensor([0, 1]), Visual("pooled", features), captions, torch.tensor([0, 1]))
    loss = module.training_step(batch, 0)
    log_probs = F.log_softmax(module.network(features, captions[:, :-1]), dim=-1)
    # 5 scored tokens: a b <end> and a <end>; padding is not a word
    nats = -(log_probs[0, 0, 4] + log_probs[0, 1, 5] + log_probs[0, 2, 2] + log_probs[1, 0, 4] + log_probs[1, 1, 2])
    squares = sum((p ** 2).sum() for p in module.network.parameters())
    assert torch.allclose(loss, nats / 5 / math.log(2) + 0.01 * squares, atol=1e-5)
    # the gradient of the L2 term is 2 lambda theta (what SGD weight decay 2 lambda would add)
    module.zero_grad()
    (0.01 * module.l2_penalty()).backward()
    weight = module.network.softmax_layer.weight
    assert torch.allclose(weight.grad, 0.02 * weight, atol=1e-7)


def test_paper_preset_is_the_papers_configuration():
    config = resolve_config(Mao2014Config, PRESETS, "paper")
    assert (config.embedding_1_size, config.embedding_2_size, config.multimodal_size) == (128, 256, 512)
    assert config.encoder == "vgg16" and not config.fine_tune_encoder and Mao2014Config.visual_features == "pooled"
    assert config.beam_size == 1 and config.validation_beam_size == 1 and config.dropout == 0.0
    assert math.isclose(config.learning_rate, math.log(2))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One cache (the embedded sample, its features) for every run of this file."""
    return tmp_path_factory.mktemp("mao")


def run_cli(root, results, *arguments) -> dict:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(shared_cache_dir()))
        patch.setenv("REPRO_DATA", str(root / "data"))
        patch.delenv("REPRO_RUN_ID", raising=False)
        score_without_java(patch)
        assert main(["run", "mao2014", *arguments, "--out", str(root / "out"), "--results", str(results)]) == 0
    [path] = (results / "runs").glob("*.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def smoke_run(root):
    return root, run_cli(root, root / "results", *SMOKE)


def test_smoke_run_records_the_model_beside_retrieval(smoke_run):
    root, record = smoke_run
    assert record["paper"] == "mao2014" and record["dataset"] == "shapes" and record["preset"] == "smoke"
    metrics = record["metrics"]
    for name in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider_d", "ppl"):
        assert f"test/{name}" in metrics and metrics[f"test/{name}"] == metrics[f"test/{name}"]
    assert metrics["test/ppl"] < 100  # far below the vocabulary size after two epochs on templated captions
    assert "test/cider_d@nearest-neighbour" in metrics and "best_val/bleu_4" in metrics
    assert any("train/ppl_epoch" in h for h in record["history"]) and any("val/bleu_4" in h for h in record["history"])
    example = record["examples"][0]
    assert example["generated"] and example["baselines"]["nearest-neighbour"]


def test_caption_command_and_table_row(smoke_run, capsys):
    from datamodules.captioning.shapes_sample import generate

    root, record = smoke_run
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(shared_cache_dir()))
        image = str(generate() / record["examples"][0]["media"])
        assert main(["caption", "--ckpt", record["best_checkpoint"], image]) == 0
        line = capsys.readouterr().out.splitlines()[0]
        assert line.startswith(f"{image}:") and len(line) > len(image) + 3
        assert main(["table", "--results", str(root / "results")]) == 0
    table = (root / "results" / "mao2014.md").read_text()
    assert "preset `smoke`" in table and "baseline: nearest-neighbour" in table
    # the published rows, each with its table, as the paper prints them
    assert "| published (Mao et al. 2015 (ICLR, arXiv:1412.6632), Sec. 7.4 (NOT checked: paper text not readable " \
           "here)) | m-RNN-AlexNet | flickr8k | 56.5 |" in table
    assert "| 24.39 |" in table
    assert "Table 7 (COCO test server, c5) (NOT checked: paper text not readable here)) | m-RNN-beam (test server) " \
           "| coco | 68 |" in table


@pytest.mark.parametrize("preset", ["sample", "cpu", "paper"])
def test_each_preset_resolves_and_builds(preset):
    config = resolve_config(Mao2014Config, PRESETS, preset)
    module = Mao2014(config_to_dict(config), VOCABULARY, visual_dim=7)
    features = torch.randn(2, 7)
    with torch.no_grad():
        captions = module.eval().generate(features, 2, config.beam_size)
    assert len(captions) == 2
    assert isinstance(module.configure_optimizers(), torch.optim.Optimizer)


@pytest.mark.slow
@pytest.mark.parametrize("preset, overrides", [
    # VGG-16 fc7 as published, no ImageNet weights offline; a batch the tiny fixture can fill (no batch is refused)
    ("paper", ["encoder_weights=random", "image_size=32", "batch_size=8"]),
    ("cpu", ["image_size=64", "batch_size=8"]),
])
def test_preset_runs_through_the_cli_to_a_record_and_a_table_row(root, preset, overrides):
    """Each real-data preset through the CLI on the small Flickr8k fixture in its official format."""
    from test_captions import write_flickr8k

    if not (root / "data" / "flickr8k_text").is_dir():
        write_flickr8k(root / "data")
    results = root / f"results-{preset}"
    settings = [argument for override in overrides for argument in ("--set", override)]
    record = run_cli(root, results, "--preset", preset, "--data", "flickr8k", *settings, "--max-epochs", "1",
                     "--no-progress", "--accelerator", "cpu", "--devices", "1")
    assert record["dataset"] == "flickr8k" and record["data_source"] == "real"
    assert record["preset"] == preset and record["metrics"]["test/ppl"] == record["metrics"]["test/ppl"]
    assert record["config"]["beam_size"] == 1  # greedy, as Sec. 5 generates
    assert main(["table", "--results", str(results)]) == 0
    assert f"preset `{preset}`" in (results / "mao2014.md").read_text()


def test_fine_tuning_trains_the_encoder_outside_the_l2_term(tmp_path):
    from test_captions import datamodule, write_flickr8k

    data = datamodule(write_flickr8k(tmp_path), fine_tune_encoder=True)
    config = Mao2014Config(encoder="efficientnet-lite0", encoder_weights="random", image_size=32,
                           fine_tune_encoder=True, embedding_1_size=4, embedding_2_size=6, multimodal_size=8)
    module = Mao2014(config_to_dict(config), data.vocabulary.to_dict(), visual_dim=data.visual_dim)
    module.log = lambda *args, **kwargs: None
    batch = next(iter(data.train_dataloader()))
    assert batch.visual.kind == "images"
    module.training_step(batch, 0).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.encoder.parameters())
    assert len(module.configure_optimizers().param_groups) == 2
