"""Preprocess videos in worker processes that may crash or hang without stopping the run.

``PreprocessPool.results(paths)`` yields ``(index, VideoResult)`` as videos finish, in any
order, exactly once per path. Each worker builds its preprocessor once.

- A worker that dies (a decoder segfault, the OOM killer) fails only the video it held
  (``worker_crashed``); the pool (``core.worker_pool.make_pool``) starts another worker for the rest.
- A video running past ``video_timeout`` is interrupted inside the worker by SIGALRM (reason
  ``timeout``). Native code that never returns to Python cannot be interrupted that way, so a
  video still running ``startup_grace`` seconds later has its worker killed.
- With ``ray`` options the workers are Ray tasks on a cluster, one per video, with the same
  guarantees; results come back to this process.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.isolated_pool import JobFailure, WorkerStartError
from core.preprocess_config import PreprocessConfig
from core.preprocess_data import PreprocessError, VideoResult
from core.ray_pool import RayOptions
from core.threads import limit_threads
from core.worker_pool import make_pool

log = logging.getLogger("submission")

# (config, device) -> an object with .process(path, label=-1) -> VideoResult; must be picklable
# (a module-level class or function) because spawned workers receive it.
PreprocessorFactory = Callable[[PreprocessConfig, str], Any]


def failed_result(path: str, code: str, detail: str = "") -> VideoResult:
    return VideoResult(path=str(path), error=PreprocessError(path, code, detail))


class _VideoTimedOut(BaseException):
    """BaseException so that a preprocessor's ``except Exception`` cannot swallow it."""


@dataclass
class _WorkerSlot:
    """A worker process's state: its preprocessor, or why building it failed."""

    preprocessor: Any = None
    init_error: str = ""
    timeout_s: float = 0.0


def _init_worker(
    factory: PreprocessorFactory, config: PreprocessConfig, device: str, threads: int, timeout_s: float
) -> _WorkerSlot:
    slot = _WorkerSlot(timeout_s=timeout_s)
    limit_threads(threads)  # workers share the cores; each library would take them all
    try:
        slot.preprocessor = factory(config, device)
    except Exception as exc:  # reported on every video instead of a run that stops
        slot.init_error = f"{type(exc).__name__}: {exc}"
    limit_threads(threads)  # again, for the libraries the factory imported
    return slot


RETRY_S = 0.05  # a deadline whose exception was swallowed fires again this much later


def _on_alarm(signum, frame):
    # Python ignores an exception raised inside a weakref callback or a __del__ (a garbage
    # collection the alarm happened to interrupt: seen in make docker-test, where a video meant to
    # time out was scored), and code may catch BaseException: re-arm, so the deadline keeps
    # firing until it leaves the video's code; ``_deadline`` disarms it on the way out.
    signal.setitimer(signal.ITIMER_REAL, RETRY_S)
    raise _VideoTimedOut


@contextmanager
def _deadline(seconds: float):
    """Raise _VideoTimedOut in this (main) thread after ``seconds``; 0 disables."""
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_preprocessor(preprocessor: Any, path: str) -> VideoResult:
    try:
        result = preprocessor.process(path)
    except Exception as exc:  # process() should never raise; if it does, only this video fails
        return failed_result(path, "internal_error", f"{type(exc).__name__}: {exc}")
    if not isinstance(result, VideoResult):
        return failed_result(path, "internal_error", f"preprocessor returned {type(result).__name__}")
    return result


def _pack(result: VideoResult) -> tuple:
    """A VideoResult as plain data for the trip back: PreprocessError does not survive pickling
    (its args are the formatted message), and a result that fails to unpickle in the parent
    breaks the whole pool."""
    error = None if result.error is None else (result.error.code, result.error.detail)
    return result.path, result.samples, error, result.timings


def _unpack(packed: tuple) -> VideoResult:
    path, samples, error, timings = packed
    err = None if error is None else PreprocessError(path, *error)
    return VideoResult(path=path, samples=samples, error=err, timings=timings)


def _process_video(slot: _WorkerSlot, path: str) -> tuple:
    """The job run in a worker process; returns ``_pack(VideoResult)``."""
    if slot.preprocessor is None:
        detail = slot.init_error or "worker not initialised"
        return _pack(failed_result(path, "preprocessor_unavailable", detail))
    try:
        with _deadline(slot.timeout_s):
            result = _run_preprocessor(slot.preprocessor, path)
    except _VideoTimedOut:
        result = failed_result(path, "timeout", f"preprocessing took over {slot.timeout_s:g} s")
    return _pack(result)


class PreprocessPool:
    """Preprocess many videos in ``workers`` spawned processes (0: in this process, serially,
    with no crash isolation and no timeout: for debugging)."""

    def __init__(
        self,
        factory: PreprocessorFactory,
        config: PreprocessConfig,
        *,
        device: str = "cpu",
        workers: int = 1,
        threads_per_worker: int = 1,
        video_timeout: float = 300.0,
        startup_grace: float = 60.0,
        poll_s: float = 0.5,
        preprocessor: Any = None,
        ray: RayOptions | None = None,
    ):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.factory = factory
        self.config = config
        self.device = device
        self.workers = workers
        self.threads_per_worker = max(1, threads_per_worker)
        self.video_timeout = video_timeout
        self.startup_grace = startup_grace  # slack on top of video_timeout before killing workers
        self.poll_s = poll_s
        self._preprocessor = preprocessor  # reused by the in-process mode
        self.ray = ray
        self.restarts = 0  # workers lost to a crash or a hard timeout (and replaced)

    def results(self, paths: Sequence[str | Path]) -> Iterator[tuple[int, VideoResult]]:
        paths = [str(p) for p in paths]
        if self.workers == 0 and self.ray is None:
            yield from self._serial(paths)
        else:
            yield from self._pooled(paths)

    def _serial(self, paths: list[str]) -> Iterator[tuple[int, VideoResult]]:
        if self._preprocessor is None:
            self._preprocessor = self.factory(self.config, self.device)
        for i, path in enumerate(paths):
            yield i, _run_preprocessor(self._preprocessor, path)

    def _pooled(self, paths: list[str]) -> Iterator[tuple[int, VideoResult]]:
        kill_after = self.video_timeout + self.startup_grace if self.video_timeout > 0 else 0.0
        init_args = (self.factory, self.config, self.device, self.threads_per_worker, self.video_timeout)
        pool = make_pool(
            _init_worker,
            init_args,
            _process_video,
            workers=self.workers,
            ray=self.ray,
            kill_after=kill_after,
            poll_s=self.poll_s,
        )
        pending = set(range(len(paths)))
        try:
            for index, packed in pool.run(paths):
                pending.discard(index)
                if isinstance(packed, JobFailure):
                    if packed.code == "worker_crashed":
                        log.warning("worker crashed on %s", paths[index])
                    yield index, failed_result(paths[index], packed.code, packed.detail)
                else:
                    yield index, _unpack(packed)
        except WorkerStartError as err:
            for i in sorted(pending):
                yield i, failed_result(paths[i], "worker_error", str(err))
        finally:
            self.restarts += pool.restarts
