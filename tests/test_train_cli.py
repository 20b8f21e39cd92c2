"""``python -m train``: argument handling and the synth command."""

from __future__ import annotations

import csv
import json

import pytest

from train.cli import main, model_spec


def test_model_spec_names_files_and_overrides(tmp_path):
    arch, cfg = model_spec("tiny:img_size=32,patch_size=8,dropout=0.1")
    assert arch == "fusion_timesformer"
    assert (cfg["img_size"], cfg["patch_size"], cfg["dropout"], cfg["embed_dims"]) == (32, 8, 0.1, 96)
    assert model_spec("base")[1]["embed_dims"] == 768
    path = tmp_path / "fusion.json"
    path.write_text('{"arch": "fusion_timesformer", "model": {"num_layers": 1}}')
    assert model_spec(f"{path}:num_heads=2") == ("fusion_timesformer", {"num_layers": 1, "num_heads": 2})
    with pytest.raises(ValueError, match="patch_size"):
        model_spec("tiny:img_size=30")


def test_model_spec_names_any_registered_detector(tmp_path):
    assert model_spec("meso4") == ("meso4", {})
    assert model_spec("efficientnet_lstm:num_frames=4,lstm_hidden=32") == (
        "efficientnet_lstm",
        {"num_frames": 4, "lstm_hidden": 32},
    )
    path = tmp_path / "meso.json"
    path.write_text('{"arch": "mesoinception4", "model": {"img_size": 128}}')
    assert model_spec(str(path)) == ("mesoinception4", {"img_size": 128})
    with pytest.raises(ValueError, match="unknown efficientnet_b0 config keys"):
        model_spec("efficientnet_b0:width=2")
    with pytest.raises(ValueError, match="multiple of 32"):
        model_spec("meso4:img_size=100")
    with pytest.raises(ValueError, match="'mesonet5': not tiny, base, a registered model"):
        model_spec("mesonet5")


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


def test_fit_export_and_eval_any_detector_from_the_command_line(face_blend_cache, tmp_path, capsys):
    run, stem = tmp_path / "run", tmp_path / "weights" / "meso4"
    fit = [
        "fit",
        "--manifest",
        str(face_blend_cache),
        "--out",
        str(run),
        "--model",
        "meso4:img_size=64,num_frames=2",
    ]
    # 5 steps: the run stops mid-epoch, after its last validation (at step 4)
    assert main([*fit, "--optimizer", "adamw", "--max-steps", "5", "--epoch-size", "16", "--quiet"]) == 0
    assert "best checkpoint" in capsys.readouterr().out
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), "--out", str(stem)]) == 0
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["arch"] == "meso4" and meta["model"]["img_size"] == 64 and stem.with_suffix(".onnx").is_file()
    assert meta["extra"]["step"] == 5  # last.ckpt is the final state, not the last validation's
    assert "ONNX Runtime vs torch" in capsys.readouterr().out
    report = tmp_path / "report"
    assert (
        main(["eval", "--manifest", str(face_blend_cache), "--weights", str(stem), "--out", str(report)]) == 0
    )
    assert json.loads((report / "report.json").read_text())["n"] == 60  # the test split's videos
    # meso4 has no upstream-checkpoint converter: said before training starts
    assert main([*fit, "--init", str(tmp_path / "x.h5"), "--max-steps", "1"]) == 2
    assert "Meso4 has no upstream-checkpoint converter" in capsys.readouterr().err


def test_fit_help_lists_every_detector_and_defaults_to_the_shipped_one(capsys):
    import models  # noqa: F401  registers every model
    from models.detector import DetectorModel
    from models.registry import model_entry, registered_models
    from train.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_.value.code == 0
    # temporal_band and sync_evidence have no learnt layers: `train fit-temporal` and
    # `train fit-sync-evidence` fit them, not `train fit`; temporal_net trains on a forged pool
    # (`train fit-temporal-net`)
    detectors = [
        a
        for a in registered_models()
        if issubclass(model_entry(a).model_class, DetectorModel)
        and a not in ("temporal_band", "temporal_net", "sync_evidence")
    ]
    assert "mds" in detectors and "mobilenetv2_frames" in detectors
    for arch in detectors:
        assert arch in out, arch
    assert "(default: mobilenetv2_frames, the shipped detector's architecture)" in out
    fit = build_parser().parse_args(["fit", "--manifest", "m.csv", "--out", "o"])
    assert fit.model == "mobilenetv2_frames"
    assert model_spec(fit.model) == ("mobilenetv2_frames", {})


def test_lightning_info_lines_print_once(capfd):
    import logging

    from train.cli import lightning_logs_once

    root = logging.getLogger()
    ours = logging.StreamHandler()  # what main's basicConfig installs
    root.addHandler(ours)
    try:
        lightning_logs_once()
        assert not [h for h in logging.getLogger("lightning").handlers if type(h) is logging.StreamHandler]
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
    finally:
        root.removeHandler(ours)
    assert capfd.readouterr().err.count("GPU available: False") == 1


def test_fit_init_repeats_for_a_model_with_two_upstream_checkpoints():
    """``av_attention`` starts its frames from RetinaFace and its audio tower from the sync model:
    ``--init`` is repeatable and the checkpoints reach the model in the order given."""
    from pathlib import Path

    from train.cli import build_parser

    args = build_parser().parse_args(
        [
            "fit",
            "--manifest",
            "m.csv",
            "--out",
            "run",
            "--init",
            "retinaface_mobilenetv2",
            "--init",
            "syncnet",
        ]
    )
    assert args.init == [Path("retinaface_mobilenetv2"), Path("syncnet")]
    assert build_parser().parse_args(["fit", "--manifest", "m.csv", "--out", "run"]).init == []
