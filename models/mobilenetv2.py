"""MobileNetV2 in the Keras application's layout, as the TensorFlow graph of the ``retinaface``
package has it: RetinaFace's backbone (``models.retinaface``) and, started from RetinaFace's
trained weights, the frame detectors' (``models.mobilenet_frames``, ``models.av_attention``).

Keras pads its stride-2 convolutions at the bottom and right only; ``KerasStridedConv2d``
reproduces that, so the converted weights (``models.retinaface_tf``) compute what they did.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from weights.store import load_weights


class KerasStridedConv2d(nn.Conv2d):
    """Stride-2 3x3 conv padded as Keras' MobileNetV2 does: one zero row/column at the bottom and
    right only (torch's symmetric ``padding=1`` would shift every later feature by half a pixel).

    Computed as a 4x4 kernel whose first row/column are zero, with symmetric padding 1: output
    ``i`` then reads input rows ``2i .. 2i+2`` exactly like the padded 3x3, without materialising
    a padded copy of the (large, early-layer) input — ~20% faster on CPU, bit-identical."""

    def __init__(self, cin: int, cout: int, groups: int = 1):
        super().__init__(cin, cout, 3, stride=2, padding=1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            # exporters want static kernel shapes; Pad + Conv is fused by ONNX Runtime anyway
            return F.conv2d(
                F.pad(x, (0, 1, 0, 1)), self.weight, self.bias, self.stride, 0, self.dilation, self.groups
            )
        weight = F.pad(self.weight, (1, 0, 1, 0))
        return F.conv2d(x, weight, self.bias, self.stride, 1, self.dilation, self.groups)


def _keras_conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu6: bool = True):
    if stride == 1:
        conv = nn.Conv2d(cin, cout, kernel, 1, padding=kernel // 2, groups=groups, bias=False)
    else:
        assert kernel == 3 and stride == 2, "Keras MobileNetV2 strides only its 3x3 convs"
        conv = KerasStridedConv2d(cin, cout, groups=groups)
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(cout)]
    if relu6:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = _keras_conv_bn(cin, hidden, 1) if expansion != 1 else None
        self.depthwise = _keras_conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.project = _keras_conv_bn(hidden, cout, 1, relu6=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """Width 1.0, truncated after block 15; features at strides 8, 16, 32 (32, 96, 160 channels).
    ``forward`` gives the three maps (RetinaFace's FPN reads them); ``pooled`` their means,
    concatenated (what the detectors read: blending traces live in the stride-8 map)."""

    # (expansion, out channels, repeats, first stride) per stage, blocks 0..15
    STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2))
    RETURN_BLOCKS = (5, 12, 15)
    out_channels = (32, 96, 160)

    def __init__(self):
        super().__init__()
        self.stem = _keras_conv_bn(3, 32, 3, stride=2)
        blocks, cin = [], 32
        for expansion, cout, repeats, stride in self.STAGES:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.RETURN_BLOCKS:
                feats.append(x)
        return feats

    @property
    def num_pooled_features(self) -> int:
        return sum(self.out_channels)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, ``num_pooled_features``): each feature map averaged over space."""
        return torch.cat([f.mean(dim=(2, 3)) for f in self(x)], dim=1)

    def load_from_retinaface(self, path: str | os.PathLike) -> None:
        """Take the weights of a RetinaFace-MobileNetV2 checkpoint of ours (its ``body.*``
        tensors, e.g. ``weights/retinaface_mobilenetv2``): a detector's start from a network
        that has seen millions of faces."""
        stored = load_weights(path)
        body = {k[len("body.") :]: v for k, v in stored.state_dict.items() if k.startswith("body.")}
        if not body:
            raise ValueError(f"{path}: no 'body.*' tensors: not a RetinaFace-MobileNetV2 checkpoint")
        missing, unexpected = self.load_state_dict(body, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: body does not match MobileNetV2 (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
