"""preprocess.tracks: linking sparse detections into tracks, and SyncNet-style face crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.preprocess_config import TrackConfig
from core.preprocess_data import FaceDetections, Track
from preprocess.tracks import (
    build_tracks,
    crop_faces,
    crop_landmarks,
    crop_regions,
    iou_matrix,
    smooth,
    uniform_indices,
)

CFG = TrackConfig(max_gap=15)  # iou 0.3, min_length 10, smooth 5, crop 0.4 -> 224, 4 tracks


def corner_points(b: np.ndarray) -> np.ndarray:
    """Five stand-in landmarks per box: its corners and centre (they move exactly with the box)."""
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    xs = np.stack([x1, x2, cx, x1, x2], axis=1)
    ys = np.stack([y1, y1, cy, y2, y2], axis=1)
    return np.stack([xs, ys], axis=2).astype(np.float32)


def faces(*boxes, score: float = 0.9) -> FaceDetections:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return FaceDetections(b, corner_points(b), np.full(len(b), score, np.float32))


def left_face(f: int) -> list[float]:  # moves right 1 px per frame
    return [10.0 + f, 20.0, 70.0 + f, 90.0]


def right_face(f: int) -> list[float]:  # moves down and grows
    return [300.0, 50.0 + 0.5 * f, 380.0 + 0.2 * f, 150.0 + 0.7 * f]


def two_face_detections(num_frames=101, every=5, right_missing=(40, 45), spurious_at=30):
    detections: list[FaceDetections | None] = [None] * num_frames
    for f in range(0, num_frames, every):
        boxes = [left_face(f)]
        if f not in right_missing:
            boxes.append(right_face(f))
        if f == spurious_at:
            boxes.append([500.0, 400.0, 520.0, 420.0])
        detections[f] = faces(*boxes)
    return detections


def test_two_faces_a_gap_and_a_spurious_detection():
    tracks = build_tracks(two_face_detections(), 101, CFG)
    assert len(tracks) == 2  # the spurious one-frame box is dropped; the gap of 14 frames is bridged
    assert [t.track_id for t in tracks] == [0, 1]
    left, right = sorted(tracks, key=lambda t: t.boxes[0, 0])
    every5 = np.arange(101) % 5 == 0
    for track in tracks:
        assert list(track.frame_indices) == list(range(101))
        assert track.boxes.shape == (101, 4) and track.boxes.dtype == np.float32
        assert np.all(np.isnan(track.scores[~track.detected]))
        assert np.allclose(track.scores[track.detected], 0.9)
    assert np.array_equal(left.detected, every5)
    assert np.array_equal(right.detected, every5 & ~np.isin(np.arange(101), [40, 45]))


def test_interpolation_is_exact_on_linear_motion():
    tracks = build_tracks(two_face_detections(), 101, CFG)
    for track, motion in zip(
        sorted(tracks, key=lambda t: t.boxes[0, 0]), (left_face, right_face), strict=True
    ):
        expected = np.array([motion(f) for f in track.frame_indices], np.float32)
        # Across the missed detections too: linear motion survives interpolation and smoothing.
        np.testing.assert_allclose(track.boxes, expected, atol=1e-3)


def test_landmarks_follow_their_track():
    tracks = build_tracks(two_face_detections(), 101, CFG)
    for track in tracks:
        assert track.landmarks is not None and track.landmarks.shape == (101, 5, 2)
        # interpolated and smoothed like the boxes, so the stand-in points stay on the box corners
        np.testing.assert_allclose(track.landmarks, corner_points(track.boxes), atol=1e-3)


def test_crop_landmarks_land_on_the_crop_pixels(frames):
    """A bright dot at each landmark in the frame shows up at the mapped point of the crop."""
    boxes = np.array([[100.0, 60.0, 180.0, 150.0], [-20.0, -10.0, 40.0, 70.0]], np.float32)
    points = np.array(
        [
            [[120, 90], [160, 90], [140, 110], [125, 135], [155, 135]],
            [[0, 10], [25, 10], [10, 30], [2, 50], [30, 50]],
        ],
        np.float32,
    )
    track = Track(0, np.arange(2), boxes, np.ones(2, np.float32), np.ones(2, bool), landmarks=points)
    canvas = np.zeros((2, 240, 320, 3), np.uint8)
    for i in range(2):
        for x, y in points[i]:
            cv2.circle(canvas[i], (int(x), int(y)), 2, (255, 255, 255), -1)
    crops = crop_faces(canvas, track, CFG)
    mapped = crop_landmarks(track, CFG, np.arange(2))
    assert mapped.shape == (2, 5, 2) and mapped.dtype == np.float32
    for i in range(2):
        for x, y in mapped[i]:
            assert crops[i, int(round(y)), int(round(x))].max() > 100
    with pytest.raises(ValueError, match="no landmarks"):
        crop_landmarks(
            Track(0, np.arange(2), boxes, np.ones(2, np.float32), np.ones(2, bool)), CFG, np.arange(2)
        )


def test_long_gap_splits_and_short_tracks_are_dropped():
    detections = two_face_detections(right_missing=(35, 40, 45, 50))  # 24 undetected frames
    tracks = build_tracks(detections, 101, CFG)
    right = [t for t in tracks if t.boxes[0, 0] > 200]
    assert [(int(t.frame_indices[0]), int(t.frame_indices[-1])) for t in right] == [(0, 34), (51, 100)]
    # Seen on two detector runs (10, 15): 6 frames from first to last detection. Once kept, the
    # track also covers the frames up to the empty runs (5, 20) that the detector skipped.
    short: list[FaceDetections | None] = [None] * 30
    short[10], short[15] = faces([0, 0, 50, 50]), faces([1, 0, 51, 50])
    short[5], short[20] = faces(), faces()
    assert build_tracks(short, 30, TrackConfig(min_length=7)) == []
    (kept,) = build_tracks(short, 30, TrackConfig(min_length=6))
    assert (kept.frame_indices[0], kept.frame_indices[-1]) == (6, 19)


def test_track_ends_stretch_over_frames_the_detector_skipped():
    detections: list[FaceDetections | None] = [None] * 20
    detections[3], detections[8], detections[13] = (faces([0, 0, 40, 40]) for _ in range(3))
    detections[18] = faces()  # the detector ran here and saw nothing
    (track,) = build_tracks(detections, 20, TrackConfig(min_length=5))
    assert (track.frame_indices[0], track.frame_indices[-1]) == (0, 17)


def test_keeps_the_largest_faces():
    detections: list[FaceDetections | None] = [None] * 40
    for f in range(0, 40, 2):
        detections[f] = faces(*[[100.0 * k, 0, 100.0 * k + 10 + 10 * k, 10 + 10 * k] for k in range(6)])
    tracks = build_tracks(detections, 40, TrackConfig(max_tracks=3))
    assert sorted(round(float(t.boxes[0, 2] - t.boxes[0, 0])) for t in tracks) == [40, 50, 60]


def test_tracks_are_ordered_by_start():
    detections: list[FaceDetections | None] = [None] * 60
    for f in range(0, 60, 2):
        boxes = [[0, 0, 40, 40]] + ([[200, 0, 300, 100]] if f < 30 else [])
        if f >= 20:
            boxes.append([400, 0, 480, 80])
        detections[f] = faces(*boxes)
    tracks = build_tracks(detections, 60, CFG)
    assert [int(t.frame_indices[0]) for t in tracks] == [0, 0, 19]  # 19: the detector skipped it
    assert [t.track_id for t in tracks] == [0, 1, 2]


def test_smoothing_reduces_jitter():
    rng = np.random.default_rng(0)
    detections: list[FaceDetections | None] = [
        faces(np.array([100, 100, 200, 200]) + rng.normal(0, 3, 4)) for _ in range(50)
    ]
    (track,) = build_tracks(detections, 50, TrackConfig(smooth_window=7))
    raw = np.stack([d.boxes[0] for d in detections])
    assert np.std(np.diff(track.boxes, axis=0)) < 0.5 * np.std(np.diff(raw, axis=0))
    line = np.arange(20, dtype=np.float64)[:, None] * [1, 2, 3, 4]
    np.testing.assert_allclose(smooth(line, 9), line)


def test_edge_cases():
    assert build_tracks([None] * 10, 10, CFG) == []
    assert build_tracks([faces()] * 10, 10, CFG) == []
    (one,) = build_tracks([faces([5, 5, 25, 25])], 1, CFG)  # a one-frame clip still has its face
    assert len(one) == 1 and one.detected[0]
    with pytest.raises(ValueError):
        build_tracks([None] * 11, 10, CFG)


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [0, 0, 20, 20]], np.float32)
    b = np.array([[5, 0, 15, 10], [100, 100, 110, 110]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0], [100 / 400, 0]])


# ---------------------------------------------------------------------------------------------
# crops


def syncnet_crop(frame: np.ndarray, box: np.ndarray, cs: float, size: int) -> np.ndarray:
    """syncnet_python's crop_video step, written out as the reference: pad, slice, resize."""
    bs = max(box[3] - box[1], box[2] - box[0]) / 2
    bsi = int(bs * (1 + 2 * cs))
    padded = np.pad(frame, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=110)
    my, mx = (box[1] + box[3]) / 2 + bsi, (box[0] + box[2]) / 2 + bsi
    face = padded[
        int(my - bs) : int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)) : int(mx + bs * (1 + cs))
    ]
    return cv2.resize(face, (size, size))


def track_of(boxes: np.ndarray, start: int = 0) -> Track:
    n = len(boxes)
    return Track(
        0,
        np.arange(start, start + n),
        np.asarray(boxes, np.float32),
        np.ones(n, np.float32),
        np.ones(n, bool),
    )


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 240, 320, 3), np.uint8)


def test_crops_match_syncnet_inside_and_at_borders(frames):
    boxes = np.array(
        [
            [100.3, 60.7, 180.2, 150.9],  # well inside
            [-20.0, -10.0, 40.0, 70.0],  # past the top-left corner
            [280.0, 200.0, 330.0, 250.0],  # past the bottom-right corner
            [150.0, 100.0, 170.0, 110.0],  # small and wide
        ],
        np.float32,
    )
    track = track_of(boxes, start=2)
    crops = crop_faces(frames, track, CFG, np.array([2, 3, 4, 5]))
    assert crops.shape == (4, 224, 224, 3) and crops.dtype == np.uint8
    for i, box in enumerate(boxes):
        np.testing.assert_array_equal(crops[i], syncnet_crop(frames[i + 2], box.astype(np.float64), 0.4, 224))


def test_crop_outside_the_frame_is_grey(frames):
    track = track_of(np.array([[-300, -300, -250, -250]], np.float32))
    (crop,) = crop_faces(frames, track, TrackConfig(crop_size=64))
    assert crop.shape == (64, 64, 3) and np.all(crop == 110)


def test_crop_geometry():
    ((top, bottom, left, right),) = crop_regions(np.array([[100, 100, 200, 160]]), 0.4)
    # bs = 50: 70 px either side horizontally, from 50 above the centre to 90 below it
    assert (top, bottom, left, right) == (80, 220, 80, 220)


def test_crop_indices_default_and_validation(frames):
    track = track_of(np.tile([[50, 50, 150, 150]], (3, 1)), start=1)
    assert crop_faces(frames, track, TrackConfig(crop_size=32)).shape == (3, 32, 32, 3)
    with pytest.raises(ValueError, match="track"):
        crop_faces(frames, track, CFG, np.array([0]))
    with pytest.raises(ValueError, match="track"):
        crop_faces(frames, track, CFG, np.array([4]))


def test_uniform_indices():
    track = track_of(np.zeros((100, 4)), start=20)
    idx = uniform_indices(track, 8)
    assert idx.dtype == np.int64 and len(idx) == 8
    assert idx[0] >= 20 and idx[-1] <= 119 and np.all(np.diff(idx) > 0)
    assert set(np.diff(idx)) <= {12, 13}  # evenly spaced
    short = uniform_indices(track_of(np.zeros((3, 4)), start=5), 8)
    assert len(short) == 8 and set(short) == {5, 6, 7} and np.all(np.diff(short) >= 0)
