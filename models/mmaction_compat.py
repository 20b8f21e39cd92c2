"""The one place that works around mmaction2 1.2.0's packaging defects.

- The 1.2.0 wheel omits ``mmaction/models/localizers/drn`` although
  ``mmaction/models/localizers/__init__.py`` imports it (upstream issue #2714), so
  ``import mmaction.models`` fails. We register a placeholder module for it before the
  import; using DRN (a temporal localiser we never need) raises a clear error.
- ``mmaction.models`` imports its multimodal (VindLU) models whenever ``transformers>=4.28``
  is installed, and they import ``transformers`` internals that 5.x removed
  (``apply_chunking_to_forward``): beside a current ``transformers`` (CUDA images ship one;
  seen on the GPU machine) the import fails. We never use those models, so the multimodal
  package is registered empty before the import.
- Its undeclared ``importlib-metadata`` dependency and mmengine's need for
  ``setuptools<81`` (``pkg_resources``) are pinned (requirements-train.txt, requirements.txt).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from pathlib import Path


class _MissingDRN:
    def __init__(self, *args, **kwargs):
        raise ImportError("mmaction2 1.2.0's wheel ships without the DRN localiser (upstream issue #2714)")


def _register_missing_drn() -> None:
    name = "mmaction.models.localizers.drn"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec("mmaction")  # locates the package without importing it
    if spec is None:
        raise ImportError("mmaction2 is not installed: run `make setup`")
    root = Path(next(iter(spec.submodule_search_locations)))
    if (root / "models" / "localizers" / "drn").is_dir():  # a fixed wheel: use the real module
        return
    pkg = types.ModuleType(name)
    pkg.__path__ = []  # a package, so ``.drn.drn`` resolves
    inner = types.ModuleType(name + ".drn")
    inner.DRN = _MissingDRN
    pkg.drn = inner
    sys.modules[name] = pkg
    sys.modules[name + ".drn"] = inner


def _skip_multimodal() -> None:
    name = "mmaction.models.multimodal"
    if name in sys.modules:
        return
    pkg = types.ModuleType(name)
    pkg.__path__ = []
    pkg.__all__ = []  # ``from .multimodal import *`` in mmaction.models brings nothing
    sys.modules[name] = pkg


def build_timesformer(**kwargs):
    """Build mmaction2's ``TimeSformer`` backbone (its constructor's keyword arguments)."""
    _register_missing_drn()
    _skip_multimodal()
    with warnings.catch_warnings():
        # mmcv-lite lacks compiled ops; TimeSformer needs none of them.
        warnings.filterwarnings("ignore", message=".*mmcv-lite.*")
        warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
        models = importlib.import_module("mmaction.models")  # registers mmaction's layers
    from mmengine.registry import DefaultScope

    # TimeSformer builds its attention layers through mmengine's registry by name; those
    # names live in mmaction's scope, so construct inside it without changing the global default.
    with DefaultScope.overwrite_default_scope("mmaction"):
        return models.TimeSformer(**kwargs)
