"""RetinaFace anchors ("priors"), box/landmark decoding and non-maximum suppression, in torch ops.

Anchors are ``(cx, cy, w, h)`` normalised by the network input size, ordered level, row,
column, anchor size — the order of the heads' outputs. Decoding follows the SSD/RetinaFace
parameterisation with two variances. NMS is exact greedy NMS (a box is dropped when it
overlaps a higher-scoring kept box of the same image by IoU > threshold), vectorised.

These run in the detection wrapper rather than beside the network: the network's forward stays
free of data-dependent shapes (it exports to ONNX whole), and the same decoding serves it
whichever runtime executes it. Only the anchor layout (``PriorSpec``) belongs to the model's
configuration, since it comes with the trained weights.
"""

from __future__ import annotations

import torch

from models.retinaface import PriorSpec


class PriorBoxes:
    """Anchors for an input size, computed once per (height, width, device) and kept on this object."""

    def __init__(self, spec: PriorSpec):
        self.spec = spec
        self._cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def __call__(self, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        key = (int(height), int(width), str(device))
        priors = self._cache.get(key)
        if priors is None:
            priors = self._compute(height, width).to(device)
            self._cache[key] = priors
        return priors

    def _compute(self, height: int, width: int) -> torch.Tensor:
        levels = []
        for step, sizes in zip(self.spec.steps, self.spec.min_sizes, strict=True):
            rows, cols = -(-height // step), -(-width // step)  # ceil, as upstream
            cy = (torch.arange(rows, dtype=torch.float64) + 0.5) * step / height
            cx = (torch.arange(cols, dtype=torch.float64) + 0.5) * step / width
            grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")
            centres = torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 1, 2).expand(-1, len(sizes), 2)
            wh = torch.tensor([[s / width, s / height] for s in sizes], dtype=torch.float64)
            wh = wh.unsqueeze(0).expand(rows * cols, -1, -1)
            levels.append(torch.cat([centres, wh], dim=-1).reshape(-1, 4))
        priors = torch.cat(levels).float()
        return priors.clamp(0, 1) if self.spec.clip else priors

    def count(self, height: int, width: int) -> int:
        return sum(
            -(-height // s) * -(-width // s) * len(m)
            for s, m in zip(self.spec.steps, self.spec.min_sizes, strict=True)
        )


def decode_boxes(deltas: torch.Tensor, priors: torch.Tensor, variance: tuple[float, float]) -> torch.Tensor:
    """(..., 4) regressions + matching (..., 4) anchors → (..., 4) x1, y1, x2, y2 (normalised)."""
    centres = priors[..., :2] + deltas[..., :2] * variance[0] * priors[..., 2:]
    sizes = priors[..., 2:] * torch.exp(deltas[..., 2:] * variance[1])
    return torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)


def decode_landmarks(
    deltas: torch.Tensor, priors: torch.Tensor, variance: tuple[float, float]
) -> torch.Tensor:
    """(..., 10) regressions + (..., 4) anchors → (..., 5, 2) points (normalised)."""
    points = deltas.reshape(*deltas.shape[:-1], 5, 2)
    return priors[..., None, :2] + points * variance[0] * priors[..., None, 2:]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4) × (M, 4) x1y1x2y2 → (N, M) intersection over union (0 where a box is empty)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Greedy NMS within each group (e.g. frame index); returns kept indices, best score first.

    Vectorised: with boxes sorted by score, ``keep[i] = no kept j < i suppresses i``. Iterating
    that rule from "keep all" fixes one more prefix position per pass and stops at the unique
    fixed point — the greedy result — usually after a few passes (suppression chains are short).
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, groups = boxes[order], groups[order]
    n = len(order)
    suppresses = (box_iou(boxes, boxes) > iou_threshold) & (groups[:, None] == groups[None, :])
    suppresses = torch.triu(suppresses, diagonal=1).to(boxes.dtype)  # j < i only
    keep = torch.ones(n, dtype=boxes.dtype, device=boxes.device)
    for _ in range(n):
        new_keep = ((keep @ suppresses) == 0).to(boxes.dtype)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep.bool()]
