"""``python -m train ensemble``: several exported detectors → one ensemble JSON, its member
weights and the calibration of their combined log-odds fitted on validation data.

Each member scores the videos of a cache's split as ``run.sh`` would (its own calibration
applied); the ensemble's log-odds are the weighted mean of the members'. The weights are
searched on a grid (two members: their log-ratio; more: a coarse simplex), and for each the
calibration that minimises the worst source's balanced log loss is fitted
(``train.calibration.fit_across_sources``); the weights whose calibrated worst source is lowest win.
Choosing on the worst source, not the pooled split, is what keeps a member that is strong on one
kind of fake from being trusted on the kinds it cannot see.

``objective="mean"`` fits weights and mapping to the sources' mean balanced log loss instead, and
``"auto"`` picks between the two by leaving each source out in turn (``leave_source_out``: the
whole stacking refitted without it, then scored on it) — the objective whose worst left-out
source fares better wins: a test set is a source the fit never saw, and the worst case is the
one a scorer's log loss cannot recover from. Either way the held-out figures are printed and kept in the JSON's ``fit``:
what the stacking promises on a source it never saw, beside what it scores on those it did.

A member may be a *tied group*, ``a+b``: the mean of its parts' log-odds enters the stacking as
one member (e.g. two seeds of one recipe: averaging cuts the seed's variance without fitting a
weight per seed), and the JSON lists each part with an equal share of the group's weight — the
same sum ``run.sh`` computes.
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
from train.calibration import (
    OBJECTIVES,
    CalibrationFit,
    LabelledVideos,
    fit_across_sources,
    format_fit,
    manifest_videos,
    source_loss_weights,
    video_log_losses,
)
from train.metrics import roc_auc

RATIOS = np.exp(np.linspace(-6.0, 6.0, 49))  # two members: weight of the first over the second
SIMPLEX_STEPS = 6  # more members: weights in multiples of 1/SIMPLEX_STEPS


@dataclass(frozen=True)
class HeldOutSources:
    """The stacking judged on sources it never saw: every video's log-odds from weights and a
    mapping fitted with its source left out (``leave_source_out``)."""

    objective: str
    auc: float
    balanced_log_loss: float  # reals and fakes half each
    worst_source: str
    worst_source_log_loss: float  # that source's balanced log loss against the other class

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ProbeReals:
    """The fitted ensemble on real videos kept out of the fit (``train ensemble --probe``: e.g.
    the validation reals re-packaged like generated talking heads, ``train repackage-reals``):
    does packaging alone push reals towards "fake"?"""

    manifest: str
    videos: int
    mean_probability: float  # the probe reals' mean P(fake)
    fit_reals_mean_probability: float  # the same for the fit split's reals, to compare
    log_loss: float  # the probe reals' mean log loss (a constant 0.5: 0.693)
    auc_against_fakes: float  # the fit split's fakes against the probe reals
    fit_auc: float  # the fit split's fakes against its own reals, to compare

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class EnsembleFit:
    members: tuple[str, ...]
    weights: tuple[float, ...]
    fit: CalibrationFit
    member_scores: dict[str, LabelledVideos]
    held_out: tuple[HeldOutSources, ...] = ()  # per objective tried, when measured
    probe: ProbeReals | None = None


def _weight_grid(n: int) -> list[tuple[float, ...]]:
    if n == 2:
        return [(float(r), 1.0) for r in RATIOS]
    steps = range(SIMPLEX_STEPS + 1)
    return [
        tuple(c / SIMPLEX_STEPS for c in combo)
        for combo in itertools.product(steps, repeat=n)
        if sum(combo) == SIMPLEX_STEPS and all(combo)
    ]


def member_videos(
    weights: str, manifest: Path | Sequence[Path], split: str, sources: dict[str, str] | None
) -> LabelledVideos:
    """A member's video probabilities on ``split``, its own calibration applied (as ``run.sh``)."""
    from models.registry import load_model

    loaded = load_model(weights)
    videos = manifest_videos(loaded.module, manifest, split, sources=sources)
    return LabelledVideos(
        videos.filenames, loaded.calibration.apply(videos.probabilities), videos.labels, videos.sources
    )


def member_parts(member: str) -> tuple[str, ...]:
    """A member's weights: one, or a tied group's parts (``a+b``)."""
    parts = tuple(p.strip() for p in member.split("+"))
    if not all(parts) or len(set(parts)) != len(parts):
        raise ValueError(f"member {member!r}: a tied group names distinct weights joined by '+'")
    return parts


def _names(manifest: Path | Sequence[Path]) -> str:
    return str(manifest) if isinstance(manifest, (str, Path)) else " + ".join(map(str, manifest))


def members_log_odds(
    members: Sequence[str], manifest: Path | Sequence[Path], split: str, sources: dict[str, str] | None
) -> tuple[dict[str, LabelledVideos], np.ndarray]:
    """Each member's videos (``member_videos``, keyed by weights: a tied group's parts each) and
    the members' log-odds stacked (members, videos), a tied group's the mean of its parts';
    ``ValueError`` when the members scored different videos."""
    parts = [member_parts(m) for m in members]
    scores = {w: member_videos(w, manifest, split, sources) for group in parts for w in group}
    first_name = parts[0][0]
    first = scores[first_name]
    for w, scored in scores.items():
        if scored.filenames != first.filenames:
            raise ValueError(
                f"{w}: scored other videos than {first_name} on {_names(manifest)} split {split}"
            )
    z = [np.mean([log_odds(scores[w].probabilities) for w in group], axis=0) for group in parts]
    return scores, np.stack(z)


def fit_ensemble(
    members: Sequence[str],
    manifest: Path | Sequence[Path],
    split: str = "val",
    sources: dict[str, str] | None = None,
    objective: str = "worst",
    held_out: bool = False,
    probe: Path | Sequence[Path] | None = None,
) -> EnsembleFit:
    """Member weights and calibration on ``split``; ``objective`` "worst", "mean" or "auto"
    (the one whose worst left-out source fares better); ``held_out`` measures left-out sources
    for the objective(s) tried even when not choosing; ``probe``: manifest(s) of real videos
    the fit never reads, scored with the result (``ProbeReals``)."""
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    if objective not in (*OBJECTIVES, "auto"):
        raise ValueError(f"objective {objective!r}: expected one of {', '.join((*OBJECTIVES, 'auto'))}")
    scores, z = members_log_odds(members, manifest, split, sources)  # z: (members, videos)
    first = scores[member_parts(members[0])[0]]
    tried = OBJECTIVES if objective == "auto" else (objective,)
    reports = (
        tuple(held_out_sources(z, first.labels, first.sources, o) for o in tried)
        if held_out or objective == "auto"
        else ()
    )
    if objective == "auto":  # the safer one where it matters: on its worst left-out source
        objective = min(reports, key=lambda r: r.worst_source_log_loss).objective
    weights, fit = stack(z, first.labels, first.sources, f"{_names(manifest)} split {split}", objective)
    probed = None
    if probe is not None:
        probed = probe_reals(members, weights, fit, z, first.labels, probe)
    return EnsembleFit(tuple(members), weights, fit, scores, reports, probed)


def probe_reals(
    members: Sequence[str],
    weights: Sequence[float],
    fit: CalibrationFit,
    z: np.ndarray,
    labels: np.ndarray,
    probe: Path | Sequence[Path],
) -> ProbeReals:
    """The stacking (``weights``, ``fit``) applied to the real videos of ``probe`` (every
    split), beside the fit split's log-odds ``z`` and ``labels``."""
    scored, zp = members_log_odds(members, probe, "all", None)
    if (scored[member_parts(members[0])[0]].labels != 0).any():
        raise ValueError(f"{_names(probe)}: a probe holds real videos only (it found labelled fakes)")
    z_probe = fit.calibration.apply_log_odds(_combine(zp, weights))
    p_probe = sigmoid(z_probe)
    p_fit = sigmoid(fit.calibration.apply_log_odds(_combine(z, weights)))
    fakes = p_fit[labels == 1]
    both = np.r_[np.ones(len(fakes)), np.zeros(len(p_probe))]
    return ProbeReals(
        _names(probe),
        len(p_probe),
        float(p_probe.mean()),
        float(p_fit[labels == 0].mean()),
        float(video_log_losses(z_probe, np.zeros(len(z_probe))).mean()),
        float(roc_auc(both, np.r_[fakes, p_probe])),
        float(roc_auc(labels, p_fit)),
    )


def stack(
    z: np.ndarray, labels: np.ndarray, sources: Sequence[str], fitted_on: str = "", objective: str = "worst"
) -> tuple[tuple[float, ...], CalibrationFit]:
    """Member weights (on the grid) and calibration of the members' log-odds ``z`` (members,
    videos) with the lowest worst-source (``objective="mean"``: mean over sources) balanced
    log loss. The log-odds are weighed as the members give them (their own calibration
    applied), not standardised: measured on ``../shared/train`` validation, standardising them
    (with slopes up to 10) ranked left-out sources better and calibrated them worse
    (seam + temporal_band, each source left out: balanced log loss 0.647 -> 0.700)."""
    best: tuple[float, tuple[float, ...], CalibrationFit] | None = None
    for w in _weight_grid(len(z)):
        fit = fit_across_sources(sigmoid(_combine(z, w)), labels, sources, fitted_on, objective)
        if best is None or fit.objective_value < best[0]:
            best = (fit.objective_value, w, fit)
    assert best is not None
    return best[1], best[2]


def _combine(z: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    wv = np.asarray(weights, dtype=np.float64)[:, None]
    return (wv * z).sum(axis=0) / wv.sum()


def leave_source_out(
    z: np.ndarray, labels: np.ndarray, sources: Sequence[str], objective: str = "worst"
) -> np.ndarray:
    """Each video's calibrated ensemble log-odds from the stacking (weights and mapping) fitted
    on every *other* source: what it would say about a source it never saw. A fold left with
    one class only cannot be fitted and raises."""
    labels = np.asarray(labels)
    src = np.asarray(list(sources), dtype=object)
    out = np.empty(len(labels))
    for name in sorted(set(src.tolist())):
        held = src == name
        weights, fit = stack(z[:, ~held], labels[~held], src[~held].tolist(), objective=objective)
        out[held] = fit.calibration.apply_log_odds(_combine(z[:, held], weights))
    return out


def held_out_sources(
    z: np.ndarray, labels: np.ndarray, sources: Sequence[str], objective: str = "worst"
) -> HeldOutSources:
    """``leave_source_out`` summarised: AUC and balanced log loss of the left-out predictions,
    and the source that fares worst (its videos against all of the other class)."""
    labels = np.asarray(labels)
    held = leave_source_out(z, labels, sources, objective)
    losses = video_log_losses(held, labels)
    balanced = 0.5 * losses[labels == 1].mean() + 0.5 * losses[labels == 0].mean()
    names, _, _, rows = source_loss_weights(labels, sources)
    per_source = rows @ losses
    worst = int(per_source.argmax())
    return HeldOutSources(
        objective, float(roc_auc(labels, held)), float(balanced), names[worst], float(per_source[worst])
    )


def write_ensemble(
    fit: EnsembleFit,
    out: Path,
    preprocess: PreprocessConfig | None = None,
    names: Sequence[str] | None = None,
) -> Path:
    """The ensemble JSON ``submission.ensemble`` reads; member paths relative to ``out``'s folder
    when they sit beside it; a tied group's parts listed one by one, each with an equal share of
    its weight; ``names``: one per listed weights (a group's parts each)."""
    listed = [
        (part, weight / len(parts))
        for parts, weight in zip(map(member_parts, fit.members), fit.weights, strict=True)
        for part in parts
    ]
    if names and len(names) != len(listed):
        raise ValueError(
            f"{len(names)} names for {len(listed)} member weights ({', '.join(w for w, _ in listed)})"
        )
    entries = []
    for i, (member, weight) in enumerate(listed):
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
    if fit.held_out:
        data["fit"]["leave_source_out"] = [r.to_dict() for r in fit.held_out]
    if fit.probe is not None:
        data["fit"]["probe_reals"] = fit.probe.to_dict()
    atomic_write(out, json.dumps(data, indent=2) + "\n")
    return out


def format_ensemble(fit: EnsembleFit) -> str:
    weights = ", ".join(f"{m} {w:.4g}" for m, w in zip(fit.members, fit.weights, strict=True))
    lines = [f"member weights: {weights}", format_fit(fit.fit)]
    for r in fit.held_out:
        chosen = " (chosen)" if r.objective == fit.fit.objective else ""
        lines.append(
            f"each source left out, objective {r.objective}{chosen}: AUC {r.auc:.3f}, balanced log loss"
            f" {r.balanced_log_loss:.4f}, worst source {r.worst_source} {r.worst_source_log_loss:.4f}"
        )
    if (p := fit.probe) is not None:
        lines.append(
            f"probe reals ({p.videos}, never fitted on): mean P(fake) {p.mean_probability:.3f} (fit reals"
            f" {p.fit_reals_mean_probability:.3f}), log loss {p.log_loss:.4f}, AUC of the fit's fakes against"
            f" them {p.auc_against_fakes:.3f} (against the fit's reals {p.fit_auc:.3f})"
        )
    return "\n".join(lines)
