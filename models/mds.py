"""MDS: modality dissonance between a face and its voice, one-second chunk by chunk.

After Chugh, Gupta, Dhall and Subramanian, "Not made for each other: audio-visual dissonance-based
deepfake detection and localization" (ACM Multimedia 2020). Our own implementation of the
published design:

- a sample is cut into one-second chunks (``SampleConfig.sampling = "per_second"`` keeps
  ``chunk_frames`` consecutive face crops centred in every second of a track), each with the
  MFCC window (100 Hz) spanning the same moments as its frames;
- a video stream (a 3D ResNet-18 layout: stem, four stages of two basic blocks) and an audio
  stream (a SyncNet-style 2D CNN over the MFCC window) each end in an embedding and their own
  real/fake head (two logits);
- training loss: a contrastive term on the L2 distance between the two embeddings (real chunks
  pulled together, fake chunks pushed beyond ``margin`` = 0.99) plus the cross-entropy of each
  head (``MdsModel.training_loss``);
- a sample's modality dissonance score is the mean distance over its chunks; it is fake when
  the score exceeds ``distance_threshold`` (0.6 in the reference code; ``train export`` picks it
  on the validation split). Chunks far above it localise the manipulation (``time_logits``).

Scale-down against the paper, so a training step of 8 samples runs in about a second on two CPU
cores: 5 frames per chunk instead of 30 (``chunk_frames``; the MFCC window follows: 20 columns
= 0.2 s at 25 fps), the lower half of the face at 64² instead of whole frames at 224², a 3D
ResNet-18 of width 8 (first-stage channels; the paper's ResNet has 64) and 128-d embeddings
instead of 1024-d (``embed_dim``). Choices of ours the paper leaves open: the embeddings are L2
normalised before their distance (so distances lie in [0, 2] and the margin and threshold mean
the same whatever the embedding's scale), each MFCC coefficient is normalised over the
sample's whole soundtrack (cepstral mean and variance normalisation: the channel and the
speaker's loudness drop out), and both heads are trained with the sample's label.

The audio stream can instead be the shipped sync model's audio tower (``audio_tower=
"syncnet_mouth"``, started from ``weights/syncnet`` by ``init_from_upstream`` and best kept fixed,
``freeze_audio``): it already maps the sound of each 0.2 s to the mouth shapes that go with it,
so the video stream learns to meet a sync embedding instead of both streams learning from the
desync pseudo-fakes alone (README, "The audio-visual half": what it changed).

Scores: ``fake_logit`` is ``(mean chunk distance - distance_threshold) * logit_scale``, computed
in the graph, so probability 0.5 is exactly the threshold. A sample without audio (empty MFCC)
has no dissonance to measure: its log-odds are the mean of the visual head's chunk log-odds
instead (and so are its chunk log-odds). Padded chunks (tracks shorter than ``max_chunks``
seconds) are left out of every mean; in training they are not even computed, so BatchNorm sees
only real chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Sample
from models.detector import DetectorModel
from models.detector_io import logits_to_log_odds
from models.face_frames_io import Region, crop_region, pick_frames, resize_square
from models.registry import FlatConfig, register_model
from models.syncnet_mouth import SyncAudioStream

REGIONS: dict[str, Region | None] = {
    "whole": None,
    # The crops are SyncNet-style squares (face box grown by 0.4 per side): the mouth and chin lie
    # in this square below the nose, as SyncNet reads the lower half of its crop.
    "lower": (0.45, 0.25, 0.5),
    "mouth": (0.5, 0.35, 0.3),  # the mouth alone, at the resolution the others spend on the face
}
PIXEL_MEAN, PIXEL_STD = 127.5, 64.0


@dataclass(frozen=True)
class MdsConfig(FlatConfig):
    arch: ClassVar[str] = "mds"
    max_chunks: int = 16  # one-second chunks per sample: the 16-s analysis window
    chunk_frames: int = 5  # face frames per chunk (the paper: 30)
    img_size: int = 64
    region: str = "lower"  # "lower": mouth and chin; "mouth": the mouth alone; "whole": the face crop
    width: int = 8  # channels of the 3D ResNet-18's first stage (doubling per stage)
    audio_width: int = 16  # channels of the audio CNN's first layer (doubling per layer)
    embed_dim: int = 128  # the paper: 1024
    n_mfcc: int = 13
    mfcc_rate: float = 100.0  # MFCC columns per second (AudioConfig.mfcc_hop_s = 0.01)
    mfcc_frames: int = 20  # MFCC columns per chunk: chunk_frames / fps seconds of sound
    margin: float = 0.99  # contrastive margin a fake chunk's distance is pushed beyond
    distance_threshold: float = 0.6  # mean chunk distance where the sample turns fake
    logit_scale: float = 10.0  # log-odds per unit of distance above the threshold
    # Weight of each head's cross-entropy against the contrastive term; 1 as published. On fakes
    # that leave the face untouched (audio_desync) the heads have nothing to learn and their
    # loss disturbed the embeddings (learning test, seeds 0/1/2, held-out AUC: 0.59/0.70/0.37
    # at 1, 0.81/0.74/0.47 at 0.1, 0.90/0.86/0.60 at 0), so that recipe sets 0 (make train-mds);
    # the visual head then stays untrained and samples without audio score about 0.5.
    head_weight: float = 1.0
    norm: str = "batch"  # "batch" (the paper's) or "group" (see make_norm)
    # "mds": the narrow CNN below on MFCCs normalised per soundtrack (cmvn), from scratch;
    # "syncnet_mouth": the shipped sync model's audio tower (models.syncnet_mouth.audio_tower at
    # ``audio_width``, flatten head, ``embed_dim`` wide) on raw MFCCs as that model reads them,
    # so ``init_from_upstream(weights/syncnet)`` starts it from a tower that already learnt which
    # sounds go with which mouth shapes.
    audio_tower: str = "mds"
    audio_c0_floor: float = 0.0  # syncnet_mouth tower only: its floor of MFCC coefficient 0
    # Keep the audio stream as initialised (weights and BatchNorm statistics): the video stream
    # then learns to meet a fixed sync embedding instead of both streams drifting together.
    freeze_audio: bool = False

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"mds: norm must be one of {NORMS}, got {self.norm!r}")
        if self.audio_tower not in AUDIO_TOWERS:
            raise ValueError(f"mds: audio_tower must be one of {AUDIO_TOWERS}, got {self.audio_tower!r}")
        if self.region not in REGIONS:
            raise ValueError(f"mds: region must be one of {sorted(REGIONS)}, got {self.region!r}")
        if min(self.max_chunks, self.chunk_frames, self.img_size, self.width, self.mfcc_frames) < 1:
            raise ValueError(f"mds: sizes must be positive: {self}")
        if self.logit_scale <= 0:
            raise ValueError(f"mds: logit_scale must be > 0, got {self.logit_scale}")


NORMS = ("batch", "group")
AUDIO_TOWERS = ("mds", "syncnet_mouth")


def make_norm(kind: str, channels: int, dims: int) -> nn.Module:
    """ "batch": the paper's BatchNorm (optimises fastest from scratch); "group": GroupNorm, with
    no running statistics that could drift from the batch statistics and scores that cannot
    depend on the batch."""
    if kind == "group":
        return nn.GroupNorm(min(4, channels), channels)
    return nn.BatchNorm3d(channels) if dims == 3 else nn.BatchNorm2d(channels)


def _norm_relu(kind: str, channels: int, dims: int) -> list[nn.Module]:
    return [make_norm(kind, channels, dims), nn.ReLU(inplace=True)]


class BasicBlock3d(nn.Module):
    """ResNet's basic block in 3D: two 3×3×3 convolutions and a shortcut; time is never strided
    (a chunk holds only a few frames)."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str = "batch"):
        super().__init__()
        s = (1, stride, stride)
        self.body = nn.Sequential(
            nn.Conv3d(cin, cout, 3, stride=s, padding=1, bias=False),
            *_norm_relu(norm, cout, 3),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False),
            make_norm(norm, cout, 3),
        )
        self.shortcut = (
            nn.Sequential(nn.Conv3d(cin, cout, 1, stride=s, bias=False), make_norm(norm, cout, 3))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class VideoStream(nn.Module):
    """(N, 3, k, s, s) chunks → (N, embed_dim): the 3D ResNet-18 layout at ``width``."""

    def __init__(self, width: int, embed_dim: int, norm: str = "batch"):
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            nn.Conv3d(3, w, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            *_norm_relu(norm, w, 3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        blocks, cin = [], w
        for cout, stride in ((w, 1), (2 * w, 2), (4 * w, 2), (8 * w, 2)):
            blocks += [BasicBlock3d(cin, cout, stride, norm), BasicBlock3d(cout, cout, 1, norm)]
            cin = cout
        self.stages = nn.Sequential(*blocks)
        self.embed = nn.Linear(cin, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.stages(self.stem(x)).mean(dim=(2, 3, 4)))


class AudioStream(nn.Module):
    """(N, 1, n_mfcc, m) MFCC windows → (N, embed_dim): SyncNet's audio trunk, narrower — 3×3
    convolutions, pooling along time first, then both axes."""

    def __init__(self, width: int, embed_dim: int, norm: str = "batch"):
        super().__init__()
        a = width

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), *_norm_relu(norm, cout, 2)]

        self.trunk = nn.Sequential(
            *conv(1, a),
            *conv(a, 2 * a),
            nn.MaxPool2d((1, 2)),
            *conv(2 * a, 4 * a),
            *conv(4 * a, 4 * a),
            nn.MaxPool2d(2),
            *conv(4 * a, 8 * a),
        )
        self.embed = nn.Linear(8 * a, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.trunk(x).mean(dim=(2, 3)))


def cmvn(mfcc: np.ndarray) -> np.ndarray:
    """Each coefficient (row) to zero mean and unit variance over the soundtrack."""
    mfcc = np.asarray(mfcc, np.float32)
    return (mfcc - mfcc.mean(axis=1, keepdims=True)) / (mfcc.std(axis=1, keepdims=True) + 1e-5)


def window(features: np.ndarray, first: int, length: int) -> np.ndarray:
    """Columns ``first .. first + length`` of (D, T) ``features``, zeros where they leave it."""
    out = np.zeros((features.shape[0], length), np.float32)
    lo, hi = max(first, 0), min(first + length, features.shape[1])
    if hi > lo:
        out[:, lo - first : hi - first] = features[:, lo:hi]
    return out


@dataclass(frozen=True)
class Chunk:
    second: int  # the clip second the chunk lies in
    rows: np.ndarray  # (chunk_frames,) indices into the sample's faces, in time order
    centre: float  # seconds from the clip's start: the middle of the chunk's frames


def sample_chunks(sample: Sample, config: MdsConfig) -> list[Chunk]:
    """The sample's first ``max_chunks`` one-second chunks: its crops grouped by the second
    their clip frame falls in; ``chunk_frames`` consecutive ones from the middle of each group's
    longest run of consecutive frames. Seconds whose run is shorter are skipped when any second
    has a full one (a "windows" sample's runs of 32 frames straddle seconds: their stubs would
    be chunks of repeated frames, no motion to match with the sound); a track shorter than one
    chunk gives one chunk of evenly spaced repeats. Per-second samples hold exactly one full run
    per second, so every second is a chunk."""
    fps = float(sample.meta.fps)
    indices = np.asarray(sample.face_frame_indices, np.int64)
    if fps <= 0 or len(indices) != len(sample.faces) or len(indices) == 0:
        raise ValueError(
            f"{sample.meta.video}: MDS needs face crops with their frame indices and the frame rate "
            f"(faces {len(sample.faces)}, indices {len(indices)}, fps {fps})"
        )
    order = np.argsort(indices, kind="stable")
    seconds = np.floor(indices[order] / fps + 1e-9).astype(np.int64)
    k = config.chunk_frames
    groups = []
    for second in np.unique(seconds):
        rows = order[seconds == second]
        runs = np.split(rows, np.flatnonzero(np.diff(indices[rows]) != 1) + 1)
        groups.append((int(second), max(runs, key=len)))
    if any(len(rows) >= k for _, rows in groups):
        groups = [(second, rows) for second, rows in groups if len(rows) >= k]
    chunks = []
    for second, rows in groups[: config.max_chunks]:
        rows = rows[(len(rows) - k) // 2 :][:k] if len(rows) >= k else rows[pick_frames(len(rows), k)]
        centre = (indices[rows[0]] + indices[rows[-1]] + 1) / 2 / fps
        chunks.append(Chunk(second, rows, float(centre)))
    return chunks


@register_model("mds", MdsConfig)
class MdsModel(DetectorModel):
    """Inputs: ``chunks`` (B, C, k, 3, s, s) normalised face crops, ``mfcc`` (B, C, n_mfcc, m)
    normalised MFCC windows, ``chunk_mask`` (B, C) 1 for real chunks, ``has_audio`` (B,) 1 when
    the sample has a soundtrack. Outputs: ``logits`` (B, 1) the sample's fake log-odds,
    ``chunk_logits`` (B, C) per chunk (NaN on padding), ``distances`` (B, C) between the chunk
    embeddings, ``visual_logits`` and ``audio_logits`` (B, C) the heads' fake log-odds (these
    three 0 on padding),
    ``dissonance`` (B,) the mean chunk distance (NaN without audio)."""

    input_names = ("chunks", "mfcc", "chunk_mask", "has_audio")
    output_names = ("logits", "chunk_logits", "distances", "visual_logits", "audio_logits", "dissonance")
    video_aggregation = "max"  # a video is fake if any of its faces is out of step with the sound

    def __init__(self, config: MdsConfig | None = None):
        super().__init__()
        self.config = config or MdsConfig()
        cfg = self.config
        self.video_stream = VideoStream(cfg.width, cfg.embed_dim, cfg.norm)
        if cfg.audio_tower == "syncnet_mouth":
            self.audio_stream = SyncAudioStream(cfg.audio_width, cfg.embed_dim, cfg.audio_c0_floor)
        else:
            self.audio_stream = AudioStream(cfg.audio_width, cfg.embed_dim, cfg.norm)
        self.video_head = nn.Linear(cfg.embed_dim, 2)
        self.audio_head = nn.Linear(cfg.embed_dim, 2)
        if cfg.freeze_audio:
            self.audio_stream.requires_grad_(False)

    def train(self, mode: bool = True) -> MdsModel:
        super().train(mode)
        if self.config.freeze_audio:  # its BatchNorm keeps the statistics it came with
            self.audio_stream.eval()
        return self

    # --- data ---------------------------------------------------------------------------------

    @classmethod
    def sample_inputs(cls, sample: Sample, config: MdsConfig) -> dict[str, np.ndarray]:
        cfg = config
        c, k, s, m = cfg.max_chunks, cfg.chunk_frames, cfg.img_size, cfg.mfcc_frames
        video = np.zeros((c, k, 3, s, s), np.float32)
        mfcc = np.zeros((c, cfg.n_mfcc, m), np.float32)
        mask = np.zeros((c,), np.float32)
        has_audio = sample.mfcc.ndim == 2 and sample.mfcc.shape[1] > 0
        if has_audio and sample.mfcc.shape[0] != cfg.n_mfcc:
            raise ValueError(
                f"{sample.meta.video}: MFCC has {sample.mfcc.shape[0]} rows, MDS reads {cfg.n_mfcc}"
            )
        features = None
        if has_audio:  # the sync model's tower reads MFCCs as it was trained on them: raw
            raw = cfg.audio_tower == "syncnet_mouth"
            features = np.asarray(sample.mfcc, np.float32) if raw else cmvn(sample.mfcc)
        region = REGIONS[cfg.region]
        for i, chunk in enumerate(sample_chunks(sample, cfg)):
            crops = [
                sample.faces[r] if region is None else crop_region(sample.faces[r], region)
                for r in chunk.rows
            ]
            rgb = np.stack([resize_square(crop, s) for crop in crops]).astype(np.float32)
            video[i] = ((rgb - PIXEL_MEAN) / PIXEL_STD).transpose(0, 3, 1, 2)
            if features is not None:
                mfcc[i] = window(features, int(round(chunk.centre * cfg.mfcc_rate - m / 2)), m)
            mask[i] = 1.0
        return {
            "chunks": video,
            "mfcc": mfcc,
            "chunk_mask": mask,
            "has_audio": np.float32(1.0 if has_audio else 0.0),
        }

    @classmethod
    def time_columns(cls, sample: Sample, config: MdsConfig) -> np.ndarray:
        """The start second of each chunk; NaN for padding."""
        out = np.full(config.max_chunks, np.nan)
        for i, chunk in enumerate(sample_chunks(sample, config)):
            out[i] = float(chunk.second)
        return out

    @staticmethod
    def time_logits(outputs: Sequence[Any]) -> Any:
        return outputs[1]

    @classmethod
    def preprocess_problem(cls, config: MdsConfig, preprocess: PreprocessConfig) -> str | None:
        sample = preprocess.sample
        if sample.sampling not in ("per_second", "windows"):
            return (
                "MDS reads chunks of consecutive frames: preprocess with sample.sampling = 'per_second' "
                f"or 'windows' (the samples are {sample.sampling!r})"
            )
        held = sample.chunk_frames if sample.sampling == "per_second" else sample.window_frames
        if held < config.chunk_frames:
            return f"samples hold runs of {held} consecutive frames, MDS reads {config.chunk_frames}"
        want = round(config.chunk_frames / preprocess.media.fps * config.mfcc_rate)
        if want != config.mfcc_frames:
            return (
                f"MDS's MFCC window ({config.mfcc_frames} columns) must span its {config.chunk_frames} frames "
                f"at {preprocess.media.fps} fps: mfcc_frames={want}"
            )
        return None

    def set_threshold(self, threshold: float) -> None:
        """The mean chunk distance where a sample turns fake (stored in the config, so in the
        weights JSON and folded into an exported graph)."""
        self.config = replace(self.config, distance_threshold=float(threshold))

    @staticmethod
    def threshold_statistic(outputs: Sequence[Any]) -> Any:
        """(B,) what ``distance_threshold`` applies to: the mean chunk distance (NaN for a
        sample without audio, which the visual head scores instead)."""
        return outputs[5]

    # --- network ------------------------------------------------------------------------------

    def embed(
        self, video: torch.Tensor, mfcc: torch.Tensor, chunk_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B*C, E) video and audio embeddings of every chunk. In eager torch only the real
        chunks go through the streams (padding rows stay zero); traced for export, all do."""
        b, c, k, _, s, _ = video.shape
        frames = video.reshape(b * c, k, 3, s, s).transpose(1, 2)  # (N, 3, k, s, s)
        windows = mfcc.reshape(b * c, 1, mfcc.shape[2], mfcc.shape[3])
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
            return self.video_stream(frames), self.audio_stream(windows)
        keep = torch.nonzero(chunk_mask.reshape(-1) > 0.5).squeeze(1)
        v = frames.new_zeros(b * c, self.config.embed_dim)
        a = frames.new_zeros(b * c, self.config.embed_dim)
        if len(keep):
            v = v.index_copy(0, keep, self.video_stream(frames.index_select(0, keep)))
            a = a.index_copy(0, keep, self.audio_stream(windows.index_select(0, keep)))
        return v, a

    def forward(
        self, video: torch.Tensor, mfcc: torch.Tensor, chunk_mask: torch.Tensor, has_audio: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        cfg = self.config
        b, c = chunk_mask.shape
        v, a = self.embed(video, mfcc, chunk_mask)
        # zero on padding, which eager torch never computes and an exported graph does
        distances = (F.normalize(v, dim=1) - F.normalize(a, dim=1)).norm(dim=1).reshape(b, c) * chunk_mask
        visual = logits_to_log_odds(self.video_head(v)).reshape(b, c) * chunk_mask
        audio = logits_to_log_odds(self.audio_head(a)).reshape(b, c) * chunk_mask
        count = chunk_mask.sum(1).clamp(min=1.0)
        dissonance = (distances * chunk_mask).sum(1) / count
        sound = has_audio.reshape(b, 1) > 0.5
        logit = torch.where(
            sound[:, 0],
            (dissonance - cfg.distance_threshold) * cfg.logit_scale,
            (visual * chunk_mask).sum(1) / count,
        )
        chunk_logits = torch.where(sound, (distances - cfg.distance_threshold) * cfg.logit_scale, visual)
        chunk_logits = torch.where(
            chunk_mask > 0.5, chunk_logits, torch.full_like(chunk_logits, float("nan"))
        )
        dissonance = torch.where(sound[:, 0], dissonance, torch.full_like(dissonance, float("nan")))
        return logit.reshape(b, 1), chunk_logits, distances, visual, audio, dissonance

    def training_loss(self, outputs: Sequence[torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        """Contrastive loss on each chunk's distance (real: d², fake: max(margin - d, 0)²) plus
        the cross-entropy of the video and audio heads, each a mean over real chunks (the
        contrastive term and the audio head over samples with a soundtrack).

        Only video-level labels exist, so every chunk of a fake counts as dissonant. For a
        partially faked video that pushes its untouched seconds apart too (label noise the
        paper's training had as well); the pseudo-fakes MDS trains on (``audio_desync``) move
        the whole soundtrack, so every chunk of them is truly out of step."""
        _, _, distances, visual, audio, _ = outputs
        mask = batch["chunk_mask"].float()
        sound = mask * (batch["has_audio"].float().reshape(-1, 1) > 0.5)
        label = batch["label"].float().reshape(-1, 1).expand_as(distances)

        def masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
            return (values * weights).sum() / weights.sum().clamp(min=1.0)

        contrast = (1 - label) * distances.pow(2) + label * F.relu(self.config.margin - distances).pow(2)
        heads = masked_mean(F.binary_cross_entropy_with_logits(visual, label, reduction="none"), mask)
        heads = heads + masked_mean(F.binary_cross_entropy_with_logits(audio, label, reduction="none"), sound)
        return masked_mean(contrast, sound) + self.config.head_weight * heads

    def init_from_upstream(self, path: str) -> None:
        """Start the audio stream from a sync model's audio tower (``weights/syncnet``: arch
        ``syncnet_mouth``); needs ``audio_tower="syncnet_mouth"`` with that model's width, embedding
        size, head and c0 floor. The video stream and the heads stay as initialised."""
        cfg = self.config
        if cfg.audio_tower != "syncnet_mouth":
            raise ValueError(
                f"mds: --init {path} starts the audio stream from a sync model; "
                "set audio_tower=syncnet_mouth (and its audio_width)"
            )
        self.audio_stream.load_from_sync_model(path, "mds")

    # --- export -------------------------------------------------------------------------------

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random chunks; sample i has ``1 + (i * 5) % C`` real chunks, and every third sample
        (from the second) no audio, so both scoring paths and the padding are exercised."""
        cfg = self.config
        g = torch.Generator().manual_seed(seed)
        c = cfg.max_chunks
        video = torch.randn(batch, c, cfg.chunk_frames, 3, cfg.img_size, cfg.img_size, generator=g)
        mfcc = torch.randn(batch, c, cfg.n_mfcc, cfg.mfcc_frames, generator=g)
        counts = torch.tensor([1 + (i * 5) % c for i in range(batch)])
        mask = (torch.arange(c)[None, :] < counts[:, None]).float()
        has_audio = torch.tensor([0.0 if i % 3 == 1 else 1.0 for i in range(batch)])
        return video, mfcc, mask, has_audio
