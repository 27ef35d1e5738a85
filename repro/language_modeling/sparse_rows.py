"""A row lookup (an embedding) whose gradient is coalesced: one row per distinct word of the block.

``nn.Embedding(sparse=True)`` gives a sparse gradient with one row per occurrence, which gradient
clipping and SGD each coalesce again (torch.profiler at 8 streams x 20 words: three coalesces a step,
about as long as the whole class layer). Here the backward sums the occurrences once, so the gradient is
born coalesced; dense when ``sparse`` is false (data-parallel training all-reduces dense gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class RowLookup(torch.autograd.Function):
    """weight [V, H], indices [...] -> weight[indices] [..., H]."""

    @staticmethod
    def forward(ctx, weight, indices, sparse: bool):
        ctx.save_for_backward(indices)
        ctx.shape, ctx.sparse = weight.shape, sparse
        return F.embedding(indices, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        rows, inverse = torch.unique(indices.reshape(-1), return_inverse=True)
        grad = grad.reshape(-1, ctx.shape[1])
        values = grad.new_zeros(len(rows), ctx.shape[1]).index_add_(0, inverse, grad)
        if ctx.sparse:
            return torch.sparse_coo_tensor(rows.unsqueeze(0), values, ctx.shape, is_coalesced=True,
                                           check_invariants=False), None, None
        return grad.new_zeros(ctx.shape).index_copy_(0, rows, values), None, None
