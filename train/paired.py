"""``python -m train paired A B``: is detector A better than detector B on the same videos?

Two ``train eval`` reports of one evaluation set (each keeps its videos' scores) → A − B in AUC,
log loss, balanced log loss and each fake kind's AUC against the reals, with a paired stratified
bootstrap (``train.metrics.paired_differences``): both detectors scored on the same resampled
videos each time, so what they get right or wrong together cancels. With 18 fakes an AUC has a
standard error near 0.09 on its own; a paired difference is often far tighter, and when its
interval still holds 0 the two detectors cannot be told apart on that set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.compare import NamedReport, ReportError
from train.metrics import INTERVAL_LEVEL, PairedDifference, paired_differences


@dataclass(frozen=True)
class ScoredVideos:
    """A report's videos in file-name order."""

    filenames: list[str]
    labels: np.ndarray
    scores: np.ndarray
    categories: list[str]


def report_videos(report: NamedReport) -> ScoredVideos:
    """The per-video scores a ``train eval`` report keeps (its ``videos``)."""
    rows = report.data.get("videos")
    if not isinstance(rows, list) or not rows:
        raise ReportError(
            f"{report.path}: the report keeps no per-video scores ('videos'); rerun `train eval`"
        )
    try:
        rows = sorted(rows, key=lambda r: r["filename"])
        return ScoredVideos(
            [str(r["filename"]) for r in rows],
            np.array([int(r["label"]) for r in rows]),
            np.array([float(r["score"]) for r in rows]),
            [str(r.get("category", "fake" if int(r["label"]) else "real")) for r in rows],
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ReportError(f"{report.path}: a 'videos' row lacks filename, label or score ({err})") from err


def paired_reports(
    a: NamedReport, b: NamedReport, resamples: int = 2000, seed: int = 0
) -> list[PairedDifference]:
    """A − B on the videos both reports scored; refused when they scored other videos or
    disagree on a label (they would not be the same evaluation set)."""
    va, vb = report_videos(a), report_videos(b)
    if va.filenames != vb.filenames:
        only_a = sorted(set(va.filenames) - set(vb.filenames))
        only_b = sorted(set(vb.filenames) - set(va.filenames))
        raise ReportError(
            f"{a.path} and {b.path} scored other videos ({len(only_a)} only in the first, e.g. "
            f"{only_a[:2]}; {len(only_b)} only in the second, e.g. {only_b[:2]})"
        )
    differ = [n for n, x, y in zip(va.filenames, va.labels, vb.labels, strict=True) if x != y]
    if differ:
        raise ReportError(f"{a.path} and {b.path} label {len(differ)} videos differently, e.g. {differ[0]}")
    return paired_differences(va.labels, va.scores, vb.scores, va.categories, resamples, seed)


def format_paired(a: NamedReport, b: NamedReport, rows: list[PairedDifference]) -> str:
    lines = [
        f"A = {a.name}, B = {b.name}: A − B with its {INTERVAL_LEVEL:.0%} paired-bootstrap interval",
        f"{'figure':<28} {'A':>7} {'B':>7} {'A − B':>8}  interval            A better",
    ]
    for r in rows:
        lines.append(
            f"{r.figure:<28} {r.a:7.4f} {r.b:7.4f} {r.difference:+8.4f}  "
            f"[{r.interval.low:+.3f}, {r.interval.high:+.3f}]  {r.a_better:6.1%}"
        )
    lines.append("A better: share of resamples with A's AUC higher / log loss lower")
    return "\n".join(lines)
