"""``python -m train fit``: build the Trainer (callbacks, loggers, precision, devices) and run it,
for any registered detector (``FitConfig.arch`` + ``FitConfig.model``).

Outputs under ``out``: ``checkpoints/best.ckpt`` (highest ``val_auc``), ``checkpoints/last.ckpt``
(for ``--resume``), ``logs/csv/.../metrics.csv`` and ``logs/tb`` (TensorBoard); with
``record_ranks``, ``ranks/rank{N}.json`` per process (``train.rank_record``).

Several processes (``devices`` > 1 or ``num_nodes`` > 1 with ``strategy="ddp"``, or launched by
``torchrun`` / SLURM): every rank runs this same function; rank 0 alone writes the
checkpoints, the logs and ``fit_config.json``. ``batch_size`` is per process, and nothing is
rescaled for the world size (see train/README.md, "Several GPUs or machines").
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from core.threads import available_cpus, rank_threads
from models.detector import DetectorModel
from models.fusion import FusionConfig, FusionModel
from models.registry import model_entry
from train.augment import AugmentConfig
from train.data import ManifestDataModule
from train.module import DetectorLitModule, OptimConfig
from train.rank_record import RankRecord
from train.sample_transforms import SampleTransform

log = logging.getLogger("train")


@dataclass
class FitConfig:
    manifest: Path
    out: Path
    model: dict[str, Any] = field(default_factory=lambda: FusionConfig.tiny().to_dict())  # arch's config
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)  # None: no augmentation
    arch: str = FusionModel.arch  # a registered detector
    # (sample, label, rng) -> (sample, label), applied in order to training samples before the
    # augmentation (train.sample_transforms); e.g. pseudo-fakes made from real faces
    sample_transforms: tuple[SampleTransform, ...] = ()
    # upstream checkpoints the model starts from, in order (its init_from_upstream reads each:
    # av_attention takes RetinaFace for its frames and a sync model for its audio)
    init: tuple[Path, ...] = ()
    batch_size: int = 8
    epoch_size: int | None = None  # training samples per epoch (default: the train split's size)
    max_epochs: int = 30
    max_steps: int = -1
    max_time: float | None = None  # seconds of training before stopping (checkpoints kept)
    balance: str = "sampler"
    grad_clip: float = 1.0
    patience: int = 8  # epochs without a better val_auc before stopping; 0 disables
    precision: str = "auto"  # "auto": bf16/16-mixed on CUDA, 32-true on CPU
    accelerator: str = "auto"
    devices: str | int = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    num_workers: int = 0
    seed: int = 0
    resume: Path | None = None  # a checkpoint to continue from (optimizer, epoch, callbacks)
    val_every: int = 1  # epochs between validations
    log_every: int = 10  # steps between logged training metrics
    syncnet: str = "frozen"
    progress: bool = True
    keep_in_memory: bool = True
    record_ranks: bool = False  # each process writes out/ranks/rank{N}.json (train.rank_record)


@dataclass
class FitResult:
    best_checkpoint: Path | None
    best_val_auc: float | None
    last_checkpoint: Path | None
    epochs: int
    steps: int
    log_dir: Path
    global_rank: int = 0  # this process's rank (0 when not distributed)


class ValidationPrinter(Callback):
    """One plain line per validation (step, train loss, val AUC, elapsed): readable in logs and
    CI output, where a progress bar is not."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics

        def get(key: str) -> str:
            return f"{float(m[key]):.4f}" if key in m else "n/a"

        total = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        print(
            f"[train] step {trainer.global_step}/{int(total)} epoch {trainer.current_epoch}: train_loss {get('train_loss')} "
            f"val_auc {get('val_auc')} val_log_loss {get('val_log_loss')} ({time.perf_counter() - self.started:.0f} s)",
            flush=True,
        )


class DistinctRankDraws(Callback):
    """Under DDP every rank starts from the same seed (Lightning re-seeds each alike), so the
    k-th sample of every rank would get the same augmentation, pseudo-fake and dropout draws.
    Each rank gets its own torch stream once set up; the samplers keep their own generators,
    seeded alike, which keeps the shards disjoint. Rank 0 and single-process runs are unchanged."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1 and trainer.global_rank > 0:
            torch.manual_seed(self.seed + trainer.global_rank)


class ShareCoresAcrossRanks(Callback):
    """Several training processes on one machine's CPUs (``--devices N --strategy ddp`` without
    a GPU): each takes an equal share of the cores for torch (``core.threads.rank_threads``),
    not a pool the size of the machine per process. Threads the user set are kept."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type != "cpu":
            return
        threads = rank_threads(available_cpus(), trainer.num_devices, os.environ)
        if threads is not None:
            torch.set_num_threads(threads)
            if trainer.global_rank == 0:
                log.info(
                    "%d CPU processes on this machine: %d torch threads each", trainer.num_devices, threads
                )


def auto_precision(accelerator: str = "auto") -> str:
    """Mixed precision where it pays: bf16 on GPUs that have it, fp16 on older ones, fp32 on CPU."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def build_trainer(cfg: FitConfig) -> L.Trainer:
    ckpt_dir = cfg.out / "checkpoints"
    best = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best", monitor="val_auc", mode="max", save_top_k=1, save_last=True
    )
    callbacks: list[Any] = [
        best,
        LearningRateMonitor(logging_interval="epoch"),
        ValidationPrinter(),
        DistinctRankDraws(cfg.seed),
        ShareCoresAcrossRanks(),
    ]
    if cfg.patience > 0:
        callbacks.append(EarlyStopping(monitor="val_auc", mode="max", patience=cfg.patience))
    if cfg.record_ranks:
        callbacks.append(RankRecord(cfg.out / "ranks"))
    loggers = [CSVLogger(cfg.out / "logs", name="csv"), TensorBoardLogger(cfg.out / "logs", name="tb")]
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=cfg.precision if cfg.precision != "auto" else auto_precision(cfg.accelerator),
        max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        max_time=None if cfg.max_time is None else dt.timedelta(seconds=cfg.max_time),
        gradient_clip_val=cfg.grad_clip or None,
        check_val_every_n_epoch=cfg.val_every,
        log_every_n_steps=cfg.log_every,
        callbacks=callbacks,
        logger=loggers,
        # the bar only where someone watches it; logs get ValidationPrinter's lines
        enable_progress_bar=cfg.progress and sys.stderr.isatty(),
        enable_model_summary=cfg.progress,
        num_sanity_val_steps=0,
        deterministic=False,
    )


def detector_class(arch: str) -> type[DetectorModel]:
    entry = model_entry(arch)
    if not issubclass(entry.model_class, DetectorModel):
        raise ValueError(f"{arch!r} is not a detector (a DetectorModel): it cannot be trained here")
    return entry.model_class


def fit(cfg: FitConfig) -> FitResult:
    """Train ``cfg.arch`` on a preprocessing cache; returns where the checkpoints are."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    detector = detector_class(cfg.arch)
    model_config = model_entry(cfg.arch).config_class.from_dict(cfg.model)
    data = ManifestDataModule(
        cfg.manifest,
        detector,
        model_config,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        balance=cfg.balance,
        augment=cfg.augment if cfg.augment is not None else AugmentConfig.none(),
        keep_in_memory=cfg.keep_in_memory,
        seed=cfg.seed,
        epoch_size=cfg.epoch_size,
        sample_transforms=cfg.sample_transforms,
    )
    data.setup()
    if data.val_split != "val":
        log.warning("%s has no 'val' split: model selection uses the training samples", cfg.manifest)
    pcfg = data.preprocess_config
    if pcfg is not None:
        problem = detector.preprocess_problem(model_config, pcfg)
        if problem:
            raise ValueError(f"{cfg.manifest}: {problem}")
        # frame detectors' configs say how many face frames they read; per-second samples
        # (MDS) are checked by the detector's preprocess_problem instead
        wanted = getattr(model_config, "num_frames", 0)
        if pcfg.sample.sampling == "uniform" and pcfg.sample.num_frames < wanted:
            log.warning(
                "samples hold %d face frames, the model takes %d: frames will repeat",
                pcfg.sample.num_frames,
                wanted,
            )
    weights = data.class_weights()
    module = DetectorLitModule(
        model_config=model_config.to_dict(),
        optim=asdict(cfg.optim),
        preprocess=pcfg.to_dict() if pcfg is not None else None,
        class_weights=weights.tolist() if weights is not None else None,
        syncnet=cfg.syncnet,
        arch=cfg.arch,
    )
    if cfg.init and cfg.resume is None:
        for path in cfg.init:
            module.model.init_from_upstream(str(path))
        if module.ema is not None:
            module.ema.load_state_dict(module.model.state_dict())
    trainer = build_trainer(cfg)  # knows this process's rank from the launcher's environment
    cfg.out.mkdir(parents=True, exist_ok=True)
    if trainer.is_global_zero:
        (cfg.out / "fit_config.json").write_text(json.dumps(_jsonable(asdict(cfg)), indent=1) + "\n")
    trainer.fit(module, datamodule=data, ckpt_path=str(cfg.resume) if cfg.resume else None)
    # ModelCheckpoint's last.ckpt is written at validation ends; a run stopped by max_steps or
    # max_time after its last validation would leave an earlier state there (seen: step 1000 of
    # 1200). "last" is the final state, always.
    trainer.save_checkpoint(cfg.out / "checkpoints" / "last.ckpt")
    best_cb = trainer.checkpoint_callback
    best_path = Path(best_cb.best_model_path) if best_cb and best_cb.best_model_path else None
    score = best_cb.best_model_score if best_cb else None
    last = cfg.out / "checkpoints" / "last.ckpt"
    return FitResult(
        best_checkpoint=best_path,
        best_val_auc=float(score) if score is not None else None,
        last_checkpoint=last if last.is_file() else None,
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        log_dir=cfg.out / "logs",
        global_rank=trainer.global_rank,
    )


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if callable(x):  # a sample transform: its repr says what it is
        return repr(x)
    return x
