"""Every network by name: ``register_model``, ``create_model``, and the one weights loader.

A model module defines a config dataclass (with ``from_dict``/``to_dict``) and an ``nn.Module``
built from it, and registers the pair under the ``arch`` name our weights JSON carries::

    @register_model("syncnet", SyncNetConfig)
    class SyncNet(nn.Module):
        def __init__(self, config: SyncNetConfig | None = None): ...

``create_model("syncnet", embed_dim=1024)`` builds a freshly initialised one;
``load_model("weights/syncnet")`` builds whatever model a weights pair names and loads its
tensors strictly. The first look-up (``model_entry``, ``registered_models``) imports every
module of ``MODEL_MODULES``, so they are all registered; importing ``models`` itself imports
no torch (the torch-free scoring path reads ``models.detector_io`` and ``models.runtimes``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from core.calibration import IDENTITY, Calibration
from core.preprocess_config import PreprocessConfig
from models.flat_config import FlatConfig, config_from_dict
from models.stored_sections import stored_calibration, stored_preprocess
from weights.store import WeightsError, load_weights

__all__ = ["FlatConfig", "config_from_dict"]  # the model modules import them from here too

# Every network; a new model is one module with ``@register_model`` and one line here.
MODEL_MODULES = (
    "models.av_attention",
    "models.efficientnet_frames",
    "models.efficientnet_lstm",
    "models.fusion",
    "models.mds",
    "models.mesonet",
    "models.mobilenet_frames",
    "models.retinaface",
    "models.sync_evidence",
    "models.syncnet",
    "models.syncnet_mouth",
    "models.temporal_band",
    "models.temporal_net",
)

ModelT = TypeVar("ModelT", bound=type[nn.Module])


@dataclass(frozen=True)
class ModelEntry:
    arch: str
    model_class: type[nn.Module]
    config_class: type  # a dataclass with from_dict(dict) and to_dict()


# Filled by the ``register_model`` decorators as the model modules are imported (``_register_all``).
_ENTRIES: dict[str, ModelEntry] = {}


def register_model(arch: str, config_class: type) -> Callable[[ModelT], ModelT]:
    """Class decorator: ``arch`` names the model class (and its ``config_class``) in weights
    files and in ``create_model``; the class gets ``arch`` as a class attribute."""

    def register(model_class: ModelT) -> ModelT:
        known = _ENTRIES.get(arch)
        if known is not None and known.model_class.__qualname__ != model_class.__qualname__:
            raise ValueError(f"model arch {arch!r} is already registered to {known.model_class.__qualname__}")
        model_class.arch = arch
        model_class.config_class = config_class
        _ENTRIES[arch] = ModelEntry(arch, model_class, config_class)
        return model_class

    return register


def _register_all() -> None:
    for module in MODEL_MODULES:
        importlib.import_module(module)


def registered_models() -> list[str]:
    _register_all()
    return sorted(_ENTRIES)


def model_entry(arch: str) -> ModelEntry:
    _register_all()
    try:
        return _ENTRIES[arch]
    except KeyError:
        raise ValueError(f"unknown model arch {arch!r}; registered: {registered_models()}") from None


def create_model(arch: str, **config: Any) -> nn.Module:
    """A freshly initialised model by its registered name and (partial) config keywords."""
    entry = model_entry(arch)
    return entry.model_class(entry.config_class.from_dict(config))


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" … (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ``WeightsError`` naming ``source`` unless ``state_dict`` fits ``model`` exactly."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_listing(mismatched)}")
    if problems:
        raise WeightsError(f"{source}: weights do not fit {type(model).__name__}: " + "; ".join(problems))


def load_state_dict_strictly(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict`` after ``check_state_dict``, so a misfit names ``source``."""
    check_state_dict(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)


@dataclass
class LoadedModel:
    """A model built and loaded from our weights, with what its JSON says around it."""

    module: nn.Module  # in eval mode
    arch: str
    preprocess: PreprocessConfig | None  # what the model was trained on; None when unrecorded
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path = Path()  # the .safetensors file
    calibration: Calibration = IDENTITY  # raw log-odds → calibrated (a detector's; identity when none)


def load_model(name_or_path: str | os.PathLike, arch: str | None = None) -> LoadedModel:
    """Build the model a weights pair names and load its tensors strictly; with ``arch``, the
    pair must hold that model. Every problem (missing or corrupt files, an unregistered arch, a
    config the model rejects, tensors that do not fit) is a ``WeightsError`` naming the file."""
    stored = load_weights(name_or_path)
    source = str(stored.path)
    if arch is not None and stored.arch != arch:
        raise WeightsError(f"{source}: holds a {stored.arch!r} model, not {arch!r}")
    # The JSON's sections first: a corrupt one fails before a network is built and loaded.
    preprocess = stored_preprocess(stored)
    calibration = stored_calibration(stored)
    try:
        module = create_model(stored.arch, **stored.model_config)
    except (KeyError, TypeError, ValueError) as e:  # unknown arch, or a config it rejects
        raise WeightsError(f"{source}: {e}") from e
    load_state_dict_strictly(module, stored.state_dict, source)
    return LoadedModel(module.eval(), stored.arch, preprocess, stored.extra, stored.path, calibration)
