"""RetinaFace's configuration, torch-free: how the network wants its pixels (``InputSpec``), where
its anchors sit (``PriorSpec``) and its layout (``RetinaFaceConfig``), as the weights' JSON
carries them. Face detection on ONNX Runtime (``preprocess.faces``) needs only this besides
the exported graph; the network itself is ``models.retinaface``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

ARCH = "retinaface"
BACKBONES = ("mobilenetv2", "mobilenet0.25", "resnet50")


@dataclass(frozen=True)
class InputSpec:
    """The pixels the network wants. Defaults: the retinaface package's graph (Keras
    MobileNetV2 preprocessing, x / 127.5 - 1, RGB)."""

    channel_order: str = "rgb"  # order the network expects
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)  # subtracted from 0–255 pixels …
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)  # … then divided by this
    pad_multiple: int = 32  # input sides are zero-padded (bottom/right) up to a multiple

    def __post_init__(self) -> None:
        if self.channel_order not in ("rgb", "bgr") or len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"bad RetinaFace input spec {self}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        return cls(
            channel_order=str(data["channel_order"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            pad_multiple=int(data.get("pad_multiple", 32)),
        )


@dataclass(frozen=True)
class PriorSpec:
    """Where the anchors sit: the parameterisation the heads' outputs are decoded against."""

    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))  # pixels, per level
    steps: tuple[int, ...] = (8, 16, 32)  # feature stride per level
    variance: tuple[float, float] = (0.1, 0.2)  # centre, size
    clip: bool = False  # clamp anchors to [0, 1]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriorSpec:
        return cls(
            min_sizes=tuple(tuple(int(s) for s in level) for level in data["min_sizes"]),
            steps=tuple(int(s) for s in data["steps"]),
            variance=(float(data["variance"][0]), float(data["variance"][1])),
            clip=bool(data.get("clip", False)),
        )


# biubug6/Pytorch_Retinaface: BGR minus the Caffe means, no scaling.
BIUBUG6_INPUT = InputSpec(channel_order="bgr", mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0))


@dataclass(frozen=True)
class RetinaFaceConfig:
    backbone: str = "mobilenetv2"
    out_channels: int = 64
    num_anchors: int = 2
    input: InputSpec = field(default_factory=InputSpec)
    priors: PriorSpec = field(default_factory=PriorSpec)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown RetinaFace backbone {self.backbone!r}; expected one of {BACKBONES}")

    @property
    def leaky(self) -> float:
        # upstream rule: narrow necks use LeakyReLU(0.1), wide ones ReLU
        return 0.1 if self.out_channels <= 64 else 0.0

    @classmethod
    def for_backbone(cls, backbone: str) -> RetinaFaceConfig:
        """The published checkpoints' configuration: the retinaface package's graph for
        ``mobilenetv2``, biubug6's for ``mobilenet0.25`` and ``resnet50``."""
        if backbone == "mobilenetv2":
            return cls(backbone=backbone)
        return cls(backbone=backbone, out_channels=256 if backbone == "resnet50" else 64, input=BIUBUG6_INPUT)

    def to_dict(self) -> dict[str, Any]:
        """The ``model`` section of the weights JSON."""
        return {
            "backbone": self.backbone,
            "input": {**asdict(self.input), "mean": list(self.input.mean), "std": list(self.input.std)},
            "priors": asdict(self.priors),
            "out_channels": self.out_channels,
            "num_anchors": self.num_anchors,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RetinaFaceConfig:
        data = dict(data or {})
        return cls(
            backbone=str(data.get("backbone", "mobilenetv2")),
            out_channels=int(data.get("out_channels", 64)),
            num_anchors=int(data.get("num_anchors", 2)),
            input=InputSpec.from_dict(data["input"]) if "input" in data else InputSpec(),
            priors=PriorSpec.from_dict(data["priors"]) if "priors" in data else PriorSpec(),
        )
