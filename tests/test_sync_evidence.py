"""sync_evidence: features of a latency, the one-class band and the logistic fit learning on
synthetic latencies (over seeds), the weights and ONNX round trip, and a sample without a
latency scoring exactly neutral with a warning (through the scorer and through the CLI)."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
import torch

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Latency, Sample, SampleMeta
from models.registry import create_model, load_model
from models.sync_evidence import FEATURES, latency_features
from preprocess.cache_layout import config_hash, write_settings
from preprocess.sample_file import load_latency, save_sample
from train.sync_evidence_fit import SyncFitConfig, fit_sync_evidence, latency_table

VSHIFT = 15
SYNC_ON = (
    PreprocessConfig().replace("sample", num_frames=1).replace("sync", weights="syncnet", windows=32, runs=32)
)


def synthetic_latency(rng: np.random.Generator, depth: float, offset: int, level: float = 0.6) -> Latency:
    """A distance curve over −15..15 with a dip of ``depth`` at ``offset`` (syncnet_python's
    sign: the curve's index is vshift − offset), per-offset noise, and 32 window confidences."""
    d = np.arange(-VSHIFT, VSHIFT + 1)
    curve = level + rng.normal(0, 0.006, d.size) - depth * np.exp(-0.5 * ((d + offset) / 1.5) ** 2)
    best = int(np.argmin(curve))
    median = float(np.median(curve))
    frame_conf = rng.normal(median - curve[best], 0.04, 32)
    return Latency(
        curve.astype(np.float32), VSHIFT - best, float(curve[best]), median - float(curve[best]), frame_conf
    )


# real: a clear dip at 0 ± 1; "unsynced": hardly a dip anywhere; "oversynced": deeper and
# narrower-tolerance than any camera clip (a generator driven to match the audio exactly)
KINDS = {
    "real": lambda rng: synthetic_latency(rng, rng.uniform(0.08, 0.14), int(rng.integers(-1, 2))),
    "unsynced": lambda rng: synthetic_latency(rng, rng.uniform(0.0, 0.02), int(rng.integers(-8, 9))),
    "mumbled": lambda rng: synthetic_latency(rng, rng.uniform(0.0, 0.03), int(rng.integers(-3, 4)), 0.7),
    "oversynced": lambda rng: synthetic_latency(rng, rng.uniform(0.25, 0.32), 0, 0.5),
}


def make_sample(name: str, label: int, latency: Latency | None, warnings: list[str] | None = None) -> Sample:
    return Sample(
        meta=SampleMeta(name, name, 25.0, 4.0, latency is not None, 1, 0, label, warnings or []),
        faces=np.zeros((1, 8, 8, 3), np.uint8),
        face_frame_indices=np.zeros(1, np.int64),
        boxes=np.zeros((1, 4), np.float32),
        frame_start=0,
        audio=np.zeros(0, np.int16),
        mfcc=np.zeros((13, 0), np.float32),
        mel=np.zeros((80, 0), np.float32),
        latency=latency,
    )


def write_cache(tmp_path, seed: int, plan: list[tuple[str, str, int]], cfg: PreprocessConfig = SYNC_ON):
    """A cache of samples whose only content is a synthetic latency; ``plan``: (split, kind,
    count). Each kind is its own source folder."""
    rng = np.random.default_rng(seed)
    cache = tmp_path / f"cache{seed}"
    (cache / "samples").mkdir(parents=True)
    write_settings(cache, cfg, config_hash(cfg))
    rows = []
    for split, kind, count in plan:
        for i in range(count):
            name = f"{kind}/{split}_{i}.mp4"
            label = int(kind != "real")
            path = cache / "samples" / f"{kind}_{split}_{i}.npz"
            save_sample(make_sample(name, label, KINDS[kind](rng)), path)
            category = "real" if kind == "real" else "lip_sync"
            rows.append(
                {"filename": name, "split": split, "label": label, "sample": str(path), "category": category}
            )
    with open(cache / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return cache / "manifest.csv"


def test_features_read_the_distance_curve():
    curve = np.full(31, 0.6, np.float32)
    curve[15 - 2] = 0.4  # best offset +2
    curve[15 + 9] = 0.5  # a rival minimum far away
    latency = Latency(curve, 2, 0.4, 0.2, np.array([0.3, -0.1, 0.2, 0.2], np.float32))
    got = dict(zip(FEATURES, latency_features(latency, FEATURES), strict=True))
    assert got["confidence"] == pytest.approx(0.2) and got["min_distance"] == pytest.approx(0.4)
    assert got["abs_offset"] == 2 and got["peak_margin"] == pytest.approx(0.1)
    assert got["sharpness"] == pytest.approx(0.2 / curve.std(), rel=1e-4)
    assert got["frame_conf_mean"] == pytest.approx(0.15) and got["frame_conf_pos"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="features"):
        create_model("sync_evidence", features="confidence,lip_colour")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_band_fitted_on_real_latencies_flags_both_unsynced_and_oversynced(tmp_path, seed):
    plan = [("train", "real", 40), ("val", "real", 12), ("val", "unsynced", 12), ("val", "oversynced", 12)]
    manifest = write_cache(tmp_path, seed, plan)
    result = fit_sync_evidence(SyncFitConfig(manifest, tmp_path / "band", mode="band", onnx=False))
    by_source = {s.source.split(":")[1]: s for s in result.validation.fake_sources}
    assert set(by_source) == {"unsynced", "oversynced"}
    for kind in ("unsynced", "oversynced"):
        assert by_source[kind].auc >= 0.9, f"seed {seed} {kind}: AUC {by_source[kind].auc:.2f}"
    model = load_model(tmp_path / "band").module
    table = latency_table(manifest, model.config.feature_names)
    val_real = table.where("val", 0)
    with torch.no_grad():
        logits = model(torch.from_numpy(table.features[val_real]).float(), torch.ones(int(val_real.sum())))
    assert float(logits.median()) < 0  # held-out reals inside the band


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logistic_fit_learns_separable_latencies_leave_generator_out(tmp_path, seed):
    plan = [("train", "real", 30), ("val", "real", 12), ("val", "unsynced", 15), ("val", "mumbled", 15)]
    manifest = write_cache(tmp_path, seed, plan)
    result = fit_sync_evidence(SyncFitConfig(manifest, tmp_path / "lr", mode="logistic", onnx=False))
    # each source scored by a fit that never saw it
    assert len(result.validation.fake_sources) == 2
    assert result.validation.worst_auc >= 0.9, f"seed {seed}: {result.validation.to_dict()}"
    assert result.validation.pooled_balanced_log_loss < 0.5
    model = load_model(tmp_path / "lr").module
    assert model.config.mode == "logistic" and float(model.weight.abs().sum()) > 0


def test_chance_latencies_do_not_look_learnt(tmp_path):
    """Fakes drawn like the reals: the leave-generator-out AUC stays near chance."""
    KINDS["lookalike"] = KINDS["real"]
    try:
        plan = [("train", "real", 30), ("val", "real", 30), ("val", "lookalike", 30), ("val", "unsynced", 10)]
        manifest = write_cache(tmp_path, 0, plan)
        result = fit_sync_evidence(SyncFitConfig(manifest, tmp_path / "lr", mode="logistic", onnx=False))
    finally:
        del KINDS["lookalike"]
    lookalike = next(s for s in result.validation.sources if s.source.endswith("lookalike"))
    assert 0.3 <= lookalike.auc <= 0.7


def test_weights_round_trip_onnx_and_a_sample_without_latency_scores_neutral(tmp_path, caplog):
    from submission.scoring import DetectorScorer

    manifest = write_cache(tmp_path, 0, [("train", "real", 30), ("val", "real", 8), ("val", "unsynced", 8)])
    result = fit_sync_evidence(SyncFitConfig(manifest, tmp_path / "se", mode="band"))
    assert result.onnx is not None and result.onnx_max_abs_diff < 1e-4
    loaded = load_model(tmp_path / "se")
    assert loaded.arch == "sync_evidence" and loaded.module.config.mode == "band"
    assert loaded.preprocess.sync.weights == "syncnet"  # the detector reads the latency: SyncNet stays on
    assert loaded.preprocess.sync.windows == 32
    rng = np.random.default_rng(5)
    with_latency = make_sample("talk.mp4", -1, KINDS["unsynced"](rng))
    silent = make_sample("silent.mp4", -1, None, ["no_audio"])
    short = make_sample("short.mp4", -1, None, ["no_latency: SyncNet needs 5 video frames"])
    want = None
    for runtime in ("torch", "onnxruntime"):
        scorer = DetectorScorer.from_weights(tmp_path / "se", runtime=runtime)
        with caplog.at_level(logging.WARNING, logger="models"):
            caplog.clear()
            p = scorer.score([with_latency, silent, short])
        assert p[1] == 0.5 and p[2] == 0.5  # log-odds exactly 0: no evidence either way
        assert p[0] > 0.5  # an unsynced track lies outside the real band
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert "silent.mp4" in messages and "no_audio" in messages and "short.mp4" in messages
        want = p if want is None else want
        assert np.allclose(p, want, atol=1e-5)
    # the stored configuration and tensors give the fitted model back exactly
    again = create_model("sync_evidence", **loaded.module.config.to_dict())
    again.load_state_dict(loaded.module.state_dict())
    x = torch.randn(4, loaded.module.config.num_features)
    ones = torch.ones(4)
    assert torch.equal(again.eval()(x, ones), loaded.module.eval()(x, ones))
    meta, latency = load_latency(tmp_path / "cache0" / "samples" / "unsynced_val_0.npz")
    assert meta.label == 1 and latency is not None and latency.distances.shape == (31,)


def test_a_cache_without_sync_is_refused(tmp_path):
    off = SYNC_ON.replace("sync", weights="")
    manifest = write_cache(tmp_path, 0, [("train", "real", 10)], cfg=off)
    with pytest.raises(ValueError, match="sync.weights"):
        fit_sync_evidence(SyncFitConfig(manifest, tmp_path / "x", onnx=False))


@pytest.mark.slow
def test_run_scores_a_video_without_audio_as_neutral(tmp_path, caplog):
    """Through the submission CLI (what run.sh runs), SyncNet on: a clip with its audio gets a
    latency and a score; the same clip without audio scores 0.5 with a warning, no failure."""
    from preprocess.media import write_video
    from submission.cli import main
    from train.synth.videos import generate_videos
    from weights.store import save_weights

    model = create_model("sync_evidence").eval()
    d = model.config.num_features
    model.set_band(np.zeros(d), np.eye(d), 0.5, 2.0)
    pre = SYNC_ON.replace("media", window_s=1.0)
    stem = save_weights(
        tmp_path / "w" / "se", model.state_dict(), model.arch, model.config.to_dict(), pre.to_dict()
    )
    videos = tmp_path / "videos"
    videos.mkdir()
    video = next(iter(generate_videos(1, seconds=1.0, seed=9, categories=["face_blend"])))
    assert video.audio is not None and len(video.audio)
    write_video(videos / "with_audio.mp4", video.frames, video.fps, video.audio)
    write_video(videos / "no_audio.mp4", video.frames, video.fps, None)
    out = tmp_path / "out" / "submission.csv"
    with caplog.at_level(logging.WARNING):
        code = main(
            [
                "-input",
                str(videos),
                "-output",
                str(out),
                "--weights",
                str(stem),
                "--workers",
                "0",
                "--no-progress",
            ]
        )
    assert code == 0
    with open(out) as f:
        got = {r["filename"]: float(r["probability"]) for r in csv.DictReader(f)}
    assert got["no_audio.mp4"] == 0.5
    assert got["with_audio.mp4"] != 0.5
    assert any("no_audio.mp4" in r.getMessage() and "no latency" in r.getMessage() for r in caplog.records)
