"""The captioning contract: what every captioner (image or video) and every caption dataset share.

Four papers caption: Show and Tell (a pooled image vector), m-RNN (a pooled vector at every step),
Show, Attend and Tell (a spatial map it attends over) and video to text (a sequence of frame vectors).
They share data, decoding, scoring, examples and the ``caption`` command through the types here:

- ``Visual``: what the encoder gives for a batch of media, in the form a captioner declared it takes
  (``CaptionerConfig.visual_features``): ``pooled`` [B, D], ``spatial`` [B, L, D] (L = h*w locations,
  with the grid), or ``frames`` [B, T, D] (with each clip's number of frames). When the CNN is
  fine-tuned the datamodule gives ``images`` instead, and the module turns them into the declared kind.
- ``CaptionBatch``: media ids, their position in the split, the ``Visual``, the captions as word ids
  and, for evaluation, the raw references, the media's relative paths and any annotations (the
  embedded sample's object boxes). Everything evaluation needs arrives in the batch: a module never
  reads a datamodule's internals.
- ``EvaluationSet``: one split as a typed object (ids, references, tokens, media, pooled vectors and
  the declared visual features), what baselines such as nearest-neighbour retrieval consume.
- ``CaptionerConfig``: the fields every captioner has (encoder, vocabulary, decoding, baseline).
- ``CaptioningModule``: the shared LightningModule. A paper subclasses it and supplies its model:

      visual_context(visual)                      -> what the decoder conditions on
      caption_negative_log_likelihood(context, batch) -> [C] summed -log p of each caption's words
                                                     (<end> included, <start> not); most papers
                                                     return ``caption_nll_of_logits(logits, batch)``
      decoder_start(context)                      -> decoder state, first dimension = media
      decoder_step(last_words, state)             -> (log-probabilities [rows, V], new state)

  plus its training step and optimiser (``repro.training.optimizers.optimizer_from_config`` over
  ``parameter_groups``), and registers ``make_module=ItsModule.from_datamodule``. Validation (teacher-forced perplexity and captions scored by
  CIDEr-D/BLEU every epoch), test (beam search, coco-caption metrics over predictions gathered from
  every process), ``test_captions.json``, the record's examples and ``python -m repro caption`` are
  here, once. Optional hooks: ``example_extras`` (e.g. attention maps of the record's example
  images), ``visual_for_files`` (a video captioner decodes clips) and ``attention_of`` (an attention
  captioner's maps, which ``caption --figure`` draws).

A caption dataset registers a ``datamodules.captioning.captions.CaptionDatasetSpec`` (its reader, its image
folders, its datamodule); ``caption_datamodule`` builds whichever the registry names, so adding a
captioner or a caption dataset never edits this file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import lightning as L
import torch
import torch.nn.functional as F

from repro.captioning.image_encoders import build_encoder
from repro.captioning.images import load_image
from repro.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    TrainingConfig,
    config_from_dict,
    config_to_dict,
)
from repro.decoding.beam_search import beam_search
from repro.files import write_atomic
from repro.metrics.captions import score_captions
from repro.metrics.perplexity import Perplexity
from repro.training.distributed import gather_for_scoring, score_once
from repro.vocabulary import Vocabulary

PAD, START, END, UNKNOWN = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNKNOWN)
CAPTION_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d")
VISUAL_KINDS = ("pooled", "spatial", "frames")
EXAMPLES_IN_RECORD = 8  # the first test media of the split, with their captions, in every run record


# --- the types ---------------------------------------------------------------------------------------

@dataclass
class Visual:
    """What the encoder gives for a batch of media (rows = media)."""

    kind: str  # pooled | spatial | frames | images (fine-tuning: the module runs the CNN itself)
    features: torch.Tensor  # pooled [B, D]; spatial [B, L, D]; frames [B, T, D]; images [B, 3, H, W]
    lengths: torch.Tensor | None = None  # frames: [B] real frames of each clip (the rest is padding)
    grid: tuple[int, int] | None = None  # spatial: (h, w) of the map, L = h * w (to draw attention)

    def rows(self, index: torch.Tensor) -> "Visual":
        """The same visual input for the rows ``index`` (e.g. one row per caption)."""
        return dataclasses.replace(self, features=self.features[index],
                                   lengths=None if self.lengths is None else self.lengths[index])

    def __len__(self) -> int:
        return self.features.shape[0]


@dataclass
class CaptionBatch:
    ids: list[str]  # media ids, one per row of ``visual``
    positions: torch.Tensor  # [B] position of each medium in its split (the first ones are the record's examples)
    visual: Visual
    captions: torch.Tensor  # [C, T] <start> w1 .. wn <end> <pad>...; C >= B in evaluation (all references)
    caption_owner: torch.Tensor  # [C] the row of ``visual`` each caption belongs to
    references: list[list[str]] | None = None  # evaluation: raw reference captions of each medium
    media: list[str] | None = None  # evaluation: each medium's path relative to the dataset's media folder
    annotations: list[dict | None] | None = None  # evaluation: e.g. the embedded sample's objects and boxes


@dataclass
class EvaluationSet:
    """One split of a caption dataset as a typed object: what baselines and figures consume."""

    dataset: str
    split: str
    ids: list[str]
    references: list[list[str]]  # raw captions (what scoring compares with)
    tokens: list[list[list[str]]]  # preprocessed words of each caption (what models train on)
    media: list[str]  # paths relative to ``media_root``
    media_root: Path  # where the media are on this machine (never recorded)
    pooled: torch.Tensor  # [N, D] one vector per medium (retrieval; frames are mean-pooled)
    visual: Callable[[list[int]], Visual]  # the declared kind of visual input for some rows
    annotations: list[dict | None]

    def __len__(self) -> int:
        return len(self.ids)


@dataclasses.dataclass
class CaptionerConfig(TrainingConfig):
    """Fields every captioner has; a paper's config subclasses it and sets its own defaults."""

    encoder: str = "googlenet"  # a name in repro.captioning.image_encoders.ENCODERS
    encoder_weights: Literal["imagenet", "random"] = "imagenet"
    fine_tune_encoder: bool = False  # train the CNN end to end on images instead of cached features
    encoder_learning_rate: PositiveFloat = 1e-5  # used only when fine-tuning
    image_size: NonNegativeInt = 0  # encoder input resolution; 0 = the resolution the CNN was trained at
    image_dir: str = ""  # images folder (relative to the data root, or absolute) if not in a standard place
    min_word_count: PositiveInt = 5  # words seen fewer times in training captions become <unk>
    max_caption_length: PositiveInt = 16  # training captions cut at this many words (neuraltalk2)
    beam_size: PositiveInt = 3  # test decoding
    validation_beam_size: PositiveInt = 1  # captions scored every epoch: greedy keeps validation quick
    max_decode_length: PositiveInt = 20
    length_normalization: NonNegativeFloat = 0.0  # 0 ranks beams by plain log-probability
    nearest_neighbours: PositiveInt = 5  # k of the retrieval baseline

    # What the captioner takes from the encoder (a class attribute, not a field: it is the model's
    # architecture, not a setting): "pooled", "spatial" or "frames".
    visual_features = "pooled"
    # captions: batch_size is the whole step's batch, split over the processes (the datamodules do it)
    batch_size_scope = "global"
    world_size_rule = ("batch_size captions in all, split over the processes; learning rate unchanged "
                       "(the paper's rate is for the whole batch)")


# --- the module ----------------------------------------------------------------------------------------

class CaptioningModule(L.LightningModule):
    """The shared part of every captioner (see the module docstring for what a paper supplies)."""

    config_class: type = CaptionerConfig

    def __init__(self, config: dict, vocabulary: dict, visual_dim: int, paper: str):
        super().__init__()
        # config, vocabulary and feature size travel inside every checkpoint; loggers get the config
        # only (repro.app.run logs it), never a vocabulary
        self.save_hyperparameters({"config": config, "vocabulary": vocabulary, "visual_dim": visual_dim,
                                   "paper": paper}, logger=False)

        self.config = config_from_dict(self.config_class, config)
        self.vocabulary = Vocabulary.from_dict(vocabulary)
        self.visual_dim = visual_dim
        self.start_index, self.end_index = self.vocabulary.index(START), self.vocabulary.index(END)
        self.pad_index = self.vocabulary.index(PAD)
        self.perplexity = torch.nn.ModuleDict({split: Perplexity() for split in ("val", "test")})
        self.training_perplexity = Perplexity()
        self._restored_training_totals = None  # the epoch's sums so far, from a mid-epoch checkpoint
        self.encoder = self._build_encoder() if self.config.fine_tune_encoder else None
        self._evaluated: dict[str, list] = {"val": [], "test": []}
        self.test_outputs: dict[str, dict] = {}  # id -> caption, references, media, extras (after test)

    @classmethod
    def from_datamodule(cls, config: CaptionerConfig, datamodule) -> CaptioningModule:
        """The paper's module for a run: its config, the datamodule's vocabulary and visual feature size
        (what a paper registers as ``make_module``)."""
        return cls(config_to_dict(config), datamodule.vocabulary.to_dict(), datamodule.visual_dim)

    def _build_encoder(self):

        return build_encoder(self.config.encoder, self.config.encoder_weights, self.config.image_size or None)

    def on_fit_start(self) -> None:
        # The vocabulary is inside every checkpoint; a copy beside them serves other tools
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            write_atomic(Path(self.trainer.default_root_dir) / "vocabulary.json",
                         json.dumps(self.vocabulary.to_dict()) + "\n")

    # --- the paper's model ---------------------------------------------------------------------------
    def visual_context(self, visual: Visual):
        raise NotImplementedError

    def caption_negative_log_likelihood(self, context, batch: CaptionBatch) -> torch.Tensor:
        raise NotImplementedError

    def decoder_start(self, context):
        raise NotImplementedError

    def decoder_step(self, last_words: torch.Tensor, state):
        raise NotImplementedError

    def attention_of(self, context, captions: list[str]) -> list[dict] | None:
        """An attention captioner's maps for its captions of some media: per caption, its ``words`` and
        ``alpha`` [words, L] over the ``grid`` of the visual input (drawn by ``caption --figure``); None
        for a captioner without attention."""
        return None

    def example_extras(self, context, batch: CaptionBatch, rows: list[int], captions: list[str]) -> list[dict]:
        """Extra information recorded for the example media at ``rows`` of the batch (e.g. attention
        maps), one dict per row; called on test batches only for the record's example media."""
        return [{} for _ in rows]

    # --- helpers for subclasses ----------------------------------------------------------------------
    def prepare_visual(self, visual: Visual) -> Visual:
        """Images (when the CNN is fine-tuned) through the CNN into the declared kind; features as they are."""
        if visual.kind != "images":
            return visual
        pooled, spatial = self.encoder(visual.features)
        return visual_from_encoder(self.config_class.visual_features, pooled, spatial)

    def parameter_groups(self, network: torch.nn.Module, learning_rate: float) -> list[dict]:
        """The paper's network at its rate, and, when the CNN is fine-tuned, the CNN at its own small one."""
        groups = [{"params": list(network.parameters()), "lr": learning_rate}]
        if self.encoder is not None and self.config.fine_tune_encoder:
            groups.append({"params": list(self.encoder.parameters()), "lr": self.config.encoder_learning_rate})
        return groups

    def on_train_epoch_start(self) -> None:
        if self.encoder is not None:
            self.encoder.eval()  # fine-tune the CNN's weights, but keep ImageNet's batch-norm statistics

    def caption_word_counts(self, batch: CaptionBatch) -> torch.Tensor:
        """Words each caption's likelihood covers: its words and <end>, not <start> or padding."""
        return (batch.captions[:, 1:] != self.pad_index).sum(dim=1)

    def caption_nll_of_logits(self, logits: torch.Tensor, batch: CaptionBatch) -> torch.Tensor:
        """[C] summed -log p of each caption's words from teacher-forced logits [C, T - 1, V], where
        position t predicts ``batch.captions[:, t + 1]`` (<end> scored, padding not)."""
        nll = F.cross_entropy(logits.transpose(1, 2), batch.captions[:, 1:], ignore_index=self.pad_index,
                              reduction="none")
        return nll.sum(dim=1)

    def training_nll(self, batch: CaptionBatch) -> torch.Tensor:
        """[C] summed NLL of each training caption; adds them to the epoch's training perplexity."""
        nll = self.caption_negative_log_likelihood(self.visual_context(self.prepare_visual(batch.visual)), batch)
        self.training_perplexity.update(nll.detach().sum(), self.caption_word_counts(batch).sum())
        return nll

    def on_train_epoch_end(self) -> None:
        # the epoch's corpus perplexity on its training captions (beside val/ppl in the curves)
        if self.training_perplexity.update_called:
            self.log("train/ppl_epoch", float(self.training_perplexity.compute()))
            self.training_perplexity.reset()

    # --- the epoch's training sums travel with a mid-epoch checkpoint, so train/ppl_epoch is the whole epoch's --
    def on_save_checkpoint(self, checkpoint) -> None:
        # every process runs this hook (rank 0 writes the file): the sums of all processes, summed
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        if self.trainer.training and 0 < progress.processed < self.trainer.num_training_batches:
            metric = self.training_perplexity
            totals = torch.stack([metric.negative_log_likelihood, metric.tokens])
            if self.trainer.world_size > 1:
                totals = self.all_gather(totals).reshape(-1, 2).sum(0)
            checkpoint["training_totals"] = {"epoch": self.current_epoch, "totals": totals.cpu()}

    def on_load_checkpoint(self, checkpoint) -> None:
        self._restored_training_totals = checkpoint.get("training_totals")

    def on_train_start(self) -> None:
        # a run resumed mid-epoch: rank 0 holds the sums of the epoch so far (the metric sums over processes)
        restored, self._restored_training_totals = self._restored_training_totals, None
        if restored is not None and restored["epoch"] == self.current_epoch and self.global_rank == 0:
            self.training_perplexity.update(*restored["totals"].to(self.device))

    def words_to_text(self, words: list[int]) -> str:
        # <unk> is written as "UNK" (as neuraltalk2 does); the PTB tokenizer would split "<unk>" into pieces
        return " ".join("UNK" if self.vocabulary.words[w] == UNKNOWN else self.vocabulary.words[w] for w in words
                        if w not in (self.start_index, self.end_index, self.pad_index))

    # --- decoding ------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, context, media: int, beam_size: int) -> list[str]:
        hypotheses = beam_search(self.decoder_step, self.decoder_start(context), media, self.start_index,
                                 self.end_index, beam_size, self.config.max_decode_length,
                                 self.config.length_normalization)
        return [self.words_to_text(best[0][0]) if best else "" for best in hypotheses]

    # --- validation and test -------------------------------------------------------------------------
    def _evaluate(self, split: str, batch: CaptionBatch, beam_size: int) -> None:
        context = self.visual_context(self.prepare_visual(batch.visual))
        nll = self.caption_negative_log_likelihood(context, batch)
        self.perplexity[split].update(nll.sum(), self.caption_word_counts(batch).sum())
        captions = self.generate(context, len(batch.ids), beam_size)
        positions = batch.positions.tolist()
        extras: dict[int, dict] = {}
        if split == "test":
            rows = [row for row, position in enumerate(positions) if position < EXAMPLES_IN_RECORD]
            if rows:
                extras = dict(zip(rows, self.example_extras(context, batch, rows, [captions[r] for r in rows])))
        for row, (medium, caption) in enumerate(zip(batch.ids, captions)):
            self._evaluated[split].append((medium, {
                "caption": caption, "references": batch.references[row], "position": positions[row],
                "media": batch.media[row] if batch.media else None, **({"extras": extras[row]} if row in extras else {})}))

    def validation_step(self, batch: CaptionBatch, batch_index: int) -> None:
        self._evaluate("val", batch, self.config.validation_beam_size)

    def test_step(self, batch: CaptionBatch, batch_index: int) -> None:
        self._evaluate("test", batch, self.config.beam_size)

    def _perplexity(self, split: str) -> float:
        value = float(self.perplexity[split].compute())  # every process's sums, then one exp
        self.perplexity[split].reset()
        return value

    def _score(self, split: str, use_java: bool | None) -> tuple[dict[str, dict], dict[str, float]]:
        """Gather every process's captions, score once; returns (id -> output, {metric: value}) everywhere."""
        local = self._evaluated[split]
        self._evaluated[split] = []
        gathered = dict(gather_for_scoring([output for _, output in local], [medium for medium, _ in local]))
        scores = score_once(score_captions, {medium: output["caption"] for medium, output in gathered.items()},
                            {medium: output["references"] for medium, output in gathered.items()}, use_java)
        return gathered, {name: scores[name] for name in CAPTION_METRICS if scores.get(name) is not None}

    def on_validation_epoch_end(self) -> None:
        self.log("val/ppl", self._perplexity("val"))
        # Every epoch: the Python tokenizer (identical tokens to the Java one) and no METEOR, for speed
        _, scores = self._score("val", use_java=False)
        for name, value in scores.items():
            self.log(f"val/{name}", value, prog_bar=name in ("bleu_4", "cider_d"))

    def on_test_epoch_end(self) -> None:
        self.log("test/ppl", self._perplexity("test"))
        self.test_outputs, scores = self._score("test", use_java=None)  # Java (METEOR) when installed
        for name, value in scores.items():
            self.log(f"test/{name}", value)
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            captions = {medium: output["caption"] for medium, output in self.test_outputs.items()}
            write_atomic(Path(self.trainer.default_root_dir) / "test_captions.json",
                         json.dumps(captions, indent=1, sort_keys=True) + "\n")

    def test_predictions(self) -> dict:
        """What the test produced, for the run's predictions file (``repro rescore`` recomputes the caption
        metrics from it): each test medium's caption, and the references it was scored against."""
        return {"kind": "captions",
                "outputs": {medium: output["caption"] for medium, output in sorted(self.test_outputs.items())},
                "references": {medium: list(output["references"]) for medium, output in sorted(self.test_outputs.items())}}

    def record_examples(self, baselines: dict[str, dict[str, str]] | None = None) -> list[dict]:
        """The split's first test media with the model's caption, each baseline's and two references."""
        chosen = sorted((output["position"], medium) for medium, output in self.test_outputs.items()
                        if output["position"] < EXAMPLES_IN_RECORD)
        examples = []
        for _, medium in chosen:
            output = self.test_outputs[medium]
            examples.append({"id": medium, "media": output["media"], "generated": output["caption"],
                             "baselines": {name: captions[medium] for name, captions in (baselines or {}).items()
                                           if medium in captions},
                             "references": output["references"][:2], **output.get("extras", {})})
        return examples

    # --- captioning new files (python -m repro caption) ----------------------------------------------
    def visual_for_files(self, paths: list[Path]) -> Visual:
        """The declared visual input of some image files, through the model's encoder (or the CNN its
        cached features came from)."""

        if self.encoder is None:
            self.encoder = self._build_encoder()  # frozen: not a parameter that training saw
        encoder = self.encoder.to(self.device).eval()
        images = torch.stack([encoder.transform(load_image(Path(p))) for p in paths]).to(self.device)
        pooled, spatial = encoder(images)
        return visual_from_encoder(self.config_class.visual_features, pooled, spatial)

    @torch.no_grad()
    def caption_files(self, paths: list[Path], beam_size: int | None = None) -> list[str]:
        context = self.visual_context(self.visual_for_files(paths))
        return self.generate(context, len(paths), beam_size or self.config.beam_size)

def visual_from_encoder(kind: str, pooled: torch.Tensor, spatial: torch.Tensor) -> Visual:
    """An image encoder's output ((pooled [B, D], spatial [B, D_s, h, w])) as the declared kind."""
    if kind == "pooled":
        return Visual("pooled", pooled)
    if kind == "spatial":
        return Visual("spatial", spatial.flatten(2).transpose(1, 2), grid=tuple(spatial.shape[-2:]))
    if kind == "frames":  # one image is a clip of one frame
        return Visual("frames", pooled.unsqueeze(1), lengths=torch.ones(len(pooled), dtype=torch.long,
                                                                         device=pooled.device))
    raise ValueError(f"unknown visual kind {kind!r}; expected one of {', '.join(VISUAL_KINDS)}")
