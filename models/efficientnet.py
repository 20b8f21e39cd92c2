"""EfficientNet-B0 (Tan & Le 2019) as a feature extractor, in timm's ``efficientnet_b0`` layout.

torchvision cannot be imported beside this project's torch and timm imports torchvision, so
the network is written here. Its modules and parameter names are timm's (``conv_stem``,
``bn1``, ``blocks.S.I.{conv_pw,bn1,conv_dw,bn2,se.conv_reduce,se.conv_expand,conv_pwl,bn3}``,
``conv_head``, ``bn2``), so timm's ImageNet checkpoint (``efficientnet_b0.ra_in1k``) loads
as it is; torchvision's (``efficientnet_b0`` IMAGENET1K_V1: ``features.N.M.block.K...``) is
renamed by ``efficientnet_from_torchvision``. Both use PyTorch padding (``(k - 1) // 2``) and
BatchNorm eps 1e-5, as here. timm's ``tf_efficientnet_b0*`` weights have the same names but
were trained with TensorFlow's asymmetric "SAME" padding and eps 1e-3: they load without an
error and compute something else, so do not use them.

``channel_multiplier`` and ``depth_multiplier`` scale widths and stage depths the way the
EfficientNet family does (timm's ``round_channels`` and ceil depth rounding); 1.0 and 1.0 is
B0, and only B0 has published weights. Smaller values make tiny networks for tests.
The ImageNet classifier is not part of this module: detectors put their own head on
``forward`` (pooled features, (B, ``num_features``)).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from models.checkpoints import ConversionError, read_torch_checkpoint, unwrap_state_dict
from models.registry import FlatConfig, check_state_dict, load_state_dict_strictly
from weights.store import WeightsError

# (block type, repeats, kernel, stride, expansion, output channels) per stage: timm's arch_def
# ds_r1_k3_s1_e1_c16_se0.25, ir_r2_k3_s2_e6_c24_se0.25, ... for efficientnet_b0.
B0_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
SE_RATIO = 0.25  # of the block's input channels
BN_EPS = 1e-5


def make_divisible(value: float, divisor: int = 8) -> int:
    """timm's rounding of a scaled channel count: nearest multiple of ``divisor``, never more
    than 10 % below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class EfficientNetConfig:
    channel_multiplier: float = 1.0
    depth_multiplier: float = 1.0
    drop_path_rate: float = 0.0  # stochastic depth at the last block; linear from 0 at the first

    def channels(self, base: int) -> int:
        return make_divisible(base * self.channel_multiplier)

    def repeats(self, base: int) -> int:
        return int(math.ceil(base * self.depth_multiplier))

    @property
    def num_features(self) -> int:
        return self.channels(HEAD_CHANNELS)


@dataclass(frozen=True)
class EfficientNetDetectorConfig(FlatConfig):
    """What every EfficientNet-based detector's config has: the frames it reads, the backbone's
    size and regularisation. Subclasses add their own fields and set ``arch`` (error messages)."""

    num_frames: int = 8  # face crops per sample
    img_size: int = 224
    dropout: float = 0.2  # before the head (B0's ImageNet recipe)
    drop_path_rate: float = 0.0
    channel_multiplier: float = 1.0  # 1.0 and 1.0: B0, the one with published weights
    depth_multiplier: float = 1.0
    arch: ClassVar[str] = "efficientnet"

    @property
    def backbone(self) -> EfficientNetConfig:
        return EfficientNetConfig(self.channel_multiplier, self.depth_multiplier, self.drop_path_rate)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.act = nn.SiLU()
        self.conv_expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.conv_expand(self.act(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(scale)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the residual branch of whole samples, rescaling the kept ones."""
    if rate == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


class DepthwiseSeparable(nn.Module):
    """Depthwise conv → BN → SiLU → SE → pointwise conv → BN (the expansion-1 first stage)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, drop_rate: float):
        super().__init__()
        self.conv_dw = nn.Conv2d(in_ch, in_ch, kernel, stride, (kernel - 1) // 2, groups=in_ch, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch, eps=BN_EPS)
        self.se = SqueezeExcite(in_ch, round(in_ch * SE_RATIO))
        self.conv_pw = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act = nn.SiLU()
        self.has_skip = stride == 1 and in_ch == out_ch
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.se(self.act(self.bn1(self.conv_dw(x))))))
        return x + drop_path(y, self.drop_rate, self.training) if self.has_skip else y


class InvertedResidual(nn.Module):
    """MBConv: expand 1×1 → depthwise k×k → SE → project 1×1, residual when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, drop_rate: float):
        super().__init__()
        mid = make_divisible(in_ch * expand)
        self.conv_pw = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, (kernel - 1) // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid, eps=BN_EPS)
        # timm sizes the squeeze from the block's input channels, not the expanded ones
        self.se = SqueezeExcite(mid, round(mid * SE_RATIO / expand))
        self.conv_pwl = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act = nn.SiLU()
        self.has_skip = stride == 1 and in_ch == out_ch
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv_pw(x)))
        y = self.se(self.act(self.bn2(self.conv_dw(y))))
        y = self.bn3(self.conv_pwl(y))
        return x + drop_path(y, self.drop_rate, self.training) if self.has_skip else y


class EfficientNet(nn.Module):
    """Stem → 7 stages of MBConv blocks → 1×1 head conv → global average pool: (B, num_features)."""

    def __init__(self, config: EfficientNetConfig | None = None):
        super().__init__()
        cfg = config or EfficientNetConfig()
        self.config = cfg
        stem = cfg.channels(STEM_CHANNELS)
        self.conv_stem = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=BN_EPS)
        total = sum(cfg.repeats(stage[1]) for stage in B0_STAGES)
        in_ch, index, stages = stem, 0, []
        for kind, repeats, kernel, stride, expand, out in B0_STAGES:
            out_ch = cfg.channels(out)
            blocks = []
            for i in range(cfg.repeats(repeats)):
                rate = cfg.drop_path_rate * index / total
                s = stride if i == 0 else 1
                if kind == "ds":
                    blocks.append(DepthwiseSeparable(in_ch, out_ch, kernel, s, rate))
                else:
                    blocks.append(InvertedResidual(in_ch, out_ch, kernel, s, expand, rate))
                in_ch, index = out_ch, index + 1
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = nn.Conv2d(in_ch, cfg.num_features, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cfg.num_features, eps=BN_EPS)
        self.act = nn.SiLU()
        self._init_weights()

    @property
    def num_features(self) -> int:
        return self.config.num_features

    def _init_weights(self) -> None:
        # timm's EfficientNet init: fan-out normal for convs, unit BN (what training from scratch expects)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, num_features, H/32, W/32)."""
        x = self.act(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        return self.act(self.bn2(self.conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean((2, 3))

    def load_imagenet(self, path: str | os.PathLike) -> None:
        """Take timm's or torchvision's ImageNet EfficientNet-B0 weights (``.pth`` or
        ``.safetensors``, ``load_efficientnet_checkpoint``): a detector's ``--init``."""
        load_state_dict_strictly(self, load_efficientnet_checkpoint(path, self.config), str(path))


# --- upstream checkpoints ---------------------------------------------------------------------

CLASSIFIER_PREFIXES = ("classifier.",)  # the ImageNet head: timm `classifier`, torchvision `classifier.1`
_TV_STEM = {"features.0.0.": "conv_stem.", "features.0.1.": "bn1."}
_TV_DS_BLOCK = {"block.0.0.": "conv_dw.", "block.0.1.": "bn1.", "block.1.fc1.": "se.conv_reduce.",
                "block.1.fc2.": "se.conv_expand.", "block.2.0.": "conv_pw.", "block.2.1.": "bn2."}  # fmt: skip
_TV_IR_BLOCK = {"block.0.0.": "conv_pw.", "block.0.1.": "bn1.", "block.1.0.": "conv_dw.", "block.1.1.": "bn2.",
                "block.2.fc1.": "se.conv_reduce.", "block.2.fc2.": "se.conv_expand.",
                "block.3.0.": "conv_pwl.", "block.3.1.": "bn3."}  # fmt: skip


def efficientnet_from_timm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm ``efficientnet_b0`` state dict → this module's (the same names, classifier dropped)."""
    sd = unwrap_state_dict(state_dict)
    if "conv_stem.weight" not in sd:
        raise ConversionError("not a timm-layout EfficientNet state dict: no conv_stem.weight")
    return {k: v for k, v in sd.items() if not k.startswith(CLASSIFIER_PREFIXES)}


def efficientnet_from_torchvision(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision ``efficientnet_b0`` state dict (``features.N.M.block.K...``) → timm names.

    ``features.0`` is the stem, ``features.1``-``features.7`` the seven stages, ``features.8`` the
    head conv; a block with a ``block.3`` has an expansion conv (MBConv), one without is the
    first stage's depthwise-separable block."""
    sd = unwrap_state_dict(state_dict)
    if "features.0.0.weight" not in sd:
        raise ConversionError("not a torchvision-layout EfficientNet state dict: no features.0.0.weight")
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("features."))
    head = {f"features.{last}.0.": "conv_head.", f"features.{last}.1.": "bn2."}
    expanded = {".".join(k.split(".")[1:3]) for k in sd if k.startswith("features.") and ".block.3." in k}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.startswith("classifier."):
            continue
        new = _rename_prefix(key, {**_TV_STEM, **head})
        if new is None and key.startswith("features."):
            _, stage, block, rest = key.split(".", 3)
            table = _TV_IR_BLOCK if f"{stage}.{block}" in expanded else _TV_DS_BLOCK
            renamed = _rename_prefix(rest, table)
            if renamed is not None:
                new = f"blocks.{int(stage) - 1}.{block}.{renamed}"
        if new is None:
            raise ConversionError(f"torchvision EfficientNet key with no timm counterpart: {key}")
        out[new] = value
    return out


def _rename_prefix(key: str, table: Mapping[str, str]) -> str | None:
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def load_efficientnet_checkpoint(path: str | os.PathLike, config: EfficientNetConfig | None = None):
    """A timm or torchvision EfficientNet-B0 checkpoint (``.pth`` read with ``weights_only=True``,
    or ``.safetensors``) → this module's state dict, checked against ``config``'s network;
    ``WeightsError`` naming the file when it is missing, unreadable or another network."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        if not path.is_file():
            raise WeightsError(f"{path}: EfficientNet checkpoint not found")
        obj = load_file(str(path))
    else:
        obj = read_torch_checkpoint(path, "EfficientNet")
    try:
        sd = unwrap_state_dict(obj)
        out = efficientnet_from_timm(sd) if "conv_stem.weight" in sd else efficientnet_from_torchvision(sd)
    except ConversionError as e:
        raise WeightsError(f"{path}: {e}") from e
    with torch.device("meta"):
        reference = EfficientNet(config)
    check_state_dict(reference, out, str(path))
    return out
