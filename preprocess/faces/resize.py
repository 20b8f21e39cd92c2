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
~7.5 ms per 1080p frame on one core), else in int32 per filter tap, the rows it reads
multiplied by their weights and added (the scoring image has no SciPy: ~10 ms). Where the
filter repeats — every shrink by a ratio of small integers, as 1080p → 384 px (5 : 1) and
720p (10 : 3) — a tap's rows are a strided view times one weight; elsewhere, and at the edges
where the filter is cut, they are gathered (~17 ms when all are). The same integers every way
(tests/test_resize.py runs them against torch; torch: ~1.5 ms).
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
class _Stride:
    """Output rows ``out_start::period`` (``count`` of them) each read, per tap, the input rows
    ``in_start + k :: step`` with one weight per tap: where the filter repeats, a tap is a
    strided view and a scalar multiply instead of a gather."""

    out_start: int
    count: int
    in_start: int
    weights: tuple[tuple[int, np.int32], ...]  # (tap offset, fixed-point weight), zero weights left out


@dataclass(frozen=True)
class _Pass:
    """One direction's resampling, built once per size pair and applied to every frame."""

    index: np.ndarray  # (n_out, taps), from resample_weights
    fixed: np.ndarray
    precision: int
    matrix: object | None  # the same as a scipy.sparse (n_out, n_in) int32 matrix, or None: numpy
    period: int = 0  # > 0: the filter repeats every ``period`` output rows in [lo, hi)
    step: int = 0  # input rows between two repeats
    lo: int = 0
    hi: int = 0
    strides: tuple[_Stride, ...] = ()
    # numpy path: the output rows gathered tap by tap (the edges, or every row where the filter
    # does not repeat) and their rows of ``index`` / ``fixed``, cut once instead of per frame
    edges: np.ndarray | None = None
    edge_index: np.ndarray | None = None
    edge_fixed: np.ndarray | None = None


def _periodic(index: np.ndarray, fixed: np.ndarray, max_period: int = 64) -> tuple[int, int, int, int]:
    """(period, step, lo, hi): the smallest period after which output rows read the same
    weights ``step`` input rows further on, over [lo, hi) (the edges, where the filter is cut
    and renormalised, left out); (0, 0, 0, 0) where none repeats (the gather handles it all).
    A scale of p/q input per output pixel repeats every q rows (1920 → 384: every row, 5 on)."""
    n_out, taps = index.shape
    start = index[:, 0]
    unclamped = np.all(index == start[:, None] + np.arange(taps), axis=1)
    for period in range(1, min(max_period, n_out // 4) + 1):
        lo, hi = period, n_out - period  # one period at each edge may differ
        j = np.arange(lo, hi - period)
        if len(j) < period:
            break
        steps = start[j + period] - start[j]
        if np.all(steps == steps[0]) and np.all(fixed[j + period] == fixed[j]) and np.all(unclamped[lo:hi]):
            return period, int(steps[0]), lo, hi
    return 0, 0, 0, 0


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
    period, step, lo, hi = _periodic(index, fixed)
    strides = tuple(
        _Stride(
            out_start=lo + r,
            count=len(range(lo + r, hi, period)),
            in_start=int(index[lo + r, 0]),
            weights=tuple((k, np.int32(w)) for k, w in enumerate(fixed[lo + r]) if w),
        )
        for r in range(period)
    )
    edges = np.r_[0:lo, hi:n_out] if period else np.arange(n_out)
    return _Pass(
        index, fixed, precision, None, period, step, lo, hi, strides, edges, index[edges], fixed[edges]
    )


def _rows(x: np.ndarray, p: _Pass) -> np.ndarray:
    """(n_in, C) uint8 rows → (n_out, C): each output row the fixed-point weighted sum of the
    input rows ``p`` names, rounded, clipped to uint8 (the sums are exact in int32: 255 × 2**15
    × taps stays far below 2**31): one sparse product, or in numpy per tap, strided where the
    filter repeats and gathered at the edges (or everywhere, where it does not repeat)."""
    if p.matrix is not None:
        acc = p.matrix @ x.astype(np.int32)
        acc += 1 << (p.precision - 1)
    else:
        acc = np.full((len(p.index), x.shape[1]), 1 << (p.precision - 1), np.int32)
        for s in p.strides:
            out = acc[s.out_start : p.hi : p.period]
            term = np.empty_like(out)
            for k, weight in s.weights:
                first = s.in_start + k
                np.multiply(x[first : first + p.step * s.count : p.step], weight, out=term)
                out += term
        if len(p.edges):
            term = np.empty((len(p.edges), x.shape[1]), np.int32)
            part = acc[p.edges]
            for k in range(p.edge_index.shape[1]):  # taps past a support read the last pixel with weight 0
                np.multiply(x[p.edge_index[:, k]], p.edge_fixed[:, k, None], out=term)
                part += term
            acc[p.edges] = part
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
