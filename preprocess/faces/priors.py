"""RetinaFace anchors ("priors"), box/landmark decoding and non-maximum suppression, in numpy.

Anchors are ``(cx, cy, w, h)`` normalised by the network input size, ordered level, row,
column, anchor size — the order of the heads' outputs. Decoding follows the SSD/RetinaFace
parameterisation with two variances. NMS is exact greedy NMS (a box is dropped when it
overlaps a higher-scoring kept box of the same image by IoU > threshold), vectorised.

These run in the detection wrapper rather than beside the network: the network's forward stays
free of data-dependent shapes (it exports to ONNX whole), and the same decoding serves it
whichever runtime executes it. Only the anchor layout (``PriorSpec``) belongs to the model's
configuration, since it comes with the trained weights. float32 throughout, in the order of
operations torch used here before, so detections did not move when torch left this path.
"""

from __future__ import annotations

import numpy as np

from models.retinaface_config import PriorSpec


class PriorBoxes:
    """Anchors for an input size, computed once per (height, width) and kept on this object."""

    def __init__(self, spec: PriorSpec):
        self.spec = spec
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, height: int, width: int) -> np.ndarray:
        key = (int(height), int(width))
        priors = self._cache.get(key)
        if priors is None:
            priors = self._compute(*key)
            priors.setflags(write=False)
            self._cache[key] = priors
        return priors

    def _compute(self, height: int, width: int) -> np.ndarray:
        levels = []
        for step, sizes in zip(self.spec.steps, self.spec.min_sizes, strict=True):
            rows, cols = -(-height // step), -(-width // step)  # ceil, as upstream
            cy = (np.arange(rows, dtype=np.float64) + 0.5) * step / height
            cx = (np.arange(cols, dtype=np.float64) + 0.5) * step / width
            grid_y, grid_x = np.meshgrid(cy, cx, indexing="ij")
            centres = np.broadcast_to(
                np.stack([grid_x, grid_y], axis=-1).reshape(-1, 1, 2), (rows * cols, len(sizes), 2)
            )
            wh = np.array([[s / width, s / height] for s in sizes], dtype=np.float64)
            wh = np.broadcast_to(wh[None], (rows * cols, len(sizes), 2))
            levels.append(np.concatenate([centres, wh], axis=-1).reshape(-1, 4))
        priors = np.concatenate(levels).astype(np.float32)
        return np.clip(priors, 0, 1) if self.spec.clip else priors

    def count(self, height: int, width: int) -> int:
        return sum(
            -(-height // s) * -(-width // s) * len(m)
            for s, m in zip(self.spec.steps, self.spec.min_sizes, strict=True)
        )


def decode_boxes(deltas: np.ndarray, priors: np.ndarray, variance: tuple[float, float]) -> np.ndarray:
    """(..., 4) regressions + matching (..., 4) anchors → (..., 4) x1, y1, x2, y2 (normalised)."""
    centres = priors[..., :2] + deltas[..., :2] * variance[0] * priors[..., 2:]
    sizes = priors[..., 2:] * np.exp(deltas[..., 2:] * variance[1])
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=-1)


def decode_landmarks(deltas: np.ndarray, priors: np.ndarray, variance: tuple[float, float]) -> np.ndarray:
    """(..., 10) regressions + (..., 4) anchors → (..., 5, 2) points (normalised)."""
    points = deltas.reshape(*deltas.shape[:-1], 5, 2)
    return priors[..., None, :2] + points * variance[0] * priors[..., None, 2:]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) × (M, 4) x1y1x2y2 → (N, M) intersection over union (0 where a box is empty)."""
    area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.maximum(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1e-12), 0).astype(inter.dtype)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Greedy NMS within each group (e.g. frame index); returns kept indices, best score first.

    Vectorised: with boxes sorted by score, ``keep[i] = no kept j < i suppresses i``. Iterating
    that rule from "keep all" fixes one more prefix position per pass and stops at the unique
    fixed point — the greedy result — usually after a few passes (suppression chains are short).
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    boxes, groups = boxes[order], groups[order]
    suppresses = (box_iou(boxes, boxes) > iou_threshold) & (groups[:, None] == groups[None, :])
    suppresses = np.triu(suppresses, k=1)  # j < i only
    keep = np.ones(len(order), dtype=bool)
    for _ in range(len(order)):
        new_keep = ~(suppresses & keep[:, None]).any(axis=0)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]
