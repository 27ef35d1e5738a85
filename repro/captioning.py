"""What every image captioner in the suite shares: evaluation, decoding, and captioning new images.

A captioning paper's LightningModule subclasses :class:`CaptioningModule` and supplies only its model:

    image_context(encoder_inputs)          -> per-image context (pooled vector, or spatial features)
    caption_negative_log_likelihood(context, batch) -> [C] summed -log p of each caption's words (Eq. 13
                                              of Vinyals et al.: <end> included, <start> not)
    decoder_start(context)                 -> decoder state, first dimension = images
    decoder_step(last_words, state)        -> (log-probabilities [rows, V], new state)

and its training step and optimiser. Everything else is here, once: validation (teacher-forced
perplexity, plus captions decoded with ``validation_beam_size`` and scored by CIDEr-D and BLEU every
epoch), test (beam search with ``beam_size``, the full coco-caption metrics), predictions gathered
from every process before corpus-level scoring (``repro.distributed``), example captions for the run
record's figure, and ``caption_images`` for ``python -m repro caption``.

The config a subclass uses must have: beam_size, validation_beam_size, max_decode_length,
length_normalization, encoder, encoder_weights.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import lightning as L
import torch
from torchmetrics import SumMetric

from datamodules.captions import END, PAD, START, UNKNOWN, CaptionBatch
from repro.beam_search import beam_search
from repro.caption_metrics import score_captions
from repro.distributed import gather_for_scoring, score_once
from repro.records import write_atomic

CAPTION_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d")
EXAMPLES_IN_RECORD = 8


class CaptioningModule(L.LightningModule):
    vocabulary = None  # set by the subclass (datamodules.vocabulary.Vocabulary)

    def setup_evaluation(self) -> None:
        """Call at the end of the subclass's __init__, once ``self.vocabulary`` exists."""
        self.start_index, self.end_index = self.vocabulary.index(START), self.vocabulary.index(END)
        self.pad_index = self.vocabulary.index(PAD)
        self.negative_log_likelihood = torch.nn.ModuleDict({s: SumMetric() for s in ("val", "test")})
        self.word_count = torch.nn.ModuleDict({s: SumMetric() for s in ("val", "test")})
        self.predictions: dict[str, list] = {"val": [], "test": []}
        self.test_captions: dict[str, str] = {}

    def on_fit_start(self) -> None:
        # The vocabulary is inside every checkpoint; a copy beside them serves other tools
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            write_atomic(Path(self.trainer.default_root_dir) / "vocabulary.json",
                         json.dumps(self.vocabulary.to_dict()) + "\n")

    # --- the subclass's model ------------------------------------------------------------------------
    def image_context(self, encoder_inputs: torch.Tensor):
        raise NotImplementedError

    def caption_negative_log_likelihood(self, context, batch: CaptionBatch) -> torch.Tensor:
        raise NotImplementedError

    def decoder_start(self, context):
        raise NotImplementedError

    def decoder_step(self, last_words: torch.Tensor, state):
        raise NotImplementedError

    # --- helpers for subclasses ----------------------------------------------------------------------
    def caption_word_counts(self, batch: CaptionBatch) -> torch.Tensor:
        """Words each caption's likelihood covers: its words and <end>, not <start> or padding."""
        return (batch.captions[:, 1:] != self.pad_index).sum(dim=1)

    def words_to_text(self, words: list[int]) -> str:
        # <unk> is written as "UNK" (as neuraltalk2 does); the PTB tokenizer would split "<unk>" into pieces
        return " ".join("UNK" if self.vocabulary.words[w] == UNKNOWN else self.vocabulary.words[w] for w in words
                        if w not in (self.start_index, self.end_index, self.pad_index))

    # --- decoding ------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, context, images: int, beam_size: int) -> list[str]:
        hypotheses = beam_search(self.decoder_step, self.decoder_start(context), images, self.start_index,
                                 self.end_index, beam_size, self.config.max_decode_length,
                                 self.config.length_normalization)
        return [self.words_to_text(best[0][0]) if best else "" for best in hypotheses]

    # --- validation and test -------------------------------------------------------------------------
    def _evaluate(self, split: str, batch: CaptionBatch, beam_size: int) -> None:
        context = self.image_context(batch.encoder_inputs)
        nll = self.caption_negative_log_likelihood(context, batch)
        self.negative_log_likelihood[split].update(nll.sum())
        self.word_count[split].update(self.caption_word_counts(batch).sum())
        captions = self.generate(context, batch.encoder_inputs.shape[0], beam_size)
        images = self.trainer.datamodule.images[split]
        for position, caption in zip(batch.image_positions.tolist(), captions):
            self.predictions[split].append((images[position].image_id, caption))

    def validation_step(self, batch: CaptionBatch, batch_index: int) -> None:
        self._evaluate("val", batch, self.config.validation_beam_size)

    def test_step(self, batch: CaptionBatch, batch_index: int) -> None:
        self._evaluate("test", batch, self.config.beam_size)

    def _perplexity(self, split: str) -> float:
        nll, words = float(self.negative_log_likelihood[split].compute()), float(self.word_count[split].compute())
        self.negative_log_likelihood[split].reset()
        self.word_count[split].reset()
        return math.exp(nll / words) if nll / words < 700 else math.inf

    def _score(self, split: str, use_java: bool | None) -> dict:
        """Gather every process's captions, score once, return {metric: value} on every process."""
        local = self.predictions[split]
        self.predictions[split] = []
        gathered = dict(gather_for_scoring([caption for _, caption in local], [image for image, _ in local]))
        references = {image.image_id: image.captions for image in self.trainer.datamodule.images[split]}
        scores = score_once(score_captions, gathered, references, use_java)
        return gathered, {name: scores[name] for name in CAPTION_METRICS if scores.get(name) is not None}

    def on_validation_epoch_end(self) -> None:
        self.log("val/ppl", self._perplexity("val"), sync_dist=False)  # SumMetric already reduced
        # Every epoch: the Python tokenizer (identical tokens to the Java one) and no METEOR, for speed
        _, scores = self._score("val", use_java=False)
        for name, value in scores.items():
            self.log(f"val/{name}", value, prog_bar=name in ("bleu_4", "cider_d"))

    def on_test_epoch_end(self) -> None:
        self.log("test/ppl", self._perplexity("test"))
        self.test_captions, scores = self._score("test", use_java=None)  # Java (METEOR) when installed
        for name, value in scores.items():
            self.log(f"test/{name}", value)
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            write_atomic(Path(self.trainer.default_root_dir) / "test_captions.json",
                         json.dumps(self.test_captions, indent=1, sort_keys=True) + "\n")

    def record_examples(self) -> list[dict]:
        """A few test images with their generated, retrieved and reference captions, for the record's figure."""
        datamodule = self.trainer.datamodule
        examples = []
        for image in datamodule.images["test"][:EXAMPLES_IN_RECORD]:
            if image.image_id not in self.test_captions:
                continue
            examples.append({"image_id": image.image_id, "image": str(image.path),
                             "generated": self.test_captions[image.image_id],
                             "nearest_neighbour": datamodule.nearest_neighbour_captions.get(image.image_id),
                             "references": image.captions[:2]})
        return examples

    # --- captioning new images (python -m repro caption) ---------------------------------------------
    @torch.no_grad()
    def caption_images(self, paths: list[Path], beam_size: int | None = None) -> list[str]:
        from datamodules.feature_cache import load_image
        from repro.image_encoders import build_encoder

        encoder = getattr(self, "encoder", None) or build_encoder(self.config.encoder, self.config.encoder_weights,
                                                                 self.config.image_size or None)
        encoder = encoder.to(self.device).eval()
        images = torch.stack([encoder.transform(load_image(Path(p))) for p in paths]).to(self.device)
        pooled, spatial = encoder(images)
        inputs = images if getattr(self, "encoder", None) is not None else self.encoder_inputs_from(pooled, spatial)
        context = self.image_context(inputs)
        return self.generate(context, len(paths), beam_size or self.config.beam_size)

    def encoder_inputs_from(self, pooled: torch.Tensor, spatial: torch.Tensor) -> torch.Tensor:
        """What the datamodule would have cached for these images (pooled vectors by default)."""
        return pooled


def caption_examples_figure(records: list[dict], results_dir: Path) -> list[tuple[str, Path]]:
    """For ``repro table``: per dataset, the latest run's example test images with its captions.

    Drawn from the run record's ``examples`` (image paths and captions); a dataset whose images are
    not on this machine keeps the figure it had.
    """
    latest: dict[str, dict] = {}
    for record in records:  # oldest first
        if record.get("examples"):
            latest[record["dataset"]] = record
    written = []
    for dataset, record in sorted(latest.items()):
        examples = [e for e in record["examples"] if Path(e["image"]).is_file()]
        path = results_dir / f"{record['paper']}_{dataset}_examples.png"
        if not examples:
            if path.is_file():
                written.append((f"{dataset}: test images and captions", path))
            continue
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from repro.tables import save_figure
        from PIL import Image

        columns = 4
        rows = -(-len(examples) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.6 * rows), squeeze=False)
        for axis in axes.flat:
            axis.axis("off")
        for axis, example in zip(axes.flat, examples):
            axis.imshow(Image.open(example["image"]).convert("RGB"))
            lines = [f"model: {example['generated'] or '(empty)'}"]
            if example.get("nearest_neighbour"):
                lines.append(f"retrieval: {example['nearest_neighbour']}")
            lines += [f"human: {reference}" for reference in example["references"][:2]]
            axis.set_title("\n".join(textwrap.fill(line, 46) for line in lines), fontsize=7.5, loc="left")
        figure.suptitle(f"{record['paper']} on {dataset} test images, preset {record['preset']} "
                        f"(record {Path(record['_path']).name})", fontsize=9)
        figure.tight_layout()
        save_figure(figure, path, dpi=100)
        written.append((f"{dataset}: test images and captions", path))
    return written
