"""A sample's face crops → the frames a detector reads; the inputs and outputs of frame detectors.

Every detector picks ``num_frames`` of a sample's face crops, evenly spaced over the track (a
sample holds ``SampleConfig.num_frames`` crops of ``TrackConfig.crop_size``²), resizes them to
its ``img_size``² and normalises them with its own pixel mean and standard deviation.

``FaceFramesIO`` is the base of the detectors that read nothing else: one input, ``frames``
(B, T, 3, H, W). A frame-level network (MesoNet, EfficientNet per frame, the MobileNetV2
default) is a ``PerFrameIO``: it scores each frame and averages the frame logits inside the
graph, so every runtime sees one logit per sample as output 0, and the video's score is then
the detector's ``video_aggregation`` over its face tracks. Its second output, ``frame_logits``
(B, T), keeps each frame's log-odds: where in time a sample looks fake
(``time_columns``/``time_logits``).

Torch-free: the networks' base classes (``models.face_frames``) inherit these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from core.image_ops import Resizer
from core.preprocess_data import Sample
from models.detector_io import DetectorIO

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # 0-255 RGB, as torchvision and timm normalise
IMAGENET_STD = (58.395, 57.12, 57.375)


def pick_frames(count: int, wanted: int) -> np.ndarray:
    """Evenly spaced indices (repeats when the sample holds fewer frames than wanted)."""
    if count == wanted:
        return np.arange(count)
    return np.round(np.linspace(0, count - 1, wanted)).astype(int)


def resize_square(image: np.ndarray, size: int, resizer: Resizer | None = None) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    # INTER_AREA when shrinking avoids aliasing; bilinear when enlarging.
    resizer = resizer or Resizer()
    resize = resizer.area if size < min(h, w) else resizer.linear
    return resize(image, size, size)


Region = tuple[float, float, float]  # top, left, side: a square, as fractions of the crop


def check_region_and_size(region: Region, img_size: int) -> None:
    """ValueError unless ``region`` is a square inside the crop and ``img_size`` a positive
    multiple of 32 (what the configs of region-reading detectors accept)."""
    top, left, side = region
    if min(top, left) < 0 or side <= 0 or max(top, left) + side > 1:
        raise ValueError(f"region {region} must be a square inside the crop (fractions)")
    if img_size % 32 or img_size < 32:
        raise ValueError(f"img_size {img_size} must be a positive multiple of 32")


def region_from_json(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """A config dict read from JSON, its ``region`` list turned back into a tuple."""
    data = dict(data or {})
    if "region" in data:
        data["region"] = tuple(data["region"])
    return data


def crop_region(crop: np.ndarray, region: Region) -> np.ndarray:
    """The square ``region`` of a square face crop."""
    size = crop.shape[0]
    top, left, side = (int(round(v * size)) for v in region)
    return crop[top : top + side, left : left + side]


def face_frames(
    faces: np.ndarray, num_frames: int, size: int, name: str = "sample", region: Region | None = None
) -> np.ndarray:
    """(F, S, S, 3) uint8 crops → (num_frames, size, size, 3) uint8, evenly spaced in time; with
    ``region``, that square of each crop is what gets resized."""
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.shape[0] == 0:
        raise ValueError(f"{name}: faces must be (F, S, S, 3) with F > 0, got {faces.shape}")
    chosen = faces[pick_frames(len(faces), num_frames)]
    if region is not None:
        chosen = [crop_region(f, region) for f in chosen]
    resizer = Resizer()  # one table for every frame of the sample
    return np.stack([resize_square(f, size, resizer) for f in chosen])


def normalise(rgb: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """0-255 RGB (..., 3) → float32 (x - mean) / std, per channel, same layout."""
    return (rgb.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


class FaceFramesIO(DetectorIO):
    """A detector whose only input is ``frames`` (B, T, 3, img_size, img_size), float32,
    normalised with ``pixel_mean``/``pixel_std`` (0-255 scale). Its config has ``num_frames``
    and ``img_size``; its output is ``logits`` (B, 1), the log-odds that the sample is fake."""

    input_names = ("frames",)
    output_names = ("logits",)
    video_aggregation = "max"  # a video is fake if any of its faces is
    pixel_mean: ClassVar[tuple[float, ...]] = IMAGENET_MEAN
    pixel_std: ClassVar[tuple[float, ...]] = IMAGENET_STD

    @classmethod
    def sample_inputs(cls, sample: Sample, config: Any) -> dict[str, np.ndarray]:
        region = cls.face_region(config)
        rgb = face_frames(sample.faces, config.num_frames, config.img_size, sample.meta.video, region)
        frames = normalise(rgb, cls.pixel_mean, cls.pixel_std).transpose(0, 3, 1, 2)
        return {"frames": np.ascontiguousarray(frames)}

    @classmethod
    def face_region(cls, config: Any) -> Region | None:
        """The square of each crop the detector reads (None: the whole crop)."""
        return None


class PerFrameIO(FaceFramesIO):
    """A ``FaceFramesIO`` detector that scores every frame on its own and averages: outputs
    ``logits`` (B, 1), the sample's fake log-odds (what every score reads), and
    ``frame_logits`` (B, T), each picked frame's own log-odds, in the order ``sample_inputs``
    picks them."""

    output_names = ("logits", "frame_logits")

    @classmethod
    def time_columns(cls, sample: Sample, config: Any) -> np.ndarray:
        """Seconds of the frames ``sample_inputs`` picks: the same ``pick_frames`` over the
        sample's crops, each crop's clip frame index over the clip's frame rate."""
        picked = pick_frames(len(sample.faces), config.num_frames)
        indices = np.asarray(sample.face_frame_indices, dtype=np.float64)[picked]
        return indices / float(sample.meta.fps)

    @staticmethod
    def time_logits(outputs: Sequence[Any]) -> Any | None:
        # Weights exported before the second output existed give one output: no time axis.
        return outputs[1] if len(outputs) > 1 else None
