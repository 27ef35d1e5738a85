"""Interpolated modified Kneser-Ney n-gram language model, built the way SRILM builds it.

Why this exists
---------------
Mikolov et al. 2010 ("Recurrent neural network based language model") and Mikolov et al. 2011
("Empirical evaluation and combination of advanced language modeling techniques", Interspeech)
compare their RNN language models against a 5-gram Kneser-Ney model, "KN5", trained with SRILM.
On the Penn Treebank, KN5 with no count cutoffs is the 2011 paper's baseline row, at a test
perplexity of 141.2 (this implementation gets 141.19, valid 148.01).
This module rebuilds that baseline in pure Python + numpy (no SRILM, KenLM or NLTK needed), so the
suite can report the baseline next to the networks. It corresponds to::

    ngram-count -order 5 -interpolate -kndiscount -unk \
        -gt1min 1 -gt2min 1 -gt3min 1 -gt4min 1 -gt5min 1

The smoothing
-------------
Kneser & Ney 1995 ("Improved backing-off for m-gram language modeling", ICASSP) estimate the
lower-order distributions from *continuation counts*: how many distinct words precede an n-gram,
rather than how often it occurs. Chen & Goodman 1998 ("An empirical study of smoothing techniques
for language modeling", TR-10-98, Harvard; Sec. 3, "modified Kneser-Ney") interpolate every order
with the next lower one and use three discounts per order, estimated from the count-of-counts
n1..n4 of that order::

    Y = n1 / (n1 + 2 n2)
    D1 = 1 - 2 Y n2/n1      D2 = 2 - 3 Y n3/n2      D3+ = 3 - 4 Y n4/n3

    p(w | h) = (c(h w) - D(c(h w))) / c(h)  +  gamma(h) p(w | h')        for c(h w) > 0
    gamma(h) = (D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)) / c(h)

where h' is h without its oldest word, c(h) = sum_w c(h w), and N_k(h .) counts the distinct words
seen after h exactly k times (N3+: three or more times). The counts c are

* raw counts for the highest order;
* continuation counts N1+(. h w) for lower orders, except n-grams beginning with ``<s>``, which
  keep their raw counts (nothing precedes ``<s>``, so their continuation count would be zero).
  This is SRILM's ``KneserNey::prepareCounts``.

The unigram level is interpolated with the uniform distribution 1/|V|, where V is the vocabulary
the model can predict: every training word plus ``</s>`` (and ``<unk>`` when the training text
has it), but not ``<s>``, which SRILM treats as a "non-event" that is never predicted. ``<s>``
is also left out of every c(h), N_k(h .) and count-of-counts, as in SRILM.

Sentences are scored the way SRILM's ``ngram -ppl`` and every PTB paper count them: the history
starts with ``<s>``, and every word and the final ``</s>`` are predicted, so a text has
``words + sentences`` scored tokens. The vocabulary is closed: a test word that training never saw
becomes ``<unk>`` when training had ``<unk>`` (as the preprocessed PTB does), and is an error
otherwise.

SRILM details reproduced here (checked against SRILM's ``Discount.cc`` and ``NgramLM.cc``)
------------------------------------------------------------------------------------------
* Count-of-counts are taken over the (modified) counts of each order, skipping n-grams that
  predict ``<s>``.
* SRILM stores the model in backoff (ARPA) form: an explicit probability for every training
  n-gram and a backoff weight per context. For an unseen n-gram it multiplies the backoff weights
  of the contexts it skips. With interpolation that weight equals gamma(h), so this is exactly the
  recursive formula above; we store the model the same way so that scoring is a table lookup.
* "No probability mass left" rule (``Ngram::estimate``, credited to Doug Paul): when the
  interpolated probabilities of the words seen after a context sum to more than 1 - 3e-6 while
  not every vocabulary word was seen there, SRILM drops interpolation for that context (keeping
  only the discounted estimates) and, if that still leaves less than 3e-6, adds 1 to c(h) until
  it does not; the backoff weight then renormalises the rest. On PTB this touches six 4-word
  contexts and moves the test perplexity by less than 0.001, but we do it anyway.

Where we differ from SRILM, deliberately
----------------------------------------
* Discounts when a count-of-count is zero or a discount comes out non-positive: SRILM stops
  with "one of required modified KneserNey count-of-counts is zero" (or "...discounts is
  negative"). That only happens on tiny corpora (e.g. unit tests), so instead we fall back to
  one discount for all counts, the unmodified Kneser-Ney estimate D = n1 / (n1 + 2 n2) (Ney,
  Essen & Kneser 1994; SRILM's ``-ukndiscount``), or D = 0.5 when n1 or n2 is zero. Each
  fallback D lies in (0, 1), so every context keeps mass for unseen words and no seen n-gram is
  discounted to zero. (We also reject a modified discount of exactly 0, which SRILM accepts but
  which can leave contexts with no mass for unseen words.) :attr:`discounts` shows what was used.
* We keep probabilities in double precision; SRILM stores log10 probabilities as 32-bit floats
  (and ARPA files print 7 digits), so individual probabilities agree to about 1e-6 relative.
* ``<unk>`` is an ordinary word (SRILM's ``-unk``). Without ``-unk`` SRILM would drop every
  n-gram containing ``<unk>`` and leave ``<unk>`` tokens out of the perplexity; the PTB numbers
  of Mikolov et al. count ``<unk>`` like any other word (which is how we match their 141.2).
  SRILM's ``-unk`` also puts ``<unk>`` in V when training never saw it; we leave it out then,
  since such a model rejects unseen words anyway (as SRILM does without ``-unk``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from repro.errors import UserError

SENTENCE_START = "<s>"
SENTENCE_END = "</s>"
UNKNOWN_WORD = "<unk>"

# SRILM's Prob_Epsilon: a context whose seen words take all but this much probability is treated
# as having "no backoff mass left" (see the module docstring).
_NO_MASS_LEFT = 3e-6

# Fitting takes about 4 s per million tokens on a 2-core machine (PTB: 3-4 s) and scoring about
# 2.5 s. Past this many tokens we say on stderr what is happening, so a long pause is explained,
# while PTB-sized calls stay quiet.
_ANNOUNCE_ABOVE_TOKENS = 2_000_000
# Peak memory of fit(), per training token (<s> and </s> included), order 5: measured 390-406 bytes on
# Zipf text of 0.3M and 1M tokens (every n-gram table of orders 1-5 and np.unique's sort buffers are
# held at once). Building in bounded memory (counting on disk, as KenLM's lmplz does) is out of reach
# here, so fit() refuses a text whose estimate exceeds the memory available, in one line.
BYTES_PER_TOKEN = 400


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None

_START_ID = 0  # ids of the sentence markers in every fitted vocabulary
_END_ID = 1


@dataclass
class _Order:
    """Every n-gram of one order n that occurs in the training text.

    N-gram ids at order n are positions in these arrays. An n-gram is identified by the id of its
    (n-1)-word context at order n-1 plus its last word; ``keys`` packs the pair into one sorted
    integer so that lookups are a binary search. Order 0 is the empty context, with id 0.
    """

    keys: np.ndarray  # context_id * num_types + word_id, sorted ascending
    log_prob: np.ndarray  # natural-log p(word | context); -inf for the never-predicted <s>
    # Natural-log backoff weight of each n-gram when it serves as the context of order n+1;
    # 0 (weight 1) where it has no followers, as in SRILM, where such contexts have no node.
    log_backoff: np.ndarray


class KneserNeyLanguageModel:
    """Interpolated modified Kneser-Ney language model of a given order (see the module docstring).

    >>> lm = KneserNeyLanguageModel(order=3).fit([["a", "b"], ["b", "a", "b"]])
    >>> round(lm.perplexity([["a", "b"]]), 4) > 1
    True
    """

    def __init__(self, order: int = 5):
        if not isinstance(order, int) or order < 1:
            raise UserError(f"n-gram order must be a positive integer, got {order!r}")
        self.order = order
        #: discounts[n - 1] = (D1, D2, D3+) used for n-grams of order n.
        self.discounts: list[tuple[float, float, float]] = []
        self._word_ids: dict[str, int] = {}
        self._orders: list[_Order] = []

    # ------------------------------------------------------------------ public API

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """The words the model predicts: the training words and ``</s>``, not ``<s>``."""
        self._require_fitted()
        return tuple(word for word, index in self._word_ids.items() if index != _START_ID)

    def fit(self, sentences: Iterable[Sequence[str]]) -> KneserNeyLanguageModel:
        """Count n-grams in ``sentences`` (lists of words) and estimate all probabilities.

        Refitting replaces the previous model, vocabulary included.
        """
        sentences = list(sentences)
        if not sentences:
            raise UserError("cannot fit a Kneser-Ney model on an empty training text")
        self._refuse_if_too_large(sum(len(sentence) + 2 for sentence in sentences))
        self._word_ids = {SENTENCE_START: _START_ID, SENTENCE_END: _END_ID}
        tokens, positions = self._encode(sentences, add_new_words=True)
        self._announce_if_long("fitting on", len(tokens) - len(sentences))
        self.discounts = []
        self._orders = []
        self._estimate(tokens, positions)
        return self

    def log_prob(self, word: str, context: tuple[str, ...]) -> float:
        """Natural-log probability of ``word`` after ``context`` (oldest word first).

        Start ``context`` with ``"<s>"`` for the beginning of a sentence; only its last
        ``order - 1`` words matter. Unseen words map to ``<unk>`` as in :meth:`score`.
        ``<s>`` itself is never predicted and gets log probability -inf, as in SRILM.
        """
        self._require_fitted()
        history = tuple(context)[-(self.order - 1) :] if self.order > 1 else ()
        ids = np.array([self._id_of(token) for token in (*history, word)], dtype=np.int64)
        positions = np.arange(len(ids), dtype=np.int64)  # history[0] plays the sentence start
        return float(self._log_probs(ids, positions, predicted=np.array([len(ids) - 1]))[0])

    def word_log_probs(self, sentences: Iterable[Sequence[str]]) -> np.ndarray:
        """The natural-log probability of every predicted token of ``sentences``, in text order: each
        word, then the sentence's ``</s>``."""
        self._require_fitted()
        tokens, positions = self._encode(list(sentences), add_new_words=False)
        predicted = np.flatnonzero(positions >= 1)
        self._announce_if_long("scoring", len(predicted))
        return self._log_probs(tokens, positions, predicted)

    def score(self, sentences: Iterable[Sequence[str]]) -> tuple[float, int]:
        """(negative log-likelihood in nats, predicted tokens) over ``sentences``.

        Every word and every sentence's ``</s>`` is predicted, so tokens = words + sentences.
        """
        log_probs = self.word_log_probs(sentences)
        # math.fsum keeps the total exact to the last bit however long the text is.
        return -math.fsum(log_probs.tolist()), len(log_probs)

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        """exp(negative log-likelihood / tokens) over ``sentences``, ``</s>`` included."""
        negative_log_likelihood, num_tokens = self.score(sentences)
        if num_tokens == 0:
            raise UserError("cannot compute a perplexity over an empty text")
        return math.exp(negative_log_likelihood / num_tokens)

    # ------------------------------------------------------------------ encoding

    def _require_fitted(self) -> None:
        if not self._orders:
            raise RuntimeError("call fit() before using the Kneser-Ney model")

    def _id_of(self, word: str) -> int:
        index = self._word_ids.get(word)
        if index is not None:
            return index
        unknown = self._word_ids.get(UNKNOWN_WORD)
        if unknown is None:
            raise UserError(
                f"word {word!r} does not occur in the training text, and the training text has "
                f"no {UNKNOWN_WORD} token to map unseen words to"
            )
        return unknown

    def _encode(
        self, sentences: list[Sequence[str]], add_new_words: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of ``<s> w1 .. wn </s>`` for every sentence, concatenated, and each token's
        position in its sentence (0 for ``<s>``)."""
        word_ids = self._word_ids
        ids: list[int] = []
        lengths: list[int] = []
        for number, sentence in enumerate(sentences, start=1):
            if isinstance(sentence, str):
                raise UserError(
                    f"sentence {number} is a string; pass each sentence as a list of words"
                )
            if SENTENCE_START in sentence or SENTENCE_END in sentence:
                raise UserError(
                    f"sentence {number} contains {SENTENCE_START} or {SENTENCE_END}; the model "
                    "adds the sentence markers itself"
                )
            if add_new_words:
                for word in sentence:
                    if word not in word_ids:
                        word_ids[word] = len(word_ids)
                ids.append(_START_ID)
                ids.extend(word_ids[word] for word in sentence)
            else:
                ids.append(_START_ID)
                ids.extend(
                    word_ids[word] if word in word_ids else self._id_of(word) for word in sentence
                )
            ids.append(_END_ID)
            lengths.append(len(sentence) + 2)
        tokens = np.array(ids, dtype=np.int64)
        lengths_array = np.array(lengths, dtype=np.int64)
        sentence_starts = np.cumsum(lengths_array) - lengths_array
        positions = np.arange(len(tokens), dtype=np.int64)
        positions -= np.repeat(sentence_starts, lengths_array)
        return tokens, positions

    # ------------------------------------------------------------------ estimation

    def _estimate(self, tokens: np.ndarray, positions: np.ndarray) -> None:
        num_types = len(self._word_ids)
        # Everything but <s> can be predicted; in a closed vocabulary all of it occurs in training.
        vocabulary_size = num_types - 1

        # Pass 1: find the distinct n-grams of each order and their raw counts. ids_at[j] is the id
        # of the n-gram that ends at token j (-1 where it would reach back past the sentence's <s>).
        raw_counts, contexts, words, suffixes, keys = [], [], [], [], []
        ids_at = np.zeros(len(tokens), dtype=np.int64)  # order 0: the empty context everywhere
        for n in range(1, self.order + 1):
            valid = np.flatnonzero(positions >= n - 1)
            context_ids = ids_at[valid - 1] if n > 1 else np.zeros(len(valid), dtype=np.int64)
            unique_keys, first_seen, inverse, counts = np.unique(
                context_ids * num_types + tokens[valid],
                return_index=True,
                return_inverse=True,
                return_counts=True,
            )
            keys.append(unique_keys)
            raw_counts.append(counts)
            contexts.append(unique_keys // num_types)
            words.append(unique_keys % num_types)
            # The n-gram minus its first word ends at the same token, one order down.
            suffixes.append(ids_at[valid[first_seen]])
            ids_at = np.full(len(tokens), -1, dtype=np.int64)
            ids_at[valid] = inverse.reshape(-1)

        # Pass 2: Kneser-Ney counts. Below the top order an n-gram's count is the number of
        # distinct words seen before it, unless it starts with <s>, before which nothing can occur.
        kn_counts = []
        starts_with_sentence_start = words[0] == _START_ID
        for n in range(1, self.order + 1):
            index = n - 1
            if n > 1:
                starts_with_sentence_start = starts_with_sentence_start[contexts[index]]
            if n == self.order:
                kn_counts.append(raw_counts[index])
            else:
                left_contexts = np.bincount(suffixes[index + 1], minlength=len(keys[index]))
                kn_counts.append(
                    np.where(starts_with_sentence_start, raw_counts[index], left_contexts)
                )

        # Pass 3: probabilities and backoff weights, lowest order first, since each order
        # interpolates with the one below.
        prob_of_order: list[np.ndarray] = []
        num_contexts = 1  # order 0 has just the empty context
        for n in range(1, self.order + 1):
            index = n - 1
            predicts_event = words[index] != _START_ID
            discounts = _modified_discounts(kn_counts[index][predicts_event])
            if n == 1:
                lower_prob = np.full(len(keys[index]), 1.0 / vocabulary_size)
            else:
                lower_prob = prob_of_order[index - 1][suffixes[index]]
            prob, backoff, has_followers = _interpolate(
                kn_counts[index].astype(np.float64),
                contexts[index],
                predicts_event,
                num_contexts,
                lower_prob,
                discounts,
                vocabulary_size,
            )
            self.discounts.append(discounts)
            prob_of_order.append(prob)
            if n > 1:
                log_backoff = np.zeros(num_contexts)
                log_backoff[has_followers] = np.log(backoff[has_followers])
                self._orders[index - 1].log_backoff = log_backoff
            with np.errstate(divide="ignore"):
                log_prob = np.log(prob)
            self._orders.append(
                _Order(keys=keys[index], log_prob=log_prob, log_backoff=np.zeros(len(prob)))
            )
            num_contexts = len(prob)

    # ------------------------------------------------------------------ scoring

    def _lookup(self, n: int, context_ids: np.ndarray, word_ids: np.ndarray) -> np.ndarray:
        """Ids at order n of the n-grams (context, word), -1 where unseen or the context is -1."""
        keys = self._orders[n - 1].keys
        found = np.full(len(context_ids), -1, dtype=np.int64)
        if len(keys) == 0:  # e.g. a 5-gram model trained on sentences of one or two words
            return found
        known_context = context_ids >= 0
        queries = context_ids[known_context] * len(self._word_ids) + word_ids[known_context]
        slots = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
        found[known_context] = np.where(keys[slots] == queries, slots, -1)
        return found

    def _log_probs(
        self, tokens: np.ndarray, positions: np.ndarray, predicted: np.ndarray
    ) -> np.ndarray:
        """Log probability of the tokens at indices ``predicted``, each given the tokens before
        it in its segment (``positions`` counts from 0 at a segment's first token): SRILM's
        backoff lookup, done for all tokens at once."""
        result = np.zeros(len(predicted))
        skipped_backoff = np.zeros(len(predicted))
        ids_at = np.zeros(len(tokens), dtype=np.int64)  # order 0: the empty context
        for n in range(1, self.order + 1):
            order = self._orders[n - 1]
            valid = np.flatnonzero(positions >= n - 1)
            context_ids = ids_at[valid - 1] if n > 1 else np.zeros(len(valid), dtype=np.int64)
            ids_at = np.full(len(tokens), -1, dtype=np.int64)
            ids_at[valid] = self._lookup(n, context_ids, tokens[valid])

            # The longest n-gram seen in training gives the estimate; the backoff weights of
            # the even longer contexts it skipped over multiply it.
            ngram_ids = ids_at[predicted]
            seen = ngram_ids >= 0
            result[seen] = order.log_prob[ngram_ids[seen]]
            skipped_backoff[seen] = 0.0
            if n < self.order:
                # The n words before the token, if the segment has that many.
                context_as_ngram = np.where(positions[predicted] >= n, ids_at[predicted - 1], -1)
                is_context = context_as_ngram >= 0
                skipped_backoff[is_context] += order.log_backoff[context_as_ngram[is_context]]
        return result + skipped_backoff

    def _refuse_if_too_large(self, num_tokens: int, available: int | None = None) -> None:
        """A one-line error when fitting would need more memory than there is (the estimate says how much)."""
        available = available_memory() if available is None else available
        needed = num_tokens * BYTES_PER_TOKEN * self.order / 5
        if available is not None and needed > available:
            raise UserError(
                f"Kneser-Ney {self.order}-gram on {num_tokens:,} tokens needs about {needed / 2**30:.1f} GiB of "
                f"memory (~{BYTES_PER_TOKEN * self.order // 5} bytes a token, measured), more than the "
                f"{available / 2**30:.1f} GiB available; fit it on a machine with more memory, or use SRILM/KenLM "
                f"(lmplz counts on disk) for a corpus this size"
            )

    def _announce_if_long(self, what: str, num_tokens: int) -> None:
        if num_tokens > _ANNOUNCE_ABOVE_TOKENS:
            print(f"Kneser-Ney {self.order}-gram: {what} {num_tokens:,} tokens...", file=sys.stderr)


def _interpolate(
    counts: np.ndarray,
    context_ids: np.ndarray,
    predicts_event: np.ndarray,
    num_contexts: int,
    lower_prob: np.ndarray,
    discounts: tuple[float, float, float],
    vocabulary_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolated probabilities of the n-grams of one order, and each context's backoff weight.

    ``counts`` are the Kneser-Ney counts c(h w) of the n-grams, ``context_ids`` their contexts h
    (ids one order down, below ``num_contexts``), and ``lower_prob`` p(w | h') for each of them.
    Returns (p(w | h) per n-gram, backoff weight per context, whether each context has followers).
    """
    d1, d2, d3 = discounts
    discount = np.where(counts == 1, d1, np.where(counts == 2, d2, d3))
    event_contexts = context_ids[predicts_event]

    def per_context(values: np.ndarray) -> np.ndarray:
        return np.bincount(event_contexts, values[predicts_event], minlength=num_contexts)

    total = per_context(counts)  # c(h)
    observed = per_context(np.ones_like(counts))  # distinct words seen after h
    discount_mass = per_context(discount)  # D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)
    has_followers = total > 0
    gamma = np.where(has_followers, discount_mass / np.where(has_followers, total, 1.0), 0.0)

    prob = np.zeros(len(counts))  # <s> is never predicted
    prob[predicts_event] = (counts - discount)[predicts_event] / total[event_contexts] + (
        gamma[event_contexts] * lower_prob[predicts_event]
    )
    backoff = gamma  # with interpolation the ARPA backoff weight is exactly gamma(h)

    # SRILM's "no backoff mass left" rule (see the module docstring).
    starved = (
        has_followers
        & (observed < vocabulary_size)
        & (per_context(prob) > 1 - _NO_MASS_LEFT)
    )
    if starved.any():
        kept = total - discount_mass  # sum over the seen words of c(h w) - D
        # The fewest extra counts k >= 0 with kept / (c(h) + k) <= 1 - epsilon.
        extra = np.maximum(0.0, np.ceil(kept / (1 - _NO_MASS_LEFT) - total))
        in_starved = predicts_event & starved[context_ids]
        starved_total = (total + extra)[context_ids[in_starved]]
        prob[in_starved] = (counts - discount)[in_starved] / starved_total
        # Backoff weight = mass left over / lower-order mass of the words not seen after h.
        left_over = 1.0 - per_context(prob)
        lower_left_over = 1.0 - per_context(lower_prob)
        backoff = backoff.copy()
        backoff[starved] = left_over[starved] / lower_left_over[starved]
    return prob, backoff, has_followers


def _modified_discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """(D1, D2, D3+) from the count-of-counts of one order (Chen & Goodman 1998, eq. 26).

    Falls back to a single unmodified-KN discount where the modified ones are undefined or not
    positive (see "Where we differ from SRILM" in the module docstring).
    """
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == k)) for k in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) > 0:
        y = n1 / (n1 + 2 * n2)
        modified = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
        if min(modified) > 0:
            return modified
    single = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else 0.5
    return (single, single, single)
