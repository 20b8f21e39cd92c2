"""Probability calibration: the mapping, its fit (safe across sources), its place in the weights
JSON, and every runtime applying it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_frame_detectors import faces_sample, tiny

from core.calibration import IDENTITY, Calibration, is_uncertain, log_odds, sigmoid
from core.preprocess_config import PreprocessConfig
from models.onnx_export import export_onnx
from models.registry import load_model
from submission.scoring import DetectorScorer
from train.calibration import fit_across_sources, merge_small_sources, source_of
from train.metrics import balanced_log_loss, brier_score, expected_calibration_error, log_loss
from weights.store import WeightsError, load_weights, save_weights, write_calibration


def test_mapping_is_affine_in_log_odds_and_keeps_the_ranking():
    c = Calibration(0.5, -0.2)
    p = np.array([0.01, 0.3, 0.5, 0.9, 0.999])
    np.testing.assert_allclose(c.apply(p), sigmoid(0.5 * log_odds(p) - 0.2))
    assert np.all(np.diff(c.apply(p)) > 0)
    assert np.isnan(c.apply_log_odds(np.array([np.nan, 1.0]))[0])
    np.testing.assert_array_equal(IDENTITY.apply(p), p)
    assert Calibration.from_dict(c.to_dict()) == c
    for bad in ({"slope": 0}, {"slope": -1}, {"bias": "x"}, {"slope": float("nan")}, {"scale": 2}, [1, 2]):
        with pytest.raises(ValueError):
            Calibration.from_dict(bad)
    assert is_uncertain(0.5) and not is_uncertain(0.9) and not is_uncertain(0.1)


def _overconfident(rng, n, separation, scale):
    """A detector whose log-odds are ``scale`` times too large, on one source of ``separation``."""
    y = rng.integers(0, 2, n)
    true_log_odds = (2 * y - 1) * separation + rng.normal(0, 1.0, n)
    return sigmoid(scale * true_log_odds), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_mapping_fitted_on_one_split_lowers_log_loss_on_another(seed):
    rng = np.random.default_rng(seed)
    p_fit, y_fit = _overconfident(rng, 400, 1.0, 6.0)
    p_new, y_new = _overconfident(rng, 400, 1.0, 6.0)
    fit = fit_across_sources(p_fit, y_fit, ["a"] * len(y_fit))
    assert 0.05 < fit.calibration.slope < 0.5  # the 6x over-confidence is undone
    calibrated = fit.calibration.apply(p_new)
    assert log_loss(y_new, calibrated) < 0.8 * log_loss(y_new, p_new)
    assert expected_calibration_error(y_new, calibrated) < expected_calibration_error(y_new, p_new)
    assert brier_score(y_new, calibrated) < brier_score(y_new, p_new)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minimax_mapping_is_safe_on_a_source_the_detector_cannot_see(seed):
    """Fakes of source "seen" are separated, fakes of "blind" score like reals: a pooled fit trusts
    the detector and loses more than a constant 0.5 on "blind"; the minimax fit stays near it."""
    rng = np.random.default_rng(seed)
    reals = sigmoid(rng.normal(-3, 1, 200))
    seen = sigmoid(rng.normal(3, 1, 150))
    blind = sigmoid(rng.normal(-3, 1, 50))
    p = np.concatenate([reals, seen, blind])
    y = np.array([0] * 200 + [1] * 200)
    sources = ["real:r"] * 200 + ["fake:seen"] * 150 + ["fake:blind"] * 50
    fit = fit_across_sources(p, y, sources)
    blind_rows = np.r_[0:200, 350:400]
    assert balanced_log_loss(y[blind_rows], p[blind_rows]) > 1.0  # raw: confidently wrong
    assert balanced_log_loss(y[blind_rows], fit.calibration.apply(p[blind_rows])) < 0.70
    assert fit.worst_calibrated < 0.70 < fit.worst_raw
    assert {s.source: s.videos for s in fit.sources} == {"fake:blind": 50, "fake:seen": 150, "real:r": 200}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_objective_trusts_the_seen_sources_more_and_the_blind_one_less(seed):
    """Same data: the mean over sources keeps the slope the blind source would take away, so
    it wins on the mean and loses on the worst source; each objective wins its own figure."""
    rng = np.random.default_rng(seed)
    y = np.array([0] * 200 + [1] * 300)
    sources = ["real:r"] * 200 + ["fake:a"] * 100 + ["fake:b"] * 100 + ["fake:blind"] * 100
    z = np.concatenate([rng.normal(-2, 1, 200), rng.normal(2, 1, 200), rng.normal(-2, 1, 100)])
    worst = fit_across_sources(sigmoid(z), y, sources)
    mean = fit_across_sources(sigmoid(z), y, sources, objective="mean")
    assert mean.objective == "mean" and worst.objective == "worst"
    assert mean.calibration.slope > 2 * worst.calibration.slope
    assert mean.mean_calibrated < worst.mean_calibrated - 0.02
    assert worst.worst_calibrated < mean.worst_calibrated - 0.02
    assert "mean" in mean.calibration.method and mean.to_dict()["objective"] == "mean"
    with pytest.raises(ValueError, match="objective"):
        fit_across_sources(sigmoid(z), y, sources, objective="median")


def _two_members(rng, n=40):
    """Member A sees face swaps, B talking heads; a third fake source ("both") both see."""
    y = np.array([0] * (2 * n) + [1] * (3 * n))
    sources = (
        ["real:r1"] * n
        + ["real:r2"] * n
        + ["face_swap:x"] * n
        + ["talking_head:y"] * n
        + ["lip_sync:both"] * n
    )
    a = np.concatenate(
        [rng.normal(-1, 1, 2 * n), rng.normal(1.5, 1, n), rng.normal(-1, 1, n), rng.normal(1.5, 1, n)]
    )
    b = np.concatenate(
        [rng.normal(-1, 1, 2 * n), rng.normal(-1, 1, n), rng.normal(1.5, 1, n), rng.normal(1.5, 1, n)]
    )
    return np.stack([a, b]), y, sources


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_source_is_scored_by_a_stacking_fitted_without_it(seed):
    from train.ensemble_fit import held_out_sources, leave_source_out, stack

    z, y, sources = _two_members(np.random.default_rng(seed))
    held = leave_source_out(z, y, sources)
    src = np.array(sources)
    rest = src != "face_swap:x"  # refit by hand without one source: the same log-odds for it
    weights, fit = stack(z[:, rest], y[rest], src[rest].tolist())
    combined = (np.asarray(weights)[:, None] * z[:, ~rest]).sum(0) / sum(weights)
    np.testing.assert_allclose(held[~rest], fit.calibration.apply_log_odds(combined))
    # without face swaps the fit leans on B, blind to them (and the reverse): one of those two
    # sources fares worst held out, worse than in the fit that saw it
    report = held_out_sources(z, y, sources)
    assert report.worst_source in ("face_swap:x", "talking_head:y")
    seen = {s.source: s.calibrated for s in stack(z, y, sources)[1].sources}
    assert report.worst_source_log_loss > seen[report.worst_source] + 0.05
    in_sample = stack(z, y, sources)[1]
    assert report.balanced_log_loss > in_sample.pooled_calibrated


def test_auto_objective_picks_the_one_whose_worst_left_out_source_fares_better(tmp_path, monkeypatch):
    from train import ensemble_fit
    from train.calibration import LabelledVideos

    z, y, sources = _two_members(np.random.default_rng(0))
    names = [f"v{i}.mp4" for i in range(len(y))]
    scores = {m: LabelledVideos(names, sigmoid(z[i]), y, sources) for i, m in enumerate(("a", "b"))}
    monkeypatch.setattr(ensemble_fit, "member_videos", lambda m, *args: scores[m])
    fit = ensemble_fit.fit_ensemble(["a", "b"], tmp_path / "manifest.csv", objective="auto")
    by_objective = {r.objective: r.worst_source_log_loss for r in fit.held_out}
    assert set(by_objective) == {"worst", "mean"}
    assert fit.fit.objective == min(by_objective, key=by_objective.get)
    out = ensemble_fit.write_ensemble(fit, tmp_path / "e.json")
    data = json.loads(out.read_text())
    assert [r["objective"] for r in data["fit"]["leave_source_out"]] == ["worst", "mean"]
    assert "each source left out, objective" in ensemble_fit.format_ensemble(fit)
    plain = ensemble_fit.fit_ensemble(["a", "b"], tmp_path / "manifest.csv")
    assert plain.held_out == () and plain.fit.objective == "worst"


def test_sources_are_folders_and_small_ones_pool_per_category():
    assert source_of("fake/generated/X+Y/a.mp4", "talking_head") == "talking_head:fake/generated/X+Y"
    merged = merge_small_sources(["a:x", "a:x", "a:x", "a:y", "b:z"], ["a", "a", "a", "a", "b"])
    assert merged == ["a:x", "a:x", "a:x", "a:other", "b:other"]


def _calibrated_weights(tmp_path, calibration: Calibration):
    model = tiny("meso4", seed=1)
    pre = PreprocessConfig().replace("sample", num_frames=4)
    save_weights(
        tmp_path / "m",
        model.state_dict(),
        "meso4",
        model.config.to_dict(),
        pre.to_dict(),
        calibration=calibration.to_dict(),
    )
    export_onnx(model, tmp_path / "m.onnx")
    return model


def test_the_weights_json_carries_the_mapping_and_a_rewrite_keeps_the_tensors(tmp_path):
    c = Calibration(0.3, 0.4, "test", "here")
    _calibrated_weights(tmp_path, c)
    assert load_model(tmp_path / "m").calibration == c
    tensors = (tmp_path / "m.safetensors").read_bytes()
    write_calibration(tmp_path / "m", Calibration(2.0, -1.0).to_dict(), {"why": "refit"})
    assert load_model(tmp_path / "m").calibration == Calibration(2.0, -1.0)
    assert (tmp_path / "m.safetensors").read_bytes() == tensors
    assert load_weights(tmp_path / "m").extra["calibration_fit"] == {"why": "refit"}
    write_calibration(tmp_path / "m", None)
    assert load_model(tmp_path / "m").calibration == IDENTITY
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["calibration"] = {"slope": -2}
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="m.json.*slope"):
        load_model(tmp_path / "m")


def test_every_runtime_applies_the_mapping(tmp_path):
    c = Calibration(0.25, -0.5)
    _calibrated_weights(tmp_path, c)
    rng = np.random.default_rng(3)
    samples = [faces_sample(rng, f"v{i}.mp4") for i in range(5)]
    for sample in samples:  # one clip frame per crop, so every frame has a time
        sample.face_frame_indices = np.arange(len(sample.faces))
    raw = DetectorScorer.from_weights(tmp_path / "m", runtime="torch")
    raw.calibration = IDENTITY
    expected = c.apply(raw.score(samples))
    for runtime in ("torch", "onnxruntime"):
        scorer = DetectorScorer.from_weights(tmp_path / "m", runtime=runtime, batch_size=2)
        np.testing.assert_allclose(scorer.score(samples), expected, atol=1e-5)
        detailed = scorer.score_detailed(samples)
        np.testing.assert_allclose([d[0].probability for d in detailed], expected, atol=1e-5)
        # frame log-odds are mapped too: their mean is the sample's calibrated log-odds
        means = [np.nanmean(d[0].time_log_odds) for d in detailed]
        np.testing.assert_allclose(sigmoid(means), expected, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stacking_weighs_members_by_the_sources_each_one_sees(seed):
    """Member A separates face swaps and is blind to talking heads, member B the reverse: the
    stacked ensemble's worst source beats either member's, and both members carry weight."""
    from train.ensemble_fit import stack

    rng = np.random.default_rng(seed)
    n = 60
    y = np.array([0] * n + [1] * n + [1] * n)
    sources = ["real:r"] * n + ["face_swap:x"] * n + ["talking_head:y"] * n
    a = np.concatenate([rng.normal(-1, 1, n), rng.normal(1.5, 1, n), rng.normal(-1, 1, n)])
    b = np.concatenate([rng.normal(-1, 1, n), rng.normal(-1, 1, n), rng.normal(1.5, 1, n)])
    weights, fit = stack(np.stack([a, b]), y, sources)
    alone = [fit_across_sources(sigmoid(z), y, sources).worst_calibrated for z in (a, b)]
    assert fit.worst_calibrated < min(alone) - 0.02
    assert 0.2 < weights[0] / weights[1] < 5


def test_eval_report_has_brier_ece_and_a_reliability_diagram(tmp_path):
    from train.evaluate import LabelledScores, report_for, write_report

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.2, 60), 0.01, 0.99)
    scores = LabelledScores([f"v{i}" for i in range(60)], y, p, ["x"] * 60, [])
    report = report_for(scores)
    assert 0 < report.brier < 0.25 and 0 <= report.ece < 0.5 and report.balanced_log_loss < 0.693
    json_path, _ = write_report(report, scores, tmp_path)
    data = json.loads(json_path.read_text())
    assert {"brier", "ece", "balanced_log_loss"} <= set(data)
    assert (tmp_path / "reliability.png").stat().st_size > 1000
