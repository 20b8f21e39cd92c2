"""Preprocess videos in worker processes that may crash or hang without stopping the run.

``PreprocessPool.results(paths)`` yields ``(index, VideoResult)`` as videos finish, in any
order, exactly once per path. Each worker builds its preprocessor once (pool initializer).

- A worker that dies (a decoder segfault, the OOM killer) breaks a ``ProcessPoolExecutor``
  and fails every task in flight, so the culprit is not known. The pool is recreated and those
  videos are re-run one at a time; the one that breaks the pool alone gets ``worker_crashed``.
- A video running past ``video_timeout`` is interrupted inside the worker by SIGALRM (reason
  ``timeout``). Native code that never returns to Python cannot be interrupted that way, so a
  task still running ``startup_grace`` seconds later has its workers killed; the other videos in
  flight are re-run.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preprocess.config import PreprocessConfig
from preprocess.types import PreprocessError, VideoResult

log = logging.getLogger("submission")

# (config, device) -> an object with .process(path, label=-1) -> VideoResult; must be picklable
# (a module-level class or function) because spawned workers receive it.
PreprocessorFactory = Callable[[PreprocessConfig, str], Any]


def failed_result(path: str, code: str, detail: str = "") -> VideoResult:
    return VideoResult(path=str(path), error=PreprocessError(path, code, detail))


class _VideoTimedOut(BaseException):
    """BaseException so that a preprocessor's ``except Exception`` cannot swallow it."""


class _WorkerSlot:
    """State of one worker process between tasks. A pool initializer can only hand state to
    later tasks through the worker's module globals, so this one slot is the exception to
    "no global state"; it exists only inside worker processes."""

    preprocessor: Any = None
    init_error: str = ""
    timeout_s: float = 0.0


_SLOT = _WorkerSlot()


def _init_worker(
    factory: PreprocessorFactory, config: PreprocessConfig, device: str, threads: int, timeout_s: float
):
    _SLOT.timeout_s = timeout_s
    torch = sys.modules.get("torch")  # imported by unpickling a factory that uses it; else unneeded
    if torch is not None:
        torch.set_num_threads(threads)  # workers share the cores; torch would take them all
    try:
        _SLOT.preprocessor = factory(config, device)
    except Exception as exc:  # reported on every task instead of a pool that dies at start
        _SLOT.init_error = f"{type(exc).__name__}: {exc}"


def _on_alarm(signum, frame):
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


def _process_video(path: str) -> tuple:
    """The task run in a worker process; returns ``_pack(VideoResult)``."""
    if _SLOT.preprocessor is None:
        detail = _SLOT.init_error or "worker not initialised"
        return _pack(failed_result(path, "preprocessor_unavailable", detail))
    try:
        with _deadline(_SLOT.timeout_s):
            result = _run_preprocessor(_SLOT.preprocessor, path)
    except _VideoTimedOut:
        result = failed_result(path, "timeout", f"preprocessing took over {_SLOT.timeout_s:g} s")
    return _pack(result)


@dataclass
class _Task:
    index: int
    submitted: float
    isolated: bool  # running alone to find out whether it crashes the worker


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
        self.restarts = 0  # pools recreated after a crash or a hard timeout

    def results(self, paths: Sequence[str | Path]) -> Iterator[tuple[int, VideoResult]]:
        paths = [str(p) for p in paths]
        if self.workers == 0:
            yield from self._serial(paths)
        else:
            yield from self._pooled(paths)

    def _serial(self, paths: list[str]) -> Iterator[tuple[int, VideoResult]]:
        if self._preprocessor is None:
            self._preprocessor = self.factory(self.config, self.device)
        for i, path in enumerate(paths):
            yield i, _run_preprocessor(self._preprocessor, path)

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn: a forked child would inherit CUDA state and the threads of the parent
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.factory, self.config, self.device, self.threads_per_worker, self.video_timeout),
        )

    def _pooled(self, paths: list[str]) -> Iterator[tuple[int, VideoResult]]:
        todo = deque(range(len(paths)))
        suspects: deque[int] = deque()  # in flight when a worker died: re-run one at a time
        running: dict[Future, _Task] = {}
        executor: ProcessPoolExecutor | None = None
        idle_breaks = 0  # pools that broke before running anything: workers cannot start at all
        try:
            while todo or suspects or running:
                if executor is None:
                    executor = self._new_executor()
                broken = False
                try:
                    self._fill(executor, running, todo, suspects, paths)
                except BrokenProcessPool:
                    broken = True
                if not broken:
                    done, _ = wait(list(running), timeout=self.poll_s, return_when=FIRST_COMPLETED)
                    for fut in done:
                        exc = fut.exception()
                        if isinstance(exc, BrokenProcessPool):
                            broken = True  # stays in running: settled below with the others
                            continue
                        task = running.pop(fut)
                        if exc is not None:  # e.g. a result that could not be pickled back
                            detail = f"{type(exc).__name__}: {exc}"
                            yield task.index, failed_result(paths[task.index], "worker_error", detail)
                        else:
                            yield task.index, _unpack(fut.result())
                overdue = [] if broken else self._overdue(running)
                if not (broken or overdue):
                    continue

                finished, lost = self._settle(running)
                running.clear()
                self._discard(executor)
                executor = None
                self.restarts += 1
                yield from ((t.index, r) for t, r in finished)
                idle_breaks = idle_breaks + 1 if broken and not lost else 0
                if idle_breaks >= 3:
                    for i in [*suspects, *todo]:
                        yield i, failed_result(paths[i], "worker_error", "worker processes cannot start")
                    return
                if broken:
                    culprit_known = len(lost) == 1 or any(t.isolated for t in lost)
                    for t in lost:
                        if culprit_known:
                            log.warning("worker crashed on %s", paths[t.index])
                            detail = "the worker process died on this video"
                            yield t.index, failed_result(paths[t.index], "worker_crashed", detail)
                        else:
                            suspects.append(t.index)
                else:
                    for t in lost:
                        if any(t is o for o in overdue):
                            log.warning("killed the worker stuck on %s", paths[t.index])
                            detail = f"stuck over {self.video_timeout:g} s; worker killed"
                            yield t.index, failed_result(paths[t.index], "timeout", detail)
                        else:  # innocent bystanders of the kill
                            (suspects if t.isolated else todo).appendleft(t.index)
        finally:
            if executor is not None:
                if running:  # left early (an exception or the consumer stopped): stop the work
                    self._discard(executor)
                else:
                    executor.shutdown(wait=True)

    def _fill(
        self,
        executor: ProcessPoolExecutor,
        running: dict[Future, _Task],
        todo: deque[int],
        suspects: deque[int],
        paths: list[str],
    ) -> None:
        """Submit work: suspects alone, else up to one task per worker, so that the tasks lost
        with a broken pool are exactly the ones that were running."""
        if suspects:
            if not running:
                i = suspects[0]
                running[executor.submit(_process_video, paths[i])] = _Task(i, time.monotonic(), True)
                suspects.popleft()
            return
        while todo and len(running) < self.workers:
            i = todo[0]
            running[executor.submit(_process_video, paths[i])] = _Task(i, time.monotonic(), False)
            todo.popleft()

    def _overdue(self, running: dict[Future, _Task]) -> list[_Task]:
        if self.video_timeout <= 0:
            return []
        limit = self.video_timeout + self.startup_grace
        now = time.monotonic()
        return [t for fut, t in running.items() if not fut.done() and now - t.submitted > limit]

    @staticmethod
    def _settle(running: dict[Future, _Task]) -> tuple[list[tuple[_Task, VideoResult]], list[_Task]]:
        """Split the tasks in flight into those that finished and those lost with the pool."""
        finished, lost = [], []
        for fut, task in running.items():
            if fut.done() and fut.exception() is None:
                finished.append((task, _unpack(fut.result())))
            else:
                lost.append(task)
        return finished, lost

    @staticmethod
    def _discard(executor: ProcessPoolExecutor) -> None:
        """Kill the pool's workers (a hung or broken pool cannot be shut down politely)."""
        # ProcessPoolExecutor has no public handle on its processes; _processes is stable since 3.2
        processes = list((getattr(executor, "_processes", None) or {}).values())
        for p in processes:
            if p.is_alive():
                p.kill()
        executor.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.join(timeout=10)
