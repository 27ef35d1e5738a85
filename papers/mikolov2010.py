"""Recurrent neural network based language model.

Tomas Mikolov, Martin Karafiat, Lukas Burget, Jan Cernocky, Sanjeev Khudanpur. Interspeech 2010.
With the class-based output layer of Mikolov, Kombrink, Burget, Cernocky, Khudanpur, "Extensions of
recurrent neural network language model", ICASSP 2011, and the Penn Treebank numbers of Mikolov,
Deoras, Kombrink, Burget, Cernocky, "Empirical evaluation and combination of advanced language
modeling techniques", Interspeech 2011.

What this file reproduces: the Elman network of Sec. 2 (one-hot input, sigmoid hidden layer fed back,
softmax output), trained with truncated backpropagation through time and the paper's learning-rate
schedule (Sec. 2.1), the class-factorised output layer of the 2011 "Extensions" paper (Sec. 4), the
"dynamic" model that keeps learning on the test text (Sec. 2.1 and Table 1 of the 2010 paper), and
the interpolated modified Kneser-Ney 5-gram baseline (computed by ``repro.language_modeling.kneser_ney``) on PTB,
and the 2011 papers' combination of the two: the RNN and KN5 interpolated linearly word by word, the
weight chosen on validation (``interpolate_with_kn5``; ``test/ppl_rnn_kn5`` beside the thesis's 105.7).

The RNNLM toolkit's training, and how much of it this file follows (rnnlm 0.3e sources, rnnlmlib.cpp:
defaults -alpha 0.1, -beta 1e-7, -min-improvement 1.003, -bptt-block 10, -class 100, no biases):
- Per-word SGD on one stream: the output weights are updated after every word, U and W after every
  block of 10 words (``-bptt-block``) with the block's summed BPTT gradient. Here ``batch_size``
  streams are updated together every ``bptt`` words (the layout of pytorch/examples
  word_language_model). The ``toolkit`` preset is the toolkit's own pace (one stream, an update every
  10 words at its rate 0.1 per word, no clipping); it runs for hours on a 2-core CPU
  (benchmarks/mikolov2010.py), so the runs here use 8 or 32 streams.
- With minibatches the learning rate is scaled for the averaged gradient (see ``learning_rate``), the
  gradient norm is clipped, and the input vectors (the columns of U) get a larger rate than the dense
  weights (``input_learning_rate_scale``): per-word SGD moves a word's column at the full rate every
  time the word occurs, while a minibatch mean divides each occurrence's gradient by the number of
  words in the batch. Without it rare words barely learn. PTB validation perplexity after one epoch
  (hidden 200, 32 streams, clip 1): rate 30 alone 392; rate 30 with U at 20x 273; rate 15 with U at
  40x 252; rate 8 with U at 80x 237; rate 4 with U at 160x 240.
- Truncated BPTT: the toolkit propagates each word's error ``-bptt`` steps plus its distance to the
  end of its block; here each word's error goes back to the start of its ``bptt``-word window.
- L2 (``l2_regularization``, the toolkit's ``-beta``): every 10th word the toolkit shrinks the weights
  it touches by beta * alpha; here every weight every 10th update by beta * rate (the same decay per
  word, see ``Mikolov2010._l2_decay``). At the toolkit's values it is a factor 0.9991 per epoch of PTB.
- Schedule (2010 paper Sec. 2.1, ``learning_rate_schedule``): keep the rate while validation improves
  by more than 0.3%, then halve it every epoch, stop at the next epoch that improves less; an epoch
  that made validation worse is rejected and the previous weights restored (``reject_worse_epochs``).
- Dynamic evaluation updates the weights after each block of ``bptt`` test words (scored first, then
  learned), not after every single word.

Departures that change the training, not the model (each has its own row in results/mikolov2010.md):
- Dropout (``dropout``) on s(t) where it feeds the output layer, never on the recurrent connection
  that carries s(t) to s(t+1): Pachitariu & Sahani 2013 (arXiv:1301.5650) regularise RNN LMs on PTB
  with dropout; Zaremba, Sutskever & Vinyals 2014 (arXiv:1409.2329) restrict it to the non-recurrent
  connections. Off in evaluation and in dynamic evaluation.

Other corpora: WikiText-2/-103 (tokenized or raw) and any text in train/valid/test files run through
the same code, read by datamodules/language_modeling/text.py as each registered corpus says (``--data
wikitext2``, ``--data text --data-dir DIR``; ``min_count`` for a vocabulary cut-off). The ``wikitext2``
and ``wikitext103`` presets are starting points with about sqrt(V) classes, not tuned here; at 33k
words the class layer trains 4x (8 streams) to 12x (32 streams) faster than the full softmax
(benchmarks/mikolov2010.py).

What the runs show (results/mikolov2010.md; train/ppl_epoch is logged beside val/ppl): without
regularisation, 8-stream minibatch SGD overfits (training perplexity about half the validation one),
which is why a larger hidden layer alone does not help. Dropout 0.3 on the hidden-to-output
connection (the ``ptb`` preset) brings the same network, trained until the toolkit's schedule stops
it, to the published dynamic perplexity and within a fraction of a point of the static one; 0.5
underfits 200 units within the schedule.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from repro.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    TrainingConfig,
)
from repro.language_modeling import IGNORE_INDEX
from repro.language_modeling.class_output import WithinClassLogProb, WordTables
from repro.language_modeling.kneser_ney import KneserNeyLanguageModel
from repro.language_modeling.module import LanguageModelModule
from repro.language_modeling.recurrence import SigmoidRecurrence
from repro.language_modeling.sparse_rows import RowLookup
from repro.registry import BaselineResult, Claim, PaperEntry, PublishedResult, Side, register_paper
from repro.vocabulary import Vocabulary

NAME = "mikolov2010"

# The Penn Treebank numbers (test perplexity, 10k vocabulary) as Mikolov's PhD thesis ("Statistical
# language models based on neural networks", Brno 2012) reprints them from Mikolov et al. 2011,
# "Empirical evaluation and combination of advanced language modeling techniques" (Interspeech):
# Table 4.1, "Perplexity of individual models alone and after combination with the baseline language
# models", columns "individual" and "+KN5". Checked in a public copy of the thesis (Table 4.1);
# the Interspeech paper's own table could not be read here.
_PTB_TABLE = ("Mikolov 2012 (PhD thesis), Table 4.1, reprinting Mikolov et al. 2011 (Interspeech, 'Empirical "
              "evaluation and combination of advanced language modeling techniques'); checked in the thesis")
PUBLISHED = (
    PublishedResult("ptb", "test", "ppl_kn5", 141.2, "KN5 (no count cutoffs)", _PTB_TABLE),
    PublishedResult("ptb", "test", "ppl", 124.7, "RNNLM (single)", _PTB_TABLE, headline=True),
    PublishedResult("ptb", "test", "ppl_dynamic", 123.2, "RNNLM (single, dynamic)", _PTB_TABLE),
    PublishedResult("ptb", "test", "ppl_rnn_kn5", 105.7, "RNNLM + KN5 (linear interpolation)", _PTB_TABLE),
)


@dataclasses.dataclass
class Mikolov2010Config(TrainingConfig):
    hidden_size: PositiveInt = 200  # Sec. 3: "hidden layer size" is the main capacity knob; a few hundred on PTB
    output_layer: Literal["classes", "full"] = "classes"  # Extensions Sec. 4 factorises the softmax
    num_classes: PositiveInt = 100  # Extensions Sec. 4: about sqrt(vocabulary size) classes
    class_assignment: Literal["frequency", "sqrt-frequency"] = "frequency"  # Extensions Sec. 4 bins by
    # unigram frequency; the RNNLM toolkit's default bins by sqrt frequency, which balances classes
    # the vocabulary: training words seen fewer than min_count times become <unk>; 0 takes the corpus's own rule
    # (datamodules/language_modeling/wikitext.py): every word of PTB and of WikiText as released (<unk> kept), 3 for the raw
    # WikiText files (Merity et al. 2016's rule), every word of your own text
    min_count: NonNegativeInt = 0
    init_std: PositiveFloat = 0.1  # Sec. 2.1: small Gaussian noise (the toolkit sums 3 U(-0.1, 0.1) draws)
    learning_rate: PositiveFloat = 8.0  # Sec. 2.1 starts at 0.1 for per-word updates; minibatch means need more
    input_learning_rate_scale: PositiveFloat = 80.0  # U's rate relative to the rest (see the module docstring)
    min_improvement: PositiveFloat = 1.003  # Sec. 2.1 "no significant improvement"; the toolkit's threshold
    bptt: PositiveInt = 20  # truncated BPTT: words per update, state carried across updates
    eval_bptt: PositiveInt = 512  # words per evaluation chunk (the state is carried, so it does not change scores)
    dynamic_evaluation: bool = True  # also report the "dynamic" model (keeps learning on test text)
    dynamic_learning_rate: PositiveFloat = 0.1  # fixed rate while learning on the test text (Sec. 2.1)
    kneser_ney_baseline: bool = True  # also fit and report the KN5 baseline on the same data
    # and the RNN interpolated with it word by word, its weight chosen on validation (Mikolov et al. 2011)
    interpolate_kn5: bool = True
    l2_regularization: NonNegativeFloat = 1e-7  # the toolkit's -beta default: every 10th word w -= beta * alpha * w
    reject_worse_epochs: bool = True  # the toolkit restores the previous weights after a worse epoch
    # Departure (not in the toolkit; it changes training, not the model): dropout on the RNN LM's
    # hidden layer where it feeds the output, Pachitariu & Sahani 2013 (arXiv:1301.5650), only on the
    # non-recurrent connection as Zaremba et al. 2014 (arXiv:1409.2329); off in (dynamic) evaluation.
    dropout: Probability = 0.0  # on s(t) into the output layer
    max_epochs: PositiveInt = 20  # Sec. 2.1: "convergence is usually achieved after 10-20 epochs"
    batch_size: PositiveInt = 32
    gradient_clip_val: PositiveFloat | None = 1.0  # not in the paper: clipping keeps the larger minibatch rate stable

    # World-size rule (repro/training/batch_scaling.py): batch_size is the run's number of streams, split over the
    # processes, and the learning rates stay as they are, because the rates (and U's scale) are tuned
    # to the words per update (see the module docstring). Adding devices then changes only the speed:
    # 2 processes x 8 streams train exactly as 1 x 16 (tests/test_distributed_training.py).
    batch_size_scope = "global"
    world_size_rule = "batch_size streams in all, split over the processes; learning rates unchanged"


PRESETS = {
    "paper": {},
    # fits in 30 minutes on a 2-core CPU on real PTB (results/mikolov2010.md): 8 streams give 4x the
    # updates per epoch of 32, and U's rate scale follows the smaller batch (8 x 20 words per update)
    "cpu": {"hidden_size": 200, "batch_size": 8, "input_learning_rate_scale": 20.0, "max_epochs": 30,
            "max_time_minutes": 27.0},
    # Real PTB on a 2-core CPU: 8 streams (4x the updates of 32 per epoch), U's rate scale for 8 x 20
    # words per update, and dropout 0.3 on s(t) into the output layer (0.5 underfits: its row in
    # results/mikolov2010.md); the schedule ends it after about 11 epochs, under 30 minutes on one core
    "ptb": {"hidden_size": 200, "batch_size": 8, "input_learning_rate_scale": 20.0, "dropout": 0.3},
    # ablation: the ptb preset without dropout
    "ptb-no-dropout": {"hidden_size": 200, "batch_size": 8, "input_learning_rate_scale": 20.0},
    # The toolkit's own training as far as this code goes: one stream, an update every 10 words (its
    # BPTT block), its rate 0.1 per word (a mean over 10 words at rate 1.0) on every weight alike, no
    # gradient clipping. Hours on a 2-core CPU (benchmarks/mikolov2010.py gives its tokens/s).
    "toolkit": {"batch_size": 1, "bptt": 10, "learning_rate": 1.0, "input_learning_rate_scale": 1.0,
                "gradient_clip_val": None},
    # WikiText-2 (33,278 words as released, 2.1M training tokens): the ptb preset's training, with about sqrt(V)
    # classes, the toolkit's rule (Extensions Sec. 4: 182 for 33k words; 100 would leave 333 words per class on
    # average). Not tuned on WikiText (no copy was at hand here): a starting point, stopped by the schedule.
    "wikitext2": {"hidden_size": 200, "batch_size": 8, "input_learning_rate_scale": 20.0, "dropout": 0.3,
                  "num_classes": 182},
    # WikiText-103 (267,735 words, 103M training tokens): sqrt(V) = 517 classes, and the paper's 32 streams at
    # U's 80x (an epoch is 50x PTB's: meant for a GPU). KN5 off: repro.language_modeling.kneser_ney holds every n-gram of orders 1-5
    # in memory, hundreds of millions on 103M tokens (an estimate, not measured here); --set kneser_ney_baseline=true
    "wikitext103": {"hidden_size": 200, "dropout": 0.3, "num_classes": 517, "kneser_ney_baseline": False},
    # the embedded grammar (what `python -m repro run mikolov2010` trains on without real data): the
    # paper's configuration learns it in about a minute on a laptop CPU
    "sample": {},
    # seconds on a CPU: exercises every code path on the embedded sample
    "smoke": {"hidden_size": 32, "num_classes": 8, "max_epochs": 2, "batch_size": 16, "bptt": 20},
}


def assign_classes(counts: list[int], num_classes: int, method: str) -> torch.Tensor:
    """Class of each word by frequency binning (Extensions Sec. 4), as the RNNLM toolkit does.

    Words are taken most frequent first and cut into ``num_classes`` bins of (nearly) equal total
    unigram mass, or of equal total sqrt mass for ``sqrt-frequency``. Frequent words get small classes.
    """
    order = sorted(range(len(counts)), key=lambda i: -counts[i])
    mass = torch.tensor([float(counts[i]) for i in order])
    if method == "sqrt-frequency":
        mass = mass.sqrt()
    cumulative = torch.cumsum(mass, 0) / mass.sum().clamp_min(1e-12)
    # the word that pushes the cumulative mass past k/num_classes closes class k-1
    bins = torch.clamp((cumulative * num_classes).ceil().long() - 1, 0, num_classes - 1)
    classes = torch.empty(len(counts), dtype=torch.long)
    classes[torch.tensor(order)] = bins
    _, classes = torch.unique(classes, return_inverse=True)  # renumber so no class is empty
    return classes


def learning_rate_schedule(schedule: dict, valid_nll: float, min_improvement: float) -> tuple[bool, bool, bool]:
    """The toolkit's schedule (2010 paper Sec. 2.1; rnnlm trainNet), after each epoch's validation.

    ``schedule`` holds the previous epoch's validation NLL and whether halving has started; it is
    updated in place. Returns (reject, halve, stop): reject the epoch's weights when validation got
    worse (the toolkit restores the previous ones); keep the rate until an epoch improves by less than
    a factor ``min_improvement``, then halve it after every epoch; stop at the next such epoch.
    As in the toolkit, the next epoch is compared with this one's NLL even when its weights are rejected.
    """
    previous = schedule["previous_valid_nll"]
    reject = previous is not None and valid_nll > previous
    small = previous is not None and valid_nll * min_improvement > previous
    stop = small and schedule["halving"]
    schedule["halving"] = schedule["halving"] or small
    schedule["previous_valid_nll"] = valid_nll
    return reject, schedule["halving"] and not stop, stop


class FullSoftmax(nn.Module):
    """y(t) = softmax(V s(t)), Sec. 2 Eq. 3."""

    def __init__(self, hidden_size: int, vocabulary_size: int):
        super().__init__()
        self.output = nn.Linear(hidden_size, vocabulary_size)

    def log_prob(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.output(hidden), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    def log_probs_all(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.output(hidden), dim=-1)


class ClassFactorizedSoftmax(nn.Module):
    """P(w | s) = P(c(w) | s) * P(w | c(w), s), Extensions Sec. 4.

    Only the target's class is normalised over, so the cost per word is O(classes + class size)
    instead of O(vocabulary). The word rows are stored grouped by class, so a class's weights are a
    contiguous slice; ``WithinClassLogProb`` (repro.language_modeling.class_output) walks each word's
    slice in one fused call and gives the word layer a gradient only on the rows of the classes present.
    """

    sparse_gradients = True  # row-sparse gradients for the word layer (see ElmanLanguageModel.use_sparse_gradients)

    def __init__(self, hidden_size: int, word_class: torch.Tensor):
        super().__init__()
        num_classes = int(word_class.max()) + 1
        order = torch.argsort(word_class, stable=True)  # row r of word_layer holds word order[r]
        sizes = torch.bincount(word_class, minlength=num_classes)
        starts = torch.cumsum(sizes, 0) - sizes  # first row of each class
        position = torch.empty_like(word_class)
        position[order] = torch.arange(len(word_class)) - starts[word_class[order]]
        self.register_buffer("word_class", word_class)
        self.register_buffer("position_in_class", position)
        self.register_buffer("row_of_word", torch.argsort(order))
        self.register_buffer("class_first_row", starts, persistent=False)
        self.register_buffer("class_size", sizes, persistent=False)
        self.class_sizes = sizes.tolist()
        self.class_rows = [slice(start, start + size) for start, size in zip(starts.tolist(), self.class_sizes)]
        self.class_layer = nn.Linear(hidden_size, num_classes)
        self.word_layer = nn.Linear(hidden_size, len(word_class))

    def log_prob(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.numel() == 0:
            return hidden.new_zeros(0)
        classes = self.word_class[targets]
        class_log_prob = F.log_softmax(self.class_layer(hidden), dim=-1).gather(-1, classes.unsqueeze(-1)).squeeze(-1)
        tables = WordTables(self.word_class, self.position_in_class, self.class_first_row, self.class_size)
        within_class = WithinClassLogProb.apply(hidden, self.word_layer.weight, self.word_layer.bias, targets, tables,
                                                self.sparse_gradients)
        return class_log_prob + within_class

    def log_probs_all(self, hidden: torch.Tensor) -> torch.Tensor:
        """The whole distribution over the vocabulary (for sampling and tests)."""
        class_log_prob = F.log_softmax(self.class_layer(hidden), dim=-1)
        weight, bias = self.word_layer.weight, self.word_layer.bias
        within = [F.log_softmax(F.linear(hidden, weight[rows], bias[rows]), dim=-1) for rows in self.class_rows]
        by_row = torch.cat(within, dim=-1)  # columns in class-grouped order
        return by_row[..., self.row_of_word] + class_log_prob[..., self.word_class]


class ElmanLanguageModel(nn.Module):
    """s(t) = sigmoid(U w(t) + W s(t-1) + b) (Sec. 2 Eq. 1-2), then the output layer (Eq. 3).

    The recurrence is ``SigmoidRecurrence`` (repro.language_modeling.recurrence): one matrix multiply
    and one sigmoid per word forward, backpropagated through time by hand, without a graph node per
    word. U's gradient is row-sparse (the words of the block) like the class layer's word rows, so an
    update touches what the block used, as in the RNNLM toolkit, not all 10k x H weights.
    """

    def __init__(self, vocabulary_size: int, hidden_size: int, output: nn.Module, init_std: float,
                 dropout: float = 0.0):
        super().__init__()
        self.hidden_size = hidden_size
        # Dropout on s(t) into the output layer only; the state carried from s(t) to s(t+1) is never dropped
        self.dropout = dropout
        self.input_weights = nn.Embedding(vocabulary_size, hidden_size)  # U: a one-hot input times U
        self.sparse_gradients = True  # see use_sparse_gradients
        self.recurrent = nn.Linear(hidden_size, hidden_size)  # W and b
        self.output = output
        for parameter in self.parameters():
            nn.init.normal_(parameter, 0.0, init_std)

    def use_sparse_gradients(self, enabled: bool) -> None:
        """Row-sparse gradients for U and the class layer's word rows (one process), or dense ones, which
        data-parallel training can all-reduce (NCCL has no sparse all-reduce). The same values either way."""
        self.sparse_gradients = enabled
        if isinstance(self.output, ClassFactorizedSoftmax):
            self.output.sparse_gradients = enabled

    def initial_state(self, batch_size: int, device: torch.device) -> torch.Tensor:
        # Sec. 2.1: the hidden layer starts at 0.1 in the toolkit; any constant works, 0.1 matches it
        return torch.full((batch_size, self.hidden_size), 0.1, device=device)

    def forward(self, words: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """words [B, T], state s(t-1) [B, H] -> hidden layers s(1..T) [B, T, H], last state [B, H]."""
        inputs = RowLookup.apply(self.input_weights.weight, words, self.sparse_gradients) + self.recurrent.bias  # U w(t) + b
        return SigmoidRecurrence.apply(inputs, self.recurrent.weight, state)

    def log_prob(self, words: torch.Tensor, targets: torch.Tensor, state: torch.Tensor):
        """Log-probability of each target [B, T] (0 where the target is IGNORE_INDEX), and the new state."""
        hidden, state = self(words, state)
        keep = targets != IGNORE_INDEX
        flat = F.dropout(hidden, self.dropout, self.training).reshape(-1, self.hidden_size)
        # a padded position scores word 0 and is then dropped: no boolean indexing (a sync and a copy) per block
        log_prob = self.output.log_prob(flat, targets.clamp_min(0).reshape(-1)).view_as(targets)
        return torch.where(keep, log_prob, 0.0), keep, state


def build_network(config: Mikolov2010Config, vocabulary: Vocabulary) -> ElmanLanguageModel:
    if config.output_layer == "classes":
        num_classes = min(config.num_classes, len(vocabulary))
        output = ClassFactorizedSoftmax(config.hidden_size, assign_classes(vocabulary.counts, num_classes,
                                                                           config.class_assignment))
    else:
        output = FullSoftmax(config.hidden_size, len(vocabulary))
    return ElmanLanguageModel(len(vocabulary), config.hidden_size, output, config.init_std,
                              dropout=config.dropout)


class Mikolov2010(LanguageModelModule):
    """The RNN LM trained as the toolkit does; perplexity, dynamic evaluation and sampling are LanguageModelModule's."""

    config_class = Mikolov2010Config

    def __init__(self, config: dict, vocabulary: dict, paper: str = NAME):
        super().__init__(config, vocabulary, paper)
        self.network = build_network(self.config, self.vocabulary)
        self.schedule = {"previous_valid_nll": None, "halving": False}  # see learning_rate_schedule
        self.accepted_weights = None  # the weights after the last epoch that did not make validation worse
        self.state = None
        self._restored_state = None  # the carried state of a mid-epoch checkpoint, until its epoch starts
        # this process's summed training NLL and word count in the current epoch (train/ppl_epoch)
        self._restored_totals = None

    # --- the model, as LanguageModelModule needs it ------------------------------------------------
    def initial_state(self, batch_size: int, device: torch.device) -> torch.Tensor:
        return self.network.initial_state(batch_size, device)

    def stream_log_prob(self, network: ElmanLanguageModel, words, targets, state):
        return network.log_prob(words, targets, state)

    def next_word_log_probs(self, words: torch.Tensor, state):
        hidden, state = self.network(words.unsqueeze(1), state)
        return self.network.output.log_probs_all(hidden[:, -1]), state

    def dynamic_evaluation_optimizer(self, network: ElmanLanguageModel) -> torch.optim.Optimizer:
        # Sec. 2.1: a fixed rate while learning on the test text, U's scale and the L2 decay as in training
        return torch.optim.SGD(self._parameter_groups(network, self.config.dynamic_learning_rate))

    def after_dynamic_update(self, optimizer: torch.optim.Optimizer, updates: int) -> None:
        self._l2_decay(optimizer, updates)

    def setup(self, stage: str) -> None:
        # one process: row-sparse gradients of U and the word rows; several: dense ones, which DDP all-reduces
        self.network.use_sparse_gradients(self.trainer.world_size == 1)

    # --- training -------------------------------------------------------------------------------
    def _parameter_groups(self, network: ElmanLanguageModel, rate: float) -> list[dict]:
        inputs = [network.input_weights.weight]
        rest = [p for name, p in network.named_parameters() if name != "input_weights.weight"]
        return [{"params": rest, "lr": rate}, {"params": inputs, "lr": rate * self.config.input_learning_rate_scale}]

    @torch.no_grad()
    def _l2_decay(self, optimizer: torch.optim.Optimizer, updates: int) -> None:
        """The toolkit's L2 (-beta): every 10th word, w -= beta * alpha * w, alpha the per-word rate.

        Here every 10th update, w -= beta * r * w, r the update's rate: an update is a mean over N words,
        a per-word rate r / N, so per word both decay by beta * r / (10 N). (As SGD's weight_decay it
        would cost a full-size copy of every weight at every update; the effect is tiny either way: at
        the toolkit's 1e-7 and 0.1, a factor of 0.9991 over an epoch of PTB.)
        """
        if self.config.l2_regularization and updates % 10 == 0:
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    parameter.mul_(1 - self.config.l2_regularization * group["lr"])

    def configure_optimizers(self):
        return torch.optim.SGD(self._parameter_groups(self.network, self.config.learning_rate))

    def on_train_epoch_start(self) -> None:
        self.state = None  # each epoch reads the streams from their beginning

    def _first_state(self, words: torch.Tensor) -> torch.Tensor:
        """The initial state, or, in an epoch resumed from a mid-epoch checkpoint (Lightning does not call
        on_train_epoch_start then), the saved state of this process's streams. It was saved for all
        streams, so the number of processes may change between the runs."""
        restored, self._restored_state = self._restored_state, None
        if restored is not None and restored["epoch"] == self.current_epoch:
            per_process = restored["state"].shape[0] // self.trainer.world_size
            return restored["state"][self.global_rank * per_process:(self.global_rank + 1) * per_process].to(words.device)
        return self.network.initial_state(words.shape[0], words.device)

    def training_step(self, batch, batch_index):
        words, targets = batch
        if self.state is None:
            self.state = self._first_state(words)
            totals, self._restored_totals = self._restored_totals, None
            if totals is not None and totals["epoch"] == self.current_epoch and self.global_rank == 0:
                self.training_perplexity.update(*totals["totals"])  # the whole run's sums so far, kept by rank 0
        log_prob, keep, state = self.network.log_prob(words, targets, self.state.detach())
        self.state = state
        loss = -log_prob.sum() / keep.sum()
        self.training_perplexity.update(-log_prob.detach().sum(), keep.sum())
        if batch_index % self.trainer.log_every_n_steps == 0:  # a self.log costs about 1 ms on a CPU
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/ppl", loss.exp(), prog_bar=True)
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=True)
        return loss

    def optimizer_step(self, epoch, batch_index, optimizer, optimizer_closure=None) -> None:
        """The step, then the L2 decay of every 10th update, before any callback can save a checkpoint.

        (From on_train_batch_end the decay came after Lightning's checkpoint callbacks, so a checkpoint
        saved on a 10th update lacked that update's decay, and a run resumed from it lost one.) Lightning
        counts the step only after this hook returns, so this is update ``global_step + 1``.
        """
        super().optimizer_step(epoch, batch_index, optimizer, optimizer_closure)
        self._l2_decay(optimizer, self.global_step + 1)

    # --- the learning-rate schedule (Sec. 2.1), after each epoch's validation ---------------------
    def after_validation(self, perplexity: float) -> None:
        # the toolkit compares the validation log-likelihoods; over the same text that is the mean NLL
        reject, halve, stop = learning_rate_schedule(self.schedule, math.log(perplexity), self.config.min_improvement)
        if self.config.reject_worse_epochs:
            if reject and self.accepted_weights is not None:
                self.network.load_state_dict(self.accepted_weights)
            else:
                self.accepted_weights = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
        self.trainer.should_stop = self.trainer.should_stop or stop
        if halve:
            for group in self.trainer.optimizers[0].param_groups:
                group["lr"] /= 2

    # --- the schedule's state travels with checkpoints, so a resumed run halves at the same epoch --
    def on_save_checkpoint(self, checkpoint) -> None:
        checkpoint["learning_rate_schedule"] = dict(self.schedule)
        if self.accepted_weights is not None:
            checkpoint["accepted_weights"] = self.accepted_weights
        # Mid-epoch, the hidden state carried across batches is part of the training state: gather every
        # process's streams (every process runs this hook; rank 0 writes the file).
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        if self.state is not None and self.trainer.training and 0 < progress.processed < self.trainer.num_training_batches:
            gathered = self.all_gather(self.state.detach())
            checkpoint["carried_state"] = {"epoch": self.current_epoch,
                                           "state": gathered.reshape(-1, gathered.shape[-1]).cpu()}
            checkpoint["training_totals"] = {"epoch": self.current_epoch,
                                             "totals": self._training_sums().cpu()}

    def on_load_checkpoint(self, checkpoint) -> None:
        self.schedule = dict(checkpoint.get("learning_rate_schedule", self.schedule))
        self.accepted_weights = checkpoint.get("accepted_weights")
        self._restored_state = checkpoint.get("carried_state")
        self._restored_totals = checkpoint.get("training_totals")


def kneser_ney_baseline(config: Mikolov2010Config, datamodule) -> BaselineResult:
    """The paper's baseline: interpolated modified Kneser-Ney 5-gram, no count cutoffs, same text."""
    if not config.kneser_ney_baseline:
        return BaselineResult("kn5", {})
    # the words the RNN is scored on: with a vocabulary cut-off, the cut words are <unk> for both models
    text = datamodule.sentences_in_vocabulary
    model = KneserNeyLanguageModel(order=5).fit(text("train"))
    kn5 = {split: model.word_log_probs(text(split)) for split in ("valid", "test")}
    metrics = {"val/ppl_kn5": _perplexity(kn5["valid"]), "test/ppl_kn5": _perplexity(kn5["test"])}
    outputs = {"test/ppl_kn5": _sentence_log_probs(kn5["test"], text("test"))}
    trainer = getattr(datamodule, "trainer", None)
    if config.interpolate_kn5 and trainer is not None and trainer.lightning_module is not None:
        metrics_rnn_kn5, outputs_rnn_kn5 = interpolate_with_kn5(trainer.lightning_module, datamodule, kn5, text)
        metrics.update(metrics_rnn_kn5)
        outputs.update(outputs_rnn_kn5)
    return BaselineResult("kn5", metrics, outputs)


# the weights of the RNN searched on validation: every hundredth from 0 to 1
INTERPOLATION_WEIGHTS = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)


def interpolate_with_kn5(module, datamodule, kn5: dict, text) -> tuple[dict, dict]:
    """The papers' combination: the RNN and KN5 linearly interpolated word by word,
    p(w) = lambda p_rnn(w) + (1 - lambda) p_kn5(w), with the weight lambda that gives the lowest validation
    perplexity (Mikolov et al. 2011 combine models by linear interpolation with weights tuned on
    validation). The RNN is the static network the test scored (the best checkpoint)."""
    rnn = {"valid": module.word_log_probs(datamodule.val_dataloader()),
           "test": module.word_log_probs(datamodule.test_dataloader())}
    for split, scores in rnn.items():
        if len(scores) != len(kn5[split]):  # both must score the same words, <eos> included
            raise RuntimeError(f"{split}: the RNN scored {len(scores)} words and KN5 {len(kn5[split])}")

    def combined(split: str, weights: torch.Tensor) -> torch.Tensor:  # [weights, words]
        r, k = rnn[split][None, :], torch.as_tensor(kn5[split], dtype=torch.float64)[None, :]
        w = weights[:, None]
        return torch.logaddexp(torch.log(w) + r, torch.log1p(-w) + k)

    valid_nll = -combined("valid", INTERPOLATION_WEIGHTS).mean(dim=1)
    weight = INTERPOLATION_WEIGHTS[int(torch.argmin(valid_nll))]
    test = combined("test", weight[None])[0]
    metrics = {"val/ppl_rnn_kn5": math.exp(float(valid_nll.min())), "test/ppl_rnn_kn5": _perplexity(test.numpy()),
               "rnn_kn5_weight": float(weight)}
    return metrics, {"test/ppl_rnn_kn5": _sentence_log_probs(test.numpy(), text("test"))}


def _perplexity(log_probs) -> float:
    return math.exp(-math.fsum(log_probs.tolist()) / len(log_probs))


def _sentence_log_probs(log_probs, sentences) -> dict[str, list]:
    """Per-sentence sums of per-token log-probabilities (each sentence's words and its </s>), the form of
    the predictions file that ``repro rescore`` reads."""
    lengths = [len(sentence) + 1 for sentence in sentences]
    ends = list(itertools.accumulate(lengths))
    return {"log_prob": [math.fsum(log_probs[end - n:end].tolist()) for n, end in zip(lengths, ends)],
            "words": lengths}


# The paper's central claims, each as the comparison of runs that tests it (repro.app.claims judges them)
CLAIMS = (
    Claim("The RNN language model has lower perplexity than a Kneser-Ney smoothed 5-gram model on the same text",
          "Mikolov et al. 2010, abstract and results tables (the PTB comparison: Mikolov et al. 2011)",
          better=Side("test/ppl", label="RNN LM"), worse=Side("test/ppl_kn5", label="KN5 (same runs)")),
    Claim("Dynamic evaluation (training on the test text as it is read) lowers perplexity further",
          "Mikolov et al. 2010, the dynamic model and its results (page not checked)",
          better=Side("test/ppl_dynamic", label="RNN LM, dynamic"), worse=Side("test/ppl", label="RNN LM, static")),
    Claim("Linearly interpolated with KN5, the RNN language model has lower perplexity than alone",
          "Mikolov 2012 (PhD thesis), Table 4.1, column +KN5 (from Mikolov et al. 2011)",
          better=Side("test/ppl_rnn_kn5", label="RNN LM + KN5"), worse=Side("test/ppl", label="RNN LM, static")),
)


register_paper(PaperEntry(
    name=NAME,
    title="Recurrent neural network based language model",
    citation="Mikolov, Karafiat, Burget, Cernocky, Khudanpur. Interspeech 2010",
    task="language modelling",
    # PTB is the paper's; the embedded grammar is what runs without data; then any other text
    datasets=("ptb", "agreement-grammar", "wikitext2", "wikitext2-raw", "wikitext103", "wikitext103-raw", "text"),
    metrics=("test/ppl", "test/ppl_dynamic", "test/ppl_kn5", "test/ppl_rnn_kn5", "best_val/ppl", "val/ppl_kn5"),
    published=PUBLISHED,
    config_class=Mikolov2010Config,
    presets=PRESETS,
    module_class=Mikolov2010,
    make_module=Mikolov2010.from_datamodule,
    monitor=("val/ppl", "min"),
    baselines=(kneser_ney_baseline,),
    claims=CLAIMS,
))
