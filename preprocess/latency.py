"""SyncNet offset search: how far a face track's lips and the audio are apart, and how surely.

Follows syncnet_python's ``evaluate``: every 5-frame lip window and its 0.2 s audio window are
embedded once, then for each offset ``d`` in ``-vshift..vshift`` the lip embedding of frame ``f``
is compared with the audio embedding of frame ``f + d`` (zero vectors beyond the ends, as the
official ``calc_pdist`` pads). The mean distance per offset forms the curve; its minimum gives
the offset and ``median - min`` the confidence.

Sign convention (syncnet_python's): ``offset = vshift - argmin``, so the audio that matches video
frame ``f`` sits at frame ``f - offset``. A positive offset means the audio leads the video (the
sound comes ``offset`` frames before the lips move); a negative one means the audio lags.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.optional_torch import require_torch, torch_available
from core.preprocess_config import SyncConfig
from core.preprocess_data import Latency
from models.runtimes import Runtime, make_model_runtime
from models.sync_archs import SYNC_ARCHS, UPSTREAM_SUFFIXES, normalised_arch
from weights.store import WeightsError, read_config, tensors_path

if TYPE_CHECKING:
    import torch

MFCC_PER_FRAME = 4  # 100 Hz MFCCs against 25 fps video
LIP_WINDOW = 5  # frames; fixed by the network (its first conv spans 5 frames)
AUDIO_WINDOW = LIP_WINDOW * MFCC_PER_FRAME  # 20 MFCC frames, fixed by the network
FRAME_CONF_SMOOTHING = 9  # median filter over the per-frame confidence, as the official code


class SyncNetWeightsMissing(FileNotFoundError):
    """No SyncNet weights at the configured name/path: latency features cannot be computed."""


class TooShortForSync(ValueError):
    """Fewer video frames / MFCC frames overlap than one SyncNet window needs."""


@dataclass(frozen=True)
class SyncWindows:
    """Which windows one offset search evaluates, as track frame indices (window starts)."""

    count: int  # windows in the audio-video overlap
    lip: np.ndarray  # (L,) lip windows embedded
    audio: np.ndarray  # (A,) audio windows the search reads: lip frames + (-vshift..vshift)

    @property
    def video_frames(self) -> np.ndarray:
        """The track frames the lip windows cover: the only crops the search needs."""
        return np.unique(self.lip[:, None] + np.arange(LIP_WINDOW)[None, :])


def sampled_starts(count: int, windows: int, runs: int) -> np.ndarray:
    """``windows`` window starts in ``runs`` runs of consecutive frames, the runs centred on
    equal segments of ``0..count-1``; every frame when ``windows`` covers them all."""
    if windows <= 0 or windows >= count:
        return np.arange(count)
    runs = max(1, min(runs, windows))
    lengths = [len(part) for part in np.array_split(np.arange(windows), runs)]
    starts = []
    for r, length in enumerate(lengths):
        centre = (r + 0.5) * count / runs
        first = int(np.clip(round(centre - length / 2), 0, count - length))
        starts.append(np.arange(first, first + length))
    return np.unique(np.concatenate(starts))  # short tracks: runs may overlap


class SyncNetScorer:
    """Runs SyncNet over a face track and searches the audio-visual offset.

    Which windows (``SyncConfig``):
      * ``windows``/``runs`` (default): that many lip windows in that many runs of consecutive
        frames, spread over the track; only the audio windows those lip windows are compared
        with are embedded. ``windows=0``: the full search below.
      * ``stride`` (full search): lip windows start every ``stride``-th frame; audio windows are
        embedded at every frame, so offsets keep one-frame resolution.
      * ``max_frames`` (0 = no cap): only the first ``max_frames`` frames of the track are used.
      * ``batch_size``: lip windows per network call (memory, not results).
    """

    def __init__(
        self,
        runtime_or_module: Runtime | torch.nn.Module,
        cfg: SyncConfig | None = None,
        normalised: bool | None = None,
    ):
        """``normalised``: the network's embeddings have unit length (default: what a torch
        module's arch says, ``models.sync_archs.normalised_arch``; False for a bare runtime)."""
        self.cfg = cfg or SyncConfig()
        if self.cfg.window != LIP_WINDOW:
            raise ValueError(
                f"SyncConfig.window must be {LIP_WINDOW} (SyncNet's input length), got {self.cfg.window}"
            )
        c = self.cfg
        if (
            c.stride < 1
            or c.batch_size < 1
            or c.vshift < 0
            or c.max_frames < 0
            or c.windows < 0
            or c.runs < 1
        ):
            raise ValueError(f"invalid SyncConfig {self.cfg}")
        if _is_torch_module(runtime_or_module):
            from models.runtimes import TorchRuntime

            runtime_or_module = TorchRuntime(runtime_or_module)
        self.runtime: Runtime = runtime_or_module
        module = getattr(runtime_or_module, "module", None)
        if normalised is None:
            normalised = normalised_arch(getattr(module, "arch", "syncnet")) if module is not None else False
        # unit-length embeddings: the search ignores the zero padding beyond the audio's ends
        self.valid_only = normalised

    @classmethod
    def from_weights(
        cls, name_or_path: str | os.PathLike, cfg: SyncConfig | None = None, device: str = "cpu"
    ) -> SyncNetScorer:
        """Load our ``weights/<name>.safetensors`` (+ ``.json``) or an upstream ``syncnet_v2.model``.

        Torch runs it; in an install without torch, ONNX Runtime runs the ``.onnx`` export beside
        our weights (``core.optional_torch.TorchMissing`` naming it when there is none).
        Raises ``SyncNetWeightsMissing`` (a FileNotFoundError) when there is no such file, so the
        caller can mark samples "no SyncNet weights" rather than fake a latency; a file that exists
        but is corrupt or does not fit raises ``weights.store.WeightsError``.
        """
        path = Path(name_or_path)
        if path.suffix not in UPSTREAM_SUFFIXES:
            path = tensors_path(name_or_path)
        if not path.is_file():
            raise SyncNetWeightsMissing(f"{path}: SyncNet weights not found")
        if not torch_available() and path.suffix not in UPSTREAM_SUFFIXES:
            arch = read_config(path)["arch"]
            if arch not in SYNC_ARCHS:
                raise WeightsError(
                    f"{path}: holds a {arch!r} model, not {' or '.join(map(repr, SYNC_ARCHS))}"
                )
            runtime = make_model_runtime("onnxruntime", path, device, load_module=_no_torch_module)
            return cls(runtime, cfg, normalised=normalised_arch(arch))
        require_torch(
            f"SyncNet from the upstream checkpoint {path}", "or convert it to our weights and export them"
        )
        import torch

        from models.runtimes import TorchRuntime
        from models.syncnet import load_syncnet

        # channels-last convolutions: 27 % less CPU time per lip window, same embeddings (measured)
        channels_last = torch.device(device).type == "cpu"
        return cls(TorchRuntime(load_syncnet(path), device, channels_last=channels_last), cfg)

    def plan(self, n_frames: int, n_mfcc: int) -> SyncWindows:
        """The windows the search evaluates on a track of ``n_frames`` video frames and
        ``n_mfcc`` MFCC frames. Raises ``TooShortForSync`` when not even one window fits."""
        n_video = n_frames if self.cfg.max_frames == 0 else min(n_frames, self.cfg.max_frames)
        count = min(n_video - LIP_WINDOW + 1, (n_mfcc - AUDIO_WINDOW) // MFCC_PER_FRAME + 1)
        if count < 1:
            raise TooShortForSync(
                f"SyncNet needs {LIP_WINDOW} video frames with {AUDIO_WINDOW} MFCC frames under them;"
                f" got {n_video} frames and {n_mfcc} MFCC frames"
            )
        if self.cfg.windows == 0:
            return SyncWindows(count, np.arange(0, count, self.cfg.stride), np.arange(count))
        lip = sampled_starts(count, self.cfg.windows, self.cfg.runs)
        reach = lip[:, None] + np.arange(-self.cfg.vshift, self.cfg.vshift + 1)[None, :]
        audio = np.unique(reach[(reach >= 0) & (reach < count)])
        return SyncWindows(count, lip, audio)

    def embed(
        self,
        faces: np.ndarray,
        mfcc: np.ndarray,
        frames: np.ndarray | None = None,
        plan: SyncWindows | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lip embeddings (L, D) at track frames ``lip_frames`` (L,), audio embeddings (N, D) at
        frames 0..N-1 of the overlap (zero where the search never reads them). See ``latency``
        for the inputs."""
        faces, mfcc = _check_inputs(faces, mfcc)
        if frames is None:
            plan = plan or self.plan(len(faces), mfcc.shape[1])
            frames = np.arange(len(faces))
        elif plan is None:
            raise ValueError("crops of some frames only need the plan made for the whole track")
        frames = np.asarray(frames, np.int64)
        if len(frames) != len(faces):
            raise ValueError(f"{len(faces)} face crops for {len(frames)} frame indices")
        rows = np.full(max(int(frames.max()), int(plan.video_frames.max())) + 1, -1)
        rows[frames] = np.arange(len(frames))
        if (rows[plan.video_frames] < 0).any():
            raise ValueError("the face crops lack frames the offset search needs (see plan())")
        # One call per batch of lip windows; the cheap audio windows ride along in equal shares.
        n_calls = -(-len(plan.lip) // self.cfg.batch_size)
        lip_out, aud_out = [], []
        for call, audio_frames in enumerate(np.array_split(plan.audio, n_calls)):
            lip_chunk = plan.lip[call * self.cfg.batch_size : (call + 1) * self.cfg.batch_size]
            lip_emb, aud_emb = self.runtime(
                _lip_batch(faces, rows, lip_chunk), _audio_batch(mfcc, audio_frames)
            )
            lip_out.append(lip_emb)
            aud_out.append(aud_emb)
        audio = np.concatenate(aud_out)
        aud_emb = np.zeros((plan.count, audio.shape[1]), audio.dtype)
        aud_emb[plan.audio] = audio
        return np.concatenate(lip_out), aud_emb, plan.lip

    def latency(
        self,
        faces: np.ndarray,
        mfcc: np.ndarray,
        frames: np.ndarray | None = None,
        plan: SyncWindows | None = None,
    ) -> Latency:
        """Offset search for one track.

        faces: (T, 224, 224, 3) uint8 RGB crops at 25 fps of the track's frames 0..T-1, or of its
        frames ``frames`` only, together with the ``plan`` made for the whole track (the frames
        must include ``plan.video_frames``); mfcc: (13, T_a) from ``audio.mfcc``, starting at the
        track's first frame (4 MFCC frames per video frame). Lengths may differ: only the overlap
        is used. Raises ``TooShortForSync`` (a ValueError) when the overlap is shorter than one
        window (5 frames / 20 MFCC frames).
        """
        lip_emb, aud_emb, lip_frames = self.embed(faces, mfcc, frames, plan)
        return offset_search(lip_emb, aud_emb, lip_frames, self.cfg.vshift, valid_only=self.valid_only)


def median_filter(x: np.ndarray, size: int) -> np.ndarray:
    """The running median of a 1-D array over an odd ``size``, zeros beyond its ends (what
    ``scipy.signal.medfilt`` computes; each output is one of the inputs or 0, so exact)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"the median filter's size must be odd and positive, got {size}")
    half = size // 2
    padded = np.pad(np.asarray(x, dtype=np.float64), half)
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, size), axis=1)


def offset_search(
    lip_emb: np.ndarray,
    aud_emb: np.ndarray,
    lip_frames: np.ndarray | None = None,
    vshift: int = 15,
    smooth: int = FRAME_CONF_SMOOTHING,
    valid_only: bool = False,
) -> Latency:
    """Distance curve over offsets ``-vshift..vshift`` from precomputed embeddings.

    ``lip_emb[i]`` is the lip window at frame ``lip_frames[i]`` (default: 0..L-1); ``aud_emb[n]``
    the audio window at frame ``n``. ``frame_confidence[i]`` is ``median(curve)`` minus lip window
    i's distance at the chosen offset, median-filtered over ``smooth`` windows (official code).
    ``valid_only``: each offset's mean covers only the lip windows whose audio window at that
    offset exists (for unit-length embeddings, see ``models.sync_archs.normalised_arch``);
    otherwise windows beyond the ends count as zero vectors, as the official code pads.
    """
    lip = np.asarray(lip_emb, np.float32)
    aud = np.asarray(aud_emb, np.float32)
    frames = np.arange(len(lip)) if lip_frames is None else np.asarray(lip_frames, np.int64)
    span = 2 * vshift + 1
    padded = np.pad(aud, ((vshift, vshift), (0, 0)))  # zero embeddings outside the audio, as calc_pdist
    candidates = padded[frames[:, None] + np.arange(span)[None, :]]  # (L, span, D): audio frame f + d
    # torch's pairwise_distance adds eps to the difference; kept so scores match the official ones.
    dists = np.linalg.norm(lip[:, None, :] - candidates + 1e-6, axis=-1)  # (L, span)

    if valid_only:
        where = frames[:, None] + np.arange(span)[None, :] - vshift
        inside = (where >= 0) & (where < len(aud))
        curve = np.where(inside, dists, 0).sum(axis=0) / np.maximum(inside.sum(axis=0), 1)
        curve[inside.sum(axis=0) == 0] = np.max(curve)  # an offset with no audio at all: never chosen
    else:
        curve = dists.mean(axis=0)
    best = int(np.argmin(curve))
    median = float(np.median(curve))
    frame_conf = median - dists[:, best]
    if smooth > 1:
        frame_conf = median_filter(frame_conf, smooth)
    return Latency(
        distances=curve.astype(np.float32),
        offset=vshift - best,
        min_distance=float(curve[best]),
        confidence=median - float(curve[best]),
        frame_confidence=frame_conf.astype(np.float32),
    )


def _check_inputs(faces: np.ndarray, mfcc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    faces = np.asarray(faces)
    mfcc = np.asarray(mfcc)
    if faces.ndim != 4 or faces.shape[1:] != (224, 224, 3):
        raise ValueError(f"SyncNet faces must be (T, 224, 224, 3) RGB crops, got shape {faces.shape}")
    if mfcc.ndim != 2 or mfcc.shape[0] != 13:
        raise ValueError(f"SyncNet MFCCs must be (13, T_a), got shape {mfcc.shape}")
    return faces, mfcc


def _lip_batch(faces: np.ndarray, rows: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(B, 3, 5, 224, 224) float32 BGR 0..255: the order and scale of the cv2-read training frames.
    ``rows[f]`` is the row of ``faces`` holding track frame ``f``."""
    windows = np.stack([faces[rows[f : f + LIP_WINDOW]] for f in frames])  # (B, 5, H, W, RGB)
    return np.ascontiguousarray(windows[..., ::-1].transpose(0, 4, 1, 2, 3), dtype=np.float32)


def _audio_batch(mfcc: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(B, 1, 13, 20) float32 MFCC windows starting at 4 * frame."""
    starts = frames * MFCC_PER_FRAME
    windows = np.stack([mfcc[:, s : s + AUDIO_WINDOW] for s in starts])
    return np.ascontiguousarray(windows[:, None], dtype=np.float32)


def _is_torch_module(obj: Any) -> bool:
    """A torch ``nn.Module`` (only possible when torch is imported already)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _no_torch_module() -> Any:
    raise AssertionError("make_model_runtime builds no torch module in an install without torch")
