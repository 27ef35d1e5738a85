"""log P(w | c(w), s): the within-class half of a class-factorised softmax, fused, with row-sparse gradients.

A class-factorised output layer (Mikolov et al., "Extensions of recurrent neural network language
model", ICASSP 2011, Sec. 4) normalises each word only over the words of its class. The word layer's
rows are stored grouped by class, so a class's rows are one contiguous slice, and a word costs
O(class size x hidden) forward and backward instead of O(vocabulary x hidden).

Where the time went before (torch.profiler on the RNNLM toolkit's schedule, one stream, 10 words an
update, hidden 200, 10k words): not in the arithmetic (a few MFLOP a step) but in work proportional to
the whole vocabulary at every update. The word layer's and the input layer's gradients were dense
[V, H] tensors: zero-filled, written in a few rows, added to the weights in full and freed again, about
two thirds of a step; the rest was a Python loop over the classes present in the batch (a graph node
and a handful of operator calls per class), which at 8 streams x 20 words is some 70 classes a step.

What this module does instead, and why:
- One call computes every token's within-class log-softmax, and one call its backward, in a small
  C++ kernel (``_SOURCE``) that walks each token's class rows in place, as the RNNLM toolkit does:
  no gather of weight rows, no padding, no per-class operator calls. It is built once per process
  with the system C++ compiler (well under a second) and called through ctypes on contiguous CPU
  tensors. A torch extension (torch.utils.cpp_extension) would need the torch headers and a minute
  of compilation; torch.compile of a loop over ragged classes recompiles per shape; padding the
  classes to one [classes, max class size] layout multiplies the work by the largest class (over a
  thousand words for the rarest words of PTB, against a mean of about 100 per token).
- The gradient of the word layer (weight and bias) is row-sparse: values only for the rows of the
  classes present, returned as a coalesced sparse COO tensor that SGD adds to those rows. Where
  sparse gradients cannot be used (several processes: NCCL cannot all-reduce them), the same values
  are scattered into a dense gradient.
- Without a compiler, on a GPU, or for other dtypes, the same function runs the per-class loop in
  PyTorch (``_log_prob_by_class``), with the same row-sparse gradients; the tests compare the two.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

_SOURCE = r"""
#include <cmath>
#include <cstdint>

// Token i's class has size[i] rows starting at first_row[i] of the [V, H] word layer; its word is
// row first_row[i] + position[i]. prob (at offset[i]) keeps the class's softmax for the backward.
template <typename T>
static void forward(int64_t n, int64_t h, const T* hidden, const T* weight, const T* bias, const int64_t* first_row,
                    const int64_t* size, const int64_t* position, const int64_t* offset, T* prob, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    const T* x = hidden + i * h;
    T* p = prob + offset[i];
    T max = -INFINITY;
    for (int64_t j = 0; j < size[i]; ++j) {
      const T* w = weight + (first_row[i] + j) * h;
      T dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t k = 0; k < h; ++k) dot += w[k] * x[k];
      p[j] = dot + bias[first_row[i] + j];
      if (p[j] > max) max = p[j];
    }
    T target = p[position[i]] - max, sum = 0;
    for (int64_t j = 0; j < size[i]; ++j) sum += (p[j] = std::exp(p[j] - max));
    for (int64_t j = 0; j < size[i]; ++j) p[j] /= sum;
    out[i] = target - std::log(sum);
  }
}

// d out[i] / d logit_j = [j == position] - p_j. grad_hidden is [n, H]; grad_rows [R, H] and
// grad_bias [R] hold the rows of the classes present, token i's class from row slot[i] on (zeroed).
template <typename T>
static void backward(int64_t n, int64_t h, const T* hidden, const T* weight, const int64_t* first_row,
                     const int64_t* size, const int64_t* position, const int64_t* offset, const T* prob,
                     const T* grad_out, const int64_t* slot, T* grad_hidden, T* grad_rows, T* grad_bias) {
  for (int64_t i = 0; i < n; ++i) {
    const T* x = hidden + i * h;
    const T* p = prob + offset[i];
    T* gx = grad_hidden + i * h;
    for (int64_t k = 0; k < h; ++k) gx[k] = 0;
    for (int64_t j = 0; j < size[i]; ++j) {
      T g = grad_out[i] * ((j == position[i] ? T(1) : T(0)) - p[j]);
      const T* w = weight + (first_row[i] + j) * h;
      T* gw = grad_rows + (slot[i] + j) * h;
#pragma omp simd
      for (int64_t k = 0; k < h; ++k) {
        gx[k] += g * w[k];
        gw[k] += g * x[k];
      }
      grad_bias[slot[i] + j] += g;
    }
  }
}

#define EXPORT(T, NAME)                                                                                        \
  extern "C" void forward_##NAME(int64_t n, int64_t h, const T* a, const T* b, const T* c, const int64_t* d,  \
                                 const int64_t* e, const int64_t* f, const int64_t* g, T* p, T* o) {         \
    forward<T>(n, h, a, b, c, d, e, f, g, p, o);                                                               \
  }                                                                                                            \
  extern "C" void backward_##NAME(int64_t n, int64_t h, const T* a, const T* b, const int64_t* d,             \
                                  const int64_t* e, const int64_t* f, const int64_t* g, const T* p,           \
                                  const T* go, const int64_t* s, T* gx, T* gw, T* gb) {                       \
    backward<T>(n, h, a, b, d, e, f, g, p, go, s, gx, gw, gb);                                                 \
  }
EXPORT(float, float32)
EXPORT(double, float64)
"""

_native = {}  # "library": the loaded kernel, or None when it could not be built
_native_lock = threading.Lock()


def native_kernel() -> ctypes.CDLL | None:
    """The compiled kernel, built on first use in a temporary directory; None without a C++ compiler."""
    with _native_lock:
        if "library" not in _native:
            _native["library"] = _build()
        return _native["library"]


def _build() -> ctypes.CDLL | None:
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory(prefix="repro-class-output-") as folder:
        source, library = Path(folder) / "class_output.cpp", Path(folder) / "class_output.so"
        source.write_text(_SOURCE)
        command = [compiler, "-O3", "-fopenmp-simd", "-shared", "-fPIC", str(source), "-o", str(library)]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=120)
            loaded = ctypes.CDLL(str(library))  # stays mapped after the file is removed
        except (OSError, subprocess.SubprocessError):
            return None
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    for name in ("float32", "float64"):
        getattr(loaded, f"forward_{name}").argtypes = [size, size] + [pointer] * 9
        getattr(loaded, f"backward_{name}").argtypes = [size, size] + [pointer] * 12
    return loaded


def _use_native(*tensors: torch.Tensor) -> bool:
    first = tensors[0]
    return (first.device.type == "cpu" and first.dtype in (torch.float32, torch.float64)
            and all(t.device.type == "cpu" and t.dtype == first.dtype for t in tensors)
            and native_kernel() is not None)


def _pointers(*tensors: torch.Tensor) -> list[ctypes.c_void_p]:
    return [ctypes.c_void_p(t.data_ptr()) for t in tensors]


def present_rows(classes: torch.Tensor, class_first_row: torch.Tensor, class_size: torch.Tensor):
    """The rows of every class in ``classes`` (sorted, each once), and each token's first slot among them."""
    present, inverse = torch.unique(classes, return_inverse=True)
    sizes = class_size[present]
    slot_of_class = torch.cumsum(sizes, 0) - sizes
    within = torch.arange(int(sizes.sum()), device=classes.device) - torch.repeat_interleave(slot_of_class, sizes)
    rows = torch.repeat_interleave(class_first_row[present], sizes) + within
    return rows, slot_of_class[inverse]


class WithinClassLogProb(torch.autograd.Function):
    """log P(w | c(w), s) per token, and its gradient only on the rows of the classes present.

    ``first_row``, ``size`` and ``position`` give each token's class rows and its word's place among
    them; ``rows`` / ``slot`` are ``present_rows``. The weight and bias gradients are
    sparse COO tensors over ``rows`` when ``sparse`` is true, else dense.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, first_row, size, position, rows, slot, sparse):
        hidden, weight, bias = hidden.contiguous(), weight.contiguous(), bias.contiguous()
        offset = torch.cumsum(size, 0) - size
        if _use_native(hidden, weight, bias):
            prob = hidden.new_empty(int(size.sum()))
            out = hidden.new_empty(hidden.shape[0])
            kernel = getattr(native_kernel(), f"forward_{str(hidden.dtype).removeprefix('torch.')}")
            kernel(hidden.shape[0], hidden.shape[1],
                   *_pointers(hidden, weight, bias, first_row, size, position, offset, prob, out))
        else:
            out, prob = _log_prob_by_class(hidden, weight, bias, first_row, size, position, offset)
        ctx.save_for_backward(hidden, weight, first_row, size, position, offset, prob, rows, slot)
        ctx.sparse = sparse
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, first_row, size, position, offset, prob, rows, slot = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_rows = hidden.new_zeros(len(rows), hidden.shape[1])
        grad_bias = hidden.new_zeros(len(rows))
        if _use_native(hidden, weight, grad_out):
            grad_hidden = torch.empty_like(hidden)
            kernel = getattr(native_kernel(), f"backward_{str(hidden.dtype).removeprefix('torch.')}")
            kernel(hidden.shape[0], hidden.shape[1], *_pointers(hidden, weight, first_row, size, position, offset,
                                                                prob, grad_out, slot, grad_hidden, grad_rows, grad_bias))
        else:
            grad_hidden = _backward_by_class(hidden, weight, first_row, size, position, offset, prob, grad_out, slot,
                                             grad_rows, grad_bias)
        if ctx.sparse:
            index = rows.unsqueeze(0)
            grad_weight = torch.sparse_coo_tensor(index, grad_rows, weight.shape, is_coalesced=True,
                                                  check_invariants=False)
            grad_bias = torch.sparse_coo_tensor(index, grad_bias, weight.shape[:1], is_coalesced=True,
                                                check_invariants=False)
        else:
            grad_weight = weight.new_zeros(weight.shape).index_copy_(0, rows, grad_rows)
            grad_bias = weight.new_zeros(weight.shape[0]).index_copy_(0, rows, grad_bias)
        return grad_hidden, grad_weight, grad_bias, None, None, None, None, None, None


def _groups(first_row: torch.Tensor, size: torch.Tensor):
    """Per class present: its rows, its tokens and their positions in the token order (the PyTorch path)."""
    order = torch.argsort(first_row, stable=True)
    present, counts = torch.unique_consecutive(first_row[order], return_counts=True)
    sizes = size[order][torch.cumsum(counts, 0) - counts]
    ends = torch.cumsum(counts, 0).tolist()
    for row, class_size, count, end in zip(present.tolist(), sizes.tolist(), counts.tolist(), ends):
        yield slice(row, row + class_size), order[end - count:end]


def _log_prob_by_class(hidden, weight, bias, first_row, size, position, offset):
    """The forward without the kernel: one matrix multiply per class present."""
    out = hidden.new_empty(hidden.shape[0])
    prob = hidden.new_empty(int(size.sum()))
    for rows, tokens in _groups(first_row, size):
        log_prob = F.log_softmax(torch.addmm(bias[rows], hidden[tokens], weight[rows].t()), dim=-1)
        out[tokens] = log_prob.gather(1, position[tokens, None]).squeeze(1)
        columns = offset[tokens, None] + torch.arange(rows.stop - rows.start, device=hidden.device)
        prob[columns.flatten()] = log_prob.exp().flatten()
    return out, prob


def _backward_by_class(hidden, weight, first_row, size, position, offset, prob, grad_out, slot, grad_rows, grad_bias):
    """The backward without the kernel: d out / d logits = onehot(w) - softmax, per class present."""
    grad_hidden = torch.empty_like(hidden)
    for rows, tokens in _groups(first_row, size):
        columns = offset[tokens, None] + torch.arange(rows.stop - rows.start, device=hidden.device)
        scale = grad_out[tokens, None]
        grad_logits = prob[columns].mul(scale).scatter_add_(1, position[tokens, None], -scale).neg_()
        grad_hidden[tokens] = grad_logits @ weight[rows]
        first = int(slot[tokens[0]])
        grad_rows[first:first + grad_logits.shape[1]] += grad_logits.t() @ hidden[tokens]
        grad_bias[first:first + grad_logits.shape[1]] += grad_logits.sum(0)
    return grad_hidden
