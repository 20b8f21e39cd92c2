"""``python -m train fit-temporal-net``: train ``temporal_net`` on a pool of forged windows.

The pool (``train.temporal_pool``) holds each real training clip of a ``"windows"`` cache as it
is, repackaged, and forged by every temporal pseudo-fake category. The network's statistics of
every pool window are measured once (its own ``forward_features``: the code inference runs),
standardised, and the head is trained on them, full batch: Adam with weight decay, a binary
cross-entropy on each sample's log-odds (the mean over its windows) with the two classes
weighing alike, and within them the forgery categories alike and the originals as much as their
repackaged copies (so packaging is never what the loss rewards).

Every ``val_every`` steps the network scores the cache's validation split (held-out real clips
and every labelled fake: generators never trained on) per video (maximum over its tracks); the
state with the best mean of the per-category AUCs (face swap, lip-sync, talking head, each
against all validation reals) is kept. Then ``still_logit`` (a track with no motion to measure)
is set to the median real training clip's logit, the weights are written (safetensors + JSON +
ONNX checked against torch), and the probability mapping is fitted on the validation split the
way ``train calibrate`` does (worst source, ``train.calibration``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from core.aggregation import aggregate
from core.calibration import sigmoid
from models.registry import create_model
from models.temporal_net import TemporalNet
from preprocess.sample_file import load_sample
from train.data import cache_preprocess_config, read_manifest
from train.export import weights_stem, write_fitted_weights
from train.metrics import evaluate_scores
from train.temporal_pool import TemporalPool, TemporalPoolConfig, build_pool

log = logging.getLogger("train")

CATEGORIES = ("face_swap", "lip_sync", "talking_head")


@dataclass(frozen=True)
class TemporalNetFitConfig:
    manifest: Path  # a "windows" cache: real training clips and the labelled validation split
    out: Path  # weights stem
    pool: Path | None = None  # a pool to reuse; else one is built and saved as <out>.pool.npz
    pool_options: dict[str, Any] = field(default_factory=dict)  # TemporalPoolConfig overrides
    model: dict[str, Any] = field(default_factory=dict)  # TemporalNetConfig overrides
    steps: int = 600  # full-batch steps of the head
    lr: float = 1e-2
    weight_decay: float = 1e-2
    val_every: int = 25
    seed: int = 0
    threads: int = 1
    calibrate: bool = True
    labels: Path | None = None  # labels CSV with a source column, for the calibration's sources
    onnx: bool = True


@dataclass
class TemporalNetFitResult:
    weights: Path
    onnx: Path | None
    onnx_max_abs_diff: float | None
    best_step: int
    best_score: float
    history: list[dict[str, float]]


@dataclass
class ValidationSet:
    features: torch.Tensor  # (N, W, D) each sample's window statistics (they never change)
    valid: torch.Tensor  # (N, W)
    videos: list[str]  # per sample
    labels: np.ndarray  # per video, sorted by name
    categories: list[str]  # per video


@torch.no_grad()
def window_statistics(
    net: TemporalNet, batches: Iterable[tuple[np.ndarray, np.ndarray]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's statistics (N, W, D) and window validity (N, W) of batches of its inputs
    (windows in 0-1, frame mask), concatenated."""
    feats, valid = [], []
    for windows, mask in batches:
        f, v = net.forward_features(torch.from_numpy(windows), torch.from_numpy(mask))
        feats.append(f)
        valid.append(v)
    return (torch.cat(feats), torch.cat(valid)) if feats else (torch.zeros(0), torch.zeros(0))


def validation_set(manifest: Path, net: TemporalNet, split: str = "val", chunk: int = 32) -> ValidationSet:
    entries = [e for e in read_manifest(manifest) if e.split == split and e.label in (0, 1)]
    batches = (
        net.batch_inputs([load_sample(e.sample) for e in entries[i : i + chunk]], net.config)
        for i in range(0, len(entries), chunk)
    )
    features, valid = window_statistics(net, batches)
    info = {e.video: (e.label, e.category) for e in entries}
    names = sorted(info)
    return ValidationSet(
        features,
        valid,
        [e.video for e in entries],
        np.array([info[n][0] for n in names]),
        [info[n][1] for n in names],
    )


@torch.no_grad()
def validate(net: TemporalNet, val: ValidationSet) -> dict[str, float]:
    """Video AUC overall and per category against all validation reals; ``score`` their mean."""
    net.eval()
    logits = net.forward_head(val.features, val.valid)[0][:, 0].numpy()
    tracks: dict[str, list[float]] = {}
    for video, z in zip(val.videos, logits, strict=True):
        tracks.setdefault(video, []).append(float(z))
    scores = np.array([aggregate(tracks[v], net.video_aggregation) for v in sorted(tracks)])
    report = evaluate_scores(val.labels, sigmoid(scores), val.categories)
    result = {"auc": report.auc}
    result.update({c: report.per_category[c].auc_vs_real for c in CATEGORIES if c in report.per_category})
    present = [result[c] for c in CATEGORIES if c in result]
    result["score"] = float(np.mean(present)) if present else result["auc"]
    return result


def pool_features(net: TemporalNet, pool: TemporalPool, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's statistics (N, W, D) and window validity (N, W) of every pool sample."""
    return window_statistics(
        net,
        (
            (
                pool.windows[i : i + chunk].astype(np.float32) / 255.0,
                pool.frame_mask[i : i + chunk].astype(np.float32),
            )
            for i in range(0, len(pool.labels), chunk)
        ),
    )


def loss_weights(pool: TemporalPool) -> np.ndarray:
    """Per sample: each class half the loss; within a class its kinds alike (the forgery
    categories; the originals and their repackaged copies). Weighing the sources alike too (GRID
    is 40 of 55 training reals) was measured and not kept: validation 0.847 against 0.879, and
    the unseen-source reals that score high scored higher."""
    weights = np.zeros(len(pool.labels))
    for label in (0, 1):
        kinds = sorted(set(pool.kinds[pool.labels == label].tolist()))
        for kind in kinds:
            pick = (pool.labels == label) & (pool.kinds == kind)
            weights[pick] = 0.5 / (len(kinds) * pick.sum())
    return weights / weights.sum() * len(weights)


def train_head(
    net: TemporalNet,
    features: torch.Tensor,
    valid: torch.Tensor,
    pool: TemporalPool,
    cfg: TemporalNetFitConfig,
    val: ValidationSet | None,
) -> tuple[TemporalNet, int, float, list[dict[str, float]]]:
    torch.manual_seed(cfg.seed)
    with torch.no_grad():  # reset the head under the seed: runs are reproducible
        for layer in (net.hidden, net.out):
            layer.reset_parameters()
    labels = torch.from_numpy(pool.labels).float()
    weights = torch.from_numpy(loss_weights(pool)).float()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best_state, best_step, best_score = copy.deepcopy(net.state_dict()), 0, -1.0
    history: list[dict[str, float]] = []
    for step in range(cfg.steps):
        net.train()
        logits = net.forward_head(features, valid)[0][:, 0]
        loss = (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * weights).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % cfg.val_every == 0 or step + 1 == cfg.steps:
            row = {"step": step + 1, "train_loss": loss.item()}
            if val is not None:
                row.update(validate(net, val))
                if row["score"] > best_score:
                    best_state, best_step, best_score = (
                        copy.deepcopy(net.state_dict()),
                        step + 1,
                        row["score"],
                    )
            history.append(row)
            log.info(
                "temporal_net %s",
                " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
            )
    if val is None:
        best_state, best_step = copy.deepcopy(net.state_dict()), cfg.steps
    net.load_state_dict(best_state)
    return net.eval(), best_step, best_score, history


def fit_temporal_net(cfg: TemporalNetFitConfig) -> TemporalNetFitResult:
    torch.set_num_threads(cfg.threads)
    preprocess = cache_preprocess_config(cfg.manifest)
    if preprocess is None:
        raise ValueError(f"{cfg.manifest}: the cache records no preprocessing configuration")
    net: TemporalNet = create_model("temporal_net", **cfg.model)
    problem = net.preprocess_problem(net.config, preprocess)
    if problem:
        raise ValueError(f"{cfg.manifest}: {problem}")
    stem = weights_stem(cfg.out)
    if cfg.pool is not None and cfg.pool.is_file():
        pool = TemporalPool.load(cfg.pool)
        log.info("pool %s: %d entries", cfg.pool, len(pool.labels))
    else:
        pool_cfg = TemporalPoolConfig(
            cfg.manifest, cfg.pool or stem.with_suffix(".pool.npz"), net.config, **cfg.pool_options
        )
        pool = build_pool(pool_cfg)
        pool.save(pool_cfg.out)
    want = (net.config.windows, net.config.window_frames, net.config.img_size, net.config.img_size)
    if pool.windows.shape[1:] != want:
        raise ValueError(f"the pool holds windows {pool.windows.shape[1:]}, the network reads {want}")
    val = validation_set(cfg.manifest, net)
    if not (val.labels == 1).any() or not (val.labels == 0).any():
        log.warning("%s: no labelled validation split of both classes; keeping the last state", cfg.manifest)
        val = None
    features, valid = pool_features(net, pool)
    usable = valid.reshape(-1) > 0.5
    flat = features.reshape(-1, features.shape[-1])[usable]
    net.set_feature_scaling(flat.mean(0), flat.std(0))
    net, best_step, best_score, history = train_head(net, features, valid, pool, cfg, val)
    originals = pool.kinds == "real"
    with torch.no_grad():
        real_logits = net.forward_head(features[originals], valid[originals])[0][:, 0].numpy()
    net.config = dataclasses.replace(net.config, still_logit=float(np.median(real_logits)))
    extra = {
        "fit": {
            "manifest": str(cfg.manifest),
            "pool_entries": int(len(pool.labels)),
            "pool_kinds": {k: int((pool.kinds == k).sum()) for k in sorted(set(pool.kinds.tolist()))},
            "real_clips": int(originals.sum()),
            "steps": cfg.steps,
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "best_step": best_step,
            "best_val_score": best_score,
            "seed": cfg.seed,
            "history": history,
        }
    }
    weights, onnx_path, diff = write_fitted_weights(net, stem, preprocess, extra, cfg.onnx)
    if cfg.calibrate and val is not None:
        from train.calibration import fit_on_manifest, format_fit, read_sources
        from weights.store import write_calibration

        sources = read_sources(cfg.labels) if cfg.labels else None
        fit = fit_on_manifest(net, cfg.manifest, "val", sources)
        log.info("%s", format_fit(fit))
        write_calibration(weights, fit.calibration.to_dict(), fit.to_dict())
    return TemporalNetFitResult(weights, onnx_path, diff, best_step, best_score, history)
