"""The one perplexity metric every paper uses (repro.metrics.perplexity.Perplexity)."""

import math

import pytest
import torch

from repro.metrics.perplexity import Perplexity


def test_perplexity_is_exp_of_the_summed_nll_per_token_over_the_corpus():
    metric = Perplexity()
    batches = [(torch.tensor(2.0), 1), (torch.tensor(30.0), torch.tensor(10))]  # (summed NLL in nats, tokens)
    for nll, tokens in batches:
        metric.update(nll, tokens)
    corpus = float(metric.compute())
    assert corpus == pytest.approx(math.exp(32.0 / 11), rel=1e-6)
    mean_of_batches = sum(math.exp(float(nll) / float(count)) for nll, count in batches) / len(batches)
    assert corpus != pytest.approx(mean_of_batches)  # the average of per-batch perplexities is not it
    metric.reset()
    metric.update(3.0, 3)
    assert float(metric.compute()) == pytest.approx(math.e, rel=1e-6)


def test_processes_add_their_sums_before_the_exp():
    """What DDP's reduction does (dist_reduce_fx="sum"): merge the states, then one exp."""
    first, second = Perplexity(), Perplexity()
    first.update(torch.tensor(2.0), 1)
    second.update(torch.tensor(30.0), 10)
    first.merge_state(second)
    assert float(first.compute()) == pytest.approx(math.exp(32.0 / 11), rel=1e-6)


def test_no_tokens_is_a_clear_error_and_a_diverged_model_scores_inf():
    with pytest.raises(ValueError, match="0 tokens"):
        Perplexity().compute()
    diverged = Perplexity()
    diverged.update(torch.tensor(float("nan")), 4)
    assert math.isinf(float(diverged.compute()))
    huge = Perplexity()
    huge.update(torch.tensor(1e6), 2)
    assert math.isinf(float(huge.compute()))
