"""RetinaFace on ONNX Runtime (CPU): exported by make weights, used only when current, and the
same faces as torch."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from conftest import shared_media

from core.preprocess_config import DetectorConfig, MediaConfig
from models.retinaface_onnx import export_retinaface_onnx, onnx_path, onnx_runtime, stamped_source
from models.runtimes import OnnxRuntimeRuntime, TorchRuntime
from preprocess.faces.detector import FaceDetector
from preprocess.media import decode
from weights.store import load_weights, read_config, save_weights, tensors_path

NAME = "retinaface_mobilenetv2"


def test_make_weights_exported_the_onnx_file():
    path = onnx_path(NAME)
    assert path.is_file(), "make weights writes weights/retinaface_mobilenetv2.onnx"
    assert stamped_source(path) == read_config(tensors_path(NAME))["sha256"]
    assert isinstance(FaceDetector.from_weights(NAME, DetectorConfig()).network, OnnxRuntimeRuntime)
    assert isinstance(
        FaceDetector.from_weights(NAME, DetectorConfig(), runtime="torch").network, TorchRuntime
    )


@pytest.mark.parametrize(
    "name",
    [
        "real/dfdc_REAL_lynaeydofd.mp4",
        "real/lipnet_GRID_bbaf2n.mpg",
        "fake/sadtalker_art_0__japanese_es1.mp4",
    ],
)
def test_onnx_runtime_finds_the_faces_torch_finds(name):
    clip = decode(shared_media(*name.split("/")), MediaConfig(window_s=2.0))
    frames = clip.frames[::5]
    cfg = DetectorConfig(score_threshold=0.3)  # more faces compared, weak ones included
    a = FaceDetector.from_weights(NAME, cfg).detect(frames)
    b = FaceDetector.from_weights(NAME, cfg, runtime="torch").detect(frames)
    assert sum(len(d) for d in b) >= len(frames)
    for x, y in zip(a, b, strict=True):
        assert len(x) == len(y)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=0.01)  # pixels
        np.testing.assert_allclose(x.landmarks, y.landmarks, atol=0.01)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-4)


def test_onnx_file_of_other_weights_is_not_used(tmp_path, caplog):
    stem = tmp_path / NAME
    for suffix in (".safetensors", ".json"):
        shutil.copy(tensors_path(NAME).with_suffix(suffix), stem.with_suffix(suffix))
    tensors = stem.with_suffix(".safetensors")
    path, written = export_retinaface_onnx(tensors)
    assert written and path == stem.with_suffix(".onnx")
    assert export_retinaface_onnx(tensors) == (path, False)  # current: kept
    assert onnx_runtime(tensors, threads=1) is not None
    # new tensors under the same name: the old ONNX file must not run them
    stored = load_weights(stem)
    state = {k: v.clone() for k, v in stored.state_dict.items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] += 0.5
    save_weights(stem, state, stored.arch, stored.model_config, None)
    with caplog.at_level(logging.WARNING):
        assert onnx_runtime(tensors, threads=1) is None
    assert "make weights" in caplog.text
    assert isinstance(
        FaceDetector.from_weights(str(tensors), DetectorConfig()).network,
        TorchRuntime,
    )
    path.write_bytes(b"not onnx")
    assert stamped_source(path) is None and onnx_runtime(tensors, threads=1) is None
