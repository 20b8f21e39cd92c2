"""Lip-sync evidence: a detector that reads the trained sync model's offset search.

A lip-sync generator keeps the real video and re-renders the mouth; a talking-head generator
renders the whole face from the audio. Either way the mouth is drawn to follow the sound, but
not the way a speaking person's does: the trained sync model (``weights/syncnet``,
``models/syncnet_mouth``) finds the lips and the speech less clearly matched, or matched at
an offset no camera produces. Preprocessing already measures this for every face track
(``core.preprocess_data.Latency``: the mean lip-vs-audio distance at each offset −vshift..vshift,
the best offset, its confidence and the per-window confidence at that offset); this detector
summarises it in a few numbers (``FEATURES``) and scores how far they lie from where real
footage puts them.

Two fits (``python -m train fit-sync-evidence``, ``train.sync_evidence_fit``):

- ``mode = "band"``: one-class, like ``temporal_band``: the mean and covariance of the real
  training clips' features; the statistic is the RMS z-score (Mahalanobis distance over the
  feature count) from there, so both "less in sync than a real clip" and "more exactly in sync
  than a camera" score as fake; ``logit = (statistic − offset) × scale``. It never sees a fake.
- ``mode = "logistic"``: a linear fake log-odds on the standardised features
  (``(x − mean) · weight + bias``), fitted on real clips against labelled fakes.

A sample without a latency (no audio, a track shorter than one SyncNet window, SyncNet
switched off) carries no evidence: its log-odds are exactly 0 (``has_latency`` = 0), with a
warning naming the video, never a guess. Inputs: ``latency`` (B, D) the features ``features``
names, in that order (zeros where there is none), ``has_latency`` (B,) 1.0 where the sample has
a latency. Output: ``logits`` (B, 1), the fake log-odds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Latency, Sample
from models.detector import DetectorModel
from models.registry import FlatConfig, register_model

log = logging.getLogger("models")

# confidence: median − min of the distance curve (the offset search's own confidence);
# min_distance: the curve's minimum; abs_offset: |best offset| in frames; sharpness: the
# confidence in units of the curve's standard deviation (how far the minimum stands out of
# the curve, whatever its level); peak_margin: the lowest distance 3 or more frames from the best
# offset minus the minimum (a second, rival minimum makes it small); frame_conf_mean,
# frame_conf_low: mean and 10th percentile of the per-window confidence at the chosen offset
# (how evenly the whole track is in sync); frame_conf_pos: the share of windows with positive
# confidence there.
FEATURES = (
    "confidence",
    "min_distance",
    "abs_offset",
    "sharpness",
    "peak_margin",
    "frame_conf_mean",
    "frame_conf_low",
    "frame_conf_pos",
)
MODES = ("band", "logistic")
PEAK_EXCLUDE = 3  # frames either side of the best offset left out of peak_margin's rival
EPS = 1e-6


def latency_features(latency: Latency, names: Sequence[str]) -> np.ndarray:
    """The features ``names`` (of ``FEATURES``) of one track's latency, float64."""
    curve = np.asarray(latency.distances, np.float64)
    if curve.ndim != 1 or curve.size < 2 * PEAK_EXCLUDE + 2:
        raise ValueError(f"a latency curve needs at least {2 * PEAK_EXCLUDE + 2} offsets, got {curve.shape}")
    best = int(np.argmin(curve))
    low = float(curve[best])
    median = float(np.median(curve))
    far = np.abs(np.arange(curve.size) - best) >= PEAK_EXCLUDE
    frame_conf = np.asarray(latency.frame_confidence, np.float64)
    if frame_conf.size == 0:
        frame_conf = np.array([median - low])
    values = {
        "confidence": median - low,
        "min_distance": low,
        "abs_offset": abs(float(latency.offset)),
        "sharpness": (median - low) / (float(curve.std()) + EPS),
        "peak_margin": float(curve[far].min()) - low,
        "frame_conf_mean": float(frame_conf.mean()),
        "frame_conf_low": float(np.quantile(frame_conf, 0.1)),
        "frame_conf_pos": float((frame_conf > 0).mean()),
    }
    return np.array([values[n] for n in names], np.float64)


def parse_features(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = set(names) - set(FEATURES)
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"sync_evidence: features must be distinct names of {FEATURES}, got {text!r}")
    return names


@dataclass(frozen=True)
class SyncEvidenceConfig(FlatConfig):
    arch: ClassVar[str] = "sync_evidence"
    features: str = "confidence,frame_conf_mean"  # comma-separated FEATURES (README: how chosen)
    mode: str = "band"  # "band": one-class distance from real clips; "logistic": linear log-odds
    offset: float = 1.0  # band: statistic where the log-odds are 0 (fitted)
    scale: float = 1.0  # band: log-odds per unit of statistic (fitted)
    bias: float = 0.0  # logistic: log-odds at the mean (fitted)

    def __post_init__(self) -> None:
        parse_features(self.features)
        if self.mode not in MODES:
            raise ValueError(f"sync_evidence: mode must be one of {MODES}, got {self.mode!r}")
        if self.scale <= 0:
            raise ValueError(f"sync_evidence: scale must be > 0, got {self.scale}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return parse_features(self.features)

    @property
    def num_features(self) -> int:
        return len(self.feature_names)


def missing_latency_reason(sample: Sample) -> str:
    """Why a sample has no latency, from its preprocessing warnings."""
    why = [w for w in sample.meta.warnings if w.startswith(("no_audio", "no_latency", "no_syncnet_weights"))]
    return "; ".join(why) or "no latency recorded"


@register_model("sync_evidence", SyncEvidenceConfig)
class SyncEvidence(DetectorModel):
    """See the module docstring. Buffers: ``mean`` (D), ``inv_cov`` (D, D) (band), ``weight``
    (D) (logistic); all fitted by ``train.sync_evidence_fit``."""

    input_names = ("latency", "has_latency")
    output_names = ("logits",)
    video_aggregation = "max"  # as the default's other members: one rule per ensemble

    def __init__(self, config: SyncEvidenceConfig | None = None):
        super().__init__()
        self.config = config or SyncEvidenceConfig()
        d = self.config.num_features
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("inv_cov", torch.eye(d))
        self.register_buffer("weight", torch.zeros(d))

    # --- data ---------------------------------------------------------------------------------

    @classmethod
    def sample_inputs(cls, sample: Sample, config: SyncEvidenceConfig) -> dict[str, np.ndarray]:
        if sample.latency is None:
            log.warning(
                "%s (track %d): no latency (%s): sync_evidence gives it log-odds 0, no evidence",
                sample.meta.video,
                sample.meta.track_id,
                missing_latency_reason(sample),
            )
            return {
                "latency": np.zeros(config.num_features, np.float32),
                "has_latency": np.zeros((), np.float32),
            }
        features = latency_features(sample.latency, config.feature_names).astype(np.float32)
        return {"latency": features, "has_latency": np.ones((), np.float32)}

    @classmethod
    def preprocess_problem(cls, config: SyncEvidenceConfig, preprocess: PreprocessConfig) -> str | None:
        if not preprocess.sync.weights:
            return (
                "sync_evidence reads the SyncNet latency: preprocess with sync.weights set "
                "(e.g. 'syncnet'), not switched off"
            )
        return None

    # --- network ------------------------------------------------------------------------------

    def forward(self, latency: torch.Tensor, has_latency: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        z = latency - self.mean
        if cfg.mode == "band":
            d2 = ((z @ self.inv_cov) * z).sum(-1) / float(cfg.num_features)
            logit = (torch.sqrt(d2.clamp(min=0.0)) - cfg.offset) * cfg.scale
        else:
            logit = z @ self.weight + cfg.bias
        # where(), not a product: whatever an absent latency's row holds cannot leak into the score
        logit = torch.where(has_latency.reshape(-1) > 0.5, logit, torch.zeros_like(logit))
        return logit.reshape(-1, 1)

    def set_band(self, mean: np.ndarray, inv_cov: np.ndarray, offset: float, scale: float) -> None:
        """Install a fitted one-class band (mode ``band``)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.inv_cov.copy_(torch.as_tensor(inv_cov, dtype=torch.float32))
        self.config = replace(self.config, mode="band", offset=float(offset), scale=float(scale))

    def set_logistic(self, mean: np.ndarray, weight: np.ndarray, bias: float) -> None:
        """Install a fitted linear model on ``features − mean`` (mode ``logistic``)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        self.config = replace(self.config, mode="logistic", bias=float(bias))

    # --- export -------------------------------------------------------------------------------

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random features around the fitted mean; every third sample without a latency."""
        g = torch.Generator().manual_seed(seed)
        x = self.mean + torch.randn(batch, self.config.num_features, generator=g)
        has = (torch.arange(batch) % 3 != 2).float()
        return x, has
