"""Generated talking-face clips for the temporal detectors' tests: a textured face under smooth
random head motion with a mouth that opens and closes and independent sensor noise per frame
(``real_motion``), and two ways generators depart from it: frames interpolated between
keyframes (``smoothed``) and per-frame re-rendered detail (``flickering``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Sample, SampleMeta
from preprocess.cache_layout import config_hash, write_settings
from preprocess.sample_file import save_sample

# where a face's five landmarks sit in a crop, as fractions of its side (eyes, nose, mouth corners)
LANDMARKS = np.array([[0.36, 0.40], [0.64, 0.40], [0.50, 0.55], [0.40, 0.72], [0.60, 0.72]], np.float32)


def textured_face(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random texture with some edges: something with detail to move."""
    base = cv2.resize(rng.random((12, 12, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 1.2)
    return np.clip(150 * base + 80 * fine, 0, 255)


def real_motion(
    rng: np.random.Generator, n: int, size: int, with_shift: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """(n, size, size, 3) float frames (and, ``with_shift``, each frame's (dx, dy) head shift)."""
    face = textured_face(rng, size)
    velocity = np.cumsum(rng.normal(0, 0.15, (n, 2)), axis=0)
    shift = np.cumsum(velocity, axis=0) * 0.3
    mouth = np.sin(np.cumsum(rng.uniform(0.2, 0.6, n))) * 30
    frames = []
    for t in range(n):
        m = np.float32([[1, 0, shift[t, 0]], [0, 1, shift[t, 1]]])
        img = cv2.warpAffine(face, m, (size, size), borderMode=cv2.BORDER_REFLECT)
        img[int(0.65 * size) : int(0.8 * size), int(0.35 * size) : int(0.65 * size)] += mouth[t]
        frames.append(img + rng.normal(0, 2.0, img.shape))
    return (np.stack(frames), shift) if with_shift else np.stack(frames)


def smoothed(frames: np.ndarray, step: int = 3) -> np.ndarray:
    """Temporal resynthesis: every ``step``-th frame kept, the ones between interpolated
    linearly from them (frame interpolation from a lower rate; no sensor noise of their own)."""
    out = frames.copy()
    for start in range(0, len(frames) - step, step):
        for k in range(1, step):
            out[start + k] = frames[start] + (frames[start + step] - frames[start]) * k / step
    return out


def flickering(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-frame re-rendering: each frame re-noised independently, in fine detail."""
    noise = np.stack([cv2.GaussianBlur(rng.normal(0, 6.0, frames.shape[1:]), (0, 0), 0.7) for _ in frames])
    return frames + noise


def windows_sample(
    frames: np.ndarray,
    name: str,
    label: int,
    windows: int,
    window_frames: int,
    shift: np.ndarray | None = None,
) -> Sample:
    """A ``"windows"`` sample of ``windows`` runs of ``window_frames`` frames (``frames`` holds
    them one after the other), with landmarks that follow ``shift`` when given."""
    idx = np.concatenate([np.arange(w * 100, w * 100 + window_frames) for w in range(windows)])
    size = frames.shape[1]
    landmarks = None
    if shift is not None:
        landmarks = (LANDMARKS[None] * size + shift[:, None, :]).astype(np.float32)
    return Sample(
        meta=SampleMeta(name, name, 25.0, 16.0, False, 1, 0, label),
        faces=np.clip(np.round(frames), 0, 255).astype(np.uint8),
        face_frame_indices=idx.astype(np.int64),
        boxes=np.zeros((idx[-1] + 1, 4), np.float32),
        frame_start=0,
        audio=np.zeros(0, np.int16),
        mfcc=np.zeros((13, 0), np.float32),
        mel=np.zeros((80, 0), np.float32),
        latency=None,
        landmarks=landmarks,
    )


def write_windows_cache(
    folder: Path,
    plan: Sequence[tuple[str, str]],
    rng: np.random.Generator,
    windows: int,
    window_frames: int,
    crop: int,
) -> Path:
    """A ``"windows"`` cache under ``folder/cache`` of one generated clip per ``(split, kind)`` of
    ``plan`` — kind ``real`` (``real_motion``, landmarks following the head), ``smooth`` or
    ``flicker`` (the same departed from, label 1) — and its manifest; returns the manifest."""
    cache = folder / "cache"
    (cache / "samples").mkdir(parents=True)
    cfg = PreprocessConfig().replace(
        "sample", sampling="windows", windows=windows, window_frames=window_frames
    )
    cfg = cfg.replace("track", crop_size=crop)
    write_settings(cache, cfg, config_hash(cfg))
    rows = []
    for i, (split, kind) in enumerate(plan):
        parts = [real_motion(rng, window_frames, crop, with_shift=True) for _ in range(windows)]
        frames = [p[0] for p in parts]
        if kind == "smooth":
            frames = [smoothed(f) for f in frames]
        elif kind == "flicker":
            frames = [flickering(f, rng) for f in frames]
        shift = np.concatenate([p[1] for p in parts])
        label = int(kind != "real")
        name = f"{kind}_{i}.mp4"
        path = cache / "samples" / f"{kind}_{i}.npz"
        save_sample(windows_sample(np.concatenate(frames), name, label, windows, window_frames, shift), path)
        rows.append({"filename": name, "split": split, "label": label, "sample": str(path), "category": kind})
    with open(cache / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return cache / "manifest.csv"
