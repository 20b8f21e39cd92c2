"""A Sample on disk: one compressed ``.npz`` per (video, face track).

Where the files go in a cache: ``preprocess.cache_layout``.

Layout of a sample file (format version ``FORMAT_VERSION``):

``meta``                 uint8, UTF-8 JSON: ``{"format": 1, "meta": SampleMeta fields,
                         "frame_start": int, "latency": null | {"offset", "min_distance",
                         "confidence"}}``
``faces``                (F, S, S, 3) uint8 RGB crops
``face_frame_indices``   (F,) clip frame indices of the crops
``boxes``                (T, 4) float32 box track starting at clip frame ``frame_start``
``audio``                (N,) int16 mono; ``mfcc`` / ``mel`` float32 (may have 0 columns)
``latency_distances``, ``latency_frame_confidence``   only when the sample has a ``Latency``
``landmarks``            (F, 5, 2) float32 landmarks of each crop, in crop pixels (format 2; files
                         of format 1 have none and load with ``landmarks=None``)

Arrays are stored as they are (dtype and shape kept, bit-exact); metadata is JSON, so files
load with ``allow_pickle=False``. Deflate is lossless and worth it: on 10 s clips from
../shared (8 crops of 224², 16 kHz audio, mfcc, mel) a sample is 1.90 MB stored, 0.84-1.49 MB
compressed (faces shrink ~2×, audio/mel ~15 %), for ~60 ms more per write (a video takes
seconds to preprocess) and ~8 ms more per read.

Writes are atomic (``core.files.atomic_path``): an interrupted run leaves either the old
file, the new file, or nothing — never a truncated one.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from core.files import atomic_path
from core.preprocess_data import Latency, PreprocessError, Sample, SampleMeta

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # format 1 lacks landmarks

_ARRAYS = ("faces", "face_frame_indices", "boxes", "audio", "mfcc", "mel")


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
    if sample.landmarks is not None:
        arrays["landmarks"] = np.asarray(sample.landmarks)
    if latency is not None:
        arrays["latency_distances"] = np.asarray(latency.distances)
        arrays["latency_frame_confidence"] = np.asarray(latency.frame_confidence)
    return arrays


def save_sample(sample: Sample, path: str | Path) -> int:
    """Write ``sample`` to ``path`` (.npz) atomically; returns the bytes written."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **sample_to_arrays(sample))
        size = fh.tell()
    return size


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


def load_latency(path: str | Path) -> tuple[SampleMeta, Latency | None]:
    """Only the metadata and the latency of a sample file (the crops are not decompressed):
    what a detector of the latency alone reads. Errors as ``load_sample``."""
    path = Path(path)
    if not path.is_file():
        raise PreprocessError(str(path), "missing_sample", "no such sample file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            header = json.loads(npz["meta"].tobytes().decode("utf-8"))
            lat = header["latency"]
            latency = None
            if lat is not None:
                latency = Latency(
                    distances=npz["latency_distances"],
                    offset=int(lat["offset"]),
                    min_distance=lat["min_distance"],
                    confidence=lat["confidence"],
                    frame_confidence=npz["latency_frame_confidence"],
                )
            return SampleMeta(**header["meta"]), latency
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError, TypeError) as err:
        raise PreprocessError(str(path), "corrupt_sample", f"{type(err).__name__}: {err}") from err


def sample_from_arrays(arrays: dict[str, np.ndarray], path: str = "<memory>") -> Sample:
    """Inverse of ``sample_to_arrays``; ``path`` only names the file in errors."""
    try:
        header = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PreprocessError(path, "corrupt_sample", f"unreadable metadata: {err}") from err
    version = header.get("format") if isinstance(header, dict) else None
    if version not in READABLE_VERSIONS:
        raise PreprocessError(
            path, "sample_format", f"format {version!r}, this code reads {list(READABLE_VERSIONS)}"
        )
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
            landmarks=arrays.get("landmarks"),
            **{name: arrays[name] for name in _ARRAYS},
        )
    except (KeyError, TypeError) as err:
        raise PreprocessError(path, "corrupt_sample", f"bad metadata: {type(err).__name__}: {err}") from err
