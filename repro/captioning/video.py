"""Video as a captioner sees it: frames sampled from a clip (PyAV), padded into a batch or mean-pooled."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from repro.captioning.module import Visual
from repro.errors import UserError

FRAME_STEP = 10  # Venugopalan et al. 2015: one frame in ten


class VideoDecodeError(UserError):
    """A video that cannot be decoded; the message names the file and why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def sampled_frame_indices(frame_count: int, step: int = FRAME_STEP, max_frames: int = 0) -> list[int]:
    """Indices of the frames kept from a clip of ``frame_count`` frames: 0, step, 2 step, ...; with
    ``max_frames`` > 0 and more kept than that, ``max_frames`` of them spread evenly (first and last kept)."""
    if step < 1:
        raise ValueError(f"frame step must be at least 1, not {step}")
    kept = list(range(0, frame_count, step))
    if max_frames and len(kept) > max_frames:
        if max_frames == 1:
            return [kept[(len(kept) - 1) // 2]]
        kept = [kept[round(k * (len(kept) - 1) / (max_frames - 1))] for k in range(max_frames)]
    return kept


def is_image_file(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError):
        return False


def decode_frames(path: Path, step: int = FRAME_STEP, max_frames: int = 0) -> tuple[list[int], list]:
    """The sampled frames of a video file as RGB PIL images, with their frame indices.

    Frames are counted in decoding order from 0; the sampling is ``sampled_frame_indices``.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "video file not found")
    kept, frames = [], []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(path, "no video stream in the file")
            count = 0
            for frame in container.decode(video=0):
                if count % step == 0:
                    kept.append(count)
                    frames.append(frame.to_image())
                count += 1
    except VideoDecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as error:
        raise VideoDecodeError(path, f"cannot be decoded ({type(error).__name__}: {error})") from None
    if not frames:
        raise VideoDecodeError(path, "no frames could be decoded (empty or unreadable video)")
    chosen = set(sampled_frame_indices(count, step, max_frames))
    return [i for i in kept if i in chosen], [f for i, f in zip(kept, frames) if i in chosen]


def mean_pool(frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T, D] frame vectors (zero-padded past each clip's length) -> [B, D], each clip's mean frame."""
    mask = (torch.arange(frames.shape[1], device=frames.device)[None, :] < lengths[:, None]).to(frames.dtype)
    return (frames * mask[..., None]).sum(dim=1) / lengths.clamp(min=1)[:, None].to(frames.dtype)


def pad_frames(clips: list[torch.Tensor]) -> Visual:
    """Per-clip [T_i, D] frame vectors -> Visual("frames", [B, max T, D], lengths)."""
    lengths = torch.tensor([len(clip) for clip in clips])
    return Visual("frames", pad_sequence([clip.float() for clip in clips], batch_first=True), lengths=lengths)
