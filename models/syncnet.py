"""SyncNet (Chung & Zisserman, 2016): lip and audio embeddings that are close when in sync.

The layer layout mirrors the released ``syncnet_v2.model`` (joonson/syncnet_python), so its
state dict loads key for key: ``netcnnlip``/``netfclip`` embed 5 face frames, ``netcnnaud``/
``netfcaud`` embed 20 MFCC frames (0.2 s). ``load_syncnet`` reads our weights (arch
``"syncnet"``) or that upstream file, converted by ``syncnet_v2_to_ours``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoints import ConversionError, as_float32, read_torch_checkpoint
from models.onnx_export import OnnxSpec
from models.registry import (
    check_state_dict,
    config_from_dict,
    load_model,
    load_state_dict_strictly,
    register_model,
)
from models.sync_archs import ARCH, SYNC_ARCHS, UPSTREAM_SUFFIXES, normalised_arch
from weights.store import WeightsError, read_config, resolve, save_weights

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


@dataclass(frozen=True)
class SyncNetConfig:
    embed_dim: int = EMBED_DIM

    def to_dict(self) -> dict[str, Any]:
        return {"embed_dim": self.embed_dim}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SyncNetConfig:
        return config_from_dict(cls, data, "syncnet")


@register_model(ARCH, SyncNetConfig)
class SyncNet(nn.Module):
    """Two-stream network; ``forward(video, audio)`` returns ``(lip_emb, aud_emb)``.

    video: (B, 3, 5, 224, 224) float, BGR 0..255; audio: (B', 1, 13, 20) float MFCCs. The two
    streams are independent, so B and B' may differ (one call can embed all audio windows and
    a strided subset of lip windows).
    """

    def __init__(self, config: SyncNetConfig | None = None):
        super().__init__()
        self.config = config or SyncNetConfig()
        self.netcnnaud = _audio_trunk()
        self.netfcaud = _head(self.config.embed_dim)
        self.netcnnlip = _lip_trunk()
        self.netfclip = _head(self.config.embed_dim)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_lip(video), self.forward_aud(audio)

    def onnx_spec(self, batch: int = 2, seed: int = 0) -> OnnxSpec:
        g = torch.Generator().manual_seed(seed)
        example = (
            torch.rand(batch, *LIP_INPUT, generator=g) * 255,
            torch.randn(batch, *AUDIO_INPUT, generator=g),
        )
        return OnnxSpec.batch_first(("video", "audio"), ("lip", "aud"), example)


def load_syncnet(name_or_path: str | os.PathLike) -> nn.Module:
    """A sync network in eval mode from our weights (a name under the weights folder or a path;
    arch ``syncnet`` or ``syncnet_mouth``) or from an upstream ``syncnet_v2.model``;
    ``WeightsError`` naming the file when it is missing, corrupt or does not fit."""
    path = Path(name_or_path)
    if path.suffix in UPSTREAM_SUFFIXES:
        model = SyncNet()
        load_state_dict_strictly(model, syncnet_v2_to_ours(load_syncnet_v2(path)), str(path))
        return model.eval()
    stored = read_config(name_or_path)
    arch = stored.get("arch")
    if arch not in SYNC_ARCHS:
        raise WeightsError(
            f"{resolve(name_or_path)}: holds a {arch!r} model, not {' or '.join(map(repr, SYNC_ARCHS))}"
        )
    return load_model(name_or_path, arch=arch).module


def normalised_embeddings(module: nn.Module) -> bool:
    """Whether the network's embeddings have unit length (``models.sync_archs.normalised_arch``)."""
    return normalised_arch(getattr(module, "arch", ARCH))


# --- upstream checkpoint: joonson/syncnet_python's syncnet_v2.model -------------------------------
# torch.save(model.state_dict()) of its ``S`` network, whose keys (netcnnaud.*, netfcaud.*,
# netcnnlip.*, netfclip.*) are ours one for one. Saved by an old torch, it may lack BatchNorm
# ``num_batches_tracked`` counters (unused at inference).


def syncnet_v2_to_ours(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Same keys; float32 tensors; BatchNorm counters added where the old checkpoint has none."""
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"not a state dict of tensors: {bad[:3]}")
    out = as_float32(state_dict)
    for key in [k for k in out if k.endswith(".running_mean")]:
        out.setdefault(key.removesuffix("running_mean") + "num_batches_tracked", torch.tensor(0))
    return out


def load_syncnet_v2(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``syncnet_v2.model`` (``weights_only=True``); ``WeightsError`` naming the file when
    it is missing, unreadable, or its keys/shapes are not SyncNet's."""
    obj = read_torch_checkpoint(path, "SyncNet")
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path}: expected a state dict of tensors (syncnet_v2.model), got {type(obj).__name__}"
        )
    with torch.device("meta"):  # shapes only, nothing allocated
        reference = SyncNet()
    check_state_dict(reference, syncnet_v2_to_ours(obj), str(path))
    return dict(obj)


def convert_syncnet_v2(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """``syncnet_v2.model`` → our ``<dst>.safetensors`` + ``.json``; returns the tensors path."""
    state_dict = syncnet_v2_to_ours(load_syncnet_v2(src))
    config = SyncNetConfig().to_dict()
    return save_weights(dst, state_dict, ARCH, config, None, extra={"source": Path(src).name})
