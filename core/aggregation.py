"""How a video's probability comes from its samples' (one sample per face track)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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
