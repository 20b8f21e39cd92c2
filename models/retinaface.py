"""RetinaFace (Deng et al., 2019): backbone → FPN → SSH context modules → per-anchor heads.

Module names follow biubug6/Pytorch_Retinaface (``fpn``, ``ssh1``, ``ClassHead.0.conv1x1`` …),
so its checkpoints load with their own keys (``retinaface_from_biubug6``, below); the
MobileNetV2 backbone (``models.mobilenetv2``) mirrors the Keras application used by the
TensorFlow graph of the ``retinaface`` package (converted by ``models.retinaface_tf``).
``RetinaFaceConfig`` (``models.retinaface_config``, torch-free) also says how the network wants
its pixels (``InputSpec``) and where its anchors sit (``PriorSpec``): both travel in the
weights' JSON. Anchor generation, decoding and NMS run in the detection wrapper
(``preprocess.faces``), on this network's raw outputs.

``forward`` takes normalised NCHW float images whose sides are multiples of 32 and returns
raw per-anchor outputs only (no data-dependent shapes), so it traces and exports cleanly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoints import (
    ConversionError,
    as_float32,
    read_torch_checkpoint,
    strip_prefix,
    unwrap_state_dict,
)
from models.mobilenetv2 import MobileNetV2
from models.onnx_export import OnnxSpec
from models.registry import load_model, load_state_dict_strictly, register_model
from models.retinaface_config import ARCH, BACKBONES, RetinaFaceConfig
from weights.store import WeightsError, resolve


def conv_bn(
    cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: nn.Module | None = None
):
    """Conv (no bias) + BatchNorm (+ activation) as ``Sequential`` indices 0, 1 (, 2).

    Activations run in place throughout: on CPU a fresh output buffer per activation costs more
    (page faults on large tensors) than the activation itself."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


def _act(leaky: float) -> nn.Module:
    return nn.LeakyReLU(leaky, inplace=True) if leaky > 0 else nn.ReLU(inplace=True)


# --- MobileNet-0.25 (biubug6 layout: body.stage1/2/3) --------------------------------------------


def _dw_sep(cin: int, cout: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.LeakyReLU(leaky, inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(leaky, inplace=True),
    )


class MobileNetV1x025(nn.Module):
    out_channels = (64, 128, 256)

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 3, 2, act=nn.LeakyReLU(0.1, inplace=True)),
            _dw_sep(8, 16, 1),
            _dw_sep(16, 32, 2),
            _dw_sep(32, 32, 1),
            _dw_sep(32, 64, 2),
            _dw_sep(64, 64, 1),
        )
        self.stage2 = nn.Sequential(_dw_sep(64, 128, 2), *[_dw_sep(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_dw_sep(128, 256, 2), _dw_sep(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        return [c3, c4, self.stage3(c4)]


# --- ResNet-50 (torchvision key layout: body.conv1, body.layer1.0.conv1 …) ------------------------


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet50(nn.Module):
    out_channels = (512, 1024, 2048)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), 1):
            layer = []
            for j in range(blocks):
                layer.append(Bottleneck(cin, width, stride if j == 0 else 1))
                cin = width * Bottleneck.expansion
            setattr(self, f"layer{i}", nn.Sequential(*layer))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]


# --- detection neck and heads (shared by every backbone) -----------------------------------------


class FPN(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], out_channels: int, leaky: float):
        super().__init__()
        self.output1 = conv_bn(in_channels[0], out_channels, 1, act=_act(leaky))
        self.output2 = conv_bn(in_channels[1], out_channels, 1, act=_act(leaky))
        self.output3 = conv_bn(in_channels[2], out_channels, 1, act=_act(leaky))
        self.merge1 = conv_bn(out_channels, out_channels, 3, act=_act(leaky))
        self.merge2 = conv_bn(out_channels, out_channels, 3, act=_act(leaky))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out1, out2, out3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        # legacy nearest (floor(i * in / out)), as TF's ResizeNearestNeighbor without half-pixel centres
        out2 = self.merge2(out2 + F.interpolate(out3, size=out2.shape[-2:], mode="nearest"))
        out1 = self.merge1(out1 + F.interpolate(out2, size=out1.shape[-2:], mode="nearest"))
        return [out1, out2, out3]


class SSH(nn.Module):
    """Single-stage headless context module: 3x3, 5x5 and 7x7 receptive fields from stacked 3x3s."""

    def __init__(self, cin: int, cout: int, leaky: float):
        super().__init__()
        self.conv3X3 = conv_bn(cin, cout // 2)
        self.conv5X5_1 = conv_bn(cin, cout // 4, act=_act(leaky))
        self.conv5X5_2 = conv_bn(cout // 4, cout // 4)
        self.conv7X7_2 = conv_bn(cout // 4, cout // 4, act=_act(leaky))
        self.conv7x7_3 = conv_bn(cout // 4, cout // 4)  # lower-case x: the upstream key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5_1 = self.conv5X5_1(x)
        out = torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), self.conv7x7_3(self.conv7X7_2(c5_1))], dim=1)
        return F.relu(out, inplace=True)


class Head(nn.Module):
    """1x1 conv predicting ``per_anchor`` values for each anchor, flattened anchor-major (H, W, A)."""

    def __init__(self, cin: int, num_anchors: int, per_anchor: int):
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(cin, num_anchors * per_anchor, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.per_anchor)


@register_model(ARCH, RetinaFaceConfig)
class RetinaFace(nn.Module):
    def __init__(self, config: RetinaFaceConfig | None = None):
        super().__init__()
        config = config or RetinaFaceConfig()
        self.config = config
        body = {"mobilenetv2": MobileNetV2, "mobilenet0.25": MobileNetV1x025, "resnet50": ResNet50}
        if config.backbone not in body:
            raise ValueError(f"unknown RetinaFace backbone {config.backbone!r}; expected one of {BACKBONES}")
        self.body = body[config.backbone]()
        cout, leaky, anchors = config.out_channels, config.leaky, config.num_anchors
        self.fpn = FPN(self.body.out_channels, cout, leaky)
        self.ssh1, self.ssh2, self.ssh3 = (SSH(cout, cout, leaky) for _ in range(3))
        self.ClassHead = nn.ModuleList(Head(cout, anchors, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(Head(cout, anchors, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(Head(cout, anchors, 10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) normalised → box deltas (B, N, 4), face probability (B, N), landmark
        deltas (B, N, 10); N anchors ordered level, row, column, anchor size."""
        feats = self.fpn(self.body(x))
        feats = [self.ssh1(feats[0]), self.ssh2(feats[1]), self.ssh3(feats[2])]
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, feats, strict=True)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, feats, strict=True)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, feats, strict=True)], dim=1)
        return boxes, logits.softmax(dim=-1)[..., 1], landmarks

    def onnx_spec(self, batch: int = 2, height: int = 160, width: int = 160) -> OnnxSpec:
        """Batch and frame size stay free (sides: multiples of ``input.pad_multiple``)."""
        anchors = {0: "batch", 1: "anchors"}
        return OnnxSpec(
            ("image",),
            ("boxes", "scores", "landmarks"),
            (torch.randn(batch, 3, height, width),),
            {
                "image": {0: "batch", 2: "height", 3: "width"},
                "boxes": anchors,
                "scores": anchors,
                "landmarks": anchors,
            },
        )


def build_retinaface(backbone: str) -> RetinaFace:
    return RetinaFace(RetinaFaceConfig.for_backbone(backbone))


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that directly follows a conv inside a ``Sequential`` (or a
    ``convN``/``bnN`` pair of a Bottleneck) into the conv's weights, in place. Inference only:
    the fused model computes the same function with fewer passes over memory."""

    def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.data = conv.weight.data * scale.reshape(-1, 1, 1, 1)
        bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)

    with torch.no_grad():
        for module in list(model.modules()):
            if isinstance(module, nn.Sequential):
                for i in range(len(module) - 1):
                    if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                        fold(module[i], module[i + 1])
                        module[i + 1] = nn.Identity()
            elif isinstance(module, Bottleneck):
                for k in (1, 2, 3):
                    bn = getattr(module, f"bn{k}")
                    if isinstance(bn, nn.BatchNorm2d):
                        fold(getattr(module, f"conv{k}"), bn)
                        setattr(module, f"bn{k}", nn.Identity())
            elif isinstance(module, ResNet50) and isinstance(module.bn1, nn.BatchNorm2d):
                fold(module.conv1, module.bn1)
                module.bn1 = nn.Identity()
    return model


def load_retinaface(name_or_path: str | os.PathLike) -> RetinaFace:
    """RetinaFace in eval mode (BatchNorm kept) from our weights (a name under the weights folder
    or a path) or a biubug6/Pytorch_Retinaface ``.pth``; its ``config`` says how to feed it."""
    path = Path(name_or_path)
    if path.suffix in BIUBUG6_SUFFIXES:
        checkpoint = read_torch_checkpoint(path, "biubug6 RetinaFace")
        try:
            state_dict = retinaface_from_biubug6(unwrap_state_dict(checkpoint))
        except ConversionError as e:
            raise WeightsError(f"{path}: {e}") from e
        net = RetinaFace(RetinaFaceConfig.for_backbone(biubug6_backbone(state_dict)))
        load_state_dict_strictly(net, state_dict, str(path))
        return net.eval()
    if not resolve(name_or_path).is_file():
        raise WeightsError(
            f"{resolve(name_or_path)}: weights not found"
            " (the default face detector is built by `python -m models.build_retinaface`)"
        )
    return load_model(name_or_path, arch=ARCH).module


# --- upstream checkpoints: biubug6/Pytorch_Retinaface (mobilenet0.25, resnet50) -------------------
# They already use our keys; only a ``module.`` prefix (DataParallel) goes.

BIUBUG6_SUFFIXES = (".pth", ".pt", ".tar")
BIUBUG6_BACKBONE_KEYS = {"mobilenet0.25": "body.stage1.0.0.weight", "resnet50": "body.layer1.0.conv1.weight"}


def biubug6_backbone(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which backbone a biubug6/Pytorch_Retinaface checkpoint was trained with (by its keys)."""
    keys = strip_prefix(state_dict)
    for backbone, key in BIUBUG6_BACKBONE_KEYS.items():
        if key in keys:
            return backbone
    raise ConversionError(
        "not a biubug6 RetinaFace checkpoint: none of "
        + ", ".join(BIUBUG6_BACKBONE_KEYS.values())
        + " present"
    )


def retinaface_from_biubug6(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A biubug6 state dict → ours: the same keys, float32, refused unless it is one."""
    out = strip_prefix(state_dict)
    bad = [k for k, v in out.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"not a state dict of tensors: {bad[:3]}")
    biubug6_backbone(out)
    return as_float32(out)
