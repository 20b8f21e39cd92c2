"""``python -m train sync-pretrain``: self-supervised SyncNet training on unlabelled real videos.

SyncNet's own recipe (Chung & Zisserman, 2016): a talking face and its soundtrack are in sync
in any real video, so sync labels are free. A 5-frame lip window and the 0.2 s of audio under
it form a positive pair; the same window against audio shifted by ``min_shift..max_shift``
frames, or against other clips' audio, forms negatives. The loss is the contrastive loss on
the euclidean distance between the two embeddings: ``d^2`` for positives,
``max(0, margin - d)^2`` for negatives.

The network is the official ``syncnet_v2`` layout (``models.syncnet.SyncNet``), so the
released weights can be the starting point (``--init``) and the result is saved in our format
(arch ``"syncnet"``) where preprocessing looks for it (``SyncConfig.weights``).

Evaluation: held-out clips (not trained on) get their audio shifted by known amounts; the
offset search of ``preprocess.latency`` must find the shift (within one frame).

Cost: the lip stream runs 3-D convolutions on 224x224 crops, ~1.6 GMAC per window forward;
on two idle CPU cores a training step of 8 windows takes ~0.6 s (1.5-3 s on a shared machine).
Measured: 300 steps (lr 1e-4, batch 8) on 20 synthetic real clips of 3 s recover every shift
(0, ±3, ±6, ±10 frames: 28/28, exact) on 4 held-out clips; at lr 1e-3 the embeddings collapse
to equal distances (loss stuck at ~margin²/2, 0/28). Real footage (``../shared/media/real``:
29 clips, 23 trained on, 6 held out, up to 250 frames each) on an H200 with ``--device cuda
--batch-size 32 --max-frames 250``: 1200 steps in 129 s (0.11 s/step), loss 240 -> 24; shift
recovery 0/42 before, 10/42 after (24 %, exact 4/42; chance within one frame is ~10 % over the
31 offsets). From scratch on minutes of footage SyncNet learns little: the official weights
came from hundreds of hours, and ``--init`` starts from them where they are available.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import PreprocessError
from models.runtimes import TorchRuntime
from models.syncnet import ARCH as SYNCNET_ARCH
from models.syncnet import SyncNet, load_syncnet
from preprocess.audio import mfcc as compute_mfcc
from preprocess.datasets import videos_under
from preprocess.latency import AUDIO_WINDOW, LIP_WINDOW, MFCC_PER_FRAME, SyncNetScorer, offset_search

log = logging.getLogger("train")


@dataclass(frozen=True)
class SyncPretrainConfig:
    steps: int = 300
    batch_size: int = 8  # lip windows per step (each brings 1 positive and batch_size negatives)
    lr: float = 1e-4  # Adam; at 1e-3 the embeddings collapse (measured: 0/28 shifts found after 150 steps)
    margin: float = 15.0  # negatives are pushed at least this far apart
    min_shift: int = 3  # frames: closer shifts are too similar to in-sync to call negatives
    max_shift: int = 15
    eval_clips: int = 4  # clips held out for the shift-recovery figure
    eval_shifts: tuple[int, ...] = (-10, -6, -3, 0, 3, 6, 10)
    seed: int = 0
    init: str | None = None  # SyncNet weights to start from (ours or syncnet_v2.model)
    device: str = "cpu"
    log_every: int = 10
    max_frames: int = 100  # frames kept per clip (memory: 150 KB per 224x224 crop)


@dataclass
class SyncClip:
    name: str
    faces: np.ndarray  # (T, 224, 224, 3) uint8 RGB crops of the main face track
    audio: np.ndarray  # (N,) int16 under the track's frames
    mfcc: np.ndarray  # (13, 4T) float32
    sample_rate: int


@dataclass
class ShiftRecovery:
    trials: int = 0
    recovered: int = 0  # |found offset - true offset| <= 1 frame
    exact: int = 0
    found: list[tuple[str, int, int]] = field(default_factory=list)  # (clip, true offset, found offset)

    @property
    def rate(self) -> float:
        return self.recovered / self.trials if self.trials else math.nan


@dataclass
class SyncPretrainResult:
    weights: Path | None
    steps: int
    seconds: float
    train_clips: int
    eval_clips: int
    loss_first: float
    loss_last: float
    before: ShiftRecovery
    after: ShiftRecovery

    def summary(self) -> str:
        return (
            f"SyncNet pretraining: {self.steps} steps in {self.seconds:.0f} s on {self.train_clips} clips; "
            f"loss {self.loss_first:.2f} -> {self.loss_last:.2f}\n"
            f"shift recovery on {self.eval_clips} held-out clips (within 1 frame): "
            f"before {self.before.recovered}/{self.before.trials}, after {self.after.recovered}/{self.after.trials} "
            f"({100 * self.after.rate:.0f} %; exact {self.after.exact}/{self.after.trials})\n"
            f"weights: {self.weights}"
        )


# --- data -------------------------------------------------------------------------------------


def prepare_clips(
    videos: Sequence[str | Path],
    cfg: PreprocessConfig | None = None,
    max_frames: int = 100,
    progress: bool = True,
    device: str = "cpu",
) -> list[SyncClip]:
    """Decode, detect, track and crop each video's main face (all frames, 224x224) with the
    preprocessing pipeline's own functions; videos without audio or face are skipped (logged)."""
    from preprocess.pipeline import Preprocessor
    from preprocess.tracks import crop_faces

    cfg = cfg or PreprocessConfig()
    pre = Preprocessor(cfg, device=device, syncnet=False)
    clips = []
    for k, path in enumerate(videos):
        try:
            clip, track = pre.speaking_face(path)
        except PreprocessError as err:
            log.warning("skipping %s", err)
            continue
        start = int(track.frame_indices[0])
        stop = min(int(track.frame_indices[-1]) + 1, start + max_frames)
        faces = crop_faces(clip.frames, track, cfg.track, np.arange(start, stop))
        per_frame = clip.sample_rate / clip.fps
        audio = clip.audio[int(round(start * per_frame)) : int(round(stop * per_frame))]
        mfcc = compute_mfcc(audio, clip.sample_rate, cfg.audio)
        if len(faces) < LIP_WINDOW + 2 * cfg.sync.vshift // 3 or mfcc.shape[1] < AUDIO_WINDOW:
            log.warning("skipping %s: face track too short (%d frames)", path, len(faces))
            continue
        clips.append(SyncClip(Path(path).name, faces, audio, mfcc, clip.sample_rate))
        if progress:
            print(f"[sync] prepared {k + 1}/{len(videos)} {Path(path).name}: {len(faces)} frames", flush=True)
    return clips


def lip_windows(faces: np.ndarray, starts: Sequence[int]) -> torch.Tensor:
    """(B, 3, 5, 224, 224) float BGR 0..255, SyncNet's input layout."""
    w = np.stack([faces[s : s + LIP_WINDOW] for s in starts])[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(w.transpose(0, 4, 1, 2, 3), dtype=np.float32))


def audio_windows(mfcc: np.ndarray, starts: Sequence[int]) -> torch.Tensor:
    """(B, 1, 13, 20) MFCC windows under video frames ``starts``."""
    w = np.stack([mfcc[:, s * MFCC_PER_FRAME : s * MFCC_PER_FRAME + AUDIO_WINDOW] for s in starts])
    return torch.from_numpy(np.ascontiguousarray(w[:, None], dtype=np.float32))


def usable_frames(clip: SyncClip) -> int:
    """Window starts f with both the lip window and its audio window inside the clip."""
    return min(len(clip.faces) - LIP_WINDOW + 1, (clip.mfcc.shape[1] - AUDIO_WINDOW) // MFCC_PER_FRAME + 1)


def draw_batch(
    clips: Sequence[SyncClip], cfg: SyncPretrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lip windows, their in-sync audio and their shifted (same-clip) audio."""
    lips, pos, neg = [], [], []
    for _ in range(cfg.batch_size):
        clip = clips[int(rng.integers(len(clips)))]
        n = usable_frames(clip)
        f = int(rng.integers(n))
        shifts = [
            d for d in range(-cfg.max_shift, cfg.max_shift + 1) if abs(d) >= cfg.min_shift and 0 <= f + d < n
        ]
        d = int(rng.choice(shifts)) if shifts else (n - 1 - f if f < n // 2 else -f)
        lips.append(lip_windows(clip.faces, [f]))
        pos.append(audio_windows(clip.mfcc, [f]))
        neg.append(audio_windows(clip.mfcc, [f + d]))
    return torch.cat(lips), torch.cat(pos), torch.cat(neg)


def contrastive_loss(lip: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float) -> torch.Tensor:
    """SyncNet's loss. Negatives: each window's shifted audio, plus every other window's audio
    in the batch (different moments or clips: free extra negatives for the costly lip pass)."""
    d_pos = F.pairwise_distance(lip, pos)
    d_shift = F.pairwise_distance(lip, neg)
    d_all = torch.cdist(lip, pos)  # (B, B): lip i against the in-sync audio of window j
    off_diag = ~torch.eye(len(lip), dtype=torch.bool, device=lip.device)
    negatives = torch.cat([d_shift, d_all[off_diag]])
    return d_pos.pow(2).mean() + F.relu(margin - negatives).pow(2).mean()


# --- evaluation -------------------------------------------------------------------------------


def shifted_mfcc(clip: SyncClip, shift: int, cfg: PreprocessConfig, fps: float = 25.0) -> np.ndarray:
    """MFCCs of the clip's audio delayed by ``shift`` frames (advanced when negative); the
    gap is filled with digital near-silence."""
    k = int(round(abs(shift) * clip.sample_rate / fps))
    quiet = np.zeros(k, np.int16)
    audio = clip.audio
    if shift > 0:
        audio = np.concatenate([quiet, audio[: len(audio) - k]])
    elif shift < 0:
        audio = np.concatenate([audio[k:], quiet])
    return compute_mfcc(audio, clip.sample_rate, cfg.audio)


@torch.no_grad()
def shift_recovery(
    model: SyncNet,
    clips: Sequence[SyncClip],
    shifts: Sequence[int],
    cfg: PreprocessConfig,
    device: str = "cpu",
) -> ShiftRecovery:
    """Delay each clip's audio by each shift; the offset search should answer ``-shift``
    (preprocess.latency's sign: positive offset = audio leads)."""
    scorer = SyncNetScorer(TorchRuntime(model, device), cfg.sync)  # moves ``model`` to ``device``
    out = ShiftRecovery()
    for clip in clips:
        lip_emb, _, lip_frames = scorer.embed(clip.faces, clip.mfcc)
        for s in shifts:
            mfcc = shifted_mfcc(clip, s, cfg)
            frames = np.arange((mfcc.shape[1] - AUDIO_WINDOW) // MFCC_PER_FRAME + 1)
            aud_emb = model.forward_aud(audio_windows(mfcc, frames).to(device)).cpu().numpy()
            found = offset_search(lip_emb, aud_emb, lip_frames, cfg.sync.vshift).offset
            out.trials += 1
            out.recovered += abs(found + s) <= 1
            out.exact += found == -s
            out.found.append((clip.name, -s, found))
    return out


# --- training ---------------------------------------------------------------------------------


def initial_model(init: str | None) -> SyncNet:
    """A fresh SyncNet, or ``init``'s weights (ours or syncnet_v2.model, checked key by key)."""
    return load_syncnet(init).train() if init else SyncNet()


def list_videos(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of videos")
    videos = videos_under(folder)
    if not videos:
        raise ValueError(f"{folder}: no videos found")
    return videos


def pretrain_syncnet(
    videos: str | Path | Sequence[str | Path],
    out: str | Path | None,
    cfg: SyncPretrainConfig | None = None,
    preprocess: PreprocessConfig | None = None,
    clips: Sequence[SyncClip] | None = None,
    progress: bool = True,
) -> SyncPretrainResult:
    """Train SyncNet on ``videos`` (a folder or a list; or ready ``clips``), save it to ``out``
    (a weights stem; None: don't save) and measure shift recovery before and after."""
    from weights.store import save_weights

    cfg = cfg or SyncPretrainConfig()
    pcfg = preprocess or PreprocessConfig()
    if clips is None:
        paths = list_videos(videos) if isinstance(videos, str | Path) else list(videos)
        clips = prepare_clips(paths, pcfg, cfg.max_frames, progress, cfg.device)
    if len(clips) < 2:
        raise ValueError(f"need at least 2 usable clips, got {len(clips)}")
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(clips))
    n_eval = min(cfg.eval_clips, len(clips) - 1)
    held_out = [clips[i] for i in order[:n_eval]]
    train = [clips[i] for i in order[n_eval:]]
    torch.manual_seed(cfg.seed)
    model = initial_model(cfg.init).to(cfg.device)
    before = (
        shift_recovery(model, held_out, cfg.eval_shifts, pcfg, cfg.device) if held_out else ShiftRecovery()
    )
    model.to(cfg.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    started = time.perf_counter()
    losses = []
    for step in range(1, cfg.steps + 1):
        lip, pos, neg = (t.to(cfg.device) for t in draw_batch(train, cfg, rng))
        lip_emb = model.forward_lip(lip)
        aud_emb = model.forward_aud(torch.cat([pos, neg]))
        loss = contrastive_loss(lip_emb, aud_emb[: len(pos)], aud_emb[len(pos) :], cfg.margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        losses.append(float(loss.detach()))
        if progress and (step % cfg.log_every == 0 or step == cfg.steps):
            recent = np.mean(losses[-cfg.log_every :])
            rate = (time.perf_counter() - started) / step
            print(f"[sync] step {step}/{cfg.steps} loss {recent:.3f} ({rate:.2f} s/step)", flush=True)
    seconds = time.perf_counter() - started
    after = (
        shift_recovery(model, held_out, cfg.eval_shifts, pcfg, cfg.device) if held_out else ShiftRecovery()
    )
    model = model.cpu().eval()
    weights = None
    if out is not None:
        extra = {
            "trained_by": "train.sync_pretrain",
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "train_clips": [c.name for c in train],
            "eval_clips": [c.name for c in held_out],
            "shift_recovery": after.rate if held_out else None,
        }
        weights = save_weights(
            out, model.state_dict(), SYNCNET_ARCH, model.config.to_dict(), pcfg.to_dict(), extra=extra
        )
    k = max(1, min(cfg.log_every, len(losses) // 2))
    return SyncPretrainResult(
        weights=weights,
        steps=cfg.steps,
        seconds=seconds,
        train_clips=len(train),
        eval_clips=len(held_out),
        loss_first=float(np.mean(losses[:k])) if losses else math.nan,
        loss_last=float(np.mean(losses[-k:])) if losses else math.nan,
        before=before,
        after=after,
    )
