"""``bench.floor``: the least wall time today's samples allow, from the pipeline's own decode and
RetinaFace's network on a real clip."""

from __future__ import annotations

import pytest

from bench.floor import Floor, measure_floor
from core.preprocess_config import PreprocessConfig
from preprocess.faces.detector import FaceDetector
from preprocess.media import decode
from preprocess.pipeline import detection_frames
from tests.conftest import shared_media


def test_floor_wall_is_the_larger_of_decode_wall_and_shared_cpu():
    parts = Floor(decode_wall=1.0, decode_cpu=1.6, network_cpu=0.8, detections=26)
    assert parts.wall(1) == pytest.approx(2.4)
    assert parts.wall(2) == pytest.approx(1.2)
    assert parts.wall(8) == pytest.approx(1.0)  # never below the decode's own wall time


def test_floor_measures_the_pipelines_decode_and_the_detection_frames():
    clip = shared_media("real", "lipnet_GRID_bbaf2n.mpg")
    cfg = PreprocessConfig()
    detector = FaceDetector.from_weights(cfg.detector.weights, cfg.detector)
    parts = measure_floor(clip, detector, cfg, threads=1, repeat=1)
    frames = len(decode(clip, cfg.media).frames)
    assert parts.detections == len(detection_frames(frames, cfg.detector.detect_every))
    assert parts.decode_wall > 0 and parts.decode_cpu > 0 and parts.network_cpu > 0
    assert parts.wall(1) >= parts.decode_cpu + parts.network_cpu - 1e-9
