"""``python -m train sync-train``: train the shipped sync model (``models.syncnet_mouth``).

Self-supervised, as SyncNet: a talking face is in sync with its own soundtrack. The loss is
"Perfect match" (Chung et al., 2019): each lip window's cosine similarity to the audio windows
at the 31 offsets -15..+15 of the *same* clip, a softmax over them with a learnable
temperature, and cross-entropy on the true offset (0). Those are exactly the candidates the
offset search (``preprocess.latency``) later picks among, so the negatives are the hard ones;
other clips' audio (separable by voice and identity) is never a negative.

Data: the cache of ``train.sync_data`` (lower-face crops and audio, extracted once). Each step
draws ``clips_per_step`` clips by weight (a group's share grows with the square root of its
footage, so one speaker's 60 clips do not drown the others; each source has a multiplier) and
``windows_per_clip`` consecutive lip windows from each, anywhere in the clip: the audio
is padded with ``vshift`` frames of digital silence, so windows near the ends have silent
candidates, as the offset search sees. Augmentation per lip window: scale/shift jitter,
mirror, brightness/contrast/colour, grey, blur, JPEG; of the audio per clip: gain, noise,
band-limiting (all before the silence padding).

Held-out figure (checkpoint choice): whole groups (other speakers) are held out; each held-out
clip's audio is delayed by -10..+10 frames and the full offset search must find the shift within
one frame, the protocol of ``make bench``'s agreement block (``bench.sync_agreement``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from core.preprocess_config import PreprocessConfig
from models.syncnet_mouth import ARCH, MOUTH_SIZE, SyncNetMouth, SyncNetMouthConfig
from preprocess.audio import mfcc as compute_mfcc
from preprocess.latency import AUDIO_WINDOW, LIP_WINDOW, MFCC_PER_FRAME, offset_search
from train.sync_data import MARGIN, SyncClipData

log = logging.getLogger("train")

SAMPLES_PER_FRAME = 640  # 16 kHz audio at 25 fps (MediaConfig's defaults, which the cache used)


@dataclass(frozen=True)
class SyncTrainConfig:
    steps: int = 1200
    clips_per_step: int = 8
    windows_per_clip: int = 4  # consecutive lip windows per clip (they share audio windows): 32 per step
    lr: float = 1e-3  # AdamW, cosine decay to 5 % after a 5 % warm-up
    weight_decay: float = 1e-4
    vshift: int = 15  # candidate offsets -vshift..vshift (the search's)
    # offsets 1..near_skip frames from the true one left out of the softmax (their windows overlap
    # the true one by 60-80 %). Tried at 2: held-out 30 % at step 500 against 37 % without; 0 ships.
    near_skip: int = 0
    init_scale: float = 10.0  # logit scale (1 / temperature) at start; learnt
    width: int = 24
    embed_dim: int = 128
    c0_floor: float | None = 0.0
    head: str = "flatten"
    held_out_fraction: float = 0.3  # of the small speaker groups (see split_groups)
    eval_every: int = 100
    eval_shifts: tuple[int, ...] = tuple(range(-10, 11))
    source_weights: tuple[tuple[str, float], ...] = (("real/", 1.0), ("real_mouth/", 1.0), ("fake/", 0.5))
    augment: bool = True
    bn_batches: int = 40  # un-augmented batches that set the BatchNorm statistics before each evaluation
    init: str | None = None  # start from these syncnet_mouth weights (their config wins)
    seed: int = 0
    threads: int = 0  # torch threads; 0 leaves torch's default
    log_every: int = 20


@dataclass
class HeldOutRecovery:
    step: int
    trials: int
    hits: int  # |found - true| <= 1
    per_clip: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.hits / self.trials if self.trials else math.nan


@dataclass
class SyncTrainResult:
    weights: Path | None
    steps: int
    best_step: int
    seconds: float
    train_clips: int
    held_out_clips: list[str]
    history: list[HeldOutRecovery]
    loss_first: float
    loss_last: float
    model: SyncNetMouth | None = None  # the kept checkpoint, eval mode

    @property
    def best(self) -> HeldOutRecovery:
        return max(self.history, key=lambda h: (h.hits, h.step))

    def summary(self) -> str:
        h = self.best
        return (
            f"sync model: {self.steps} steps in {self.seconds / 60:.1f} min on {self.train_clips} clips;"
            f" loss {self.loss_first:.2f} -> {self.loss_last:.2f}\n"
            f"held-out speakers ({len(self.held_out_clips)} clips x shifts): shift found ±1 "
            + ", ".join(f"step {r.step}: {100 * r.rate:.0f} %" for r in self.history)
            + f"\nkept step {h.step} ({h.hits}/{h.trials}); weights: {self.weights}"
        )


# --- split and sampling -----------------------------------------------------------------------


def split_groups(clips: Sequence[SyncClipData], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) clip indices. Held out: ``fraction`` of the groups of real speech that
    hold few clips (other speakers, one or a few clips each); the big groups (one speaker's
    corpus, a TEDx mouth set) and generated clips always train."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        groups.setdefault(c.group, []).append(i)
    small = sorted(
        g for g, idx in groups.items() if len(idx) <= 3 and clips[idx[0]].source.startswith("real/")
    )
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(small)[: int(round(fraction * len(small)))].tolist()) if small else set()
    train = [i for g, idx in groups.items() if g not in held for i in idx]
    return sorted(train), sorted(i for g in held for i in groups[g])


def usable(clip: SyncClipData) -> int:
    """Lip windows with audio under them (window starts 0..n-1)."""
    audio_frames = len(clip.audio) // SAMPLES_PER_FRAME
    return min(len(clip.mouth), audio_frames) - LIP_WINDOW + 1


def clip_weights(clips: Sequence[SyncClipData], source_weights) -> np.ndarray:
    """Sampling weights: a group's total share ~ sqrt(its frames) x its source's multiplier,
    spread over its clips by length."""
    frames = np.array([max(usable(c), 0) for c in clips], np.float64)
    group_frames: dict[str, float] = {}
    for c, n in zip(clips, frames, strict=True):
        group_frames[c.group] = group_frames.get(c.group, 0.0) + n
    w = np.zeros(len(clips))
    for i, c in enumerate(clips):
        mult = next((m for prefix, m in source_weights if (c.source + "/").startswith(prefix)), 1.0)
        g = group_frames[c.group]
        w[i] = mult * math.sqrt(g) * frames[i] / g if g > 0 else 0.0
    return w / w.sum()


# --- augmentation -----------------------------------------------------------------------------


def augment_audio(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gain, additive noise, band-limiting of int16 samples (float64 out, int16 scale)."""
    x = audio.astype(np.float64) * 10 ** rng.uniform(-0.6, 0.5)  # -12..+10 dB
    if rng.random() < 0.5:
        rms = math.sqrt(float(np.mean(x**2)) + 1e-9)
        x = x + rng.normal(0, rms / 10 ** (rng.uniform(5, 35) / 20), x.shape)
    if rng.random() < 0.3:  # telephone-ish: cut above 2.5-6 kHz
        spec = np.fft.rfft(x)
        cut = int(len(spec) * rng.uniform(2500, 6000) / 8000)
        spec[cut:] = 0
        x = np.fft.irfft(spec, len(x))
    return np.clip(x, -32768, 32767)


def augment_window(window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(5, H, W, 3) uint8 RGB with margin → (5, 48, 64, 3) float32 RGB 0..255; one draw per window."""
    h, w = MOUTH_SIZE
    frames = window.astype(np.float32)
    scale = rng.uniform(0.88, 1.12)
    ch, cw = h * scale, w * scale
    cy = window.shape[1] / 2 + rng.uniform(-3, 3)
    cx = window.shape[2] / 2 + rng.uniform(-4, 4)
    m = np.float32([[cw / w, 0, cx - cw / 2], [0, ch / h, cy - ch / 2]])  # output pixel -> source pixel
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = np.stack([cv2.warpAffine(f, m, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT) for f in frames])
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    if rng.random() < 0.2:
        out = np.repeat(out.mean(axis=3, keepdims=True), 3, axis=3)
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.7, 1.3) + mean * rng.uniform(0.7, 1.3)
    out = out * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    if rng.random() < 0.3:
        sigma = rng.uniform(0.4, 1.2)
        out = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in out])
    out = np.clip(out, 0, 255)
    if rng.random() < 0.3:
        quality = int(rng.integers(25, 90))
        coded = []
        for f in out.astype(np.uint8):
            _, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])
            coded.append(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED))
        out = np.stack(coded).astype(np.float32)
    return np.ascontiguousarray(out, dtype=np.float32)


def centre_window(window: np.ndarray) -> np.ndarray:
    """The inference crop: the margin cut off (equal to ``mouth_region(margin=0)``)."""
    return window[:, MARGIN : MARGIN + MOUTH_SIZE[0], MARGIN : MARGIN + MOUTH_SIZE[1]].astype(np.float32)


def to_model_layout(windows: Sequence[np.ndarray]) -> torch.Tensor:
    """(5, H, W, RGB) windows → (B, 3, 5, H, W) BGR, the network's layout."""
    x = np.stack(windows)[..., ::-1].transpose(0, 4, 1, 2, 3)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


# --- batches ----------------------------------------------------------------------------------


def audio_windows(audio: np.ndarray, first: int, count: int, pad: int, cfg: PreprocessConfig) -> torch.Tensor:
    """(count, 1, 13, 20) MFCC windows at video frames first..first+count-1 of the audio padded
    with ``pad`` frames of digital silence before it (frame indices in padded coordinates)."""
    padded = np.concatenate([np.zeros(pad * SAMPLES_PER_FRAME), audio, np.zeros(pad * SAMPLES_PER_FRAME)])
    seg = padded[first * SAMPLES_PER_FRAME : (first + count + LIP_WINDOW + 1) * SAMPLES_PER_FRAME]
    seg = np.pad(seg, (0, (count + LIP_WINDOW + 1) * SAMPLES_PER_FRAME - len(seg)))
    m = compute_mfcc(seg, 16000, cfg.audio)
    starts = np.arange(count) * MFCC_PER_FRAME
    w = np.stack([m[:, s : s + AUDIO_WINDOW] for s in starts])
    return torch.from_numpy(np.ascontiguousarray(w[:, None], dtype=np.float32))


def clip_audio_span(
    clip: SyncClipData, n: int, first: int, last: int, pad: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Samples under padded frames first..last + 5 (+1 for the MFCC's last window): the clip's
    audio (its n usable windows) with ``pad`` frames of digital silence before and after; with
    ``rng``, the clip's part augmented (the silence stays digital, as the search's padding)."""
    lo, hi = (first - pad) * SAMPLES_PER_FRAME, (last - pad + LIP_WINDOW + 1) * SAMPLES_PER_FRAME
    end = (n + LIP_WINDOW - 1) * SAMPLES_PER_FRAME
    seg = np.zeros(hi - lo, np.float64)
    a, b = max(lo, 0), min(hi, end)
    if b > a:
        part = clip.audio[a:b].astype(np.float64)
        seg[a - lo : b - lo] = augment_audio(part, rng) if rng is not None else part
    return seg


def draw_batch(
    clips: Sequence[SyncClipData],
    weights: np.ndarray,
    cfg: SyncTrainConfig,
    pcfg: PreprocessConfig,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lip windows (B, 3, 5, 48, 64); audio windows (A, 1, 13, 20); index (B, 2V+1) of each lip
    window's candidate audio windows at offsets -V..V (the true one in the middle)."""
    lips, auds, index = [], [], []
    span = cfg.windows_per_clip - 1
    base = 0
    for c in rng.choice(len(clips), cfg.clips_per_step, p=weights):
        clip = clips[int(c)]
        n = usable(clip)
        f0 = int(rng.integers(max(n - span, 1)))
        starts = [min(f0 + k, n - 1) for k in range(cfg.windows_per_clip)]
        for s in starts:
            win = clip.mouth[s : s + LIP_WINDOW]
            lips.append(augment_window(win, rng) if cfg.augment else centre_window(win))
        # padded coordinates: frame f of the clip is f + vshift; candidates f-V..f+V -> f..f+2V
        first, last = starts[0], starts[-1] + 2 * cfg.vshift
        audio = clip_audio_span(clip, n, first, last, cfg.vshift, rng if cfg.augment else None)
        auds.append(audio_windows(audio, 0, last - first + 1, 0, pcfg))
        for s in starts:
            index.append(base + (s - first) + np.arange(2 * cfg.vshift + 1))
        base += last - first + 1
    return to_model_layout(lips), torch.cat(auds), torch.from_numpy(np.stack(index))


def offset_loss(
    lip: torch.Tensor, aud: torch.Tensor, index: torch.Tensor, logit_scale: torch.Tensor, near_skip: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the true offset among each window's candidates (without the
    ``near_skip`` offsets either side of it); also the top-1 accuracy."""
    cand = aud[index]  # (B, 2V+1, D)
    logits = logit_scale * torch.einsum("bd,bkd->bk", lip, cand)
    middle = index.shape[1] // 2
    if near_skip > 0:
        keep = torch.ones(index.shape[1], dtype=torch.bool)
        keep[middle - near_skip : middle] = False
        keep[middle + 1 : middle + near_skip + 1] = False
        logits = logits[:, keep]
        middle -= near_skip
    target = torch.full((len(lip),), middle, dtype=torch.long)
    return F.cross_entropy(logits, target), (logits.argmax(1) == target).float().mean()


# --- held-out evaluation ----------------------------------------------------------------------


@torch.no_grad()
def shift_recovery(
    model: SyncNetMouth,
    clips: Sequence[SyncClipData],
    shifts: Sequence[int],
    pcfg: PreprocessConfig,
    vshift: int = 15,
    step: int = 0,
) -> HeldOutRecovery:
    """The bench's protocol: audio delayed by each shift (silence-padded), full offset search."""
    model.eval()
    pad = max(abs(s) for s in shifts)
    out = HeldOutRecovery(step, 0, 0)
    for clip in clips:
        n = usable(clip)
        if n < 1:
            continue
        lip = torch.cat(
            [
                model.forward_mouth(
                    to_model_layout([centre_window(clip.mouth[s : s + LIP_WINDOW]) for s in chunk])
                )
                for chunk in np.array_split(np.arange(n), max(1, n // 64))
            ]
        ).numpy()
        audio = clip.audio[: (n + LIP_WINDOW - 1) * SAMPLES_PER_FRAME].astype(np.float64)
        aud = model.forward_aud(audio_windows(audio, 0, n + 2 * pad, pad, pcfg)).numpy()
        hits = 0
        for s in shifts:
            found = offset_search(lip, aud[pad - s : pad - s + n], None, vshift, valid_only=True).offset
            hits += abs(found + s) <= 1
        out.trials += len(shifts)
        out.hits += hits
        out.per_clip[clip.name] = hits
    model.train()
    return out


# --- training ---------------------------------------------------------------------------------


@torch.no_grad()
def recalibrate_batchnorm(
    model: SyncNetMouth,
    clips: Sequence[SyncClipData],
    weights: np.ndarray,
    cfg: SyncTrainConfig,
    pcfg: PreprocessConfig,
    batches: int,
    seed: int,
) -> None:
    """BatchNorm statistics averaged over ``batches`` un-augmented training batches (what
    inference sees), instead of the running average of the last augmented ones, which moves with
    every step and made the held-out figure swing by ±10 points between evaluations."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    plain = replace(cfg, augment=False)
    rng = np.random.default_rng(seed)
    for _ in range(batches):
        lip, aud, _ = draw_batch(clips, weights, plain, pcfg, rng)
        model.forward_mouth(lip)
        model.forward_aud(aud)
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.train(was_training)


def train_sync_mouth(
    clips: Sequence[SyncClipData],
    out: str | Path | None,
    cfg: SyncTrainConfig | None = None,
    progress: bool = True,
    tensorboard: str | Path | None = None,
) -> SyncTrainResult:
    """Train on ``clips`` (held-out groups split off), keep the checkpoint with the best held-out
    shift recovery, save it to ``out`` (weights stem, with ONNX; None: don't save)."""
    cfg = cfg or SyncTrainConfig()
    pcfg = PreprocessConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_idx, held_idx = split_groups(clips, cfg.held_out_fraction, cfg.seed)
    train = [clips[i] for i in train_idx if usable(clips[i]) > 2 * cfg.windows_per_clip]
    held = [clips[i] for i in held_idx]
    if not train:
        raise ValueError("no usable training clips")
    weights = clip_weights(train, cfg.source_weights)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = SyncNetMouth(
        SyncNetMouthConfig(embed_dim=cfg.embed_dim, width=cfg.width, c0_floor=cfg.c0_floor, head=cfg.head)
    ).train()
    log_scale = torch.nn.Parameter(torch.tensor(math.log(cfg.init_scale)))
    opt = torch.optim.AdamW([*model.parameters(), log_scale], lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.steps // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, cfg.steps - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    writer = None
    if tensorboard is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(tensorboard))
    history = [shift_recovery(model, held, cfg.eval_shifts, pcfg, cfg.vshift, 0)] if held else []
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    best = history[0] if history else None
    losses, accs = [], []
    started = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        lip, aud, index = draw_batch(train, weights, cfg, pcfg, rng)
        loss, acc = offset_loss(
            model.forward_mouth(lip),
            model.forward_aud(aud),
            index,
            log_scale.exp().clamp(max=100),
            cfg.near_skip,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        accs.append(float(acc))
        if writer is not None:
            writer.add_scalar("sync/loss", losses[-1], step)
            writer.add_scalar("sync/top1", accs[-1], step)
        if progress and step % cfg.log_every == 0:
            rate = (time.perf_counter() - started) / step
            print(
                f"[sync] step {step}/{cfg.steps} loss {np.mean(losses[-cfg.log_every :]):.3f}"
                f" top1 {np.mean(accs[-cfg.log_every :]):.2f} scale {float(log_scale.detach().exp()):.1f} ({rate:.2f} s/step)",
                flush=True,
            )
        if held and (step % cfg.eval_every == 0 or step == cfg.steps):
            recalibrate_batchnorm(model, train, weights, cfg, pcfg, cfg.bn_batches, cfg.seed + step)
            r = shift_recovery(model, held, cfg.eval_shifts, pcfg, cfg.vshift, step)
            history.append(r)
            if writer is not None:
                writer.add_scalar("sync/held_out_shift_found", r.rate, step)
            if progress:
                print(
                    f"[sync] step {step}: held-out shift found ±1 {r.hits}/{r.trials} ({100 * r.rate:.0f} %) {r.per_clip}",
                    flush=True,
                )
            if r.hits >= best.hits:
                best, best_state = r, {k: v.clone() for k, v in model.state_dict().items()}
    seconds = time.perf_counter() - started
    if writer is not None:
        writer.close()
    if held:
        model.load_state_dict(best_state)
    else:
        recalibrate_batchnorm(model, train, weights, cfg, pcfg, cfg.bn_batches, cfg.seed)
    model.eval()
    path = None
    if out is not None:
        path = save_sync_model(model, out, cfg, train, held, best, seconds)
    k = max(1, min(cfg.log_every, len(losses) // 2))
    return SyncTrainResult(
        weights=path,
        steps=cfg.steps,
        best_step=best.step if best else cfg.steps,
        seconds=seconds,
        train_clips=len(train),
        held_out_clips=[c.name for c in held],
        history=history,
        loss_first=float(np.mean(losses[:k])),
        loss_last=float(np.mean(losses[-k:])),
        model=model,
    )


def save_sync_model(
    model: SyncNetMouth,
    out: str | Path,
    cfg: SyncTrainConfig,
    train: Sequence[SyncClipData],
    held: Sequence[SyncClipData],
    best: HeldOutRecovery | None,
    seconds: float,
) -> Path:
    """safetensors + JSON (arch ``syncnet_mouth``) and a checked ONNX beside them."""
    from train.export import write_checked_onnx
    from weights.store import save_weights

    extra = {
        "trained_by": "train.sync_mouth",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "train_clips": len(train),
        "train_groups": sorted({c.group for c in train}),
        "held_out_clips": [c.name for c in held],
        "held_out_shift_found": {"step": best.step, "hits": best.hits, "trials": best.trials}
        if best
        else None,
        "train_seconds": round(seconds),
    }
    path = save_weights(
        out, model.state_dict(), ARCH, model.config.to_dict(), PreprocessConfig().to_dict(), extra=extra
    )
    write_checked_onnx(model, Path(path).with_suffix(".onnx"))
    return path
