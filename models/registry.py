"""Every network by name: ``register_model``, ``create_model``, and the one weights loader.

A model module defines a config dataclass (with ``from_dict``/``to_dict``) and an ``nn.Module``
built from it, and registers the pair under the ``arch`` name our weights JSON carries::

    @register_model("syncnet", SyncNetConfig)
    class SyncNet(nn.Module):
        def __init__(self, config: SyncNetConfig | None = None): ...

``create_model("syncnet", embed_dim=1024)`` builds a freshly initialised one;
``load_model("weights/syncnet")`` builds whatever model a weights pair names and loads its
tensors strictly. ``models/__init__.py`` imports every model module, so importing anything
from ``models`` registers them all.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from core.calibration import IDENTITY, Calibration
from core.preprocess_config import PreprocessConfig
from weights.store import WeightsError, load_weights

ModelT = TypeVar("ModelT", bound=type[nn.Module])


@dataclass(frozen=True)
class ModelEntry:
    arch: str
    model_class: type[nn.Module]
    config_class: type  # a dataclass with from_dict(dict) and to_dict()


# Filled once, at import time, by the ``register_model`` decorators of the model modules.
_ENTRIES: dict[str, ModelEntry] = {}


def register_model(arch: str, config_class: type) -> Callable[[ModelT], ModelT]:
    """Class decorator: ``arch`` names the model class (and its ``config_class``) in weights
    files and in ``create_model``; the class gets ``arch`` as a class attribute."""

    def register(model_class: ModelT) -> ModelT:
        known = _ENTRIES.get(arch)
        if known is not None and known.model_class.__qualname__ != model_class.__qualname__:
            raise ValueError(f"model arch {arch!r} is already registered to {known.model_class.__qualname__}")
        model_class.arch = arch
        _ENTRIES[arch] = ModelEntry(arch, model_class, config_class)
        return model_class

    return register


def registered_models() -> list[str]:
    return sorted(_ENTRIES)


def model_entry(arch: str) -> ModelEntry:
    try:
        return _ENTRIES[arch]
    except KeyError:
        raise ValueError(f"unknown model arch {arch!r}; registered: {registered_models()}") from None


def create_model(arch: str, **config: Any) -> nn.Module:
    """A freshly initialised model by its registered name and (partial) config keywords."""
    entry = model_entry(arch)
    return entry.model_class(entry.config_class.from_dict(config))


def config_from_dict(config_class: type, data: Mapping[str, Any] | None, what: str) -> Any:
    """A flat config dataclass from a (partial) dict; unknown keys are an error naming ``what``."""
    data = dict(data or {})
    unknown = set(data) - {f.name for f in dataclasses.fields(config_class)}
    if unknown:
        raise ValueError(f"unknown {what} config keys: {sorted(unknown)}")
    return config_class(**data)


class FlatConfig:
    """``to_dict``/``from_dict`` for a flat frozen config dataclass; ``arch`` names it in errors."""

    arch: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Any:
        return config_from_dict(cls, data, cls.arch)


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
    json_path = stored.path.with_suffix(".json")
    if arch is not None and stored.arch != arch:
        raise WeightsError(f"{source}: holds a {stored.arch!r} model, not {arch!r}")
    # The JSON's sections first: a corrupt one fails before a network is built and loaded.
    try:
        preprocess = PreprocessConfig.from_dict(stored.preprocess) if stored.preprocess else None
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{json_path}: weights config corrupt: preprocess section: {e}") from e
    try:
        calibration = Calibration.from_dict(stored.calibration) if stored.calibration else IDENTITY
    except ValueError as e:
        raise WeightsError(f"{json_path}: weights config corrupt: {e}") from e
    try:
        module = create_model(stored.arch, **stored.model_config)
    except (KeyError, TypeError, ValueError) as e:  # unknown arch, or a config it rejects
        raise WeightsError(f"{source}: {e}") from e
    load_state_dict_strictly(module, stored.state_dict, source)
    return LoadedModel(module.eval(), stored.arch, preprocess, stored.extra, stored.path, calibration)
