"""Per-word perplexity as one torchmetrics metric, used by every paper that reports it.

Perplexity is a corpus statistic: exp(summed negative log-likelihood / number of predicted tokens)
over the whole evaluation text. It is never the mean of per-batch perplexities (batches differ in
length and exp is convex). The metric keeps the two sums as its state, so under DDP torchmetrics adds
them over the processes before the one exp; a paper whose every process already scores the whole
text (mikolov2010's single evaluation stream) builds it with ``sync_on_compute=False``.

What counts as a token is the paper's definition and is the caller's to count: mikolov2010 counts
every word and ``<eos>`` (the RNNLM toolkit's convention, which the published PTB numbers use), the
translator every target word and ``</s>``, the captioners every caption word and ``<end>``.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

# exp() of a mean NLL above this overflows float64: such a model has diverged, its perplexity is inf
_LARGEST_MEAN_NLL = 700.0


class Perplexity(Metric):
    """exp(sum of NLL in nats / sum of token counts), accumulated with ``update(nll_sum, token_count)``."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("negative_log_likelihood", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, negative_log_likelihood: torch.Tensor | float, tokens: torch.Tensor | int) -> None:
        """Add a batch: its summed NLL (nats) and how many tokens that sum covers."""
        self.negative_log_likelihood += torch.as_tensor(negative_log_likelihood, dtype=self.negative_log_likelihood.dtype,
                                                        device=self.device).detach().sum()
        self.tokens += torch.as_tensor(tokens, dtype=self.tokens.dtype, device=self.device).detach().sum()

    def compute(self) -> torch.Tensor:
        if self.tokens <= 0:
            raise ValueError("perplexity over 0 tokens is undefined: the evaluation set has no tokens")
        mean = self.negative_log_likelihood / self.tokens
        if not torch.isfinite(mean) or mean > _LARGEST_MEAN_NLL:
            return torch.tensor(float("inf"), device=self.device)  # a diverged model scores inf, not a crash
        return torch.exp(mean)
