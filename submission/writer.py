"""Write submission.csv and its failures sidecar, atomically, in one consistent format."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from core.files import atomic_write
from submission.scoring import VideoScore

# The two challenges' headers; the value is the probability that the video is fake in both.
FORMATS = {"tmc": ("filename", "probability"), "dfdc": ("filename", "label")}
HEADER = FORMATS["tmc"]
# One row per video that failed (reason: why; it got the fallback) or was scored with a
# warning (warning: e.g. "partial: ..." for a truncated file scored from what decodes).
FAILURES_HEADER = ("filename", "reason", "warning")


class OutputError(Exception):
    """The submission cannot be written where it was asked to go."""


def failures_path(csv_path: str | Path) -> Path:
    """``out/submission.csv`` -> ``out/submission_failures.csv``."""
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}_failures.csv")


def members_path(csv_path: str | Path) -> Path:
    """``out/submission.csv`` -> ``out/submission_members.csv`` (an ensemble's members)."""
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}_members.csv")


def check_writable(csv_path: str | Path) -> None:
    """Fail before any video is processed if the CSV could not be written at the end."""
    csv_path = Path(csv_path)
    if csv_path.is_dir():
        raise OutputError(f"output {csv_path} is a folder; give the CSV file's path")
    folder = csv_path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{csv_path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from None


def write_csv_atomic(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Readers see the old file or the complete new one, never a partial one; mode 0644, so a
    grader running as another user can read it."""
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write(path, table.getvalue())


def format_probability(p: float, clip_eps: float, decimals: int = 6) -> str:
    """Clip to [eps, 1 - eps] (eps = 0: no clipping) and format with a fixed number of decimals."""
    p = min(max(float(p), clip_eps), 1.0 - clip_eps)
    return f"{p:.{decimals}f}"


def submission_rows(
    scores: Sequence[VideoScore], fallback: float, clip_eps: float, decimals: int = 6
) -> list[tuple[str, str]]:
    """One row per video, sorted by filename; a video that failed gets ``fallback``."""
    if not 0.0 <= fallback <= 1.0:
        raise ValueError(f"fallback probability {fallback} is outside [0, 1]")
    if not 0.0 <= clip_eps < 0.5:
        raise ValueError(f"clip eps {clip_eps} is outside [0, 0.5)")
    rows = []
    for s in sorted(scores, key=lambda s: s.filename):
        p = s.probability if s.ok else fallback
        rows.append((s.filename, format_probability(p, clip_eps, decimals)))
    return rows


def write_submission(
    csv_path: str | Path,
    scores: Sequence[VideoScore],
    *,
    fallback: float = 0.5,
    clip_eps: float = 1e-3,
    decimals: int = 6,
    fmt: str = "tmc",
) -> Path:
    """Write the failures sidecar (failed and warned videos), then the submission (so a complete CSV implies a complete
    sidecar). The sidecar is always rewritten, header-only when nothing failed, so no stale
    failures from an earlier run remain. ``fmt``: a key of FORMATS (the header). Returns the
    sidecar's path."""
    csv_path = Path(csv_path)
    header = FORMATS[fmt]
    rows = submission_rows(scores, fallback, clip_eps, decimals)
    failures = sorted((s.filename, s.reason, s.warning) for s in scores if not s.ok or s.warning)
    sidecar = failures_path(csv_path)
    write_csv_atomic(sidecar, FAILURES_HEADER, failures)
    write_csv_atomic(csv_path, header, rows)
    return sidecar


def write_member_scores(
    csv_path: str | Path, scores: Sequence[VideoScore], names: Sequence[str], decimals: int = 6
) -> Path:
    """``<stem>_members.csv``: ``filename`` and each ensemble member's probability of each video
    (unclipped; empty where the video could not be scored). Returns its path."""
    rows = [
        (s.filename, *(f"{p:.{decimals}f}" for p in s.member_probabilities))
        if s.ok
        else (s.filename, *([""] * len(names)))
        for s in sorted(scores, key=lambda s: s.filename)
    ]
    path = members_path(csv_path)
    write_csv_atomic(path, ("filename", *names), rows)
    return path
