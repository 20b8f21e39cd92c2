"""temporal_net's inputs and outputs, torch-free: ``TemporalNetIO`` (see ``models.temporal_net``
for the network). The inputs are temporal_band's — windows of consecutive grey face squares and
their frame mask — so the two read the same ``"windows"`` preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from models.detector_io import register_io
from models.face_frames_io import Region
from models.temporal_band_io import TemporalBandIO, WindowMotionConfig


@dataclass(frozen=True)
class TemporalNetConfig(WindowMotionConfig):
    arch: ClassVar[str] = "temporal_net"
    windows: int = 4  # windows read per sample (SampleConfig.windows)
    window_frames: int = 32  # frames per window (SampleConfig.window_frames)
    img_size: int = 32  # the face square is resized to this, in grayscale
    region: Region = (0.0, 16 / 224, 192 / 224)  # top, left, side: the face square of the crop
    dup_rel: float = 0.2  # repeated-frame rule, as temporal_band's
    dup_abs: float = 0.5 / 255
    split: str = "halves"  # motion statistics in the upper and lower face apart ("whole": one region)
    # temporal_band's FEATURES, per region: the shape of the motion in time and space
    features: str = "smooth,smooth_coarse,lag2,fine"
    hidden: int = 16  # units of the hidden layer
    dropout: float = 0.0
    # the log-odds of a track with no window of MIN_FRAMES distinct frames (a still face): the
    # median real training sample's (fitted), so it neither raises nor lowers a video's max
    still_logit: float = 0.0

    def __post_init__(self) -> None:
        self.check_windows_and_features()
        if self.img_size % 8:
            raise ValueError(f"temporal_net: img_size must be a multiple of 8, got {self.img_size}")
        if self.hidden < 1:
            raise ValueError(f"temporal_net: hidden must be >= 1, got {self.hidden}")


@register_io("temporal_net", TemporalNetConfig)
class TemporalNetIO(TemporalBandIO):
    """Inputs: ``windows`` (B, W, L, S, S) grayscale face squares in 0-1, ``frame_mask`` (B, W, L)
    1 for frames that hold data. Outputs: ``logits`` (B, 1) the sample's fake log-odds (the mean
    of its valid windows'), ``window_logits`` (B, W) each window's (NaN: padding or fewer than
    ``MIN_FRAMES`` distinct frames), ``features`` (B, W, D) the window's motion statistics."""

    output_names = ("logits", "window_logits", "features")
