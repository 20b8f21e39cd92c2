"""``python -m train eval`` on submission CSVs: joined with labels, validation threshold, report files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from train.cli import main
from train.evaluate import join, read_labels, read_submission


def _write(path, header, rows):
    path.write_text("\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n")
    return path


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    labels, test, val = [], [], []
    for i in range(40):
        y = i % 2
        split = "val" if i < 16 else "test"
        cat = "real" if y == 0 else ("face_blend" if i % 4 == 1 else "audio_shift")
        labels.append((f"v{i}.mp4", "FAKE" if y else "REAL", split, cat))
        p = float(np.clip(0.5 + (0.3 if y else -0.3) + rng.normal(0, 0.35), 0, 1))
        (val if split == "val" else test).append((f"v{i}.mp4", round(p, 4)))
    test.append(("unlabelled.mp4", 0.5))
    return (
        _write(tmp_path / "labels.csv", ["filename", "label", "split", "category"], labels),
        _write(tmp_path / "test.csv", ["filename", "probability"], test),
        _write(tmp_path / "val.csv", ["filename", "probability"], val),
    )


def test_eval_report_with_a_validation_threshold(files, tmp_path, capsys):
    labels, test, val = files
    out = tmp_path / "report"
    rc = main(["eval", "--submission", str(test), "--labels", str(labels), "--split", "test",
               "--val-threshold-from", str(val), "--out", str(out)])  # fmt: skip
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    truth = read_labels(labels)
    scores = read_submission(test)
    names = sorted(n for n in scores if n in truth and truth[n].split == "test")
    assert report["n"] == len(names) == 24
    y = np.array([truth[n].label for n in names])
    p = np.array([scores[n] for n in names])
    # every number the report gives, recomputed with scikit-learn on the same joined rows
    assert report["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert report["average_precision"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    # probabilities are clipped to [1e-7, 1 - 1e-7] first (run.sh clips too): scores of 0 or 1 occur here
    assert report["log_loss"] == pytest.approx(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-12)
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    gap = (1 - tpr) - fpr  # FNR - FPR falls from 1 to -1 along the curve; EER where it crosses 0
    assert report["eer"] == pytest.approx(np.interp(0.0, gap[::-1], fpr[::-1]), abs=1e-9)
    pred = (p >= report["threshold"]).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert report["confusion"] == {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": pytest.approx(skm.accuracy_score(y, pred)),
    }
    vy = np.array([truth[n].label for n in sorted(read_submission(val))])
    vp = np.array([read_submission(val)[n] for n in sorted(read_submission(val))])
    vfpr, vtpr, vthr = skm.roc_curve(vy, vp)
    assert report["threshold"] == pytest.approx(vthr[int(np.argmax(vtpr - vfpr))])
    assert report["threshold_source"].startswith("youden on validation (n=16)")
    assert set(report["per_category"]) == {"real", "face_blend", "audio_shift"}
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "AUC" in capsys.readouterr().out


def test_fixed_threshold_and_missing_predictions(files, tmp_path):
    labels, test, _ = files
    lines = test.read_text().splitlines()
    test.write_text("\n".join(lines[:-5]) + "\n")  # drop some predictions
    joined = join(read_submission(test), read_labels(labels), "test")
    assert len(joined.missing) == 4  # the unlabelled row was among the dropped
    rc = main(
        [
            "eval",
            "--submission",
            str(test),
            "--labels",
            str(labels),
            "--split",
            "test",
            "--threshold",
            "0.5",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert (
        report["threshold"] == 0.5 and report["threshold_source"] == "given" and len(report["missing"]) == 4
    )


def test_bad_files_fail_with_the_file_named(files, tmp_path, capsys):
    labels, test, _ = files
    assert main(["eval", "--submission", str(tmp_path / "nope.csv"), "--labels", str(labels)]) == 2
    assert "nope.csv: submission CSV not found" in capsys.readouterr().err
    bad = _write(tmp_path / "bad.csv", ["filename", "probability"], [("v1.mp4", 1.5)])
    assert main(["eval", "--submission", str(bad), "--labels", str(labels)]) == 2
    assert "bad.csv:2: probability 1.5 is outside [0, 1]" in capsys.readouterr().err
    assert main(["eval", "--manifest", str(tmp_path / "m.csv")]) == 2


def test_submission_eval_reports_localisation_from_a_per_second_csv(tmp_path, capsys):
    """Labels with a partial fake's segment + run.sh's per-second CSV (filename,track,second,
    score): the report gains per-second AUC and segment AP; without segments it has none."""
    labels = _write(
        tmp_path / "labels.csv",
        ["filename", "label", "split", "fake_start", "fake_end"],
        [("p.mp4", 1, "test", 1.0, 3.0), ("f.mp4", 1, "test", "", ""), ("r.mp4", 0, "test", "", "")],
    )
    sub = _write(
        tmp_path / "sub.csv", ["filename", "probability"], [("p.mp4", 0.9), ("f.mp4", 0.8), ("r.mp4", 0.1)]
    )
    rows = [("p.mp4", 0, s, p) for s, p in enumerate([0.1, 0.9, 0.8, 0.2])]
    rows += [("p.mp4", 1, 3, 0.3)]  # a second face: the max per second counts
    rows += [("f.mp4", 0, s, 0.7) for s in range(3)] + [("r.mp4", 0, s, 0.2) for s in range(2)]
    per_second = _write(tmp_path / "ps.csv", ["filename", "track", "second", "score"], rows)
    read = read_labels(labels)
    assert read["p.mp4"].segment == (1.0, 3.0) and read["f.mp4"].segment is None
    args = ["eval", "--submission", str(sub), "--labels", str(labels), "--per-second", str(per_second)]
    assert main([*args, "--threshold", "0.5", "--out", str(tmp_path / "rep")]) == 0
    loc = json.loads((tmp_path / "rep" / "report.json").read_text())["localisation"]
    # seconds: p 4 (fake 1, 2), f 3 (all fake: its segment spans the scored seconds), r 2
    assert (loc["videos"], loc["videos_with_segment"], loc["seconds"], loc["fake_seconds"]) == (3, 2, 9, 5)
    assert loc["per_second_auc"] == 1.0 and loc["segment_ap"] == 1.0
    assert "segment AP@0.5 1.0000" in capsys.readouterr().out
    plain = _write(tmp_path / "plain.csv", ["filename", "label"], [("p.mp4", 1), ("r.mp4", 0)])
    assert main(["eval", "--submission", str(sub), "--labels", str(plain), "--per-second", str(per_second),
                 "--out", str(tmp_path / "rep2")]) == 0  # fmt: skip
    assert "localisation" not in json.loads((tmp_path / "rep2" / "report.json").read_text())


def test_by_source_reports_each_generator_against_all_reals(files, tmp_path, capsys):
    labels, test, _ = files
    truth = read_labels(labels)

    # three fake sources (gen0: 6 test fakes, enough for an interval; gen1, gen2: 3 each), real
    # sources; one video the sources file does not name
    def source(n: str, fake: int) -> str:
        i = int(n[1:-4])
        return (f"gen{0 if i < 28 else 1 + (i % 4) // 2}") if fake else f"cam{i % 4}"

    sources = {n: source(n, lab.label) for n, lab in truth.items()}
    sources.pop("v39.mp4")
    src = _write(tmp_path / "sources.csv", ["filename", "source"], sorted(sources.items()))
    out = tmp_path / "report"
    args = ["eval", "--submission", str(test), "--labels", str(labels), "--split", "test",
            "--threshold", "0.5"]  # fmt: skip
    assert main([*args, "--by-source", str(src), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    scores = read_submission(test)
    names = sorted(n for n in scores if n in truth and truth[n].split == "test")
    reals = [n for n in names if truth[n].label == 0]
    for k in range(3):
        fakes = [n for n in names if truth[n].label == 1 and sources.get(n) == f"gen{k}"]
        entry = report["per_source"][f"fake: gen{k}"]
        y = [0] * len(reals) + [1] * len(fakes)
        p = [scores[n] for n in reals + fakes]
        assert entry["n"] == len(fakes) and entry["auc_vs_real"] == pytest.approx(skm.roc_auc_score(y, p))
        interval = report["per_source_intervals"].get(f"fake: gen{k}")  # bootstrap, 5 fakes or more
        assert (interval is not None) == (len(fakes) >= 5)
        assert interval is None or interval[0] <= entry["auc_vs_real"] <= interval[1]
    assert report["per_source_intervals"]  # some source has enough fakes
    assert report["per_source"]["real: cam0"]["auc_vs_real"] is None
    assert report["per_source"]["audio_shift"]["n"] == 1  # v39: unnamed, keeps its category
    assert "by source:" in capsys.readouterr().out
    assert main([*args, "--by-source", str(labels)]) == 2  # no source column: an error naming the file
    assert "source" in capsys.readouterr().err
