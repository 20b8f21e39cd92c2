"""Face tracks from sparse detections, and SyncNet-style face crops along a track.

The detector runs on every k-th frame. Detections are linked across detected frames by box
overlap (Hungarian assignment on IoU), boxes are linearly interpolated over the frames in
between, and the box signal is smoothed with a centred moving average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.assignment import linear_sum_assignment
from core.image_ops import Resizer
from core.preprocess_config import TrackConfig
from core.preprocess_data import FaceDetections, Track
from core.windows import window_runs
from preprocess.frame_store import FrameStore

# SyncNet pads frames with this grey so crops reaching past the border stay square.
PAD_VALUE = 110


@dataclass
class _Chain:
    """Detections linked so far: one (frame, box, landmarks, score) per detected frame."""

    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def add(self, frame: int, box: np.ndarray, landmarks: np.ndarray, score: float) -> None:
        self.frames.append(frame)
        self.boxes.append(box)
        self.landmarks.append(landmarks)
        self.scores.append(score)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection-over-union of (N, 4) and (M, 4) x1, y1, x2, y2 boxes."""
    a = np.asarray(a, np.float64)[:, None, :]
    b = np.asarray(b, np.float64)[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def build_tracks(
    detections: Sequence[FaceDetections | None], num_frames: int, cfg: TrackConfig
) -> list[Track]:
    """Tracks over clip frames 0..num_frames-1. ``detections[i]`` is None where the detector did
    not run, and a (possibly empty) FaceDetections where it did."""
    if len(detections) > num_frames:
        raise ValueError(f"{len(detections)} detection entries for {num_frames} frames")
    chains = _link(detections, cfg)
    ran = np.array([d is not None for d in detections] + [False] * (num_frames - len(detections)))
    tracks = []
    for chain in chains:
        if chain.frames[-1] - chain.frames[0] + 1 < min(cfg.min_length, num_frames):
            continue  # a spurious detection or a face seen too briefly to judge
        tracks.append(_fill(chain, *_span(chain, ran), cfg.smooth_window))
    # Keep the largest faces: they are the subjects, and the ones whose crops carry detail.
    tracks.sort(key=lambda t: -float(np.mean(_sides(t.boxes))))
    tracks = sorted(tracks[: cfg.max_tracks], key=lambda t: int(t.frame_indices[0]))
    for i, track in enumerate(tracks):
        track.track_id = i
    return tracks


def _link(detections: Sequence[FaceDetections | None], cfg: TrackConfig) -> list[_Chain]:
    active: list[_Chain] = []
    done: list[_Chain] = []
    for frame, found in enumerate(detections):
        if found is None:
            continue
        # A track whose last detection is more than max_gap undetected frames back has ended.
        still = [c for c in active if frame - c.frames[-1] - 1 <= cfg.max_gap]
        done += [c for c in active if frame - c.frames[-1] - 1 > cfg.max_gap]
        active = still
        boxes = np.asarray(found.boxes, np.float32).reshape(-1, 4)
        points = np.asarray(found.landmarks, np.float32).reshape(-1, 5, 2)
        scores = np.asarray(found.scores, np.float32).reshape(-1)
        taken = np.zeros(len(boxes), bool)
        if active and len(boxes):
            overlap = iou_matrix(np.stack([c.boxes[-1] for c in active]), boxes)
            rows, cols = linear_sum_assignment(-overlap)
            for r, c in zip(rows, cols, strict=True):
                if overlap[r, c] >= cfg.iou_threshold:
                    active[r].add(frame, boxes[c], points[c], float(scores[c]))
                    taken[c] = True
        for c in np.flatnonzero(~taken):
            chain = _Chain()
            chain.add(frame, boxes[c], points[c], float(scores[c]))
            active.append(chain)
    return done + active


def _span(chain: _Chain, ran: np.ndarray) -> tuple[int, int]:
    """Frames [start, stop) the track covers: first to last detection, widened over the
    neighbouring frames the detector skipped (it had no chance to see the face end there)."""
    start, last = chain.frames[0], chain.frames[-1]
    while start > 0 and not ran[start - 1]:
        start -= 1
    stop = last + 1
    while stop < len(ran) and not ran[stop]:
        stop += 1
    return start, stop


def _fill(chain: _Chain, start: int, stop: int, smooth_window: int) -> Track:
    frames = np.arange(start, stop)
    seen = np.asarray(chain.frames)
    # Boxes and the 5 landmarks as one (n, 14) signal: np.interp holds the end values outside
    # the detected range.
    signal = np.concatenate(
        [np.stack(chain.boxes).astype(np.float64), np.stack(chain.landmarks).reshape(-1, 10)], axis=1
    )
    filled = smooth(np.stack([np.interp(frames, seen, column) for column in signal.T], axis=1), smooth_window)
    detected = np.zeros(len(frames), bool)
    detected[seen - start] = True
    scores = np.full(len(frames), np.nan, np.float32)
    scores[seen - start] = chain.scores
    return Track(
        track_id=-1,
        frame_indices=frames,
        boxes=filled[:, :4].astype(np.float32),
        scores=scores,
        detected=detected,
        landmarks=filled[:, 4:].reshape(-1, 5, 2).astype(np.float32),
    )


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0; the window shrinks symmetrically near the ends, so
    linear motion passes through unchanged."""
    values = np.asarray(values, np.float64)
    n = len(values)
    half = max(0, (window - 1) // 2)
    if half == 0 or n < 3:
        return values.copy()
    idx = np.arange(n)
    reach = np.minimum(np.minimum(idx, n - 1 - idx), half)
    csum = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
    total = csum[idx + reach + 1] - csum[idx - reach]
    count = (2 * reach + 1).reshape(-1, *([1] * (values.ndim - 1)))
    return total / count


def _sides(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def crop_regions(boxes: np.ndarray, crop_scale: float) -> np.ndarray:
    """SyncNet's crop for each box as integer (top, bottom, left, right), in frame pixels.

    bs = max(w, h) / 2 around the box centre; the crop spans bs * (1 + crop_scale) either side
    horizontally and from bs above the centre to bs * (1 + 2 * crop_scale) below it (mouth and
    chin included): a square of side 2 * bs * (1 + crop_scale). Integer rounding follows
    syncnet_python, which slices a frame padded by bs * (1 + 2 * crop_scale).
    """
    boxes = np.asarray(boxes, np.float64)
    bs = _sides(boxes) / 2
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    pad = np.floor(bs * (1 + 2 * crop_scale))
    # int() of the padded coordinates, then back to frame coordinates.
    top = np.trunc(cy + pad - bs) - pad
    bottom = np.trunc(cy + pad + bs * (1 + 2 * crop_scale)) - pad
    left = np.trunc(cx + pad - bs * (1 + crop_scale)) - pad
    right = np.trunc(cx + pad + bs * (1 + crop_scale)) - pad
    return np.stack([top, bottom, left, right], axis=1).astype(np.int64)


def crop_faces(
    frames: np.ndarray, track: Track, cfg: TrackConfig, frame_indices: np.ndarray | None = None
) -> np.ndarray:
    """(n, S, S, 3) uint8 face crops of ``track`` at clip ``frame_indices`` (default: all of the
    track's frames), S = cfg.crop_size. Areas outside the frame are filled with grey 110."""
    start, stop = int(track.frame_indices[0]), int(track.frame_indices[-1]) + 1
    indices = track.frame_indices if frame_indices is None else np.asarray(frame_indices, np.int64)
    if len(indices) and (indices.min() < start or indices.max() >= stop):
        raise ValueError(f"frame indices must lie in the track's frames {start}..{stop - 1}")
    size = cfg.crop_size
    out = np.empty((len(indices), size, size, 3), np.uint8)
    regions = crop_regions(track.boxes[indices - start], cfg.crop_scale)
    height, width = frames.shape[1:3]
    resizer = Resizer()  # the crops share their output size: its work buffers and tables
    for i, (frame_index, (top, bottom, left, right)) in enumerate(zip(indices, regions, strict=True)):
        y0, y1 = max(top, 0), min(bottom, height)
        x0, x1 = max(left, 0), min(right, width)
        if y0 == top and y1 == bottom and x0 == left and x1 == right:
            patch = _region(frames, frame_index, top, bottom, left, right)
        else:  # the crop reaches past the frame: copy the visible part onto grey
            patch = np.full((max(1, bottom - top), max(1, right - left), 3), PAD_VALUE, np.uint8)
            if y1 > y0 and x1 > x0:
                patch[y0 - top : y1 - top, x0 - left : x1 - left] = _region(
                    frames, frame_index, y0, y1, x0, x1
                )
        resizer.linear(patch, size, size, out=out[i])
    return out


def _region(frames, index: int, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """``frames[index, top:bottom, left:right]``; a FrameStore converts only about that region."""
    if isinstance(frames, FrameStore):
        return frames.region(int(index), top, bottom, left, right)
    return frames[index, top:bottom, left:right]


def crop_landmarks(track: Track, cfg: TrackConfig, frame_indices: np.ndarray) -> np.ndarray:
    """(n, 5, 2) float32 landmarks of ``track`` at clip ``frame_indices``, in the pixels of the
    ``crop_faces`` crops of those frames."""
    if track.landmarks is None:
        raise ValueError(f"track {track.track_id} has no landmarks")
    rows = np.asarray(frame_indices, np.int64) - int(track.frame_indices[0])
    regions = crop_regions(track.boxes[rows], cfg.crop_scale).astype(np.float64)
    top, left = regions[:, 0], regions[:, 2]
    scale = cfg.crop_size / np.maximum(regions[:, 3] - left, 1.0)  # crops are square
    points = (track.landmarks[rows] - np.stack([left, top], axis=1)[:, None, :]) * scale[:, None, None]
    return points.astype(np.float32)


def uniform_indices(track: Track, n: int) -> np.ndarray:
    """``n`` evenly spaced clip frame indices within the track: the centres of n equal segments,
    as TimeSformer's uniform test-time sampling takes them (repeats when the track is shorter)."""
    length = len(track.frame_indices)
    offsets = np.floor((np.arange(n) + 0.5) * length / n).astype(np.int64)
    return track.frame_indices[np.minimum(offsets, length - 1)].astype(np.int64)


def per_second_indices(frame_indices: np.ndarray, fps: float, chunk_frames: int) -> np.ndarray:
    """Clip frame indices of one-second chunks within a track's consecutive ``frame_indices``:
    for every second ``s`` of the clip whose ``chunk_frames`` frames centred on ``(s + 0.5) * fps``
    all lie in the track, those frames, in time order ((n_seconds * chunk_frames,)). A track too
    short for one whole chunk gives one chunk of ``chunk_frames`` evenly spaced frames (repeats
    when the track is shorter), so every track still makes a sample."""
    frame_indices = np.asarray(frame_indices, np.int64)
    start, stop = int(frame_indices[0]), int(frame_indices[-1]) + 1
    chunks = []
    for second in range(int(start // fps), int(np.ceil(stop / fps)) + 1):
        first = int(round((second + 0.5) * fps - chunk_frames / 2))
        if start <= first and first + chunk_frames <= stop:
            chunks.append(np.arange(first, first + chunk_frames, dtype=np.int64))
    if not chunks:
        offsets = np.floor((np.arange(chunk_frames) + 0.5) * len(frame_indices) / chunk_frames)
        return frame_indices[np.minimum(offsets.astype(np.int64), len(frame_indices) - 1)]
    return np.concatenate(chunks)


def window_indices(frame_indices: np.ndarray, windows: int, window_frames: int) -> np.ndarray:
    """Clip frame indices of runs of ``window_frames`` consecutive frames within a track's
    consecutive ``frame_indices``, in time order: as many as fit without overlap, at most
    ``windows``, their starts spread evenly from the track's first to its last possible start.
    A track shorter than one window gives all its frames (one shorter window)."""
    frame_indices = np.asarray(frame_indices, np.int64)
    length = len(frame_indices)
    if length <= window_frames:
        return frame_indices.copy()
    count = min(windows, length // window_frames)
    starts = (
        np.round(np.linspace(0, length - window_frames, count)).astype(np.int64)
        if count > 1
        else [(length - window_frames) // 2]
    )
    return np.concatenate([frame_indices[s : s + window_frames] for s in starts])


def steady_track(track: Track, frame_indices: np.ndarray, window_frames: int) -> Track:
    """A copy of ``track`` whose box (and landmarks) stay fixed over each window: every run of
    consecutive ``frame_indices`` cut into pieces of ``window_frames`` gets the mean box of its
    frames. A face then moves inside a still crop, so a repeated source frame gives a repeated
    crop (a box that glides along the interpolated track would shift it by a fraction of a
    pixel, which a temporal measure cannot tell from real change)."""
    indices = np.asarray(frame_indices, np.int64)
    boxes = track.boxes.copy()
    landmarks = None if track.landmarks is None else track.landmarks.copy()
    first = int(track.frame_indices[0])
    for rows in window_runs(indices, window_frames):
        at = indices[rows] - first
        boxes[at] = track.boxes[at].mean(axis=0)
        if landmarks is not None:
            landmarks[at] = track.landmarks[at].mean(axis=0)
    return Track(
        track_id=track.track_id,
        frame_indices=track.frame_indices,
        boxes=boxes,
        scores=track.scores,
        detected=track.detected,
        landmarks=landmarks,
    )
