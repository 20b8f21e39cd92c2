"""temporal_net: repeated frames dropped before it looks, still faces, ONNX parity, and learning
from temporal pseudo-fakes alone to catch generated clips it never saw (``fit-temporal-net`` on
a small generated cache, held-out AUC over three seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.registry import create_model, load_model
from preprocess.sample_file import load_sample
from tests.temporal_clips import real_motion, write_windows_cache
from train.data import read_manifest
from train.metrics import roc_auc

WINDOWS, FRAMES, CROP = 2, 20, 64
SMALL = {"windows": WINDOWS, "window_frames": FRAMES, "img_size": 32}


def test_repeated_frames_change_nothing():
    torch.manual_seed(0)
    net = create_model("temporal_net", **SMALL).eval()
    rng = np.random.default_rng(0)
    grey = torch.tensor(real_motion(rng, FRAMES // 2, 32).mean(-1) / 255.0, dtype=torch.float32)
    distinct = torch.zeros(1, WINDOWS, FRAMES, 32, 32)
    distinct[0, 0, : FRAMES // 2] = grey
    mask = torch.zeros(1, WINDOWS, FRAMES)
    mask[0, 0, : FRAMES // 2] = 1
    doubled = torch.zeros_like(distinct)
    doubled[0, 0] = grey.repeat_interleave(2, dim=0)  # 12.5 fps content shown at 25
    with torch.no_grad():
        a = net(distinct, mask)
        b = net(doubled, torch.cat([torch.ones(1, 1, FRAMES), torch.zeros(1, 1, FRAMES)], 1))
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-5)
    assert torch.isnan(a[1][0, 1]) and not torch.isnan(a[1][0, 0])


def test_a_still_face_scores_the_still_logit():
    net = create_model("temporal_net", **SMALL, still_logit=-1.25).eval()
    still = torch.rand(1, 1, 1, 32, 32).expand(1, WINDOWS, FRAMES, 32, 32).contiguous()
    with torch.no_grad():
        logits, window_logits, _ = net(still, torch.ones(1, WINDOWS, FRAMES))
    assert logits.item() == pytest.approx(-1.25) and torch.isnan(window_logits).all()


def test_onnx_parity(tmp_path):
    from train.export import write_checked_onnx

    torch.manual_seed(1)
    net = create_model("temporal_net", **SMALL).eval()
    _, diff = write_checked_onnx(net, tmp_path / "net.onnx")
    assert diff < 1e-4


def write_cache(tmp_path, seed: int):
    """Real training clips (with landmarks, for the pseudo-fakes); validation and test: real,
    smoothed (keyframes interpolated) and flickering (per-frame re-rendered) clips."""
    plan = [("train", "real")] * 12 + [
        (s, k) for s in ("val", "test") for k in ("real", "smooth", "flicker") for _ in range(5)
    ]
    return write_windows_cache(tmp_path, plan, np.random.default_rng(seed), WINDOWS, FRAMES, CROP)


@pytest.mark.parametrize(
    "seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]
)
def test_learns_from_pseudo_fakes_to_catch_unseen_generated_clips(tmp_path, seed):
    from train.temporal_net_fit import TemporalNetFitConfig, fit_temporal_net

    manifest = write_cache(tmp_path, seed)
    stem = tmp_path / "net"
    result = fit_temporal_net(
        TemporalNetFitConfig(
            manifest,
            stem,
            pool_options={"work_size": CROP, "variants": 1, "real_repackaged": 1},
            model=SMALL,
            steps=300,
            val_every=50,
            seed=seed,
            calibrate=False,
        )
    )
    assert result.onnx_max_abs_diff is not None and result.onnx_max_abs_diff < 1e-4
    loaded = load_model(stem)
    assert loaded.preprocess.sample.sampling == "windows"
    test = [e for e in read_manifest(manifest) if e.split == "test"]
    net = loaded.module.eval()
    batch = net.batch_inputs([load_sample(e.sample) for e in test], net.config)
    with torch.no_grad():
        logits = net(*(torch.from_numpy(b) for b in batch))[0][:, 0].numpy()
    kinds = np.array([e.category for e in test])
    for kind in ("smooth", "flicker"):
        chosen = np.isin(kinds, ["real", kind])
        auc = roc_auc((kinds[chosen] != "real").astype(int), logits[chosen])
        assert auc >= 0.8, f"seed {seed}, {kind}: held-out AUC {auc:.2f} against the real clips"
