"""MesoNet-4 and MesoInception-4 (Afchar et al., "MesoNet: a Compact Facial Video Forgery
Detection Network", WIFS 2018): small CNNs that look at mesoscopic detail of a face crop.

The layer layout is the published one (the authors' Keras ``classifiers.py``)::

    Meso4           conv 3×3 8 → BN → pool 2 | conv 5×5 8 → BN → pool 2 |
                    conv 5×5 16 → BN → pool 2 | conv 5×5 16 → BN → pool 4 |
                    dropout 0.5 → dense 16 → LeakyReLU 0.1 → dropout 0.5 → dense 1
    MesoInception4  inception(1, 4, 4, 2) → BN → pool 2 | inception(2, 4, 4, 2) → BN → pool 2 |
                    then as Meso4's last two convolutions and head
    inception(a, b, c, d) = concat(1×1 a; 1×1 b → 3×3 b; 1×1 c → 3×3 c dilated 2;
                                   1×1 d → 3×3 d dilated 3), every conv ReLU, "same" padding

At 256×256 (the paper's input) the last pool leaves 16 × 8 × 8 values; 27,977 (Meso4) and
28,615 (MesoInception4) trainable parameters, as the paper reports. Inputs are RGB scaled to
[0, 1] (the paper's ``rescale=1/255``). BatchNorm uses Keras's eps (1e-3) but PyTorch's
running-average momentum: Keras's 0.99 (0.01 here) left the running statistics so far behind
the weights after a few hundred steps that the evaluated network scored every face ~0.5
(measured: validation log loss 0.69 while the training loss was 0.05). The final dense unit gives the fake log-odds (the paper applies its
sigmoid in the graph; here the sigmoid is ``fake_probability``'s).

Frame → video: each of the sample's ``num_frames`` face crops is scored on its own, the
sample's logit is the mean of its frame logits (the paper's "image aggregation" averages
frame predictions over a video), and the video takes the maximum over its face tracks.
The authors' published weights are Keras HDF5 files; no converter reads them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from models.face_frames import PerFrameDetector
from models.registry import FlatConfig, register_model

KERAS_BN = {"eps": 1e-3}


@dataclass(frozen=True)
class MesoConfig(FlatConfig):
    arch: ClassVar[str] = "mesonet"
    num_frames: int = 8  # face crops scored per sample
    img_size: int = 256  # the paper's input; a multiple of 32
    dropout: float = 0.5

    def __post_init__(self):
        if self.img_size % 32 or self.img_size < 32:
            raise ValueError(
                f"img_size {self.img_size} must be a positive multiple of 32 (4 poolings: 2·2·2·4)"
            )
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")


def conv_bn_pool(in_ch: int, out_ch: int, kernel: int, pool: int) -> nn.Sequential:
    """Conv ("same", ReLU) → BatchNorm → max-pool: one of MesoNet's four stages."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2),
        nn.ReLU(),
        nn.BatchNorm2d(out_ch, **KERAS_BN),
        nn.MaxPool2d(pool),
    )


class InceptionLayer(nn.Module):
    """MesoInception's block: four branches with growing receptive fields, concatenated."""

    def __init__(self, in_ch: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.branch1 = nn.Conv2d(in_ch, a, 1)
        self.branch2 = nn.Sequential(nn.Conv2d(in_ch, b, 1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1))
        self.branch3 = nn.Sequential(
            nn.Conv2d(in_ch, c, 1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=2, dilation=2)
        )
        self.branch4 = nn.Sequential(
            nn.Conv2d(in_ch, d, 1), nn.ReLU(), nn.Conv2d(d, d, 3, padding=3, dilation=3)
        )
        self.out_channels = a + b + c + d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x))
        return torch.relu(torch.cat(branches, dim=1))


def inception_bn_pool(in_ch: int, a: int, b: int, c: int, d: int) -> nn.Sequential:
    layer = InceptionLayer(in_ch, a, b, c, d)
    return nn.Sequential(layer, nn.BatchNorm2d(layer.out_channels, **KERAS_BN), nn.MaxPool2d(2))


class MesoHead(nn.Module):
    """Flatten → dropout → dense 16 → LeakyReLU(0.1) → dropout → dense 1 (the fake log-odds)."""

    def __init__(self, in_features: int, dropout: float):
        super().__init__()
        self.drop1 = nn.Dropout(dropout)
        self.fc1 = nn.Linear(in_features, 16)
        self.act = nn.LeakyReLU(0.1)
        self.drop2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop2(self.act(self.fc1(self.drop1(x.flatten(1))))))


class MesoNetBase(PerFrameDetector):
    """What both MesoNets share: [0, 1] inputs, per-frame scoring, the mean over frames."""

    pixel_mean = (0.0, 0.0, 0.0)
    pixel_std = (255.0, 255.0, 255.0)
    features: nn.Sequential
    head: MesoHead

    def _build_head(self, cfg: MesoConfig) -> None:
        self.head = MesoHead(16 * (cfg.img_size // 32) ** 2, cfg.dropout)

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        return self.features(frames)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # the paper's head: its dropouts are inside


@register_model("meso4", MesoConfig)
class Meso4(MesoNetBase):
    def __init__(self, config: MesoConfig | None = None):
        super().__init__()
        cfg = config or MesoConfig()
        self.config = cfg
        self.features = nn.Sequential(
            conv_bn_pool(3, 8, 3, 2),
            conv_bn_pool(8, 8, 5, 2),
            conv_bn_pool(8, 16, 5, 2),
            conv_bn_pool(16, 16, 5, 4),
        )
        self._build_head(cfg)


@register_model("mesoinception4", MesoConfig)
class MesoInception4(MesoNetBase):
    def __init__(self, config: MesoConfig | None = None):
        super().__init__()
        cfg = config or MesoConfig()
        self.config = cfg
        first = inception_bn_pool(3, 1, 4, 4, 2)
        second = inception_bn_pool(11, 2, 4, 4, 2)
        self.features = nn.Sequential(first, second, conv_bn_pool(12, 16, 5, 2), conv_bn_pool(16, 16, 5, 4))
        self._build_head(cfg)
