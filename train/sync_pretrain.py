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

Real corpora (``train.speaker_videos``): a folder laid out ``SPEAKER/CLIP.mp4`` or
``SPEAKER/VIDEO/CLIP.mp4`` (LRS2, LRS3, VoxCeleb2) is read recursively and split by speaker, so
the held-out figure is on people the network never saw. An epoch is as many lip windows as
there are training clips (``ceil(clips / batch_size)`` steps); after each one the whole training
state is written (``train.run_checkpoint``), and ``resume`` continues from it where the run
stopped, step for step as if it had not (same batches, same weights on CPU). ``amp``: fp16 +
gradient scaling on CUDA, bf16 on CPU (``train.mixed_precision``).
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

from core.device import require_device
from core.preprocess_config import PreprocessConfig
from core.preprocess_data import PreprocessError
from core.text import plural
from models.runtimes import TorchRuntime
from models.syncnet import ARCH as SYNCNET_ARCH
from models.syncnet import SyncNet, load_syncnet
from preprocess.audio import mfcc as compute_mfcc
from preprocess.latency import AUDIO_WINDOW, LIP_WINDOW, MFCC_PER_FRAME, SyncNetScorer, offset_search
from train.mixed_precision import MixedPrecision
from train.run_checkpoint import (
    CheckpointError,
    check_signature,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_atomically,
)
from train.speaker_videos import SpeakerVideo, speaker_videos, split_by_speaker, videos_as_given

log = logging.getLogger("train")

CHECKPOINT_KIND = "sync_pretrain"
# config fields a resumed run may change: how long it trains, where, what it prints, what it starts
# from (the checkpoint's weights replace ``init``'s)
RESUMABLE_CHANGES = ("steps", "epochs", "device", "log_every", "init")


@dataclass(frozen=True)
class SyncPretrainConfig:
    steps: int = 300  # training length, unless ``epochs`` is given
    epochs: int | None = None  # an epoch: as many lip windows as training clips
    batch_size: int = 8  # lip windows per step (each brings 1 positive and batch_size negatives)
    lr: float = 1e-4  # Adam; at 1e-3 the embeddings collapse (measured: 0/28 shifts found after 150 steps)
    margin: float = 15.0  # negatives are pushed at least this far apart
    min_shift: int = 3  # frames: closer shifts are too similar to in-sync to call negatives
    max_shift: int = 15
    eval_clips: int = 4  # clips of held-out speakers for the shift-recovery figure
    eval_shifts: tuple[int, ...] = (-10, -6, -3, 0, 3, 6, 10)
    seed: int = 0
    init: str | None = None  # SyncNet weights to start from (ours or syncnet_v2.model)
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    amp: bool = False  # mixed precision: fp16 + gradient scaling on CUDA, bf16 on CPU
    log_every: int = 10
    max_frames: int = 100  # frames kept per clip (memory: 150 KB per 224x224 crop)

    def steps_per_epoch(self, train_clips: int) -> int:
        return max(1, math.ceil(train_clips / self.batch_size))

    def total_steps(self, train_clips: int) -> int:
        return self.epochs * self.steps_per_epoch(train_clips) if self.epochs is not None else self.steps

    def signature(self) -> dict:
        """The fields a resume must keep (lists for tuples: what a checkpoint reads back)."""
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(self).items()
            if k not in RESUMABLE_CHANGES
        }


@dataclass
class SyncClip:
    name: str
    faces: np.ndarray  # (T, 224, 224, 3) uint8 RGB crops of the main face track
    audio: np.ndarray  # (N,) int16 under the track's frames
    mfcc: np.ndarray  # (13, 4T) float32
    sample_rate: int
    group: str = ""  # speaker / programme (held out as a whole); empty: the clip is its own group

    def __post_init__(self):
        self.group = self.group or self.name


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
    seconds: float  # training steps only (this process's, after a resume)
    train_clips: int
    eval_clips: int
    loss_first: float
    loss_last: float
    before: ShiftRecovery
    after: ShiftRecovery
    epochs: float = 0.0  # steps / steps per epoch
    steps_this_run: int = 0  # after a resume: the steps this process trained
    batch_size: int = 0
    precision: str = "fp32"
    checkpoint: Path | None = None
    model: torch.nn.Module | None = None  # the trained network (CPU, eval mode)

    @property
    def windows_per_second(self) -> float:
        """Lip windows (each with its in-sync and shifted audio) trained per second."""
        return self.steps_this_run * self.batch_size / self.seconds if self.seconds > 0 else math.nan

    def summary(self) -> str:
        return (
            f"SyncNet pretraining: {self.steps} steps ({self.epochs:.1f} epochs, {self.precision}) on "
            f"{self.train_clips} clips; this run {self.steps_this_run} steps in {self.seconds:.0f} s "
            f"({self.windows_per_second:.1f} windows/s); loss {self.loss_first:.2f} -> {self.loss_last:.2f}\n"
            f"shift recovery on {self.eval_clips} held-out clips (within 1 frame): "
            f"before {self.before.recovered}/{self.before.trials}, after {self.after.recovered}/{self.after.trials} "
            f"({100 * self.after.rate:.0f} %; exact {self.after.exact}/{self.after.trials})\n"
            f"weights: {self.weights}; checkpoint: {self.checkpoint}"
        )


# --- data -------------------------------------------------------------------------------------


def prepare_clips(
    videos: Sequence[str | Path | SpeakerVideo],
    cfg: PreprocessConfig | None = None,
    max_frames: int = 100,
    progress: bool = True,
    device: str = "cpu",
    limit: int | None = None,
) -> list[SyncClip]:
    """Decode, detect, track and crop each video's main face (all frames, 224x224) with the
    preprocessing pipeline's own functions; videos without audio or face are skipped (logged).
    ``limit``: stop once that many clips are usable."""
    from preprocess.pipeline import Preprocessor
    from preprocess.tracks import crop_faces

    cfg = cfg or PreprocessConfig()
    items = [v if isinstance(v, SpeakerVideo) else videos_as_given([v])[0] for v in videos]
    pre = Preprocessor(cfg, device=device, syncnet=False)
    clips: list[SyncClip] = []
    for k, item in enumerate(items):
        if limit is not None and len(clips) >= limit:
            break
        try:
            clip, track = pre.speaking_face(item.path)
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
            log.warning("skipping %s: face track too short (%d frames)", item.path, len(faces))
            continue
        clips.append(SyncClip(item.name, faces, audio, mfcc, clip.sample_rate, item.group))
        if progress:
            print(f"[sync] prepared {k + 1}/{len(items)} {item.name}: {len(faces)} frames", flush=True)
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


def training_material(
    videos: str | Path | Sequence[str | Path] | None,
    clips: Sequence[SyncClip] | None,
    cfg: SyncPretrainConfig,
    pcfg: PreprocessConfig,
    progress: bool,
    device: str,
) -> tuple[list[SyncClip], list[SyncClip]]:
    """(train, held-out) clips: whole speakers held out (``train.speaker_videos``), at most
    ``eval_clips`` of their clips prepared; the rest of a held-out speaker's clips go unused."""
    if clips is not None:
        split = split_by_speaker(list(clips), cfg.eval_clips, cfg.seed)
        return split.train, split.held_out[: cfg.eval_clips]
    where = videos if isinstance(videos, str | Path) else "the listed videos"
    items = speaker_videos(videos) if isinstance(videos, str | Path) else videos_as_given(videos)
    split = split_by_speaker(items, cfg.eval_clips, cfg.seed)
    groups = len({v.group for v in items})
    if cfg.eval_clips > 0 and not split.held_out:
        log.warning(
            "%s: one speaker only (%s): no speaker held out, no shift-recovery figure", where, items[0].group
        )
    if progress:
        print(
            f"[sync] {plural(len(items), 'video')} of {plural(groups, 'speaker')} in {where}: "
            f"{plural(len(split.train), 'video')} ({plural(len(split.train_groups), 'speaker')}) train, "
            f"{plural(len(split.held_out_groups), 'speaker')} held out",
            flush=True,
        )
    held_out = prepare_clips(split.held_out, pcfg, cfg.max_frames, progress, device, limit=cfg.eval_clips)
    train = prepare_clips(split.train, pcfg, cfg.max_frames, progress, device)
    if not train:
        raise ValueError(
            f"{where}: none of the {len(split.train)} training videos has a face track with audio"
        )
    return train, held_out


def run_signature(cfg: SyncPretrainConfig, model: torch.nn.Module, pcfg: PreprocessConfig) -> dict:
    """What a resumed run must share with the checkpoint's (clip lists are checked apart)."""
    return {
        "arch": getattr(model, "arch", SYNCNET_ARCH),
        "model": model.config.to_dict(),
        "train": cfg.signature(),
        "preprocess": pcfg.to_dict(),
    }


def check_same_clips(
    path: str | Path, saved: dict, train: Sequence[SyncClip], held_out: Sequence[SyncClip]
) -> None:
    for role, clips in (("train_clips", train), ("held_out_clips", held_out)):
        before, now = list(saved[role]), [c.name for c in clips]
        if before != now:
            missing, new = sorted(set(before) - set(now)), sorted(set(now) - set(before))
            raise CheckpointError(
                f"{path}: the {role.replace('_', ' ')} differ from the checkpoint's ({len(before)} then, "
                f"{len(now)} now; missing {missing[:3]}, new {new[:3]}): resume on the same folder"
            )


def pretrain_syncnet(
    videos: str | Path | Sequence[str | Path] | None,
    out: str | Path | None,
    cfg: SyncPretrainConfig | None = None,
    preprocess: PreprocessConfig | None = None,
    clips: Sequence[SyncClip] | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
) -> SyncPretrainResult:
    """Train SyncNet on ``videos`` (a folder, by speaker; a list; or ready ``clips``), save it to
    ``out`` (a weights stem; None: don't save) and measure shift recovery on held-out speakers
    before and after. ``checkpoint``: training state written there after every epoch and at the
    end; ``resume``: a checkpoint to continue from (same data and configuration, checked)."""
    from weights.store import save_weights

    cfg = cfg or SyncPretrainConfig()
    pcfg = preprocess or PreprocessConfig()
    device = require_device(cfg.device)
    precision = MixedPrecision.for_device(device, cfg.amp)
    torch.manual_seed(cfg.seed)
    model = initial_model(cfg.init)
    signature = run_signature(cfg, model, pcfg)
    saved = None
    if resume is not None:  # checked before the costly preprocessing
        saved = load_checkpoint(resume, CHECKPOINT_KIND)
        check_signature(resume, saved["signature"], signature)
    train, held_out = training_material(videos, clips, cfg, pcfg, progress, device)
    if not train:
        raise ValueError("no training clips")
    if saved is not None:
        check_same_clips(resume, saved, train, held_out)
    per_epoch = cfg.steps_per_epoch(len(train))
    total = cfg.total_steps(len(train))
    rng = np.random.default_rng([1, cfg.seed])  # batches (the split drew from its own)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = precision.scaler()
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        restore_rng(rng, saved["rng"])
        before = ShiftRecovery(**saved["before"])
        losses = list(saved["losses"])
        first = int(saved["step"]) + 1
        if progress:
            print(
                f"[sync] resuming {resume} at step {first} of {total} (epoch {saved['step'] / per_epoch:.1f})",
                flush=True,
            )
    else:
        before = (
            shift_recovery(model, held_out, cfg.eval_shifts, pcfg, device) if held_out else ShiftRecovery()
        )
        losses, first = [], 1
    model.to(device).train()

    def save_state(step: int) -> None:
        state = {
            "kind": CHECKPOINT_KIND,
            "step": step,
            "epoch": step / per_epoch,
            "signature": signature,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(rng),
            "before": asdict(before),
            "losses": losses,
            "train_clips": [c.name for c in train],
            "held_out_clips": [c.name for c in held_out],
        }
        save_atomically(checkpoint, state)

    started = epoch_started = time.perf_counter()
    for step in range(first, total + 1):
        lip, pos, neg = (t.to(device, non_blocking=True) for t in draw_batch(train, cfg, rng))
        with precision.autocast():
            lip_emb = model.forward_lip(lip)
            aud_emb = model.forward_aud(torch.cat([pos, neg]))
        # the loss in fp32: squared distances of 1024-d embeddings lose digits in half precision
        lip_emb, aud_emb = lip_emb.float(), aud_emb.float()
        loss = contrastive_loss(lip_emb, aud_emb[: len(pos)], aud_emb[len(pos) :], cfg.margin)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)  # clip the true gradients
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss.detach()))
        if progress and (step % cfg.log_every == 0 or step == total):
            recent = np.mean(losses[-cfg.log_every :])
            rate = (time.perf_counter() - started) / (step - first + 1)
            print(f"[sync] step {step}/{total} loss {recent:.3f} ({rate:.2f} s/step)", flush=True)
        if step % per_epoch == 0 or step == total:
            if checkpoint is not None:
                save_state(step)
            if progress and step % per_epoch == 0:
                took = time.perf_counter() - epoch_started
                print(
                    f"[sync] epoch {step // per_epoch} ({per_epoch} steps, {per_epoch * cfg.batch_size} windows) "
                    f"in {took:.1f} s: {per_epoch * cfg.batch_size / took:.1f} windows/s",
                    flush=True,
                )
            epoch_started = time.perf_counter()
    seconds = time.perf_counter() - started
    after = shift_recovery(model, held_out, cfg.eval_shifts, pcfg, device) if held_out else ShiftRecovery()
    model = model.cpu().eval()
    weights = None
    if out is not None:
        extra = {
            "trained_by": "train.sync_pretrain",
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "train_clips": [c.name for c in train],
            "train_speakers": len({c.group for c in train}),
            "eval_clips": [c.name for c in held_out],
            "shift_recovery": after.rate if held_out else None,
        }
        weights = save_weights(
            out, model.state_dict(), SYNCNET_ARCH, model.config.to_dict(), pcfg.to_dict(), extra=extra
        )
    k = max(1, min(cfg.log_every, len(losses) // 2))
    return SyncPretrainResult(
        weights=weights,
        steps=total,
        seconds=seconds,
        train_clips=len(train),
        eval_clips=len(held_out),
        loss_first=float(np.mean(losses[:k])) if losses else math.nan,
        loss_last=float(np.mean(losses[-k:])) if losses else math.nan,
        before=before,
        after=after,
        epochs=total / per_epoch,
        steps_this_run=max(0, total - first + 1),
        batch_size=cfg.batch_size,
        precision=precision.name,
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
        model=model,
    )
