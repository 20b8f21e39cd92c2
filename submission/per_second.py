"""Time-resolved scores: each face track's per-second probabilities, and the ``--per-second``
sidecar CSV (``filename,track,second,score,measured``).

A detector with time outputs (``DetectorModel.time_columns`` / ``time_logits``) gives the fake
log-odds of moments of each sample; ``core.aggregation.per_second`` turns them into one
probability per whole second. An ensemble keeps each member's and combines, per second, the
members that have that second (``core.aggregation.combine_log_odds``, their weights), as it
combines their video scores.

A detector looks at a few moments of a track (the shipped one: 4 frames, so seconds 0, 3, 6
and 9 of a 10 s track), yet a per-second file promises every second. Every second the face
track covers gets a row: a second holding a scored moment is ``measured``; the others are
interpolated linearly in log-odds between the nearest measured seconds (the nearest one's value
beyond the first or last) and say so (``measured`` 0). The explain page draws only the measured
ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.aggregation import combine_log_odds, per_second
from core.calibration import IDENTITY, Calibration
from core.preprocess_data import Sample
from submission.scoring import SampleScore, SecondScores, VideoScore
from submission.writer import write_csv_atomic

HEADER = ("filename", "track", "second", "score", "measured")


def track_span(sample: Sample) -> tuple[int, int]:
    """The whole seconds the sample's face track covers: first and last (``floor`` of its first
    and last frame's time), within the analysed duration (a 10.0 s clip has no second 10)."""
    fps = float(sample.meta.fps)
    first = math.floor(sample.frame_start / fps)
    last = math.floor((sample.frame_start + max(len(sample.boxes), 1) - 1) / fps)
    if sample.meta.duration > 0:
        last = min(last, max(first, math.ceil(sample.meta.duration) - 1))
    return first, last


def fill_seconds(measured: dict[int, float], first: int, last: int) -> dict[int, float]:
    """``measured`` (second → probability) over every second from ``first`` to ``last`` (and
    every measured one outside them): the measured values as they are, the others linear in
    log-odds between the nearest measured seconds, the nearest one's value at either end."""
    known = sorted(measured)
    if not known:
        return {}
    seconds = range(min(first, known[0]), max(last, known[-1]) + 1)
    p = np.clip(np.array([measured[s] for s in known], dtype=np.float64), 1e-12, 1 - 1e-12)
    z = np.interp(np.array(seconds, dtype=np.float64), known, np.log(p) - np.log1p(-p))
    return {
        s: measured[s] if s in measured else float(1 / (1 + np.exp(-v)))
        for s, v in zip(seconds, z, strict=True)
    }


def track_seconds(
    track: int,
    members: Sequence[SampleScore],
    weights: Sequence[float],
    span: tuple[int, int] | None = None,
    calibration: Calibration = IDENTITY,
) -> SecondScores | None:
    """One track's per-second scores from its members' ``SampleScore``s, over ``span`` (the
    track's first and last second, ``track_span``) when given; None when no member has a
    second with data."""
    each = [dict(per_second(m.times, m.time_log_odds)) if m.time_resolved else {} for m in members]
    seconds = sorted(set().union(*each))
    if not seconds:
        return None
    if len(members) == 1:
        combined = each[0]
    else:
        combined = {}
        for s in seconds:
            have = [(p[s], w) for p, w in zip(each, weights, strict=True) if s in p]
            combined[s] = combine_log_odds([p for p, _ in have], [w for _, w in have], calibration)
    filled = fill_seconds(combined, *(span or (seconds[0], seconds[-1])))
    out = tuple(sorted(filled))
    members_out = tuple(tuple(p.get(s) for s in out) for p in each) if len(members) > 1 else ()
    return SecondScores(
        track, out, tuple(filled[s] for s in out), members_out, tuple(s in combined for s in out)
    )


def video_seconds(
    samples: Sequence[Sample],
    scores: Sequence[Sequence[SampleScore]],
    weights: Sequence[float],
    calibration: Calibration = IDENTITY,
) -> tuple[SecondScores, ...]:
    """Every track's per-second scores (tracks without any second left out); () when the
    detector (every member) gives no time-resolved scores. ``calibration``: an ensemble's own
    mapping of its combined log-odds."""
    weights = tuple(weights) or (1.0,)
    out = (
        track_seconds(s.meta.track_id, row, weights, track_span(s), calibration)
        for s, row in zip(samples, scores, strict=True)
    )
    return tuple(t for t in out if t is not None)


def measured_flags(t: SecondScores) -> tuple[bool, ...]:
    """Which of ``t.seconds`` hold a scored moment (all of them for an entry without flags)."""
    return t.measured or (True,) * len(t.seconds)


def rows(scores: Sequence[VideoScore], decimals: int = 6) -> list[tuple[str, ...]]:
    """The sidecar's rows: by filename, track, second; nothing for a failed video or one whose
    detector gives no time-resolved scores. Probabilities unclipped (they are not graded)."""
    out = []
    for s in sorted(scores, key=lambda s: s.filename):
        if not s.ok or not s.per_second:
            continue
        for t in sorted(s.per_second, key=lambda t: t.track):
            for second, p, seen in zip(t.seconds, t.probabilities, measured_flags(t), strict=True):
                out.append((s.filename, str(t.track), str(second), f"{p:.{decimals}f}", str(int(seen))))
    return out


def write_per_second(path: str | Path, scores: Sequence[VideoScore]) -> Path:
    """Write the sidecar atomically; returns its path."""
    write_csv_atomic(path, HEADER, rows(scores))
    return Path(path)


# --- the resume journal's form ------------------------------------------------------------------


def to_json(seconds: tuple[SecondScores, ...]) -> list[dict[str, Any]]:
    return [
        {
            "track": t.track,
            "seconds": list(t.seconds),
            "probabilities": list(t.probabilities),
            "members": [list(m) for m in t.members],
            "measured": list(measured_flags(t)),
        }
        for t in seconds
    ]


def from_json(items: Any) -> tuple[SecondScores, ...]:
    """The journal's list back; raises ValueError/TypeError/KeyError on a malformed one."""
    out = []
    for item in items:
        seconds = tuple(int(s) for s in item["seconds"])
        probs = tuple(float(p) for p in item["probabilities"])
        members = tuple(tuple(None if p is None else float(p) for p in m) for m in item.get("members", ()))
        measured = tuple(bool(m) for m in item.get("measured", ()))
        if len(probs) != len(seconds) or any(len(m) != len(seconds) for m in (*members, measured) if m):
            raise ValueError("per-second lists of different lengths")
        out.append(SecondScores(int(item["track"]), seconds, probs, members, measured))
    return tuple(out)
