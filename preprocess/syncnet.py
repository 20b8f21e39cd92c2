"""SyncNet (Chung & Zisserman, 2016): lip and audio embeddings that are close when in sync.

The layer layout mirrors the released ``syncnet_v2.model`` (joonson/syncnet_python), so its
state dict loads key for key: ``netcnnlip``/``netfclip`` embed 5 face frames, ``netcnnaud``/
``netfcaud`` embed 20 MFCC frames (0.2 s). Weight loading lives in ``weights.convert``.
"""

from __future__ import annotations

import torch
from torch import nn

EMBED_DIM = 1024
LIP_INPUT = (3, 5, 224, 224)  # BGR, 0..255, 5 frames of 224x224 face crops
AUDIO_INPUT = (1, 13, 20)  # 13 MFCCs x 20 frames at 100 Hz


def _conv_bn_relu(conv: nn.Module, channels: int, bn: type[nn.Module]) -> list[nn.Module]:
    return [conv, bn(channels), nn.ReLU(inplace=True)]


def _audio_trunk() -> nn.Sequential:
    def block(cin: int, cout: int, kernel=(3, 3), padding=(1, 1)) -> list[nn.Module]:
        return _conv_bn_relu(nn.Conv2d(cin, cout, kernel, padding=padding), cout, nn.BatchNorm2d)

    return nn.Sequential(
        *block(1, 64),
        nn.Identity(),  # upstream has a 1x1 max-pool here: it keeps the Sequential indices aligned
        *block(64, 192),
        nn.MaxPool2d((3, 3), stride=(1, 2)),
        *block(192, 384),
        *block(384, 256),
        *block(256, 256),
        nn.MaxPool2d((3, 3), stride=(2, 2)),
        *block(256, 512, kernel=(5, 4), padding=(0, 0)),  # 5x4 map -> 1x1
    )


def _lip_trunk() -> nn.Sequential:
    def block(cin: int, cout: int, kernel, stride=(1, 1, 1), padding=(0, 0, 0)) -> list[nn.Module]:
        return _conv_bn_relu(nn.Conv3d(cin, cout, kernel, stride, padding), cout, nn.BatchNorm3d)

    return nn.Sequential(
        *block(3, 96, (5, 7, 7), stride=(1, 2, 2)),  # the 5 frames collapse to one step here
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
        *block(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        *block(256, 256, (1, 3, 3), padding=(0, 1, 1)),
        *block(256, 256, (1, 3, 3), padding=(0, 1, 1)),
        *block(256, 256, (1, 3, 3), padding=(0, 1, 1)),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
        *block(256, 512, (1, 6, 6)),  # 6x6 map -> 1x1
    )


def _head(embed_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))


class SyncNet(nn.Module):
    """Two-stream network; ``forward(video, audio)`` returns ``(lip_emb, aud_emb)``.

    video: (B, 3, 5, 224, 224) float, BGR 0..255; audio: (B', 1, 13, 20) float MFCCs. The two
    streams are independent, so B and B' may differ (one call can embed all audio windows and
    a strided subset of lip windows).
    """

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.netcnnaud = _audio_trunk()
        self.netfcaud = _head(embed_dim)
        self.netcnnlip = _lip_trunk()
        self.netfclip = _head(embed_dim)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_lip(video), self.forward_aud(audio)
