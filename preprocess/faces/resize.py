"""Antialiased bilinear resizing of uint8 RGB frames, bit for bit what torch computes, in numpy.

RetinaFace sees frames shrunk to ``DetectorConfig.max_side`` (1080p → 384 px): plain bilinear
sampling aliases badly at that ratio, so the frames are filtered with a triangle as wide as
the shrink factor, as ``torch.nn.functional.interpolate(..., mode="bilinear", antialias=True)``
does on uint8 (Pillow's resampling): separable, horizontal pass first, each pass with
fixed-point int16-range weights and its result rounded to uint8. The same integer arithmetic
here gives the same bytes (tests/test_resize.py checks them against torch), so detection
without torch finds the same faces at the same sub-pixel positions. Close is not enough: a
resize off by one grey level on 0.05 % of the values (Pillow's own precision) moved a box by
3 px on one frame of the media clips, where non-maximum suppression picked a neighbouring
anchor's box of nearly the same score.

Each pass is a weighted sum of whole rows (``_rows``), the horizontal one on the transposed
frame: one SciPy sparse-matrix product where SciPy is installed (training and development:
~13 ms per 1080p frame on one core), else per filter tap the rows it reads gathered,
multiplied by their weights and added, in int32 (the scoring image has no SciPy: ~26 ms).
The same integers either way (tests/test_resize.py runs both against torch; torch: ~1.5 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from core.image_ops import optional_module, transpose

MAX_PRECISION = 22  # bits; the weights' scale is the largest that keeps them below 2**15


def resample_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per output pixel, the input pixels it reads ((n_out, taps) indices; beyond its support
    they repeat the last pixel, with weight 0), their fixed-point weights ((n_out, taps) int32)
    and the weights' precision in bits. Cheap (~0.1 ms for 1920 → 384): computed once per
    ``resize_antialiased`` call."""
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
    index = np.minimum(first[:, None] + j[None], n_in - 1)
    return index, fixed, precision


@dataclass(frozen=True)
class _Pass:
    """One direction's resampling, built once per size pair and applied to every frame."""

    index: np.ndarray  # (n_out, taps), from resample_weights
    fixed: np.ndarray
    precision: int
    matrix: object | None  # the same as a scipy.sparse (n_out, n_in) int32 matrix, or None: numpy


def _pass(n_in: int, n_out: int, sparse: ModuleType | None) -> _Pass:
    index, fixed, precision = resample_weights(n_in, n_out)
    matrix = None
    if sparse is not None:
        rows = np.repeat(np.arange(n_out), index.shape[1])
        matrix = sparse.csr_matrix(
            (fixed.ravel(), (rows, index.ravel())), shape=(n_out, n_in), dtype=np.int32
        )
        matrix.sum_duplicates()  # the repeated last pixel beyond a support carries weight 0
    return _Pass(index, fixed, precision, matrix)


def _rows(x: np.ndarray, p: _Pass) -> np.ndarray:
    """(n_in, C) uint8 rows → (n_out, C): each output row the fixed-point weighted sum of the
    input rows ``p`` names, rounded, clipped to uint8 (the sums are exact in int32: 255 × 2**15
    × taps stays far below 2**31): one sparse product, or per tap in numpy."""
    if p.matrix is not None:
        acc = p.matrix @ x.astype(np.int32)
        acc += 1 << (p.precision - 1)
    else:
        acc = np.full((len(p.index), x.shape[1]), 1 << (p.precision - 1), np.int32)
        term = np.empty_like(acc)
        for k in range(p.index.shape[1]):  # taps past a support read the last pixel with weight 0
            np.multiply(x[p.index[:, k]], p.fixed[:, k, None], out=term)
            acc += term
    acc >>= p.precision
    np.clip(acc, 0, 255, out=acc)
    return acc.astype(np.uint8)


def resize_antialiased(
    frames: np.ndarray, height: int, width: int, scipy_use: bool | None = None
) -> np.ndarray:
    """(B, H, W, 3) uint8 → (B, height, width, 3) uint8, antialiased bilinear (see the module
    docstring); the frames themselves when the size is already right. ``scipy_use``: None
    takes SciPy where it imports, False never, True requires it."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"resize_antialiased needs uint8 (B, H, W, 3) frames, got {frames.dtype} {frames.shape}"
        )
    if height < 1 or width < 1:
        raise ValueError(f"cannot resize to {height}x{width}")
    batch, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return frames
    sparse = optional_module("scipy.sparse", scipy_use, "scipy_use=True: SciPy")
    across = _pass(w, width, sparse) if w != width else None
    down = _pass(h, height, sparse) if h != height else None
    out = np.empty((batch, height, width, 3), np.uint8)
    for i, frame in enumerate(frames):
        x = np.ascontiguousarray(frame)
        if across is not None:  # horizontal: the columns of the frame are the rows of its transpose
            x = transpose(_rows(transpose(x).reshape(w, h * 3), across).reshape(width, h, 3))
        if down is not None:
            x = _rows(x.reshape(h, width * 3), down).reshape(height, width, 3)
        out[i] = x
    return out
