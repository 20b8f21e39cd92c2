"""``python -m preprocess INPUT [--labels FILE] --out CACHE``: a dataset → a cache of Samples.

Cache layout::

    CACHE/samples/<stem>__<hash>__t<k>.npz   one Sample per (video, face track): preprocess.sample
    CACHE/done/<stem>__<hash>.json           the video's outcome, written after its samples
    CACHE/manifest.csv, annotations*.txt     the samples with splits: preprocess.datasets
    CACHE/failures.csv                       filename,reason,code,video_id,filepath
    CACHE/preprocess_config.json             {"preprocess": config, "config_hash", "sample_format"}
    CACHE/summary.json                       the end summary

Resuming: a video is skipped when its done-marker carries the current config hash and either
lists sample files that are all present with their recorded sizes, or records ``no_face``.
Anything else (no marker, another config, other failures, missing files) is processed again,
so an interrupted run redoes exactly the unfinished videos.

Workers are spawned processes (torch and fork do not mix), each building its Preprocessor
once (``preprocess.workers.IsolatedPool``). Every video is isolated: a failure is recorded
with its reason; a worker that dies takes only its video down (``worker_crashed``), one stuck
past ``--video-timeout`` is killed (``timeout``), and a new worker takes over the rest.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from preprocess.config import PreprocessConfig
from preprocess.datasets import (
    DatasetError,
    ManifestRow,
    VideoItem,
    assign_splits,
    filter_single_person,
    load_dataset,
    split_counts,
    write_manifest,
)
from preprocess.sample import (
    FORMAT_VERSION,
    atomic_write,
    remove_stale_temp_files,
    sample_path,
    save_sample,
    video_key,
)
from preprocess.types import VideoResult
from preprocess.workers import IsolatedPool, JobFailure, WorkerStartError

log = logging.getLogger(__name__)

MARKER_FORMAT = 1
DONE_DIR = "done"
FINAL_FAILURES = frozenset({"no_face"})  # outcomes a rerun would only repeat; others are retried


class VideoProcessor(Protocol):
    def process(self, path: str | Path, label: int = -1) -> VideoResult: ...


PreprocessorFactory = Callable[[PreprocessConfig, str], VideoProcessor]


def build_preprocessor(cfg: PreprocessConfig, device: str = "cpu") -> VideoProcessor:
    """The real pipeline (imported here so that spawning a worker stays cheap until needed)."""
    from preprocess.pipeline import Preprocessor

    return Preprocessor(cfg, device=device)


def weights_identity(name_or_path: str) -> str:
    """What a cache depends on from one weights file: the sha256 our JSON records, the size
    and mtime of an upstream file without one, or ``"absent"`` (SyncNet is optional)."""
    from weights.store import WeightsError, read_config, resolve

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


# --- per-video outcome (the done-marker) --------------------------------------------------


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


def process_item(preprocessor: VideoProcessor, item: VideoItem, cache: Path, cfg_hash: str) -> VideoOutcome:
    """Preprocess one video, save its samples, then its done-marker. Never raises for the
    video's sake (only for a full disk or a killed process, which end the run anyway)."""
    start = time.perf_counter()
    try:
        result = preprocessor.process(item.path, label=item.label)
    except Exception as err:  # the pipeline promises not to raise; a bug must still not stop the run
        log.exception("preprocessing %s raised", item.path)
        result = None
        outcome = VideoOutcome.failure(item, cfg_hash, "internal_error", f"{type(err).__name__}: {err}")
    if result is not None:
        outcome = _save_result(result, item, cache, cfg_hash)
    outcome.seconds = time.perf_counter() - start
    old = read_marker(cache, item.video_id)
    atomic_write(marker_path(cache, item.video_id), outcome.to_json())
    if old is not None:  # a previous config may have produced tracks this run did not
        kept = {entry.file for entry in outcome.samples}
        for entry in old.samples:
            if entry.file not in kept:
                (Path(cache) / entry.file).unlink(missing_ok=True)
    return outcome


def _save_result(result: VideoResult, item: VideoItem, cache: Path, cfg_hash: str) -> VideoOutcome:
    timings = {stage: round(seconds, 4) for stage, seconds in result.timings.items()}
    if result.error is not None:
        return VideoOutcome.failure(item, cfg_hash, result.error.code, result.error.detail, timings=timings)
    if not result.samples:
        return VideoOutcome.failure(
            item, cfg_hash, "no_face", "the pipeline returned no sample", timings=timings
        )
    files: list[SampleFile] = []
    try:
        for sample in result.samples:
            path = sample_path(cache, item.video_id, sample.meta.track_id)
            size = save_sample(sample, path)
            files.append(SampleFile(path.relative_to(cache).as_posix(), int(sample.meta.track_id), size))
    except OSError as err:
        for entry in files:
            (Path(cache) / entry.file).unlink(missing_ok=True)
        return VideoOutcome.failure(item, cfg_hash, "write_error", str(err), timings=timings)
    return VideoOutcome(
        item.video_id,
        item.filename,
        str(item.path),
        cfg_hash,
        "ok",
        samples=files,
        num_tracks=int(result.samples[0].meta.num_tracks),
        timings=timings,
    )


# --- worker processes ---------------------------------------------------------------------


class WorkerInitError(RuntimeError):
    """The Preprocessor could not be built in a worker (e.g. missing weights): fatal."""


def _set_threads(threads: int) -> None:
    """Caps math-library threads; torch is only touched once something imported it."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _build_in_worker(factory: PreprocessorFactory, cfg: PreprocessConfig, device: str, threads: int) -> Any:
    """A worker's state: its Preprocessor. An exception stops the run (WorkerInitError)."""
    _set_threads(threads)
    preprocessor = factory(cfg, device)
    _set_threads(threads)  # again, now that the factory has imported torch
    return preprocessor


def _job_in_worker(preprocessor: VideoProcessor, job: tuple[VideoItem, Path, str]) -> VideoOutcome:
    return process_item(preprocessor, *job)


def _run_in_pool(
    todo: Sequence[VideoItem],
    cache: Path,
    cfg_hash: str,
    on_outcome: Callable[[VideoOutcome], None],
    *,
    workers: int,
    factory: PreprocessorFactory,
    cfg: PreprocessConfig,
    device: str,
    threads: int,
    video_timeout: float = 0.0,
) -> int:
    """Runs ``todo`` in worker processes; a video that crashes its worker or runs past
    ``video_timeout`` seconds fails alone. Returns how many workers were lost that way."""
    pool = IsolatedPool(
        _build_in_worker,
        (factory, cfg, device, threads),
        _job_in_worker,
        workers=workers,
        kill_after=video_timeout,
    )
    jobs = [(item, cache, cfg_hash) for item in todo]
    try:
        for index, outcome in pool.run(jobs):
            if isinstance(outcome, JobFailure):
                outcome = VideoOutcome.failure(todo[index], cfg_hash, outcome.code, outcome.detail)
            on_outcome(outcome)
    except WorkerStartError as err:
        raise WorkerInitError(f"building the preprocessor failed: {err}") from err
    return pool.restarts


# --- the run ------------------------------------------------------------------------------


@dataclass
class RunSummary:
    videos: int = 0
    processed: int = 0  # preprocessed by this run, with samples
    skipped: int = 0  # already complete in the cache
    failed: Counter = field(default_factory=Counter)  # code -> videos
    excluded_multi_person: int = 0
    samples: int = 0  # rows in the manifest
    sample_bytes: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    pool_rebuilds: int = 0
    splits: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def bytes_per_sample(self) -> float:
        return self.sample_bytes / self.samples if self.samples else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "failed": dict(self.failed),
            "bytes_per_sample": self.bytes_per_sample,
        }

    def format(self) -> str:
        failed = ", ".join(f"{code} {n}" for code, n in self.failed.most_common()) or "none"
        lines = [
            f"videos {self.videos}: processed {self.processed}, skipped {self.skipped}, "
            f"failed {sum(self.failed.values())} ({failed})",
            f"samples {self.samples}, {self.bytes_per_sample / 1e6:.2f} MB per sample, "
            f"{self.sample_bytes / 1e9:.3f} GB in all; total time {self.seconds:.1f} s",
        ]
        if self.excluded_multi_person:
            lines.append(f"excluded (not exactly one face track): {self.excluded_multi_person}")
        if self.stage_seconds:
            lines.append("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.stage_seconds.items()))
        for split, counts in self.splits.items():
            lines.append(f"split {split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return "\n".join(lines)


def run_preprocess(
    items: Sequence[VideoItem],
    out: str | Path,
    cfg: PreprocessConfig | None = None,
    *,
    workers: int = 1,
    device: str = "cpu",
    preprocessor_factory: PreprocessorFactory = build_preprocessor,
    single_person: bool = False,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    resplit: bool = False,
    seed: int = 0,
    threads: int | None = None,
    video_timeout: float = 0.0,
    progress: bool = True,
) -> RunSummary:
    """Preprocess ``items`` into the cache ``out``; ``workers=0`` runs in this process.
    With workers, a video still running after ``video_timeout`` seconds (0: no limit) has its
    worker killed and fails with ``timeout``.

    Raises ``WorkerInitError`` when the Preprocessor cannot be built; individual videos
    never raise (their failures land in ``failures.csv``).
    """
    started = time.perf_counter()
    cfg = cfg or PreprocessConfig()
    cache = Path(out)
    cache.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_temp_files(cache)
    if removed:
        log.info("removed %d temporary files left by an interrupted run", removed)
    cfg_hash = config_hash(cfg)
    settings = {"preprocess": cfg.to_dict(), "config_hash": cfg_hash, "sample_format": FORMAT_VERSION}
    atomic_write(cache / "preprocess_config.json", json.dumps(settings, indent=1))

    summary = RunSummary(videos=len(items))
    outcomes: dict[str, VideoOutcome] = {}
    todo: list[VideoItem] = []
    for item in items:
        if not item.path.is_file():
            outcomes[item.video_id] = VideoOutcome.failure(item, cfg_hash, "missing_file", "no such file")
            continue
        marker = read_marker(cache, item.video_id)
        if is_complete(marker, cache, cfg_hash):
            outcomes[item.video_id] = marker
            summary.skipped += 1
        else:
            todo.append(item)

    bar = tqdm(
        total=len(items), initial=len(items) - len(todo), file=sys.stderr, unit="video", disable=not progress
    )
    stage_seconds: Counter = Counter()
    failed_now = Counter(not outcome.ok for outcome in outcomes.values())

    def record(outcome: VideoOutcome) -> None:
        outcomes[outcome.video_id] = outcome
        stage_seconds.update(outcome.timings)
        summary.processed += outcome.ok
        failed_now[not outcome.ok] += 1
        bar.update(1)
        bar.set_postfix(failed=failed_now[True], refresh=False)

    try:
        if workers <= 0 and todo:
            try:
                if threads:
                    _set_threads(threads)
                preprocessor = preprocessor_factory(cfg, device)
                if threads:
                    _set_threads(threads)
            except Exception as err:
                raise WorkerInitError(
                    f"building the preprocessor failed: {type(err).__name__}: {err}"
                ) from err
            for item in todo:
                record(process_item(preprocessor, item, cache, cfg_hash))
        elif todo:
            threads = threads or max(1, (os.cpu_count() or 1) // workers)
            summary.pool_rebuilds = _run_in_pool(
                todo,
                cache,
                cfg_hash,
                record,
                workers=workers,
                factory=preprocessor_factory,
                cfg=cfg,
                device=device,
                threads=threads,
                video_timeout=video_timeout,
            )
    finally:
        bar.close()

    done = [item for item in items if outcomes[item.video_id].ok]
    if single_person:
        kept = filter_single_person(
            done, {item.video_id: outcomes[item.video_id].num_tracks for item in done}
        )
        summary.excluded_multi_person = len(done) - len(kept)
        done = kept
    done = assign_splits(done, fractions, seed=seed, resplit=resplit)
    rows = [
        ManifestRow(item, entry.track_id, cache / entry.file)
        for item in done
        for entry in outcomes[item.video_id].samples
    ]
    write_manifest(rows, cache / "manifest.csv")
    failures = [(item, outcomes[item.video_id]) for item in items if not outcomes[item.video_id].ok]
    write_failures(failures, cache / "failures.csv")

    summary.failed = Counter(outcome.code for _, outcome in failures)
    summary.samples = len(rows)
    summary.sample_bytes = sum(entry.bytes for item in done for entry in outcomes[item.video_id].samples)
    summary.stage_seconds = {k: round(v, 2) for k, v in stage_seconds.most_common()}
    summary.splits = split_counts(done)
    summary.seconds = time.perf_counter() - started
    atomic_write(cache / "summary.json", json.dumps(summary.to_dict(), indent=1))
    return summary


def write_failures(failures: Sequence[tuple[VideoItem, VideoOutcome]], path: Path) -> None:
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["filename", "reason", "code", "video_id", "filepath"])
    for item, outcome in failures:
        writer.writerow([item.filename, outcome.reason, outcome.code, item.video_id, str(item.path)])
    atomic_write(path, table.getvalue())


# --- command line -------------------------------------------------------------------------


def load_config(path: str | Path | None) -> PreprocessConfig:
    """A JSON file holding a PreprocessConfig dict, or any JSON with it under ``"preprocess"``
    (a model's config, or a cache's ``preprocess_config.json``)."""
    if path is None:
        return PreprocessConfig()
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict) and "preprocess" in data:
        data = data["preprocess"]
    return PreprocessConfig.from_dict(data)


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--split {text!r}: comma-separated numbers expected") from err
    if not 1 <= len(values) <= 3 or any(v < 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"--split {text!r}: 1-3 non-negative fractions summing to 1")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess",
        description="Preprocess a video dataset into a cache of Samples (.npz), a manifest and failures.csv.",
    )
    parser.add_argument("input", type=Path, help="dataset folder, labels CSV, DFDC metadata.json or a video")
    parser.add_argument(
        "--labels", type=Path, help="labels CSV or DFDC metadata.json (paths relative to INPUT)"
    )
    parser.add_argument("--out", type=Path, required=True, help="cache folder (created; reruns resume)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes; 0 runs in this process")
    parser.add_argument("--threads", type=int, help="torch threads per worker (default: cores / workers)")
    parser.add_argument(
        "--video-timeout",
        type=float,
        default=600.0,
        help="seconds one video may take in a worker before the worker is killed (0: no limit)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for the networks, e.g. cuda")
    parser.add_argument(
        "--config", type=Path, help="PreprocessConfig JSON (or a JSON with a 'preprocess' key)"
    )
    parser.add_argument("--window", type=float, help="seconds analysed per video (media.window_s)")
    parser.add_argument("--detect-every", type=int, help="run the face detector every K frames")
    parser.add_argument("--num-frames", type=int, help="face crops kept per sample")
    parser.add_argument(
        "--single-person", action="store_true", help="keep videos with exactly one face track"
    )
    parser.add_argument("--split", type=_fractions, default=(0.8, 0.1, 0.1), help="train,val,test fractions")
    parser.add_argument("--resplit", action="store_true", help="ignore the splits the dataset provides")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split assignment")
    parser.add_argument("--limit", type=int, help="only the first N videos (sorted by path)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> PreprocessConfig:
    cfg = load_config(args.config)
    if args.window is not None:
        cfg = cfg.replace("media", window_s=args.window)
    if args.detect_every is not None:
        cfg = cfg.replace("detector", detect_every=args.detect_every)
    if args.num_frames is not None:
        cfg = cfg.replace("sample", num_frames=args.num_frames)
    return cfg


def main(
    argv: Sequence[str] | None = None, preprocessor_factory: PreprocessorFactory = build_preprocessor
) -> int:
    """Exit codes: 0 done (individual videos may have failed: see failures.csv), 1 the
    preprocessor could not be built, 2 bad arguments or dataset, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = config_from_args(args)
        items = load_dataset(args.input, args.labels)
    except (DatasetError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.limit is not None:
        items = items[: args.limit]
    if not items:
        print(f"error: no videos found in {args.input}", file=sys.stderr)
        return 2
    try:
        summary = run_preprocess(
            items,
            args.out,
            cfg,
            workers=args.workers,
            device=args.device,
            preprocessor_factory=preprocessor_factory,
            single_person=args.single_person,
            fractions=args.split,
            resplit=args.resplit,
            seed=args.seed,
            threads=args.threads,
            video_timeout=args.video_timeout,
            progress=not args.no_progress,
        )
    except WorkerInitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: rerun the same command to resume ({args.out})", file=sys.stderr)
        return 130
    print(summary.format(), file=sys.stderr)
    return 0
