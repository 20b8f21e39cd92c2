"""core.files: atomic writes (one permission rule), stale temporary files, sha256."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from core.files import atomic_path, atomic_write, remove_stale_temp_files, sha256_file


def test_atomic_write_text_and_bytes(tmp_path):
    assert atomic_write(tmp_path / "a" / "b.txt", "héllo") == len("héllo".encode())
    assert (tmp_path / "a" / "b.txt").read_text(encoding="utf-8") == "héllo"
    atomic_write(tmp_path / "a" / "b.txt", b"\x00\x01")
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"\x00\x01"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_written_file_is_0644_whatever_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "m.json", "{}")
        with atomic_path(tmp_path / "x.npy") as tmp:
            np.save(tmp, np.zeros(3))
    finally:
        os.umask(previous)
    for name in ("m.json", "x.npy"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def test_an_interrupted_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the new")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_the_temporary_keeps_the_target_suffix(tmp_path):
    # numpy, PyAV and matplotlib pick the format from the extension they are given
    with atomic_path(tmp_path / "a.npz") as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path and tmp.name.startswith(".a.npz.")
        np.savez(tmp, x=np.arange(3))  # would append ".npz" to any other name
    assert np.load(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / ".x.npz.abc123.tmp").write_bytes(b"partial")  # older naming
    (tmp_path / "samples" / ".y.npz.0123456789ab.tmp.npz").write_bytes(b"partial")
    (tmp_path / "samples" / "x.npz").write_bytes(b"keep")
    (tmp_path / ".hidden.json").write_bytes(b"keep")
    assert remove_stale_temp_files(tmp_path) == 2
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["x.npz"]
    assert (tmp_path / ".hidden.json").exists()


def test_sha256_file(tmp_path):
    data = np.random.default_rng(0).bytes(3 << 20)  # more than one read block
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
