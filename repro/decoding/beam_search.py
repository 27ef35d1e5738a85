"""One batched beam search for every decoder in the suite (captioners, seq2seq, video-to-text).

The left-to-right beam search of Sutskever et al. 2014 (arXiv:1409.3215, "Decoding and Rescoring"),
also used by Vinyals et al. 2015 and Xu et al. 2015: keep the ``beam_size`` best partial hypotheses;
a hypothesis that emits ``eos`` leaves the beam for the set of finished ones and is never extended.
All batch items and their beams run as one batch of ``batch_size * beam_size`` rows.

A decoder plugs in through one function,

    step(last_tokens: LongTensor[B*beam], state) -> (log_probs: FloatTensor[B*beam, V], new_state)

where ``state`` is any nest of tuples, lists and dicts of tensors whose first dimension is B*beam
(LSTM ``(h, c)`` with the batch first, attention memories, a step counter, ...). The search
reorders every tensor in it with ``index_select`` on dimension 0 as beams are chosen. The
``initial_state`` given to ``beam_search`` has first dimension B: it is repeated for the beams.
Tensors that must not follow the beams (batch-independent ones) belong in the step function's closure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from repro.errors import UserError

Step = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]


def map_state(fn: Callable[[torch.Tensor], torch.Tensor], state: Any) -> Any:
    """Apply ``fn`` to every tensor in a nest of tuples (named ones too), lists and dicts."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, dict):
        return type(state)((key, map_state(fn, value)) for key, value in state.items())
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(map_state(fn, value) for value in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(fn, value) for value in state)
    return state


def _tensors(state: Any) -> list[torch.Tensor]:
    tensors = []
    map_state(lambda tensor: tensors.append(tensor), state)
    return tensors


def ensemble_step(steps: list[Step]) -> Step:
    """A step function averaging the models' predicted distributions, as Sutskever et al. 2014 ensemble LSTMs.

    Returns log of the mean probability, log(1/M sum_m p_m), not the mean of log-probabilities (which
    would be a renormalised geometric mean). The state is the tuple of the models' states, so the
    ensemble's ``initial_state`` is ``tuple(initial states of the models)``.
    """
    def step(last_tokens: torch.Tensor, states: tuple) -> tuple[torch.Tensor, tuple]:
        outputs = [model_step(last_tokens, state) for model_step, state in zip(steps, states)]
        log_probs = torch.stack([log_probs for log_probs, _ in outputs])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(steps)), tuple(state for _, state in outputs)
    return step


def beam_search(step: Step, initial_state: Any, batch_size: int, bos: int, eos: int, beam_size: int,
                max_length: int, length_normalization: float = 0.0,
                n_best: int = 1) -> list[list[tuple[list[int], float]]]:
    """Per batch item, its ``n_best`` hypotheses as (tokens without bos/eos, score), best first.

    score = (sum of the token log-probabilities, eos included) / length ** alpha, where length counts
    the generated tokens with eos and alpha = ``length_normalization`` (0: the plain log-probability;
    1: the mean per token). Finished and running hypotheses are ranked by this score.

    A batch item is done when it has ``beam_size`` finished hypotheses none worse than its best
    running one (with alpha > 0 this compares with the running one's score at its current length, a
    heuristic: a longer continuation might still score better). After ``max_length`` steps the
    hypotheses still running are returned as they are, without eos, if they are among the best.
    """
    if beam_size < 1 or not 1 <= n_best <= beam_size or max_length < 1:
        raise UserError(f"beam search needs beam_size >= 1, 1 <= n_best <= beam_size and max_length >= 1 "
                        f"(got beam_size={beam_size}, n_best={n_best}, max_length={max_length})")
    rows, beams = batch_size * beam_size, beam_size
    tensors = _tensors(initial_state)
    if any(tensor.shape[0] != batch_size for tensor in tensors):
        raise ValueError(f"every tensor of initial_state needs first dimension batch_size={batch_size}, got "
                         f"{[tuple(tensor.shape) for tensor in tensors]}")
    device = tensors[0].device if tensors else torch.device("cpu")
    state = map_state(lambda tensor: tensor.repeat_interleave(beams, dim=0), initial_state)
    last_tokens = torch.full((rows,), bos, dtype=torch.long, device=device)
    history = torch.empty((rows, 0), dtype=torch.long, device=device)
    # Only the first beam of each item is live at the start; the others are copies at -inf.
    scores = torch.full((batch_size, beams), -math.inf, device=device)
    scores[:, 0] = 0.0
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch_size)]
    done = [False] * batch_size
    row_offset = (torch.arange(batch_size, device=device) * beams).unsqueeze(1)

    def normalized(score: float, length: int) -> float:
        return score / length ** length_normalization

    for length in range(1, max_length + 1):
        log_probs, state = step(last_tokens, state)
        if log_probs.dim() != 2 or log_probs.shape[0] != rows:
            raise ValueError(f"step must return log-probabilities of shape [{rows}, V], got {tuple(log_probs.shape)}")
        vocabulary = log_probs.shape[-1]
        candidates = (scores.unsqueeze(2) + log_probs.float().view(batch_size, beams, vocabulary)).view(batch_size, -1)
        # 2 * beams candidates always hold `beams` that do not end in eos (each beam has one eos).
        top_scores, top_index = candidates.topk(min(2 * beams, candidates.shape[1]), dim=1)
        top_beam, top_token = top_index // vocabulary, top_index % vocabulary
        ends = top_token == eos
        # As in Sutskever et al.: of the `beams` best extensions, those ending in eos leave the beam
        # finished (so beam_size 1 is greedy decoding); the beam is refilled from the rest.
        ended = [(item, rank) for item, rank in (ends & top_scores.isfinite())[:, :beams].nonzero().tolist()
                 if not done[item]]
        if ended:  # one transfer for all of them (a GPU round trip each would be slow)
            ended_scores, ended_beams = top_scores.tolist(), top_beam.tolist()
            ended_rows = [item * beams + ended_beams[item][rank] for item, rank in ended]
            for (item, rank), tokens in zip(ended, history[ended_rows].tolist()):
                finished[item].append((normalized(ended_scores[item][rank], length), tokens))
        # The next beams: the best candidates that did not end; dead (-inf) ones rank above eos ones.
        keep_key = torch.where(ends, -math.inf, top_scores.nan_to_num(neginf=torch.finfo(top_scores.dtype).min))
        chosen = keep_key.topk(beams, dim=1).indices
        scores = top_scores.gather(1, chosen)
        source_rows = (row_offset + top_beam.gather(1, chosen)).view(-1)
        last_tokens = top_token.gather(1, chosen).view(-1)
        history = torch.cat([history.index_select(0, source_rows), last_tokens.unsqueeze(1)], dim=1)
        state = map_state(lambda tensor: tensor.index_select(0, source_rows), state)
        best_running = scores[:, 0].tolist()
        for item in range(batch_size):
            finished[item].sort(key=lambda hypothesis: -hypothesis[0])
            del finished[item][beams:]
            best = normalized(best_running[item], length)
            if best == -math.inf or len(finished[item]) == beams and finished[item][-1][0] >= best:
                done[item] = True
        if all(done):
            break

    results, running_scores, running_tokens = [], scores.tolist(), history.tolist()
    for item in range(batch_size):
        pool = list(finished[item])
        if not done[item]:
            pool += [(normalized(score, length), running_tokens[item * beams + beam])
                     for beam, score in enumerate(running_scores[item]) if math.isfinite(score)]
        pool.sort(key=lambda hypothesis: -hypothesis[0])
        results.append([(tokens, score) for score, tokens in pool[:n_best]])
    return results
