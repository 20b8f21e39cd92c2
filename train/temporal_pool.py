"""A pool of forged and repackaged windows for training ``temporal_net``, made once.

The temporal pseudo-fakes (``train.temporal_pseudo_fakes``) cost seconds per sample (optical
flow, per-frame masks over 128 frames), far more than a training step of the small network that
reads them; forged on the fly they would set the pace of training on a CPU. So each real
training clip is forged a few times per category up front, and what the network reads — the
grey face squares of each window (``TemporalNetIO.sample_inputs``, uint8 as it computes them)
— is kept. Training then draws from the pool with cheap augmentations (``train.temporal_net_fit``).

Each clip gives, all with the same framing and source:

- itself, and ``real_repackaged`` copies *repackaged*: re-encoded (downscaled, H.264 at a random
  quality, scaled back: ``train.temporal_fit.reencode``) or with frames repeated as 24/25 → 30
  fps pulldown or 15 → 30 fps doubling do — hard real examples, so packaging separates nothing;
- ``variants`` forgeries per category, a share ``repackage_p`` of them repackaged the same way.

Forgery happens at ``work_size`` (the crops shrunk from the cache's 224 px, landmarks with
them): the network reads a 32² face square, and forging at full size would cost 4× for detail
the square does not keep.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.files import atomic_path
from core.preprocess_data import Sample
from models.temporal_net_io import TemporalNetConfig, TemporalNetIO
from preprocess.sample_file import load_sample
from train.data import read_manifest
from train.pseudo_fake_mix import PseudoFakeConfig
from train.temporal_fit import reencoded_sample
from train.temporal_pseudo_fakes import ALL_CONSECUTIVE, TEMPORAL_CATEGORIES, consecutive_runs

log = logging.getLogger("train")

PULLDOWN = {"pulldown_24": (1, 1, 1, 2), "pulldown_25": (1,) * 5 + (2,), "double_15": (2,)}


@dataclass(frozen=True)
class TemporalPoolConfig:
    manifest: Path  # a "windows" cache's manifest.csv
    out: Path  # the pool, .npz
    net: TemporalNetConfig = field(default_factory=TemporalNetConfig)
    split: str = "train"
    work_size: int = 112
    variants: int = 2  # forgeries per category per clip
    real_repackaged: int = 3
    repackage_p: float = 0.5
    reencode_share: float = 0.7  # of repackagings: a re-encode (else frame repetition)
    categories: tuple[str, ...] = tuple(TEMPORAL_CATEGORIES)
    seed: int = 0
    workers: int = 1


@dataclass
class TemporalPool:
    windows: np.ndarray  # (N, W, L, S, S) uint8 grey face squares
    frame_mask: np.ndarray  # (N, W, L) uint8
    labels: np.ndarray  # (N,) 1 = forged
    kinds: np.ndarray  # (N,) str: "real", "real_repackaged" or the category

    def save(self, path: Path) -> Path:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **dataclasses.asdict(self))
        return path

    @classmethod
    def load(cls, path: Path) -> TemporalPool:
        with np.load(path, allow_pickle=False) as data:
            missing = [f.name for f in dataclasses.fields(cls) if f.name not in data]
            if missing:
                raise ValueError(f"{path}: a pool without {missing} (made by an older version): rebuild it")
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def shrink(sample: Sample, size: int) -> Sample:
    """The sample's crops at ``size``² (area), landmarks scaled with them."""
    side = sample.faces.shape[1]
    if side == size:
        return sample
    faces = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in sample.faces])
    landmarks = None if sample.landmarks is None else sample.landmarks * (size / side)
    return dataclasses.replace(sample, faces=faces, landmarks=landmarks)


def repeat_frames(clip: np.ndarray, pattern: tuple[int, ...]) -> np.ndarray:
    """Frames repeated by ``pattern`` (each frame shown that many times, cycling), cut back to the
    clip's length: what a frame-rate conversion by repetition delivers."""
    counts = np.resize(np.asarray(pattern), len(clip))
    return np.repeat(clip, counts, axis=0)[: len(clip)]


def repackage(sample: Sample, rng: np.random.Generator, workdir: Path, reencode_share: float) -> Sample:
    """Each run of consecutive frames re-encoded as its own short clip, or frame-repeated: as a
    real clip reaches us re-packaged."""
    if rng.random() < reencode_share:
        return reencoded_sample(sample, ALL_CONSECUTIVE, rng, workdir)
    pattern = PULLDOWN[str(rng.choice(sorted(PULLDOWN)))]
    faces = sample.faces.copy()
    for rows in consecutive_runs(sample):
        faces[rows] = repeat_frames(sample.faces[rows], pattern)
    return dataclasses.replace(sample, faces=faces)


def _net_inputs(sample: Sample, net: TemporalNetConfig) -> tuple[np.ndarray, np.ndarray]:
    inputs = TemporalNetIO.sample_inputs(sample, net)
    return np.round(inputs["windows"] * 255).astype(np.uint8), inputs["frame_mask"].astype(np.uint8)


def forge_clip(args: tuple[Path, int, TemporalPoolConfig]) -> list[tuple[np.ndarray, np.ndarray, int, str]]:
    """One real clip → its pool entries (windows, mask, label, kind)."""
    path, clip_seed, cfg = args
    rng = np.random.default_rng(clip_seed)
    sample = shrink(load_sample(path), cfg.work_size)
    forgers = PseudoFakeConfig(weights={c: 1.0 for c in cfg.categories})
    out = [(*_net_inputs(sample, cfg.net), 0, "real")]
    with tempfile.TemporaryDirectory(prefix="pool") as tmp:
        for _ in range(cfg.real_repackaged):
            out.append(
                (
                    *_net_inputs(repackage(sample, rng, Path(tmp), cfg.reencode_share), cfg.net),
                    0,
                    "real_repackaged",
                )
            )
        for name in cfg.categories:
            for _ in range(cfg.variants):
                forged = forgers.category(name).forge(sample, rng)
                if rng.random() < cfg.repackage_p:
                    forged = repackage(forged, rng, Path(tmp), cfg.reencode_share)
                out.append((*_net_inputs(forged, cfg.net), 1, name))
    return out


def build_pool(cfg: TemporalPoolConfig) -> TemporalPool:
    entries = [
        e
        for e in read_manifest(cfg.manifest)
        if e.split == cfg.split and e.label == 0 and e.category != "photo"
    ]
    if not entries:
        raise ValueError(f"{cfg.manifest}: no real video samples in split {cfg.split!r}")
    seeds = np.random.SeedSequence(cfg.seed).generate_state(len(entries))
    jobs = [(e.sample, int(s), cfg) for e, s in zip(entries, seeds, strict=True)]
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            results = list(pool.map(forge_clip, jobs))
    else:
        results = [forge_clip(job) for job in jobs]
    rows = [row for result in results for row in result]
    log.info("pool: %d entries from %d real clips", len(rows), len(entries))
    return TemporalPool(
        windows=np.stack([r[0] for r in rows]),
        frame_mask=np.stack([r[1] for r in rows]),
        labels=np.array([r[2] for r in rows], np.int64),
        kinds=np.array([r[3] for r in rows]),
    )
