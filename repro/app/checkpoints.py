"""Loading a trained model from its checkpoint, whatever the paper: the checkpoint names it."""

from __future__ import annotations

from pathlib import Path

import torch

from repro.errors import UserError
from repro.registry import get_paper


def load_module(path: Path):
    if not Path(path).is_file():
        raise UserError(f"--ckpt {path}: file not found")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated or not a checkpoint at all
        raise UserError(f"--ckpt {path}: not a readable checkpoint ({type(error).__name__})") from None
    paper = saved.get("hyper_parameters", {}).get("paper") if isinstance(saved, dict) else None
    if paper is None:
        raise UserError(f"--ckpt {path}: not a repro checkpoint (no paper name in its hyper-parameters)")
    entry = get_paper(paper)
    module = entry.module_class.load_from_checkpoint(path, map_location="cpu")
    return module.eval()
