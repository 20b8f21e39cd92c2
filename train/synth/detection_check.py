"""``python -m train synth-check``: does the face detector find the synthetic faces?

Renders synthetic videos (frames only, no encoding) and runs the project's RetinaFace on
every ``step``-th frame; a frame counts as detected when a face scored at least the
detector's threshold overlaps the ground-truth face box with IoU >= ``min_iou``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from core.preprocess_config import DetectorConfig
from train.synth.videos import FAKE_CATEGORIES, SynthVideo, generate_videos


@dataclass
class DetectionCheck:
    frames: int = 0
    detected: int = 0
    ious: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    per_category: dict[str, list[int]] = field(default_factory=dict)  # category -> [frames, detected]

    @property
    def rate(self) -> float:
        return self.detected / self.frames if self.frames else float("nan")

    def summary(self) -> str:
        lines = [
            f"frames {self.frames}, detected {self.detected} ({100 * self.rate:.2f} %), "
            f"median IoU {np.median(self.ious) if self.ious else float('nan'):.3f}, "
            f"min score {min(self.scores) if self.scores else float('nan'):.3f}, "
            f"score > 0.8 in {100 * np.mean(np.array(self.scores) > 0.8) if self.scores else float('nan'):.2f} %"
        ]
        for name, (n, k) in sorted(self.per_category.items()):
            lines.append(f"  {name:<16} {k}/{n}")
        return "\n".join(lines)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box in ``a`` (N, 4) with the single box ``b`` (4,)."""
    x1 = np.maximum(a[:, 0], b[0])
    y1 = np.maximum(a[:, 1], b[1])
    x2 = np.minimum(a[:, 2], b[2])
    y2 = np.minimum(a[:, 3], b[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / np.maximum(area - inter, 1e-6)


def check_detection(
    videos: Iterable[SynthVideo], detector, step: int = 1, min_iou: float = 0.5
) -> DetectionCheck:
    """Count frames whose ground-truth face is found. The face outline box is tighter than a
    detector's box (no forehead/hair margin), so IoU 0.5 is a fair match criterion."""
    out = DetectionCheck()
    for video in videos:
        idx = np.arange(0, len(video.frames), step)
        counts = out.per_category.setdefault(video.category, [0, 0])
        for i, faces in zip(idx, detector.detect(video.frames[idx]), strict=True):
            out.frames += 1
            counts[0] += 1
            if len(faces):
                iou = box_iou(faces.boxes, video.boxes[i])
                k = int(np.argmax(iou))
                if iou[k] >= min_iou:
                    out.detected += 1
                    counts[1] += 1
                    out.ious.append(float(iou[k]))
                    out.scores.append(float(faces.scores[k]))
    return out


def run_check(
    n: int = 20, seconds: float = 2.0, seed: int = 0, step: int = 2, weights: str | None = None
) -> DetectionCheck:
    from preprocess.faces.detector import FaceDetector

    cfg = DetectorConfig()
    detector = FaceDetector.from_weights(weights or cfg.weights, cfg)
    return check_detection(generate_videos(n, seconds, seed, FAKE_CATEGORIES), detector, step)
