"""Localisation end to end: partially faked synthetic videos → labels.csv with their segments →
the real preprocessing pipeline → manifest → a frame detector's per-frame outputs →
``train eval``'s per-second AUC and segment AP. Plumbing, not accuracy (the model is random)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from core.aggregation import per_second
from core.preprocess_config import PreprocessConfig
from models.registry import create_model
from train import evaluate as ev
from train.metrics import second_labels
from weights.store import save_weights

SECONDS = 2.0


@pytest.fixture(scope="module")
def partial_cache(tmp_path_factory):
    """Two real clips and their two partial fakes (mouth re-rendered inside a segment), through
    ``python -m preprocess``'s own path; SyncNet off (frame detectors do not read it)."""
    from preprocess.cache_build import run_preprocess
    from preprocess.datasets import load_dataset
    from train.synth.videos import write_dataset

    root = tmp_path_factory.mktemp("partial")
    labels = write_dataset(
        root / "videos", 4, SECONDS, seed=3, categories=["mouth_rerender"], progress=False, partial=1.0
    )
    pcfg = PreprocessConfig().replace("sync", weights="").replace("media", window_s=SECONDS)
    items = load_dataset(root / "videos", labels)
    run_preprocess(items, root / "cache", pcfg, workers=0, progress=False, threads=1)
    return labels, root / "cache" / "manifest.csv", pcfg


def tiny_meso(tmp_path, pcfg):
    torch.manual_seed(0)
    model = create_model("meso4", num_frames=8, img_size=64).eval()
    save_weights(tmp_path / "meso4", model.state_dict(), "meso4", model.config.to_dict(), pcfg.to_dict())
    return model


def test_segments_reach_the_manifest_and_the_eval_report(partial_cache, tmp_path):
    labels_csv, manifest, pcfg = partial_cache
    with open(labels_csv, newline="") as f:
        rows = {r["filename"]: r for r in csv.DictReader(f)}
    partial = {n: (float(r["fake_start"]), float(r["fake_end"])) for n, r in rows.items() if r["fake_start"]}
    assert len(partial) == 2 and all(r["label"] == "0" for n, r in rows.items() if n not in partial)
    labels = ev.manifest_labels(manifest)
    assert {n: lab.segment for n, lab in labels.items() if lab.segment} == partial
    assert set(labels) == set(rows)  # every video made a sample

    model = tiny_meso(tmp_path, pcfg)
    timelines = {t.name: t for t in ev.manifest_timelines(model, manifest, "all", labels)}
    assert set(timelines) == set(rows)
    for name, t in timelines.items():
        # eight crops over a 2 s clip land in both of its seconds
        np.testing.assert_array_equal(t.seconds, [0, 1])
        assert t.segment == partial.get(name) and ((t.probabilities > 0) & (t.probabilities < 1)).all()
    # one video by hand: the sample's frame logits, its crops' times, per_second
    from preprocess.sample_file import load_sample
    from train.data import read_manifest

    entry = next(e for e in read_manifest(manifest) if e.filename in partial)
    sample = load_sample(entry.sample)
    frames = torch.from_numpy(type(model).sample_inputs(sample, model.config)["frames"][None])
    with torch.no_grad():
        frame_logits = model(frames)[1][0].numpy()
    expected = per_second(type(model).time_columns(sample, model.config), frame_logits)
    np.testing.assert_allclose(timelines[entry.filename].probabilities, [p for _, p in expected], rtol=1e-5)

    from train.cli import main

    out = tmp_path / "report"
    args = ["eval", "--manifest", str(manifest), "--weights", str(tmp_path / "meso4"), "--split", "all"]
    assert main([*args, "--out", str(out)]) == 0
    loc = json.loads((out / "report.json").read_text())["localisation"]
    fake_seconds = sum(int(second_labels(t.seconds, t.segment).sum()) for t in timelines.values())
    assert loc["videos"] == 4 and loc["videos_with_segment"] == 2 and loc["seconds"] == 8
    assert loc["fake_seconds"] == fake_seconds > 0
    assert 0.0 <= loc["per_second_auc"] <= 1.0 and 0.0 <= loc["segment_ap"] <= 1.0


def test_no_localisation_without_time_outputs_or_segments(partial_cache):
    _, manifest, _ = partial_cache
    labels = ev.manifest_labels(manifest)
    lstm = create_model(
        "efficientnet_lstm",
        num_frames=8,
        img_size=64,
        lstm_hidden=8,
        channel_multiplier=0.25,
        depth_multiplier=0.34,
    ).eval()
    assert ev.localisation_report(lstm, manifest, "all", labels) is None
    model = create_model("meso4", num_frames=8, img_size=64).eval()
    whole = {n: ev.VideoLabel(lab.label, lab.split, lab.category) for n, lab in labels.items()}
    assert ev.localisation_report(model, manifest, "all", whole) is None  # an old labels file
