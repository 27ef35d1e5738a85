"""The feature cache: extraction, reuse without a forward pass, resume after a kill, bad images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.captioning.feature_cache import cached_features, feature_cache_path, is_complete, load_features
from repro.captioning.image_encoders import build_encoder
from repro.captioning.images import ImageLoadError, load_image
from repro.errors import UserError


@pytest.fixture(scope="module")
def encoder():
    # 64x64 inputs give a 2x2 grid: small enough that every test runs in well under a second
    return build_encoder("efficientnet-lite0", "random", image_size=64).eval()


def write_images(folder: Path, count: int) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for i in range(count):
        path = folder / f"img{i:02d}.{'png' if i % 3 == 0 else 'jpg'}"
        Image.new("RGB", (48 + 7 * i, 40), ((37 * i) % 256, (91 * i) % 256, 120)).save(path)
        images[path.stem] = path
    return images


class ForwardCounter:
    """Counts encoder forward passes; ``fail_at`` raises on that call (a simulated kill)."""

    def __init__(self, encoder, fail_at: int | None = None):
        self.calls, self.fail_at = 0, fail_at
        self.handle = encoder.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated kill")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_extracts_then_reuses_without_running_the_encoder(tmp_path, encoder, capsys):
    images = write_images(tmp_path / "images", 10)
    with ForwardCounter(encoder) as counter:
        features = cached_features("toy", images, encoder, batch_size=4, progress=False)
    assert counter.calls == 3
    assert features.ids == sorted(images) and features.index["img03"] == 3 and not features.skipped
    assert features.pooled.shape == (10, 1280) and features.pooled.dtype == torch.float32
    assert features.spatial is None and features.path == feature_cache_path("toy", images, encoder)
    # row i holds image ids[i], as the encoder computes it directly
    with torch.inference_mode():
        direct, _ = encoder(encoder.transform(load_image(images["img07"])).unsqueeze(0))
    torch.testing.assert_close(features.pooled[features.index["img07"]], direct[0], rtol=1e-4, atol=1e-5)

    capsys.readouterr()
    with ForwardCounter(encoder) as counter:
        again = cached_features("toy", images, encoder, batch_size=4, progress=False)
    assert counter.calls == 0
    assert "reusing" in capsys.readouterr().out
    torch.testing.assert_close(again.pooled, features.pooled)


@pytest.mark.usefixtures("fresh_cache")
def test_resumes_after_a_kill_and_matches_an_uninterrupted_run(tmp_path, encoder, monkeypatch, capsys):
    images = write_images(tmp_path / "images", 10)
    with ForwardCounter(encoder, fail_at=2), pytest.raises(KeyboardInterrupt):
        cached_features("toy", images, encoder, spatial=True, batch_size=4, progress=False)
    assert "interrupted after 4 of 10 images" in capsys.readouterr().err
    path = feature_cache_path("toy", images, encoder)
    assert not is_complete(path) and json.loads((path / "progress.json").read_text())["done"] == 4

    with ForwardCounter(encoder) as counter:
        resumed = cached_features("toy", images, encoder, spatial=True, batch_size=4, progress=False)
    assert counter.calls == 2  # the 6 images left, in batches of 4
    assert not (path / "progress.json").exists() and not list(path.glob("*.partial.npy"))

    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "other_cache"))
    whole = cached_features("toy", images, encoder, spatial=True, batch_size=4, progress=False)
    assert whole.path != resumed.path and whole.ids == resumed.ids
    torch.testing.assert_close(resumed.pooled, whole.pooled)
    torch.testing.assert_close(resumed.spatial, whole.spatial)


def test_a_marker_without_its_partial_rows_starts_over(tmp_path, encoder, monkeypatch):
    images = write_images(tmp_path / "images", 6)
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "reference"))
    reference = cached_features("toy", images, encoder, spatial=True, batch_size=4, progress=False)
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    with ForwardCounter(encoder, fail_at=2), pytest.raises(KeyboardInterrupt):
        cached_features("toy", images, encoder, spatial=True, batch_size=4, progress=False)
    path = feature_cache_path("toy", images, encoder)
    (path / "spatial.partial.npy").unlink()  # as if killed between renaming the finished files
    with ForwardCounter(encoder) as counter:
        features = cached_features("toy", images, encoder, spatial=True, batch_size=4, progress=False)
    assert counter.calls == 2
    torch.testing.assert_close(features.spatial, reference.spatial)


def test_spatial_maps_are_a_float16_memory_map(tmp_path, encoder):
    images = write_images(tmp_path / "images", 5)
    pooled_only = cached_features("toy", images, encoder, batch_size=2, progress=False)
    path = pooled_only.path
    assert is_complete(path) and not is_complete(path, spatial=True)
    with pytest.raises(UserError, match="no complete cache of spatial features"):
        load_features(path, spatial=True)

    features = cached_features("toy", images, encoder, spatial=True, batch_size=2, progress=False)
    assert features.spatial.shape == (5, 4, 1280) and features.spatial.dtype == torch.float16
    assert isinstance(np.load(path / "spatial.npy", mmap_mode="r"), np.memmap)
    # the pooled vector is the mean over the h*w locations (up to float16 rounding)
    torch.testing.assert_close(features.spatial.float().mean(1), features.pooled, rtol=1e-2, atol=1e-2)
    # a spatial cache also answers a pooled-only request
    assert load_features(path).spatial is None and is_complete(path)


def test_corrupt_and_missing_images_are_named_counted_and_left_out(tmp_path, encoder, capsys):
    images = write_images(tmp_path / "images", 6)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(buffer, "JPEG")
    (tmp_path / "images" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (tmp_path / "images" / "notes.jpg").write_text("not an image")
    images |= {"truncated": tmp_path / "images" / "truncated.jpg", "notes": tmp_path / "images" / "notes.jpg",
               "gone": tmp_path / "images" / "gone.jpg"}

    features = cached_features("toy", images, encoder, batch_size=4, progress=False)
    err = capsys.readouterr().err
    assert set(features.skipped) == {"truncated", "notes", "gone"}
    assert "image file not found" in features.skipped["gone"] and "not an image" in features.skipped["notes"]
    assert "truncated" in features.skipped["truncated"]
    assert "gone.jpg" in err and "notes.jpg" in err and "3 of 9 images skipped" in err
    assert features.ids == sorted(i for i in images if i not in features.skipped)
    assert features.pooled.shape == (6, 1280)
    assert load_features(features.path).skipped == features.skipped  # recorded with the cache


def test_every_image_failing_is_a_user_error_naming_the_folder(tmp_path, encoder):
    folder = tmp_path / "broken"
    folder.mkdir()
    images = {f"x{i}": folder / f"x{i}.jpg" for i in range(3)}
    for path in images.values():
        path.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(UserError, match=f"none of the 3 images could be read.*{folder}"):
        cached_features("toy", images, encoder, progress=False)
    assert not list(feature_cache_path("toy", images, encoder).glob("*.npy"))


def test_load_image_names_the_file(tmp_path):
    with pytest.raises(ImageLoadError, match="missing.jpg: image file not found"):
        load_image(tmp_path / "missing.jpg")
    gray = tmp_path / "gray.png"
    Image.new("L", (8, 8), 128).save(gray)
    assert load_image(gray).mode == "RGB"


def test_cache_key_depends_on_dataset_images_and_encoder(tmp_path, encoder):
    images = write_images(tmp_path / "images", 3)
    base = feature_cache_path("toy", images, encoder)
    assert feature_cache_path("toy", dict(reversed(list(images.items()))), encoder) == base
    assert feature_cache_path("other", images, encoder) != base
    assert feature_cache_path("toy", {k: v for k, v in list(images.items())[:2]}, encoder) != base
    assert feature_cache_path("toy", images, build_encoder("efficientnet-lite0", "random")) != base


def test_cli_extracts_a_folder_then_reuses_it(tmp_path, capsys):
    from repro.app.cli import main

    write_images(tmp_path / "photos", 4)
    (tmp_path / "photos" / "readme.txt").write_text("not collected: only .jpg/.png")
    args = ["features", "extract", "mine", "--images", str(tmp_path / "photos"), "--weights", "random",
            "--image-size", "64", "--spatial", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 images (0 skipped): pooled (4, 1280), spatial (4, 4, 1280) float16" in out
    assert main(args) == 0 and "reusing" in capsys.readouterr().out


def test_cli_gets_a_datasets_images_from_the_caption_datamodule(tmp_path, monkeypatch, capsys):
    import repro.app.features
    from repro.app.cli import main

    images = write_images(tmp_path / "data" / "flickr8k_images", 3)
    seen = {}

    def image_files(dataset, data_root, image_dir=""):
        seen.update(dataset=dataset, root=data_root)
        return images

    monkeypatch.setattr(repro.app.features, "image_files", image_files)
    assert main(["features", "extract", "flickr8k", "--data-dir", str(tmp_path / "data"), "--weights", "random",
                 "--image-size", "64", "--batch-size", "2", "--no-progress"]) == 0
    assert seen == {"dataset": "flickr8k", "root": (tmp_path / "data").resolve()}
    assert "3 images (0 skipped)" in capsys.readouterr().out


def test_cli_bad_folder_and_encoder_are_one_line_errors(tmp_path, capsys):
    from repro.app.cli import main

    assert main(["features", "extract", "x", "--images", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: not a folder" in capsys.readouterr().err
    write_images(tmp_path / "photos", 1)
    assert main(["features", "extract", "x", "--images", str(tmp_path / "photos"), "--encoder", "vgg17"]) == 2
    assert "unknown image encoder 'vgg17'" in capsys.readouterr().err


def test_building_the_cache_leaves_the_random_generators_as_they_were(tmp_path, fresh_cache):
    """A run that extracts the features trains exactly as one that finds them cached (same seed, same numbers)."""
    from datamodules.captioning.feature_cache import cached_features
    from repro.captioning.image_encoders import build_encoder

    images = write_images(tmp_path / "images", 3)
    encoder = build_encoder("efficientnet-lite0", "random", 64)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    cached_features("rng", images, encoder, batch_size=2, progress=False)  # builds the cache
    assert torch.equal(torch.rand(3), expected)
