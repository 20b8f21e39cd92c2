"""An install without torch, simulated: on PYTHONPATH (``PYTHONPATH=tests/without_torch python -m
submission ...``), every import finder is wrapped so that none finds torch: ``import torch``
raises ModuleNotFoundError and ``importlib.util.find_spec("torch")`` is None, as in the
torch-free scoring image. Child processes (the submission's workers) inherit it through the
environment. tests/test_torch_free.py runs the scoring path this way."""

import sys


class _HideTorch:
    def __init__(self, inner):
        self._inner = inner

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            return None
        return self._inner.find_spec(name, path, target)

    def __getattr__(self, attr):  # invalidate_caches and the rest: the wrapped finder's
        return getattr(self._inner, attr)


sys.meta_path[:] = [_HideTorch(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
