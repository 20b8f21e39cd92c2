"""``python -m train paired``: two ``train eval`` reports of one set → A − B with intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train.cli import main as train_main


def _report(path, names, labels, scores, title):
    videos = [
        {"filename": n, "label": int(y), "score": float(s), "category": "lip_sync" if y else "real"}
        for n, y, s in zip(names, labels, scores, strict=True)
    ]
    data = {"n": len(videos), "n_fake": int(sum(labels)), "auc": 0.5, "average_precision": 0.5,
            "log_loss": 0.7, "per_category": {}, "title": title, "videos": videos}  # fmt: skip
    path.mkdir()
    (path / "report.json").write_text(json.dumps(data))
    return path


def test_paired_reports_join_by_file_name_and_refuse_other_videos(tmp_path, capsys):
    rng = np.random.default_rng(0)
    names = [f"v{i:02d}.mp4" for i in range(24)]
    labels = np.r_[np.zeros(12), np.ones(12)]
    good = np.clip(labels * 0.3 + rng.uniform(0.2, 0.6, 24), 0.01, 0.99)
    weak = np.clip(rng.uniform(0.2, 0.8, 24), 0.01, 0.99)
    a = _report(tmp_path / "a", names, labels, good, "good on all")
    order = np.arange(24)[::-1]  # another order in the report: joined by name
    b = _report(tmp_path / "b", [names[i] for i in order], labels[order], weak[order], "weak on all")
    out = tmp_path / "paired.json"
    assert train_main(["paired", str(a), str(b), "--resamples", "300", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "A = good, B = weak" in printed and "auc_vs_real:lip_sync" in printed
    data = json.loads(out.read_text())
    auc = next(d for d in data["differences"] if d["figure"] == "auc")
    from train.metrics import roc_auc

    assert auc["difference"] == pytest.approx(roc_auc(labels, good) - roc_auc(labels, weak))
    assert auc["interval"][0] > 0

    c = _report(tmp_path / "c", names[:-1] + ["other.mp4"], labels, weak, "c on all")
    assert train_main(["paired", str(a), str(c)]) == 2
    assert "scored other videos (1 only in the first" in capsys.readouterr().err
    flipped = labels.copy()
    flipped[0] = 1
    d = _report(tmp_path / "d", names, flipped, weak, "d on all")
    assert train_main(["paired", str(a), str(d)]) == 2
    assert "label 1 videos differently, e.g. v00.mp4" in capsys.readouterr().err
