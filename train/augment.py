"""Training augmentations that treat a clip as one recording.

A real camera does not change its white balance, focus or compression between frames, so
every random choice is drawn once per clip and applied to all its face crops (same flip,
same colour jitter, same blur, same JPEG quality, same crop jitter). Per-frame randomness
would itself look like the temporal flicker that face-swap fakes show, and teach the model
the wrong cue. Degradations (blur, JPEG) also keep it from keying on the crispness of
synthetic or pristine sources.

Audio augmentations (gain, noise) change ``audio`` and, when asked, recompute ``mel``; they
matter only to models that consume mel frames (``FusionConfig.audio_frames > 0``). The
SyncNet latency vector is computed at preprocessing time and is not recomputed here.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.preprocess_config import AudioConfig
from core.preprocess_data import Sample
from preprocess.audio import log_mel
from train.reencode import reencode


@dataclass(frozen=True)
class AugmentConfig:
    flip_p: float = 0.5
    brightness: float = 0.2  # multiplicative, 1 ± brightness
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 6.0  # degrees of hue rotation, ±
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.4, 1.2)
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (35, 90)
    crop_jitter: float = 0.06  # scale and shift, as a fraction of the crop size
    gain_db: float = 6.0  # audio gain, ±
    noise_p: float = 0.3
    noise_snr_db: tuple[float, float] = (15.0, 40.0)
    # the clip's crops downscaled (35-100 %), H.264 at CRF 20-40 and back (``train.reencode``):
    # how re-packaged video reaches a detector. Off unless asked (``fit --augment-repackage``):
    # measured, re-packaging alone moved the seam detector's real scores up (train repackage-reals)
    repackage_p: float = 0.0

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, (0.0, 0.0), 0.0, (90, 90), 0.0, 0.0, 0.0)


def _crop_jitter(faces: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """One random zoom + shift for the whole clip (edges reflected)."""
    size = faces.shape[1]
    scale = 1 + rng.uniform(-amount, amount)
    dx, dy = rng.uniform(-amount, amount, 2) * size
    m = cv2.getRotationMatrix2D((size / 2, size / 2), 0.0, scale)
    m[:, 2] += (dx, dy)
    return np.stack([cv2.warpAffine(f, m, (size, size), borderMode=cv2.BORDER_REFLECT_101) for f in faces])


def _colour(
    faces: np.ndarray, brightness: float, contrast: float, saturation: float, hue: float
) -> np.ndarray:
    x = faces.astype(np.float32) * brightness
    mean = x.mean()  # contrast around the clip's mean, not each frame's
    x = (x - mean) * contrast + mean
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = grey[..., None] + (x - grey[..., None]) * saturation
    x = np.clip(x, 0, 255).astype(np.uint8)
    if hue:
        hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in x])
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(hue / 2))) % 180).astype(
            np.uint8
        )  # OpenCV hue is 0..179
        x = np.stack([cv2.cvtColor(f, cv2.COLOR_HSV2RGB) for f in hsv])
    return x


def _jpeg(faces: np.ndarray, quality: int) -> np.ndarray:
    out = np.empty_like(faces)
    for i, f in enumerate(faces):
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        )
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out[i] = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


def augment_faces(faces: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """(F, S, S, 3) uint8 RGB → the same shape, every frame altered identically."""
    x = faces
    if cfg.crop_jitter > 0:
        x = _crop_jitter(x, rng, cfg.crop_jitter)
    if rng.random() < cfg.flip_p:
        x = x[:, :, ::-1]
    if cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue:
        x = _colour(
            x,
            1 + rng.uniform(-cfg.brightness, cfg.brightness),
            1 + rng.uniform(-cfg.contrast, cfg.contrast),
            1 + rng.uniform(-cfg.saturation, cfg.saturation),
            rng.uniform(-cfg.hue, cfg.hue),
        )
    if rng.random() < cfg.blur_p:
        sigma = rng.uniform(*cfg.blur_sigma)
        x = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in x])
    if rng.random() < cfg.jpeg_p:
        x = _jpeg(np.ascontiguousarray(x), int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    # last, and no draw when off: runs without it keep their exact random streams
    if cfg.repackage_p > 0 and rng.random() < cfg.repackage_p:
        with tempfile.TemporaryDirectory(prefix="avdf_repackage_") as tmp:
            x = reencode(np.ascontiguousarray(x), rng, Path(tmp))
    return np.ascontiguousarray(x)


def augment_audio(audio: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """int16 mono → int16 mono with a random gain and, sometimes, white noise at a random SNR."""
    if audio.size == 0:
        return audio
    x = audio.astype(np.float32) * 10 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20)
    if rng.random() < cfg.noise_p:
        power = float(np.mean(x**2)) + 1e-6
        snr = rng.uniform(*cfg.noise_snr_db)
        x += rng.standard_normal(x.shape).astype(np.float32) * np.sqrt(power / 10 ** (snr / 10))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


class ClipAugmenter:
    """A sample transform (``train.sample_transforms``): sample → augmented copy (faces; audio
    and mel when ``audio`` is set), label unchanged."""

    def __init__(
        self,
        cfg: AugmentConfig | None = None,
        audio: bool = False,
        audio_cfg: AudioConfig | None = None,
        sample_rate: int = 16000,
    ):
        self.cfg = cfg or AugmentConfig()
        self.audio = audio
        self.audio_cfg = audio_cfg or AudioConfig()
        self.sample_rate = sample_rate

    def __call__(self, sample: Sample, label: int, rng: np.random.Generator) -> tuple[Sample, int]:
        changes = {"faces": augment_faces(sample.faces, self.cfg, rng)}
        if self.audio and sample.audio.size:
            audio = augment_audio(sample.audio, self.cfg, rng)
            changes["audio"] = audio
            changes["mel"] = log_mel(audio, self.sample_rate, self.audio_cfg)
        return dataclasses.replace(sample, **changes), label

    def __repr__(self) -> str:
        return f"ClipAugmenter({self.cfg}, audio={self.audio})"
