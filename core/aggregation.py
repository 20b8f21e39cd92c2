"""How a video's probability comes from its samples' (one sample per face track), and an
ensemble's from its members'."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.calibration import IDENTITY, Calibration, log_odds, sigmoid

AGGREGATIONS = ("max", "mean")


def aggregate(probabilities: Sequence[float], how: str = "max") -> float:
    """One probability per video from its samples'. ``max``: a video is fake if any face is."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.size == 0:
        raise ValueError("no track probabilities to aggregate")
    if how == "max":
        return float(probs.max())
    if how == "mean":
        return float(probs.mean())
    raise ValueError(f"unknown aggregation {how!r}; choose from {AGGREGATIONS}")


def combine_log_odds(
    probabilities: Sequence[float], weights: Sequence[float], calibration: Calibration = IDENTITY
) -> float:
    """An ensemble's probability: the sigmoid of the weighted mean of its members' log-odds,
    mapped by the ensemble's own ``calibration`` (identity unless its JSON fits one)."""
    z = log_odds(probabilities)
    w = np.asarray(weights, dtype=np.float64)
    if z.shape != w.shape or z.size == 0:
        raise ValueError(f"{z.size} member probabilities for {w.size} weights")
    return float(sigmoid(calibration.apply_log_odds(np.sum(w * z) / np.sum(w))))


def per_second(times: Sequence[float], log_odds: Sequence[float]) -> list[tuple[int, float]]:
    """Moments' fake log-odds → ``(second, probability)`` for each whole second that holds at
    least one finite value: the sigmoid of the mean log-odds of the moments in that second
    (``floor(time)``), seconds in order. NaN columns (padding) are skipped."""
    t = np.asarray(times, dtype=np.float64)
    z = np.asarray(log_odds, dtype=np.float64)
    if t.shape != z.shape:
        raise ValueError(f"{t.size} moment times for {z.size} log-odds")
    keep = np.isfinite(t) & np.isfinite(z)
    seconds = np.floor(t[keep]).astype(int)
    out = []
    for s in np.unique(seconds):
        mean = float(z[keep][seconds == s].mean())
        out.append((int(s), float(np.exp(-np.logaddexp(0.0, -mean)))))
    return out
