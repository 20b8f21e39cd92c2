"""Where a sample cache keeps what, and what a rerun may skip.

Cache layout::

    CACHE/samples/<stem>__<hash>__t<k>.npz   one Sample per (video, face track): preprocess.sample_file
    CACHE/done/<stem>__<hash>.json           the video's outcome, written after its samples
    CACHE/manifest.csv, annotations*.txt     the samples with splits: preprocess.datasets
    CACHE/failures.csv                       filename,reason,code,video_id,filepath
    CACHE/preprocess_config.json             {"preprocess": config, "config_hash", "sample_format"}
    CACHE/summary.json                       the end summary

Resuming: a video is skipped when its done-marker carries the current config hash and either
lists sample files that are all present with their recorded sizes, or records ``no_face``.
Anything else (no marker, another config, other failures, missing files) is processed again,
so an interrupted run redoes exactly the unfinished videos.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from core.files import atomic_write
from core.preprocess_config import PreprocessConfig
from preprocess.datasets import VideoItem
from preprocess.sample_file import FORMAT_VERSION
from weights.store import WeightsError, read_config, resolve

log = logging.getLogger(__name__)

SAMPLES_DIR = "samples"
DONE_DIR = "done"
MANIFEST = "manifest.csv"
FAILURES = "failures.csv"
SETTINGS = "preprocess_config.json"
SUMMARY = "summary.json"
MARKER_FORMAT = 1
FINAL_FAILURES = frozenset({"no_face"})  # outcomes a rerun would only repeat; others are retried


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


def weights_identity(name_or_path: str) -> str:
    """What a cache depends on from one weights file: the sha256 our JSON records, the size
    and mtime of an upstream file without one, or ``"absent"`` (SyncNet is optional)."""
    path = resolve(name_or_path)
    if not path.is_file():
        return "absent"
    try:
        return str(read_config(path)["sha256"])
    except (WeightsError, OSError, ValueError):
        stat = path.stat()
        return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def config_hash(cfg: PreprocessConfig) -> str:
    """Identifies what a cached sample depends on: the configuration, the detector and SyncNet
    weights it was made with (new SyncNet weights turn "no latency" samples stale) and the
    file format."""
    key = {
        "config": cfg.to_dict(),
        "weights": {
            "detector": weights_identity(cfg.detector.weights),
            "syncnet": weights_identity(cfg.sync.weights),
        },
        "sample_format": FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]


@dataclass
class SampleFile:
    file: str  # relative to the cache folder
    track_id: int
    bytes: int


@dataclass
class VideoOutcome:
    video_id: str
    filename: str
    source: str
    config_hash: str
    status: str  # "ok" or "failed"
    samples: list[SampleFile] = field(default_factory=list)
    num_tracks: int = 0
    code: str | None = None  # failure code (PreprocessError.code)
    detail: str = ""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def reason(self) -> str:
        return (self.code or "") + (f": {self.detail}" if self.detail else "")

    def to_json(self) -> str:
        return json.dumps({"marker_format": MARKER_FORMAT, **dataclasses.asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> VideoOutcome:
        data = json.loads(text)
        if data.pop("marker_format", None) != MARKER_FORMAT:
            raise ValueError("unknown marker format")
        data["samples"] = [SampleFile(**entry) for entry in data.get("samples", [])]
        return cls(**data)

    @classmethod
    def failure(
        cls, item: VideoItem, cfg_hash: str, code: str, detail: str = "", **extra: Any
    ) -> VideoOutcome:
        return cls(
            item.video_id,
            item.filename,
            str(item.path),
            cfg_hash,
            "failed",
            code=code,
            detail=detail,
            **extra,
        )


def marker_path(cache: Path, video_id: str) -> Path:
    return Path(cache) / DONE_DIR / f"{video_key(video_id)}.json"


def read_marker(cache: Path, video_id: str) -> VideoOutcome | None:
    path = marker_path(cache, video_id)
    try:
        return VideoOutcome.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as err:  # damaged marker: the video is simply redone
        log.warning("%s: unreadable done-marker (%s); the video will be processed again", path, err)
        return None


def is_complete(marker: VideoOutcome | None, cache: Path, cfg_hash: str) -> bool:
    """Whether a rerun may skip the video this marker describes."""
    if marker is None or marker.config_hash != cfg_hash:
        return False
    if not marker.ok:
        return marker.code in FINAL_FAILURES
    for entry in marker.samples:
        path = Path(cache) / entry.file
        if not path.is_file() or path.stat().st_size != entry.bytes:
            return False
    return bool(marker.samples)


def write_failures(failures: Sequence[tuple[VideoItem, VideoOutcome]], path: Path) -> None:
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["filename", "reason", "code", "video_id", "filepath"])
    for item, outcome in failures:
        writer.writerow([item.filename, outcome.reason, outcome.code, item.video_id, str(item.path)])
    atomic_write(path, table.getvalue())


def write_settings(cache: Path, cfg: PreprocessConfig, cfg_hash: str) -> None:
    settings = {"preprocess": cfg.to_dict(), "config_hash": cfg_hash, "sample_format": FORMAT_VERSION}
    atomic_write(Path(cache) / SETTINGS, json.dumps(settings, indent=1))


def read_settings(cache: Path) -> PreprocessConfig | None:
    """The PreprocessConfig a cache was made with (None if it records none)."""
    path = Path(cache) / SETTINGS
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return PreprocessConfig.from_dict(data.get("preprocess", data))
