"""Resumable state of a hand-written training loop (the Lightning trainers keep their own).

A checkpoint is one ``torch.save`` of plain containers and tensors, read back with
``weights_only=True``: network and optimiser state, the gradient scaler's, the step, the random
generators that draw batches (numpy's, torch's CPU and CUDA ones) and a *signature*: whatever
must not change across a resume (architecture, batch size, learning rate, the data split). It is
written to a temporary file beside the target, flushed to disk and renamed over it, so a run
killed mid-write leaves the previous checkpoint whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.files import atomic_path


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed here; the message names the file and the reason."""


def save_atomically(path: str | Path, payload: Mapping[str, Any]) -> Path:
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return Path(path)


def load_checkpoint(path: str | Path, kind: str) -> dict[str, Any]:
    """The payload of a checkpoint written for ``kind`` (e.g. ``"sync_pretrain"``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, foreign pickle
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        found = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not a {kind} checkpoint (holds {found!r})")
    return payload


def check_signature(path: str | Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Every field of the run that must match the checkpoint's; the error lists each difference
    (nested fields by their dotted name)."""
    before, now = _flat(saved), _flat(current)
    diffs = [
        f"{key}: {_short(before.get(key))} in the checkpoint, {_short(now.get(key))} now"
        for key in sorted(set(before) | set(now))
        if before.get(key) != now.get(key)
    ]
    if diffs:
        raise CheckpointError(
            f"{path}: written by a run with another architecture or configuration, cannot resume: "
            + "; ".join(diffs)
        )


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """numpy's generator and torch's (CPU, and CUDA where initialised)."""
    state: dict[str, Any] = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
