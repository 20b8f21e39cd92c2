"""Face detection on batches of frames: resize → pad → RetinaFace (through a Runtime) → decode → NMS.

``FaceDetector.from_weights("retinaface_mobilenetv2", cfg)`` loads our converted weights
(``weights/<name>.safetensors`` + ``.json``); a biubug6/Pytorch_Retinaface ``.pth`` path works
too (``models.retinaface.load_retinaface``). Boxes and landmarks come back in pixels of the
frames given to ``detect``.

Everything around the network is numpy (the resize: ``preprocess.faces.resize``, bit for bit
torch's), and on CPU the network runs on ONNX Runtime from ``<name>.onnx`` (``make weights``),
so detection needs no torch; without torch (the images) ONNX Runtime runs it on a GPU too (its
CUDA provider), and torch runs it on a GPU where installed, with ``runtime="torch"``, or when
the ONNX file is missing or stale.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from core.optional_torch import require_torch, torch_available
from core.preprocess_config import DetectorConfig
from core.preprocess_data import FaceDetections
from core.threads import thread_budget
from models.retinaface_config import ARCH, RetinaFaceConfig
from models.retinaface_onnx import onnx_path, onnx_runtime
from models.runtimes import Runtime
from preprocess.faces.priors import PriorBoxes, batched_nms, decode_boxes, decode_landmarks
from preprocess.faces.resize import resize_antialiased
from weights.store import WeightsError, read_config, resolve

log = logging.getLogger(__name__)

PRE_NMS_TOP_K = 2000  # candidates per batch entering NMS; bounds the IoU matrix


class FaceDetector:
    def __init__(self, network_runtime: Runtime, config: RetinaFaceConfig, cfg: DetectorConfig):
        self.network = network_runtime
        self.config = config  # the network's: how it wants its pixels, where its anchors sit
        self.cfg = cfg
        self.priors = PriorBoxes(config.priors)
        mean = np.asarray(config.input.mean, dtype=np.float32)
        std = np.asarray(config.input.std, dtype=np.float32)
        if config.input.channel_order == "bgr":  # frames arrive RGB: reorder the constants, not the pixels
            mean, std = mean[::-1], std[::-1]
        self._scale = 1.0 / std
        self._shift = -mean / std
        self._bgr = config.input.channel_order == "bgr"

    @classmethod
    def from_weights(
        cls, name_or_path: str, cfg: DetectorConfig, device: str = "cpu", runtime: str = "auto"
    ) -> FaceDetector:
        """``runtime``: "auto" runs ONNX Runtime on CPU when ``make weights`` exported these
        weights (weights/<name>.onnx), else torch; "torch" always torch. Without torch
        installed (the images), "auto" runs ONNX Runtime on ``device`` (a CUDA device: its CUDA
        provider where this onnxruntime has one), and a missing or stale ONNX file is a
        ``TorchMissing`` naming it."""
        if runtime not in ("auto", "torch"):
            raise ValueError(f"face detector runtime must be 'auto' or 'torch', got {runtime!r}")
        if runtime == "auto" and (device == "cpu" or not torch_available()):
            onnx = onnx_runtime(name_or_path, threads=thread_budget(), device=device)
            if onnx is not None:
                return cls(onnx, _stored_config(name_or_path), cfg)
        require_torch(
            "face detection on torch (runtime 'torch')"
            if runtime == "torch"
            else f"face detection from {name_or_path}: {onnx_path(name_or_path)} is missing, stale or "
            "unreadable, and running its tensors",
            "or run `make weights` where torch is installed and copy the ONNX file it writes beside the weights",
        )
        import torch

        from models.retinaface import fuse_batchnorm, load_retinaface
        from models.runtimes import TorchRuntime

        net = load_retinaface(name_or_path)
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
        # antialiased bilinear: plain bilinear aliases badly at 1080p → 384
        x = resize_antialiased(frames, h, w)
        if self._bgr:
            x = x[..., ::-1]
        normalised = x.astype(np.float32) * self._scale + self._shift  # (B, h, w, 3)
        # padding is pixel value 0, as upstream pads the image before normalising
        out = np.empty((len(x), 3, ph, pw), np.float32)
        out[:] = self._shift[None, :, None, None]
        out[:, :, :h, :w] = normalised.transpose(0, 3, 1, 2)
        return out

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
            deltas, scores, landmarks = (np.asarray(o, dtype=np.float32) for o in self.network(x))
            results += self.postprocess(deltas, scores, landmarks, (height, width), size)
        return results

    def postprocess(
        self,
        deltas: np.ndarray,
        scores: np.ndarray,
        landmark_deltas: np.ndarray,
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
        frame_idx, anchor_idx = np.nonzero(scores >= self.cfg.score_threshold)
        cand_scores = scores[frame_idx, anchor_idx]
        if len(cand_scores) > PRE_NMS_TOP_K:
            top = np.argsort(-cand_scores, kind="stable")[:PRE_NMS_TOP_K]
            frame_idx, anchor_idx, cand_scores = frame_idx[top], anchor_idx[top], cand_scores[top]
        anchors = priors[anchor_idx]
        boxes = decode_boxes(deltas[frame_idx, anchor_idx], anchors, self.config.priors.variance)
        points = decode_landmarks(
            landmark_deltas[frame_idx, anchor_idx], anchors, self.config.priors.variance
        )
        keep = batched_nms(boxes, cand_scores, frame_idx, self.cfg.nms_threshold)
        # normalised (padded input) → resized pixels → frame pixels
        sx, sy = pw * frame_size[1] / w, ph * frame_size[0] / h
        boxes = boxes[keep] * np.array([sx, sy, sx, sy], np.float32)
        points = points[keep] * np.array([sx, sy], np.float32)
        cand_scores, frame_idx = cand_scores[keep], frame_idx[keep]
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        big = sides >= self.cfg.min_face
        boxes, points, cand_scores, frame_idx = boxes[big], points[big], cand_scores[big], frame_idx[big]
        out = []
        for i in range(batch):
            sel = frame_idx == i  # keep order: best score first
            out.append(
                FaceDetections(
                    boxes=boxes[sel].astype(np.float32),
                    landmarks=points[sel].astype(np.float32),
                    scores=cand_scores[sel].astype(np.float32),
                )
            )
        return out


def _stored_config(name_or_path: str | os.PathLike) -> RetinaFaceConfig:
    """The RetinaFace configuration a weights pair's JSON records (no tensors, no torch)."""
    meta = read_config(resolve(name_or_path))
    if meta["arch"] != ARCH:
        raise WeightsError(f"{resolve(name_or_path)}: holds a {meta['arch']!r} model, not {ARCH!r}")
    try:
        return RetinaFaceConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(
            f"{Path(resolve(name_or_path)).with_suffix('.json')}: weights config corrupt: {e}"
        ) from e
