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
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_SOURCE = r"""
#include <cmath>
#include <cstdint>

// The word tables: word w is in class word_class[w] at position_in_class[w]; class c has class_size[c]
// rows of the [V, H] word layer from class_first_row[c] on.
struct Tables {
  const int64_t *word_class, *position_in_class, *class_first_row, *class_size;
};

// The rows of the classes present, in ascending order, into rows; each token's first slot among them into
// slot; returns the number of rows. class_slot is scratch of one entry per class.
extern "C" int64_t present_rows(int64_t n, const int64_t* targets, Tables tables, int64_t num_classes,
                                int64_t* class_slot, int64_t* slot, int64_t* rows) {
  for (int64_t c = 0; c < num_classes; ++c) class_slot[c] = -1;
  for (int64_t i = 0; i < n; ++i) class_slot[tables.word_class[targets[i]]] = 0;
  int64_t count = 0;
  for (int64_t c = 0; c < num_classes; ++c) {
    if (class_slot[c] < 0) continue;
    class_slot[c] = count;
    for (int64_t j = 0; j < tables.class_size[c]; ++j) rows[count + j] = tables.class_first_row[c] + j;
    count += tables.class_size[c];
  }
  for (int64_t i = 0; i < n; ++i) slot[i] = class_slot[tables.word_class[targets[i]]];
  return count;
}

// prob keeps each token's softmax over its class for the backward, token after token.
template <typename T>
static void forward(int64_t n, int64_t h, const T* hidden, const T* weight, const T* bias, const int64_t* targets,
                    Tables tables, T* prob, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = tables.word_class[targets[i]], first = tables.class_first_row[c], size = tables.class_size[c];
    const T* x = hidden + i * h;
    T max = -INFINITY;
    for (int64_t j = 0; j < size; ++j) {
      const T* w = weight + (first + j) * h;
      T dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t k = 0; k < h; ++k) dot += w[k] * x[k];
      prob[j] = dot + bias[first + j];
      if (prob[j] > max) max = prob[j];
    }
    T target = prob[tables.position_in_class[targets[i]]] - max, sum = 0;
    for (int64_t j = 0; j < size; ++j) sum += (prob[j] = std::exp(prob[j] - max));
    for (int64_t j = 0; j < size; ++j) prob[j] /= sum;
    out[i] = target - std::log(sum);
    prob += size;
  }
}

// d out[i] / d logit_j = [j == position] - p_j. grad_rows [R, H] and grad_bias [R] (zeroed) hold the rows of
// the classes present, token i's class from row slot[i] on.
template <typename T>
static void backward(int64_t n, int64_t h, const T* hidden, const T* weight, const int64_t* targets, Tables tables,
                     const T* prob, const T* grad_out, const int64_t* slot, T* grad_hidden, T* grad_rows,
                     T* grad_bias) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = tables.word_class[targets[i]], first = tables.class_first_row[c], size = tables.class_size[c];
    const int64_t position = tables.position_in_class[targets[i]];
    const T* x = hidden + i * h;
    T* gx = grad_hidden + i * h;
    for (int64_t k = 0; k < h; ++k) gx[k] = 0;
    for (int64_t j = 0; j < size; ++j) {
      const T g = grad_out[i] * ((j == position ? T(1) : T(0)) - prob[j]);
      const T* w = weight + (first + j) * h;
      T* gw = grad_rows + (slot[i] + j) * h;
#pragma omp simd
      for (int64_t k = 0; k < h; ++k) {
        gx[k] += g * w[k];
        gw[k] += g * x[k];
      }
      grad_bias[slot[i] + j] += g;
    }
    prob += size;
  }
}

#define EXPORT(T, NAME)                                                                                          \
  extern "C" void forward_##NAME(int64_t n, int64_t h, const T* hidden, const T* weight, const T* bias,         \
                                 const int64_t* targets, Tables tables, T* prob, T* out) {                      \
    forward<T>(n, h, hidden, weight, bias, targets, tables, prob, out);                                         \
  }                                                                                                              \
  extern "C" void backward_##NAME(int64_t n, int64_t h, const T* hidden, const T* weight, const int64_t* targets, \
                                  Tables tables, const T* prob, const T* grad_out, const int64_t* slot,         \
                                  T* grad_hidden, T* grad_rows, T* grad_bias) {                                 \
    backward<T>(n, h, hidden, weight, targets, tables, prob, grad_out, slot, grad_hidden, grad_rows, grad_bias); \
  }
EXPORT(float, float32)
EXPORT(double, float64)
"""


class _Tables(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("word_class", "position_in_class", "class_first_row", "class_size")]


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
    loaded.present_rows.argtypes = [size, pointer, _Tables, size, pointer, pointer, pointer]
    loaded.present_rows.restype = size
    for name in ("float32", "float64"):
        getattr(loaded, f"forward_{name}").argtypes = [size, size, pointer, pointer, pointer, pointer, _Tables,
                                                       pointer, pointer]
        getattr(loaded, f"backward_{name}").argtypes = [size, size, pointer, pointer, pointer, _Tables] + [pointer] * 6
    return loaded


def _use_native(*tensors: torch.Tensor) -> bool:
    first = tensors[0]
    return (first.device.type == "cpu" and first.dtype in (torch.float32, torch.float64)
            and all(t.device.type == "cpu" and t.dtype == first.dtype for t in tensors)
            and native_kernel() is not None)


def _pointers(*tensors: torch.Tensor) -> list[ctypes.c_void_p]:
    return [ctypes.c_void_p(t.data_ptr()) for t in tensors]


def present_rows(classes: torch.Tensor, class_first_row: torch.Tensor, class_size: torch.Tensor):
    """The rows of every class in ``classes`` (ascending, each once), and each token's first slot among them."""
    present, inverse = torch.unique(classes, return_inverse=True)
    sizes = class_size[present]
    slot_of_class = torch.cumsum(sizes, 0) - sizes
    within = torch.arange(int(sizes.sum()), device=classes.device) - torch.repeat_interleave(slot_of_class, sizes)
    rows = torch.repeat_interleave(class_first_row[present], sizes) + within
    return rows, slot_of_class[inverse]


class WordTables(NamedTuple):
    """Where each word's row is in a word layer whose rows are grouped by class (int64 tensors)."""

    word_class: torch.Tensor  # [V]
    position_in_class: torch.Tensor  # [V]: the word's row is class_first_row[its class] + this
    class_first_row: torch.Tensor  # [classes]
    class_size: torch.Tensor  # [classes]


class WithinClassLogProb(torch.autograd.Function):
    """log P(w | c(w), s) of each target word [N] given hidden [N, H], and the gradients of the word layer
    (weight [V, H], bias [V]) only on the rows of the classes present: sparse COO tensors when ``sparse``,
    else dense."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, tables: WordTables, sparse: bool):
        hidden, weight, bias, targets = hidden.contiguous(), weight.contiguous(), bias.contiguous(), targets.contiguous()
        tables = WordTables(*(table.contiguous() for table in tables))
        if _use_native(hidden, weight, bias):
            kernel = native_kernel()
            packed = _Tables(*(table.data_ptr() for table in tables))
            slot, rows = torch.empty_like(targets), torch.empty(len(weight), dtype=torch.long)
            scratch = torch.empty(len(tables.class_size), dtype=torch.long)
            count = kernel.present_rows(len(targets), targets.data_ptr(), packed, len(scratch), scratch.data_ptr(),
                                        slot.data_ptr(), rows.data_ptr())
            rows = rows[:count]
            prob = hidden.new_empty(int(tables.class_size[tables.word_class[targets]].sum()))
            out = hidden.new_empty(len(targets))
            getattr(kernel, f"forward_{_name(hidden)}")(len(targets), hidden.shape[1],
                                                        *_pointers(hidden, weight, bias, targets), packed,
                                                        *_pointers(prob, out))
        else:
            classes = tables.word_class[targets]
            rows, slot = present_rows(classes, tables.class_first_row, tables.class_size)
            out, prob = _log_prob_by_class(hidden, weight, bias, targets, tables)
        ctx.save_for_backward(hidden, weight, targets, prob, rows, slot, *tables)
        ctx.sparse = sparse
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        hidden, weight, targets, prob, rows, slot, *tables = ctx.saved_tensors
        tables = WordTables(*tables)
        grad_out = grad_out.contiguous()
        grad_rows = hidden.new_zeros(len(rows), hidden.shape[1])
        grad_bias = hidden.new_zeros(len(rows))
        if _use_native(hidden, weight, grad_out):
            grad_hidden = torch.empty_like(hidden)
            packed = _Tables(*(table.data_ptr() for table in tables))
            getattr(native_kernel(), f"backward_{_name(hidden)}")(
                len(targets), hidden.shape[1], *_pointers(hidden, weight, targets), packed,
                *_pointers(prob, grad_out, slot, grad_hidden, grad_rows, grad_bias))
        else:
            grad_hidden = _backward_by_class(hidden, weight, targets, tables, prob, grad_out, slot, grad_rows,
                                             grad_bias)
        if ctx.sparse:
            index = rows.unsqueeze(0)
            grad_weight = torch.sparse_coo_tensor(index, grad_rows, weight.shape, is_coalesced=True,
                                                  check_invariants=False)
            grad_bias = torch.sparse_coo_tensor(index, grad_bias, weight.shape[:1], is_coalesced=True,
                                                check_invariants=False)
        else:
            grad_weight = weight.new_zeros(weight.shape).index_copy_(0, rows, grad_rows)
            grad_bias = weight.new_zeros(weight.shape[0]).index_copy_(0, rows, grad_bias)
        return grad_hidden, grad_weight, grad_bias, None, None, None


def _name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _groups(targets: torch.Tensor, tables: WordTables):
    """Per class present: its rows and its tokens; and each token's offset in ``prob`` (the PyTorch path)."""
    classes = tables.word_class[targets]
    sizes = tables.class_size[classes]
    offset = torch.cumsum(sizes, 0) - sizes
    order = torch.argsort(classes, stable=True)
    present, counts = torch.unique_consecutive(classes[order], return_counts=True)
    ends = torch.cumsum(counts, 0).tolist()
    groups = []
    for c, count, end in zip(present.tolist(), counts.tolist(), ends):
        first, size = int(tables.class_first_row[c]), int(tables.class_size[c])
        tokens = order[end - count:end]
        columns = offset[tokens, None] + torch.arange(size, device=targets.device)
        groups.append((slice(first, first + size), tokens, columns))
    return groups, int(sizes.sum())


def _log_prob_by_class(hidden, weight, bias, targets, tables: WordTables):
    """The forward without the kernel: one matrix multiply per class present."""
    out = hidden.new_empty(hidden.shape[0])
    groups, total = _groups(targets, tables)
    prob = hidden.new_empty(total)
    position = tables.position_in_class[targets]
    for rows, tokens, columns in groups:
        log_prob = F.log_softmax(torch.addmm(bias[rows], hidden[tokens], weight[rows].t()), dim=-1)
        out[tokens] = log_prob.gather(1, position[tokens, None]).squeeze(1)
        prob[columns.flatten()] = log_prob.exp().flatten()
    return out, prob


def _backward_by_class(hidden, weight, targets, tables: WordTables, prob, grad_out, slot, grad_rows, grad_bias):
    """The backward without the kernel: d out / d logits = onehot(w) - softmax, per class present."""
    grad_hidden = torch.empty_like(hidden)
    groups, _ = _groups(targets, tables)
    position = tables.position_in_class[targets]
    for rows, tokens, columns in groups:
        scale = grad_out[tokens, None]
        grad_logits = prob[columns].mul(scale).scatter_add_(1, position[tokens, None], -scale).neg_()
        grad_hidden[tokens] = grad_logits @ weight[rows]
        first = int(slot[tokens[0]])
        grad_rows[first:first + grad_logits.shape[1]] += grad_logits.t() @ hidden[tokens]
        grad_bias[first:first + grad_logits.shape[1]] += grad_logits.sum(0)
    return grad_hidden
