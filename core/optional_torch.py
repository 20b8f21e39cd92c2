"""torch is optional: scoring runs without it, on ONNX Runtime (the submission image carries
none; requirements.txt is torch-free). Training, the torch runtime and networks exported
without an ONNX file need it (requirements-train.txt, ``make setup``); a command that takes
such a path in a torch-free install stops with ``TorchMissing``, naming what needs it and
what to do instead.
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = "install the training requirements (`make setup`, or pip install -r requirements-train.txt)"


class TorchMissing(RuntimeError):
    """What was asked for runs on torch, and this Python has none."""


def torch_available() -> bool:
    """Whether torch can be imported (found without importing it: cheap)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken or blocked install reads as absent
        return False


def require_torch(what: str, instead: str = "") -> None:
    """Return when torch is there; else raise ``TorchMissing``: ``what`` needs torch, which
    this install lacks; ``instead``: the other way out besides installing it."""
    if torch_available():
        return
    message = (
        f"{what} needs torch, which this install lacks (the scoring image is torch-free): {INSTALL_HINT}"
    )
    raise TorchMissing(f"{message}{'; ' + instead if instead else ''}")
