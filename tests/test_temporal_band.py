"""temporal_band: window sampling, repeated-frame dropping, the two-sided band learnt from real
motion alone (fit-temporal on a small cache), ONNX parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Track
from core.windows import window_runs
from models.registry import create_model, load_model
from models.temporal_band import drop_repeats, motion_features
from models.temporal_band_io import FEATURES
from preprocess.tracks import steady_track, window_indices
from tests.temporal_clips import real_motion, write_windows_cache
from train.metrics import roc_auc

WINDOWS, FRAMES, CROP = 2, 20, 64
BAND_FEATURES = "smooth,smooth_coarse,fine"


def test_window_sampling_keeps_the_other_modes_configuration():
    uniform = PreprocessConfig().to_dict()["sample"]
    assert uniform == {"num_frames": 8, "sampling": "uniform"}  # the shipped cache's hash input
    per_second = PreprocessConfig().replace("sample", sampling="per_second").to_dict()["sample"]
    assert per_second == {"num_frames": 8, "sampling": "per_second", "chunk_frames": 5}
    windows = PreprocessConfig().replace("sample", sampling="windows", windows=3, window_frames=16)
    assert windows.to_dict()["sample"] == {
        "num_frames": 8,
        "sampling": "windows",
        "windows": 3,
        "window_frames": 16,
    }
    assert PreprocessConfig.from_dict(windows.to_dict()) == windows
    with pytest.raises(ValueError, match="window_frames"):
        PreprocessConfig().replace("sample", sampling="windows", window_frames=2)


def test_window_indices_are_runs_of_consecutive_frames_spread_over_the_track():
    track = np.arange(10, 210)  # 200 frames
    idx = window_indices(track, 4, 32)
    runs = window_runs(idx, 32)
    assert len(idx) == 128 and len(runs) == 4
    assert all(np.all(np.diff(idx[r]) == 1) for r in runs)
    assert idx[0] == 10 and idx[-1] == 209  # first and last windows at the track's ends
    assert len(window_runs(window_indices(np.arange(70), 4, 32), 32)) == 2  # as many as fit
    assert list(window_indices(np.arange(5, 20), 4, 32)) == list(range(5, 20))  # short track: all


def test_steady_track_holds_one_box_per_window():
    n = 100
    boxes = np.stack([np.arange(n) * 1.0, np.zeros(n), np.arange(n) + 50.0, np.full(n, 50.0)], 1)
    track = Track(0, np.arange(n), boxes.astype(np.float32), np.ones(n, np.float32), np.ones(n, bool))
    idx = window_indices(track.frame_indices, 2, 20)
    steady = steady_track(track, idx, 20)
    for rows in window_runs(idx, 20):
        held = steady.boxes[idx[rows]]
        assert np.allclose(held, held[0]) and np.allclose(held[0], track.boxes[idx[rows]].mean(0))
    assert np.array_equal(steady.boxes[50], track.boxes[50])  # frames outside the windows unchanged


def write_cache(tmp_path, rng):
    plan = [("train", "real")] * 16 + [("test", k) for k in ("real", "smooth", "flicker") for _ in range(6)]
    return write_windows_cache(tmp_path, plan, rng, WINDOWS, FRAMES, CROP)


def test_repeated_frames_are_dropped_before_measuring():
    rng = np.random.default_rng(0)
    grey = real_motion(rng, 16, 32).mean(-1) / 255.0
    distinct = torch.tensor(grey, dtype=torch.float32)[None]
    doubled = distinct.repeat_interleave(2, dim=1)  # 15 fps content shown at 30 fps
    x, mask = drop_repeats(doubled, torch.ones(1, 32), 0.2, 0.5 / 255)
    assert mask.sum().item() == 16
    assert torch.equal(x[0, :16], distinct[0])
    want = motion_features(distinct, torch.ones(1, 16), FEATURES)
    got = motion_features(x, mask, FEATURES)
    assert torch.allclose(got, want, atol=1e-5)
    # without the dropping, the doubled clip's second differences look nothing like the original's
    assert abs(motion_features(doubled, torch.ones(1, 32), FEATURES)[0, 0] - want[0, 0]) > 0.5


def test_band_fitted_on_real_motion_flags_both_too_smooth_and_too_flickery(tmp_path):
    from train.temporal_fit import TemporalFitConfig, fit_temporal

    rng = np.random.default_rng(0)
    manifest = write_cache(tmp_path, rng)
    stem = tmp_path / "band"
    result = fit_temporal(
        TemporalFitConfig(
            manifest,
            stem,
            {"windows": WINDOWS, "window_frames": FRAMES, "img_size": 32, "features": BAND_FEATURES},
            reencodes=1,
        )
    )
    assert result.onnx_max_abs_diff is not None and result.onnx_max_abs_diff < 1e-3
    loaded = load_model(stem)
    assert loaded.preprocess.sample.sampling == "windows" and loaded.preprocess.sync.weights == ""
    model = loaded.module
    from preprocess.sample_file import load_sample
    from train.data import read_manifest

    test = [e for e in read_manifest(manifest) if e.split == "test"]
    batch = model.batch_inputs([load_sample(e.sample) for e in test], model.config)
    with torch.no_grad():
        logits = model(*(torch.from_numpy(b) for b in batch))[0][:, 0].numpy()
    kinds = np.array([e.category for e in test])
    for kind in ("smooth", "flicker"):
        chosen = np.isin(kinds, ["real", kind])
        auc = roc_auc((kinds[chosen] != "real").astype(int), logits[chosen])
        assert auc >= 0.8, f"{kind}: AUC {auc:.2f} against the real clips"
    assert np.median(logits[kinds == "real"]) < 0  # reals inside the band
    # a still face (every frame the same) has no motion to measure: it scores as a typical real
    still = load_sample(test[0].sample)
    still.faces[:] = still.faces[0]
    with torch.no_grad():
        outputs = model(*(torch.from_numpy(b) for b in model.batch_inputs([still], model.config)))
    assert np.isnan(outputs[1].numpy()).all()
    assert outputs[0].item() == pytest.approx(
        (model.config.still_statistic - model.config.offset) * model.config.scale
    )
    assert outputs[0].item() < 0


def test_onnx_parity(tmp_path):
    import onnxruntime as ort

    from models.onnx_export import export_onnx

    model = create_model(
        "temporal_band", windows=2, window_frames=12, img_size=32, features="smooth,smooth_coarse,fine"
    ).eval()
    model.set_band(np.full(6, -1.0), np.eye(6) * 0.5, 1.5, 2.0)
    path = export_onnx(model, tmp_path / "tb.onnx")
    inputs = model.example_inputs(3, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"windows": inputs[0].numpy(), "frame_mask": inputs[1].numpy()})
    with torch.no_grad():
        want = [o.numpy() for o in model(*inputs)]
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(np.isnan(a), np.isnan(b))
        assert np.allclose(a[~np.isnan(a)], b[~np.isnan(b)], atol=1e-4)
    assert json.loads(json.dumps(model.config.to_dict()))["region"]  # JSON-safe config
