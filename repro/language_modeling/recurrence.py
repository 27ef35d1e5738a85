"""The Elman recurrence with a sigmoid hidden layer, backpropagated through time by hand.

s(t) = sigmoid(x(t) + W s(t-1)), x(t) the input's contribution (U w(t) + b in an RNN LM). On a CPU,
PyTorch's RNN kernels run as one graph node per operation and time step, so at the RNNLM toolkit's
blocks of 10 words their autograd bookkeeping cost more than the arithmetic (torch.profiler:
12 AddmmBackward nodes a step). Here the forward is one matrix multiply and one sigmoid per step with
no graph, and the backward a loop of three operations per step plus one matrix multiply for W's
gradient over the whole block: the same gradients (tests/test_mikolov2010.py compares them with
autograd through the equations in float64), on any device.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


class SigmoidRecurrence(torch.autograd.Function):
    """inputs x [B, T, H], weight W [H, H], state s(0) [B, H] -> s(1..T) [B, T, H], s(T) [B, H]."""

    @staticmethod
    def forward(ctx, inputs, weight, state):
        hidden = inputs.new_empty(inputs.transpose(0, 1).shape)  # time-major: each step's output is contiguous
        previous, weight_t = state, weight.t()
        for step_input, output in zip(inputs.unbind(1), hidden.unbind(0)):
            previous = torch.sigmoid(torch.addmm(step_input, previous, weight_t), out=output)
        ctx.save_for_backward(weight, state, hidden)
        return hidden.transpose(0, 1), previous.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_hidden, grad_last):
        weight, state, hidden = ctx.saved_tensors
        grad_hidden = torch.zeros_like(hidden) if grad_hidden is None else grad_hidden.transpose(0, 1)
        carry = torch.zeros_like(state) if grad_last is None else grad_last  # d loss / d s(t), from later steps
        derivative = hidden * (1 - hidden)  # sigmoid'(z) = s (1 - s)
        grad_inputs = torch.empty_like(hidden)  # d loss / d z(t)
        for grad, slope, grad_input in zip(reversed(grad_hidden.unbind(0)), reversed(derivative.unbind(0)),
                                           reversed(grad_inputs.unbind(0))):
            torch.mul(carry + grad, slope, out=grad_input)
            carry = torch.mm(grad_input, weight)  # z(t) = x(t) + s(t-1) W^T
        previous = torch.cat([state.unsqueeze(0), hidden[:-1]])  # s(t-1) for every step
        size = hidden.shape[-1]
        grad_weight = grad_inputs.reshape(-1, size).t() @ previous.reshape(-1, size)
        return grad_inputs.transpose(0, 1), grad_weight, carry
