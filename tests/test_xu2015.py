"""Show, Attend and Tell: each layer against its equation, teacher forcing against decoding, the hard
attention's sampling and variance reductions, the attention-in-box measure, and both presets end to end."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import score_without_java, shared_cache_dir

from papers.xu2015 import (
    HardAttentionDraws,
    ShowAttendTellNetwork,
    Xu2015,
    Xu2015Config,
    attention_entropy,
    doubly_stochastic_penalty,
    hard_attention_draws,
    location_log_probability,
    reinforce_surrogate,
    sample_locations,
)
from repro.app.cli import main
from repro.captioning.attention_in_box import attention_in_boxes, box_cell_fractions
from repro.captioning.module import CaptionBatch, Visual
from repro.config import config_to_dict

SMOKE = ["--preset", "smoke", "--no-progress", "--accelerator", "cpu", "--devices", "1"]
VOCABULARY = {"words": ["<pad>", "<start>", "<end>", "<unk>", "a", "red", "blue", "circle", "square"],
              "counts": [0, 0, 0, 0, 9, 3, 3, 3, 3], "unknown": "<unk>"}


def network(**options) -> ShowAttendTellNetwork:
    torch.manual_seed(0)
    sizes = {"annotation_size": 6, "vocabulary_size": 9, "embedding_size": 5, "hidden_size": 7, "attention_size": 4,
             "dropout": 0.0, **options}
    return ShowAttendTellNetwork(**sizes).eval()


def module(**config) -> Xu2015:
    torch.manual_seed(0)
    values = config_to_dict(Xu2015Config(embedding_size=8, hidden_size=8, attention_size=8, dropout=0.0,
                                         encoder="efficientnet-lite0", **config))
    return Xu2015(values, VOCABULARY, visual_dim=6)


def batch(captions, owner, features, positions=None, annotations=None) -> CaptionBatch:
    captions = torch.tensor(captions)
    return CaptionBatch([f"image{i}" for i in range(len(features))],
                        torch.arange(len(features)) if positions is None else positions,
                        Visual("spatial", features, grid=(2, 2)), captions, torch.tensor(owner),
                        references=[["a red circle"]] * len(features), media=["x.jpg"] * len(features),
                        annotations=annotations)


# --- each layer, by hand ---------------------------------------------------------------------------------

def test_initial_state_is_the_mean_annotation_through_two_mlps():
    net = network()
    annotations = torch.randn(2, 4, 6)
    state = net.start(annotations)
    mean = annotations.mean(dim=1)
    for layers, value in ((net.init_h, state.h), (net.init_c, state.c)):
        first, _, second, _ = layers
        expected = torch.tanh(second.weight @ torch.relu(first.weight @ mean.T + first.bias[:, None]) + second.bias[:, None]).T
        assert torch.allclose(value, expected, atol=1e-6)
    assert state.h.shape == (2, 7) and not torch.allclose(state.h, state.c)
    assert torch.allclose(state.projected, annotations @ net.attention_annotation.weight.T + net.attention_annotation.bias)


def test_attention_gate_lstm_and_deep_output_follow_the_equations():
    net = network()
    annotations = torch.randn(2, 4, 6)
    state = net.start(annotations)._replace(h=torch.randn(2, 7), c=torch.randn(2, 7))
    log_alpha, beta = net.attend(state)
    # Eq. 4: e_ti = w^T tanh(W_a a_i + b + W_h h_{t-1}) + c; Eq. 5: alpha = softmax_i(e)
    hidden = torch.tanh(annotations @ net.attention_annotation.weight.T + net.attention_annotation.bias
                        + (state.h @ net.attention_hidden.weight.T).unsqueeze(1))
    e = (hidden @ net.attention_score.weight.T).squeeze(-1) + net.attention_score.bias
    alpha = torch.exp(e) / torch.exp(e).sum(dim=1, keepdim=True)
    assert log_alpha.shape == (2, 4) and torch.allclose(log_alpha.exp(), alpha, atol=1e-6)
    # Sec. 4.2.1: beta_t = sigmoid(f_beta(h_{t-1})), a scalar per row
    assert beta.shape == (2, 1) and torch.allclose(beta, torch.sigmoid(state.h @ net.gate.weight.T + net.gate.bias))
    words = torch.tensor([4, 6])
    logits, new_state, context = net.read(net.embedding(words), state, alpha, beta)
    # the soft context: z_t = beta_t sum_i alpha_ti a_i
    z = beta * (alpha.unsqueeze(-1) * annotations).sum(dim=1)
    assert context.shape == (2, 6) and torch.allclose(context, z, atol=1e-6)
    # Eq. 1-3: gates from T(E y_{t-1}, h_{t-1}, z_t), then c_t and h_t
    x = torch.cat([net.embedding(words), z], dim=1)
    gates = x @ net.lstm.weight_ih.T + net.lstm.bias_ih + state.h @ net.lstm.weight_hh.T + net.lstm.bias_hh
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    assert torch.allclose(new_state.c, c, atol=1e-6) and torch.allclose(new_state.h, h, atol=1e-6)
    # Eq. 7, the deep output layer: L_o tanh(E y_{t-1} + L_h h_t + L_z z_t)
    deep = torch.tanh(net.embedding(words) + h @ net.output_hidden.weight.T + net.output_hidden.bias
                      + z @ net.output_context.weight.T)
    assert logits.shape == (2, 9) and torch.allclose(logits, deep @ net.output.weight.T + net.output.bias, atol=1e-6)


def test_soft_attention_weights_sum_to_one_at_every_step():
    net = network()
    output = net(torch.randn(3, 4, 6), torch.randint(3, 9, (3, 5)))
    assert output.log_alpha.shape == (3, 5, 4) and output.logits.shape == (3, 5, 9)
    assert torch.allclose(output.log_alpha.exp().sum(dim=-1), torch.ones(3, 5), atol=1e-6)
    assert (output.locations == -1).all() and output.beta.shape == (3, 5)


def test_hard_attention_reads_the_sampled_annotation_and_no_gate_without_one():
    net = network(gating_scalar=False)
    annotations = torch.randn(2, 4, 6)
    state = net.start(annotations)
    alpha = net.attend(state)[0].exp()
    _, _, context = net.read(net.embedding(torch.tensor([4, 5])), state, alpha, None, torch.tensor([2, -1]))
    assert torch.equal(context[0], annotations[0, 2])  # Eq. 9: z_t = a_{s_t}
    assert torch.allclose(context[1], alpha[1] @ annotations[1], atol=1e-6)  # -1: the expected context


@pytest.mark.parametrize("argmax", [False, True])
def test_teacher_forcing_equals_step_by_step_decoding(argmax):
    net = network(dropout=0.3).eval()  # dropout is off in eval, in both paths
    annotations, inputs = torch.randn(2, 4, 6), torch.tensor([[1, 4, 5, 7], [1, 6, 8, 2]])
    output = net(annotations, inputs, argmax=argmax)
    state = net.start(annotations)
    for t in range(inputs.shape[1]):
        log_probs, state = net.step(inputs[:, t], state, argmax=argmax)
        assert torch.allclose(log_probs, F.log_softmax(output.logits[:, t], dim=-1), atol=1e-6)


def test_doubly_stochastic_penalty_by_hand():
    alpha = torch.tensor([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]])  # one caption, 3 steps, 2 locations
    mask = torch.tensor([[True, True, False]])  # the third step is padding
    # sum over the 2 real steps: (1.4, 0.6); penalty (1 - 1.4)^2 + (1 - 0.6)^2 = 0.32
    assert doubly_stochastic_penalty(alpha, mask).item() == pytest.approx(0.32)
    assert doubly_stochastic_penalty(torch.full((1, 2, 2), 0.5), torch.ones(1, 2, dtype=torch.bool)).item() == 0


def test_the_loss_adds_lambda_times_the_penalty():
    soft = module(doubly_stochastic_lambda=2.0)
    features = torch.randn(2, 4, 6)
    b = batch([[1, 4, 5, 7, 2], [1, 4, 6, 2, 0]], [0, 1], features)
    loss = soft.training_step(b, 0)
    output = soft.teacher_forced(features, b)
    mask = b.captions[:, 1:] != 0
    expected = soft.caption_nll(output, b).mean() + 2.0 * doubly_stochastic_penalty(output.log_alpha.exp(), mask).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


# --- hard attention: sampling and the variance reductions -----------------------------------------------

def test_sampled_locations_follow_alpha():
    alpha = torch.tensor([[0.1, 0.6, 0.3]]).expand(20000, 3)
    locations = sample_locations(alpha, torch.rand(20000, generator=torch.Generator().manual_seed(0)))
    frequencies = torch.bincount(locations, minlength=3).float() / 20000
    assert torch.allclose(frequencies, alpha[0], atol=0.015)
    assert sample_locations(torch.tensor([[0.5, 0.5]]), torch.tensor([0.9999999])).item() == 1  # never past the end


def test_draws_depend_on_the_caption_and_step_not_on_its_batch():
    captions = torch.tensor([[1, 4, 5, 7, 2, 0, 0], [1, 6, 8, 2, 0, 0, 0], [1, 4, 4, 4, 4, 4, 2]])
    together = hard_attention_draws(7, 3, torch.tensor([0, 1, 2]), captions, 0, 0.5)
    alone = hard_attention_draws(7, 3, torch.tensor([1]), captions[1:2, :4], 0, 0.5)  # another batch, less padding
    assert together.uniforms.shape == (3, 6) and alone.uniforms.shape == (1, 3)
    assert torch.equal(together.uniforms[1, :3], alone.uniforms[0]) and together.sampled[1] == alone.sampled[0]
    assert not torch.equal(hard_attention_draws(7, 4, torch.tensor([0, 1, 2]), captions, 0, 0.5).uniforms, together.uniforms)
    assert not torch.equal(hard_attention_draws(8, 3, torch.tensor([0, 1, 2]), captions, 0, 0.5).uniforms, together.uniforms)


def test_with_probability_half_a_caption_reads_the_expected_context():
    captions = torch.randint(3, 9, (2000, 6))
    sampled = hard_attention_draws(0, 0, torch.arange(2000), captions, 0, 0.5).sampled
    assert abs(sampled.float().mean().item() - 0.5) < 0.04
    assert hard_attention_draws(0, 0, torch.arange(2000), captions, 0, 0.0).sampled.all()
    # and the network does so: an unsampled caption's steps read the expected context
    net = network(gating_scalar=False)
    draws = HardAttentionDraws(torch.tensor([True, False]), torch.rand(2, 3))
    output = net(torch.randn(2, 4, 6), torch.tensor([[1, 4, 5], [1, 6, 7]]), draws)
    assert (output.locations[0] >= 0).all() and (output.locations[1] == -1).all()


def test_reinforce_gradient_is_the_advantage_times_the_score_function():
    logits = torch.randn(2, 3, 4, requires_grad=True)
    log_alpha = F.log_softmax(logits, dim=-1)
    locations, mask = torch.tensor([[1, 0, 3], [2, 2, 0]]), torch.tensor([[True, True, True], [True, True, False]])
    log_p_s = location_log_probability(log_alpha, locations, mask)
    assert log_p_s[1].item() == pytest.approx((log_alpha[1, 0, 2] + log_alpha[1, 1, 2]).item())  # padding skipped
    log_likelihood, baseline = torch.tensor([-3.0, -9.0]), -5.0
    reinforce_surrogate(log_likelihood, log_p_s, baseline, torch.tensor([True, True])).sum().backward()
    expected = torch.autograd.grad(-((log_likelihood - baseline) * location_log_probability(
        F.log_softmax(logits, dim=-1), locations, mask)).sum(), logits)[0]
    assert torch.allclose(logits.grad, expected)
    # better than the baseline (caption 0): descending makes its sampled locations more likely
    assert logits.grad[0, 0, 1] < 0 and logits.grad[1, 0, 2] > 0
    # an unsampled caption (expected context) contributes nothing
    zero = reinforce_surrogate(log_likelihood, log_p_s.detach().requires_grad_(), baseline, torch.tensor([False, False]))
    assert torch.equal(zero, torch.zeros(2))


def test_entropy_term_by_hand_and_its_gradient_spreads_attention():
    logits = torch.tensor([[[2.0, 0.0, 0.0]]], requires_grad=True)
    log_alpha = F.log_softmax(logits, dim=-1)
    alpha = log_alpha.exp()
    entropy = attention_entropy(log_alpha, torch.ones(1, 1, dtype=torch.bool))
    assert entropy.item() == pytest.approx(-(alpha * alpha.log()).sum().item())
    (-entropy).sum().backward()  # the loss subtracts lambda_e H: descending raises the entropy
    assert logits.grad[0, 0, 0] > 0 and logits.grad[0, 0, 1] < 0


def hard_batch(seed=0, images=4):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(images, 4, 6, generator=generator)
    captions = [[1, 4, 5 + i % 2, 7 + i % 2, 2] for i in range(images)]
    return batch(captions, list(range(images)), features)


def test_moving_average_baseline_starts_at_the_first_batch_and_survives_a_checkpoint():
    hard = module(attention="hard", gating_scalar=False, doubly_stochastic_lambda=0.0, expected_context_probability=0.0)
    hard.train()
    b = hard_batch()
    assert not hard.reinforce_baseline_started
    first = hard_batch_log_likelihood(hard, b)
    hard.training_step(b, 0)
    assert hard.reinforce_baseline_started and hard.reinforce_baseline.item() == pytest.approx(first, rel=1e-5)
    second = hard_batch_log_likelihood(hard, b)
    hard.training_step(b, 1)
    assert hard.reinforce_baseline.item() == pytest.approx(0.9 * first + 0.1 * second, rel=1e-5)
    restored = module(attention="hard", gating_scalar=False, doubly_stochastic_lambda=0.0)
    restored.load_state_dict(hard.state_dict())
    assert restored.reinforce_baseline.item() == hard.reinforce_baseline.item() and restored.reinforce_baseline_started


def hard_batch_log_likelihood(hard: Xu2015, b: CaptionBatch) -> float:
    """The batch's mean log p(y | s, a) with the draws training_step will use (global step 0)."""
    draws = hard_attention_draws(hard.config.seed, 0, b.positions[b.caption_owner], b.captions, 0,
                                 hard.config.expected_context_probability)
    with torch.no_grad():
        return -hard.caption_nll(hard.teacher_forced(b.visual.features, b, draws), b).mean().item()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hard_attention_trains_without_nan(seed):
    """Three seeds, 60 Adam steps at a high rate on a toy task: finite throughout, and it learns."""
    hard = module(attention="hard", gating_scalar=False, doubly_stochastic_lambda=0.0, seed=seed,
                  learning_rate=1e-2, optimizer="adam")
    hard.train()
    optimiser = hard.configure_optimizers()
    b = hard_batch(seed, images=8)
    first = None
    for step in range(60):
        loss = hard.training_step(b, step)
        assert torch.isfinite(loss), f"seed {seed} step {step}"
        optimiser.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in hard.parameters() if p.grad is not None)
        optimiser.step()
        first = first if first is not None else hard.caption_nll(hard.teacher_forced(b.visual.features, b), b).mean().item()
    assert math.isfinite(hard.reinforce_baseline.item())
    with torch.no_grad():
        assert hard.caption_nll(hard.teacher_forced(b.visual.features, b), b).mean().item() < first / 3


# --- the attention-in-box measure -------------------------------------------------------------------------

def test_box_cells_follow_the_encoders_resize_and_centre_crop():
    # a 128 px image, resized to 256 and centre-cropped to 224 (the crop starts at original pixel 8)
    left_half = box_cell_fractions([[0, 0, 64, 128]], (128, 128), (2, 2), crop=224, resize=256)
    assert torch.allclose(left_half, torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64))
    # the strip the crop cuts off is not seen: a box on it covers no cell
    assert box_cell_fractions([[0, 0, 7, 128]], (128, 128), (7, 7), crop=224, resize=256).sum() == 0
    quarter = box_cell_fractions([[8, 8, 64, 64]], (128, 128), (4, 4), crop=224, resize=256)
    assert quarter[:2, :2].min() == 1 and quarter.mean().item() == pytest.approx(0.25)
    # a wide image: the crop is the centre square; two boxes count once where they overlap
    union = box_cell_fractions([[100, 0, 150, 100], [120, 0, 200, 100]], (300, 100), (1, 1), crop=100, resize=100)
    assert union.item() == pytest.approx(1.0)


def test_attention_in_box_on_synthetic_annotations():
    annotation = {"objects": [{"colour": "red", "kind": "circle", "size": "small", "box": [0, 0, 64, 64]},
                              {"colour": "blue", "kind": "square", "size": "large", "box": [64, 64, 128, 128]}],
                  "width": 128, "height": 128}
    focused = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1.0], [0.25, 0.25, 0.25, 0.25]])
    shares = attention_in_boxes(["red", "circle", "square", "a"], focused, annotation, (2, 2), crop=128, resize=128)
    assert shares == [(1.0, 0.25), (1.0, 0.25), (1.0, 0.25)]  # "a" names nothing
    uniform = attention_in_boxes(["blue"], torch.full((1, 4), 0.25), annotation, (2, 2), crop=128, resize=128)
    assert uniform == [(0.25, 0.25)]  # a uniform map scores the box's area share


def test_test_step_records_the_attention_in_box_metric(monkeypatch):
    from repro.captioning.module import CaptioningModule

    monkeypatch.setattr(CaptioningModule, "on_test_epoch_end", lambda self: None)  # scoring is tested elsewhere
    soft = module(image_size=64).eval()
    annotation = {"objects": [{"colour": "red", "kind": "circle", "box": [0, 0, 128, 128]}], "width": 128, "height": 128}
    b = batch([[1, 4, 5, 7, 2], [1, 4, 6, 8, 2]], [0, 1], torch.randn(2, 4, 6), annotations=[annotation, annotation])
    soft.generate = lambda context, media, beam: ["a red circle"] * media  # the captions decoding gave
    logged = {}
    soft.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    soft.test_step(b, 0)
    soft.on_test_epoch_end()
    # a box covering the whole image: every word naming it has all its mass inside, like the uniform map
    assert logged["test/attention_in_box"] == pytest.approx(100) and logged["test/attention_in_box_uniform"] == 100
    assert logged["test/attention_in_box_words"] == 4  # "red" and "circle" in 2 images


# --- end to end through the command line ------------------------------------------------------------------

@pytest.fixture(scope="module", params=["soft", "hard"])
def smoke_run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"xu-{request.param}")
    arguments = ["--set", "attention=hard", "--set", "gating_scalar=false"] if request.param == "hard" else []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(shared_cache_dir()))
        patch.setenv("REPRO_DATA", str(root / "data"))
        patch.delenv("REPRO_RUN_ID", raising=False)
        score_without_java(patch)
        assert main(["run", "xu2015", *SMOKE, *arguments, "--out", str(root / "out"),
                     "--results", str(root / "results")]) == 0
    [path] = (root / "results" / "runs").glob("*.json")
    return root, request.param, json.loads(path.read_text())


def test_smoke_run_records_metrics_attention_maps_and_a_table_row(smoke_run):
    root, attention, record = smoke_run
    assert record["config"]["attention"] == attention and record["data_source"] == "embedded sample"
    metrics = record["metrics"]
    for name in ("bleu_1", "bleu_4", "cider_d", "ppl"):
        assert math.isfinite(metrics[f"test/{name}"])
    assert metrics["test/cider_d@nearest-neighbour"] > 0 and "best_val/bleu_4" in metrics
    example = record["examples"][0]
    maps = example["attention"]
    assert len(maps["words"]) == len(example["generated"].split()) == len(maps["maps"])
    h, w = maps["grid"]
    assert all(len(m) == h * w and abs(sum(m) - 1) < 0.01 for m in maps["maps"])
    assert (maps["gate"] is None) == (attention == "hard")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(shared_cache_dir()))
        assert main(["table", "--results", str(root / "results")]) == 0
    table = (root / "results" / "xu2015.md").read_text()
    assert "preset `smoke`" in table and "Hard-Attention" in table and "geometric average of the n-gram precision" in table
    figure = root / "results" / "xu2015_shapes_smoke_attention.png"
    assert figure.stat().st_size > 10_000 and f"![shapes: where each word looked, {attention}" in table


def test_caption_command_draws_the_attention_of_each_word(smoke_run, capsys):
    from datamodules.captioning.shapes_sample import generate

    root, _, record = smoke_run
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPRO_CACHE", str(shared_cache_dir()))
        image = str(generate() / record["examples"][0]["media"])
        assert main(["caption", "--ckpt", record["best_checkpoint"], image, "--figure", str(root / "attention.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{image}:") and lines[1].startswith("figure:")
    assert (root / "attention.png").stat().st_size > 5000


@pytest.mark.parametrize("preset", ["paper", "paper-hard", "sample", "sample-hard", "cpu", "cpu-hard", "smoke"])
def test_every_preset_resolves_and_builds(preset):
    from papers.xu2015 import PRESETS
    from repro.config import resolve_config

    config = resolve_config(Xu2015Config, PRESETS, preset)
    assert (config.attention == "hard") == preset.endswith("hard")
    built = Xu2015(config_to_dict(config), VOCABULARY, visual_dim=6)
    assert built.network.lstm.hidden_size == config.hidden_size and (built.network.gate is None) == (not config.gating_scalar)
