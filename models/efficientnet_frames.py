"""EfficientNet-B0 per frame: the ImageNet classifier every DFDC top team started from.

Each of the sample's ``num_frames`` face crops (ImageNet normalisation, ``img_size``² — 224
as ImageNet-trained B0 expects) goes through ``models.efficientnet``'s backbone on its own;
pooled features → dropout → one linear unit, the frame's fake log-odds.

Frame → video: the sample's logit is the mean of its frame logits (in the graph), and the
video takes the maximum over its face tracks. ``init_from_upstream`` starts the backbone from
timm's or torchvision's ImageNet EfficientNet-B0 checkpoint (``python -m train fit --init``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from models.efficientnet import EfficientNet, EfficientNetDetectorConfig
from models.face_frames import PerFrameDetector
from models.registry import register_model


@dataclass(frozen=True)
class EfficientNetFramesConfig(EfficientNetDetectorConfig):
    arch: ClassVar[str] = "efficientnet_b0"


@register_model("efficientnet_b0", EfficientNetFramesConfig)
class EfficientNetFrames(PerFrameDetector):
    def __init__(self, config: EfficientNetFramesConfig | None = None):
        super().__init__()
        cfg = config or EfficientNetFramesConfig()
        self.config = cfg
        self.backbone = EfficientNet(cfg.backbone)
        self.add_linear_head(self.backbone.num_features, cfg.dropout)

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        return self.backbone(frames)  # pooled: (N, num_features)

    def init_from_upstream(self, path: str) -> None:
        self.backbone.load_imagenet(path)
