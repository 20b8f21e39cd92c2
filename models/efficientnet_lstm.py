"""EfficientNet-B0 features + an LSTM over a window of face frames (the recurrent detectors of
Güera & Delp 2018 and the DeepfakeForensics line: a CNN embeds each frame, an RNN reads the
sequence for temporal inconsistencies a single frame cannot show).

The window is the sample's ``num_frames`` face crops in time order, evenly spaced over the
face track (consecutive frames when the track is that short). Each crop → EfficientNet-B0
(``models.efficientnet``) pooled features → an LSTM (``lstm_layers`` × ``lstm_hidden``) →
its last hidden state → dropout → one linear unit: the sample's fake log-odds.

Frame → video: the LSTM turns the sample's frames into one logit, and the video takes the
maximum over its face tracks. ``init_from_upstream`` starts the backbone from timm's or
torchvision's ImageNet EfficientNet-B0 (``python -m train fit --init``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.efficientnet import EfficientNet, EfficientNetConfig, load_efficientnet_checkpoint
from models.face_frames import FaceFramesDetector
from models.registry import config_from_dict, load_state_dict_strictly, register_model


@dataclass(frozen=True)
class EfficientNetLSTMConfig:
    num_frames: int = 8  # the window: face crops per sample, in time order
    img_size: int = 224
    lstm_hidden: int = 256
    lstm_layers: int = 1
    dropout: float = 0.2  # before the head
    drop_path_rate: float = 0.0
    channel_multiplier: float = 1.0  # 1.0 and 1.0: B0, the one with published weights
    depth_multiplier: float = 1.0

    @property
    def backbone(self) -> EfficientNetConfig:
        return EfficientNetConfig(self.channel_multiplier, self.depth_multiplier, self.drop_path_rate)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EfficientNetLSTMConfig:
        return config_from_dict(cls, data, "efficientnet_lstm")


@register_model("efficientnet_lstm", EfficientNetLSTMConfig)
class EfficientNetLSTM(FaceFramesDetector):
    def __init__(self, config: EfficientNetLSTMConfig | None = None):
        super().__init__()
        cfg = config or EfficientNetLSTMConfig()
        self.config = cfg
        self.backbone = EfficientNet(cfg.backbone)
        self.lstm = nn.LSTM(self.backbone.num_features, cfg.lstm_hidden, cfg.lstm_layers, batch_first=True)
        self.head_drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.lstm_hidden, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        self.check_frames(frames)
        batch, steps = frames.shape[:2]
        features = self.backbone(frames.reshape(-1, *frames.shape[2:])).reshape(batch, steps, -1)
        sequence, _ = self.lstm(features)
        return self.head(self.head_drop(sequence[:, -1]))  # the state after the whole window

    def init_from_upstream(self, path: str) -> None:
        load_state_dict_strictly(
            self.backbone, load_efficientnet_checkpoint(path, self.config.backbone), path
        )
