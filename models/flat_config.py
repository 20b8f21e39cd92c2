"""Config dataclasses of the networks: flat, frozen, read from and written to the weights' JSON.

Kept apart from the registry (``models.registry``) and from torch, so that the configurations
of the detectors that score without torch (``models.detector_io``) load in a torch-free install.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar


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
