"""Tests for the interpolated modified Kneser-Ney baseline (repro/language_modeling/kneser_ney.py).

The hand-worked tests spell out every count and every step of the arithmetic, so that a reader can
check them against Chen & Goodman 1998 without running anything; none of the expected values comes
from the code under test.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import pytest

from repro.errors import UserError
from repro.language_modeling.kneser_ney import KneserNeyLanguageModel

# Six sentences, 14 words, so 20 predicted tokens (14 words + 6 </s>). Chosen so that the bigram
# counts are 4, 3, 3, 2, 2, 2, 1, 1, 1, 1 and the unigram continuation counts are 4, 3, 2, 1:
# every count-of-count n1..n4 is non-zero, so both orders use the true modified discounts.
TINY_CORPUS = [["a"], ["a"], ["a", "b"], ["a", "a", "b", "c"], ["b", "a", "b"], ["b", "c", "a"]]

# Bigram counts in TINY_CORPUS (<s> and </s> added around each sentence):
#   <s> a: 4 (sentences 1-4)      <s> b: 2 (5, 6)
#   a a: 1 (4)   a b: 3 (3, 4, 5)   a </s>: 3 (1, 2, 6)
#   b a: 1 (5)   b c: 2 (4, 6)      b </s>: 2 (3, 5)
#   c a: 1 (6)   c </s>: 1 (4)
# Unigram continuation counts = number of distinct words seen before each word:
#   a: {<s>, a, b, c} = 4   b: {<s>, a} = 2   c: {b} = 1   </s>: {a, b, c} = 3
# The vocabulary the model predicts is {a, b, c, </s>}: |V| = 4.

# Unigram level: n1 = 1 (c), n2 = 1 (b), n3 = 1 (</s>), n4 = 1 (a).
#   Y = 1 / (1 + 2*1) = 1/3
#   D1 = 1 - 2 * (1/3) * 1/1 = 1/3
#   D2 = 2 - 3 * (1/3) * 1/1 = 1
#   D3+ = 3 - 4 * (1/3) * 1/1 = 5/3
UNIGRAM_DISCOUNTS = (1 / 3, 1.0, 5 / 3)
# c() = 4 + 2 + 1 + 3 = 10
# gamma() = (D1 * 1 + D2 * 1 + D3+ * 2) / 10 = (1/3 + 1 + 10/3) / 10 = 7/15
# p(w) = (count - D) / 10 + (7/15) * (1/4):
P_UNIGRAM = {
    "a": (4 - 5 / 3) / 10 + (7 / 15) / 4,  # = 21/60
    "b": (2 - 1) / 10 + (7 / 15) / 4,  # = 13/60
    "c": (1 - 1 / 3) / 10 + (7 / 15) / 4,  # = 11/60
    "</s>": (3 - 5 / 3) / 10 + (7 / 15) / 4,  # = 15/60
}


def _assert_close(actual: float, expected: float) -> None:
    assert actual == pytest.approx(expected, rel=0, abs=1e-9)


def test_hand_worked_bigram_model():
    lm = KneserNeyLanguageModel(order=2).fit(TINY_CORPUS)

    # Bigram level (raw counts): n1 = 4 (a a, b a, c a, c </s>), n2 = 3 (<s> b, b c, b </s>),
    # n3 = 2 (a b, a </s>), n4 = 1 (<s> a).
    #   Y = 4 / (4 + 2*3) = 0.4
    #   D1 = 1 - 2 * 0.4 * 3/4 = 0.4
    #   D2 = 2 - 3 * 0.4 * 2/3 = 1.2
    #   D3+ = 3 - 4 * 0.4 * 1/2 = 2.2
    assert lm.discounts == [
        pytest.approx(UNIGRAM_DISCOUNTS, abs=1e-12),
        pytest.approx((0.4, 1.2, 2.2), abs=1e-12),
    ]
    assert sum(P_UNIGRAM.values()) == pytest.approx(1.0, abs=1e-12)

    # The empty context is the unigram distribution.
    for word, prob in P_UNIGRAM.items():
        _assert_close(lm.log_prob(word, ()), math.log(prob))

    # Context "a": a a 1, a b 3, a </s> 3 -> c(a) = 7, gamma(a) = (0.4 * 1 + 2.2 * 2) / 7 = 4.8/7.
    gamma_a = (0.4 * 1 + 2.2 * 2) / 7
    _assert_close(lm.log_prob("b", ("a",)), math.log((3 - 2.2) / 7 + gamma_a * P_UNIGRAM["b"]))
    _assert_close(lm.log_prob("a", ("a",)), math.log((1 - 0.4) / 7 + gamma_a * P_UNIGRAM["a"]))
    _assert_close(lm.log_prob("c", ("a",)), math.log(gamma_a * P_UNIGRAM["c"]))  # unseen after a

    # Context "<s>": <s> a 4, <s> b 2 -> c(<s>) = 6, gamma(<s>) = (1.2 * 1 + 2.2 * 1) / 6 = 3.4/6.
    gamma_start = (1.2 + 2.2) / 6
    p_a_after_start = (4 - 2.2) / 6 + gamma_start * P_UNIGRAM["a"]
    _assert_close(lm.log_prob("a", ("<s>",)), math.log(p_a_after_start))
    _assert_close(lm.log_prob("c", ("<s>",)), math.log(gamma_start * P_UNIGRAM["c"]))

    # Context "b": b a 1, b c 2, b </s> 2 -> c(b) = 5, gamma(b) = (0.4 * 1 + 1.2 * 2) / 5 = 2.8/5.
    gamma_b = (0.4 + 1.2 * 2) / 5
    p_end_after_b = (2 - 1.2) / 5 + gamma_b * P_UNIGRAM["</s>"]
    _assert_close(lm.log_prob("</s>", ("b",)), math.log(p_end_after_b))

    # Context "c": c a 1, c </s> 1 -> c(c) = 2, gamma(c) = 0.4 * 2 / 2 = 0.4.
    _assert_close(lm.log_prob("a", ("c",)), math.log((1 - 0.4) / 2 + 0.4 * P_UNIGRAM["a"]))

    # Only the last order - 1 = 1 word of a longer context matters.
    _assert_close(lm.log_prob("a", ("a", "b", "c")), math.log((1 - 0.4) / 2 + 0.4 * P_UNIGRAM["a"]))

    # <s> is never predicted.
    assert lm.log_prob("<s>", ("a",)) == -math.inf


def test_hand_worked_trigram_model():
    lm = KneserNeyLanguageModel(order=3).fit(TINY_CORPUS)

    # Trigram counts (raw): <s> a </s> 2, a b </s> 2, and ten trigrams seen once
    # (<s> a b, <s> a a, a a b, a b c, b c </s>, <s> b a, b a b, <s> b c, b c a, c a </s>).
    # n1 = 10, n2 = 2, n3 = n4 = 0: the modified discounts are undefined (SRILM would stop), so the
    # model falls back to the single discount D = n1 / (n1 + 2 n2) = 10/14 = 5/7.
    d_trigram = 10 / (10 + 2 * 2)

    # Bigram level: continuation counts (distinct words before the bigram, read off the trigrams),
    # except <s>-initial bigrams, which keep raw counts:
    #   <s> a: 4 (raw)   <s> b: 2 (raw)
    #   a a: {<s>} = 1   a b: {<s>, a, b} = 3   a </s>: {<s>, c} = 2
    #   b a: {<s>} = 1   b c: {a, <s>} = 2      b </s>: {a} = 1
    #   c a: {b} = 1     c </s>: {b} = 1
    # n1 = 5, n2 = 3, n3 = 1, n4 = 1:  Y = 5 / (5 + 6) = 5/11
    #   D1 = 1 - 2 * (5/11) * 3/5 = 5/11
    #   D2 = 2 - 3 * (5/11) * 1/3 = 17/11
    #   D3+ = 3 - 4 * (5/11) * 1/1 = 13/11
    d1, d2, d3 = 5 / 11, 17 / 11, 13 / 11
    assert lm.discounts == [
        pytest.approx(UNIGRAM_DISCOUNTS, abs=1e-12),  # the unigram level is the same as for order 2
        pytest.approx((d1, d2, d3), abs=1e-12),
        pytest.approx((d_trigram,) * 3, abs=1e-12),
    ]

    # Bigram probabilities of the trigram model.
    # Context a: a a 1, a b 3, a </s> 2 -> c(a) = 6, gamma(a) = (D1 + D3+ + D2) / 6.
    gamma_a = (d1 + d3 + d2) / 6
    p2_b_after_a = (3 - d3) / 6 + gamma_a * P_UNIGRAM["b"]
    p2_end_after_a = (2 - d2) / 6 + gamma_a * P_UNIGRAM["</s>"]
    p2_c_after_a = gamma_a * P_UNIGRAM["c"]
    # Context <s>: <s> a 4, <s> b 2 -> c(<s>) = 6, gamma(<s>) = (D3+ + D2) / 6.
    gamma_start = (d3 + d2) / 6
    p2_a_after_start = (4 - d3) / 6 + gamma_start * P_UNIGRAM["a"]
    # Context c: c a 1, c </s> 1 -> c(c) = 2, gamma(c) = 2 D1 / 2.
    gamma_c = 2 * d1 / 2
    p2_a_after_c = (1 - d1) / 2 + gamma_c * P_UNIGRAM["a"]
    # Context b: b a 1, b c 2, b </s> 1 -> c(b) = 4, gamma(b) = (2 D1 + D2) / 4.
    gamma_b = (2 * d1 + d2) / 4
    p2_c_after_b = (2 - d2) / 4 + gamma_b * P_UNIGRAM["c"]

    _assert_close(lm.log_prob("a", ("<s>",)), math.log(p2_a_after_start))
    _assert_close(lm.log_prob("c", ("b",)), math.log(p2_c_after_b))

    # Trigram context <s> a: <s> a </s> 2, <s> a b 1, <s> a a 1 -> c = 4, gamma = 3 D / 4.
    gamma_start_a = 3 * d_trigram / 4
    _assert_close(
        lm.log_prob("b", ("<s>", "a")), math.log((1 - d_trigram) / 4 + gamma_start_a * p2_b_after_a)
    )
    _assert_close(
        lm.log_prob("</s>", ("<s>", "a")),
        math.log((2 - d_trigram) / 4 + gamma_start_a * p2_end_after_a),
    )
    _assert_close(lm.log_prob("c", ("<s>", "a")), math.log(gamma_start_a * p2_c_after_a))

    # Trigram context b c: b c </s> 1, b c a 1 -> c = 2, gamma = 2 D / 2.
    _assert_close(
        lm.log_prob("a", ("b", "c")), math.log((1 - d_trigram) / 2 + d_trigram * p2_a_after_c)
    )
    # Contexts never seen ("c c", "<s> c") back off to the bigram context "c" with weight 1.
    _assert_close(lm.log_prob("a", ("c", "c")), math.log(p2_a_after_c))
    _assert_close(lm.log_prob("a", ("<s>", "c")), math.log(p2_a_after_c))


def test_srilm_rule_for_contexts_with_no_mass_left():
    # One sentence "a b a b ... a b" (300,000 times "a b"). After "a" the only word ever seen is b,
    # 300,000 times, so interpolation would leave less than SRILM's 3e-6 for the unseen words;
    # SRILM then drops interpolation for that context and, if needed, adds 1 to c(h).
    lm = KneserNeyLanguageModel(order=2).fit([["a", "b"] * 300_000])

    # Bigram counts: <s> a 1, a b 300000, b a 299999, b </s> 1: n1 = 2, n2 = 0 -> fallback D = 0.5.
    # Unigram continuation counts: a {<s>, b} = 2, b {a} = 1, </s> {b} = 1: n1 = 2, n2 = 1, n3 = 0
    # -> fallback D = 2 / (2 + 2) = 0.5.
    assert lm.discounts == [(0.5, 0.5, 0.5), (0.5, 0.5, 0.5)]
    # Unigrams: c() = 4, gamma() = 0.5 * 3 / 4 = 3/8, |V| = 3 (a, b, </s>):
    #   p(a) = 1.5/4 + (3/8)/3 = 0.5    p(b) = 0.5/4 + 1/8 = 0.25    p(</s>) = 0.25
    p_a, p_b, p_end = 0.5, 0.25, 0.25
    for word, prob in (("a", p_a), ("b", p_b), ("</s>", p_end)):
        _assert_close(lm.log_prob(word, ()), math.log(prob))

    # Context a: interpolated p(b | a) = 299999.5/300000 + (0.5/300000) * 0.25 = 1 - 1.25e-6,
    # more than 1 - 3e-6 -> drop interpolation: 299999.5/300000 = 1 - 1.67e-6, still too much
    # -> c(a) + 1: 299999.5/300001 = 1 - 5.0e-6. The backoff weight spreads the rest over a, </s>:
    #   bow(a) = (1 - 299999.5/300001) / (1 - p(b)) = (1.5/300001) / 0.75 = 2/300001.
    bow_a = 2 / 300001
    assert math.exp(lm.log_prob("b", ("a",))) == pytest.approx(299999.5 / 300001, rel=1e-12)
    assert math.exp(lm.log_prob("a", ("a",))) == pytest.approx(bow_a * p_a, rel=1e-9)
    assert math.exp(lm.log_prob("</s>", ("a",))) == pytest.approx(bow_a * p_end, rel=1e-9)

    # Context b: interpolated mass 1 - (1/300000) * 0.25, too much -> drop interpolation:
    # (299998.5 + 0.5)/300000 = 1 - 3.3e-6 is enough, so c(b) stays 300000.
    #   bow(b) = (1/300000) / (1 - p(a) - p(</s>)) = 4/300000.
    assert math.exp(lm.log_prob("a", ("b",))) == pytest.approx(299998.5 / 300000, rel=1e-12)
    assert math.exp(lm.log_prob("</s>", ("b",))) == pytest.approx(0.5 / 300000, rel=1e-9)
    assert math.exp(lm.log_prob("b", ("b",))) == pytest.approx(4 / 300000 * p_b, rel=1e-9)

    # Context <s> keeps interpolation: <s> a 1 -> gamma = 0.5, p(a | <s>) = 0.5 + 0.5 * 0.5.
    _assert_close(lm.log_prob("a", ("<s>",)), math.log(0.75))
    for context in (("a",), ("b",), ("<s>",)):
        total = math.fsum(math.exp(lm.log_prob(word, context)) for word in lm.vocabulary)
        assert total == pytest.approx(1.0, abs=1e-9)


def _random_corpus(seed: int, num_sentences: int = 200) -> list[list[str]]:
    # A skewed word distribution gives counts of all sizes, so some orders use modified
    # discounts and some (the sparse high orders) the fallback.
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(10)]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    return [rng.choices(words, weights, k=rng.randint(0, 7)) for _ in range(num_sentences)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_seen_context_gives_a_distribution(order):
    corpus = _random_corpus(seed=order)
    lm = KneserNeyLanguageModel(order=order).fit(corpus)
    assert "<s>" not in lm.vocabulary and "</s>" in lm.vocabulary

    contexts = {()}
    for sentence in corpus:
        tokens = ["<s>", *sentence]
        for end in range(1, len(tokens) + 1):
            for length in range(1, order):
                if end - length >= 0:
                    contexts.add(tuple(tokens[end - length : end]))
    contexts |= {("w9", "w9", "w9"), ("<s>", "w9"), ("w3", "<s>")}  # unseen ones back off
    for context in contexts:
        total = math.fsum(math.exp(lm.log_prob(word, context)) for word in lm.vocabulary)
        assert total == pytest.approx(1.0, abs=1e-9), context


def test_order_longer_than_every_sentence():
    # No 4- or 5-grams exist at all; the model must still be a proper distribution.
    lm = KneserNeyLanguageModel(order=5).fit([["a"], ["b"], ["a"]])
    for context in [("<s>", "a", "b", "a"), ("a", "</s>"), ()]:
        total = math.fsum(math.exp(lm.log_prob(word, context)) for word in lm.vocabulary)
        assert total == pytest.approx(1.0, abs=1e-9)
    assert math.isfinite(lm.perplexity([["a", "b", "a", "a"]]))


def test_unseen_words_map_to_unk():
    corpus = [["the", "<unk>", "sat"], ["the", "cat", "sat"], ["a", "<unk>"]]
    lm = KneserNeyLanguageModel(order=3).fit(corpus)
    assert lm.log_prob("dog", ("<s>", "the")) == lm.log_prob("<unk>", ("<s>", "the"))
    assert lm.log_prob("sat", ("the", "dog")) == lm.log_prob("sat", ("the", "<unk>"))
    assert lm.score([["the", "dog", "ran"]]) == lm.score([["the", "<unk>", "<unk>"]])


def test_unseen_words_without_unk_are_an_error():
    lm = KneserNeyLanguageModel(order=3).fit([["the", "cat", "sat"]])
    with pytest.raises(UserError, match="'dog'"):
        lm.score([["the", "dog", "sat"]])
    with pytest.raises(UserError, match="'dog'"):
        lm.log_prob("sat", ("the", "dog"))
    with pytest.raises(UserError, match="'dog'"):
        lm.log_prob("dog", ("the",))


def test_perplexity_counts_words_and_sentence_ends():
    lm = KneserNeyLanguageModel(order=3).fit(_random_corpus(seed=7))
    test = _random_corpus(seed=8, num_sentences=30)
    negative_log_likelihood, num_tokens = lm.score(test)
    assert num_tokens == sum(len(sentence) for sentence in test) + len(test)
    expected = math.exp(negative_log_likelihood / num_tokens)
    assert lm.perplexity(test) == pytest.approx(expected, rel=1e-12)

    # The batched scorer agrees with one log_prob call per token, </s> included.
    by_token = []
    for sentence in test:
        tokens = ["<s>", *sentence, "</s>"]
        by_token += [lm.log_prob(tokens[i], tuple(tokens[:i])) for i in range(1, len(tokens))]
    assert len(by_token) == num_tokens
    assert negative_log_likelihood == pytest.approx(-math.fsum(by_token), rel=1e-12)


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError):
        KneserNeyLanguageModel(order=0)
    with pytest.raises(UserError):
        KneserNeyLanguageModel().fit([])
    with pytest.raises(UserError, match="list of words"):
        KneserNeyLanguageModel().fit(["the cat sat"])
    with pytest.raises(UserError, match="<s>"):
        KneserNeyLanguageModel().fit([["<s>", "the"]])
    with pytest.raises(UserError, match="empty"):
        KneserNeyLanguageModel().fit([["a"]]).perplexity([])


PTB_DIR = Path(__file__).resolve().parents[2] / "shared/data/ptb"


@pytest.mark.realdata
@pytest.mark.skipif(not (PTB_DIR / "ptb.train.txt").exists(), reason=f"{PTB_DIR} is absent")
def test_kn5_matches_mikolov_2011_on_ptb():
    def read(split: str) -> list[list[str]]:
        with open(PTB_DIR / f"ptb.{split}.txt", encoding="utf-8") as lines:
            return [line.split() for line in lines]

    started = time.perf_counter()
    lm = KneserNeyLanguageModel(order=5).fit(read("train"))
    test = read("test")
    perplexity = lm.perplexity(test)
    # Mikolov et al. 2011 (PTB table): KN5 without count cutoffs, PTB test perplexity 141.2.
    assert perplexity == pytest.approx(141.2, rel=0.03)
    assert lm.score(test)[1] == 82430  # 78,669 words + 3,761 sentence ends
    assert time.perf_counter() - started < 120


def test_a_text_too_large_for_memory_is_refused_in_one_line_with_the_estimate():
    from repro.errors import UserError
    from repro.language_modeling.kneser_ney import BYTES_PER_TOKEN, KneserNeyLanguageModel

    model = KneserNeyLanguageModel(5)
    model._refuse_if_too_large(1000, available=1000 * BYTES_PER_TOKEN + 1)  # fits: nothing said
    with pytest.raises(UserError, match=r"^Kneser-Ney 5-gram on 103,000,000 tokens needs about 38\.4 GiB of memory "
                                        r"\(~400 bytes a token, measured\), more than the 16\.0 GiB available"):
        model._refuse_if_too_large(103_000_000, available=16 * 2**30)
