"""A learned temporal detector for rendered faces: how the face changes from frame to frame,
learned from real clips and temporal pseudo-fakes.

temporal_band scores the distance from real motion in a few motion statistics, a one-class rule
fitted on real clips alone. This network reads the same statistics and learns where real motion
ends from the temporal pseudo-fakes of ``train.temporal_pseudo_fakes`` — a still frame animated
along real motion, keyframes with interpolated frames between, per-frame re-synthesised texture,
a mouth re-rendered over time — each made from a real clip and sharing its source, framing and
codec, so only the motion and texture over time separate them. It is two-sided by what it sees:
too smooth and too flickery are both forgeries in its training.

::

    window (L, S, S) ─ drop repeated frames ─ per half of the face: log E2/E1 at S² and at S/4²,
        log (lag-2 change / lag-1 change), log fine-detail share of the change
    ─ standardised (``feature_mean``, ``feature_std``: the training pool's) ─ Linear → ReLU
    ─ Linear → the window's log-odds; the sample's is the mean over its valid windows.

Why statistics and not a convolutional encoder over the frames: measured on ``../shared/train``
(55 real clips, 660 forged and repackaged samples), a (2+1)D convolutional encoder over frame
differences learned the pseudo-fakes (training loss 0.48) and anti-generalised to the labelled
fakes of unseen generators (validation AUC 0.53 → 0.42 from step 100 to 300; talking heads
0.39 → 0.32), while this head on motion statistics reached 0.82 (talking heads 0.88): with so
few real clips, the convolution learns the clips' own texture; the statistics are ratios that
no clip's look or motion amplitude sets. The energy of the change (log E1) is left out: it
separates sources, not forgeries (validation 0.65-0.71 with it).

A window needs ``MIN_FRAMES`` distinct frames; a track without one (a still face) takes
``still_logit``. Repeated frames (15 fps doubled to 30, pulldown) are dropped first with
temporal_band's rule, so the statistics are between distinct frames.
"""

from __future__ import annotations

import torch
from torch import nn

from models.detector import DetectorModel
from models.registry import register_model
from models.temporal_band import example_windows, window_features
from models.temporal_net_io import TemporalNetConfig, TemporalNetIO

__all__ = ["TemporalNet", "TemporalNetConfig"]


@register_model("temporal_net", TemporalNetConfig)
class TemporalNet(TemporalNetIO, DetectorModel):
    def __init__(self, config: TemporalNetConfig | None = None):
        super().__init__()
        cfg = config or TemporalNetConfig()
        self.config = cfg
        d = cfg.num_features
        # the training pool's feature statistics (set by train.temporal_net_fit)
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        self.hidden = nn.Linear(d, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, 1)

    def forward_features(
        self, windows: torch.Tensor, frame_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, W, L, S, S), (B, W, L) → each window's motion statistics (B, W, D) and validity (B, W)."""
        cfg = self.config
        return window_features(windows, frame_mask, cfg.split, cfg.feature_names, cfg.dup_rel, cfg.dup_abs)

    def forward_head(self, features: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Statistics (B, W, D), validity (B, W) → the sample's log-odds (B, 1) and each window's
        (B, W; NaN where invalid)."""
        z = (features - self.feature_mean) / self.feature_std
        window_logits = self.out(self.dropout(torch.relu(self.hidden(z)))).squeeze(-1)
        window_logits = torch.where(valid > 0.5, window_logits, torch.zeros_like(window_logits))
        count = valid.sum(1)
        mean = window_logits.sum(1) / count.clamp(min=1.0)
        logit = torch.where(count > 0, mean, torch.full_like(mean, self.config.still_logit))
        nan = torch.full_like(window_logits, float("nan"))
        return logit.reshape(-1, 1), torch.where(valid > 0.5, window_logits, nan)

    def forward(self, windows: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features, valid = self.forward_features(windows, frame_mask)
        logit, window_logits = self.forward_head(features, valid)
        return logit, window_logits, features

    def set_feature_scaling(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp(min=1e-4))

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        cfg = self.config
        return example_windows(batch, cfg.windows, cfg.window_frames, cfg.img_size, seed)
