"""The on-disk cache of ``Sample`` objects: one compressed ``.npz`` per (video, face track).

Layout of a sample file (format version ``FORMAT_VERSION``):

``meta``                 uint8, UTF-8 JSON: ``{"format": 1, "meta": SampleMeta fields,
                         "frame_start": int, "latency": null | {"offset", "min_distance",
                         "confidence"}}``
``faces``                (F, S, S, 3) uint8 RGB crops
``face_frame_indices``   (F,) clip frame indices of the crops
``boxes``                (T, 4) float32 box track starting at clip frame ``frame_start``
``audio``                (N,) int16 mono; ``mfcc`` / ``mel`` float32 (may have 0 columns)
``latency_distances``, ``latency_frame_confidence``   only when the sample has a ``Latency``

Arrays are stored as they are (dtype and shape kept, bit-exact); metadata is JSON, so files
load with ``allow_pickle=False``. Deflate is lossless and worth it: on 10 s clips from
../shared (8 crops of 224², 16 kHz audio, mfcc, mel) a sample is 1.90 MB stored, 0.84-1.49 MB
compressed (faces shrink ~2×, audio/mel ~15 %), for ~60 ms more per write (a video takes
seconds to preprocess) and ~8 ms more per read.

Writes are atomic (temporary file in the same folder, then ``os.replace``): an interrupted
run leaves either the old file, the new file, or nothing — never a truncated one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from preprocess.types import Latency, PreprocessError, Sample, SampleMeta

FORMAT_VERSION = 1
SAMPLES_DIR = "samples"
TEMP_SUFFIX = ".tmp"

_ARRAYS = ("faces", "face_frame_indices", "boxes", "audio", "mfcc", "mel")


def atomic_write(path: str | Path, data: bytes | str) -> int:
    """Write ``data`` to ``path`` atomically; returns the number of bytes written."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with _atomic_file(path) as fh:
        fh.write(payload)
    return len(payload)


@contextlib.contextmanager
def _atomic_file(path: str | Path):
    """Binary file handle on a temporary sibling of ``path``, renamed over it on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A leading dot and the .tmp suffix keep half-written files out of every *.npz / *.json glob;
    # os.open (not mkstemp, which makes 0600 files) leaves the permissions to the umask.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete temporary files a killed process left behind (recursively); returns how many."""
    count = 0
    for tmp in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            count += 1
    return count


def video_key(video_id: str) -> str:
    """File-name-safe unique key for a video: ``<stem>__<hash8>``.

    ``video_id`` is the video's path relative to the dataset root; the hash keeps two
    ``abc.mp4`` from different DFDC part folders apart while the stem stays readable.
    """
    stem = PurePosixPath(video_id).stem
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:80] or "video"
    digest = hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:8]
    return f"{safe}__{digest}"


def sample_path(cache_dir: str | Path, video_id: str, track_id: int) -> Path:
    """Where the sample of ``video_id``'s face track ``track_id`` lives in a cache."""
    return Path(cache_dir) / SAMPLES_DIR / f"{video_key(video_id)}__t{int(track_id)}.npz"


def _to_json_number(value: float) -> float:
    # json keeps Python floats exactly (repr round-trips); numpy scalars must be unwrapped first.
    return float(value)


def sample_to_arrays(sample: Sample) -> dict[str, np.ndarray]:
    """The named arrays a sample file holds (metadata as a JSON byte array)."""
    latency = sample.latency
    header = {
        "format": FORMAT_VERSION,
        "meta": dataclasses.asdict(sample.meta),
        "frame_start": int(sample.frame_start),
        "latency": None
        if latency is None
        else {
            "offset": int(latency.offset),
            "min_distance": _to_json_number(latency.min_distance),
            "confidence": _to_json_number(latency.confidence),
        },
    }
    arrays = {"meta": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)}
    for name in _ARRAYS:
        arrays[name] = np.asarray(getattr(sample, name))
    if latency is not None:
        arrays["latency_distances"] = np.asarray(latency.distances)
        arrays["latency_frame_confidence"] = np.asarray(latency.frame_confidence)
    return arrays


def save_sample(sample: Sample, path: str | Path) -> int:
    """Write ``sample`` to ``path`` (.npz) atomically; returns the bytes written."""
    with _atomic_file(path) as fh:
        np.savez_compressed(fh, **sample_to_arrays(sample))
        return fh.tell()


def load_sample(path: str | Path) -> Sample:
    """Read a sample file; a damaged or foreign file raises ``PreprocessError(path, code)``
    with code ``missing_sample``, ``corrupt_sample`` or ``sample_format``."""
    path = Path(path)
    if not path.is_file():
        raise PreprocessError(str(path), "missing_sample", "no such sample file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a bare .npy array, not an .npz archive")
        with loaded as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as err:
        raise PreprocessError(str(path), "corrupt_sample", f"{type(err).__name__}: {err}") from err
    return sample_from_arrays(arrays, str(path))


def sample_from_arrays(arrays: dict[str, np.ndarray], path: str = "<memory>") -> Sample:
    """Inverse of ``sample_to_arrays``; ``path`` only names the file in errors."""
    try:
        header = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PreprocessError(path, "corrupt_sample", f"unreadable metadata: {err}") from err
    version = header.get("format") if isinstance(header, dict) else None
    if version != FORMAT_VERSION:
        raise PreprocessError(path, "sample_format", f"format {version!r}, this code reads {FORMAT_VERSION}")
    missing = [name for name in _ARRAYS if name not in arrays]
    if missing:
        raise PreprocessError(path, "corrupt_sample", f"missing arrays {missing}")
    try:
        meta = SampleMeta(**header["meta"])
        lat = header["latency"]
        latency = None
        if lat is not None:
            latency = Latency(
                distances=arrays["latency_distances"],
                offset=int(lat["offset"]),
                min_distance=lat["min_distance"],
                confidence=lat["confidence"],
                frame_confidence=arrays["latency_frame_confidence"],
            )
        return Sample(
            meta=meta,
            frame_start=int(header["frame_start"]),
            latency=latency,
            **{name: arrays[name] for name in _ARRAYS},
        )
    except (KeyError, TypeError) as err:
        raise PreprocessError(path, "corrupt_sample", f"bad metadata: {type(err).__name__}: {err}") from err
