"""The language-model contract: what every language model over streams of word ids shares.

The datamodules in ``datamodules/language_modeling`` give batches of (inputs, targets) [B, T]: ``B``
streams read in order, a state carried from one batch to the next, ``IGNORE_INDEX`` where a stream is
padded; every process scores the whole evaluation text. ``LanguageModelModule`` is the shared
LightningModule. A paper subclasses it, builds its model as ``self.network`` (dynamic evaluation
learns on a copy of it) and supplies:

    initial_state(batch_size, device)                  -> the state before the first word of a stream
    stream_log_prob(network, words, targets, state)    -> (log p of each target [B, T], 0 where ignored;
                                                           keep [B, T], the targets scored; the new state)
    next_word_log_probs(words, state)                  -> (log-probabilities [B, V] of the word after each
                                                           of ``words`` [B], the new state)
    dynamic_evaluation_optimizer(network)              -> the optimiser that learns on the test text

plus its training step, optimiser and schedule. Optional hooks: ``after_validation(perplexity)`` (a
schedule that reads each epoch's validation perplexity) and ``after_dynamic_update(optimizer,
updates)`` (e.g. an L2 decay after each update of dynamic evaluation).

Here, once: perplexity per word (the sentence end counted as a word) with the shared
``repro.metrics.perplexity.Perplexity`` on validation (``val/ppl``), test (``test/ppl``) and the
training epoch (``train/ppl_epoch``, summed over the processes); dynamic evaluation
(``test/ppl_dynamic``, Mikolov et al. 2010 Sec. 2.1: each block of ``bptt`` test words is scored, then
learned, on a copy of the network, when the config says ``dynamic_evaluation``); and free text for
``python -m repro sample`` (``sample_text``). The config fields read here: ``dynamic_evaluation`` and
``bptt``.
"""

from __future__ import annotations

import copy

import lightning as L
import torch
from torch import nn

from repro.config import config_from_dict, config_to_dict
from repro.language_modeling import END_OF_SENTENCE
from repro.metrics.perplexity import Perplexity
from repro.vocabulary import Vocabulary


class LanguageModelModule(L.LightningModule):
    """The shared part of every language model (see the module docstring for what a paper supplies)."""

    config_class: type

    def __init__(self, config: dict, vocabulary: dict, paper: str):
        super().__init__()
        # config and vocabulary travel inside every checkpoint; loggers get the config only (repro.app.run logs it)
        self.save_hyperparameters({"config": config, "vocabulary": vocabulary, "paper": paper}, logger=False)
        self.config = config_from_dict(self.config_class, config)
        self.vocabulary = Vocabulary.from_dict(vocabulary)
        self.end_of_sentence = self.vocabulary.index(END_OF_SENTENCE)
        # Every process scores the whole evaluation text (datamodules/language_modeling/text.py), so the sums are not
        # reduced over processes: each process already holds the full total.
        self.perplexity = nn.ModuleDict({name: Perplexity(sync_on_compute=False)
                                         for name in ("val", "test", "test_dynamic")})
        # the epoch's training words, summed over the processes (each reads its own streams)
        self.training_perplexity = Perplexity()
        self.eval_state = None
        self._word_scores: dict[str, list] = {}  # split -> [(log-probabilities, sentence ends)], during test

    @classmethod
    def from_datamodule(cls, config, datamodule) -> LanguageModelModule:
        """The paper's module for a run: its config and the datamodule's vocabulary (``make_module``)."""
        return cls(config_to_dict(config), datamodule.vocabulary.to_dict())

    # --- the paper's model ---------------------------------------------------------------------------
    def initial_state(self, batch_size: int, device: torch.device):
        raise NotImplementedError

    def stream_log_prob(self, network: nn.Module, words: torch.Tensor, targets: torch.Tensor, state):
        raise NotImplementedError

    def next_word_log_probs(self, words: torch.Tensor, state):
        raise NotImplementedError

    def dynamic_evaluation_optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def after_validation(self, perplexity: float) -> None:
        """Called after each epoch's validation (not the sanity check) with its perplexity."""

    def after_dynamic_update(self, optimizer: torch.optim.Optimizer, updates: int) -> None:
        """Called after each update of dynamic evaluation (``updates`` so far)."""

    # --- training perplexity of the epoch --------------------------------------------------------------
    def on_train_epoch_end(self) -> None:
        """Training perplexity of the epoch over the whole corpus (summed NLL / words, all processes),
        as the RNNLM toolkit prints it: scored while learning, with dropout where it is on."""
        self.log("train/ppl_epoch", float(self.training_perplexity.compute()), on_step=False, on_epoch=True,
                 sync_dist=False)
        self.training_perplexity.reset()

    def _training_sums(self) -> torch.Tensor:
        """(summed NLL, words) of the epoch so far, over every process."""
        metric = self.training_perplexity
        totals = torch.stack([metric.negative_log_likelihood, metric.tokens]).to(torch.float64)
        return self.all_gather(totals).reshape(-1, 2).sum(0) if self.trainer.world_size > 1 else totals

    # --- evaluation: per-word perplexity, <eos> counted as a word --------------------------------------
    def _score(self, name: str, network: nn.Module, words, targets, state):
        log_prob, keep, state = self.stream_log_prob(network, words, targets, state)
        self.perplexity[name].update(-log_prob.sum(), keep.sum())
        self._keep_word_scores(name, log_prob, keep, targets)
        return state

    def _keep_word_scores(self, name: str, log_prob, keep, targets) -> None:
        """The test's log-probability of each scored word, in text order, and whether it ends a sentence."""
        if name in self._word_scores:  # evaluation reads one stream: flattening keeps the text's order
            keep = keep.flatten()
            self._word_scores[name].append((log_prob.detach().flatten()[keep].double().cpu(),
                                            (targets.flatten()[keep] == self.end_of_sentence).cpu()))

    def sentence_log_probs(self, name: str) -> dict[str, list]:
        """Each test sentence's log-probability (natural log, its ``<eos>`` included) and its word count."""
        if not self._word_scores.get(name):
            return {"log_prob": [], "words": []}
        log_prob = torch.cat([scores for scores, _ in self._word_scores[name]])
        ends = torch.cat([ends for _, ends in self._word_scores[name]])
        sentence = torch.cumsum(ends.long(), 0) - ends.long()  # a word's sentence: the ends before it
        sums = torch.zeros(int(sentence[-1]) + 1, dtype=torch.float64).index_add_(0, sentence, log_prob)
        words = torch.bincount(sentence, minlength=len(sums))
        return {"log_prob": sums.tolist(), "words": words.tolist()}

    def test_predictions(self) -> dict:
        """What the test produced, for the run's predictions file (``repro rescore`` recomputes the
        perplexities from it): per-sentence log-probabilities of the test text, statically and (when the
        config asks for it) with dynamic evaluation."""
        outputs = {"test/ppl": self.sentence_log_probs("test")}
        if self.config.dynamic_evaluation:
            outputs["test/ppl_dynamic"] = self.sentence_log_probs("test_dynamic")
        return {"kind": "sentence_log_probs", "outputs": outputs}

    @torch.no_grad()
    def word_log_probs(self, loader) -> torch.Tensor:
        """The log-probability (natural log, float64) of every word ``loader``'s text scores, in text
        order, from the static network as it is now: what a combination with another model reads."""
        was_training = self.training
        self.eval()
        state, scores = None, []
        for words, targets in loader:
            words, targets = words.to(self.device), targets.to(self.device)
            if state is None:
                state = self.initial_state(words.shape[0], words.device)
            log_prob, keep, state = self.stream_log_prob(self.network, words, targets, state)
            scores.append(log_prob.flatten()[keep.flatten()].double().cpu())
        self.train(was_training)
        return torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64)

    def _perplexity(self, name: str) -> float:
        value = float(self.perplexity[name].compute())
        self.perplexity[name].reset()
        return value

    def _evaluate(self, name: str, batch) -> None:
        words, targets = batch
        if self.eval_state is None:
            self.eval_state = self.initial_state(words.shape[0], words.device)
        self.eval_state = self._score(name, self.network, words, targets, self.eval_state)

    def on_validation_epoch_start(self) -> None:
        self.eval_state = None

    def validation_step(self, batch, batch_index):
        self._evaluate("val", batch)

    def on_validation_epoch_end(self) -> None:
        perplexity = self._perplexity("val")
        # every rank scored the whole text, so every rank holds the same value
        self.log("val/ppl", perplexity, prog_bar=True, sync_dist=True)
        if not self.trainer.sanity_checking:
            self.after_validation(perplexity)

    def on_test_epoch_start(self) -> None:
        self.eval_state = None
        self._word_scores = {"test": [], "test_dynamic": []}
        if self.config.dynamic_evaluation:
            with torch.inference_mode(False):  # a copy made in inference mode could not learn
                self.dynamic_network = copy.deepcopy(self.network)
            self.dynamic_optimizer = self.dynamic_evaluation_optimizer(self.dynamic_network)
            self.dynamic_state, self.dynamic_updates = None, 0

    def test_step(self, batch, batch_index):
        self._evaluate("test", batch)
        if self.config.dynamic_evaluation:
            self._dynamic_step(*batch)

    def _dynamic_step(self, words, targets):
        """Score each block of ``bptt`` test words, then take one step on it (Mikolov et al. 2010, Sec. 2.1)."""
        network = self.dynamic_network
        if self.dynamic_state is None:
            self.dynamic_state = self.initial_state(words.shape[0], words.device)
        with torch.inference_mode(False), torch.enable_grad():
            words, targets = words.clone(), targets.clone()  # tensors made in inference mode cannot be saved
            state = self.dynamic_state.clone()
            for start in range(0, words.shape[1], self.config.bptt):
                block = slice(start, start + self.config.bptt)
                log_prob, keep, state = self.stream_log_prob(network, words[:, block], targets[:, block], state.detach())
                self.perplexity["test_dynamic"].update(-log_prob.detach().sum(), keep.sum())
                self._keep_word_scores("test_dynamic", log_prob, keep, targets[:, block])
                if keep.any():
                    self.dynamic_optimizer.zero_grad(set_to_none=True)
                    (-log_prob.sum() / keep.sum()).backward()
                    self.dynamic_optimizer.step()
                    self.dynamic_updates += 1
                    self.after_dynamic_update(self.dynamic_optimizer, self.dynamic_updates)
            self.dynamic_state = state.detach()

    def on_test_epoch_end(self) -> None:
        self.log("test/ppl", self._perplexity("test"), sync_dist=True)
        if self.config.dynamic_evaluation:
            self.log("test/ppl_dynamic", self._perplexity("test_dynamic"), sync_dist=True)

    # --- generation (python -m repro sample) ------------------------------------------------------------
    @torch.no_grad()
    def sample_text(self, sentences: int = 5, temperature: float = 1.0, seed: int = 0, max_words: int = 100) -> list[str]:
        """``sentences`` lines of free text, each word drawn from the model's distribution (sharpened or
        flattened by ``temperature``), starting after a sentence end; a line stops at ``max_words``."""
        generator = torch.Generator(device="cpu").manual_seed(seed)
        state = self.initial_state(1, self.device)
        word = torch.tensor([self.end_of_sentence], device=self.device)
        lines, current = [], []
        while len(lines) < sentences:
            log_probs, state = self.next_word_log_probs(word, state)
            log_probs = log_probs / temperature
            next_word = int(torch.multinomial(log_probs.softmax(-1).cpu(), 1, generator=generator))
            if next_word == self.end_of_sentence or len(current) >= max_words:
                lines.append(" ".join(current))
                current = []
            else:
                current.append(self.vocabulary.words[next_word])
            word = torch.tensor([next_word], device=self.device)
        return lines
