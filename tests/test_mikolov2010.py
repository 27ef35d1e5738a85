import math

import pytest
import torch

from datamodules.ptb import PennTreebankDataModule
from papers.mikolov2010 import (ClassFactorizedSoftmax, ElmanLanguageModel, FullSoftmax, Mikolov2010,
                                Mikolov2010Config, assign_classes, make_module)


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
    return make_module(config, data), data


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
