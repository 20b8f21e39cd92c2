"""temporal_band's inputs and outputs, torch-free: ``TemporalBandIO`` (see ``models.temporal_band``
for what the detector measures). Its network inherits this; scoring on ONNX Runtime needs only
this and ``weights/temporal_band.onnx``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from core.image_ops import rgb_to_grey
from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Sample
from core.windows import window_runs
from models.detector_io import DetectorIO, register_io
from models.face_frames_io import Region, crop_region, region_from_json, resize_square
from models.flat_config import FlatConfig

REGION_SPLITS = ("whole", "halves")
# smooth: log E2/E1 at img_size; smooth_coarse: the same after 4×4 average pooling; lag2: log of
# the change over two frames against one; energy: log E1; fine: log of E1's fine-detail share
FEATURES = ("smooth", "smooth_coarse", "lag2", "energy", "fine")
MIN_FRAMES = 4  # distinct frames a window needs for a second difference worth measuring
EPS = 1e-8


class WindowMotionConfig(FlatConfig):
    """What the configs of the detectors that measure motion statistics of windows share
    (``TemporalBandConfig``, ``models.temporal_net_io.TemporalNetConfig``): their fields
    ``windows``, ``window_frames``, ``img_size``, ``region``, ``split`` and ``features``, read
    and checked alike."""

    def check_windows_and_features(self) -> None:
        arch = self.arch
        if self.split not in REGION_SPLITS:
            raise ValueError(f"{arch}: split must be one of {REGION_SPLITS}, got {self.split!r}")
        unknown = set(self.feature_names) - set(FEATURES)
        if unknown or not self.feature_names:
            raise ValueError(f"{arch}: features must be a comma list of {FEATURES}, got {self.features!r}")
        if self.windows < 1 or self.window_frames < MIN_FRAMES or self.img_size < 8:
            raise ValueError(f"{arch}: windows >= 1, window_frames >= {MIN_FRAMES}, img_size >= 8: {self}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Any:
        return super().from_dict(region_from_json(data))

    @property
    def num_features(self) -> int:
        return len(self.feature_names) * (2 if self.split == "halves" else 1)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.features.split(",") if n.strip())


@dataclass(frozen=True)
class TemporalBandConfig(WindowMotionConfig):
    arch: ClassVar[str] = "temporal_band"
    windows: int = 4  # windows read per sample (SampleConfig.windows)
    window_frames: int = 32  # frames per window (SampleConfig.window_frames)
    img_size: int = 32  # the face square is resized to this, in grayscale
    region: Region = (0.0, 16 / 224, 192 / 224)  # top, left, side: the face square of the crop
    split: str = "halves"  # "halves": upper (eyes) and lower (mouth) face apart; "whole"
    features: str = "smooth"  # comma-separated names of FEATURES, in each region
    dup_rel: float = 0.2  # a frame changing less than this share of the window's mean change is a copy
    dup_abs: float = 0.5 / 255  # ... or less than this mean absolute change (0-1 grey levels)
    offset: float = 1.0  # statistic where the log-odds are 0 (fitted)
    scale: float = 1.0  # log-odds per unit of statistic (fitted)
    # the statistic of a track with no window to measure (a still face, a track of a few
    # frames): the median real sample's (fitted), so it neither raises nor lowers the video's max
    still_statistic: float = 0.0

    def __post_init__(self) -> None:
        self.check_windows_and_features()
        if self.img_size % 2:
            raise ValueError(f"temporal_band: img_size must be even (split in halves), got {self.img_size}")
        if self.scale <= 0:
            raise ValueError(f"temporal_band: scale must be > 0, got {self.scale}")


def sample_windows(sample: Sample, window_frames: int, windows: int) -> list[np.ndarray]:
    """Row indices into ``sample.faces`` of each window (consecutive clip frames, in pieces of
    ``window_frames``), the first ``windows`` of them."""
    return window_runs(np.asarray(sample.face_frame_indices, np.int64), window_frames)[:windows]


def grey_face(crop: np.ndarray, region: Region, size: int) -> np.ndarray:
    """An RGB crop → the grayscale face square at ``size``², float32 in 0-1."""
    grey = rgb_to_grey(crop_region(crop, region))
    return resize_square(grey, size).astype(np.float32) / 255.0


@register_io("temporal_band", TemporalBandConfig)
class TemporalBandIO(DetectorIO):
    """Inputs: ``windows`` (B, W, L, S, S) grayscale face squares in 0-1, ``frame_mask``
    (B, W, L) 1 for frames that hold data. Outputs: ``logits`` (B, 1) the sample's fake
    log-odds, ``window_logits`` (B, W) each window's (NaN: padding or too few distinct frames),
    ``features`` (B, W, D) the log motion features, ``distance`` (B, W) each window's RMS
    z-score from the real band (0 where invalid)."""

    input_names = ("windows", "frame_mask")
    output_names = ("logits", "window_logits", "features", "distance")
    video_aggregation = "max"  # a video is fake if any of its faces is

    @classmethod
    def sample_inputs(cls, sample: Sample, config: TemporalBandConfig) -> dict[str, np.ndarray]:
        cfg = config
        w, length, s = cfg.windows, cfg.window_frames, cfg.img_size
        windows = np.zeros((w, length, s, s), np.float32)
        mask = np.zeros((w, length), np.float32)
        if sample.faces.ndim != 4 or sample.faces.shape[-1] != 3:
            raise ValueError(f"{sample.meta.video}: faces must be (F, S, S, 3), got {sample.faces.shape}")
        for i, rows in enumerate(sample_windows(sample, length, w)):
            for j, r in enumerate(rows):
                windows[i, j] = grey_face(sample.faces[r], cfg.region, s)
            mask[i, : len(rows)] = 1.0
        return {"windows": windows, "frame_mask": mask}

    @classmethod
    def time_columns(cls, sample: Sample, config: TemporalBandConfig) -> np.ndarray:
        """Seconds of each window's centre; NaN for padding."""
        out = np.full(config.windows, np.nan)
        indices = np.asarray(sample.face_frame_indices, np.float64)
        for i, rows in enumerate(sample_windows(sample, config.window_frames, config.windows)):
            out[i] = (indices[rows[0]] + indices[rows[-1]] + 1) / 2 / float(sample.meta.fps)
        return out

    @staticmethod
    def time_logits(outputs: Sequence[Any]) -> Any:
        return outputs[1]

    @classmethod
    def preprocess_problem(cls, config: TemporalBandConfig, preprocess: PreprocessConfig) -> str | None:
        sample, arch = preprocess.sample, config.arch
        if sample.sampling != "windows":
            return (
                f"{arch} reads windows of consecutive frames: preprocess with "
                f"sample.sampling = 'windows' (the samples are {sample.sampling!r})"
            )
        if sample.window_frames != config.window_frames:
            return (
                f"samples hold windows of {sample.window_frames} frames, {arch} reads {config.window_frames}"
            )
        return None
