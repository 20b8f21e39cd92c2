"""What ``python -m PACKAGE`` runs first: the project's dependencies, whichever ``python`` was typed.

The README's commands say ``python -m train …``. Typed with a Python that lacks the pinned
packages (the system's, no virtualenv activated), they would die on a ``ModuleNotFoundError``
deep in an import. Instead the command runs again under the checkout's ``.venv/bin/python``
(what ``make setup`` builds), saying so in one line; without one, it stops with one line that
says what to run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

# Top-level modules every entry point needs (found without importing them: cheap): scoring's
# (requirements.txt, the torch-free image), and what training and cache building add.
REQUIRED = ("numpy", "av", "safetensors", "tqdm")
TRAINING = ("torch",)  # with requirements-train.txt: SciPy and OpenCV come with it
ROOT = Path(__file__).resolve().parents[1]
_AGAIN = "AVDF_REEXEC"  # set on the second run: never loop


def missing_modules(training: bool = False) -> list[str]:
    names = REQUIRED + (TRAINING if training else ())
    return [name for name in names if importlib.util.find_spec(name) is None]


def ensure_dependencies(package: str, root: Path = ROOT, training: bool = False) -> None:
    """Return when this Python has the dependencies (``training``: torch too); else exec
    ``root/.venv/bin/python -m package`` with the same arguments, or exit with a message naming
    the fix."""
    missing = missing_modules(training)
    if not missing:
        return
    venv = root / ".venv"
    python = venv / "bin" / "python"
    in_venv = Path(sys.prefix).resolve() == venv.resolve()
    if python.exists() and not in_venv and not os.environ.get(_AGAIN):
        print(
            f"{package}: {sys.executable} lacks {', '.join(missing)}: running {python} instead",
            file=sys.stderr,
        )
        env = dict(os.environ, **{_AGAIN: "1"})
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(root), env.get("PYTHONPATH"))))
        os.execve(python, [str(python), "-m", package, *sys.argv[1:]], env)
    sys.exit(
        f"{package}: this Python ({sys.executable}) lacks {', '.join(missing)}. Run `make setup`, then "
        f"`.venv/bin/python -m {package} …` (or `source .venv/bin/activate` first) from {root}"
    )
