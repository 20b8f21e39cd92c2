"""The attention-fusion audio-visual detector: after Chumachenko et al., "Self-attention fusion
for audiovisual emotion recognition with incomplete data" (ICPR 2022), adapted to real/fake.

::

    frames (B,T,3,s,s) ─ per-frame CNN ─ (B,T,d) ─ temporal conv 1 ─┐         ┌─ temporal conv 2 ─ v (B,T,d) ─┐
                                                                     ├─ cross ─┤                                ├─ per frame:
    mfcc (B,13,T·W) ─ 1-D conv 1 over each frame's window ─ (B,T·W/4,d) ┘ attn  └─ 1-D conv 2 ─ a (B,T,d) ──────┘ [v;a] → MLP
    audio_present (B,1): 0 → the audio path is replaced by learned "no audio" vectors           → frame_logits (B,T)
                                                                                     logits (B,1) = mean over frames

- **Streams.** Vision: each face frame through a 2-D CNN (RetinaFace's MobileNetV2 body, as
  ``models.mobilenet_frames``, so ``--init retinaface_mobilenetv2`` starts it from the face
  detector; or ``backbone="compact"``, a four-layer CNN for tests and quick runs), then a
  residual 1-D convolution over time. Audio: a 1-D conv stack over the MFCC window of each frame.
- **Intermediate cross-modal attention** (the paper's intermediate fusion): mid-network, the
  frame tokens attend to the audio tokens and the audio tokens to the frame tokens (multi-head
  attention, residual, pre-norm), and each stream then continues through its second stage.
  Both streams carry the same sinusoidal encoding of the frame's place in the sample (plus a
  learned offset inside a frame's audio window), so attention can line sound up with lips.
- **Classification from pooled features.** Each frame's fused feature, its vision token beside
  its own audio window's token, goes through a shared MLP; a linear unit on the mean of those
  features is the sample's logit. Linear after the mean equals the mean of the linear unit on
  each frame, so the per-frame values (``frame_logits``, what ``time_logits`` returns for
  ``--per-second``) are exactly the parts the sample's logit averages.
- **Missing audio.** ``audio_present`` (0 when the sample has no MFCC) switches the audio path
  off with ``torch.where``: the MFCC is zeroed before it is read, the frames' cross-attended
  audio context becomes a learned vector and each frame's audio feature another; nothing the
  MFCC holds can reach the outputs, so a silent video scores from vision alone.
- **Modality dropout** (``audio_dropout``): in training mode each sample's audio is switched
  off with that probability (the same ``where`` path), so the no-audio branch is trained and
  the model cannot lean on audio alone. Eval mode (validation, export, scoring) never drops:
  the ONNX graph is deterministic. Vision is never dropped: a sample exists only because a
  face track does.

Audio input: the whole clip's MFCC (13 × 100 Hz) normalised per coefficient over the clip
(cepstral mean and variance normalisation: a recording's channel and level drop out), then,
for each chosen frame, the ``audio_window`` columns centred on that frame's time (100 Hz as
cached, what SyncNet reads). Columns before the start or past the end of the audio are zero.
Why windows and not the whole span resampled to a fixed length: a 16 s track's 8 frames lie
~2 s apart, and resampling that span to a CPU-sized length would average 0.25 s of audio
into each column, the very timescale on which lips and sound disagree in a lip-sync fake.
The windows cover the span between frames whenever the frames lie closer than a window (a
short track: a one-second clip's frames lie 0.13 s apart).

The audio path can instead be the shipped sync model's audio tower (``audio_tower=
"syncnet_mouth"``; ``--init syncnet`` copies it, ``freeze_audio`` keeps it as it came, BatchNorm
statistics included): each frame's 0.2 s window (``audio_window=20``), raw MFCC as that model
reads it, becomes one sync embedding (unit length, as the sync model compares them), projected
to a token; the tokens then cross-attend with
the frames as above. The frames then meet an embedding that already says which mouth shapes
go with the sound, the ablation the SyncNet issue asked for (README, "The audio-visual half").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from core.preprocess_config import AudioConfig, PreprocessConfig
from core.preprocess_data import Sample
from models.detector import DetectorModel
from models.face_frames_io import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Region,
    check_region_and_size,
    face_frames,
    normalise,
    pick_frames,
    region_from_json,
)
from models.mobilenetv2 import MobileNetV2
from models.registry import FlatConfig, register_model
from models.sync_archs import is_sync_weights
from models.syncnet_mouth import AUDIO_INPUT as SYNC_AUDIO_INPUT
from models.syncnet_mouth import SyncAudioStream

BACKBONES = ("mobilenetv2", "compact")
AUDIO_TOWERS = ("mfcc", "syncnet_mouth")
SYNC_WINDOW = SYNC_AUDIO_INPUT[-1]  # MFCC columns the sync model's audio tower reads (0.2 s)
# The cached MFCC's timing (``core.preprocess_config.AudioConfig``; ``preprocess_problem`` refuses
# other settings): column c is the 25 ms frame starting at c * 10 ms.
MFCC_RATE = 1.0 / AudioConfig().mfcc_hop_s
MFCC_CENTRE_S = AudioConfig().mfcc_win_s / 2
DEFAULT_FPS = 25.0  # when a sample's meta carries no frame rate (still images carry no audio)


@dataclass(frozen=True)
class AvAttentionConfig(FlatConfig):
    arch: ClassVar[str] = "av_attention"
    num_frames: int = 8  # face crops per sample (evenly spaced over the track), each one token
    img_size: int = 96  # the face region is resized to this (a multiple of 32)
    region: Region = (
        0.0,
        16 / 224,
        192 / 224,
    )  # top, left, side of the crop: the face (as mobilenetv2_frames)
    backbone: str = "mobilenetv2"  # "mobilenetv2" (RetinaFace's body) or "compact"
    frozen_blocks: int = 6  # mobilenetv2: stem + this many blocks keep their weights
    dim: int = 96  # token width of both streams
    heads: int = 4
    n_mfcc: int = 13
    audio_window: int = 32  # MFCC columns (100 Hz) around each frame: 0.32 s; a multiple of 4
    dropout: float = 0.3
    audio_dropout: float = 0.3  # training only: P(a sample's audio is switched off)
    # False: the audio path is switched off for every sample (the vision-only ablation); the
    # inputs stay the same, so weights, JSON and ONNX keep one contract either way
    use_audio: bool = True
    # "mfcc": the 1-D conv stack above on normalised MFCC; "syncnet_mouth": the shipped sync
    # model's audio tower (width ``audio_width``, ``sync_embed_dim`` wide, flatten head) on raw
    # MFCC, one token per frame from its 0.2 s window (``audio_window`` must be 20)
    audio_tower: str = "mfcc"
    audio_width: int = 24
    sync_embed_dim: int = 128
    audio_c0_floor: float = 0.0
    freeze_audio: bool = False  # keep the audio tower as initialised (weights and BatchNorm statistics)

    def __post_init__(self):
        check_region_and_size(self.region, self.img_size)
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.num_frames < 1 or not 0 <= self.frozen_blocks <= 16:
            raise ValueError(
                f"num_frames {self.num_frames} >= 1 and 0 <= frozen_blocks {self.frozen_blocks} <= 16"
            )
        if self.dim % (2 * self.heads):
            raise ValueError(f"dim {self.dim} must be a multiple of 2 * heads ({2 * self.heads})")
        if self.audio_window < 4 or self.audio_window % 4:
            raise ValueError(f"audio_window {self.audio_window} must be a positive multiple of 4")
        if not 0 <= self.audio_dropout < 1:
            raise ValueError(f"audio_dropout {self.audio_dropout} must be in [0, 1)")
        if self.audio_tower not in AUDIO_TOWERS:
            raise ValueError(f"audio_tower must be one of {AUDIO_TOWERS}, got {self.audio_tower!r}")
        if self.audio_tower == "syncnet_mouth" and self.audio_window != SYNC_WINDOW:
            raise ValueError(
                f"audio_tower syncnet_mouth reads {SYNC_WINDOW} MFCC columns: set audio_window={SYNC_WINDOW}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AvAttentionConfig:
        return super().from_dict(region_from_json(data))


# --- inputs from a Sample ----------------------------------------------------------------------


def frame_times(sample: Sample, num_frames: int) -> np.ndarray:
    """(num_frames,) seconds from the clip's start of the face crops the model reads (the ones
    ``face_frames`` picks)."""
    fps = sample.meta.fps if sample.meta.fps > 0 else DEFAULT_FPS
    picks = pick_frames(len(sample.face_frame_indices), num_frames)
    return np.asarray(sample.face_frame_indices, np.float64)[picks] / fps


def normalised_mfcc(mfcc: np.ndarray) -> np.ndarray:
    """(C, N) → per-coefficient zero mean, unit variance over the clip (flat coefficients: 0)."""
    x = np.asarray(mfcc, np.float64)
    std = x.std(axis=1, keepdims=True)
    return ((x - x.mean(axis=1, keepdims=True)) / np.where(std > 1e-6, std, 1.0)).astype(np.float32)


def mfcc_windows(
    mfcc: np.ndarray, times: np.ndarray, fps: float, window: int, normalise: bool = True
) -> tuple[np.ndarray, bool]:
    """The clip's MFCC (C, N) → (C, len(times) * window): for each frame time, the ``window``
    columns centred on the middle of that video frame (normalised over the clip, or raw), zero
    outside the audio; and whether any column came from the audio."""
    channels, n = mfcc.shape
    out = np.zeros((channels, len(times), window), np.float32)
    if n == 0:
        return out.reshape(channels, -1), False
    norm = normalised_mfcc(mfcc) if normalise else np.asarray(mfcc, np.float32)
    # column c is centred at c / rate + MFCC_CENTRE_S; the frame at t shows t .. t + 1 / fps
    centre = np.round((times + 0.5 / fps - MFCC_CENTRE_S) * MFCC_RATE).astype(int)
    found = False
    for k, c in enumerate(centre):
        lo, hi = c - window // 2, c - window // 2 + window
        a, b = max(lo, 0), min(hi, n)
        if b > a:
            out[:, k, a - lo : b - lo] = norm[:, a:b]
            found = True
    return out.reshape(channels, -1), found


# --- the network ------------------------------------------------------------------------------


def time_encoding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(N,) positions in [0, 1] → (N, dim) sines and cosines, from half a cycle over the sample
    to ``dim / 4`` cycles (fine enough to tell neighbouring frames apart)."""
    freqs = math.pi * torch.logspace(0, math.log2(dim / 2), dim // 2, base=2.0)
    angles = positions[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class CompactCNN(nn.Module):
    """Four stride-2 3×3 convolutions (BatchNorm, ReLU) and a global mean: a small per-frame
    body for tests and quick CPU runs."""

    out_features = 64

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for cout in (16, 32, 64, 64):
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


class MobileNetBody(nn.Module):
    """RetinaFace's MobileNetV2; its three feature maps mean-pooled and concatenated (as
    ``models.mobilenet_frames``: blending traces live in the stride-8 map)."""

    out_features = sum(MobileNetV2.out_channels)

    def __init__(self):
        super().__init__()
        self.body = MobileNetV2()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.pooled(x)


class TemporalConv(nn.Module):
    """Residual pre-norm 1-D convolution over a token sequence (B, N, d), kernel 3."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, 3, padding=1)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.norm(x).transpose(1, 2)).transpose(1, 2)
        return x + self.drop(self.act(y))


class CrossAttention(nn.Module):
    """Pre-norm multi-head attention of ``query`` tokens over ``context`` tokens, then a
    feed-forward layer; returns what is added to the query (the caller decides whether to)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(context)
        attended = self.attn(self.norm_q(query), kv, kv, need_weights=False)[0]
        return self.drop(attended + self.ff(query + attended))


@register_model("av_attention", AvAttentionConfig)
class AvAttentionDetector(DetectorModel):
    """Inputs: ``frames`` (B, T, 3, s, s) ImageNet-normalised, ``mfcc`` (B, 13, T·W),
    ``audio_present`` (B, 1). Outputs: ``logits`` (B, 1) fake log-odds, ``frame_logits`` (B, T)."""

    input_names = ("frames", "mfcc", "audio_present")
    output_names = ("logits", "frame_logits")
    video_aggregation = "max"  # a video is fake if any of its faces is

    def __init__(self, config: AvAttentionConfig | None = None):
        super().__init__()
        cfg = config or AvAttentionConfig()
        self.config = cfg
        d, t = cfg.dim, cfg.num_frames
        self.cnn = MobileNetBody() if cfg.backbone == "mobilenetv2" else CompactCNN()
        self.frame_proj = nn.Linear(self.cnn.out_features, d)
        self.video1 = TemporalConv(d, cfg.dropout)
        self.video2 = TemporalConv(d, cfg.dropout)
        if cfg.audio_tower == "syncnet_mouth":
            # per frame window: one sync embedding → one token (stage 1) → a per-token MLP (stage 2)
            self.audio_sync = SyncAudioStream(cfg.audio_width, cfg.sync_embed_dim, cfg.audio_c0_floor)
            self.audio1 = nn.Sequential(nn.Linear(cfg.sync_embed_dim, d), nn.GELU())
            self.audio2 = nn.Sequential(nn.Linear(d, d), nn.GELU())
        else:
            # per frame window: W columns → W/2 tokens (stage 1) → W/4 → one per frame (stage 2)
            self.audio1 = nn.Sequential(
                nn.Conv1d(cfg.n_mfcc, d, 5, padding=2),
                nn.GELU(),
                nn.Conv1d(d, d, 3, stride=2, padding=1),
                nn.GELU(),
            )
            self.audio2 = nn.Sequential(nn.Conv1d(d, d, 3, stride=2, padding=1), nn.GELU())
            self.audio_offset = nn.Parameter(torch.zeros(cfg.audio_window // 2, d))  # place inside a window
        self.video_from_audio = CrossAttention(d, cfg.heads, cfg.dropout)
        self.audio_from_video = CrossAttention(d, cfg.heads, cfg.dropout)
        self.no_audio_context = nn.Parameter(torch.zeros(d))  # what frames add when there is no audio
        self.no_audio_frame = nn.Parameter(torch.zeros(d))  # a frame's audio feature without audio
        self.frame_mlp = nn.Sequential(
            nn.LayerNorm(2 * d), nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(cfg.dropout)
        )
        self.head = nn.Linear(d, 1)
        positions = (torch.arange(t, dtype=torch.float32) + 0.5) / t  # each frame's place in the sample
        self.register_buffer("frame_position", time_encoding(positions, d), persistent=False)
        for module in self.frozen_modules():
            module.requires_grad_(False)

    # --- what the data path calls (class methods: no network needed) ---

    @classmethod
    def sample_inputs(cls, sample: Sample, config: AvAttentionConfig) -> dict[str, np.ndarray]:
        rgb = face_frames(sample.faces, config.num_frames, config.img_size, sample.meta.video, config.region)
        frames = normalise(rgb, IMAGENET_MEAN, IMAGENET_STD).transpose(0, 3, 1, 2)
        if len(sample.face_frame_indices) != len(sample.faces):
            raise ValueError(
                f"{sample.meta.video}: {len(sample.faces)} faces but {len(sample.face_frame_indices)} frame indices"
            )
        mfcc = np.asarray(sample.mfcc, np.float32).reshape(config.n_mfcc, -1)
        fps = sample.meta.fps if sample.meta.fps > 0 else DEFAULT_FPS
        windows, present = mfcc_windows(
            mfcc,
            frame_times(sample, config.num_frames),
            fps,
            config.audio_window,
            normalise=config.audio_tower == "mfcc",  # the sync tower reads raw MFCC, as it was trained
        )
        return {
            "frames": np.ascontiguousarray(frames),
            "mfcc": windows,
            "audio_present": np.array([1.0 if present else 0.0], np.float32),
        }

    @classmethod
    def time_columns(cls, sample: Sample, config: AvAttentionConfig) -> np.ndarray:
        return frame_times(sample, config.num_frames)

    @staticmethod
    def time_logits(outputs: Sequence[Any]) -> Any:
        return outputs[1]

    @classmethod
    def preprocess_problem(cls, config: AvAttentionConfig, preprocess: PreprocessConfig) -> str | None:
        audio = preprocess.audio
        if audio.n_mfcc != config.n_mfcc or 1.0 / audio.mfcc_hop_s != MFCC_RATE:
            return (
                f"the model reads {config.n_mfcc} MFCCs at {MFCC_RATE:g} Hz, but preprocessing makes "
                f"{audio.n_mfcc} at {1.0 / audio.mfcc_hop_s:g} Hz"
            )
        return None

    # --- the network ---

    def frozen_modules(self) -> list[nn.Module]:
        """Layers that keep their weights and BatchNorm statistics: the MobileNetV2 stem and first
        ``frozen_blocks`` blocks, and the sync audio tower with ``freeze_audio``."""
        cfg = self.config
        frozen: list[nn.Module] = []
        if cfg.backbone == "mobilenetv2" and cfg.frozen_blocks:
            frozen += [self.cnn.body.stem, *self.cnn.body.blocks[: cfg.frozen_blocks]]
        if cfg.audio_tower == "syncnet_mouth" and cfg.freeze_audio:
            frozen.append(self.audio_sync)
        return frozen

    def train(self, mode: bool = True) -> AvAttentionDetector:
        super().train(mode)
        for module in self.frozen_modules():  # frozen layers keep their running statistics too
            module.eval()
        return self

    def forward(
        self, frames: torch.Tensor, mfcc: torch.Tensor, audio_present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self._check_shapes(frames, mfcc, audio_present)
        t, w, d = cfg.num_frames, cfg.audio_window, cfg.dim
        # with use_audio off every flag reads 0 (a product, not a constant: the graph keeps its inputs)
        present = audio_present.reshape(-1, 1, 1) * (1.0 if cfg.use_audio else 0.0) > 0.5
        if (
            self.training and cfg.audio_dropout > 0
        ):  # modality dropout (never in eval: export stays deterministic)
            present = present & (torch.rand(present.shape, device=present.device) >= cfg.audio_dropout)
        # where(), not a 0/1 product: NaN or inf in an absent sample's MFCC cannot leak either
        mfcc = torch.where(present, mfcc, torch.zeros((), dtype=mfcc.dtype))

        video = self.frame_proj(self.cnn(frames.reshape(-1, *frames.shape[2:]))).reshape(-1, t, d)
        video = self.video1(video + self.frame_position)
        windows = mfcc.reshape(-1, cfg.n_mfcc, t, w).transpose(1, 2).reshape(-1, cfg.n_mfcc, w)
        sync = cfg.audio_tower == "syncnet_mouth"
        if sync:  # one token per frame: its window's sync embedding, unit length as the sync model
            # compares them (raw, its norm is ~55: the tokens would drown the frames' features in
            # the frame MLP's shared LayerNorm, and the run learnt nothing from faces)
            embedding = F.normalize(self.audio_sync(windows.unsqueeze(1)), dim=1)
            audio = self.audio1(embedding).reshape(-1, t, d)
            audio = audio + self.frame_position
        else:
            audio = self.audio1(windows).transpose(1, 2).reshape(-1, t, w // 2, d)  # (B, T, W/2, d)
            audio = (audio + self.frame_position[:, None] + self.audio_offset).reshape(-1, t * (w // 2), d)

        # intermediate fusion: each stream attends to the other's stage-1 tokens, then continues
        video_context = self.video_from_audio(video, audio)
        audio = audio + self.audio_from_video(audio, video)
        video = self.video2(video + torch.where(present, video_context, self.no_audio_context))
        if sync:
            audio = self.audio2(audio)
        else:
            audio = self.audio2(audio.reshape(-1, w // 2, d).transpose(1, 2)).mean(dim=2).reshape(-1, t, d)
        audio = torch.where(present, audio, self.no_audio_frame)  # each frame's own audio window

        features = self.frame_mlp(torch.cat([video, audio], dim=2))  # (B, T, d)
        frame_logits = self.head(features).squeeze(2)
        # the linear head of the frames' mean feature, computed as the mean of its frame values
        return frame_logits.mean(dim=1, keepdim=True), frame_logits

    def _check_shapes(self, frames: torch.Tensor, mfcc: torch.Tensor, audio_present: torch.Tensor) -> None:
        cfg = self.config
        want = {
            "frames": (frames, (cfg.num_frames, 3, cfg.img_size, cfg.img_size)),
            "mfcc": (mfcc, (cfg.n_mfcc, cfg.num_frames * cfg.audio_window)),
            "audio_present": (audio_present, (1,)),
        }
        batch = frames.shape[0]
        for name, (tensor, shape) in want.items():
            if tuple(tensor.shape) != (batch, *shape):
                raise ValueError(
                    f"{name} must be (B, {', '.join(map(str, shape))}), got {tuple(tensor.shape)}"
                )

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random frames and MFCC; every other sample has no audio, so the export traces and the
        parity check runs both paths."""
        cfg = self.config
        g = torch.Generator().manual_seed(seed)
        frames = torch.randn(batch, cfg.num_frames, 3, cfg.img_size, cfg.img_size, generator=g)
        mfcc = torch.randn(batch, cfg.n_mfcc, cfg.num_frames * cfg.audio_window, generator=g)
        present = (torch.arange(batch) % 2 == 0).float().reshape(batch, 1)
        return frames, mfcc, present

    def init_from_upstream(self, path: str) -> None:
        """Start the MobileNetV2 body from a RetinaFace-MobileNetV2 checkpoint of ours (``body.*``),
        or, given a sync model (``weights/syncnet``), the ``syncnet_mouth`` audio tower from its own."""
        if is_sync_weights(path):
            if self.config.audio_tower != "syncnet_mouth":
                raise ValueError(
                    f"av_attention: --init {path} starts the audio tower from a sync model; "
                    "set audio_tower=syncnet_mouth,audio_window=20"
                )
            self.audio_sync.load_from_sync_model(path, "av_attention")
            return
        if self.config.backbone != "mobilenetv2":
            raise ValueError(
                f"backbone {self.config.backbone!r} has no upstream checkpoint (use mobilenetv2)"
            )
        self.cnn.body.load_from_retinaface(path)
