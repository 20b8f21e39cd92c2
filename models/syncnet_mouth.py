"""A compact SyncNet on the lower face: the sync model this project trains and ships.

Why not the official layout (``models.syncnet``): its 3-D convolutions on whole 224x224 faces
cost ~1.6 GMAC per window and ~50 MB of weights, too slow to train on CPU and too big to ship.
This one follows Wav2Lip's sync expert instead: the 5 frames of a lip window are stacked as
channels (15) and run through 2-D convolutions on the lower-face region only, at half
resolution (48x64 from rows 84..180, columns 48..176 of the 224x224 track crop, where the
mouth sits with ``TrackConfig.crop_scale`` 0.4); the audio tower reads the same 0.2 s MFCC
window (13x20). Both embeddings are L2-normalised, so distance is a function of cosine
similarity. BatchNorm (see ``_block``).

Interface: the same as ``models.syncnet.SyncNet`` (``forward_lip`` takes (B, 3, 5, 224, 224)
BGR 0..255 face crops, ``forward_aud`` (B, 1, 13, 20) MFCCs), so ``preprocess.latency``
scores with either. The crop happens inside the network (``mouth_region``), and training
caches the output of that same function, so the crop is identical at training and inference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models.onnx_export import OnnxSpec
from models.registry import config_from_dict, register_model

ARCH = "syncnet_mouth"
FACE_SIZE = 224  # the track crops' size (TrackConfig.crop_size) this crop is defined on
MOUTH_BOX = (84, 180, 48, 176)  # top, bottom, left, right in the 224x224 crop
POOL = 2  # the region is average-pooled by this factor: 96x128 -> 48x64
MOUTH_SIZE = ((MOUTH_BOX[1] - MOUTH_BOX[0]) // POOL, (MOUTH_BOX[3] - MOUTH_BOX[2]) // POOL)
FRAMES = 5
LIP_INPUT = (3, FRAMES, FACE_SIZE, FACE_SIZE)
AUDIO_INPUT = (1, 13, 20)
MFCC_SCALE = 10.0  # MFCCs span about -40..30 (c0 is the log energy): brought near unit range


def mouth_region(faces: torch.Tensor, margin: int = 0) -> torch.Tensor:
    """(..., 224, 224) float → (..., 48 + 2 * margin, 64 + 2 * margin): the lower-face box grown
    by ``margin`` pooled pixels per side (training caches a margin for scale/shift jitter; the
    centre of a margin crop equals the margin-0 crop exactly), average-pooled by 2."""
    if faces.shape[-2:] != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"mouth_region needs {FACE_SIZE}x{FACE_SIZE} face crops, got {tuple(faces.shape)}")
    top, bottom, left, right = MOUTH_BOX
    m = margin * POOL
    if top - m < 0 or left - m < 0 or bottom + m > FACE_SIZE or right + m > FACE_SIZE:
        raise ValueError(f"margin {margin} reaches outside the face crop")
    region = faces[..., top - m : bottom + m, left - m : right + m]
    lead = region.shape[:-2]
    pooled = F.avg_pool2d(region.reshape(-1, 1, *region.shape[-2:]), POOL)
    return pooled.reshape(*lead, *pooled.shape[-2:])


def _block(cin: int, cout: int, stride: int | tuple[int, int] = 1) -> nn.Sequential:
    # BatchNorm, not GroupNorm: within one clip the windows differ only by the mouth's motion and
    # the sound, and per-sample norms leave every embedding dominated by one shared direction
    # (cosine 0.99 between any two at initialisation); the softmax over offsets then learnt
    # nothing in 150 steps, where batch statistics (which remove that direction) learn at once.
    # Training batches hold 32 lip windows from 8 clips; inference uses the running statistics.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def _head(channels: int, size: tuple[int, int], dim: int, kind: str) -> list[nn.Module]:
    if kind == "pool":
        return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, dim)]
    return [nn.Flatten(), nn.Linear(channels * size[0] * size[1], dim)]


def audio_tower(width: int, dim: int, head: str) -> nn.Sequential:
    """(B, 1, 13, 20) scaled MFCC windows (``scale_mfcc``) → (B, dim), not yet normalised. Its
    own function so another detector (``models.mds``) can run this layout and start from the
    shipped weights' ``aud.*``."""
    w = width
    return nn.Sequential(
        _block(1, w),  # 13x20
        _block(w, 2 * w, (1, 2)),  # 13x10
        _block(2 * w, 4 * w, 2),  # 7x5
        _block(4 * w, 8 * w, 2),  # 4x3
        *_head(8 * w, (4, 3), dim, head),
    )


def scale_mfcc(mfcc: torch.Tensor, c0_floor: float | None) -> torch.Tensor:
    """Raw MFCC windows (B, 1, 13, T) as the audio tower reads them: coefficient 0 floored at
    ``c0_floor`` (None: not floored), everything divided by ``MFCC_SCALE``."""
    if c0_floor is not None:
        floor = torch.full_like(mfcc[:, :, :1], c0_floor)
        mfcc = torch.cat([torch.maximum(mfcc[:, :, :1], floor), mfcc[:, :, 1:]], dim=2)
    return mfcc / MFCC_SCALE


class SyncAudioStream(nn.Module):
    """(N, 1, 13, 20) raw MFCC windows → (N, embed_dim), unnormalised: this model's audio tower
    (``aud.*`` keys as here) inside another detector (``models.mds``, ``models.av_attention``),
    which ``load_from_sync_model`` starts from the shipped sync weights."""

    def __init__(self, width: int, embed_dim: int, c0_floor: float | None):
        super().__init__()
        self.width, self.embed_dim, self.c0_floor = width, embed_dim, c0_floor
        self.aud = audio_tower(width, embed_dim, "flatten")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aud(scale_mfcc(x, self.c0_floor))

    def load_from_sync_model(self, path: str, owner: str) -> None:
        """Copy the audio tower of a ``syncnet_mouth`` model (a weights name or path); a
        ``ValueError`` naming ``owner`` and every setting that differs when it does not fit."""
        from models.syncnet import load_syncnet  # models.syncnet registers this module's model

        sync = load_syncnet(path)
        if not isinstance(sync, SyncNetMouth):
            raise ValueError(f"{owner}: {path} is not a {ARCH} model ({type(sync).__name__})")
        want = sync.config
        mismatch = {
            name: (ours, theirs)
            for name, ours, theirs in (
                ("width", self.width, want.width),
                ("embed_dim", self.embed_dim, want.embed_dim),
                ("c0_floor", self.c0_floor, want.c0_floor),
                ("head", "flatten", want.head),
            )
            if ours != theirs
        }
        if mismatch:
            raise ValueError(
                f"{owner}: {path}'s audio tower does not fit this config (ours, theirs): {mismatch}"
            )
        self.aud.load_state_dict(sync.aud.state_dict())


@dataclass(frozen=True)
class SyncNetMouthConfig:
    embed_dim: int = 128
    width: int = 24  # channels of the first lip stage; later stages double it (capped at 8x)
    # Floor of MFCC coefficient 0 (log frame energy). Digital silence (the search's padding, a
    # muted track) gives log(eps) = -36 against ~5..25 for any recorded sound: unfloored, those
    # windows dominate the first layer's batch statistics. None: no floor.
    c0_floor: float | None = None
    # "flatten": the last 3x4 (lip) / 4x3 (audio) maps go whole into the embedding layer, keeping
    # where in the mouth and when in the 0.2 s window a feature fired; "pool" averages them away.
    head: str = "pool"

    def __post_init__(self) -> None:
        if self.head not in ("pool", "flatten"):
            raise ValueError(f"syncnet_mouth head must be 'pool' or 'flatten', got {self.head!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "embed_dim": self.embed_dim,
            "width": self.width,
            "c0_floor": self.c0_floor,
            "head": self.head,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SyncNetMouthConfig:
        return config_from_dict(cls, data, ARCH)


@register_model(ARCH, SyncNetMouthConfig)
class SyncNetMouth(nn.Module):
    """``forward(video, audio)`` → ``(lip_emb, aud_emb)``, unit-length rows.

    video: (B, 3, 5, 224, 224) float BGR 0..255 face crops (``models.syncnet``'s layout);
    audio: (B', 1, 13, 20) MFCCs. ``forward_mouth`` takes the cropped (B, 3, 5, 48, 64) input.
    """

    def __init__(self, config: SyncNetMouthConfig | None = None):
        super().__init__()
        self.config = config or SyncNetMouthConfig()
        w, d = self.config.width, self.config.embed_dim
        self.lip = nn.Sequential(
            _block(3 * FRAMES, w, 2),  # 24x32 (the 48x64 input holds few details a stride-1 conv would add)
            _block(w, 2 * w, 2),  # 12x16
            _block(2 * w, 2 * w),
            _block(2 * w, 4 * w, 2),  # 6x8
            _block(4 * w, 4 * w),
            _block(4 * w, 8 * w, 2),  # 3x4
            *_head(8 * w, (3, 4), d, self.config.head),
        )
        self.aud = audio_tower(w, d, self.config.head)

    def forward_mouth(self, mouth: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 48, 64) BGR 0..255 → (B, D)."""
        b = mouth.shape[0]
        x = (mouth / 255.0 - 0.5) / 0.25
        return F.normalize(self.lip(x.reshape(b, 3 * FRAMES, *mouth.shape[-2:])), dim=1)

    def forward_lip(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_mouth(mouth_region(video))

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.aud(scale_mfcc(mfcc, self.config.c0_floor)), dim=1)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_lip(video), self.forward_aud(audio)

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return torch.rand(batch, *LIP_INPUT, generator=g) * 255, torch.randn(
            batch, *AUDIO_INPUT, generator=g
        ) * 10

    def onnx_spec(self, batch: int = 2, seed: int = 0) -> OnnxSpec:
        return OnnxSpec.batch_first(("video", "audio"), ("lip", "aud"), self.example_inputs(batch, seed))
