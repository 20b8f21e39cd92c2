"""Each training process's own account of a run (``train fit --record-ranks``), to check a
multi-GPU or multi-node set-up on a short run: every rank writes ``OUT/ranks/rank{N}.json``
with a digest of its final weights (identical on every rank when gradients are all-reduced),
the samples it trained on per epoch (disjoint shards), its own per-step losses (the logged
``train_loss`` is their mean over ranks) and the samples it validated on.

The sample lists grow with the run (one integer per sample read): meant for check runs, not
for a month on DFDC.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and exact bytes (equal digests: equal
    weights, bit for bit)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class RankRecord(Callback):
    """Writes this rank's record under ``folder`` when fitting ends."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.train_indices: list[list[int]] = []  # per epoch
        self.train_losses: list[float] = []  # per training batch, this rank's own
        self.val_indices: list[list[int]] = []  # per validation

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_indices.append([])

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.train_indices[-1].extend(batch["index"].tolist())
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        self.train_losses.append(float(loss))

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.val_indices.append([])

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self.val_indices[-1].extend(batch["index"].tolist())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "torch_threads": torch.get_num_threads(),
            "state_digest": state_digest(pl_module.state_dict()),
            "train_indices": self.train_indices,
            "train_losses": self.train_losses,
            "val_indices": self.val_indices,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank{trainer.global_rank}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(path)
