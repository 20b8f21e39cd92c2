"""Antialiased bilinear resizing of uint8 RGB frames, bit for bit what torch computes.

RetinaFace sees frames shrunk to ``DetectorConfig.max_side`` (1080p → 384 px): plain bilinear
sampling aliases badly at that ratio, so the frames are filtered with a triangle as wide as
the shrink factor, as ``torch.nn.functional.interpolate(..., mode="bilinear", antialias=True)``
does on uint8 (Pillow's resampling): separable, horizontal pass first, each pass with
fixed-point int16 weights and the result rounded to uint8. The same integer arithmetic here
gives the same bytes (checked against torch in tests/test_resize.py), so detection without
torch finds the same faces at the same sub-pixel positions.

The two passes are numba kernels (numba is already a scoring dependency through librosa),
compiled once and cached like librosa's (``core.scratch``), ~6 ms per 1080p frame on one core.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

MAX_PRECISION = 22  # bits; the int16 weights' scale is the largest that keeps them below 2**15


@lru_cache(maxsize=32)
def resample_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per output pixel: the first input pixel it reads, how many, their int16-range weights
    (``(n_out, taps)`` int32) and the weights' precision in bits. Read-only arrays (cached)."""
    scale = n_in / n_out
    support = scale if scale >= 1.0 else 1.0  # the triangle's half-width, in input pixels
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    centers = scale * (np.arange(n_out) + 0.5)
    first = np.maximum(np.trunc(centers - support + 0.5).astype(np.int64), 0)
    count = np.minimum(np.trunc(centers + support + 0.5).astype(np.int64), n_in) - first
    taps = int(count.max())
    j = np.arange(taps)
    weights = np.maximum(1.0 - np.abs((j[None] + first[:, None] - centers[:, None] + 0.5) * invscale), 0.0)
    weights[j[None] >= count[:, None]] = 0.0
    total = np.zeros(n_out)
    for k in range(taps):  # summed in tap order, as torch does (not numpy's pairwise order)
        total += weights[:, k]
    weights /= np.where(total != 0.0, total, 1.0)[:, None]
    largest = float(weights.max())
    precision = 0
    while precision < MAX_PRECISION and int(0.5 + largest * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    fixed = np.floor(0.5 + weights * (1 << precision)).astype(np.int32)
    for a in (first, count, fixed):
        a.setflags(write=False)
    return first, count, fixed, precision


@numba.njit(cache=True, nogil=True)
def _horizontal(x, out, first, count, weights, precision):  # pragma: no cover (compiled)
    half = 1 << (precision - 1)
    for b in range(x.shape[0]):
        for r in range(x.shape[1]):
            row = x[b, r]
            for i in range(out.shape[2]):
                a0 = half
                a1 = half
                a2 = half
                s = first[i]
                for k in range(count[i]):
                    w = weights[i, k]
                    a0 += w * np.int32(row[s + k, 0])
                    a1 += w * np.int32(row[s + k, 1])
                    a2 += w * np.int32(row[s + k, 2])
                out[b, r, i, 0] = min(max(a0 >> precision, 0), 255)
                out[b, r, i, 1] = min(max(a1 >> precision, 0), 255)
                out[b, r, i, 2] = min(max(a2 >> precision, 0), 255)


@numba.njit(cache=True, nogil=True)
def _vertical(x, out, first, count, weights, precision):  # pragma: no cover (compiled)
    half = 1 << (precision - 1)
    width = x.shape[2] * x.shape[3]
    acc = np.empty(width, np.int32)
    for b in range(x.shape[0]):
        rows = x[b].reshape(x.shape[1], width)
        for i in range(out.shape[1]):
            acc[:] = half
            s = first[i]
            for k in range(count[i]):
                w = weights[i, k]
                row = rows[s + k]
                for j in range(width):
                    acc[j] += w * np.int32(row[j])
            o = out[b, i].reshape(width)
            for j in range(width):
                o[j] = min(max(acc[j] >> precision, 0), 255)


def resize_antialiased(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(B, H, W, 3) uint8 → (B, height, width, 3) uint8, antialiased bilinear (see the module
    docstring); the frames themselves when the size is already right."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"resize_antialiased needs uint8 (B, H, W, 3) frames, got {frames.dtype} {frames.shape}"
        )
    if height < 1 or width < 1:
        raise ValueError(f"cannot resize to {height}x{width}")
    batch, h, w, _ = frames.shape
    x = np.ascontiguousarray(frames)
    if w != width:
        first, count, weights, precision = resample_weights(w, width)
        out = np.empty((batch, h, width, 3), np.uint8)
        _horizontal(x, out, first, count, weights, precision)
        x = out
    if h != height:
        first, count, weights, precision = resample_weights(h, height)
        out = np.empty((batch, height, width, 3), np.uint8)
        _vertical(x, out, first, count, weights, precision)
        x = out
    return x
