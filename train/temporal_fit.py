"""``python -m train fit-temporal``: fit ``temporal_band``'s band of real motion on real clips.

No gradient training: the detector is one-class. The real samples of a ``"windows"`` cache's
training split (photos have no motion and are left out) are measured as they are and after
random re-encoding (``reencode``: downscaled, H.264 at a random quality, scaled back), so the
band covers real footage however it was packaged and a low-bitrate real does not fall outside
it for its codec alone. From the window features:

- ``mean`` and ``inv_cov`` (covariance shrunk towards its diagonal, ``shrinkage``) → buffers;
- each real training sample's statistic (mean window distance) → ``offset``/``scale`` so that
  the median real sample scores ``real_median_p`` and the ``band_quantile`` one 0.5; the median
  is also what a track without motion to measure scores (``still_statistic``).

Then the same export as ``train export``: safetensors + JSON (the cache's preprocessing,
scoring options as ``train.export.scoring_preprocess`` sets them) + ONNX checked against torch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.preprocess_data import Sample
from models.registry import create_model
from models.temporal_band import TemporalBand
from preprocess.sample_file import load_sample
from train.data import cache_preprocess_config, read_manifest
from train.export import write_fitted_weights
from train.reencode import reencode

log = logging.getLogger("train")


@dataclass(frozen=True)
class TemporalFitConfig:
    manifest: Path
    out: Path  # weights stem
    model: dict[str, Any] = dataclasses.field(default_factory=dict)  # TemporalBandConfig overrides
    split: str = "train"
    reencodes: int = 3  # re-encoded copies of each real sample, beside the original
    balance_sources: bool = False  # every source folder weighs alike (source_weights)
    shrinkage: float = 0.1  # covariance → (1 - s) cov + s diag(cov)
    band_quantile: float = 0.95  # real training samples below this statistic score < 0.5
    real_median_p: float = 0.1  # P(fake) of the median real training sample
    seed: int = 0
    onnx: bool = True


@dataclass
class TemporalFitResult:
    weights: Path
    onnx: Path | None
    onnx_max_abs_diff: float | None
    samples: int
    windows: int
    offset: float
    scale: float


def reencoded_sample(sample: Sample, window_frames: int, rng: np.random.Generator, workdir: Path) -> Sample:
    """``sample`` with each window's crops re-encoded as one short clip (``reencode``)."""
    from core.windows import window_runs

    faces = sample.faces.copy()
    for rows in window_runs(sample.face_frame_indices, window_frames):
        if len(rows) >= 2:
            faces[rows] = reencode(sample.faces[rows], rng, workdir)
    return dataclasses.replace(sample, faces=faces)


@torch.no_grad()
def window_feature_rows(model: TemporalBand, samples: list[Sample], batch_size: int = 16) -> list[np.ndarray]:
    """Per sample: (n_valid_windows, D) features."""
    out = []
    for start in range(0, len(samples), batch_size):
        windows, mask = model.batch_inputs(samples[start : start + batch_size], model.config)
        feats, valid = model.window_features(torch.from_numpy(windows), torch.from_numpy(mask))
        out += [f[v > 0.5].numpy().astype(np.float64) for f, v in zip(feats, valid, strict=True)]
    return out


def fit_band(
    features: np.ndarray, shrinkage: float, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and inverse covariance (shrunk towards its diagonal) of (N, D) window features,
    each row weighted by ``weights`` (default: equally)."""
    if len(features) < features.shape[1] + 2:
        raise ValueError(f"{len(features)} real windows are too few for {features.shape[1]} features")
    w = np.ones(len(features)) if weights is None else np.asarray(weights, np.float64)
    mean = np.average(features, axis=0, weights=w)
    cov = np.cov(features, rowvar=False, aweights=w).reshape(features.shape[1], features.shape[1])
    cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov))
    return mean, np.linalg.inv(cov + 1e-9 * np.eye(len(mean)))


def source_weights(sources: list[str]) -> np.ndarray:
    """Per sample 1 / (samples from its source): every source counts alike in the band, so a
    collection with many clips (GRID: 40 of 55 training reals) does not set it alone."""
    counts = {s: sources.count(s) for s in set(sources)}
    return np.array([1.0 / counts[s] for s in sources])


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order]) - 0.5 * weights[order]
    return float(np.interp(q * weights.sum(), cum, values[order]))


def sample_statistics(model: TemporalBand, rows: list[np.ndarray]) -> np.ndarray:
    """Each sample's statistic (mean RMS z-score of its windows) under the model's band; NaN for
    a sample without a valid window."""
    mean = model.mean.double().numpy()
    inv = model.inv_cov.double().numpy()
    d = model.config.num_features
    stats = []
    for feats in rows:
        z = feats - mean
        dist = np.sqrt(np.maximum(np.einsum("nd,de,ne->n", z, inv, z) / d, 0))
        stats.append(float(dist.mean()) if len(dist) else np.nan)
    return np.asarray(stats)


def calibration(
    stats: np.ndarray, weights: np.ndarray, band_quantile: float, real_median_p: float
) -> tuple[float, float, float]:
    """``offset``, ``scale``, median: log-odds 0 at the (weighted) ``band_quantile`` of the real
    statistics and log(p / (1 - p)) at their median."""
    ok = ~np.isnan(stats)
    stats, weights = stats[ok], weights[ok]
    offset = weighted_quantile(stats, weights, band_quantile)
    median = weighted_quantile(stats, weights, 0.5)
    spread = max(offset - median, 1e-3)
    return offset, float(-math.log(real_median_p / (1 - real_median_p)) / spread), median


def band_from_samples(
    model: TemporalBand, samples: list[Sample], weights: np.ndarray, shrinkage: float
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Fit the band on ``samples`` (sample ``weights`` shared among each one's windows); returns
    mean, inverse covariance and each sample's window features."""
    rows = window_feature_rows(model, samples)
    keep = [i for i, r in enumerate(rows) if len(r)]
    features = np.concatenate([rows[i] for i in keep])
    per_window = np.concatenate([np.full(len(rows[i]), weights[i] / len(rows[i])) for i in keep])
    mean, inv_cov = fit_band(features, shrinkage, per_window)
    return mean, inv_cov, rows


def fit_temporal(cfg: TemporalFitConfig) -> TemporalFitResult:
    preprocess = cache_preprocess_config(cfg.manifest)
    if preprocess is None:
        raise ValueError(f"{cfg.manifest}: the cache records no preprocessing configuration")
    model = create_model("temporal_band", **cfg.model)
    problem = model.preprocess_problem(model.config, preprocess)
    if problem:
        raise ValueError(f"{cfg.manifest}: {problem}")
    entries = [
        e
        for e in read_manifest(cfg.manifest)
        if e.split == cfg.split and e.label == 0 and e.category != "photo"
    ]
    if not entries:
        raise ValueError(f"{cfg.manifest}: no real video samples in split {cfg.split!r}")
    rng = np.random.default_rng(cfg.seed)
    loaded = [(load_sample(e.sample), e) for e in entries]
    loaded = [(s, e) for s, e in loaded if len(s.faces) > 1]  # a still image has no motion
    originals = [s for s, _ in loaded]
    # the folder a clip came from stands for its source (a collection, a camera, a channel)
    sources = [str(Path(e.video_id).parent) for _, e in loaded]
    weights = source_weights(sources) if cfg.balance_sources else np.ones(len(originals))
    samples = list(originals)
    with tempfile.TemporaryDirectory(prefix="reencode") as tmp:
        for _ in range(cfg.reencodes):
            samples += [reencoded_sample(s, model.config.window_frames, rng, Path(tmp)) for s in originals]
    weights = np.tile(weights, cfg.reencodes + 1)
    mean, inv_cov, rows = band_from_samples(model, samples, weights, cfg.shrinkage)
    features = np.concatenate([r for r in rows if len(r)])
    model.set_band(mean, inv_cov, 0.0, 1.0)
    offset, scale, median = calibration(
        sample_statistics(model, rows), weights, cfg.band_quantile, cfg.real_median_p
    )
    model.set_band(mean, inv_cov, offset, scale, median)
    log.info(
        "band from %d real samples (%d with re-encoded copies), %d windows; offset %.3f, scale %.3f",
        len(originals),
        len(samples),
        len(features),
        offset,
        scale,
    )
    model.eval()
    extra = {
        "fit": {
            "manifest": str(cfg.manifest),
            "split": cfg.split,
            "real_samples": len(originals),
            "reencodes": cfg.reencodes,
            "windows": len(features),
            "shrinkage": cfg.shrinkage,
            "balance_sources": cfg.balance_sources,
            "sources": len(set(sources)),
            "band_quantile": cfg.band_quantile,
            "real_median_p": cfg.real_median_p,
            "seed": cfg.seed,
        }
    }
    weights, onnx_path, diff = write_fitted_weights(model, cfg.out, preprocess, extra, cfg.onnx)
    return TemporalFitResult(weights, onnx_path, diff, len(originals), len(features), offset, scale)
