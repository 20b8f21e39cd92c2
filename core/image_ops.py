"""uint8 image operations in numpy, with OpenCV's results byte for byte.

The scoring image carries no OpenCV (requirements.txt): these are the few operations scoring
used it for, computed with the integer and float32 arithmetic OpenCV 5's own code uses on
uint8 images (``cv2.resize`` INTER_LINEAR and INTER_AREA, ``cv2.cvtColor`` RGB2GRAY,
``cv2.rotate``), so crops, detector inputs and cached samples stay what they were
(tests/test_image_ops.py compares them with cv2 on seeded images of many sizes).

Images are (H, W) or (H, W, C) uint8. Sizes are given as OpenCV's ``dsize``: (width, height).

Where OpenCV *is* installed (the training and development install, ``make setup``), each
operation hands the work to it: the same bytes, 3-20x faster (a 224² face crop 0.1 ms
instead of 1.2 ms). ``opencv_use=False`` forces numpy (what the tests compare), ``True``
requires OpenCV, ``None`` (the default) takes it where it imports.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

import numpy as np

COEF_BITS = 11  # INTER_LINEAR's fixed-point weights: 1.0 is 2048
COEF_SCALE = 1 << COEF_BITS
# RGB → grey as OpenCV 5 computes it on uint8: 0.299, 0.587, 0.114 in 15-bit fixed point
GREY_BITS = 15
GREY_WEIGHTS = (9798, 19235, 3735)


@functools.cache
def _installed(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def optional_module(module: str, use: bool | None, what: str) -> ModuleType | None:
    """A faster library to hand work to (``cv2``, ``scipy.sparse``), or None for the numpy
    code: ``use`` None takes it where it imports, False never, True requires it (``what``
    names it in the error)."""
    if use is False:
        return None
    found = _installed(module)
    if found is None and use:
        raise ImportError(f"{what} is not installed")
    return found


def opencv(use: bool | None = None) -> ModuleType | None:
    """The ``cv2`` module to hand work to, or None for numpy (``optional_module``)."""
    return optional_module("cv2", use, "opencv_use=True: OpenCV (opencv-python-headless)")


def _check(image: np.ndarray, width: int, height: int) -> None:
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or 0 in image.shape:
        raise ValueError(
            f"needs a non-empty uint8 (H, W) or (H, W, C) image, got {image.dtype} {image.shape}"
        )
    if width < 1 or height < 1:
        raise ValueError(f"cannot resize to {width}x{height}")


def _pixels(image: np.ndarray) -> np.ndarray:
    """(H, W, C) → an (H, W) view whose items are whole pixels: numpy moves a C-byte unit per
    pixel several times faster than C separate bytes."""
    image = np.ascontiguousarray(image)
    if image.ndim == 2:
        return image
    unit = np.dtype((np.void, image.shape[2] * image.itemsize))
    return image.view(unit).reshape(image.shape[:2])


def _image(pixels: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``_pixels``' view back to ``like``'s dtype and channels (a contiguous copy)."""
    out = np.ascontiguousarray(pixels)
    return out if like.ndim == 2 else out.view(like.dtype).reshape(*out.shape, *like.shape[2:])


def rotate(image: np.ndarray, degrees: int, opencv_use: bool | None = None) -> np.ndarray:
    """``image`` turned clockwise by 90, 180 or 270 degrees (a contiguous copy)."""
    if degrees not in (90, 180, 270):
        raise ValueError(f"rotation must be 90, 180 or 270 degrees clockwise, got {degrees}")
    if (cv2 := opencv(opencv_use)) is not None:
        code = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
        return cv2.rotate(np.ascontiguousarray(image), code[degrees])
    return _image(np.rot90(_pixels(image), k=-(degrees // 90)), image)


def transpose(image: np.ndarray, opencv_use: bool | None = None) -> np.ndarray:
    """(H, W[, C]) → contiguous (W, H[, C])."""
    if (cv2 := opencv(opencv_use)) is not None and (image.ndim == 2 or image.shape[2] <= 4):
        return cv2.transpose(np.ascontiguousarray(image))
    return _image(_pixels(image).T, image)


def rgb_to_grey(image: np.ndarray, opencv_use: bool | None = None) -> np.ndarray:
    """(H, W, 3) RGB uint8 → (H, W) grey, as ``cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)``: the
    fixed-point sum rounded and shifted. In float32 (one matrix-vector product): every product
    and sum is an integer below 2**24, so exact."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"needs a uint8 (H, W, 3) RGB image, got {image.dtype} {image.shape}")
    if (cv2 := opencv(opencv_use)) is not None:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    weights = np.array(GREY_WEIGHTS, np.float32)
    grey = np.ascontiguousarray(image).reshape(-1, 3).astype(np.float32) @ weights
    grey += 1 << (GREY_BITS - 1)
    grey *= np.float32(1.0 / (1 << GREY_BITS))  # a power of two: exact; truncation floors (>= 0)
    return grey.astype(np.uint8).reshape(image.shape[:2])


def _round_f32(x: np.ndarray) -> np.ndarray:
    """OpenCV's float → int rounding (cvRound: to nearest, halves to even)."""
    return np.rint(x).astype(np.int64)


def linear_taps(
    n_in: int, n_out: int, area_mode: bool = False, clamp: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output pixel, the two input pixels INTER_LINEAR reads ((n_out,) int64 each, clamped
    to the image) and their fixed-point weights ((n_out, 2) int32), computed as OpenCV does (float32 offsets, rounded 11-bit weights that need not sum
    to 2048). ``area_mode``: INTER_AREA's coefficients where it enlarges. ``clamp``: beyond the
    edges, read the edge pixel with weight 1 (OpenCV's columns); else keep the weights and
    read the edge pixel for both (its rows)."""
    inv_scale = n_out / n_in
    scale = 1.0 / inv_scale
    dx = np.arange(n_out, dtype=np.float64)
    if area_mode:
        sx = np.floor(dx * scale).astype(np.int64)
        fx = ((dx + 1) - (sx + 1) * inv_scale).astype(np.float32)
        fx = np.where(fx <= 0, np.float32(0), fx - np.floor(fx)).astype(np.float32)
    else:
        f = ((dx + 0.5) * scale - 0.5).astype(np.float32)
        sx = np.floor(f).astype(np.int64)
        fx = (f - sx.astype(np.float32)).astype(np.float32)
    if clamp:
        fx[(sx < 0) | (sx >= n_in - 1)] = 0
    first, second = np.clip(sx, 0, n_in - 1), np.clip(sx + 1, 0, n_in - 1)
    weights = np.stack(
        [_round_f32((np.float32(1) - fx) * np.float32(COEF_SCALE)), _round_f32(fx * np.float32(COEF_SCALE))],
        1,
    )
    return first, second, weights.astype(np.int32)


class Resizer:
    """``cv2.resize`` INTER_LINEAR and INTER_AREA on uint8, keeping what repeated calls share:
    the tables of each (input, output) size and the int32 work buffers of each output size.
    One per loop that resizes many images to one size (a track's face crops): a fresh one
    (``resize_linear``/``resize_area``) for a single image."""

    def __init__(self, opencv_use: bool | None = None) -> None:
        self._cv2 = opencv(opencv_use)
        self._tables: dict[tuple, tuple] = {}
        self._buffers: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _table(self, kind: str, *key) -> tuple:
        table = self._tables.get((kind, *key))
        if table is None:
            table = linear_taps(*key) if kind == "linear" else area_taps(*key)
            self._tables[(kind, *key)] = table
        return table

    def _work(self, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        work = self._buffers.get((rows, cols))
        if work is None:  # fresh memory per call costs more than the arithmetic on it
            work = (np.empty((rows, cols), np.int32), np.empty((rows, cols), np.int32))
            self._buffers[(rows, cols)] = work
        return work

    def linear(self, image: np.ndarray, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
        """``cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)``, into ``out``
        when given."""
        _check(image, width, height)
        if self._cv2 is not None:
            image = np.ascontiguousarray(image)
            if out is None:
                return self._cv2.resize(image, (width, height), interpolation=self._cv2.INTER_LINEAR)
            self._cv2.resize(image, (width, height), dst=out, interpolation=self._cv2.INTER_LINEAR)
            return out
        h, w = image.shape[:2]
        if (h, w) == (height, width):
            result = image
        elif w == 2 * width and h == 2 * height:  # OpenCV: a halving is INTER_AREA's 2x2 mean
            result = self.area(image, width, height)
        else:
            result = self._fixed(image, width, height, area_mode=False)
        if out is None:
            return result.copy() if result is image else result
        out[...] = result
        return out

    def area(self, image: np.ndarray, width: int, height: int) -> np.ndarray:
        """``cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)``."""
        _check(image, width, height)
        if self._cv2 is not None:
            return self._cv2.resize(
                np.ascontiguousarray(image), (width, height), interpolation=self._cv2.INTER_AREA
            )
        h, w = image.shape[:2]
        if (h, w) == (height, width):
            return image.copy()
        scale_x, scale_y = 1.0 / (width / w), 1.0 / (height / h)
        if scale_x < 1 or scale_y < 1:  # enlarging: OpenCV interpolates with area-mode weights
            return self._fixed(image, width, height, area_mode=True)
        ix, iy = round(scale_x), round(scale_y)
        if abs(scale_x - ix) < np.finfo(float).eps and abs(scale_y - iy) < np.finfo(float).eps:
            return _area_blocks(image, width, height, ix, iy)
        return self._area_weighted(image, width, height, scale_x, scale_y)

    def _fixed(self, image: np.ndarray, width: int, height: int, area_mode: bool) -> np.ndarray:
        """INTER_LINEAR's arithmetic (INTER_AREA's when enlarging: other weights). Horizontal
        pass: exact int32 weighted sums of each output row's two source rows (gathered first,
        then their columns, whole pixels at a time). Vertical pass: OpenCV's SIMD arithmetic,
        on every lane of a row, its tail included: each sum dropped to 16 bits (>> 4),
        multiplied by its row weight keeping the high 16 bits, the two added and rounded by >> 2.
        Not the exact sum's rounding (off by one on ~1 % of the pixels): copied as it is."""
        h, w = image.shape[:2]
        channels = 1 if image.ndim == 2 else image.shape[2]
        sx, nx, alpha = self._table("linear", w, width, area_mode)
        sy, ny, beta = self._table("linear", h, height, area_mode, False)
        rows = _pixels(image)[np.concatenate([sy, ny])]  # (2 × height, w): top rows, then bottom
        acc, term = self._work(2 * height, width * channels)
        np.copyto(acc, np.take(rows, sx, axis=1).view(np.uint8).reshape(acc.shape))
        acc *= np.repeat(alpha[:, 0], channels)
        np.copyto(term, np.take(rows, nx, axis=1).view(np.uint8).reshape(term.shape))
        term *= np.repeat(alpha[:, 1], channels)
        acc += term
        acc >>= 4
        acc[:height] *= beta[:, 0, None]
        acc[height:] *= beta[:, 1, None]
        acc >>= 16
        top = acc[:height]
        top += acc[height:]
        top += 2
        top >>= 2
        np.clip(top, 0, 255, out=top)
        return top.astype(np.uint8).reshape(height, width, *image.shape[2:])

    def _area_weighted(
        self, image: np.ndarray, width: int, height: int, scale_x: float, scale_y: float
    ) -> np.ndarray:
        """Non-integer shrinking: area-weighted sums in float32, accumulated in OpenCV's order
        (a zero weight past an output's taps adds an exact 0)."""
        h, w = image.shape[:2]
        channels = 1 if image.ndim == 2 else image.shape[2]
        xi, xw = self._table("area", w, width, scale_x)
        yi, yw = self._table("area", h, height, scale_y)
        pixels = _pixels(image)
        weights = np.repeat(xw, channels, axis=0).reshape(width, channels, -1)
        rows = np.zeros((h, width * channels), np.float32)
        for k in range(xi.shape[1]):
            taps = np.take(pixels, xi[:, k], axis=1).view(np.uint8).reshape(h, width * channels)
            rows += taps.astype(np.float32) * weights[:, :, k].reshape(-1)
        out = rows[yi[:, 0]] * yw[:, 0, None]
        for k in range(1, yi.shape[1]):
            out += rows[yi[:, k]] * yw[:, k, None]
        return np.clip(_round_f32(out), 0, 255).astype(np.uint8).reshape(height, width, *image.shape[2:])


def resize_linear(image: np.ndarray, width: int, height: int, opencv_use: bool | None = None) -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)`` on uint8."""
    return Resizer(opencv_use).linear(image, width, height)


def resize_area(image: np.ndarray, width: int, height: int, opencv_use: bool | None = None) -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)`` on uint8."""
    return Resizer(opencv_use).area(image, width, height)


def _area_blocks(image: np.ndarray, width: int, height: int, ix: int, iy: int) -> np.ndarray:
    """Integer factors: the mean of each iy × ix block, rounded as OpenCV rounds it."""
    h, w = image.shape[:2]
    x = image.reshape(h, w, -1)[: height * iy, : width * ix]
    sums = x.reshape(height, iy, width, ix, -1).sum(axis=(1, 3), dtype=np.int32)
    if ix == 2 and iy == 2:  # OpenCV's SIMD halving rounds halves up
        out = (sums + 2) >> 2
    else:
        out = _round_f32(sums.astype(np.float32) * np.float32(1.0 / (ix * iy)))
    return np.clip(out, 0, 255).astype(np.uint8).reshape(height, width, *image.shape[2:])


def area_taps(n_in: int, n_out: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """INTER_AREA's shrinking table as (n_out, taps) input indices and float32 weights, each
    output's taps in OpenCV's order (the partial pixel on the left, the whole ones, the partial
    one on the right); unused taps read pixel 0 with weight 0."""
    rows: list[list[tuple[int, float]]] = []
    for dx in range(n_out):
        f1 = dx * scale
        f2 = f1 + scale
        cell = min(scale, n_in - f1)
        s1, s2 = int(np.ceil(f1)), int(np.floor(f2))
        s2 = min(s2, n_in - 1)
        s1 = min(s1, s2)
        taps = []
        if s1 - f1 > 1e-3:
            taps.append((s1 - 1, (s1 - f1) / cell))
        taps += [(s, 1.0 / cell) for s in range(s1, s2)]
        if f2 - s2 > 1e-3:
            taps.append((s2, min(min(f2 - s2, 1.0), cell) / cell))
        rows.append(taps)
    n = max(len(t) for t in rows)
    index = np.zeros((n_out, n), np.int64)
    weight = np.zeros((n_out, n), np.float32)
    for dx, taps in enumerate(rows):
        for k, (s, a) in enumerate(taps):
            index[dx, k], weight[dx, k] = s, a
    return index, weight
