"""Ensembles: ``--weights a,b`` or an ensemble JSON; members' video log-odds averaged; the
members CSV; members trained on different preprocessing refused."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from submission_fakes import FakePreprocessor, FakeScorer

from core.aggregation import combine_log_odds
from core.preprocess_config import PreprocessConfig
from models.registry import create_model
from submission.cli import main
from submission.ensemble import EnsembleMember, EnsembleScorer, is_ensemble, parse_members
from weights.store import WeightsError, save_weights


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


class InverseScorer(FakeScorer):
    """A second fake member that disagrees: P(fake) = 1 - pixel value / 100."""

    def score(self, samples) -> np.ndarray:
        return 1.0 - super().score(samples)


def test_combined_probability_is_the_sigmoid_of_the_weighted_mean_log_odds():
    assert combine_log_odds([0.9, 0.5], [1, 1]) == pytest.approx(sigmoid(logit(0.9) / 2))
    assert combine_log_odds([0.9, 0.2], [3, 1]) == pytest.approx(sigmoid((3 * logit(0.9) + logit(0.2)) / 4))
    assert combine_log_odds([0.7, 0.3], [1, 1]) == pytest.approx(0.5)
    # a saturated member counts as very confident, not as certain
    assert 0.5 < combine_log_odds([1.0, 0.0 + 1e-3], [1, 1]) < 1.0
    with pytest.raises(ValueError, match="2 member probabilities for 3 weights"):
        combine_log_odds([0.1, 0.2], [1, 1, 1])


def _weights(folder: Path, name: str, arch: str = "meso4", pre: PreprocessConfig | None = None) -> Path:
    model = create_model(arch, num_frames=2, img_size=32)
    pre = pre or PreprocessConfig().replace("sample", num_frames=2)
    return save_weights(folder / name, model.state_dict(), arch, model.config.to_dict(), pre.to_dict())


def test_members_from_a_list_or_a_json(tmp_path):
    _weights(tmp_path, "meso4")
    (tmp_path / "sub").mkdir()
    _weights(tmp_path / "sub", "meso4")
    assert parse_members(f"{tmp_path}/meso4, {tmp_path}/sub/meso4") == [
        EnsembleMember(f"{tmp_path}/meso4", 1.0, "meso4"),
        EnsembleMember(f"{tmp_path}/sub/meso4", 1.0, "meso4#2"),  # names stay distinct
    ]
    spec = tmp_path / "ensemble.json"
    spec.write_text(
        json.dumps(
            {"members": [{"weights": "meso4", "weight": 2}, {"weights": "sub/meso4", "name": "other"}]}
        )
    )
    assert is_ensemble(str(spec)) and is_ensemble("a,b") and not is_ensemble(str(tmp_path / "meso4.json"))
    assert parse_members(str(spec)) == [  # found beside the JSON
        EnsembleMember(str(tmp_path / "meso4"), 2.0, "meso4"),
        EnsembleMember(str(tmp_path / "sub" / "meso4"), 1.0, "other"),
    ]
    spec.write_text(json.dumps({"members": [{"weights": "meso4", "weight": 0}, {"weights": "x"}]}))
    with pytest.raises(WeightsError, match="member weights must be positive"):
        parse_members(str(spec))
    spec.write_text(json.dumps({"members": [{"weight": 1}]}))
    with pytest.raises(WeightsError, match=r"ensemble\.json: not an ensemble JSON \(KeyError"):
        parse_members(str(spec))
    with pytest.raises(WeightsError, match="at least two members"):
        parse_members("meso4,")


def test_members_trained_on_different_preprocessing_are_refused(tmp_path):
    _weights(tmp_path, "a")
    _weights(tmp_path, "b", "efficientnet_b0", PreprocessConfig().replace("sample", num_frames=4))
    members = parse_members(f"{tmp_path}/a,{tmp_path}/b")
    with pytest.raises(
        WeightsError, match=r"'a' and 'b' .*sample\.num_frames: 2 vs 4.*train every member on one cache"
    ):
        EnsembleScorer.from_members(members, runtime="torch")


def test_run_writes_the_combined_probability_and_each_members(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a_p80.mp4", "b_p30_p60.mp4", "c_broken.mp4"):
        (folder / name).write_bytes(b"")
    scorer = EnsembleScorer([FakeScorer(), InverseScorer()], ["fake", "inverse"], [3.0, 1.0])
    out = tmp_path / "out" / "submission.csv"
    code = main(
        ["-input", str(folder), "-output", str(out), "--no-progress"],
        preprocessor_factory=FakePreprocessor,
        scorer=scorer,
    )
    assert code == 0
    with open(out) as f:
        got = {r["filename"]: float(r["probability"]) for r in csv.DictReader(f)}
    with open(out.with_name("submission_members.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["filename", "fake", "inverse"]
    members = {r[0]: r[1:] for r in rows[1:]}
    # each member takes its own max over the tracks, then the log-odds are averaged 3:1
    assert [float(v) for v in members["b_p30_p60.mp4"]] == [0.6, 0.7]
    assert got["b_p30_p60.mp4"] == pytest.approx(sigmoid((3 * logit(0.6) + logit(0.7)) / 4), abs=1e-6)
    assert got["a_p80.mp4"] == pytest.approx(sigmoid((3 * logit(0.8) + logit(0.2)) / 4), abs=1e-6)
    assert members["c_broken.mp4"] == ["", ""] and got["c_broken.mp4"] == 0.5


@pytest.mark.slow
def test_run_sh_scores_an_ensemble_of_frame_detectors(tmp_path):
    """Two exported frame detectors through ``bash run.sh --weights a,b`` on generated videos:
    each member's column equals that member scored alone through the Python API."""
    import os
    import subprocess

    from models.onnx_export import export_onnx
    from preprocess.media import write_video
    from preprocess.pipeline import Preprocessor
    from submission.scoring import DetectorScorer
    from train.synth.videos import generate_videos

    root = Path(__file__).resolve().parents[1]
    pre = PreprocessConfig().replace("media", window_s=1.0).replace("sample", num_frames=2)
    weights = {}
    for arch, config in (
        ("meso4", {}),
        ("efficientnet_lstm", {"channel_multiplier": 0.25, "depth_multiplier": 0.34, "lstm_hidden": 8}),
    ):
        torch.manual_seed(0)
        model = create_model(arch, num_frames=2, img_size=64, **config).eval()
        weights[arch] = save_weights(
            tmp_path / "w" / arch, model.state_dict(), arch, model.config.to_dict(), pre.to_dict()
        )
        export_onnx(model, weights[arch].with_suffix(".onnx"))
    videos = tmp_path / "videos"
    videos.mkdir()
    for v in generate_videos(2, seconds=1.0, seed=9, categories=["face_blend"]):
        write_video(videos / v.filename, v.frames, v.fps, v.audio)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(root)}
    spec = ",".join(str(w) for w in weights.values())
    proc = subprocess.run(
        ["bash", str(root / "run.sh"), str(videos), str(out), "--weights", spec, "--workers", "0", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out / "submission_members.csv") as f:
        members = {r["filename"]: r for r in csv.DictReader(f)}
    with open(out / "submission.csv") as f:
        final = {r["filename"]: float(r["probability"]) for r in csv.DictReader(f)}
    assert sorted(members) == sorted(final) == sorted(p.name for p in videos.iterdir())
    preprocessor = Preprocessor(pre)
    for name in final:
        samples = preprocessor.process(videos / name).samples
        alone = {}
        for arch, path in weights.items():
            alone[arch] = float(DetectorScorer.from_weights(path, runtime="torch").score(samples).max())
            assert float(members[name][arch]) == pytest.approx(alone[arch], abs=1e-4)
        expected = combine_log_odds(list(alone.values()), [1, 1])
        assert final[name] == pytest.approx(float(np.clip(expected, 1e-3, 1 - 1e-3)), abs=1e-4)


def test_per_second_means_log_odds_within_each_second_and_skips_padding():
    from core.aggregation import per_second

    z = np.log(np.array([0.9, 0.1, 0.8, 0.5]) / (1 - np.array([0.9, 0.1, 0.8, 0.5])))
    rows = per_second([0.2, 0.7, 3.1, np.nan], z)
    assert [s for s, _ in rows] == [0, 3]  # second 1-2 hold nothing; the NaN time is padding
    assert rows[0][1] == pytest.approx(0.5)  # mean of logit(0.9) and logit(0.1) is 0
    assert rows[1][1] == pytest.approx(0.8)
    assert per_second([1.0, 2.0], [np.nan, np.nan]) == []
    with pytest.raises(ValueError):
        per_second([0.0], [0.0, 1.0])


def test_an_ensemble_json_names_its_preprocessing_and_maps_its_combined_log_odds(tmp_path, monkeypatch):
    """``preprocess`` lets members trained on different samples share one preprocessing each can
    read; ``calibration`` maps the combined log-odds; a bare name finds ``NAME.json`` in the
    weights folder; the resume identity changes with the mapping."""
    from core.calibration import Calibration
    from submission.ensemble import ensemble_settings
    from submission.scoring import DetectorScorer

    four = PreprocessConfig().replace("sample", num_frames=4)
    _weights(tmp_path, "a")
    _weights(tmp_path, "b", pre=four)
    spec = {"members": [{"weights": "a"}, {"weights": "b", "weight": 3}]}
    (tmp_path / "plain.json").write_text(json.dumps(spec))
    members = parse_members(str(tmp_path / "plain.json"))
    scorers = [DetectorScorer.from_weights(m.weights, runtime="torch") for m in members]
    with pytest.raises(WeightsError, match="different preprocessing"):
        EnsembleScorer(scorers, ["a", "b"], [1, 3], settings=ensemble_settings(str(tmp_path / "plain.json")))
    mapping = Calibration(0.5, -1.0)
    spec |= {"preprocess": four.to_dict(), "calibration": mapping.to_dict()}
    (tmp_path / "default.json").write_text(json.dumps(spec))
    monkeypatch.setenv("AVDF_WEIGHTS", str(tmp_path))
    assert is_ensemble("default") and [m.name for m in parse_members("default")] == ["a", "b"]
    settings = ensemble_settings("default")
    assert settings.preprocess == four and settings.calibration == mapping
    ensemble = EnsembleScorer(scorers, ["a", "b"], [1, 3], settings=settings)
    assert ensemble.preprocess_config == four and all(s.preprocess_config == four for s in scorers)
    assert ensemble.ensemble_calibration == mapping
    plain = EnsembleScorer(scorers, ["a", "b"], [1, 3], settings=settings.__class__(preprocess=four))
    assert ensemble.identity != plain.identity
    expected = sigmoid(0.5 * (logit(0.9) + 3 * logit(0.2)) / 4 - 1.0)
    assert combine_log_odds([0.9, 0.2], [1, 3], mapping) == pytest.approx(expected)
    bad = dict(spec, calibration={"slope": -1})
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(WeightsError, match="bad.json: ensemble JSON corrupt"):
        ensemble_settings(str(tmp_path / "bad.json"))


def random_members(folder: Path, pre: PreprocessConfig, names: str = "ab") -> list[Path]:
    """Untrained ``meso4`` members, ``a`` and ``b`` (seeds 0 and 1; more with ``names``), saved in ``folder``."""
    paths = []
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        model = create_model("meso4", num_frames=2, img_size=32).eval()
        paths.append(
            save_weights(folder / name, model.state_dict(), "meso4", model.config.to_dict(), pre.to_dict())
        )
    return paths


def test_train_eval_scores_an_ensemble_json_as_run_sh_combines_it(tmp_path):
    """``train eval --weights ENSEMBLE.json`` on a cache: each member scored alone (its own
    calibration), log-odds averaged 2:1, the ensemble's mapping applied; the report is built
    from those probabilities."""
    from core.calibration import Calibration
    from train.cli import main as train_main
    from train.evaluate import (
        load_scoring_model,
        score_ensemble_manifest,
        score_manifest,
        scoring_calibration,
    )
    from train.metrics import roc_auc
    from train.synth.samples import samples_from_videos, write_sample_cache
    from train.synth.videos import generate_videos
    from weights.store import write_calibration

    pre = PreprocessConfig().replace("sample", num_frames=2)
    videos = generate_videos(12, seconds=0.12, seed=3, categories=["face_blend"])
    manifest = write_sample_cache(samples_from_videos(videos, pre, crop_size=32), tmp_path / "cache", pre)
    paths = random_members(tmp_path, pre)
    write_calibration(paths[0], Calibration(0.7, -0.1).to_dict())  # a member's own mapping counts
    ensemble = tmp_path / "ens.json"
    ensemble.write_text(
        json.dumps(
            {
                "members": [{"weights": "a", "weight": 2.0}, {"weights": "b", "weight": 1.0}],
                "calibration": Calibration(1.5, 0.2).to_dict(),
            }
        )
    )
    scored = score_ensemble_manifest(str(ensemble), manifest, ["all"])["all"]

    alone = [
        score_manifest(
            load_scoring_model(weights=str(p)), manifest, ["all"], calibration=scoring_calibration(str(p))
        )["all"]
        for p in paths
    ]
    assert sorted(scored) == sorted(alone[0]) and len(scored) == 12
    for name, p in scored.items():
        z = (2 * logit(alone[0][name]) + logit(alone[1][name])) / 3
        assert p == pytest.approx(sigmoid(1.5 * z + 0.2), abs=1e-9)
    assert alone[0] != score_manifest(load_scoring_model(weights=str(paths[0])), manifest, ["all"])["all"]
    out = tmp_path / "report"
    assert (
        train_main(
            [
                "eval",
                "--manifest",
                str(manifest),
                "--weights",
                str(ensemble),
                "--split",
                "all",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())

    with open(manifest, newline="") as f:
        labels = {r["filename"]: int(r["label"]) for r in csv.DictReader(f)}
    names = sorted(scored)
    assert report["auc"] == pytest.approx(
        roc_auc(np.array([labels[n] for n in names]), np.array([scored[n] for n in names]))
    )


def test_an_ensemble_fitted_on_two_caches_is_the_one_fitted_on_their_union(tmp_path):
    """``train ensemble --manifest A --manifest B`` (e.g. validation and its re-packaged reals):
    the same fit as one cache holding both; a video in both caches is refused by name."""
    from train.ensemble_fit import fit_ensemble
    from train.synth.samples import samples_from_videos, write_sample_cache
    from train.synth.videos import generate_videos

    pre = PreprocessConfig().replace("sample", num_frames=2)
    videos = generate_videos(16, seconds=0.12, seed=5, categories=["face_blend"])
    pairs = list(samples_from_videos(videos, pre, crop_size=32))
    union = write_sample_cache(pairs, tmp_path / "union", pre)
    first = write_sample_cache(pairs[::2], tmp_path / "first", pre)
    second = write_sample_cache(pairs[1::2], tmp_path / "second", pre)
    members = [str(p) for p in random_members(tmp_path, pre)]
    whole = fit_ensemble(members, union, "all")
    parts = fit_ensemble(members, [first, second], "all")
    assert parts.weights == whole.weights
    a, b = parts.fit.calibration, whole.fit.calibration
    assert (a.slope, a.bias, a.method) == (b.slope, b.bias, b.method)
    assert "first/manifest.csv + " in a.fitted_on  # the card names both caches
    assert parts.member_scores[members[0]].filenames == whole.member_scores[members[0]].filenames
    overlap = write_sample_cache(pairs[:3], tmp_path / "overlap", pre)
    with pytest.raises(ValueError, match=r"is in both .*first/manifest.csv and .*overlap/manifest.csv"):
        fit_ensemble(members, [first, overlap], "all")
    with pytest.raises(ValueError, match="a manifest is given twice"):
        fit_ensemble(members, [first, first], "all")


def test_a_probe_of_reals_is_scored_with_the_fitted_stacking_and_never_fitted_on(tmp_path):
    """``train ensemble --probe`` scores real videos the fit never reads with the fitted weights
    and mapping: the fit is the one without the probe, and the figures are the probe's."""
    from train.ensemble_fit import _combine, fit_ensemble, member_videos, write_ensemble
    from train.metrics import roc_auc
    from train.synth.samples import samples_from_videos, write_sample_cache
    from train.synth.videos import generate_videos

    pre = PreprocessConfig().replace("sample", num_frames=2)
    videos = generate_videos(16, seconds=0.12, seed=6, categories=["face_blend"])
    pairs = list(samples_from_videos(videos, pre, crop_size=32))
    reals = [p for p in pairs if p[0].label == 0]
    fit_pairs = [p for p in pairs if p[0].label == 1] + reals[1::2]
    probe_pairs = reals[::2]
    assert len(probe_pairs) >= 2 and len(reals[1::2]) >= 2
    manifest = write_sample_cache(fit_pairs, tmp_path / "fit", pre)
    probe = write_sample_cache(probe_pairs, tmp_path / "probe", pre)
    members = [str(p) for p in random_members(tmp_path, pre)]
    plain = fit_ensemble(members, manifest, "all")
    probed = fit_ensemble(members, manifest, "all", probe=probe)
    assert (probed.weights, probed.fit.calibration) == (plain.weights, plain.fit.calibration)
    report = probed.probe
    assert report is not None and report.videos == len(probe_pairs)

    def stacked(cache):  # by hand: members' log-odds, the fitted weights, the fitted mapping
        scored = [member_videos(m, cache, "all", None) for m in members]
        z = np.stack([np.log(v.probabilities) - np.log1p(-v.probabilities) for v in scored])
        mapped = probed.fit.calibration.apply_log_odds(_combine(z, probed.weights))
        return 1 / (1 + np.exp(-mapped)), scored[0].labels

    p_probe, _ = stacked(probe)
    p_fit, fit_labels = stacked(manifest)
    assert report.mean_probability == pytest.approx(p_probe.mean())
    assert report.log_loss == pytest.approx(-np.log1p(-p_probe).mean())
    fakes = p_fit[fit_labels == 1]
    assert report.auc_against_fakes == pytest.approx(
        roc_auc(np.r_[np.ones(len(fakes)), np.zeros(len(p_probe))], np.r_[fakes, p_probe])
    )
    data = json.loads(write_ensemble(probed, tmp_path / "ens.json").read_text())
    assert data["fit"]["probe_reals"]["videos"] == len(probe_pairs)
    with pytest.raises(ValueError, match="a probe holds real videos only"):
        fit_ensemble(members, manifest, "all", probe=write_sample_cache(pairs, tmp_path / "mixed", pre))


def test_a_tied_group_enters_the_stacking_as_the_mean_of_its_parts_and_is_written_part_by_part(tmp_path):
    """``train ensemble --members a+b,c``: a and b (e.g. two seeds) tied into one member, the
    mean of their log-odds; the fit is the stacking of that mean beside c, and the JSON lists a
    and b with half the group's weight each, which ``train eval`` (as ``run.sh``) scores to the
    fitted probabilities."""
    from core.calibration import log_odds
    from core.calibration import sigmoid as sigmoid_array
    from train.ensemble_fit import fit_ensemble, member_parts, member_videos, stack, write_ensemble
    from train.evaluate import score_ensemble_manifest
    from train.synth.samples import samples_from_videos, write_sample_cache
    from train.synth.videos import generate_videos

    pre = PreprocessConfig().replace("sample", num_frames=2)
    videos = generate_videos(16, seconds=0.12, seed=7, categories=["face_blend"])
    manifest = write_sample_cache(samples_from_videos(videos, pre, crop_size=32), tmp_path / "cache", pre)
    a, b, c = (str(p) for p in random_members(tmp_path, pre, "abc"))
    fit = fit_ensemble([f"{a}+{b}", c], manifest, "all")
    alone = {w: member_videos(w, manifest, "all", None) for w in (a, b, c)}
    za, zb, zc = (log_odds(alone[w].probabilities) for w in (a, b, c))
    assert not np.allclose(za, zb)  # the parts differ, so the mean is not either one
    weights, by_hand = stack(np.stack([(za + zb) / 2, zc]), alone[a].labels, alone[a].sources)
    assert fit.weights == weights
    assert (fit.fit.calibration.slope, fit.fit.calibration.bias) == (
        by_hand.calibration.slope,
        by_hand.calibration.bias,
    )

    out = write_ensemble(fit, tmp_path / "ens.json", names=["seam", "seam_s1", "band"])
    entries = json.loads(out.read_text())["members"]
    assert [e["weights"] for e in entries] == [Path(w).name for w in (a, b, c)]
    assert [e["name"] for e in entries] == ["seam", "seam_s1", "band"]
    assert entries[0]["weight"] == entries[1]["weight"] == pytest.approx(weights[0] / 2, abs=1e-6)
    assert entries[2]["weight"] == pytest.approx(weights[1], abs=1e-6)
    scored = score_ensemble_manifest(str(out), manifest, ["all"])["all"]
    z = fit.fit.calibration.apply_log_odds((weights[0] * (za + zb) / 2 + weights[1] * zc) / sum(weights))
    for name, p in zip(alone[a].filenames, sigmoid_array(z), strict=True):
        assert scored[name] == pytest.approx(p, abs=1e-6)

    with pytest.raises(ValueError, match="2 names for 3 member weights"):
        write_ensemble(fit, tmp_path / "bad.json", names=["seam", "band"])
    for bad in (f"{a}+{a}", f"{a}+"):
        with pytest.raises(ValueError, match="a tied group names distinct weights"):
            member_parts(bad)
