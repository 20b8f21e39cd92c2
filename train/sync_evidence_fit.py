"""``python -m train fit-sync-evidence``: fit ``sync_evidence`` on a cache's latencies, and
measure it leave-generator-out.

The cache must have been preprocessed with SyncNet on (``sync.weights`` set): each sample
then carries its track's ``Latency``. Only that is read (``load_latency``), so a fit over
hundreds of samples takes seconds. Two fits (``models.sync_evidence``):

- ``band`` (one-class): mean and covariance (shrunk towards the diagonal) of the features of
  the real clips of ``split``; ``offset``/``scale`` put the log-odds at 0 at their
  ``band_quantile`` and at log(p / (1 − p)) for p = ``real_median_p`` at their median (as
  ``temporal_band``). No fake is seen, so every labelled fake is validation as it stands.
- ``logistic``: a ridge-penalised logistic regression of the real clips of ``split`` against
  the labelled fakes of ``fake_split``; reals and fakes weigh half each and every fake source
  alike, so the largest generator does not set the line. Its validation is leave-generator-
  out: each fake source is scored by a fit that never saw it.

``validate`` scores the real clips of ``validation_split`` against each fake source (a
generator) and reports AUC and balanced log loss per source, pooled, and the worst source.
Then the usual export: safetensors + JSON (the cache's preprocessing; SyncNet stays on, the
detector reads its latency) + ONNX checked against torch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.aggregation import aggregate
from models.registry import create_model
from models.sync_evidence import SyncEvidence, latency_features
from preprocess.sample_file import load_latency
from train.calibration import merge_small_sources, source_of
from train.data import cache_preprocess_config, read_manifest
from train.export import write_fitted_weights
from train.metrics import balanced_log_loss, roc_auc
from train.temporal_fit import calibration, fit_band, source_weights

log = logging.getLogger("train")


@dataclass(frozen=True)
class SyncFitConfig:
    manifest: Path
    out: Path  # weights stem
    model: dict[str, Any] = dataclasses.field(default_factory=dict)  # SyncEvidenceConfig overrides
    mode: str = "band"
    split: str = "train"  # the real clips the fit reads
    fake_split: str = "val"  # logistic only: the labelled fakes it reads
    validation_split: str = "val"  # reals of this split against each fake source
    sources: dict[str, str] | None = None  # video path → source (labels CSV); else its folder
    balance_sources: bool = False  # band: every real source folder weighs alike
    shrinkage: float = 0.1  # band: covariance → (1 − s) cov + s diag(cov)
    band_quantile: float = 0.95
    real_median_p: float = 0.1
    l2: float = 0.01  # logistic: ridge on the standardised weights (the sample weights sum to 1)
    onnx: bool = True


@dataclass
class LatencyTable:
    """One row per sample of a manifest: its latency features (NaN rows: no latency)."""

    features: np.ndarray  # (N, D) float64
    has_latency: np.ndarray  # (N,) bool
    labels: np.ndarray  # (N,) int
    splits: list[str]
    videos: list[str]
    categories: list[str]
    sources: list[str]  # "category:source" (the labels CSV's source, else the video's folder)

    def rows(self, mask: np.ndarray) -> LatencyTable:
        idx = np.flatnonzero(mask)
        pick = [self.splits, self.videos, self.categories, self.sources]
        return LatencyTable(
            self.features[idx],
            self.has_latency[idx],
            self.labels[idx],
            *([items[i] for i in idx] for items in pick),
        )

    def where(
        self, split: str | None = None, label: int | None = None, video_only: bool = True
    ) -> np.ndarray:
        mask = np.ones(len(self.labels), bool)
        if split is not None:
            mask &= np.array([s == split for s in self.splits])
        if label is not None:
            mask &= self.labels == label
        if video_only:  # a photo has no sound: nothing to be in sync with
            mask &= np.array([c != "photo" for c in self.categories])
        return mask


def latency_table(
    manifest: Path, names: Sequence[str], sources: dict[str, str] | None = None
) -> LatencyTable:
    """The latency features ``names`` of every labelled sample of ``manifest``."""
    feats, has, labels, splits, videos, categories, srcs = [], [], [], [], [], [], []
    for entry in read_manifest(manifest):
        if entry.label not in (0, 1):
            continue
        _, latency = load_latency(entry.sample)
        has.append(latency is not None)
        feats.append(latency_features(latency, names) if latency is not None else np.full(len(names), np.nan))
        labels.append(entry.label)
        splits.append(entry.split)
        videos.append(entry.video)
        categories.append(entry.category)
        given = (sources or {}).get(entry.video)
        srcs.append(f"{entry.category}:{given}" if given else source_of(entry.video, entry.category))
    if not labels:
        raise ValueError(f"{manifest}: no labelled samples")
    return LatencyTable(
        np.array(feats, np.float64).reshape(len(labels), len(names)),
        np.array(has),
        np.array(labels),
        splits,
        videos,
        categories,
        srcs,
    )


def merged_sources(table: LatencyTable, rows: np.ndarray) -> LatencyTable:
    """``table`` with the sources of ``rows`` under ``MIN_SOURCE_VIDEOS`` videos (counted in
    those rows) pooled per category, as the calibration groups a validation split."""
    videos = {table.videos[i]: table.sources[i] for i in np.flatnonzero(rows)}
    pooled = dict(
        zip(
            videos,
            merge_small_sources(list(videos.values()), [s.split(":", 1)[0] for s in videos.values()]),
            strict=True,
        )
    )
    sources = [
        pooled.get(v, s) if rows[i] else s
        for i, (v, s) in enumerate(zip(table.videos, table.sources, strict=True))
    ]
    return dataclasses.replace(table, sources=sources)


def logistic_fit(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float, iterations: int = 100
) -> tuple[np.ndarray, np.ndarray, float]:
    """Ridge logistic regression by Newton's method on standardised features; returns the
    centre (weighted mean), the weights in the features' own units and the bias."""
    w = np.asarray(weights, np.float64) / np.sum(weights)
    mean = np.average(x, axis=0, weights=w)
    sd = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w)) + 1e-9
    a = np.hstack([(x - mean) / sd, np.ones((len(x), 1))])
    penalty = np.diag(np.r_[np.full(x.shape[1], l2), 0.0])
    beta = np.zeros(a.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a @ beta)))
        gradient = a.T @ (w * (p - y)) + penalty @ beta
        hessian = a.T @ (a * (w * p * (1 - p))[:, None]) + penalty + 1e-12 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return mean, beta[:-1] / sd, float(beta[-1])


def class_source_weights(labels: np.ndarray, sources: Sequence[str]) -> np.ndarray:
    """Sample weights: reals half, fakes half; within each class every source alike."""
    out = np.zeros(len(labels))
    for label in (0, 1):
        idx = np.flatnonzero(labels == label)
        if len(idx):
            per_source = source_weights([sources[i] for i in idx])
            out[idx] = 0.5 * per_source / per_source.sum()
    return out


def fit_model(cfg: SyncFitConfig, table: LatencyTable, model: SyncEvidence, exclude_source: str = "") -> dict:
    """Fit ``model`` in place on ``table`` (the fakes of ``exclude_source`` left out); returns
    what the fit read."""
    reals = table.where(cfg.split, 0) & table.has_latency
    if reals.sum() < table.features.shape[1] + 2:
        raise ValueError(
            f"{cfg.manifest}: {int(reals.sum())} real video samples with a latency in split "
            f"{cfg.split!r}: too few for {table.features.shape[1]} features"
        )
    if cfg.mode == "band":
        real_sources = [table.sources[i] for i in np.flatnonzero(reals)]
        weights = source_weights(real_sources) if cfg.balance_sources else np.ones(int(reals.sum()))
        mean, inv_cov = fit_band(table.features[reals], cfg.shrinkage, weights)
        z = table.features[reals] - mean
        stats = np.sqrt(np.maximum(np.einsum("nd,de,ne->n", z, inv_cov, z) / z.shape[1], 0))
        offset, scale, _ = calibration(stats, weights, cfg.band_quantile, cfg.real_median_p)
        model.set_band(mean, inv_cov, offset, scale)
        return {"real_samples": int(reals.sum()), "offset": offset, "scale": scale}
    fakes = table.where(cfg.fake_split, 1) & table.has_latency
    fakes &= np.array([s != exclude_source for s in table.sources])
    if not fakes.any():
        raise ValueError(f"{cfg.manifest}: no labelled fakes with a latency in split {cfg.fake_split!r}")
    both = reals | fakes
    labels = table.labels[both]
    # a generator with a clip or two weighs as part of its category's pool, not as a source alone
    grouped = merged_sources(table, fakes).sources
    sources = [grouped[i] for i in np.flatnonzero(both)]
    mean, weight, bias = logistic_fit(
        table.features[both], labels, class_source_weights(labels, sources), cfg.l2
    )
    model.set_logistic(mean, weight, bias)
    return {"real_samples": int(reals.sum()), "fake_samples": int(fakes.sum()), "bias": bias}


@torch.no_grad()
def sample_log_odds(model: SyncEvidence, table: LatencyTable) -> np.ndarray:
    x = torch.from_numpy(np.nan_to_num(table.features).astype(np.float32))
    has = torch.from_numpy(table.has_latency.astype(np.float32))
    return model.eval()(x, has)[:, 0].double().numpy()


def video_scores(table: LatencyTable, log_odds: np.ndarray) -> dict[str, tuple[float, int, str]]:
    """video → (log-odds by the detector's rule over its tracks, label, source)."""
    tracks: dict[str, list[float]] = {}
    info: dict[str, tuple[int, str]] = {}
    for v, z, label, source in zip(table.videos, log_odds, table.labels, table.sources, strict=True):
        tracks.setdefault(v, []).append(float(z))
        info[v] = (int(label), source)
    return {v: (aggregate(z, SyncEvidence.video_aggregation), *info[v]) for v, z in tracks.items()}


@dataclass(frozen=True)
class SourceScore:
    """One source against the other class: a fake source against the validation reals
    (``auc``, and ``auc_per_real_source``: the mean over the real sources of each one's AUC
    against it, so the largest real corpus does not decide), a real source against every fake."""

    source: str
    label: int
    videos: int
    auc: float
    auc_per_real_source: float
    balanced_log_loss: float


@dataclass
class Validation:
    sources: list[SourceScore]
    pooled_auc: float
    pooled_balanced_log_loss: float
    reals: int
    without_latency: int  # validation videos no track of which has a latency (log-odds 0)

    @property
    def fake_sources(self) -> list[SourceScore]:
        return [s for s in self.sources if s.label == 1]

    @property
    def worst_auc(self) -> float:
        return min(s.auc for s in self.sources)

    @property
    def mean_fake_source_auc(self) -> float:
        """The mean over fake sources of their AUC per real source: the selection figure."""
        return float(np.mean([s.auc_per_real_source for s in self.fake_sources]))

    @property
    def worst_balanced_log_loss(self) -> float:
        return max(s.balanced_log_loss for s in self.sources)

    def to_dict(self) -> dict:
        return {
            "pooled_auc": self.pooled_auc,
            "pooled_balanced_log_loss": self.pooled_balanced_log_loss,
            "worst_source_auc": self.worst_auc,
            "mean_fake_source_auc_per_real_source": self.mean_fake_source_auc,
            "worst_source_balanced_log_loss": self.worst_balanced_log_loss,
            "reals": self.reals,
            "videos_without_latency": self.without_latency,
            "sources": [dataclasses.asdict(s) for s in self.sources],
        }


def _scores(videos: dict[str, tuple[float, int, str]], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    z = np.array([videos[v][0] for v in names])
    return np.array([videos[v][1] for v in names]), 1.0 / (1.0 + np.exp(-z))


def _row(
    videos: dict[str, tuple[float, int, str]], source: str, label: int, others: list[str]
) -> SourceScore:
    """``source``'s videos (class ``label``) against the videos ``others`` of the other class."""
    mine = sorted(v for v, (_, y, s) in videos.items() if y == label and s == source)
    y, p = _scores(videos, mine + others)
    per_real = math.nan
    if label == 1:
        real_sources = sorted({videos[v][2] for v in others})
        per_real = float(
            np.mean([_row(videos, r, 0, mine).auc for r in real_sources])  # each real corpus alike
        )
    return SourceScore(source, label, len(mine), roc_auc(y, p), per_real, balanced_log_loss(y, p))


def validate(cfg: SyncFitConfig, table: LatencyTable) -> Validation:
    """Reals of ``validation_split`` against each fake source, each real source against every
    fake. A logistic fit is refitted without the fake source it is scored on (leave-generator-
    out); the real-source rows and the pooled figures read each fake's held-out score."""
    val = table.where(cfg.validation_split) & np.isin(table.labels, (0, 1))
    table = merged_sources(table, val)
    fake_sources = sorted({table.sources[i] for i in np.flatnonzero(val & (table.labels == 1))})
    if not fake_sources or not (val & (table.labels == 0)).any():
        raise ValueError(f"{cfg.manifest}: split {cfg.validation_split!r} needs real and fake videos")
    model = create_model("sync_evidence", **cfg.model)
    held_out: dict[str, dict[str, tuple[float, int, str]]] = {}
    for source in fake_sources:
        if cfg.mode == "logistic" or not held_out:  # the band never sees a fake: one fit serves all
            fit_model(cfg, table, model, exclude_source=source)
            scores = video_scores(table.rows(val), sample_log_odds(model, table.rows(val)))
        held_out[source] = scores
    reals = sorted(v for v, (_, label, _) in scores.items() if label == 0)
    # every video once: a fake with the score of the fit that never saw its source
    pooled = {v: scores[v] for v in reals}
    for source in fake_sources:
        pooled |= {v: x for v, x in held_out[source].items() if x[1] == 1 and x[2] == source}
    fakes = sorted(v for v in pooled if pooled[v][1] == 1)
    rows = [_row(held_out[s], s, 1, reals) for s in fake_sources]
    rows += [_row(pooled, s, 0, fakes) for s in sorted({pooled[v][2] for v in reals})]
    y, p = _scores(pooled, sorted(pooled))
    val_rows = table.rows(val)
    with_latency = {v for v, h in zip(val_rows.videos, val_rows.has_latency, strict=True) if h}
    return Validation(
        rows, roc_auc(y, p), balanced_log_loss(y, p), len(reals), len(set(val_rows.videos) - with_latency)
    )


def format_validation(v: Validation, mode: str) -> str:
    held = "leave-generator-out" if mode == "logistic" else "one-class: no fake seen"
    lines = [
        f"validation ({held}): pooled AUC {v.pooled_auc:.3f}, balanced log loss "
        f"{v.pooled_balanced_log_loss:.3f}; fake sources' mean AUC per real source "
        f"{v.mean_fake_source_auc:.3f}; worst source AUC {v.worst_auc:.3f}, balanced log loss "
        f"{v.worst_balanced_log_loss:.3f} ({v.reals} reals; {v.without_latency} videos without a latency)",
        f"  {'source':<58} {'n':>4} {'AUC':>6} {'per real':>8} {'bal. LL':>7}",
    ]
    for s in sorted(v.sources, key=lambda s: (-s.label, s.auc)):
        lines.append(
            f"  {s.source:<58} {s.videos:>4} {s.auc:>6.3f} {s.auc_per_real_source:>8.3f} {s.balanced_log_loss:>7.3f}"
        )
    return "\n".join(lines)


@dataclass
class SyncFitResult:
    weights: Path
    onnx: Path | None
    onnx_max_abs_diff: float | None
    fit: dict
    validation: Validation | None


def fit_sync_evidence(
    cfg: SyncFitConfig, table: LatencyTable | None = None, check: bool = True
) -> SyncFitResult:
    preprocess = cache_preprocess_config(cfg.manifest)
    if preprocess is None:
        raise ValueError(f"{cfg.manifest}: the cache records no preprocessing configuration")
    model = create_model("sync_evidence", **dict(cfg.model, mode=cfg.mode))
    problem = model.preprocess_problem(model.config, preprocess)
    if problem:
        raise ValueError(f"{cfg.manifest}: {problem}")
    cfg = dataclasses.replace(cfg, model=model.config.to_dict())
    table = latency_table(cfg.manifest, model.config.feature_names, cfg.sources)
    validation = validate(cfg, table) if check else None
    fitted = fit_model(cfg, table, model)
    log.info("sync_evidence (%s) fitted: %s", cfg.mode, fitted)
    extra = {
        "fit": {
            "manifest": str(cfg.manifest),
            "mode": cfg.mode,
            "split": cfg.split,
            "fake_split": cfg.fake_split if cfg.mode == "logistic" else None,
            "balance_sources": cfg.balance_sources,
            "shrinkage": cfg.shrinkage,
            "band_quantile": cfg.band_quantile,
            "real_median_p": cfg.real_median_p,
            "l2": cfg.l2,
            **fitted,
        }
    }
    if validation is not None:
        extra["validation"] = dict(validation.to_dict(), split=cfg.validation_split)
    weights, onnx_path, diff = write_fitted_weights(model, cfg.out, preprocess, extra, cfg.onnx)
    return SyncFitResult(weights, onnx_path, diff, fitted, validation)
