"""Python as the scoring image has it, simulated in the full install: on PYTHONPATH
(``PYTHONPATH=tests/scoring_only python -m submission ...``) every import finder is wrapped so
that none finds a package of a distribution that requirements.txt does not list: no torch, no
librosa, numba or scikit-learn, nothing of requirements-train.txt or -dev.txt. ``import torch``
raises ModuleNotFoundError and ``importlib.util.find_spec("torch")`` is None, as in the image.
The standard library, the project's own packages and pip/setuptools (which the image's venv
has) stay. Child processes (the submission's workers) inherit it through the environment.
tests/test_torch_free.py runs the scoring path this way."""

import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
_VENV_OWN = {"pip", "setuptools", "pkg_resources", "_distutils_hack", "wheel"}


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _hidden():
    scoring = set()
    for line in (_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            scoring.add(_norm(re.split(r"[\[=<>!~ ]", line)[0]))
    hidden = set()
    for module, dists in packages_distributions().items():
        if module not in _VENV_OWN and not any(_norm(d) in scoring for d in dists):
            hidden.add(module)
    return hidden - set(sys.stdlib_module_names)


class _Hide:
    def __init__(self, inner, hidden):
        self._inner = inner
        self._hidden = hidden

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self._hidden:
            return None
        return self._inner.find_spec(name, path, target)

    def __getattr__(self, attr):  # invalidate_caches and the rest: the wrapped finder's
        return getattr(self._inner, attr)


_HIDDEN = frozenset(_hidden())
sys.meta_path[:] = [_Hide(f, _HIDDEN) if hasattr(f, "find_spec") else f for f in sys.meta_path]
