"""Face detection on batches of frames: resize → pad → RetinaFace (through a Runtime) → decode → NMS.

``FaceDetector.from_weights("retinaface_mobilenetv2", cfg)`` loads our converted weights
(``weights/<name>.safetensors`` + ``.json``); a biubug6/Pytorch_Retinaface ``.pth`` path works
too. Boxes and landmarks come back in pixels of the frames given to ``detect``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from preprocess.config import DetectorConfig
from preprocess.faces.priors import PriorBoxes, PriorSpec, batched_nms, decode_boxes, decode_landmarks
from preprocess.faces.retinaface import RetinaFace, RetinaFaceConfig, fuse_batchnorm
from preprocess.runtime import Runtime, TorchRuntime
from preprocess.types import FaceDetections
from weights import convert
from weights.store import WeightsError, check_state_dict, load_model, resolve

ARCH = "retinaface"
PRE_NMS_TOP_K = 2000  # candidates per batch entering NMS; bounds the IoU matrix


@dataclass(frozen=True)
class DetectorSpec:
    """How a RetinaFace checkpoint wants its input and anchors: travels in the weights' JSON."""

    backbone: str = "mobilenetv2"
    channel_order: str = "rgb"  # order the network expects
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)  # subtracted from 0–255 pixels …
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)  # … then divided by this
    priors: PriorSpec = field(default_factory=PriorSpec)
    pad_multiple: int = 32  # input sides are zero-padded (bottom/right) up to a multiple

    def to_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "input": {
                "channel_order": self.channel_order,
                "mean": list(self.mean),
                "std": list(self.std),
                "pad_multiple": self.pad_multiple,
            },
            "priors": self.priors.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorSpec:
        inp = data["input"]
        spec = cls(
            backbone=str(data["backbone"]),
            channel_order=str(inp["channel_order"]),
            mean=tuple(float(v) for v in inp["mean"]),
            std=tuple(float(v) for v in inp["std"]),
            priors=PriorSpec.from_dict(data["priors"]),
            pad_multiple=int(inp.get("pad_multiple", 32)),
        )
        if spec.channel_order not in ("rgb", "bgr") or len(spec.mean) != 3 or len(spec.std) != 3:
            raise ValueError(f"bad detector input spec {inp}")
        return spec


# The retinaface package's TF graph: Keras MobileNetV2 preprocessing (x / 127.5 - 1), RGB.
TF_MOBILENETV2_SPEC = DetectorSpec()


def biubug6_spec(backbone: str) -> DetectorSpec:
    """biubug6/Pytorch_Retinaface: BGR minus the Caffe means, no scaling; cfg_mnet / cfg_re50 anchors."""
    return DetectorSpec(
        backbone=backbone, channel_order="bgr", mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0)
    )


def model_config(spec: DetectorSpec, net: RetinaFaceConfig) -> dict[str, Any]:
    """The ``model`` section of the weights JSON for a RetinaFace."""
    return {**spec.to_dict(), "out_channels": net.out_channels, "num_anchors": net.num_anchors}


def load_retinaface(name_or_path: str | os.PathLike) -> tuple[RetinaFace, DetectorSpec]:
    """A RetinaFace in eval mode (BatchNorm kept) and its spec, from our weights or a biubug6 .pth."""
    path = Path(name_or_path)
    if path.suffix in (".pth", ".pt", ".tar"):
        if not path.is_file():
            raise WeightsError(f"{path}: checkpoint not found")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a bad pickle/zip
            raise WeightsError(f"{path}: not a readable torch checkpoint: {type(e).__name__}: {e}") from e
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
            checkpoint = checkpoint["state_dict"]
        if not isinstance(checkpoint, dict):
            raise WeightsError(f"{path}: checkpoint holds a {type(checkpoint).__name__}, not a state dict")
        try:
            backbone = convert.biubug6_backbone(checkpoint)
            state_dict = convert.retinaface_from_biubug6(checkpoint)
        except convert.ConversionError as e:
            raise WeightsError(f"{path}: {e}") from e
        spec, net_config = biubug6_spec(backbone), RetinaFaceConfig.for_backbone(backbone)
        source = str(path)
    else:
        if not resolve(name_or_path).is_file():
            raise WeightsError(
                f"{resolve(name_or_path)}: weights not found"
                " (the default detector is built by `python -m weights.build_default`)"
            )
        loaded = load_model(name_or_path)
        if loaded.arch != ARCH:
            raise WeightsError(f"{loaded.path}: holds a {loaded.arch!r} model, not {ARCH!r}")
        try:
            spec = DetectorSpec.from_dict(loaded.model_config)
            net_config = RetinaFaceConfig(
                backbone=spec.backbone,
                out_channels=int(loaded.model_config.get("out_channels", 64)),
                num_anchors=int(loaded.model_config.get("num_anchors", 2)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise WeightsError(f"{loaded.path}: bad RetinaFace config: {e}") from e
        state_dict, source = loaded.state_dict, str(loaded.path)
    try:
        net = RetinaFace(net_config)
    except ValueError as e:
        raise WeightsError(f"{source}: {e}") from e
    check_state_dict(net, state_dict, source)
    net.load_state_dict(state_dict)
    return net.eval(), spec


class FaceDetector:
    def __init__(self, network_runtime: Runtime, spec: DetectorSpec, cfg: DetectorConfig):
        self.network = network_runtime
        self.spec = spec
        self.cfg = cfg
        self.priors = PriorBoxes(spec.priors)
        mean = torch.tensor(spec.mean, dtype=torch.float32)
        std = torch.tensor(spec.std, dtype=torch.float32)
        if spec.channel_order == "bgr":  # frames arrive RGB: reorder the constants instead of the pixels
            mean, std = mean.flip(0), std.flip(0)
        self._scale = (1.0 / std).reshape(1, 3, 1, 1)
        self._shift = (-mean / std).reshape(1, 3, 1, 1)
        self._bgr = spec.channel_order == "bgr"

    @classmethod
    def from_weights(cls, name_or_path: str, cfg: DetectorConfig, device: str = "cpu") -> FaceDetector:
        net, spec = load_retinaface(name_or_path)
        # channels-last lets oneDNN run the depthwise/1x1 convs without layout shuffles (~2x on CPU)
        net = fuse_batchnorm(net).to(memory_format=torch.channels_last)
        return cls(TorchRuntime(net, device), spec, cfg)

    def input_size(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(resized h, w, padded h, w) for frames of this size."""
        scale = min(1.0, self.cfg.max_side / max(height, width)) if self.cfg.max_side > 0 else 1.0
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        m = self.spec.pad_multiple
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
        boxes = decode_boxes(deltas[frame_idx, anchor_idx], anchors, self.spec.priors.variance)
        points = decode_landmarks(landmark_deltas[frame_idx, anchor_idx], anchors, self.spec.priors.variance)
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
