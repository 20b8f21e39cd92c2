"""EfficientNet-B0 per frame: the ImageNet classifier every DFDC top team started from.

Each of the sample's ``num_frames`` face crops (ImageNet normalisation, ``img_size``² — 224
as ImageNet-trained B0 expects) goes through ``models.efficientnet``'s backbone on its own;
pooled features → dropout → one linear unit, the frame's fake log-odds.

Frame → video: the sample's logit is the mean of its frame logits (in the graph), and the
video takes the maximum over its face tracks. ``init_from_upstream`` starts the backbone from
timm's or torchvision's ImageNet EfficientNet-B0 checkpoint (``python -m train fit --init``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.efficientnet import EfficientNet, EfficientNetConfig, load_efficientnet_checkpoint
from models.face_frames import FaceFramesDetector, mean_over_frames
from models.registry import config_from_dict, load_state_dict_strictly, register_model


@dataclass(frozen=True)
class EfficientNetFramesConfig:
    num_frames: int = 8  # face crops scored per sample
    img_size: int = 224
    dropout: float = 0.2  # before the head (B0's ImageNet recipe)
    drop_path_rate: float = 0.0
    channel_multiplier: float = 1.0  # 1.0 and 1.0: B0, the one with published weights
    depth_multiplier: float = 1.0

    @property
    def backbone(self) -> EfficientNetConfig:
        return EfficientNetConfig(self.channel_multiplier, self.depth_multiplier, self.drop_path_rate)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EfficientNetFramesConfig:
        return config_from_dict(cls, data, "efficientnet_b0")


@register_model("efficientnet_b0", EfficientNetFramesConfig)
class EfficientNetFrames(FaceFramesDetector):
    def __init__(self, config: EfficientNetFramesConfig | None = None):
        super().__init__()
        cfg = config or EfficientNetFramesConfig()
        self.config = cfg
        self.backbone = EfficientNet(cfg.backbone)
        self.head_drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.backbone.num_features, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        self.check_frames(frames)
        features = self.backbone(frames.reshape(-1, *frames.shape[2:]))  # (B*T, C)
        return mean_over_frames(self.head(self.head_drop(features)), frames.shape[0])

    def init_from_upstream(self, path: str) -> None:
        load_state_dict_strictly(
            self.backbone, load_efficientnet_checkpoint(path, self.config.backbone), path
        )
