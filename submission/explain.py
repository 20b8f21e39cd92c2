"""``--explain DIR``: why each video got its score, as data (``VideoExplanation``) and as pages.

For every video ``DIR/<file name>.json`` and ``DIR/<file name>.html`` (``a.mp4`` ->
``a.mp4.json``, ``a.mp4.html``: the whole name, so ``a.mp4`` and ``a.mov`` do not collide), and
``DIR/index.html`` listing the videos by score. A page is written as soon as its video's score
is known (``ExplainWriter`` is the batch runner's ``on_detail``), from the samples still in
memory, so a big batch never holds every sample: thumbnails and the SyncNet curve come from
them, the per-second timeline from the scores (``submission.per_second``). The HTML itself is
``submission.explain_html``'s; this module decides what a page says.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from core.aggregation import combine_log_odds
from core.calibration import IDENTITY, Calibration
from core.files import sha256_file
from core.image_ops import resize_area
from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Sample
from submission.batch import VideoDetail
from submission.scoring import SecondScores

THUMBNAILS = 4  # per face track: enough to see the face, small enough to keep pages light
THUMB_SIZE = 96  # pixels
# FFmpeg's JPEG quantiser for thumbnails (1 best .. 31): about OpenCV's quality 85 in size and error
JPEG_QSCALE = 2


@dataclass(frozen=True)
class ModelInfo:
    """A detector that scored the videos (one per ensemble member)."""

    name: str  # the member's name (an ensemble's members CSV column), or the architecture
    arch: str
    weights: str  # the .safetensors path
    sha256: str  # of the .safetensors ("" when unknown)
    runtime: str  # runtime/device, e.g. onnxruntime/cpu
    weight: float = 1.0  # in the ensemble's weighted mean of log-odds


@dataclass(frozen=True)
class LatencyView:
    """SyncNet's distance per audio-visual offset for one track, and what it chose."""

    offsets: tuple[int, ...]  # frames, the same sign as ``offset``
    distances: tuple[float, ...]
    offset: int
    min_distance: float
    confidence: float


@dataclass(frozen=True)
class TrackExplanation:
    track: int
    probability: float  # the detector's for this track (an ensemble's: its members' combined)
    member_probabilities: tuple[float, ...]  # an ensemble's: each member's for this track
    frames: tuple[int, ...]  # clip frame index of each thumbnail
    thumbnails: tuple[str, ...]  # base64 JPEGs (in the page, not in the JSON)
    latency: LatencyView | None
    latency_note: str  # why there is no latency curve ("" when there is one)
    seconds: SecondScores | None  # per-second scores; None: the detector gives none


@dataclass(frozen=True)
class VideoExplanation:
    filename: str
    probability: float | None  # None: the video could not be scored (see ``error``)
    error: str
    aggregation: str  # how the tracks made the video's score (max, mean)
    driver: str  # which track drove the score, in words
    driving_track: int | None  # max with one detector: the argmax track
    models: tuple[ModelInfo, ...]
    member_probabilities: tuple[float, ...]  # an ensemble's video probability per member
    tracks: tuple[TrackExplanation, ...]
    timeline_note: str  # "" or why (part of) the timeline is missing
    warnings: tuple[str, ...]  # preprocessing's, over every track
    duration: float | None  # seconds analysed
    has_audio: bool | None

    def to_json(self) -> dict[str, Any]:
        """Everything but the thumbnails' pixels (the page has them); a non-finite number (a
        SyncNet distance of an empty window) becomes null, so the file is strict JSON."""
        data = asdict(self)
        for track in data["tracks"]:
            track.pop("thumbnails")
        return _finite(data)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def model_infos(scorer: Any) -> tuple[ModelInfo, ...]:
    """What scored the videos: every member of an ensemble, or the one detector."""
    members = getattr(scorer, "members", None)
    if members:
        return tuple(
            replace(_info(m, name), weight=w)
            for m, name, w in zip(members, scorer.member_names, scorer.member_weights, strict=True)
        )
    return (_info(scorer, ""),)


def _info(scorer: Any, name: str) -> ModelInfo:
    arch = getattr(scorer, "arch", "") or type(scorer).__name__
    path = getattr(scorer, "weights_path", None)
    digest = sha256_file(path) if path is not None and Path(path).is_file() else ""
    identity = getattr(scorer, "identity", {}) or {}
    runtime = getattr(getattr(scorer, "runtime", None), "name", "") or identity.get("runtime", "")
    device = identity.get("device", "")
    return ModelInfo(
        name or arch,
        arch,
        str(path or getattr(scorer, "description", "")),
        digest,
        f"{runtime}/{device}".strip("/"),
    )


def thumbnails(
    sample: Sample, count: int = THUMBNAILS, size: int = THUMB_SIZE
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """A few of the track's face crops, evenly spread, as base64 JPEGs (and their clip frames)."""
    faces = sample.faces
    if faces is None or len(faces) == 0:
        return (), ()
    picks = np.unique(np.linspace(0, len(faces) - 1, min(count, len(faces))).round().astype(int))
    frames, images = [], []
    for i in picks:
        face = resize_area(np.ascontiguousarray(faces[i]), size, size)
        images.append(base64.b64encode(jpeg(face)).decode("ascii"))
        index = sample.face_frame_indices[i] if i < len(sample.face_frame_indices) else -1
        frames.append(int(index))
    return tuple(frames), tuple(images)


def jpeg(rgb: np.ndarray) -> bytes:
    """A (H, W, 3) uint8 RGB image as JPEG file bytes (FFmpeg's encoder, through PyAV)."""
    height, width = rgb.shape[:2]
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width + width % 2, height + height % 2  # 4:2:0 needs even sides
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"qmin": str(JPEG_QSCALE), "qmax": str(JPEG_QSCALE)}
    even = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(even), format="rgb24").reformat(format="yuvj420p")
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])


def latency_view(sample: Sample, preprocess: PreprocessConfig) -> tuple[LatencyView | None, str]:
    """The SyncNet curve of a track, or why it has none."""
    lat = sample.latency
    if lat is not None:
        d = np.asarray(lat.distances, dtype=np.float64)
        vshift = (len(d) - 1) // 2
        offsets = tuple(int(vshift - i) for i in range(len(d)))  # Latency.offset = vshift - argmin
        view = LatencyView(
            offsets, tuple(map(float, d)), int(lat.offset), float(lat.min_distance), float(lat.confidence)
        )
        return view, ""
    if not sample.meta.has_audio:
        return None, "no SyncNet curve: the video has no audio"
    if not preprocess.sync.weights:
        return None, (
            "no SyncNet curve: SyncNet is switched off in the detector's preprocessing configuration "
            "(sync.weights is empty: the detector does not read the audio-visual latency)"
        )
    why = [w for w in sample.meta.warnings if w.startswith(("no_syncnet_weights", "no_latency"))]
    return None, "no SyncNet curve: " + ("; ".join(why) or "SyncNet gave no latency for this track")


def explain_video(
    detail: VideoDetail,
    models: Sequence[ModelInfo],
    aggregation: str,
    preprocess: PreprocessConfig,
    calibration: Calibration = IDENTITY,
) -> VideoExplanation:
    score = detail.score
    samples = list(detail.result.samples) if detail.result is not None else []
    warnings = sorted({w for s in samples for w in s.meta.warnings})
    if not score.ok or not detail.sample_scores:
        return VideoExplanation(
            score.filename,
            score.probability,
            score.reason or "not scored",
            aggregation,
            "",
            None,
            tuple(models),
            (),
            (),
            "",
            tuple(warnings),
            samples[0].meta.duration if samples else None,
            samples[0].meta.has_audio if samples else None,
        )
    weights = [m.weight for m in models]
    seconds = {t.track: t for t in score.per_second or ()}
    tracks = []
    for sample, row in zip(samples, detail.sample_scores, strict=True):
        member_p = tuple(m.probability for m in row)
        p = member_p[0] if len(member_p) == 1 else combine_log_odds(member_p, weights, calibration)
        frames, thumbs = thumbnails(sample)
        view, note = latency_view(sample, preprocess)
        track = sample.meta.track_id
        tracks.append(
            TrackExplanation(
                track,
                float(p),
                member_p if len(member_p) > 1 else (),
                frames,
                thumbs,
                view,
                note,
                seconds.get(track),
            )
        )
    names = [m.name for m in models]
    untimed = [
        names[k] if k < len(names) else f"member {k}"
        for k in range(len(detail.sample_scores[0]))
        if not any(row[k].time_resolved for row in detail.sample_scores)
    ]
    if untimed and len(untimed) == len(detail.sample_scores[0]):
        timeline_note = "no per-second timeline: the detector gives no time-resolved scores"
    elif untimed:
        timeline_note = f"no per-second scores from {', '.join(untimed)} (no time-resolved outputs)"
    else:
        timeline_note = ""
    driver, driving = _driver(tracks, detail.sample_scores, aggregation, names)
    return VideoExplanation(
        score.filename,
        score.probability,
        "",
        aggregation,
        driver,
        driving,
        tuple(models),
        score.member_probabilities,
        tuple(tracks),
        timeline_note,
        tuple(warnings),
        samples[0].meta.duration,
        samples[0].meta.has_audio,
    )


def _driver(
    tracks: Sequence[TrackExplanation], rows: Sequence[Sequence[Any]], aggregation: str, names: Sequence[str]
) -> tuple[str, int | None]:
    """Which track made the video's score: max → the argmax track (each member's, in an
    ensemble: every member aggregates its own tracks before they are combined)."""
    n = len(tracks)
    if aggregation == "mean":
        return f"mean over {n} face track{'s' * (n != 1)}: every track counts equally", None
    if len(rows[0]) == 1:
        best = max(range(n), key=lambda i: tracks[i].probability)
        return (
            f"track {tracks[best].track} drove the score (max over {n} face track{'s' * (n != 1)})",
            tracks[best].track,
        )
    parts = []
    for k in range(len(rows[0])):
        best = max(range(n), key=lambda i: rows[i][k].probability)
        name = names[k] if k < len(names) else f"member {k}"
        parts.append(f"{name}: track {tracks[best].track}")
    return "max over face tracks per member: " + "; ".join(parts), None
