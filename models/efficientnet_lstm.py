"""EfficientNet-B0 features + an LSTM over a window of face frames (the recurrent detectors of
Güera & Delp 2018 and the DeepfakeForensics line: a CNN embeds each frame, an RNN reads the
sequence for temporal inconsistencies a single frame cannot show).

The window is the sample's ``num_frames`` face crops in time order, evenly spaced over the
face track (consecutive frames when the track is that short). Each crop → EfficientNet-B0
(``models.efficientnet``) pooled features → an LSTM (``lstm_layers`` × ``lstm_hidden``) →
its last hidden state → dropout → one linear unit: the sample's fake log-odds.

Frame → video: the LSTM turns the sample's frames into one logit, and the video takes the
maximum over its face tracks. No per-frame output: the LSTM's intermediate states are not
decisions it was trained to make (only the last one meets the loss), so it has no
``time_logits`` and localises nothing; ``--per-second`` reads it as time-less.
``init_from_upstream`` starts the backbone from timm's or torchvision's ImageNet
EfficientNet-B0 (``python -m train fit --init``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from models.efficientnet import EfficientNet, EfficientNetDetectorConfig
from models.face_frames import FaceFramesDetector
from models.registry import register_model


@dataclass(frozen=True)
class EfficientNetLSTMConfig(EfficientNetDetectorConfig):
    """``num_frames`` is the window: face crops per sample, in time order."""

    lstm_hidden: int = 256
    lstm_layers: int = 1
    arch: ClassVar[str] = "efficientnet_lstm"


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
        self.backbone.load_imagenet(path)
