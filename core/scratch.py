"""Where a run may write besides its output: libraries' caches, sent to a writable place.

A locked-down host runs the image with a read-only root filesystem (``docker run --read-only
--tmpfs /tmp``), and a shared install may have a read-only site-packages. librosa's numba
functions are compiled with ``cache=True``; numba then needs a writable cache folder at import
time and raises "cannot cache function ... no locator available" when it finds none, which
failed every video. ``use_writable_caches`` runs before anything imports numba (the entry
point, ``submission/__main__.py``) and points the caches that cannot be written at a private
folder under the temporary directory; the worker processes inherit the environment.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

# Libraries that write under $HOME when these are unset (matplotlib's font cache; torch and
# others under XDG_CACHE_HOME).
_HOME_CACHES = {"MPLCONFIGDIR": "matplotlib", "XDG_CACHE_HOME": "cache"}


def writable(folder: str | os.PathLike) -> bool:
    """Whether files can be created in ``folder`` (made if missing). A real probe, not
    ``os.access``: root passes permission checks, not a read-only mount."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def scratch_dir(name: str) -> Path | None:
    """``<tmp>/avdf-<uid>/<name>``, made, or None when no temporary directory is writable."""
    try:
        root = Path(tempfile.gettempdir())
    except FileNotFoundError:  # tempfile found no writable candidate at all
        return None
    folder = root / f"avdf-{os.getuid()}" / name
    return folder if writable(folder) else None


def _numba_in_tree_writable() -> bool:
    """Whether numba's default (a ``__pycache__`` beside librosa's sources) can be written."""
    spec = importlib.util.find_spec("librosa")  # finds without importing
    if spec is None or not spec.submodule_search_locations:
        return True  # no librosa: nothing of ours compiles with numba
    return writable(Path(next(iter(spec.submodule_search_locations))) / "core" / "__pycache__")


def use_writable_caches(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Point every cache that cannot be written at a scratch folder; returns what it set.

    ``NUMBA_CACHE_DIR`` that is set but read-only (the image's, compiled at build time) is
    copied to the scratch folder first, so nothing compiles again. Caches that can already be
    written are left alone: a normal checkout behaves as before.
    """
    env = os.environ if env is None else env
    changed: dict[str, str] = {}
    numba = env.get("NUMBA_CACHE_DIR")
    if (numba and not writable(numba)) or (not numba and not _numba_in_tree_writable()):
        folder = scratch_dir("numba")
        if folder is not None:
            if numba and Path(numba).is_dir():
                shutil.copytree(numba, folder, dirs_exist_ok=True)
            changed["NUMBA_CACHE_DIR"] = str(folder)
    home = env.get("HOME")
    if not home or not writable(home):
        for var, name in _HOME_CACHES.items():
            if not env.get(var) or not writable(env[var]):
                folder = scratch_dir(name)
                if folder is not None:
                    changed[var] = str(folder)
    env.update(changed)
    return changed
