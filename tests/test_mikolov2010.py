import math
from types import SimpleNamespace

import pytest
import torch

from datamodules.language_modeling.ptb import PennTreebankDataModule
from papers.mikolov2010 import (
    ClassFactorizedSoftmax,
    ElmanLanguageModel,
    FullSoftmax,
    Mikolov2010,
    Mikolov2010Config,
    assign_classes,
    learning_rate_schedule,
)
from repro.language_modeling import class_output


def test_fused_recurrence_is_the_sigmoid_network_of_the_paper():
    torch.manual_seed(0)
    network = ElmanLanguageModel(12, 6, FullSoftmax(6, 12), init_std=0.5)
    words, state = torch.randint(0, 12, (3, 7)), torch.rand(3, 6)
    hidden, last = network(words, state)
    U, W, b = network.input_weights.weight, network.recurrent.weight, network.recurrent.bias
    expected = []
    for t in range(7):  # Sec. 2 Eq. 1: s(t) = sigmoid(U w(t) + W s(t-1))
        state = torch.sigmoid(U[words[:, t]] + state @ W.T + b)
        expected.append(state)
    assert torch.allclose(hidden, torch.stack(expected, 1), atol=1e-6)
    assert torch.allclose(last, expected[-1], atol=1e-6)


def test_frequency_binning_gives_frequent_words_small_classes():
    counts = [1000, 500, 300, 100, 50, 20, 10, 5, 5, 5, 3, 1]
    classes = assign_classes(counts, 4, "frequency")
    assert classes.tolist() == sorted(classes.tolist())  # counts are already sorted: classes ascend
    assert classes[0] == 0 and classes[-1] == classes.max() and int(classes.max()) <= 3
    sizes = torch.bincount(classes)
    assert sizes[0] < sizes[-1]


def test_class_based_distribution_sums_to_one():
    torch.manual_seed(0)
    output = ClassFactorizedSoftmax(5, assign_classes(list(range(40, 0, -1)), 6, "sqrt-frequency"))
    hidden = torch.randn(4, 5)
    log_probs = output.log_probs_all(hidden)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(4), atol=1e-5)
    targets = torch.randint(0, 40, (4,))
    assert torch.allclose(output.log_prob(hidden, targets), log_probs.gather(1, targets[:, None]).squeeze(1), atol=1e-6)


def test_one_class_is_exactly_the_full_softmax():
    torch.manual_seed(0)
    factorized = ClassFactorizedSoftmax(5, torch.zeros(9, dtype=torch.long))
    full = FullSoftmax(5, 9)
    full.output.load_state_dict(factorized.word_layer.state_dict())
    hidden, targets = torch.randn(6, 5), torch.randint(0, 9, (6,))
    assert torch.allclose(factorized.log_prob(hidden, targets), full.log_prob(hidden, targets), atol=1e-6)


def _model(corpus, **overrides):
    config = Mikolov2010Config(**{"hidden_size": 8, "num_classes": 3, "eval_bptt": 4, **overrides})
    data = PennTreebankDataModule(corpus, batch_size=2, bptt=5, eval_bptt=4, check_standard_ptb=False)
    return Mikolov2010.from_datamodule(config, data), data


def test_perplexity_matches_a_hand_computation_word_by_word(tiny_corpus):
    module, data = _model(tiny_corpus)
    network, vocabulary = module.network, module.vocabulary
    # by hand: one word at a time from <eos>, state carried through the whole text
    words = ["<eos>"] + [w for s in data.sentences["valid"] for w in s + ["<eos>"]]
    ids = torch.tensor(vocabulary.encode(words))
    state, total = network.initial_state(1, "cpu"), 0.0
    with torch.no_grad():
        for previous, target in zip(ids[:-1], ids[1:]):
            hidden, state = network(previous.view(1, 1), state)
            total -= network.output.log_probs_all(hidden[0])[0, target].item()
    expected = math.exp(total / data.token_count("valid"))
    # the module's own evaluation path: chunks of 4 words through the datamodule's loader
    state = network.initial_state(1, "cpu")
    with torch.no_grad():
        for batch in data.val_dataloader():
            state = module._score("val", network, *batch, state)
    assert module._perplexity("val") == pytest.approx(expected, rel=1e-5)


def test_checkpoint_carries_config_and_vocabulary(tiny_corpus, tmp_path):
    module, _ = _model(tiny_corpus, output_layer="full")
    restored = Mikolov2010(**module.hparams)
    assert restored.config == module.config and restored.vocabulary.words == module.vocabulary.words
    assert isinstance(restored.network.output, FullSoftmax)
    lines = restored.sample_text(sentences=2, seed=1, max_words=5)
    assert len(lines) == 2 and all(set(line.split()) <= set(module.vocabulary.words) for line in lines)


def _dense(gradient: torch.Tensor) -> torch.Tensor:
    return gradient.to_dense() if gradient.is_sparse else gradient


# the fused C++ kernel of the class layer, and the PyTorch loop over classes that runs without a compiler or on a GPU
KERNELS = ["native", "pytorch"]


@pytest.fixture
def kernel(request, monkeypatch):
    if request.param == "native" and class_output.native_kernel() is None:
        pytest.skip("no C++ compiler: the class layer runs its PyTorch path")
    if request.param == "pytorch":
        monkeypatch.setitem(class_output._native, "library", None)
    return request.param


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_class_layer_gradients_match_autograd_through_the_whole_distribution(kernel, sparse):
    """The fused class layer (WithinClassLogProb) against plain autograd through log_probs_all, in float64,
    with classes of one word (log P(w | c) = 0) and repeated targets, its gradients row-sparse or dense."""
    torch.manual_seed(0)
    word_class = torch.tensor([0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 1])
    output = ClassFactorizedSoftmax(5, word_class).double()
    output.sparse_gradients = sparse
    for parameter in output.parameters():
        torch.nn.init.normal_(parameter)
    hidden = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 2, 2, 5, 9, 10, 11, 3, 0])
    weights = torch.rand(9, dtype=torch.float64)  # a non-uniform upstream gradient
    parameters = [hidden, *output.parameters()]
    fast = torch.autograd.grad((output.log_prob(hidden, targets) * weights).sum(), parameters)
    assert fast[3].is_sparse == sparse  # the word layer's weight
    reference = output.log_probs_all(hidden).gather(1, targets[:, None]).squeeze(1)
    slow = torch.autograd.grad((reference * weights).sum(), parameters)
    for got, expected in zip(fast, slow):
        torch.testing.assert_close(_dense(got), expected, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda h: output.log_prob(h, targets), (hidden,))


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
def test_a_training_step_has_the_gradients_of_the_papers_equations(kernel):
    """The whole step as it trains (U and the word rows row-sparse, the hand-written BPTT, the fused class
    layer, a carried state) against autograd through Eq. 1-3 written out word by word, in float64."""
    torch.manual_seed(0)
    counts = [50, 30, 20, 9, 8, 7, 6, 5, 4, 3, 2, 2, 1, 1]
    network = ElmanLanguageModel(14, 6, ClassFactorizedSoftmax(6, assign_classes(counts, 4, "frequency")),
                                 init_std=0.5).double()
    words, targets = torch.randint(0, 14, (3, 10)), torch.randint(0, 14, (3, 10))
    state = torch.rand(3, 6, dtype=torch.float64)
    log_prob, _, _ = network.log_prob(words, targets, state)
    fast = torch.autograd.grad(-log_prob.mean(), list(network.parameters()))
    assert network.input_weights.weight.grad is None and fast[0].is_sparse
    U, W, b = network.input_weights.weight, network.recurrent.weight, network.recurrent.bias
    total = 0
    for t in range(10):  # Sec. 2 Eq. 1-3, one word at a time
        state = torch.sigmoid(U[words[:, t]] + state @ W.T + b)
        total = total + network.output.log_probs_all(state).gather(1, targets[:, t, None]).sum()
    slow = torch.autograd.grad(-total / 30, list(network.parameters()))
    for got, expected in zip(fast, slow):
        torch.testing.assert_close(_dense(got), expected, rtol=0, atol=1e-12)


def test_l2_is_the_toolkits_decay_whatever_the_words_per_update(tiny_corpus):
    """Toolkit: every 10th word, w -= beta * alpha * w (alpha: the per-word rate). Here every 10th update,
    w -= beta * r * w: an update of N words at rate r is a per-word rate r / N, so per word both decay w
    by beta * r / (10 N)."""
    module, _ = _model(tiny_corpus, l2_regularization=0.05, learning_rate=2.0, input_learning_rate_scale=3.0)
    optimizer = module.configure_optimizers()
    before = {name: p.detach().clone() for name, p in module.network.named_parameters()}
    for updates in range(1, 21):
        module._l2_decay(optimizer, updates)
    for name, p in module.network.named_parameters():
        rate = 2.0 * (3.0 if name == "input_weights.weight" else 1.0)
        assert torch.allclose(p.detach(), before[name] * (1 - 0.05 * rate) ** 2, atol=1e-7), name
    # by hand, 20 updates of N = 16 words at rate 2.0: the toolkit's 32 decays of beta * alpha = 0.05 * 2.0 / 16
    per_word_toolkit, per_word_here = 32 * 0.05 * (2.0 / 16) / (20 * 16), 2 * 0.05 * 2.0 / (20 * 16)
    assert per_word_here == pytest.approx(per_word_toolkit)


@pytest.mark.parametrize("valid_nll, expected", [
    # improving by more than 0.3%: keep the rate; then a small gain starts the halving; stop at the next
    ([100.0, 90.0, 89.9, 80.0, 79.99], [(False, False, False), (False, False, False), (False, True, False),
                                        (False, True, False), (False, False, True)]),
    # a worse epoch is rejected (its weights restored) and starts the halving; the next is compared with it
    ([100.0, 101.0, 95.0, 96.0], [(False, False, False), (True, True, False), (False, True, False),
                                  (True, False, True)]),
])
def test_learning_rate_schedule_by_hand(valid_nll, expected):
    schedule = {"previous_valid_nll": None, "halving": False}
    assert [learning_rate_schedule(schedule, nll, 1.003) for nll in valid_nll] == expected


def test_a_worse_epoch_restores_the_previous_weights_and_halves_the_rate(tiny_corpus):
    module, _ = _model(tiny_corpus, learning_rate=4.0)
    optimizer = module.configure_optimizers()
    module._trainer = SimpleNamespace(sanity_checking=False, should_stop=False, optimizers=[optimizer])
    module.log = lambda *args, **kwargs: None
    validation = iter([50.0, 60.0, 40.0])  # validation perplexities
    module._perplexity = lambda name: next(validation)
    weight = module.network.recurrent.weight
    module.on_validation_epoch_end()  # first epoch: accepted
    accepted = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)  # the second epoch's training
    module.on_validation_epoch_end()  # worse: back to the accepted weights, and the rate halves
    assert torch.equal(weight, accepted) and optimizer.param_groups[0]["lr"] == 2.0
    with torch.no_grad():
        weight.add_(1.0)
    module.on_validation_epoch_end()  # better again: kept, and the halving goes on
    assert torch.equal(weight, accepted + 1) and optimizer.param_groups[0]["lr"] == 1.0
    assert not module.trainer.should_stop


def test_training_perplexity_of_an_epoch_is_the_corpus_value(tiny_corpus):
    """exp(summed NLL / words) over the epoch, not the mean of the batches' perplexities."""
    module, _ = _model(tiny_corpus)
    data = PennTreebankDataModule(tiny_corpus, batch_size=2, bptt=7, check_standard_ptb=False)
    logged = {}
    module._trainer = SimpleNamespace(world_size=1, global_rank=0, log_every_n_steps=1,
                                      optimizers=[module.configure_optimizers()])
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    module.state, nll, words = None, 0.0, 0
    batches = list(data.train_dataloader())
    assert len({b[0].shape[1] for b in batches}) > 1  # a shorter last batch: the two means differ
    for index, (inputs, targets) in enumerate(batches):
        loss = module.training_step((inputs, targets), index)
        nll, words = nll + float(loss) * targets.numel(), words + targets.numel()
    module.on_train_epoch_end()
    assert logged["train/ppl_epoch"] == pytest.approx(math.exp(nll / words), rel=1e-6)
    assert not module.training_perplexity.update_called  # the next epoch starts from zero


def test_dropout_touches_only_the_non_recurrent_connections():
    """With dropout, the hidden states (and the state carried on) are those of the network without it."""
    torch.manual_seed(0)
    network = ElmanLanguageModel(12, 6, FullSoftmax(6, 12), init_std=0.5, dropout=0.5)
    words, targets, state = torch.randint(0, 12, (3, 7)), torch.randint(0, 12, (3, 7)), torch.rand(3, 6)
    network.train()
    _, _, dropped_state = network.log_prob(words, targets, state)
    network.eval()
    log_prob_eval, _, eval_state = network.log_prob(words, targets, state)
    assert torch.equal(dropped_state, eval_state)
    network.train()
    assert not torch.allclose(network.log_prob(words, targets, state)[0], log_prob_eval)
