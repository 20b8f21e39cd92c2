"""``python -m train compare``: the detectors table from reports that ``train eval`` wrote.

The reports come from the real ``train eval --submission`` path on seeded scores; every cell of
the table is checked against scikit-learn on the same rows, the CSV is read back with pandas,
and a missing or broken report is refused naming its file.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from train.cli import main
from train.compare import DETECTOR, VAL_AUC, comparison_table, read_report, select, to_markdown

CATEGORIES = ("face_swap", "lip_sync", "talking_head")
DETECTORS = {"sharp": 0.25, "blunt": 0.6}  # name -> score noise: sharp separates better


def _write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n")
    return path


def _eval(args):
    assert main(["eval", *map(str, args)]) == 0


@pytest.fixture(params=[0, 1, 2], scope="module")
def reports(request, tmp_path_factory):
    """Two detectors' test and val reports, written by ``train eval``, and the truth behind them."""
    seed = request.param
    root = tmp_path_factory.mktemp(f"reports{seed}")
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(72):
        y = i % 2
        rows.append((f"v{i}.mp4", y, "val" if i < 24 else "test", CATEGORIES[(i // 2) % 3] if y else "real"))
    labels = _write_csv(root / "labels.csv", ["filename", "label", "split", "category"], rows)
    scores = {}
    for name, noise in DETECTORS.items():
        p = np.clip(0.5 + np.where([r[1] for r in rows], 0.2, -0.2) + rng.normal(0, noise, len(rows)), 0, 1)
        p = np.round(p, 4)
        scores[name] = dict(zip([r[0] for r in rows], p, strict=True))
        sub = _write_csv(root / f"{name}.csv", ["filename", "probability"], list(scores[name].items()))
        for split in ("test", "val"):
            _eval(["--submission", sub, "--labels", labels, "--split", split, "--out", root / name / split])
    return root, rows, scores


def _auc(rows, scores, split, category=None):
    chosen = [r for r in rows if r[2] == split and (category is None or r[3] in ("real", category))]
    return roc_auc_score([r[1] for r in chosen], [scores[r[0]] for r in chosen])


def test_the_table_holds_each_reports_metrics(reports, tmp_path, capsys):
    root, rows, scores = reports
    md, csv = tmp_path / "table.md", tmp_path / "table.csv"
    rc = main(["compare", *(str(root / n / "test") for n in DETECTORS),
               "--val", *(str(root / n / "val" / "report.json") for n in DETECTORS),
               "--out-md", str(md), "--out-csv", str(csv)])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed == md.read_text()

    table = pd.read_csv(csv)
    columns = [DETECTOR, "AUC", "AUC 95 %", "AP", "log loss", "log loss 95 %", "face swap", "lip sync",
               "talking head", VAL_AUC]  # fmt: skip
    assert list(table.columns) == columns
    # names from the reports' titles (the submission's file name): test and val reports paired
    assert list(table[DETECTOR]) == [f"{n}.csv" for n in DETECTORS]
    for k, name in enumerate(DETECTORS):
        row = table.iloc[k]
        report = json.loads((root / name / "test" / "report.json").read_text())
        assert row["AUC"] == pytest.approx(_auc(rows, scores[name], "test"), abs=1e-12)
        assert row["AP"] == pytest.approx(report["average_precision"], abs=1e-12)
        assert row["log loss"] == pytest.approx(report["log_loss"], abs=1e-12)
        for key, column in (("auc", "AUC 95 %"), ("log_loss", "log loss 95 %")):  # train eval's bootstrap
            low, high = report["intervals"][key]
            assert low <= report[key] <= high and row[column] == f"{low:.2f}–{high:.2f}"
        for category in CATEGORIES:
            expected = _auc(rows, scores[name], "test", category)
            assert row[category.replace("_", " ")] == pytest.approx(expected, abs=1e-12)
        assert row[VAL_AUC] == pytest.approx(_auc(rows, scores[name], "val"), abs=1e-12)

    # the Markdown shows the same numbers to 3 decimals, one line per detector under the header
    lines = printed.splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == columns
    assert len(lines) == 2 + len(DETECTORS)
    for line, (_, row) in zip(lines[2:], table.iterrows(), strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells == [row[DETECTOR], *(row[c] if "95 %" in c else f"{row[c]:.3f}" for c in columns[1:])]


def test_the_csv_round_trips_with_pandas(reports, tmp_path):
    root, _, _ = reports
    csv = tmp_path / "all.csv"
    columns = ["videos", "fakes", "AUC", "EER", "Brier", "ECE", "balanced log loss", "accuracy"]
    rc = main(["compare", *(str(root / n / "test") for n in DETECTORS), "--out-csv", str(csv),
               "--columns", ",".join(columns)])  # fmt: skip
    assert rc == 0
    table = select(comparison_table([read_report(str(root / n / "test")) for n in DETECTORS]), columns)
    # every digit is written: pandas' exact parser gets the very same floats back
    back = pd.read_csv(csv, float_precision="round_trip")
    pd.testing.assert_frame_equal(back, table, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(csv), table, check_exact=False, rtol=1e-15)
    assert list(back["videos"]) == [48, 48] and list(back["fakes"]) == [24, 24]


def test_sort_puts_the_best_first_and_bold_marks_it(reports):
    root, rows, scores = reports
    table = comparison_table([read_report(f"{n}={root / n / 'test'}") for n in DETECTORS])
    by_auc = select(table, sort="AUC")
    by_loss = select(table, sort="log loss")
    assert list(by_auc["AUC"]) == sorted(table["AUC"], reverse=True)
    assert list(by_loss["log loss"]) == sorted(table["log loss"])
    best = max(DETECTORS, key=lambda n: _auc(rows, scores[n], "test"))
    assert by_auc[DETECTOR].iloc[0] == best
    markdown = to_markdown(by_auc, bold_best=True).splitlines()
    assert f"**{by_auc['AUC'].iloc[0]:.3f}**" in markdown[2]
    assert f"**{by_auc['AUC'].iloc[1]:.3f}**" not in markdown[3]
    assert "**" not in to_markdown(by_auc)


def test_names_given_with_the_path_and_a_missing_validation_value(reports, tmp_path, capsys):
    root, _, _ = reports
    rc = main(["compare", f"seam `v2` | raw={root / 'sharp' / 'test'}", f"other={root / 'blunt' / 'test'}",
               "--val", f"other={root / 'blunt' / 'val'}", "--columns", "AUC,LOGO AUC"])  # fmt: skip
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    first = [c.strip() for c in lines[2].strip("|").replace("\\|", "¦").split("|")]
    assert first[0] == "seam `v2` ¦ raw" and first[2] == "—"  # no validation report of that name
    second = [c.strip() for c in lines[3].strip("|").split("|")]
    assert second[0] == "other" and second[2] != "—"


def test_a_missing_or_broken_report_is_named(reports, tmp_path, capsys):
    root, _, _ = reports
    good = str(root / "sharp" / "test")
    broken = tmp_path / "broken.json"
    broken.write_text('{"auc": 0.7,')
    weights_json = tmp_path / "detector.json"
    weights_json.write_text(json.dumps({"arch": "meso4", "model": {}}))
    wrong = tmp_path / "wrong" / "report.json"
    wrong.parent.mkdir()
    data = json.loads((root / "sharp" / "test" / "report.json").read_text())
    wrong.write_text(json.dumps({**data, "auc": "high"}))
    cases = {
        str(tmp_path / "nowhere"): "report not found",
        str(broken): "not a JSON report",
        str(weights_json): "not a `train eval` report (no 'n', 'n_fake', 'auc'",
        str(wrong.parent): "'auc' is 'high', not a number",
    }
    for path, problem in cases.items():
        assert main(["compare", good, path]) == 2
        err = capsys.readouterr().err
        assert path in err and problem in err, err
    # a validation report with no evaluated report of its name, and two rows of one name
    assert main(["compare", good, "--val", str(root / "blunt" / "val")]) == 2
    err = capsys.readouterr().err
    assert str(root / "blunt" / "val" / "report.json") in err and "'blunt.csv' pairs with no" in err
    assert main(["compare", good, str(root / "sharp" / "val")]) == 2
    assert "share the name 'sharp.csv'" in capsys.readouterr().err
    assert main(["compare", good, "--sort", "AUCC"]) == 2
    assert "no column 'AUCC'" in capsys.readouterr().err
