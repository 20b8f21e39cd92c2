"""Face detection on batches of frames: resize → pad → RetinaFace (through a Runtime) → decode → NMS.

``FaceDetector.from_weights("retinaface_mobilenetv2", cfg)`` loads our converted weights
(``weights/<name>.safetensors`` + ``.json``); a biubug6/Pytorch_Retinaface ``.pth`` path works
too (``models.retinaface.load_retinaface``). Boxes and landmarks come back in pixels of the
frames given to ``detect``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from core.preprocess_config import DetectorConfig
from core.preprocess_data import FaceDetections
from models.retinaface import RetinaFaceConfig, fuse_batchnorm, load_retinaface
from models.retinaface_onnx import cpu_runtime
from models.runtimes import Runtime, TorchRuntime
from preprocess.faces.priors import PriorBoxes, batched_nms, decode_boxes, decode_landmarks

PRE_NMS_TOP_K = 2000  # candidates per batch entering NMS; bounds the IoU matrix


class FaceDetector:
    def __init__(self, network_runtime: Runtime, config: RetinaFaceConfig, cfg: DetectorConfig):
        self.network = network_runtime
        self.config = config  # the network's: how it wants its pixels, where its anchors sit
        self.cfg = cfg
        self.priors = PriorBoxes(config.priors)
        mean = torch.tensor(config.input.mean, dtype=torch.float32)
        std = torch.tensor(config.input.std, dtype=torch.float32)
        if config.input.channel_order == "bgr":  # frames arrive RGB: reorder the constants, not the pixels
            mean, std = mean.flip(0), std.flip(0)
        self._scale = (1.0 / std).reshape(1, 3, 1, 1)
        self._shift = (-mean / std).reshape(1, 3, 1, 1)
        self._bgr = config.input.channel_order == "bgr"

    @classmethod
    def from_weights(
        cls, name_or_path: str, cfg: DetectorConfig, device: str = "cpu", runtime: str = "auto"
    ) -> FaceDetector:
        """``runtime``: "auto" runs ONNX Runtime on CPU when ``make weights`` exported these
        weights (weights/<name>.onnx), else torch; "torch" always torch."""
        if runtime not in ("auto", "torch"):
            raise ValueError(f"face detector runtime must be 'auto' or 'torch', got {runtime!r}")
        net = load_retinaface(name_or_path)
        if runtime == "auto" and device == "cpu":
            onnx = cpu_runtime(name_or_path, threads=torch.get_num_threads())
            if onnx is not None:
                return cls(onnx, net.config, cfg)
        # channels-last lets oneDNN run the depthwise/1x1 convs without layout shuffles (~2x on CPU)
        net = fuse_batchnorm(net).to(memory_format=torch.channels_last)
        return cls(TorchRuntime(net, device), net.config, cfg)

    def input_size(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(resized h, w, padded h, w) for frames of this size."""
        scale = min(1.0, self.cfg.max_side / max(height, width)) if self.cfg.max_side > 0 else 1.0
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        m = self.config.input.pad_multiple
        return h, w, math.ceil(h / m) * m, math.ceil(w / m) * m

    def prepare(self, frames: np.ndarray, size: tuple[int, int, int, int]) -> np.ndarray:
        """uint8 RGB (B, H, W, 3) → normalised float32 (B, 3, Hp, Wp) in the network's channel order."""
        h, w, ph, pw = size
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # channels-last view
        if (h, w) != x.shape[-2:]:
            # antialiased bilinear (uint8 fast path): plain bilinear aliases badly at 1080p → 640
            x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        if self._bgr:
            x = x.flip(1)
        # padding is pixel value 0, as upstream pads the image before normalising
        out = self._shift.expand(len(x), 3, ph, pw).contiguous()
        out[:, :, :h, :w] = x.float() * self._scale + self._shift
        return out.numpy()

    def detect(self, frames: np.ndarray) -> list[FaceDetections]:
        if (
            not isinstance(frames, np.ndarray)
            or frames.ndim != 4
            or frames.shape[-1] != 3
            or frames.dtype != np.uint8
        ):
            desc = (
                f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
            )
            raise ValueError(f"detect() needs uint8 RGB frames shaped (B, H, W, 3), got {desc}")
        if len(frames) == 0:
            return []
        height, width = frames.shape[1:3]
        size = self.input_size(height, width)
        results: list[FaceDetections] = []
        batch = max(1, self.cfg.batch_size)
        for start in range(0, len(frames), batch):
            x = self.prepare(frames[start : start + batch], size)
            deltas, scores, landmarks = (torch.from_numpy(np.asarray(o)) for o in self.network(x))
            results += self.postprocess(deltas, scores, landmarks, (height, width), size)
        return results

    def postprocess(
        self,
        deltas: torch.Tensor,
        scores: torch.Tensor,
        landmark_deltas: torch.Tensor,
        frame_size: tuple[int, int],
        size: tuple[int, int, int, int],
    ) -> list[FaceDetections]:
        """Network outputs for one batch → per-frame detections in frame pixels."""
        h, w, ph, pw = size
        batch = scores.shape[0]
        priors = self.priors(ph, pw)
        if scores.shape[1] != len(priors):
            raise ValueError(
                f"network gave {scores.shape[1]} anchors, priors for {ph}x{pw} are {len(priors)}"
            )
        frame_idx, anchor_idx = torch.nonzero(scores >= self.cfg.score_threshold, as_tuple=True)
        cand_scores = scores[frame_idx, anchor_idx]
        if len(cand_scores) > PRE_NMS_TOP_K:
            top = torch.topk(cand_scores, PRE_NMS_TOP_K).indices
            frame_idx, anchor_idx, cand_scores = frame_idx[top], anchor_idx[top], cand_scores[top]
        anchors = priors[anchor_idx]
        boxes = decode_boxes(deltas[frame_idx, anchor_idx], anchors, self.config.priors.variance)
        points = decode_landmarks(
            landmark_deltas[frame_idx, anchor_idx], anchors, self.config.priors.variance
        )
        keep = batched_nms(boxes, cand_scores, frame_idx, self.cfg.nms_threshold)
        # normalised (padded input) → resized pixels → frame pixels
        sx, sy = pw * frame_size[1] / w, ph * frame_size[0] / h
        boxes = boxes[keep] * torch.tensor([sx, sy, sx, sy])
        points = points[keep] * torch.tensor([sx, sy])
        cand_scores, frame_idx = cand_scores[keep], frame_idx[keep]
        sides = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        big = sides >= self.cfg.min_face
        boxes, points, cand_scores, frame_idx = boxes[big], points[big], cand_scores[big], frame_idx[big]
        out = []
        for i in range(batch):
            sel = frame_idx == i  # keep order: best score first
            out.append(
                FaceDetections(
                    boxes=boxes[sel].numpy().astype(np.float32),
                    landmarks=points[sel].numpy().astype(np.float32),
                    scores=cand_scores[sel].numpy().astype(np.float32),
                )
            )
        return out
