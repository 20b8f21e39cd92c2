"""Caches go where they can be written (core/scratch.py): a read-only image or site-packages
must not fail every video, as numba's cache beside librosa once did."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import shared_media

from core.scratch import use_writable_caches, writable

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch):
    """tempfile's directory inside tmp_path (tempfile caches it: reset before and after)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    yield folder
    tempfile.tempdir = None


def test_writable_probes_for_real(tmp_path):
    assert writable(tmp_path / "new" / "folder") and (tmp_path / "new" / "folder").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert not writable(blocker / "cache")  # fails for root too, unlike a permission bit


def test_caches_that_can_be_written_are_left_alone(tmp_path, tmpdir_env):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba"), "HOME": str(tmp_path / "home")}
    assert use_writable_caches(env) == {}
    assert env == {"NUMBA_CACHE_DIR": str(tmp_path / "numba"), "HOME": str(tmp_path / "home")}


def test_caches_that_cannot_be_written_go_to_the_temporary_folder(tmp_path, tmpdir_env):
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {"NUMBA_CACHE_DIR": str(blocker / "numba"), "HOME": str(blocker / "home")}
    changed = use_writable_caches(env)
    scratch = tmpdir_env / f"avdf-{os.getuid()}"
    assert changed == {
        "NUMBA_CACHE_DIR": str(scratch / "numba"),
        "MPLCONFIGDIR": str(scratch / "matplotlib"),
        "XDG_CACHE_HOME": str(scratch / "cache"),
    }
    assert all(Path(v).is_dir() and writable(v) for v in changed.values())
    assert env["NUMBA_CACHE_DIR"] == changed["NUMBA_CACHE_DIR"]


def _read_only_mount_works() -> str:
    """Why a private mount namespace with a read-only bind mount cannot be had here, or ""."""
    if shutil.which("unshare") is None:
        return "no unshare"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount --bind -o ro / / 2>&1 || exit 1"], capture_output=True, text=True
    )
    return "" if probe.returncode == 0 else f"no private read-only mounts here: {probe.stdout.strip()}"


@pytest.mark.slow
def test_run_sh_scores_with_a_read_only_site_packages_and_home(tmp_path):
    """The failure the issue met, reproduced without Docker: site-packages and $HOME read-only
    (a bind mount in a private mount namespace), no NUMBA_CACHE_DIR."""
    why = _read_only_mount_works()
    if why:
        pytest.skip(why)
    clip = shared_media("real", "pcavs_Pose_Source_620900105.mp4")
    import librosa

    site = Path(librosa.__file__).resolve().parents[1]
    inp, out, tmp = tmp_path / "in", tmp_path / "out", tmp_path / "tmp"
    inp.mkdir(), tmp.mkdir()
    shutil.copyfile(clip, inp / clip.name)
    script = (
        f"mount --bind {site} {site} && mount -o remount,bind,ro {site} {site} && "
        f"touch {site}/.probe 2>/dev/null && exit 3; "  # the mount must really be read-only
        f"exec bash {ROOT / 'run.sh'} {inp} {out} --no-progress"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(site), TMPDIR=str(tmp))
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "submission_failures.csv", newline="") as f:
        assert list(csv.reader(f))[1:] == []  # the video was scored, not failed
    assert (tmp / f"avdf-{os.getuid()}" / "numba").is_dir()  # numba cached there instead
