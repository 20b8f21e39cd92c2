"""preprocess.pipeline: detection overlapped with decoding, and its failure paths."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from clips import make_clip
from conftest import shared_media

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import PreprocessError
from preprocess import pipeline
from preprocess.faces.detector import FaceDetector
from preprocess.media import decode
from preprocess.pipeline import DetectionStage, Preprocessor, detection_frames

# Several full batches, a short one, and a last frame off the detection grid.
CFG = PreprocessConfig().replace("detector", detect_every=4, batch_size=3)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> FaceDetector:
    """The default RetinaFace, converted from the retinaface package's graph into a temp folder."""
    from models.build_retinaface import build, find_graph

    try:
        graph = find_graph()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    path, _ = build(graph, tmp_path_factory.mktemp("weights"))
    return FaceDetector.from_weights(str(path), CFG.detector)


def detection_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "face-detection"]


def test_detection_frames():
    assert detection_frames(9, 4).tolist() == [0, 4, 8]
    assert detection_frames(10, 4).tolist() == [0, 4, 8, 9]
    assert detection_frames(1, 4).tolist() == [0]
    assert detection_frames(0, 4).tolist() == []


def test_overlapped_detection_equals_whole_clip(detector):
    path = shared_media("real", "retalking_face_5.mp4")  # 4.9 s, one face
    pre = Preprocessor(CFG, detector=detector, syncnet=None)
    with DetectionStage(detector, CFG.detector) as stage:
        clip = decode(path, CFG.media, on_frames=stage.on_frames)
        overlapped = stage.finish(clip.frames)
    whole = pre.detect(clip.frames)
    assert len(clip.frames) % 4 != 1  # the last frame is an extra detection
    ran = [i for i, found in enumerate(whole) if found is not None]
    assert ran == detection_frames(len(clip.frames), 4).tolist()
    assert [i for i, found in enumerate(overlapped) if found is not None] == ran
    assert all(len(whole[i].scores) == 1 for i in ran)  # the real face, in every detected frame
    for i in ran:
        for field in ("boxes", "scores", "landmarks"):
            np.testing.assert_array_equal(getattr(overlapped[i], field), getattr(whole[i], field))
    assert stage.cpu_seconds > 0
    assert not detection_threads()


def test_process_reports_overlapped_timings(detector):
    path = shared_media("real", "retalking_face_5.mp4")
    result = Preprocessor(CFG, detector=detector, syncnet=None).process(path)
    assert result.ok and len(result.samples) == 1
    t = result.timings
    assert {"decode", "detect", "detect_cpu", "track", "crop", "audio", "preprocess_wall"} <= set(t)
    assert t["preprocess_wall"] >= t["decode"] + t["detect"] + t["track"] + t["crop"] + t["audio"]
    assert t["preprocess_cpu"] >= t["detect_cpu"] > 0
    assert not detection_threads()


def test_no_syncnet_warning_only_when_the_configuration_asks_for_syncnet(detector):
    """The shipped detector switches SyncNet off (``sync.weights`` empty): nothing to warn about;
    configured weights that are not there are."""
    path = shared_media("real", "retalking_face_5.mp4")
    off = CFG.replace("sync", weights="").replace("media", window_s=1.0)
    sample = Preprocessor(off, detector=detector, syncnet=None).process(path).samples[0]
    assert sample.meta.has_audio and sample.latency is None
    assert not [w for w in sample.meta.warnings if "syncnet" in w]
    missing = off.replace("sync", weights="no_such_syncnet")
    sample = Preprocessor(missing, detector=detector, syncnet=None).process(path).samples[0]
    assert "no_syncnet_weights" in sample.meta.warnings


def test_sample_landmarks_sit_on_the_faces_in_the_crops(detector):
    """Landmarks interpolated along the track agree with detecting each kept crop afresh."""
    path = shared_media("real", "retalking_face_5.mp4")
    sample = Preprocessor(CFG, detector=detector, syncnet=None).process(path).samples[0]
    points = sample.landmarks
    assert points is not None and points.shape == (len(sample.faces), 5, 2)
    size = sample.faces.shape[1]
    assert np.all((points >= 0) & (points < size))
    eyes_y, nose_y, mouth_y = points[:, :2, 1].mean(1), points[:, 2, 1], points[:, 3:, 1].mean(1)
    assert np.all(eyes_y < nose_y) and np.all(nose_y < mouth_y)
    assert np.all(points[:, 0, 0] < points[:, 1, 0])  # left eye left of the right eye, as in the frame
    redetected = detector.detect(sample.faces)
    for found, mapped in zip(redetected, points, strict=True):
        best = found.landmarks[np.argmax(found.scores)]
        assert np.abs(best - mapped).max() < 0.06 * size


class FailingDetector:
    """Stands in for FaceDetector where the test needs detection itself to fail."""

    def __init__(self, after: int):
        self.calls = 0
        self.after = after

    def detect(self, frames: np.ndarray) -> list:
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("detector blew up")
        return [None] * len(frames)


@pytest.mark.parametrize("after", [0, 2])
def test_detector_failure_surfaces_and_stops_decoding(tmp_path, after):
    path = make_clip(tmp_path / "clip.mp4", seconds=3.0)
    failing = FailingDetector(after)
    result = Preprocessor(CFG, detector=failing, syncnet=None).process(path)
    assert not result.ok and result.error.code == "internal_error"
    assert "RuntimeError: detector blew up" in result.error.detail
    assert failing.calls == after + 1  # the worker stopped at the first failure
    assert not detection_threads()


def test_decode_failure_leaves_no_worker(tmp_path, detector, monkeypatch):
    """A decode that fails midway, with batches queued, returns its error and joins the worker."""
    path = make_clip(tmp_path / "clip.mp4", seconds=3.0)

    def failing_decode(path, cfg, buffer, on_frames, **options):
        def hook(frames: np.ndarray, count: int) -> None:
            on_frames(frames, count)
            if count >= 40:
                raise PreprocessError(str(path), "decode_error", "simulated failure midway")

        return decode(path, cfg, buffer, on_frames=hook, **options)

    pre = Preprocessor(CFG, detector=detector, syncnet=None)
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "decode", failing_decode)
        result = pre.process(path)
    assert result.error.code == "decode_error" and "decode" in result.timings
    assert not detection_threads()
    result = pre.process(path)  # the same Preprocessor carries on (the pattern clip has no face)
    assert result.error.code == "no_face" and result.timings["detect_cpu"] > 0
    assert not detection_threads()


def test_stage_left_early_joins_worker(detector):
    frames = np.zeros((8, 64, 64, 3), np.uint8)
    with DetectionStage(detector, CFG.detector) as stage:
        stage.on_frames(frames, 8)  # batches queued, never finished
    assert not detection_threads()


def test_per_second_sampling_keeps_a_chunk_of_every_second_and_leaves_uniform_alone(detector):
    path = shared_media("real", "retalking_face_5.mp4")
    uniform = Preprocessor(CFG, detector=detector, syncnet=None).process(path).samples[0]
    cfg = CFG.replace("sample", sampling="per_second", chunk_frames=4)
    chunked = Preprocessor(cfg, detector=detector, syncnet=None).process(path).samples[0]
    fps = chunked.meta.fps
    chunks = chunked.face_frame_indices.reshape(-1, 4)
    assert len(chunks) >= int(chunked.meta.duration) - 1 and chunked.faces.shape[0] == chunks.size
    assert np.all(np.diff(chunks, axis=1) == 1)  # consecutive frames ...
    np.testing.assert_array_equal(np.floor(chunks / fps), np.floor(chunks[:, :1] / fps).repeat(4, 1))
    assert np.all(np.diff(np.floor(chunks[:, 0] / fps)) == 1)  # ... one chunk per second
    assert chunked.landmarks is not None and len(chunked.landmarks) == chunks.size
    # the uniform samples are what they were: 8 evenly spaced crops, the same audio features
    assert len(uniform.faces) == CFG.sample.num_frames
    np.testing.assert_array_equal(uniform.mfcc, chunked.mfcc)


def test_window_sampling_keeps_runs_of_consecutive_frames_in_a_still_crop(detector, tmp_path):
    from core.windows import window_runs
    from preprocess.media import write_video

    source = decode(shared_media("real", "retalking_face_5.mp4"), CFG.media)
    path = tmp_path / "half_rate.mp4"  # 12.5 fps: every source frame fills two 25 fps slots
    write_video(path, source.frames[::2][:50], fps=12.5, crf=18)
    cfg = CFG.replace("sample", sampling="windows", windows=2, window_frames=16)
    sample = Preprocessor(cfg, detector=detector, syncnet=None).process(path).samples[0]
    runs = window_runs(sample.face_frame_indices, 16)
    assert len(runs) == 2 and sample.faces.shape[0] == 32 and len(sample.landmarks) == 32
    assert all(np.all(np.diff(sample.face_frame_indices[r]) == 1) for r in runs)
    # one box per window: the two slots of one source frame give the very same crop, so a
    # temporal detector can see the repeat (a gliding box would shift the second one)
    repeats = [
        np.array_equal(sample.faces[r[i]], sample.faces[r[i + 1]]) for r in runs for i in range(len(r) - 1)
    ]
    assert sum(repeats) >= 14
