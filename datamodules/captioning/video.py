"""Video captions: clips decoded once, frames sampled, encoded by the shared image CNNs, kept per frame.

The video flavour of ``datamodules.captioning.captions.CaptionDataModule`` (same vocabulary, preprocessing,
batching and sharding), for caption datasets whose media are video files (MSVD, the embedded
``motion`` sample). What changes is the visual input:

1. **Decoding** (PyAV, whose wheels bundle FFmpeg on every platform): every ``frame_step``-th frame
   of a clip is kept, starting with the first (Venugopalan et al. 2015 sample one frame in ten), at
   most ``max_frames`` of them, spread evenly, when that is set. The kept frames are written once as
   JPEG files under ``$REPRO_CACHE/frames/<dataset>/every<N>[-max<M>]/``, one folder per video file
   (named after the clip and a digest of its path, size and time, so a changed file is decoded anew),
   completed by a ``frames.json`` marker: a killed run resumes at the next clip. A video that cannot
   be decoded (missing, corrupt, no video stream, no frames) is named (the first few) and counted,
   and the run goes on with the rest.
2. **Encoding**: the frame files go through the shared feature cache (``datamodules.captioning.feature_cache``,
   keyed by ``<dataset>-frames``, the encoder and the frame ids), so every frame's pooled vector is
   computed once per encoder and kept: mean pooling, one frame, or any other pooling is a choice of
   the captioner (``visual_context``), never a reason to decode again.
3. **Batches**: ``Visual("frames", [B, T, D], lengths=[B])``, padded with zeros past each clip's
   length; ``evaluation_set(split).pooled`` is each clip's mean frame (what retrieval compares).

Captions-only runs (a language-only baseline, whose config says ``needs_media`` is False) read no
video at all: the clips' captions are used whether or not the videos are on this machine, and the
visual input is empty ([B, 1, 0]). They say so loudly.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from datamodules.captioning.captions import (
    SPLITS,
    CaptionDataModule,
    CaptionedImage,
    caption_dataset_spec,
    relative_media,
)
from datamodules.captioning.feature_cache import cached_features
from datamodules.catalog import cache_dir
from repro.captioning.image_encoders import describe, get_spec
from repro.captioning.module import PAD, SPECIALS, CaptionBatch, EvaluationSet, Visual
from repro.captioning.video import FRAME_STEP, VideoDecodeError, decode_frames, pad_frames
from repro.errors import UserError
from repro.files import write_atomic

NAMED_FAILURES = 5  # undecodable videos printed one per line; the rest are counted


# --- frame sampling and decoding -------------------------------------------------------------------------


# --- the frame cache: decode once, encode once per encoder -----------------------------------------------

def _file_tag(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def frame_folder(dataset: str, step: int, max_frames: int) -> Path:
    return cache_dir() / "frames" / dataset / (f"every{step}" + (f"-max{max_frames}" if max_frames else ""))


def decode_to_frame_files(dataset: str, clips: dict[str, Path], step: int, max_frames: int,
                          progress: bool = True) -> tuple[dict[str, list[tuple[str, Path]]], dict[str, str]]:
    """Decode each clip once into JPEG frame files; returns (clip id -> [(frame id, file)], clip id -> why skipped)."""
    from tqdm.auto import tqdm

    root = frame_folder(dataset, step, max_frames)
    frames: dict[str, list[tuple[str, Path]]] = {}
    failed: dict[str, str] = {}
    folders: dict[str, tuple[str, Path]] = {}

    def skip(clip: str, error: VideoDecodeError) -> None:
        failed[clip] = str(error)
        if len(failed) <= NAMED_FAILURES:
            _warn(f"skipping video: {error}")

    for clip, path in sorted(clips.items()):
        try:
            tag = _file_tag(Path(path))
        except OSError:
            skip(clip, VideoDecodeError(Path(path), "video file not found"))
            continue
        folders[clip] = (tag, root / f"{_safe(clip)}-{tag}")
    to_decode = sum(not (folder / "frames.json").is_file() for _, folder in folders.values())
    for clip, (tag, folder) in tqdm(folders.items(), desc=f"decode {dataset}", unit="clip", file=sys.stderr,
                                    disable=not progress or not to_decode):
        path, marker = Path(clips[clip]), folder / "frames.json"
        if not marker.is_file():
            try:
                indices, images = decode_frames(path, step, max_frames)
            except VideoDecodeError as error:
                skip(clip, error)
                continue
            folder.mkdir(parents=True, exist_ok=True)
            for index, image in zip(indices, images):
                image.save(folder / f"{index:06d}.jpg", quality=95)
            write_atomic(marker, json.dumps({"video": str(path), "step": step, "max_frames": max_frames,
                                             "frames": indices}))
        indices = json.loads(marker.read_text())["frames"]
        frames[clip] = [(f"{clip}@{tag}/{index:06d}", folder / f"{index:06d}.jpg") for index in indices]
    if failed:
        _warn(f"{dataset}: {len(failed)} of {len(clips)} videos could not be decoded and are left out"
              + (f" (the first {NAMED_FAILURES} named above)" if len(failed) > NAMED_FAILURES else ""))
    if not frames:
        first = failed[min(failed)] if failed else "no clips given"
        raise UserError(f"{dataset}: none of its {len(clips)} videos could be decoded; first: {first}")
    return frames, failed


@dataclass
class ClipFeatures:
    """Every kept frame's vector (``frames``, the shared cache's FeatureSet) and which rows are whose."""

    frames: object  # datamodules.captioning.feature_cache.FeatureSet of the frame files
    rows: dict[str, list[int]]  # clip id -> its frames' rows, in time order
    skipped: dict[str, str]  # clip id -> why it has no frames (undecodable video, unreadable frames)

    def clip(self, clip: str) -> torch.Tensor:
        """[T, D] the clip's frame vectors, in time order."""
        return self.frames.pooled[self.rows[clip]]

    def mean(self, clips: list[str]) -> torch.Tensor:
        """[N, D] each clip's mean frame vector."""
        return torch.stack([self.clip(clip).mean(dim=0) for clip in clips])


def clip_features(dataset: str, clips: dict[str, Path], encoder, step: int = FRAME_STEP, max_frames: int = 0,
                  device: str | torch.device = "cpu", progress: bool = True) -> ClipFeatures:
    """The encoder's pooled vector of every sampled frame of ``clips`` (id -> video file), cached."""

    frames, skipped = decode_to_frame_files(dataset, clips, step, max_frames, progress)
    files = {frame: file for clip_frames in frames.values() for frame, file in clip_frames}
    features = cached_features(f"{dataset}-frames", files, encoder, device=device, progress=progress)
    rows: dict[str, list[int]] = {}
    for clip, clip_frames in frames.items():
        kept = [features.index[frame] for frame, _ in clip_frames if frame in features.index]
        if kept:
            rows[clip] = kept
        else:
            skipped[clip] = f"{clips[clip]}: none of its frames could be read back from {clip_frames[0][1].parent}"
    return ClipFeatures(features, rows, skipped)


# --- the datamodule -------------------------------------------------------------------------------------

class VideoCaptionDataModule(CaptionDataModule):
    """A video caption dataset, its vocabulary, and its clips' cached frame vectors.

    Everything about captions, vocabulary, batch sizes and sharding is ``CaptionDataModule``'s; the
    media are clips (``images`` holds them, one ``CaptionedImage`` per clip with its video path).
    """

    def __init__(self, dataset: str, data_root: Path, encoder: str, encoder_weights: str = "imagenet",
                 batch_size: int = 32, min_word_count: int = 5, max_caption_length: int = 16, image_dir: str = "",
                 num_workers: int = 0, seed: int = 0, image_size: int | None = None, frame_step: int = FRAME_STEP,
                 max_frames: int = 0, captions_only: bool = False):
        super().__init__(dataset, data_root, encoder, encoder_weights, batch_size=batch_size,
                         min_word_count=min_word_count, max_caption_length=max_caption_length, image_dir=image_dir,
                         num_workers=num_workers, seed=seed, image_size=image_size)
        self.visual_features = "frames"
        self.frame_step, self.max_frames, self.captions_only = frame_step, max_frames, captions_only

    @classmethod
    def from_config(cls, config, dataset: str, data_root: Path) -> "VideoCaptionDataModule":
        """From a video captioner's config: a CaptionerConfig with ``frame_step`` and ``max_frames``, and
        ``needs_media`` False when the run reads captions only."""
        if config.fine_tune_encoder:
            raise UserError(f"--set fine_tune_encoder=true: {dataset} is a video dataset, whose frames are encoded "
                            f"once by the frozen CNN and cached; fine-tuning the CNN on video is not supported")
        return cls(dataset, data_root, config.encoder, config.encoder_weights, batch_size=config.batch_size,
                   min_word_count=config.min_word_count, max_caption_length=config.max_caption_length,
                   image_dir=config.image_dir, seed=config.seed, image_size=config.image_size or None,
                   frame_step=getattr(config, "frame_step", FRAME_STEP), max_frames=getattr(config, "max_frames", 0),
                   captions_only=not getattr(config, "needs_media", True))

    # -- clips and captions --------------------------------------------------------------------------
    @property
    def images(self) -> dict[str, list[CaptionedImage]]:
        """Split -> the captioned clips whose videos are present (all of them in a captions-only run)."""
        if self._images is None:
            spec = caption_dataset_spec(self.dataset)
            if self.captions_only:
                everything = spec.read_captions(self.data_root)
                present = everything
                try:
                    self._media_root = spec.media_folder(self.data_root, self.image_dir)
                except UserError:
                    self._media_root = spec.location(self.data_root) / "media-not-present"
                print(f"DATA: CAPTIONS ONLY: {self.dataset}'s {len(everything)} clips are used for their captions; "
                      f"no video is read (a run with no visual input)", flush=True)
            else:
                self._media_root = spec.media_folder(self.data_root, self.image_dir)
                everything = spec.read_all(self.data_root, self.image_dir)
                present = [clip for clip in everything if clip.path.is_file()]
                if not present:
                    raise UserError(f"{self.dataset}: none of its {len(everything)} listed videos were found "
                                    f"(e.g. {everything[0].path}); a captions-only run needs none "
                                    f"(--set visual_input=none)")
                missing = len(everything) - len(present)
                note = f"; {missing} listed video(s) are not on disk and are skipped" if missing else ""
                counts = " / ".join(f"{sum(c.split == s for c in present)} {s}" for s in SPLITS)
                print(f"DATA: {self.dataset}: {len(present)} of {len(everything)} videos found under "
                      f"{self._media_root} ({counts}){note}", flush=True)
            self._keep(everything, present)
            for split in SPLITS:
                if not self._images[split]:
                    raise UserError(f"{self.dataset}: no {split} clips are present under {self._media_root}")
        return self._images

    @property
    def visual_dim(self) -> int:
        """The size of one frame vector (0 in a captions-only run: there is no visual input)."""

        return 0 if self.captions_only else get_spec(self.encoder_name).feature_dim

    # -- frames: decoded once, encoded once per encoder ------------------------------------------------
    def _features(self, device="cpu") -> ClipFeatures:
        return clip_features(self.dataset, self._all_images(), self.encoder, self.frame_step, self.max_frames, device)

    def prepare_data(self) -> None:
        if self.captions_only:
            return

        print(f"ENCODER: {describe(self.encoder)}; frozen, the pooled vector of one frame in {self.frame_step} "
              f"computed once and cached per frame", flush=True)
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        self._features(device)

    def setup(self, stage: str | None = None) -> None:
        if self.captions_only or self.features is not None:
            return
        self.features = self._features()
        if self.features.skipped:  # undecodable clips: out of every split, counted once
            self._images = {split: [c for c in clips if c.image_id in self.features.rows]
                            for split, clips in self.images.items()}
            for split in SPLITS:
                if not self._images[split]:
                    raise UserError(f"{self.dataset}: none of its {split} videos could be decoded")

    def _visual_input(self, training: bool):
        if self.captions_only:
            return lambda clip: torch.zeros(1, 0)
        return lambda clip: self.features.clip(clip.image_id)

    def _collate(self, items: list[dict]) -> CaptionBatch:
        captions = [caption for item in items for caption in item["captions"]]
        evaluation = "references" in items[0]
        return CaptionBatch(
            ids=[item["id"] for item in items],
            positions=torch.tensor([item["position"] for item in items]),
            visual=pad_frames([item["visual"] for item in items]),
            captions=pad_sequence(captions, batch_first=True, padding_value=SPECIALS.index(PAD)),
            caption_owner=torch.tensor([row for row, item in enumerate(items) for _ in item["captions"]]),
            references=[item["references"] for item in items] if evaluation else None,
            media=[item["media"] for item in items] if evaluation else None,
            annotations=[item["annotations"] for item in items] if evaluation else None)

    def evaluation_set(self, split: str) -> EvaluationSet:
        """One split as baselines use it; ``pooled`` is each clip's mean frame vector."""
        if self.features is None:
            self.setup("baselines")
        clips = self.images[split]
        ids = [clip.image_id for clip in clips]
        if self.captions_only:
            pooled = torch.zeros(len(clips), 0)

            def visual(positions: list[int]) -> Visual:
                return pad_frames([torch.zeros(1, 0) for _ in positions])
        else:
            pooled = self.features.mean(ids)

            def visual(positions: list[int]) -> Visual:
                return pad_frames([self.features.clip(ids[p]) for p in positions])

        return EvaluationSet(
            dataset=self.dataset, split=split, ids=ids, references=[clip.captions for clip in clips],
            tokens=[clip.tokens for clip in clips], media=[relative_media(clip.path, self.media_root) for clip in clips],
            media_root=self.media_root, pooled=pooled, visual=visual, annotations=[clip.annotations for clip in clips])


__all__ = ["FRAME_STEP", "VideoDecodeError", "sampled_frame_indices", "decode_frames", "is_image_file", "mean_pool",
           "pad_frames", "decode_to_frame_files", "clip_features", "ClipFeatures", "VideoCaptionDataModule"]
