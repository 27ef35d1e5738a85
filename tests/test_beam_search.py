"""Beam search against greedy and exhaustive search on a tiny random model whose state must follow the beams."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from repro.decoding.beam_search import beam_search, ensemble_step
from repro.errors import UserError

VOCABULARY, BOS, EOS = 4, 0, 3


class SecondOrderModel:
    """log p(next | the two previous tokens) from a fixed random table; the state is the token before last.

    Each batch item starts from its own "before last" token (its "image"), so the state differs
    per row and is wrong unless the search reorders it with the beams.
    """

    def __init__(self, seed: int = 0, sharpness: float = 2.0):
        generator = torch.Generator().manual_seed(seed)
        logits = torch.randn(VOCABULARY, VOCABULARY, VOCABULARY, generator=generator)
        self.table = torch.log_softmax(sharpness * logits, dim=-1)

    def step(self, last_tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        return self.table[state["before_last"], last_tokens], {"before_last": last_tokens}

    def log_prob(self, start: int, tokens: list[int]) -> float:
        context, total = (start, BOS), 0.0
        for token in tokens:
            total += self.table[context[0], context[1], token].item()
            context = (context[1], token)
        return total


def start_state(*starts: int) -> dict:
    return {"before_last": torch.tensor(starts)}


def search(model, starts, **options):
    defaults = {"bos": BOS, "eos": EOS, "beam_size": 3, "max_length": 4}
    return beam_search(model.step, start_state(*starts), len(starts), **{**defaults, **options})


def exhaustive_best(model: SecondOrderModel, start: int, max_length: int, alpha: float) -> tuple[list[int], float]:
    """Every hypothesis beam search could return: ended by eos within max_length, or cut at max_length."""
    words = [t for t in range(VOCABULARY) if t != EOS]
    hypotheses = [(list(prefix), True) for n in range(max_length) for prefix in itertools.product(words, repeat=n)]
    hypotheses += [(list(prefix), False) for prefix in itertools.product(words, repeat=max_length)]
    scored = []
    for tokens, ended in hypotheses:
        generated = tokens + [EOS] if ended else tokens
        scored.append((model.log_prob(start, generated) / len(generated) ** alpha, tokens))
    score, tokens = max(scored)
    return tokens, score


def greedy(model: SecondOrderModel, start: int, max_length: int) -> tuple[list[int], float]:
    tokens, context, total = [], (start, BOS), 0.0
    for _ in range(max_length):
        token = int(model.table[context].argmax())
        total += model.table[context][token].item()
        if token == EOS:
            break
        tokens.append(token)
        context = (context[1], token)
    return tokens, total


@pytest.mark.parametrize("seed", range(5))
def test_beam_of_one_is_greedy_decoding(seed):
    model = SecondOrderModel(seed)
    for start in range(VOCABULARY):
        [[(tokens, score)]] = search(model, [start], beam_size=1, max_length=6)
        expected_tokens, expected_score = greedy(model, start, 6)
        assert tokens == expected_tokens and score == pytest.approx(expected_score, abs=1e-5)


@pytest.mark.parametrize("seed, alpha", [(seed, alpha) for seed in range(4) for alpha in (0.0, 1.0)])
def test_a_beam_wider_than_the_search_space_finds_the_exhaustive_best(seed, alpha):
    model = SecondOrderModel(seed, sharpness=0.7)  # flat enough that long hypotheses compete
    wide = VOCABULARY ** 4
    results = search(model, [0, 1, 2, 3], beam_size=wide, max_length=4, length_normalization=alpha)
    for start, [(tokens, score)] in enumerate(results):
        expected_tokens, expected_score = exhaustive_best(model, start, 4, alpha)
        assert tokens == expected_tokens and score == pytest.approx(expected_score, abs=1e-5)


def test_finished_hypotheses_are_never_extended():
    model, fed = SecondOrderModel(3, sharpness=1.0), []

    def recording_step(last_tokens, state):
        fed.append(last_tokens.clone())
        return model.step(last_tokens, state)

    results = beam_search(recording_step, start_state(0, 1, 2), 3, BOS, EOS, beam_size=3, max_length=8, n_best=3)
    assert not any((tokens == EOS).any() for tokens in fed)  # no row is ever fed an eos to extend
    assert all(EOS not in tokens for item in results for tokens, _ in item)


def test_batched_search_equals_one_item_at_a_time():
    model = SecondOrderModel(1, sharpness=1.0)
    batched = search(model, [0, 1, 2, 3, 1], beam_size=3, max_length=7, n_best=3)
    alone = [search(model, [start], beam_size=3, max_length=7, n_best=3)[0] for start in [0, 1, 2, 3, 1]]
    assert batched == alone


def test_n_best_are_distinct_and_sorted_by_score():
    model = SecondOrderModel(2, sharpness=1.0)
    for item in search(model, [0, 1, 2], beam_size=4, max_length=6, n_best=4, length_normalization=0.5):
        scores = [score for _, score in item]
        assert len(item) == 4 and scores == sorted(scores, reverse=True)
        assert len({tuple(tokens) for tokens, _ in item}) == 4


def test_an_ensemble_of_two_identical_models_is_the_model():
    model = SecondOrderModel(4, sharpness=1.0)
    single = search(model, [0, 1, 2], beam_size=3, max_length=6, n_best=2)
    starts = start_state(0, 1, 2)
    doubled = beam_search(ensemble_step([model.step, model.step]), (starts, starts), 3, BOS, EOS,
                          beam_size=3, max_length=6, n_best=2)
    for one, two in zip(single, doubled):
        assert [tokens for tokens, _ in one] == [tokens for tokens, _ in two]
        assert [score for _, score in one] == pytest.approx([score for _, score in two], abs=1e-5)


def test_an_ensemble_averages_probabilities():
    first, second = SecondOrderModel(5), SecondOrderModel(6)
    last, state = torch.tensor([1, 2]), start_state(0, 3)
    log_probs, _ = ensemble_step([first.step, second.step])(last, (state, state))
    mean_probability = (first.step(last, state)[0].exp() + second.step(last, state)[0].exp()) / 2
    assert torch.allclose(log_probs, mean_probability.log(), atol=1e-6)


def test_hypotheses_still_running_at_max_length_are_returned_without_eos():
    never_ends = SecondOrderModel(0)
    never_ends.table[..., EOS] = -math.inf
    [[(tokens, score)]] = search(never_ends, [0], beam_size=2, max_length=5)
    assert len(tokens) == 5 and math.isfinite(score)


def test_bad_settings_are_a_user_error():
    with pytest.raises(UserError, match="n_best <= beam_size"):
        search(SecondOrderModel(0), [0], beam_size=2, n_best=3)
