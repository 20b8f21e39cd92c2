"""Any registered detector as a LightningModule: loss, optimiser, and video-level validation AUC.

The model is built by name (``arch`` + its config dict) and called with its inputs in
``input_names`` order; the loss is the detector's own ``training_loss`` when it has one (MDS),
else binary cross-entropy on its ``fake_logit`` (for a two-logit head that is exactly softmax
cross-entropy). Validation scores every sample,
makes each video's score with the detector's ``video_aggregation`` over its face tracks (what
``run.sh`` does) and logs ``val_auc`` and ``val_log_loss`` per video; checkpointing, early
stopping and ReduceLROnPlateau all watch ``val_auc``. With ``ema_decay`` an exponential moving
average of the weights is what validation scores and export writes.

SyncNet is frozen: the cached samples hold SyncNet's latency *vector* (distances per offset),
not the mouth crops and MFCC windows it was computed from, so no gradient can reach SyncNet
from here. Training SyncNet jointly with the fusion model needs samples that keep every face
crop of the window plus the audio (a different cache) and a differentiable offset search;
``train.sync_pretrain`` trains SyncNet on its own instead.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.nn import functional as F

from core.aggregation import aggregate
from models.detector import DetectorModel
from models.fusion import FusionModel
from models.registry import create_model
from train.metrics import log_loss, roc_auc

SYNCNET_MODES = ("frozen",)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "sgd"  # "sgd" (the reference: lr 5e-3, momentum 0.9) or "adamw"
    lr: float = 5e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    scheduler: str = "plateau"  # "plateau" (ReduceLROnPlateau on val_auc), "cosine" or "none"
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    warmup_steps: int = 0  # linear learning-rate warm-up, in optimiser steps
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # >0: validate, checkpoint-select and export an exponential moving average


class DetectorLitModule(L.LightningModule):
    """``arch`` (a registered ``DetectorModel``) built from ``model_config``; ``preprocess`` is
    kept in the checkpoint for export. ``syncnet`` concerns the fusion model's latency input."""

    def __init__(
        self,
        model_config: dict[str, Any],
        optim: dict[str, Any] | None = None,
        preprocess: dict[str, Any] | None = None,
        class_weights: list[float] | None = None,
        syncnet: str = "frozen",
        arch: str = FusionModel.arch,
    ):
        super().__init__()
        if syncnet not in SYNCNET_MODES:
            raise ValueError(
                f"syncnet mode {syncnet!r}: only 'frozen' works on cached samples (they hold SyncNet's "
                "latency vector, not its inputs); see train.module's docstring"
            )
        self.save_hyperparameters()
        self.optim = OptimConfig(**(optim or {}))
        self.model = create_model(arch, **model_config)
        if not isinstance(self.model, DetectorModel):
            raise ValueError(f"{arch!r} is not a detector (a DetectorModel): it cannot be trained here")
        # The weight average: models trained briefly from scratch swing from one validation to
        # the next; the average is steadier (measured on the demo: test AUC 0.93-0.97 raw vs 0.985).
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if self.optim.ema_decay > 0 else None
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        self._val: dict[str, list] = defaultdict(list)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The model's inputs in its ``input_names`` order."""
        return self.model(*inputs)

    def scoring_model(self) -> torch.nn.Module:
        """What validation scores and export writes: the weight average when there is one."""
        return self.ema if self.ema is not None else self.model

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self._update_ema()

    @torch.no_grad()
    def _update_ema(self) -> None:
        step = self.trainer.global_step
        decay = min(self.optim.ema_decay, (1 + step) / (10 + step))  # short memory while it starts
        for avg, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            avg.lerp_(p.detach(), 1 - decay)
        for avg, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            avg.copy_(b)

    def _outputs(self, batch: dict[str, Any], model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        outputs = model(*(batch[name] for name in model.input_names))
        return (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)

    def _fake_logit(self, batch: dict[str, Any], model: torch.nn.Module | None = None) -> torch.Tensor:
        """(B,) float32 fake log-odds of the batch's samples."""
        model = self.model if model is None else model
        return model.fake_logit(self._outputs(batch, model)).float()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        outputs = self._outputs(batch, self.model)
        logit = self.model.fake_logit(outputs).float()
        # a detector with its own loss (MDS: contrastive on its embeddings) returns it; else BCE
        loss = self.model.training_loss(outputs, batch)
        if loss is None:
            loss = binary_loss(logit, batch["label"], self.class_weights, self.optim.label_smoothing)
        acc = ((logit > 0).long() == batch["label"]).float().mean()
        # the mean over every rank's batch (one small all-reduce per step beside the gradients')
        self.log("train_loss", loss, prog_bar=True, batch_size=len(logit), sync_dist=True)
        self.log("train_acc", acc, batch_size=len(logit), sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        prob = torch.sigmoid(self._fake_logit(batch, self.scoring_model()))
        self._val["prob"].append(prob.detach())
        self._val["label"].append(batch["label"])
        self._val["video"].append(batch["video_index"])
        self._val["index"].append(batch["index"])

    def on_validation_epoch_end(self) -> None:
        if not self._val["prob"]:
            return
        # Every rank scores a shard: gather all, so each computes the same metrics over every
        # video (and ReduceLROnPlateau and early stopping decide alike on every rank).
        parts = [torch.cat(self._val[k]) for k in ("prob", "label", "video", "index")]
        self._val.clear()
        probs, labels, videos, indices = (self.all_gather(t).reshape(-1).cpu().numpy() for t in parts)
        # DistributedSampler pads the last shard with repeated samples: each sample counts once
        _, once = np.unique(indices, return_index=True)
        probs, labels, videos = probs[once], labels[once], videos[once]
        _, labels, probs = video_scores(videos.tolist(), labels, probs, self.model.video_aggregation)
        auc = roc_auc(labels, probs)
        # AUC is undefined with one class (tiny sanity sets): report 0.5 so monitors keep working
        self.log("val_auc", 0.5 if math.isnan(auc) else auc, prog_bar=True, sync_dist=True)
        self.log("val_log_loss", log_loss(labels, probs), prog_bar=True, sync_dist=True)
        self.log("val_acc", float(np.mean((probs >= 0.5) == labels)), sync_dist=True)

    def configure_optimizers(self) -> Any:
        o = self.optim
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                # norms, biases, embeddings and tokens are not weight-decayed (as in ViT recipes)
                (no_decay if p.ndim <= 1 or "pos_embed" in name or "cls_token" in name else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": o.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if o.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
        elif o.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=o.lr)
        else:
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {o.optimizer!r}")
        if o.scheduler == "none":
            return opt
        if o.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="max", factor=o.plateau_factor, patience=o.plateau_patience
            )
            return {
                "optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "monitor": "val_auc", "interval": "epoch"},
            }
        if o.scheduler == "cosine":
            total = max(1, int(self.trainer.estimated_stepping_batches))
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        raise ValueError(f"scheduler must be 'plateau', 'cosine' or 'none', got {o.scheduler!r}")

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        warm = self.optim.warmup_steps
        if warm and self.trainer.global_step < warm:
            scale = (self.trainer.global_step + 1) / warm
            for group in optimizer.param_groups:
                group["lr"] = self.optim.lr * scale
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

    def optim_dict(self) -> dict[str, Any]:
        return asdict(self.optim)


def binary_loss(
    logit: torch.Tensor,
    label: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy of fake log-odds against 0/1 labels; smoothing moves the targets to
    ``eps/2`` and ``1 - eps/2`` and class weights give a weighted mean, as
    ``F.cross_entropy`` does for two logits."""
    target = label.float() * (1 - label_smoothing) + label_smoothing / 2
    losses = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    if class_weights is None:
        return losses.mean()
    weights = class_weights[label]
    return (losses * weights).sum() / weights.sum()


def video_scores(videos, labels, probs, how: str = "max") -> tuple[list, np.ndarray, np.ndarray]:
    """Per-video probabilities (``how`` over each video's tracks), as the submission aggregates them."""
    tracks: dict[str, list[float]] = defaultdict(list)
    label_of: dict[str, int] = {}
    for v, y, p in zip(videos, labels, probs, strict=True):
        tracks[v].append(float(p))
        label_of[v] = int(y)
    names = sorted(tracks)
    scores = [aggregate(tracks[v], how) for v in names]
    return names, np.array([label_of[v] for v in names]), np.array(scores)


class CheckpointError(ValueError):
    """A training checkpoint that is absent or not one of ours (the message names the file)."""


def load_checkpoint(path: str | Path) -> DetectorLitModule:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        # our own checkpoints hold tensors and plain hyper-parameters only
        return DetectorLitModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path}: not a detector training checkpoint ({type(err).__name__}: {err})"
        ) from err
