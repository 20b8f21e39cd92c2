"""preprocess.faces.resize: antialiased bilinear resizing without torch, the same bytes as
torch's ``F.interpolate(..., mode="bilinear", antialias=True)`` on uint8 (what face detection
used before it left torch), on real frames and on noise, shrinking and enlarging. The tolerance
is zero: tests/test_torch_free.py relies on it for equal detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import preprocess.faces.detector as face_detector
from core.preprocess_config import DetectorConfig, MediaConfig
from preprocess.faces.detector import FaceDetector
from preprocess.faces.resize import _pass, resample_weights, resize_antialiased
from preprocess.media import decode
from tests.conftest import shared_media


def torch_resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # channels-last, as the detector fed it
    y = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return y.permute(0, 2, 3, 1).numpy()


@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    [
        "real/dfdc_REAL_lynaeydofd.mp4",
        "real/lipnet_GRID_bbaf2n.mpg",
        "fake/sadtalker_art_0__japanese_es1.mp4",
    ],
)
def test_real_frames_resize_to_torchs_bytes(name):
    clip = decode(shared_media(*name.split("/")), MediaConfig(window_s=1.0))
    frames = np.ascontiguousarray(clip.frames[::8][:3])
    height, width = frames.shape[1:3]
    scale = 384 / max(height, width)  # DetectorConfig.max_side's resize, and a few other ratios
    sizes = [
        (round(height * scale), round(width * scale)),
        (height // 3, width // 2),
        (height - 1, width + 7),
    ]
    for h, w in sizes:
        want = torch_resize(frames, h, w)
        for scipy_use in (True, False):
            np.testing.assert_array_equal(
                resize_antialiased(frames, h, w, scipy_use), want, err_msg=f"{h}x{w} scipy {scipy_use}"
            )


@pytest.mark.shared
def test_detections_are_the_ones_torchs_resize_gives(monkeypatch):
    """What the exactness buys: the same faces, boxes, landmarks and scores. Measured against
    the torch pipeline this replaced (torch's resize, decoding and NMS): 905 faces on the 47
    media clips (4 s each, every 5th frame), the same faces in every frame, boxes within
    1.2e-4 px (float32 exp in numpy vs torch), landmarks and scores identical."""
    detector = FaceDetector.from_weights("retinaface_mobilenetv2", DetectorConfig(score_threshold=0.3))
    found = {}
    for resize in (resize_antialiased, lambda frames, h, w: torch_resize(np.ascontiguousarray(frames), h, w)):
        monkeypatch.setattr(face_detector, "resize_antialiased", resize)
        for name in (
            "real/dfdc_REAL_lynaeydofd.mp4",
            "real/ghost_2person.mp4",
            "fake/zzww_syncshow_wav2lip.mp4",
        ):
            frames = decode(shared_media(*name.split("/")), MediaConfig(window_s=2.0)).frames[::10]
            found.setdefault(name, []).append(detector.detect(frames))
    for name, (ours, torchs) in found.items():
        assert sum(len(d) for d in ours) >= len(ours), name
        for a, b in zip(ours, torchs, strict=True):
            for field in ("boxes", "landmarks", "scores"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=name)


@pytest.mark.parametrize("scipy_use", [True, False], ids=["scipy", "numpy"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_resizes_to_torchs_bytes_at_any_ratio(seed, scipy_use):
    """Both ways to the same bytes: SciPy's sparse product (the full install) and numpy's
    per-tap sums (the scoring image)."""
    rng = np.random.default_rng(seed)
    for _ in range(6):
        h, w = (int(v) for v in rng.integers(8, 300, 2))
        frames = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        out_h, out_w = (int(v) for v in rng.integers(4, 400, 2))
        got = resize_antialiased(frames, out_h, out_w, scipy_use=scipy_use)
        assert got.shape == (2, out_h, out_w, 3) and got.dtype == np.uint8
        np.testing.assert_array_equal(
            got, torch_resize(frames, out_h, out_w), err_msg=f"{h}x{w} -> {out_h}x{out_w}"
        )


def test_weights_and_edge_cases():
    index, fixed, precision = resample_weights(1920, 384)  # the 1080p shrink: 5 to 1
    assert index[0, 0] == 0 and index.shape[1] in (10, 11) and 14 <= precision <= 22
    taps = (fixed > 0).sum(axis=1)
    assert np.all(np.abs(fixed.sum(axis=1) - (1 << precision)) <= taps)  # each row sums to one
    frames = np.arange(2 * 5 * 7 * 3, dtype=np.uint8).reshape(2, 5, 7, 3)
    assert resize_antialiased(frames, 5, 7) is frames  # already the size: untouched
    with pytest.raises(ValueError, match="uint8"):
        resize_antialiased(frames.astype(np.float32), 3, 3)
    with pytest.raises(ValueError, match="cannot resize"):
        resize_antialiased(frames, 0, 3)


@pytest.mark.parametrize(
    ("size", "out", "period", "step"),
    [
        ((1080, 1920), (216, 384), 1, 5),  # 1080p at the detector's 384 px: 5 to 1
        ((720, 1280), (216, 384), 3, 10),  # 720p: 10 to 3
        ((360, 640), (216, 384), 3, 5),  # shrinking 5 to 3
    ],
)
def test_repeating_filters_take_strided_rows_to_the_same_bytes(size, out, period, step):
    """Where the filter repeats (the detector's common shrinks), the numpy path reads each tap as
    a strided view instead of a gather; one period at each edge, where the filter may be cut, is
    still gathered. Noise frames through it give torch's bytes."""
    for n_in, n_out in zip(size, out, strict=True):  # the same scale both ways
        p = _pass(n_in, n_out, None)
        assert (p.period, p.step) == (period, step)
        assert p.lo == period and p.hi == n_out - period
    frames = np.random.default_rng(0).integers(0, 256, (2, *size, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        resize_antialiased(frames, *out, scipy_use=False), torch_resize(frames, *out)
    )
