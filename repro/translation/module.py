"""The translation contract: what every translator shares with ``datamodules/translation`` and ``repro translate``.

- ``TranslatorConfig``: the fields every translator has: the language pair and corpus, the source order
  (``reverse_source``, Sutskever et al. 2014 Sec. 3.3), vocabulary cut-offs, casing, the length limit,
  and test decoding and scoring (beam, length normalisation, source-length buckets). The datamodules
  read the data fields; a paper's config subclasses it and sets its own defaults.
- ``TranslationModule``: the shared LightningModule. A paper subclasses it and supplies its model:

      teacher_forced_logits(batch)          -> [B, T, V] logits of each target position (batch["target_input"]
                                               in, batch["target_output"] predicted)
      encode_sources(source, lengths)       -> decoder state of padded source ids [B, S] (word order as
                                               trained), first dimension = sentences (the beam reorders it)
      decoder_logits(last_tokens, state)    -> (logits [rows, V] of the next target token, new state)

  plus its training step, optimiser and schedule. Here, once: per-target-word perplexity (``</s>``
  included) in validation and test, the test's beam search, BLEU scored once over every process's
  translations (``repro.translation.scoring``), ``test_translations.txt`` and ``test_scores.json`` in
  the run directory, sacreBLEU's signatures for the run record (``self.scoring``), and what ``python -m
  repro translate`` calls: ``encode_texts`` (tokenize, reverse when trained so, encode), ``step_function``
  (one decoder step as log-probabilities, what ``ensemble_step`` averages), ``search`` and ``detokenize``.

A batch is the dict of ``datamodules.translation.parallel_text``: ``source`` [B, S] padded, ``source_lengths``
[B], ``target_input`` (``<s>`` y_1 .. y_T) and ``target_output`` (y_1 .. y_T ``</s>``) [B, T] padded, and for
the test the ``ids``, ``reference_tokens`` and ``reference_text`` of each pair.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from repro.config import NonNegativeFloat, PositiveInt, TrainingConfig, config_from_dict, config_to_dict
from repro.decoding.beam_search import beam_search
from repro.errors import UserError
from repro.files import write_atomic
from repro.metrics.perplexity import Perplexity
from repro.training.distributed import gather_for_scoring, score_once
from repro.translation.scoring import score_translations
from repro.translation.text import BOS, EOS, PAD, detokenize, encode_source, tokenize
from repro.vocabulary import Vocabulary


@dataclasses.dataclass
class TranslatorConfig(TrainingConfig):
    """Fields every translator has; a paper's config subclasses it and sets its own defaults."""

    source_language: str = "en"
    target_language: str = "fr"
    test_set: str = ""  # the corpus's test set to score on; "" is its standard one (WMT'14: newstest2014)
    corpus_dir: str = ""  # read the corpus from this folder (under the data root, or absolute), not its registered one
    reverse_source: bool = False  # feed the source words in reverse order, the target as it is
    source_vocabulary_size: PositiveInt = 160000  # the most frequent source words; others are UNK
    target_vocabulary_size: PositiveInt = 80000  # the most frequent target words; others are UNK
    min_count: PositiveInt = 1  # also drop words seen fewer times (small corpora)
    lowercase: bool = False  # lowercased runs score BLEU case-insensitively (test/*bleu_lc)
    max_length: PositiveInt = 100  # longer training pairs are dropped, longer test sources refused
    beam_size: PositiveInt = 12  # test decoding (1 is greedy)
    length_normalization: NonNegativeFloat = 0.0  # 0 ranks hypotheses by their plain log-probability
    eval_batch_size: PositiveInt = 64  # sentences decoded together (times the beam size rows)
    length_bucket_edges: tuple[int, ...] = (7, 10, 13, 17, 22, 30)  # BLEU by source length


class TranslationModule(L.LightningModule):
    """The shared part of every translator (see the module docstring for what a paper supplies)."""

    config_class: type = TranslatorConfig

    def __init__(self, config: dict, source_vocabulary: dict, target_vocabulary: dict, paper: str):
        super().__init__()
        # config and vocabularies travel inside every checkpoint; loggers get the config only (repro.app.run logs it)
        self.save_hyperparameters({"config": config, "source_vocabulary": source_vocabulary,
                                   "target_vocabulary": target_vocabulary, "paper": paper}, logger=False)
        self.config = config_from_dict(self.config_class, config)
        self.source_vocabulary = Vocabulary.from_dict(source_vocabulary)
        self.target_vocabulary = Vocabulary.from_dict(target_vocabulary)
        self.pad, self.bos, self.eos = (self.target_vocabulary.index(w) for w in (PAD, BOS, EOS))
        self.perplexity = nn.ModuleDict({name: Perplexity() for name in ("val", "test")})
        self.translations: list = []
        self.scoring: dict = {}

    @classmethod
    def from_datamodule(cls, config: TranslatorConfig, datamodule) -> TranslationModule:
        """The paper's module for a run: its config and the datamodule's vocabularies (``make_module``)."""
        return cls(config_to_dict(config), datamodule.source_vocabulary.to_dict(),
                   datamodule.target_vocabulary.to_dict())

    # --- the paper's model ---------------------------------------------------------------------------
    def teacher_forced_logits(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def encode_sources(self, source: torch.Tensor, lengths: torch.Tensor):
        raise NotImplementedError

    def decoder_logits(self, last_tokens: torch.Tensor, state):
        raise NotImplementedError

    # --- perplexity per target word (</s> included), summed over the whole set, then exp -------------
    def summed_nll(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed -log p of the batch's target tokens, their number), padding excluded."""
        logits = self.teacher_forced_logits(batch)
        nll = F.cross_entropy(logits.flatten(0, 1), batch["target_output"].flatten(), ignore_index=self.pad,
                              reduction="sum")
        return nll, (batch["target_output"] != self.pad).sum()

    def _accumulate(self, name: str, batch: dict) -> None:
        self.perplexity[name].update(*self.summed_nll(batch))

    def _perplexity(self, name: str) -> float:
        value = float(self.perplexity[name].compute())  # the sums of every process, then one exp
        self.perplexity[name].reset()
        return value

    def validation_step(self, batch, batch_index):
        self._accumulate("val", batch)

    def on_validation_epoch_end(self) -> None:
        self.log("val/ppl", self._perplexity("val"), prog_bar=True)

    # --- test: perplexity, then beam search, gathered from every rank and scored once ----------------
    def on_test_epoch_start(self) -> None:
        self.translations = []

    def test_step(self, batch, batch_index):
        self._accumulate("test", batch)
        state = self.encode_sources(batch["source"], batch["source_lengths"])
        hypotheses = self.search(state, len(batch["ids"]), int(batch["source_lengths"].max()), self.step_function(),
                                 self.config.beam_size)
        for example_id, tokens, reference, reference_text, length in zip(
                batch["ids"], hypotheses, batch["reference_tokens"], batch["reference_text"],
                batch["source_lengths"].tolist()):
            self.translations.append((example_id, (tokens, reference, reference_text, length)))

    def on_test_epoch_end(self) -> None:
        self.log("test/ppl", self._perplexity("test"))
        ids, items = zip(*self.translations) if self.translations else ((), ())
        self.test_items = gather_for_scoring(list(items), list(ids))  # (id, item), in id order
        gathered = [item for _, item in self.test_items]
        c = self.config
        scores = score_once(score_translations, gathered, c.target_language, c.length_bucket_edges, c.lowercase)
        for key, value in scores["metrics"].items():
            self.log(key, value)
        self.scoring = {"signatures": scores["signatures"]}  # into the run record (repro.app.run)
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            folder = Path(self.trainer.default_root_dir)
            if folder.is_dir():
                write_atomic(folder / "test_translations.txt", "\n".join(scores["detokenized"]) + "\n")
                write_atomic(folder / "test_scores.json", json.dumps(
                    {"metrics": scores["metrics"], "signatures": scores["signatures"]}, indent=1, sort_keys=True) + "\n")

    def test_predictions(self) -> dict:
        """What the test produced, for the run's predictions file (``repro rescore`` recomputes BLEU from it):
        each test sentence's translation (target tokens) and source length, and its reference (tokens as
        scored, and the raw text that sacreBLEU reads)."""
        return {"kind": "translations",
                "outputs": {str(i): {"tokens": list(tokens), "source_length": int(length)}
                            for i, (tokens, _, _, length) in self.test_items},
                "references": {str(i): [reference, text] for i, (_, reference, text, _) in self.test_items}}

    # --- decoding, shared by the test and `python -m repro translate` --------------------------------
    def step_function(self):
        """One decoder step as the beam search (and ``ensemble_step``) calls it: log-probabilities of the
        next target token, never padding or a second ``<s>``."""
        forbidden = [self.pad, self.bos]

        def step(last_tokens: torch.Tensor, state):
            logits, state = self.decoder_logits(last_tokens, state)
            logits[:, forbidden] = -math.inf
            return F.log_softmax(logits, dim=-1), state
        return step

    def search(self, state, batch_size: int, longest_source: int, step, beam_size: int) -> list[list[str]]:
        """The best hypothesis of each sentence as target tokens, at most twice the longest source plus 10."""
        results = beam_search(step, state, batch_size, self.bos, self.eos, beam_size,
                              max_length=2 * longest_source + 10, length_normalization=self.config.length_normalization)
        return [self.target_vocabulary.decode(hypotheses[0][0]) for hypotheses in results]

    def unknown_source(self, text: str) -> bool:
        """True when no token of ``text`` is in the source vocabulary: the encoder would read only <unk>,
        and the translation would be the model's guess for a sentence of unknown words."""
        tokens = tokenize(text, self.config.source_language, self.config.lowercase)
        return not any(token in self.source_vocabulary for token in tokens)

    def encode_texts(self, texts: list[str], first_number: int = 1):
        """Tokenize, encode (reversed when the model was trained so) and run the encoder: the beam's start
        and the longest source's length. ``first_number``: the number of ``texts[0]`` in the input (for errors)."""
        c = self.config
        sources = []
        for number, text in enumerate(texts, start=first_number):
            tokens = tokenize(text, c.source_language, c.lowercase)
            if not tokens:
                raise UserError(f"input sentence {number} is empty")
            if len(tokens) > c.max_length:
                raise UserError(f"input sentence {number} has {len(tokens)} tokens, more than this model's "
                                f"max_length={c.max_length}")
            sources.append(torch.tensor(encode_source(tokens, self.source_vocabulary, c.reverse_source)))
        lengths = torch.tensor([len(s) for s in sources])
        padded = nn.utils.rnn.pad_sequence(sources, batch_first=True, padding_value=self.pad).to(self.device)
        return self.encode_sources(padded, lengths), int(lengths.max())

    def detokenize(self, tokens: list[str]) -> str:
        return detokenize(tokens, self.config.target_language)
