"""``python -m train``: argument handling and the synth command."""

from __future__ import annotations

import csv

import pytest

from train.cli import _model_config, main


def test_model_config_names_files_and_overrides(tmp_path):
    cfg = _model_config("tiny:img_size=32,patch_size=8,dropout=0.1")
    assert (cfg["img_size"], cfg["patch_size"], cfg["dropout"], cfg["embed_dims"]) == (32, 8, 0.1, 96)
    assert _model_config("base")["embed_dims"] == 768
    path = tmp_path / "fusion.json"
    path.write_text('{"arch": "fusion_timesformer", "model": {"num_layers": 1}}')
    assert _model_config(f"{path}:num_heads=2") == {"num_layers": 1, "num_heads": 2}
    with pytest.raises(ValueError, match="patch_size"):
        _model_config("tiny:img_size=30")


def test_synth_writes_videos_and_labels(tmp_path, capsys):
    assert (
        main(
            ["synth", str(tmp_path), "--n", "3", "--seconds", "0.4", "--categories", "audio_shift", "--quiet"]
        )
        == 0
    )
    with open(tmp_path / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["category"] for r in rows] == ["real", "audio_shift", "real"]
    assert all((tmp_path / r["filename"]).stat().st_size > 1000 for r in rows)
    assert "labels.csv" in capsys.readouterr().out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["fit", "--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path / "run")]) == 2
    assert "none.csv: manifest not found" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "x.ckpt"), "--out", str(tmp_path / "w")]) == 2
    assert "x.ckpt: checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path), "--categories"])
