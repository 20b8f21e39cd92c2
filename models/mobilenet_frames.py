"""MobileNetV2 per frame, started from the face detector's own backbone: the shipped default.

The body is RetinaFace's MobileNetV2 (``models.mobilenetv2``, truncated after block 15), so
``init_from_upstream`` starts it from weights the setup already builds
(``weights/retinaface_mobilenetv2``): a network that has seen millions of faces, where an
ImageNet start has seen few. Its three feature maps (strides 8, 16, 32) are average-pooled and
concatenated (32 + 96 + 160 values): blending seams and resampling traces are fine detail that
the stride-8 map still holds. Dropout → one linear unit gives the frame's fake log-odds; the
sample's logit is the mean over its frames, and the video takes the maximum over its tracks.

Each frame is first cut to the face itself (``region``: a square of the 224 crop, by default
y 0–192, x 16–208, the part the track's crop scale puts the face in) and resized to
``img_size``. Trained on pseudo-fakes the stem and the first ``frozen_blocks`` blocks stay
fixed (weights and BatchNorm statistics): with ~1,100 identities the low-level filters of the
detector generalise better than ones refitted to them (measured: pseudo-fake AUC on unseen
faces 0.76 frozen-from-RetinaFace vs 0.60 from scratch).
"""

from __future__ import annotations

import torch
from torch import nn

from models.face_frames import PerFrameDetector
from models.mobilenet_frames_io import MobileNetFramesConfig, MobileNetFramesIO
from models.mobilenetv2 import MobileNetV2
from models.registry import register_model

__all__ = ["MobileNetFrames", "MobileNetFramesConfig"]


@register_model("mobilenetv2_frames", MobileNetFramesConfig)
class MobileNetFrames(MobileNetFramesIO, PerFrameDetector):
    def __init__(self, config: MobileNetFramesConfig | None = None):
        super().__init__()
        cfg = config or MobileNetFramesConfig()
        self.config = cfg
        self.body = MobileNetV2()
        self.add_linear_head(self.body.num_pooled_features, cfg.dropout)
        for module in self.frozen_modules():
            module.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        if not self.config.frozen_blocks:
            return []
        return [self.body.stem, *self.body.blocks[: self.config.frozen_blocks]]

    def train(self, mode: bool = True) -> MobileNetFrames:
        super().train(mode)
        for module in self.frozen_modules():  # frozen layers keep their running statistics too
            module.eval()
        return self

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        return self.body.pooled(frames)

    def init_from_upstream(self, path: str) -> None:
        """Start the body from a RetinaFace-MobileNetV2 checkpoint of ours (``body.*`` keys)."""
        self.body.load_from_retinaface(path)
