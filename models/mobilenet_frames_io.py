"""The shipped default frame detector's inputs and outputs, torch-free: ``MobileNetFramesIO``.

Its network (``models.mobilenet_frames``: RetinaFace's MobileNetV2 per frame) inherits this;
scoring on ONNX Runtime needs only this and ``weights/detector.onnx``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from models.detector_io import register_io
from models.face_frames_io import PerFrameIO, Region, check_region_and_size, region_from_json
from models.flat_config import FlatConfig


@dataclass(frozen=True)
class MobileNetFramesConfig(FlatConfig):
    arch: ClassVar[str] = "mobilenetv2_frames"
    num_frames: int = 8  # face crops scored per sample
    img_size: int = 128  # the face region is resized to this (a multiple of 32)
    region: Region = (0.0, 16 / 224, 192 / 224)  # top, left, side: fractions of the crop
    dropout: float = 0.3
    frozen_blocks: int = 6  # stem + this many inverted-residual blocks keep their weights

    def __post_init__(self):
        check_region_and_size(self.region, self.img_size)
        if self.num_frames < 1 or not 0 <= self.frozen_blocks <= 16:
            raise ValueError(
                f"num_frames {self.num_frames} >= 1 and 0 <= frozen_blocks {self.frozen_blocks} <= 16"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> MobileNetFramesConfig:
        return super().from_dict(region_from_json(data))


@register_io("mobilenetv2_frames", MobileNetFramesConfig)
class MobileNetFramesIO(PerFrameIO):
    """Face crops → the face region (``config.region``) at ``img_size``², ImageNet-normalised."""

    @classmethod
    def face_region(cls, config: MobileNetFramesConfig) -> Region:
        return config.region
