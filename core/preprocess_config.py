"""One configuration object for every preprocessing parameter.

It travels inside a model's JSON config (see ``weights.store``) and a sample cache's
``preprocess_config.json``, so inference always preprocesses exactly the way the model was
trained.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MediaConfig:
    fps: float = 25.0  # analysis frame rate; frames are resampled to it by timestamp
    window_s: float = 16.0  # analyse the first window_s seconds of each video
    sample_rate: int = 16000  # audio is decoded to mono int16 at this rate
    max_side: int = 0  # 0 keeps decoded resolution; >0 downscales the long side on decode
    # Training only: still images (JPEG/PNG face photos) become one-frame clips with no audio,
    # so a photo collection can add identities to a cache of real faces. Scoring refuses them.
    still_images: bool = False


@dataclass(frozen=True)
class DetectorConfig:
    weights: str = "retinaface_mobilenetv2"  # name under weights/ (or a path)
    # Detection dominates preprocessing time on CPU (measured on 1080p DFDC, 1 torch thread:
    # 88 ms/frame at 640 px, 27 ms at 384). Talking heads move little in 0.4 s; tracks
    # interpolate between detections, so every 10th frame at 384 px keeps recall on these faces.
    detect_every: int = 10  # run the detector on every k-th analysis frame
    max_side: int = 384  # frames are resized so the long side is at most this for detection
    # Faces resolved by the network score ~1.0; at 384 px a ~95 px face in 1080p (DFDC
    # abofeumbvv) is near the smallest anchor and scores 0.54-0.92, so at 0.8 half its frames were
    # missed and its track split in two. Non-faces on the shared clips score <= 0.48, and an
    # isolated false hit dies in tracking (min_length).
    score_threshold: float = 0.6
    nms_threshold: float = 0.4
    min_face: int = 20  # pixels, in the original frame
    batch_size: int = 4


@dataclass(frozen=True)
class TrackConfig:
    iou_threshold: float = 0.3  # link detections whose boxes overlap at least this much
    max_gap: int = 25  # frames a track may go undetected before it ends (> 2 detection strides)
    min_length: int = 10  # frames; shorter tracks are dropped as spurious
    smooth_window: int = 5  # frames, for the box moving average
    crop_scale: float = 0.4  # SyncNet's margin: the square box grows by this fraction per side
    crop_size: int = 224
    max_tracks: int = 4  # keep the largest faces when a video has more people


@dataclass(frozen=True)
class AudioConfig:
    n_mfcc: int = 13
    mfcc_hop_s: float = 0.01  # 100 Hz, as SyncNet was trained
    mfcc_win_s: float = 0.025
    n_mels: int = 80
    mel_n_fft: int = 512
    mel_hop: int = 160  # 10 ms at 16 kHz
    mel_win: int = 400


@dataclass(frozen=True)
class SyncConfig:
    weights: str = "syncnet"  # name under weights/ (or a path); absent or "" -> no latency
    vshift: int = 15  # search offsets -vshift..+vshift frames
    window: int = 5  # frames per SyncNet input
    # The offset search on a sample of lip windows instead of every frame: on CPU the full
    # search costs 10-12.5 CPU-s per 10 s track, six times the rest of preprocessing. A lip
    # window costs ~8 audio windows, and a run of r consecutive lip windows reads r + 2 * vshift
    # audio windows. Measured (make bench, media/real shifted -10..+10 frames, a briefly trained
    # SyncNet): spread windows follow the full search far better than the same number in a few
    # runs (16 in 16 runs: |confidence change| median 0.29, the full search's right answers kept
    # 52/81; 16 in 2 runs: 0.66 and 0/81) for 1.7 instead of 0.9 CPU-s per 10 s track.
    windows: int = 16  # lip windows per track; 0: every stride-th frame (the full search)
    runs: int = 16  # contiguous runs the sampled windows form (= windows: evenly spread)
    stride: int = 1  # full search only: evaluate every stride-th frame
    max_frames: int = 0  # 0 = all frames in the window; >0 caps frames used by SyncNet
    batch_size: int = 32


SAMPLING_MODES = ("uniform", "per_second", "windows")


@dataclass(frozen=True)
class SampleConfig:
    num_frames: int = 8  # face frames kept per sample (what TimeSformer consumes); "uniform" only
    # "uniform": num_frames evenly spaced over the track. "per_second": for every whole second of
    # the track, chunk_frames consecutive frames centred in that second (n_seconds * chunk_frames
    # crops): the one-second chunks audio-visual detectors (MDS) compare with their audio.
    sampling: str = "uniform"
    chunk_frames: int = 5  # "per_second" only: consecutive frames kept per second
    # "windows": up to ``windows`` runs of ``window_frames`` CONSECUTIVE analysis frames, spread
    # evenly over the track (windows * window_frames crops): what a temporal detector measures
    # frame-to-frame motion on (models/temporal_band.py).
    windows: int = 4
    window_frames: int = 32

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sample.sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}")
        if self.chunk_frames < 1:
            raise ValueError(f"sample.chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.windows < 1 or self.window_frames < 3:
            raise ValueError(
                f"sample.windows must be >= 1 and sample.window_frames >= 3, got {self.windows}, {self.window_frames}"
            )


@dataclass(frozen=True)
class PreprocessConfig:
    media: MediaConfig = field(default_factory=MediaConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # Fields with no effect on a sampling mode are left out, so caches, weights and journals
        # made before that field existed keep their configuration hash.
        if self.sample.sampling != "per_second":
            del data["sample"]["chunk_frames"]
        if self.sample.sampling != "windows":
            del data["sample"]["windows"], data["sample"]["window_frames"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PreprocessConfig:
        """Build from a (possibly partial) nested dict; unknown keys are an error."""
        data = dict(data or {})
        parts = {}
        for f in dataclasses.fields(cls):
            sub = data.pop(f.name, None) or {}
            sub_cls = f.default_factory  # the section's dataclass
            known = {g.name for g in dataclasses.fields(sub_cls)}
            unknown = set(sub) - known
            if unknown:
                raise ValueError(f"unknown {f.name} config keys: {sorted(unknown)}")
            parts[f.name] = sub_cls(**sub)
        if data:
            raise ValueError(f"unknown config sections: {sorted(data)}")
        return cls(**parts)

    def replace(self, section: str, **changes: Any) -> PreprocessConfig:
        """Copy with some fields of one section changed, e.g. replace("sample", num_frames=4)."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


def load_preprocess_config(path: str | os.PathLike | None) -> PreprocessConfig:
    """A JSON file holding a PreprocessConfig dict, or any JSON with it under ``"preprocess"``
    (a model's weights JSON, or a cache's ``preprocess_config.json``); None: the defaults."""
    if path is None:
        return PreprocessConfig()
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict) and "preprocess" in data:
        data = data["preprocess"]
    return PreprocessConfig.from_dict(data)
