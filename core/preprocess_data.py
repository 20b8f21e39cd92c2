"""The data preprocessing passes between its stages and hands on: from ``VideoInfo`` and
``Clip`` through face tracks and audio features to each ``Sample`` and a video's ``VideoResult``.

Arrays keep fixed dtypes and layouts so stages, the ``.npz`` cache and the models agree:
frames are RGB uint8 (T, H, W, 3); boxes are float32 (x1, y1, x2, y2) in pixels of the
decoded frame; audio is mono int16 at ``MediaConfig.sample_rate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class PreprocessError(Exception):
    """A video that cannot be processed. ``code`` is a short stable reason
    (``no_video_stream``, ``decode_error``, ``empty_file`` ...); ``detail`` says more."""

    def __init__(self, path: str, code: str, detail: str = ""):
        self.path = str(path)
        self.code = code
        self.detail = detail
        super().__init__(f"{self.path}: {code}" + (f": {detail}" if detail else ""))

    def __reduce__(self):  # crosses process boundaries (worker pools) intact
        return (type(self), (self.path, self.code, self.detail))

    @property
    def reason(self) -> str:
        return self.code + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class VideoInfo:
    """What probing a file tells, before decoding any frame."""

    path: str
    container: str
    duration: float  # seconds; best estimate over container and streams
    has_video: bool
    has_audio: bool
    width: int = 0  # display size, after rotation
    height: int = 0
    fps: float = 0.0  # average frame rate
    variable_fps: bool = False
    rotation: int = 0  # degrees the frames must be turned to display upright
    video_codec: str | None = None
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    num_frames: int | None = None  # declared by the container, may be absent or wrong


@dataclass
class Clip:
    """The analysis window of one video, resampled to a fixed frame rate."""

    info: VideoInfo
    # (T, H, W, 3) uint8 RGB, upright; decode(lazy=True) may give an array-like FrameStore
    frames: np.ndarray
    timestamps: np.ndarray  # (T,) float64 seconds of the source frame chosen for each slot
    fps: float
    audio: np.ndarray | None  # (N,) int16 mono at sample_rate; None when there is no audio
    sample_rate: int
    warnings: list[str] = field(default_factory=list)

    @property
    def has_audio(self) -> bool:
        return self.audio is not None and len(self.audio) > 0

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps


@dataclass
class FaceDetections:
    """Faces found in one frame."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 pixels
    landmarks: np.ndarray  # (N, 5, 2) float32: eyes, nose, mouth corners
    scores: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> FaceDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros((0,), np.float32))


@dataclass
class Track:
    """One face followed through the clip: a box for every frame from start to end."""

    track_id: int
    frame_indices: np.ndarray  # (T,) int, consecutive clip frame indices
    boxes: np.ndarray  # (T, 4) float32, interpolated and smoothed
    scores: np.ndarray  # (T,) float32 detector score; NaN where interpolated
    detected: np.ndarray  # (T,) bool: a detection backs this frame
    landmarks: np.ndarray | None = None  # (T, 5, 2) float32 frame pixels, interpolated and smoothed

    def __len__(self) -> int:
        return len(self.frame_indices)


@dataclass
class AudioFeatures:
    mfcc: np.ndarray  # (13, T100) float32, 100 Hz, as SyncNet consumes
    mel: np.ndarray  # (n_mels, T100) float32 log-mel (dB)


@dataclass
class Latency:
    """SyncNet audio-visual offset search for one track."""

    distances: np.ndarray  # (2 * vshift + 1,) mean distance per offset
    offset: int  # frames; vshift - argmin
    min_distance: float
    confidence: float  # median - min of distances
    frame_confidence: np.ndarray  # (T',) per-frame confidence at the chosen offset

    def vector(self) -> np.ndarray:
        """The latency vector the fusion model consumes: distances, offset, confidence."""
        return np.concatenate([self.distances, [self.offset, self.confidence]]).astype(np.float32)


@dataclass
class SampleMeta:
    video: str  # file name (the submission's ``filename``)
    source: str  # full path at preprocessing time
    fps: float
    duration: float  # seconds analysed
    has_audio: bool
    num_tracks: int
    track_id: int
    label: int = -1  # 1 fake, 0 real, -1 unknown
    warnings: list[str] = field(default_factory=list)


@dataclass
class Sample:
    """Everything the models consume for one (video, face track)."""

    meta: SampleMeta
    faces: np.ndarray  # (F, S, S, 3) uint8 RGB face crops, F = SampleConfig.num_frames
    face_frame_indices: np.ndarray  # (F,) clip frame index of each crop
    boxes: np.ndarray  # (T, 4) float32 whole box track (clip frames frame_start..)
    frame_start: int  # clip frame index of boxes[0]
    audio: np.ndarray  # (N,) int16; empty when the video has no audio
    mfcc: np.ndarray  # (13, T100) float32; empty (13, 0) without audio
    mel: np.ndarray  # (n_mels, T100) float32; empty without audio
    latency: Latency | None  # None: no audio, or no SyncNet weights (see meta.warnings)
    # (F, 5, 2) float32 eyes, nose, mouth corners of each face crop, in crop pixels (interpolated
    # along the track between detections); None in samples written before landmarks were kept.
    landmarks: np.ndarray | None = None


@dataclass
class VideoResult:
    """Outcome of preprocessing one video: samples (possibly none: ``no_face``) or an error."""

    path: str
    samples: list[Sample] = field(default_factory=list)
    error: PreprocessError | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None
