"""Sample → the fusion model's input arrays. Training and inference both go through here.

Face crops are normalised the way mmaction2's TimeSformer configs do (ImageNet mean/std on
0–255 RGB). With ``audio_frames > 0`` the log-mel spectrogram is cut into that many chunks in
time, each drawn as a grey image (80 dB below the clip's loudest bin = black, low frequencies
at the bottom) resized to ``img_size``², and appended after the face frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from preprocess.types import Sample
from submission.fusion import FusionConfig

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
MEL_DYNAMIC_RANGE_DB = 80.0


@dataclass
class FusionInputs:
    frames: np.ndarray  # (3, T, H, W) float32 normalised; T = num_frames + audio_frames
    latency: np.ndarray  # (latency_dim,) float32; zeros when there is none
    has_latency: np.float32  # 1.0 when ``latency`` is real, else 0.0


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    # INTER_AREA when shrinking avoids aliasing; bilinear when enlarging.
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def _pick_frames(count: int, wanted: int) -> np.ndarray:
    """Evenly spaced indices (repeats when the sample holds fewer frames than wanted)."""
    if count == wanted:
        return np.arange(count)
    return np.round(np.linspace(0, count - 1, wanted)).astype(int)


def _normalise(rgb: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) 0–255 → (3, T, H, W) float32 normalised."""
    x = (rgb.astype(np.float32) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2))


def face_frames(faces: np.ndarray, cfg: FusionConfig, name: str = "sample") -> np.ndarray:
    """(F, S, S, 3) uint8 crops → (num_frames, img, img, 3) uint8."""
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.shape[0] == 0:
        raise ValueError(f"{name}: faces must be (F, S, S, 3) with F > 0, got {faces.shape}")
    chosen = faces[_pick_frames(len(faces), cfg.num_frames)]
    return np.stack([_resize_square(f, cfg.img_size) for f in chosen])


def mel_frames(mel: np.ndarray, cfg: FusionConfig) -> np.ndarray:
    """(n_mels, T100) log-mel dB → (audio_frames, img, img, 3) uint8 spectrogram images.

    No audio (an empty mel) gives black images: the rendering of silence.
    """
    count, size = cfg.audio_frames, cfg.img_size
    if mel.ndim != 2 or mel.shape[1] == 0 or not np.isfinite(mel).any():
        return np.zeros((count, size, size, 3), np.uint8)
    mel = np.nan_to_num(mel.astype(np.float32), nan=-np.inf)
    top = mel[np.isfinite(mel)].max()
    grey = np.clip((mel - (top - MEL_DYNAMIC_RANGE_DB)) / MEL_DYNAMIC_RANGE_DB, 0.0, 1.0)
    grey = (grey[::-1] * 255.0).astype(np.uint8)  # low frequencies at the bottom, as drawn
    if grey.shape[1] < count:  # too short to cut: pad with silence
        grey = np.pad(grey, ((0, 0), (0, count - grey.shape[1])))
    chunks = np.array_split(grey, count, axis=1)
    images = [
        cv2.resize(np.ascontiguousarray(c), (size, size), interpolation=cv2.INTER_LINEAR) for c in chunks
    ]
    return np.repeat(np.stack(images)[..., None], 3, axis=-1)


def sample_to_inputs(sample: Sample, model_cfg: FusionConfig) -> FusionInputs:
    name = sample.meta.video
    rgb = face_frames(sample.faces, model_cfg, name)
    if model_cfg.audio_frames:
        rgb = np.concatenate([rgb, mel_frames(sample.mel, model_cfg)])
    if sample.latency is None:
        latency = np.zeros(model_cfg.latency_dim, np.float32)
        has = np.float32(0.0)
    else:
        latency = sample.latency.vector().astype(np.float32)
        if latency.shape != (model_cfg.latency_dim,):
            raise ValueError(
                f"{name}: latency vector has {latency.shape[0]} values, the model expects "
                f"{model_cfg.latency_dim} (SyncConfig.vshift must be {model_cfg.vshift})"
            )
        has = np.float32(1.0)
    return FusionInputs(frames=_normalise(rgb), latency=latency, has_latency=has)


def collate(items: Sequence[FusionInputs]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack into the model's (frames (B,3,T,H,W), latency (B,D), has_latency (B,)) arrays."""
    if not items:
        raise ValueError("collate needs at least one item")
    frames = np.stack([i.frames for i in items]).astype(np.float32, copy=False)
    latency = np.stack([i.latency for i in items]).astype(np.float32, copy=False)
    has = np.array([i.has_latency for i in items], np.float32)
    return frames, latency, has
