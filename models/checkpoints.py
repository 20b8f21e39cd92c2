"""What every upstream-checkpoint converter needs: reading a third-party torch file safely,
and the state dict inside it.

Third-party checkpoints are only ever read with ``torch.load(..., weights_only=True)``: a
pickle that needs anything but tensors and plain containers is refused, never executed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from weights.store import WeightsError


class ConversionError(ValueError):
    """Upstream weights that do not have the layout a converter expects."""


def read_torch_checkpoint(path: str | os.PathLike, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a ``WeightsError`` naming the file
    (and ``what`` it should have been) when it is missing or not such a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {what} checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle and unsupported-global errors share no base class
        raise WeightsError(
            f"{path}: not a readable torch checkpoint (weights_only loading refused it:"
            f" {type(e).__name__}: {e}); if it holds training state, re-save just its state dict"
        ) from e


def strip_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Drop a ``DataParallel``-style prefix when every key carries it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: the dict itself, or its ``state_dict`` (mmengine, Lightning,
    biubug6) or ``model`` (timm/DeiT training) entry, without a ``module.`` prefix."""
    if not isinstance(obj, Mapping):
        raise ConversionError(f"not a state dict but a {type(obj).__name__}")
    if isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    elif isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    state_dict = strip_prefix(obj)
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"not a state dict of tensors: {bad[:3]}")
    return state_dict


def as_float32(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors as float32 (our modules' dtype); integer buffers unchanged."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
