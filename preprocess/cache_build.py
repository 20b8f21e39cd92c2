"""Preprocess a dataset into a cache of Samples: ``run_preprocess`` (``python -m preprocess``).

Workers are spawned processes (torch and fork do not mix) or Ray tasks, each building its
Preprocessor once (``core.worker_pool.make_pool``). Every video is isolated: a failure is recorded
with its reason; a worker that dies takes only its video down (``worker_crashed``), one stuck
past ``video_timeout`` is killed (``timeout``), and a new worker takes over the rest. What a
rerun skips, and where everything goes: ``preprocess.cache_layout``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from core.files import atomic_write, remove_stale_temp_files
from core.isolated_pool import JobFailure, WorkerStartError
from core.preprocess_config import PreprocessConfig
from core.preprocess_data import PreprocessError, VideoResult
from core.ray_pool import RayOptions
from core.threads import limit_threads
from core.worker_pool import make_pool
from preprocess.cache_layout import (
    FAILURES,
    MANIFEST,
    SUMMARY,
    SampleFile,
    VideoOutcome,
    config_hash,
    is_complete,
    marker_path,
    read_marker,
    sample_path,
    write_failures,
    write_settings,
)
from preprocess.datasets import (
    ManifestRow,
    VideoItem,
    assign_splits,
    filter_single_person,
    split_counts,
    write_manifest,
)
from preprocess.sample_file import save_sample

log = logging.getLogger(__name__)


class VideoProcessor(Protocol):
    def process(self, path: str | Path, label: int = -1) -> VideoResult: ...


PreprocessorFactory = Callable[[PreprocessConfig, str], VideoProcessor]


def build_preprocessor(cfg: PreprocessConfig, device: str = "cpu") -> VideoProcessor:
    """The real pipeline (imported here so that spawning a worker stays cheap until needed)."""
    from preprocess.pipeline import Preprocessor

    return Preprocessor(cfg, device=device)


def process_item(preprocessor: VideoProcessor, item: VideoItem, cache: Path, cfg_hash: str) -> VideoOutcome:
    """Preprocess one video, save its samples, then its done-marker. Never raises for the
    video's sake (only for a full disk or a killed process, which end the run anyway)."""
    result, seconds = preprocess_item(preprocessor, item)
    return store_result(result, item, cache, cfg_hash, seconds)


def preprocess_item(preprocessor: VideoProcessor, item: VideoItem) -> tuple[VideoResult, float]:
    """The video's result (a failure for an unforeseen exception too) and its seconds."""
    start = time.perf_counter()
    try:
        result = preprocessor.process(item.path, label=item.label)
    except Exception as err:  # the pipeline promises not to raise; a bug must still not stop the run
        log.exception("preprocessing %s raised", item.path)
        error = PreprocessError(str(item.path), "internal_error", f"{type(err).__name__}: {err}")
        result = VideoResult(str(item.path), error=error)
    return result, time.perf_counter() - start


def store_result(
    result: VideoResult, item: VideoItem, cache: Path, cfg_hash: str, seconds: float = 0.0
) -> VideoOutcome:
    """Save a video's samples, then its done-marker (both atomically); returns its outcome."""
    outcome = _save_result(result, item, cache, cfg_hash)
    outcome.seconds = seconds
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


def _build_in_worker(factory: PreprocessorFactory, cfg: PreprocessConfig, device: str, threads: int) -> Any:
    """A worker's state: its Preprocessor. An exception stops the run (WorkerInitError)."""
    limit_threads(threads)
    preprocessor = factory(cfg, device)
    limit_threads(threads)  # again, now that the factory has imported torch
    return preprocessor


def _job_in_worker(preprocessor: VideoProcessor, job: tuple[VideoItem, Path, str]) -> VideoOutcome:
    return process_item(preprocessor, *job)


def _build_on_node(
    factory: PreprocessorFactory, cfg: PreprocessConfig, device: str, threads: int, cfg_hash: str
) -> Any:
    """A Ray worker's Preprocessor, once the node is known to hold the driver's weights: the
    cache's config hash covers them, and a node with others would write samples the hash lies
    about."""
    here = config_hash(cfg)
    if here != cfg_hash:
        raise RuntimeError(
            f"this node's detector/SyncNet weights differ from the driver's (config hash {here}, "
            f"driver {cfg_hash}): every node needs the same weights folder"
        )
    return _build_in_worker(factory, cfg, device, threads)


def _preprocess_on_node(preprocessor: VideoProcessor, item: VideoItem) -> tuple[VideoResult, float]:
    """A Ray task's work: the samples go back to the driver, which writes them (the cache may
    be on a disk the nodes do not share)."""
    return preprocess_item(preprocessor, item)


def _run_pooled(
    todo: Sequence[VideoItem],
    cache: Path,
    cfg_hash: str,
    on_outcome: Callable[[VideoOutcome], None],
    *,
    workers: int,
    ray: RayOptions | None,
    factory: PreprocessorFactory,
    cfg: PreprocessConfig,
    device: str,
    threads: int | None,
    video_timeout: float = 0.0,
) -> int:
    """Runs ``todo`` in ``workers`` processes, or with ``ray`` as Ray tasks (one per video); a
    video that crashes its worker or runs past ``video_timeout`` seconds fails alone. Local
    workers write their own samples; Ray's send them back and this process writes them. Returns
    how many workers were lost."""
    if ray is not None:
        device = "cuda" if ray.gpus > 0 else "cpu"
        threads = max(1, math.ceil(ray.cpus))
        init, init_args, job = _build_on_node, (factory, cfg, device, threads, cfg_hash), _preprocess_on_node
        jobs: list[Any] = list(todo)
    else:
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        init, init_args, job = _build_in_worker, (factory, cfg, device, threads), _job_in_worker
        jobs = [(item, cache, cfg_hash) for item in todo]
    pool = make_pool(init, init_args, job, workers=workers, ray=ray, kill_after=video_timeout)
    try:
        for index, done in pool.run(jobs):
            item = todo[index]
            if isinstance(done, JobFailure):
                outcome = VideoOutcome.failure(item, cfg_hash, done.code, done.detail)
            elif isinstance(done, VideoOutcome):  # a local worker wrote it
                outcome = done
            else:  # a Ray task's (VideoResult, seconds)
                outcome = store_result(done[0], item, cache, cfg_hash, done[1])
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
    ray: RayOptions | None = None,
) -> RunSummary:
    """Preprocess ``items`` into the cache ``out``; ``workers=0`` runs in this process, ``ray``
    on a Ray cluster instead of local workers. With workers or Ray, a video still running after
    ``video_timeout`` seconds (0: no limit) has its worker killed and fails with ``timeout``.

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
    write_settings(cache, cfg, cfg_hash)

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
        if workers <= 0 and ray is None and todo:
            try:
                if threads:
                    limit_threads(threads)
                preprocessor = preprocessor_factory(cfg, device)
                if threads:
                    limit_threads(threads)
            except Exception as err:
                raise WorkerInitError(
                    f"building the preprocessor failed: {type(err).__name__}: {err}"
                ) from err
            for item in todo:
                record(process_item(preprocessor, item, cache, cfg_hash))
        elif todo:
            summary.pool_rebuilds = _run_pooled(
                todo,
                cache,
                cfg_hash,
                record,
                workers=workers,
                ray=ray,
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
    write_manifest(rows, cache / MANIFEST)
    failures = [(item, outcomes[item.video_id]) for item in items if not outcomes[item.video_id].ok]
    write_failures(failures, cache / FAILURES)

    summary.failed = Counter(outcome.code for _, outcome in failures)
    summary.samples = len(rows)
    summary.sample_bytes = sum(entry.bytes for item in done for entry in outcomes[item.video_id].samples)
    summary.stage_seconds = {k: round(v, 2) for k, v in stage_seconds.most_common()}
    summary.splits = split_counts(done)
    summary.seconds = time.perf_counter() - started
    atomic_write(cache / SUMMARY, json.dumps(summary.to_dict(), indent=1))
    return summary
