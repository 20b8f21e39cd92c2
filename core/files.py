"""Writing files so that readers never see half of one, and checksumming them.

Every file the project writes (samples, markers, manifests, weights, ONNX exports, TensorRT
engines, CSVs, reports, videos) goes through ``atomic_path``: the data is written to a hidden
temporary sibling (same folder, so ``os.replace`` is atomic), flushed to disk, given mode 0644
and renamed over the target. An interrupted writer leaves the old file, the new one, or a
temporary file ``remove_stale_temp_files`` cleans up, never a truncated target. 0644 whatever
the umask or ``mkstemp``'s 0600: weights and submissions are read by other users (a grader, a
container user).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o644
TEMP_MARK = ".tmp"  # temporary names: ".<target name>.<random>.tmp<target suffix>"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``target``'s new content to; on a normal exit it replaces
    ``target``, on an exception it is deleted. The temporary name ends with the target's own
    suffix, so writers that pick a format by extension (numpy, PyAV, matplotlib) pick the same."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}{TEMP_MARK}{target.suffix}"
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the writer may have closed its own handle: sync by path
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> int:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns the number of bytes."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return len(payload)


def remove_stale_temp_files(folder: str | os.PathLike) -> int:
    """Delete the temporary files killed writers left under ``folder``; returns how many."""
    count = 0
    for tmp in Path(folder).rglob(f".*{TEMP_MARK}*"):
        if tmp.is_file():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                count += 1
    return count


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
