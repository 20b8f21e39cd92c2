"""The audio-visual fusion detector: TimeSformer over face frames + an MLP over the latency vector.

::

    frames (B,3,T,H,W) ─ TimeSformer (mmaction2, divided space-time) ─ cls token (B,768) ─┐
    latency (B,33) ─ fixed scaling ─ MLP 33→16→8 ─┐                                        ├─ Linear → logits (B,2)
    has_latency (B,) ─ where(has, mlp, learned "no audio" embedding) ─────── (B,8) ───────┘

``use_latency=False`` (the ablation) treats every sample as one without latency.

Latency vector layout (``core.preprocess_data.Latency.vector``): ``2*vshift+1`` SyncNet distances,
then the offset (frames, in [-vshift, vshift]) and the confidence. With the official
``syncnet_v2`` distances sit around 5..15 and confidence in 0..10 (the config's defaults); the
shipped ``weights/syncnet`` (cosine distances) gives ~0.35..1.1 and 0..0.25, so a model trained
on it sets ``distance_*`` / ``confidence_*`` to match (``make train-fusion``'s ``FUSION_SCALE``).
They are centred and scaled by fixed constants kept in ``FusionConfig``
(and thus in the weights' JSON): a learned BatchNorm would be skewed by the zero vectors of
videos without audio, and a LayerNorm across the vector would erase the absolute distance
level that separates in-sync speech from dubbed or synthesised speech.

Mel frames (``audio_frames``): the challenge's reference design also cuts the log-mel into
``audio_frames`` chunks, renders each as an ``img_size``² three-channel image and appends them
to the face frames in time (``mel_frames``). Off by default (0): the latency vector
already carries the audio-visual agreement signal almost for free, while every mel frame adds a
frame of patch tokens to every layer. 4 mel frames on 8 face frames are 1.5× the tokens; on CPU
(2 threads, ViT-B, batch 1) that measured 1.4–1.5× the time (ONNX Runtime 7.8 → 10.8 s, torch
12.1 → 18.3 s, best of 7 on a loaded machine). Turn it on when training wants audio content.

Inputs (``FusionModel.sample_inputs``, what training and inference both call): face crops
normalised the way mmaction2's TimeSformer configs do (ImageNet mean/std on 0–255 RGB); with
``audio_frames > 0`` the log-mel spectrogram cut into that many chunks in time, each drawn as a
grey image (80 dB below the clip's loudest bin = black, low frequencies at the bottom) resized
to ``img_size``², appended after the face frames. A video's score is the maximum over its face
tracks' probabilities: a video is fake if any face in it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from core.image_ops import resize_linear
from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Sample
from models.detector import DetectorModel
from models.face_frames_io import IMAGENET_MEAN, IMAGENET_STD, face_frames, normalise
from models.mmaction_compat import build_timesformer
from models.registry import config_from_dict, load_state_dict_strictly, register_model
from models.timesformer_convert import load_timesformer_checkpoint

ARCH = "fusion_timesformer"
MEAN = np.array(IMAGENET_MEAN, np.float32)
STD = np.array(IMAGENET_STD, np.float32)
MEL_DYNAMIC_RANGE_DB = 80.0


@dataclass(frozen=True)
class FusionConfig:
    embed_dims: int = 768
    num_heads: int = 12
    num_layers: int = 12
    num_frames: int = 8  # face frames
    img_size: int = 224
    patch_size: int = 16
    audio_frames: int = 0  # mel-spectrogram frames appended after the face frames; 0 = off
    latency_dim: int = 33  # 2 * vshift + 1 distances + offset + confidence
    latency_hidden: int = 16
    latency_out: int = 8
    num_classes: int = 2
    dropout: float = 0.0  # before the head and after the position/time embeddings
    # False: the latency branch is switched off (every sample gets the "no audio" embedding), for
    # the ablation that shows what sync adds; the inputs stay the same, so weights, JSON and
    # ONNX keep one contract either way.
    use_latency: bool = True
    # Fixed latency scaling (see the module docstring).
    distance_center: float = 10.0
    distance_scale: float = 5.0
    confidence_center: float = 5.0
    confidence_scale: float = 5.0

    def __post_init__(self):
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dims % self.num_heads:
            raise ValueError(f"embed_dims {self.embed_dims} is not divisible by num_heads {self.num_heads}")
        if self.latency_dim < 3 or self.latency_dim % 2 == 0:
            raise ValueError(f"latency_dim {self.latency_dim} must be 2 * vshift + 3 (odd, >= 3)")
        if self.num_frames < 1 or self.audio_frames < 0:
            raise ValueError(
                f"bad frame counts: num_frames {self.num_frames}, audio_frames {self.audio_frames}"
            )

    @property
    def total_frames(self) -> int:
        """Frames TimeSformer sees: face frames, then mel frames."""
        return self.num_frames + self.audio_frames

    @property
    def vshift(self) -> int:
        return (self.latency_dim - 3) // 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FusionConfig:
        return config_from_dict(cls, data, "fusion")

    @classmethod
    def base(cls, **changes: Any) -> FusionConfig:
        """ViT-B/16 TimeSformer on 8 frames of 224² faces (the K400 checkpoint's shape)."""
        return cls(**changes)

    @classmethod
    def tiny(cls, **changes: Any) -> FusionConfig:
        """A few-millisecond CPU model with the same structure, for tests and demos."""
        params = dict(embed_dims=96, num_heads=4, num_layers=2, num_frames=4, img_size=64)
        params.update(changes)
        return cls(**params)


class LatencyEncoder(nn.Module):
    """Scales the latency vector to about unit range, then a two-layer MLP."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        center = torch.zeros(cfg.latency_dim)
        scale = torch.ones(cfg.latency_dim)
        center[: cfg.latency_dim - 2] = cfg.distance_center
        scale[: cfg.latency_dim - 2] = cfg.distance_scale
        scale[-2] = max(cfg.vshift, 1)  # offset → [-1, 1]
        center[-1] = cfg.confidence_center
        scale[-1] = cfg.confidence_scale
        # Derived from the config, so not part of the state dict.
        self.register_buffer("center", center, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        self.fc1 = nn.Linear(cfg.latency_dim, cfg.latency_hidden)
        self.act1 = nn.GELU()
        self.fc2 = nn.Linear(cfg.latency_hidden, cfg.latency_out)
        self.act2 = nn.GELU()

    def forward(self, latency: torch.Tensor) -> torch.Tensor:
        x = (latency - self.center) / self.scale
        return self.act2(self.fc2(self.act1(self.fc1(x))))


@register_model(ARCH, FusionConfig)
class FusionModel(DetectorModel):
    input_names = ("frames", "latency", "has_latency")
    output_names = ("logits",)
    video_aggregation = "max"

    def __init__(self, config: FusionConfig | None = None):
        super().__init__()
        cfg = config or FusionConfig()
        self.config = cfg
        self.backbone = build_timesformer(
            num_frames=cfg.total_frames,
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            pretrained=None,
            embed_dims=cfg.embed_dims,
            num_heads=cfg.num_heads,
            num_transformer_layers=cfg.num_layers,
            dropout_ratio=cfg.dropout,
            attention_type="divided_space_time",
        )
        self.backbone.init_weights()  # truncated-normal cls token and position embedding
        self.latency = LatencyEncoder(cfg)
        self.no_latency = nn.Parameter(torch.zeros(cfg.latency_out))  # learned "no audio" embedding
        self.head_drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.embed_dims + cfg.latency_out, cfg.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, frames: torch.Tensor, latency: torch.Tensor, has_latency: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self._check_shapes(frames, latency, has_latency)
        video = self.backbone(frames)
        audio = self.latency(latency)
        # where(), not a 0/1 blend: garbage in the latency of an audio-less sample cannot leak.
        # With use_latency off every flag reads 0 (a product, not a constant: the exported
        # graph keeps its latency inputs).
        on = 1.0 if self.config.use_latency else 0.0
        has = has_latency.reshape(-1, 1).to(audio.dtype) * on > 0.5
        audio = torch.where(has, audio, self.no_latency.to(audio.dtype))
        return self.head(self.head_drop(torch.cat([video, audio], dim=1)))

    def _check_shapes(self, frames: torch.Tensor, latency: torch.Tensor, has_latency: torch.Tensor) -> None:
        cfg = self.config
        want = (3, cfg.total_frames, cfg.img_size, cfg.img_size)
        if frames.dim() != 5 or tuple(frames.shape[1:]) != want:
            raise ValueError(f"frames must be (B, {', '.join(map(str, want))}), got {tuple(frames.shape)}")
        batch = frames.shape[0]
        if tuple(latency.shape) != (batch, cfg.latency_dim):
            raise ValueError(f"latency must be ({batch}, {cfg.latency_dim}), got {tuple(latency.shape)}")
        if has_latency.numel() != batch:
            raise ValueError(f"has_latency must have {batch} entries, got shape {tuple(has_latency.shape)}")

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random inputs of the right shapes (export tracing, tests, benchmarks)."""
        cfg = self.config
        g = torch.Generator().manual_seed(seed)
        frames = torch.randn(batch, 3, cfg.total_frames, cfg.img_size, cfg.img_size, generator=g)
        latency = torch.empty(batch, cfg.latency_dim)
        latency[:, :-2] = cfg.distance_center + cfg.distance_scale * torch.randn(
            batch, cfg.latency_dim - 2, generator=g
        )
        latency[:, -2] = torch.randint(-cfg.vshift, cfg.vshift + 1, (batch,), generator=g).float()
        latency[:, -1] = 10 * torch.rand(batch, generator=g)
        has = (torch.arange(batch) % 2 == 0).float()  # mix both branches
        return frames, latency, has

    @classmethod
    def preprocess_problem(cls, config: FusionConfig, preprocess: PreprocessConfig) -> str | None:
        want = 2 * preprocess.sync.vshift + 3
        if config.latency_dim != want:
            return (
                f"the model takes a {config.latency_dim}-value latency vector, but preprocessing "
                f"with sync.vshift={preprocess.sync.vshift} makes {want}"
            )
        return None

    def init_from_upstream(self, path: str) -> None:
        """The TimeSformer backbone from an mmaction2 TimeSformer or ImageNet ViT checkpoint
        (``models.timesformer_convert``); the latency branch and the head stay as initialised."""
        cfg = self.config
        state = load_timesformer_checkpoint(
            path, cfg.total_frames, img_size=cfg.img_size, patch_size=cfg.patch_size
        )
        load_state_dict_strictly(self.backbone, state, str(path))

    @classmethod
    def sample_inputs(cls, sample: Sample, config: FusionConfig) -> dict[str, np.ndarray]:
        """``frames`` (3, T, H, W) float32 normalised, T = num_frames + audio_frames; ``latency``
        (latency_dim,) float32, zeros when there is none; ``has_latency`` 1.0 when it is real."""
        name = sample.meta.video
        rgb = face_frames(sample.faces, config.num_frames, config.img_size, name)
        if config.audio_frames:
            rgb = np.concatenate([rgb, mel_frames(sample.mel, config)])
        if sample.latency is None:
            latency = np.zeros(config.latency_dim, np.float32)
            has = np.float32(0.0)
        else:
            latency = sample.latency.vector().astype(np.float32)
            if latency.shape != (config.latency_dim,):
                raise ValueError(
                    f"{name}: latency vector has {latency.shape[0]} values, the model expects "
                    f"{config.latency_dim} (SyncConfig.vshift must be {config.vshift})"
                )
            has = np.float32(1.0)
        return {"frames": _normalise(rgb), "latency": latency, "has_latency": np.asarray(has, np.float32)}


def _normalise(rgb: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) 0–255 → (3, T, H, W) float32 normalised."""
    return np.ascontiguousarray(normalise(rgb, IMAGENET_MEAN, IMAGENET_STD).transpose(3, 0, 1, 2))


def mel_frames(mel: np.ndarray, cfg: FusionConfig) -> np.ndarray:
    """(n_mels, T100) log-mel dB → (audio_frames, img, img, 3) uint8 spectrogram images.

    No audio (an empty mel) gives black images: the rendering of silence.
    """
    count, size = cfg.audio_frames, cfg.img_size
    if mel.ndim != 2 or mel.shape[1] == 0 or not np.isfinite(mel).any():
        return np.zeros((count, size, size, 3), np.uint8)
    mel = np.nan_to_num(mel.astype(np.float32), nan=-np.inf)
    top = mel[np.isfinite(mel)].max()
    grey = np.clip((mel - (top - MEL_DYNAMIC_RANGE_DB)) / MEL_DYNAMIC_RANGE_DB, 0.0, 1.0)
    grey = (grey[::-1] * 255.0).astype(np.uint8)  # low frequencies at the bottom, as drawn
    if grey.shape[1] < count:  # too short to cut: pad with silence
        grey = np.pad(grey, ((0, 0), (0, count - grey.shape[1])))
    chunks = np.array_split(grey, count, axis=1)
    images = [resize_linear(np.ascontiguousarray(c), size, size) for c in chunks]
    return np.repeat(np.stack(images)[..., None], 3, axis=-1)
