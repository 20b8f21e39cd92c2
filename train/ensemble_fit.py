"""``python -m train ensemble``: several exported detectors → one ensemble JSON, its member
weights and the calibration of their combined log-odds fitted on validation data.

Each member scores the videos of a cache's split as ``run.sh`` would (its own calibration
applied); the ensemble's log-odds are the weighted mean of the members'. The weights are
searched on a grid (two members: their log-ratio; more: a coarse simplex), and for each the
calibration that minimises the worst source's balanced log loss is fitted
(``train.calibration.fit_minimax``); the weights whose calibrated worst source is lowest win.
Choosing on the worst source, not the pooled split, is what keeps a member that is strong on one
kind of fake from being trusted on the kinds it cannot see.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.calibration import log_odds, sigmoid
from core.files import atomic_write
from core.preprocess_config import PreprocessConfig
from train.calibration import CalibrationFit, LabelledVideos, fit_minimax, format_fit, manifest_videos

RATIOS = np.exp(np.linspace(-6.0, 6.0, 49))  # two members: weight of the first over the second
SIMPLEX_STEPS = 6  # more members: weights in multiples of 1/SIMPLEX_STEPS


@dataclass(frozen=True)
class EnsembleFit:
    members: tuple[str, ...]
    weights: tuple[float, ...]
    fit: CalibrationFit
    member_scores: dict[str, LabelledVideos]


def _weight_grid(n: int) -> list[tuple[float, ...]]:
    if n == 2:
        return [(float(r), 1.0) for r in RATIOS]
    steps = range(SIMPLEX_STEPS + 1)
    return [
        tuple(c / SIMPLEX_STEPS for c in combo)
        for combo in itertools.product(steps, repeat=n)
        if sum(combo) == SIMPLEX_STEPS and all(combo)
    ]


def member_videos(weights: str, manifest: Path, split: str, sources: dict[str, str] | None) -> LabelledVideos:
    """A member's video probabilities on ``split``, its own calibration applied (as ``run.sh``)."""
    from models.registry import load_model

    loaded = load_model(weights)
    videos = manifest_videos(loaded.module, manifest, split, sources=sources)
    return LabelledVideos(
        videos.filenames, loaded.calibration.apply(videos.probabilities), videos.labels, videos.sources
    )


def fit_ensemble(
    members: Sequence[str], manifest: Path, split: str = "val", sources: dict[str, str] | None = None
) -> EnsembleFit:
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    scores = {m: member_videos(m, manifest, split, sources) for m in members}
    first = scores[members[0]]
    for m in members[1:]:
        if scores[m].filenames != first.filenames:
            raise ValueError(f"{m}: scored other videos than {members[0]} on {manifest} split {split}")
    z = np.stack([log_odds(scores[m].probabilities) for m in members])  # (members, videos)
    weights, fit = stack(z, first.labels, first.sources, f"{manifest} split {split}")
    return EnsembleFit(tuple(members), weights, fit, scores)


def stack(
    z: np.ndarray, labels: np.ndarray, sources: Sequence[str], fitted_on: str = ""
) -> tuple[tuple[float, ...], CalibrationFit]:
    """Member weights (on the grid) and calibration of the members' log-odds ``z`` (members,
    videos) with the lowest worst-source balanced log loss."""
    best: tuple[float, tuple[float, ...], CalibrationFit] | None = None
    for w in _weight_grid(len(z)):
        wv = np.asarray(w)[:, None]
        combined = sigmoid((wv * z).sum(axis=0) / wv.sum())
        fit = fit_minimax(combined, labels, sources, fitted_on)
        if best is None or fit.worst_calibrated < best[0]:
            best = (fit.worst_calibrated, w, fit)
    assert best is not None
    return best[1], best[2]


def write_ensemble(
    fit: EnsembleFit,
    out: Path,
    preprocess: PreprocessConfig | None = None,
    names: Sequence[str] | None = None,
) -> Path:
    """The ensemble JSON ``submission.ensemble`` reads; member paths relative to ``out``'s folder
    when they sit beside it."""
    entries = []
    for i, (member, weight) in enumerate(zip(fit.members, fit.weights, strict=True)):
        path = Path(member)
        given = path.name if path.parent.resolve() == out.parent.resolve() else member
        entry = {"weights": given, "weight": round(float(weight), 6)}
        if names:
            entry["name"] = names[i]
        entries.append(entry)
    data = {"members": entries}
    if preprocess is not None:
        data["preprocess"] = preprocess.to_dict()
    data["calibration"] = fit.fit.calibration.to_dict()
    data["fit"] = fit.fit.to_dict()
    atomic_write(out, json.dumps(data, indent=2) + "\n")
    return out


def format_ensemble(fit: EnsembleFit) -> str:
    weights = ", ".join(f"{m} {w:.4g}" for m, w in zip(fit.members, fit.weights, strict=True))
    return f"member weights: {weights}\n{format_fit(fit.fit)}"
