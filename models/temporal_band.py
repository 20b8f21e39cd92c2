"""A band of normal real motion: a one-class temporal detector for rendered faces.

Generated talking heads have no blend seam for a frame detector to find; what gives them away
is how the face changes from frame to frame. Warp and motion-latent generators (SadTalker,
VASA-1, EDTalk, ...) move too smoothly; per-frame diffusion renderers (EMO, Hallo, AniPortrait,
EchoMimic) flicker more than a camera does. One threshold on smoothness catches one family and
misses the other, so this detector is two-sided by construction: it learns where REAL footage
lies in a few motion statistics and scores the distance from there, so too smooth and too
flickery both score as fake. It never sees a fake: the band is fitted on real clips alone
(``python -m train fit-temporal``), re-encoded at random so packaging does not set the band.

Input: a sample preprocessed with ``SampleConfig.sampling = "windows"`` — runs of consecutive
frames, each cropped with one still box (``preprocess.tracks.steady_track``). Per window the
graph

1. takes the grayscale face square at ``img_size``² (``region`` of the crop, as the frame
   detectors read it);
2. drops repeated frames: a frame whose mean absolute change from the one before is below
   ``dup_rel`` × the window's mean change (or ``dup_abs``) is a copy — 15 fps content doubled
   to 30, pulldown, a 24 fps source shown at 25 — and the window is closed up over it, so every
   difference below is between distinct frames (the effective frame rate, not the container's);
3. measures ``features`` in the upper and the lower half of the face (eyes vs mouth; or the
   whole square): by default only log E2/E1, the share of second-difference energy against the
   first-difference energy (0 for motion at constant speed, log 3 for independent noise per
   frame: the smoothness cue), at 32², where the face's motion rather than sensor grain sets
   it. The others (``FEATURES``: the same after 4×4 pooling, the change over two frames
   against one, log E1, E1's fine-detail share) were measured and not kept: log E1 separates
   sources, not forgeries, and the two-frame change reads the codec (README, "The temporal band");
4. scores the window by its Mahalanobis distance from the real windows' mean (``mean``,
   ``inv_cov``: buffers fitted on real footage), as an RMS z-score over the features.

The sample's statistic is the mean over its windows; ``logits`` = (statistic − ``offset``) ×
``scale`` (both fitted with the band: see ``train.temporal_fit``). A track with no window of 4
distinct frames (a still face: a photo in the shot, the reference image beside an animation)
has no motion to measure and takes ``still_statistic``, the median real sample's.
``window_logits`` gives each window's own log-odds (NaN where a window is padding or has under
4 distinct frames), which ``--per-second`` reads at the window's centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch.nn import functional as F

from models.detector import DetectorModel
from models.registry import register_model
from models.temporal_band_io import EPS, MIN_FRAMES, TemporalBandConfig, TemporalBandIO

__all__ = ["TemporalBand", "TemporalBandConfig"]


def drop_repeats(
    x: torch.Tensor, mask: torch.Tensor, dup_rel: float, dup_abs: float
) -> tuple[torch.Tensor, ...]:
    """Windows (N, L, H, W) with frame ``mask`` (N, L) → the same with repeated frames removed
    and the distinct ones moved to the front (their order kept), and the new mask.

    A frame repeats when its mean absolute change from the frame before is below ``dup_abs`` or
    ``dup_rel`` × the window's mean change; the first frame is always kept."""
    n, length = mask.shape
    change = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(2, 3))  # (N, L-1)
    pair = mask[:, 1:] * mask[:, :-1]
    typical = (change * pair).sum(1, keepdim=True) / pair.sum(1, keepdim=True).clamp(min=1.0)
    copy = (change < torch.clamp(typical * dup_rel, min=dup_abs)).float() * pair
    keep = mask * torch.cat([torch.ones_like(mask[:, :1]), 1.0 - copy], dim=1)
    # stable compaction: kept frames first, in time order (argsort of position + L·dropped)
    position = torch.arange(length, dtype=x.dtype, device=x.device).unsqueeze(0)
    order = torch.argsort(position + length * (1.0 - keep), dim=1)
    gathered = torch.gather(x, 1, order[:, :, None, None].expand_as(x))
    count = keep.sum(1, keepdim=True)
    new_mask = (position < count).to(x.dtype)
    return gathered, new_mask


def example_windows(
    batch: int, windows: int, length: int, size: int, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Random windows of smoothly moving texture plus noise and their frame mask; sample i has
    ``1 + i % windows`` windows with data, the last one shorter, and every other frame of its first
    window repeated, so padding, short windows and the repeat dropping are exercised (the
    temporal detectors' export and parity inputs)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, windows, 1, size, size, generator=g)
    drift = torch.linspace(0, 1, length).reshape(1, 1, length, 1, 1) * torch.rand(
        batch, windows, 1, size, size, generator=g
    )
    x = (base + 0.1 * drift + 0.01 * torch.randn(batch, windows, length, size, size, generator=g)).clamp(0, 1)
    x[:, 0, 1::2] = x[:, 0, 0::2][:, : x[:, 0, 1::2].shape[1]]
    mask = torch.zeros(batch, windows, length)
    for i in range(batch):
        used = 1 + i % windows
        mask[i, :used] = 1.0
        mask[i, used - 1, max(MIN_FRAMES, length // 2) :] = 0.0
    return x * mask[..., None, None], mask


def _energy(d: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean squared value per pixel of differences (N, K, H, W) over the valid ones (mask (N, K))."""
    per_pixel = float(d.shape[2] * d.shape[3])
    return (d.pow(2).sum(dim=(2, 3)) * m).sum(1) / (m.sum(1).clamp(min=1.0) * per_pixel)


def motion_features(x: torch.Tensor, mask: torch.Tensor, features: Sequence[str]) -> torch.Tensor:
    """Windows (N, L, H, W) of distinct frames, the first ``mask.sum`` valid → (N, k) log
    features, in the order ``features`` names them (see ``FEATURES``)."""
    d1 = x[:, 1:] - x[:, :-1]
    m1 = mask[:, 1:] * mask[:, :-1]
    d2 = d1[:, 1:] - d1[:, :-1]
    m2 = m1[:, 1:] * m1[:, :-1]
    e1 = _energy(d1, m1)
    out = []
    for name in features:
        if name == "smooth":
            out.append(torch.log((_energy(d2, m2) + EPS) / (e1 + EPS)))
        elif name == "smooth_coarse":  # the same at a quarter of the resolution: motion, not grain
            h, w = x.shape[2] // 4, x.shape[3] // 4
            c = F.avg_pool2d(x.reshape(-1, 1, x.shape[2], x.shape[3]), 4).reshape(x.shape[0], -1, h, w)
            c1 = c[:, 1:] - c[:, :-1]
            out.append(torch.log((_energy(c1[:, 1:] - c1[:, :-1], m2) + EPS) / (_energy(c1, m1) + EPS)))
        elif name == "lag2":  # change over two frames vs one: 4 for steady motion, 1 for noise
            lag2 = x[:, 2:] - x[:, :-2]
            out.append(torch.log((_energy(lag2, m2) + EPS) / (e1 + EPS)))
        elif name == "energy":
            out.append(torch.log(e1 + EPS))
        elif name == "fine":
            flat = d1.reshape(-1, 1, x.shape[2], x.shape[3])
            local = F.avg_pool2d(flat, 3, stride=1, padding=1, count_include_pad=False)
            out.append(torch.log((_energy((flat - local).reshape(d1.shape), m1) + EPS) / (e1 + EPS)))
        else:
            raise ValueError(f"unknown temporal feature {name!r}")
    return torch.stack(out, dim=1)


def window_features(
    windows: torch.Tensor,
    frame_mask: torch.Tensor,
    split: str,
    features: Sequence[str],
    dup_rel: float,
    dup_abs: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, W, L, S, S), (B, W, L) → log motion ``features`` (B, W, D) of each window, in the
    upper and lower half of the face (``split`` "halves") or the whole square, measured after
    repeated frames are dropped; and validity (B, W): at least ``MIN_FRAMES`` distinct frames."""
    b, w, length, s, _ = windows.shape
    x = windows.reshape(b * w, length, s, s)
    mask = frame_mask.reshape(b * w, length)
    x, mask = drop_repeats(x, mask, dup_rel, dup_abs)
    parts = [x[:, :, : s // 2], x[:, :, s // 2 :]] if split == "halves" else [x]
    feats = torch.cat([motion_features(p, mask, features) for p in parts], dim=1)
    valid = (mask.sum(1) >= MIN_FRAMES).to(x.dtype)
    return feats.reshape(b, w, -1), valid.reshape(b, w)


@register_model("temporal_band", TemporalBandConfig)
class TemporalBand(TemporalBandIO, DetectorModel):
    """The band's network: see ``TemporalBandIO`` for its inputs and outputs."""

    def __init__(self, config: TemporalBandConfig | None = None):
        super().__init__()
        self.config = config or TemporalBandConfig()
        d = self.config.num_features
        # the real band: fitted by train.temporal_fit (identity until then)
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("inv_cov", torch.eye(d))

    # --- network ------------------------------------------------------------------------------

    def window_features(
        self, windows: torch.Tensor, frame_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        return window_features(windows, frame_mask, cfg.split, cfg.feature_names, cfg.dup_rel, cfg.dup_abs)

    def forward(self, windows: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cfg = self.config
        feats, valid = self.window_features(windows, frame_mask)
        z = feats - self.mean
        d2 = ((z @ self.inv_cov) * z).sum(-1) / float(cfg.num_features)
        distance = torch.sqrt(d2.clamp(min=0.0)) * valid
        count = valid.sum(1)
        statistic = distance.sum(1) / count.clamp(min=1.0)
        # no window to measure (a still face, a track of a few frames): no evidence, as a typical real
        statistic = torch.where(count > 0, statistic, torch.full_like(statistic, cfg.still_statistic))
        logit = (statistic - cfg.offset) * cfg.scale
        window_logits = torch.where(
            valid > 0.5, (distance - cfg.offset) * cfg.scale, torch.full_like(distance, float("nan"))
        )
        return logit.reshape(-1, 1), window_logits, feats, distance

    def set_band(
        self, mean: np.ndarray, inv_cov: np.ndarray, offset: float, scale: float, still_statistic: float = 0.0
    ) -> None:
        """Install a fitted band (``train.temporal_fit``)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.inv_cov.copy_(torch.as_tensor(inv_cov, dtype=torch.float32))
        self.config = replace(
            self.config, offset=float(offset), scale=float(scale), still_statistic=float(still_statistic)
        )

    # --- export -------------------------------------------------------------------------------

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        cfg = self.config
        return example_windows(batch, cfg.windows, cfg.window_frames, cfg.img_size, seed)
