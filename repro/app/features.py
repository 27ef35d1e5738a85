"""``python -m repro features extract``: fill the feature cache ahead of training.

Training extracts on first use anyway; running this first lets a long extraction (COCO) happen once,
resumably, with its own progress bar, on whatever device is free. ``--images FOLDER`` encodes every
.jpg/.png of a folder without a dataset (DATASET then only names the cache).
"""

from __future__ import annotations

from pathlib import Path

import torch

from datamodules.captioning.captions import image_files
from datamodules.captioning.feature_cache import cached_features
from datamodules.catalog import resolve_data_dir
from repro.captioning.image_encoders import build_encoder
from repro.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def folder_images(folder: Path) -> dict[str, Path]:
    """Image id (file name without suffix) -> file, for the images directly inside ``folder``."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"--images {folder}: not a folder")
    images = {path.stem: path for path in sorted(folder.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES}
    if not images:
        raise UserError(f"--images {folder}: no .jpg or .png files in it")
    return images


def dataset_images(dataset: str, data_dir: str | None) -> dict[str, Path]:
    root, _ = resolve_data_dir(data_dir)
    return image_files(dataset, root)


def extract(dataset: str, encoder_name: str = "efficientnet-lite0", weights: str = "imagenet",
            spatial: bool = False, data_dir: str | None = None, images_folder: Path | None = None,
            batch_size: int | None = None, num_workers: int = 0, device: str = "cpu", image_size: int | None = None,
            progress: bool = True):
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device here")
    images = folder_images(images_folder) if images_folder else dataset_images(dataset, data_dir)
    print(f"features: {len(images)} images of {dataset}; encoder {encoder_name} ({weights} weights)")
    encoder = build_encoder(encoder_name, weights, image_size)
    features = cached_features(dataset, images, encoder, spatial=spatial, batch_size=batch_size,
                               num_workers=num_workers, device=device, progress=progress)
    shapes = f"pooled {tuple(features.pooled.shape)}"
    if features.spatial is not None:
        shapes += f", spatial {tuple(features.spatial.shape)} float16"
    print(f"features: {len(features)} images ({len(features.skipped)} skipped): {shapes} in {features.path}")
    return features
