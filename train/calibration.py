"""Fit a detector's probability mapping (``core.calibration.Calibration``) on labelled videos.

A Platt mapping fitted on a pooled validation split is tuned to the sources the detector
separates best there, and over-trusts it on the sources it cannot see (measured: a pooled fit
took a held-out set's log loss only from 1.83 to 0.79, still worse than a constant 0.5). So
the mapping here is chosen to be safe across sources instead: the validation videos are split
by source (the folder a video sits in: one generator, one corpus), and the slope and bias are
those that minimise the *worst* source's balanced log loss (each fake source against all
reals, each real source against all fakes; reals and fakes weigh half each, so a test set's
class balance does not matter). Where the detector is weak on some source the slope shrinks
toward 0 and its probabilities toward 0.5; where it separates every source, the slope stays
near a pooled fit's. The slope is kept at or above ``MIN_SLOPE`` so the ranking (AUC) survives.

``objective = "mean"`` minimises the *mean* of the sources' balanced log losses instead: every
source still weighs alike, whatever its size, but one hopeless source no longer sets the slope
for all. Which of the two is safer on a source the fit never saw is measured, not assumed:
``train.ensemble_fit.leave_source_out`` refits without each source in turn and scores it.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from core.calibration import Calibration, log_odds

MIN_SLOPE = 0.02  # probabilities never collapse to a constant: the ranking is kept
MIN_SOURCE_VIDEOS = 3  # smaller sources join "<category>:other"
SLOPES = np.exp(np.linspace(math.log(MIN_SLOPE), math.log(3.0), 241))
BIASES = np.linspace(-4.0, 4.0, 321)
OBJECTIVES = ("worst", "mean")  # over sources: the worst one's balanced log loss, or their mean


def source_of(video_id: str, category: str) -> str:
    """A video's source: its category and the folder it sits in (``fake/generated/X+Y``)."""
    folder = PurePosixPath(video_id).parent.as_posix()
    return f"{category}:{folder}"


def merge_small_sources(sources: Sequence[str], categories: Sequence[str]) -> list[str]:
    """Sources with fewer than ``MIN_SOURCE_VIDEOS`` videos pooled per category."""
    counts = Counter(sources)
    return [
        s if counts[s] >= MIN_SOURCE_VIDEOS else f"{c}:other"
        for s, c in zip(sources, categories, strict=True)
    ]


@dataclass(frozen=True)
class SourceLoss:
    """One source's balanced log loss before and after the mapping."""

    source: str
    label: int  # the source's class: its videos are measured against all of the other class
    videos: int
    raw: float
    calibrated: float


@dataclass(frozen=True)
class CalibrationFit:
    calibration: Calibration
    sources: tuple[SourceLoss, ...]
    pooled_raw: float  # balanced log loss of the whole split
    pooled_calibrated: float
    objective: str = "worst"  # what the mapping minimised over sources (OBJECTIVES)

    @property
    def worst_raw(self) -> float:
        return max(s.raw for s in self.sources)

    @property
    def worst_calibrated(self) -> float:
        return max(s.calibrated for s in self.sources)

    @property
    def mean_calibrated(self) -> float:
        return float(np.mean([s.calibrated for s in self.sources]))

    @property
    def objective_value(self) -> float:
        """The calibrated loss the mapping minimised."""
        return self.worst_calibrated if self.objective == "worst" else self.mean_calibrated

    def to_dict(self) -> dict:
        return {
            "objective": self.objective,
            "pooled_balanced_log_loss": {"raw": self.pooled_raw, "calibrated": self.pooled_calibrated},
            "worst_source_balanced_log_loss": {"raw": self.worst_raw, "calibrated": self.worst_calibrated},
            "mean_source_balanced_log_loss": self.mean_calibrated,
            "sources": [s.__dict__ for s in self.sources],
        }


def source_loss_weights(
    labels: np.ndarray, sources: Sequence[str]
) -> tuple[list[str], list[int], list[int], np.ndarray]:
    """One row per source: weights over all videos that make the row's dot product with
    per-video losses that source's balanced log loss (its videos half, the other class half)."""
    names, classes, counts, rows = [], [], [], []
    src = np.asarray(list(sources), dtype=object)
    for label in (1, 0):
        other = labels != label
        for name in sorted(set(src[labels == label].tolist())):
            mine = (src == name) & (labels == label)
            row = np.where(mine, 0.5 / mine.sum(), 0.0) + np.where(other, 0.5 / other.sum(), 0.0)
            names.append(name)
            classes.append(label)
            counts.append(int(mine.sum()))
            rows.append(row)
    return names, classes, counts, np.stack(rows)


def video_log_losses(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-video log loss of log-odds ``z`` (any leading shape)."""
    sign = np.where(labels == 1, -1.0, 1.0)
    return np.logaddexp(0.0, sign * z)


def fit_across_sources(
    probabilities: Sequence[float],
    labels: Sequence[int],
    sources: Sequence[str],
    fitted_on: str = "",
    objective: str = "worst",
) -> CalibrationFit:
    """The mapping that minimises the worst source's balanced log loss (``objective="mean"``:
    the sources' mean; grid over slope and bias: either objective is convex, so the grid's best
    point is near the true optimum)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"calibration objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    reduce = np.max if objective == "worst" else np.mean
    y = np.asarray(labels, dtype=np.int64)
    z = log_odds(probabilities)
    if len(z) != len(y) or len(y) != len(sources):
        raise ValueError(f"{len(z)} scores, {len(y)} labels, {len(sources)} sources")
    if not ((y == 0).any() and (y == 1).any()):
        raise ValueError("calibration needs real and fake videos")
    names, classes, counts, weights = source_loss_weights(y, sources)
    pooled = np.where(y == 1, 0.5 / (y == 1).sum(), 0.5 / (y == 0).sum())

    def search(slopes: np.ndarray, biases: np.ndarray) -> tuple[float, float, float]:
        best = (math.inf, 1.0, 0.0)
        for a in slopes:
            loss = reduce(
                video_log_losses(a * z[None, :] + biases[:, None], y) @ weights.T, axis=1
            )  # (biases,)
            i = int(loss.argmin())
            if loss[i] < best[0]:
                best = (float(loss[i]), float(a), float(biases[i]))
        return best

    # coarse grid, then a fine one around its best point (the objective is convex)
    _, a0, b0 = search(SLOPES[::6], BIASES[::4])
    step = math.log(SLOPES[6] / SLOPES[0])
    fine = SLOPES[(a0 * math.exp(-step) <= SLOPES) & (a0 * math.exp(step) >= SLOPES)]
    best = search(fine, BIASES[np.abs(BIASES - b0) <= 4 * (BIASES[1] - BIASES[0]) * 1.01])
    _, slope, bias = best
    method = "minimax" if objective == "worst" else "mean"
    calibration = Calibration(slope, bias, f"platt, {method} balanced log loss over sources", fitted_on)
    raw_losses, cal_losses = video_log_losses(z, y), video_log_losses(calibration.apply_log_odds(z), y)
    rows = tuple(
        SourceLoss(name, label, n, float(w @ raw_losses), float(w @ cal_losses))
        for name, label, n, w in zip(names, classes, counts, weights, strict=True)
    )
    return CalibrationFit(
        calibration, rows, float(pooled @ raw_losses), float(pooled @ cal_losses), objective
    )


def format_fit(fit: CalibrationFit) -> str:
    c = fit.calibration
    lines = [
        f"calibration: log-odds x {c.slope:.4g} {c.bias:+.4g} ({c.method})",
        f"  balanced log loss, pooled: {fit.pooled_raw:.4f} -> {fit.pooled_calibrated:.4f};"
        f" worst source: {fit.worst_raw:.4f} -> {fit.worst_calibrated:.4f}; mean over sources"
        f" {fit.mean_calibrated:.4f} (minimised: {fit.objective})",
    ]
    for s in sorted(fit.sources, key=lambda s: -s.calibrated):
        lines.append(f"  {s.source:<60} n {s.videos:<4} {s.raw:.4f} -> {s.calibrated:.4f}")
    return "\n".join(lines)


@dataclass(frozen=True)
class LabelledVideos:
    """Video-level raw probabilities of a manifest split, with labels and sources."""

    filenames: list[str]
    probabilities: np.ndarray
    labels: np.ndarray
    sources: list[str]


def fit_on_manifest(
    model, manifest, split: str = "val", sources: dict[str, str] | None = None, objective: str = "worst"
) -> CalibrationFit:
    """``fit_across_sources`` on the model's raw video probabilities of ``split`` of ``manifest``
    (``ValueError`` when the split lacks labelled real or fake videos)."""
    videos = manifest_videos(model, manifest, split, sources=sources)
    return fit_across_sources(
        videos.probabilities, videos.labels, videos.sources, f"{manifest} split {split}", objective
    )


def read_sources(labels_csv: str | Path) -> dict[str, str]:
    """``video path → source`` from a labels CSV's ``source`` column (``train footage-labels``
    writes it: a fake's generator, a real's folder); empty when the column is absent."""
    with open(labels_csv, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    return {r["filename"]: r["source"] for r in rows if (r.get("source") or "").strip()}


def manifest_videos(
    model, manifest, split: str = "val", batch_size: int = 16, sources: dict[str, str] | None = None
) -> LabelledVideos:
    """The detector's raw video probabilities (its ``video_aggregation`` over face tracks) on
    the labelled videos of ``split`` in ``manifest`` (one, or several: e.g. the validation cache
    and its re-packaged reals' cache), each with its source (from ``sources`` by video path
    where given, else ``source_of``; small ones merged)."""
    from core.aggregation import aggregate
    from train.evaluate import manifest_outputs

    tracks: dict[str, list[float]] = {}
    info: dict[str, tuple[int, str]] = {}
    manifests = [manifest] if isinstance(manifest, (str, os.PathLike)) else list(manifest)
    if len({Path(m).resolve() for m in manifests}) < len(manifests):
        raise ValueError(f"a manifest is given twice: {', '.join(map(str, manifests))}")
    owner: dict[str, object] = {}  # video -> the manifest it came from: one video, one manifest
    batches = ((m, batch) for m in manifests for batch in manifest_outputs(model, m, split, batch_size))
    for m, (entries, outputs) in batches:
        for entry, p in zip(entries, model.fake_probability(outputs), strict=True):
            if owner.setdefault(entry.video, m) != m:
                raise ValueError(
                    f"{entry.video} is in both {owner[entry.video]} and {m}: one video, one manifest"
                )
            if entry.label not in (0, 1):
                continue
            tracks.setdefault(entry.video, []).append(float(p))
            category = entry.category or str(entry.label)
            given = (sources or {}).get(entry.video)
            info[entry.video] = (
                entry.label,
                f"{category}:{given}" if given else source_of(entry.video, category),
            )
    names = sorted(tracks)
    if not names:
        raise ValueError(f"{manifest}: no labelled samples in split {split!r} to calibrate on")
    categories = [s.split(":", 1)[0] for s in (info[n][1] for n in names)]
    return LabelledVideos(
        names,
        np.array([aggregate(tracks[n], model.video_aggregation) for n in names]),
        np.array([info[n][0] for n in names]),
        merge_small_sources([info[n][1] for n in names], categories),
    )
