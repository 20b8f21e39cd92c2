"""Time-resolved scores: each face track's per-second probabilities, and the ``--per-second``
sidecar CSV (``filename,track,second,score``).

A detector with time outputs (``DetectorModel.time_columns`` / ``time_logits``) gives the fake
log-odds of moments of each sample; ``core.aggregation.per_second`` turns them into one
probability per whole second. An ensemble keeps each member's and combines, per second, the
members that have that second (``core.aggregation.combine_log_odds``, their weights), as it
combines their video scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.aggregation import combine_log_odds, per_second
from core.types import Sample
from submission.scoring import SampleScore, SecondScores, VideoScore
from submission.writer import write_csv_atomic

HEADER = ("filename", "track", "second", "score")


def track_seconds(
    track: int, members: Sequence[SampleScore], weights: Sequence[float]
) -> SecondScores | None:
    """One track's per-second scores from its members' ``SampleScore``s; None when no member
    has a second with data."""
    each = [dict(per_second(m.times, m.time_log_odds)) if m.time_resolved else {} for m in members]
    seconds = sorted(set().union(*each))
    if not seconds:
        return None
    if len(members) == 1:
        return SecondScores(track, tuple(seconds), tuple(each[0][s] for s in seconds))
    combined = []
    for s in seconds:
        have = [(p[s], w) for p, w in zip(each, weights, strict=True) if s in p]
        combined.append(combine_log_odds([p for p, _ in have], [w for _, w in have]))
    members_out = tuple(tuple(p.get(s) for s in seconds) for p in each)
    return SecondScores(track, tuple(seconds), tuple(combined), members_out)


def video_seconds(
    samples: Sequence[Sample], scores: Sequence[Sequence[SampleScore]], weights: Sequence[float]
) -> tuple[SecondScores, ...]:
    """Every track's per-second scores (tracks without any second left out); () when the
    detector (every member) gives no time-resolved scores."""
    weights = tuple(weights) or (1.0,)
    out = (track_seconds(s.meta.track_id, row, weights) for s, row in zip(samples, scores, strict=True))
    return tuple(t for t in out if t is not None)


def rows(scores: Sequence[VideoScore], decimals: int = 6) -> list[tuple[str, str, str, str]]:
    """The sidecar's rows: by filename, track, second; nothing for a failed video or one whose
    detector gives no time-resolved scores. Probabilities unclipped (they are not graded)."""
    out = []
    for s in sorted(scores, key=lambda s: s.filename):
        if not s.ok or not s.per_second:
            continue
        for t in sorted(s.per_second, key=lambda t: t.track):
            for second, p in zip(t.seconds, t.probabilities, strict=True):
                out.append((s.filename, str(t.track), str(second), f"{p:.{decimals}f}"))
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
        if len(probs) != len(seconds) or any(len(m) != len(seconds) for m in members):
            raise ValueError("per-second lists of different lengths")
        out.append(SecondScores(int(item["track"]), seconds, probs, members))
    return tuple(out)
