"""A process pool in which one job can crash or hang its worker without harming the others.

``concurrent.futures.ProcessPoolExecutor`` is the wrong tool for untrusted media: one worker
that dies (a decoder segfault, the OOM killer) breaks the whole pool and fails every job in
flight, so the culprit is unknown and the innocent jobs have to be re-run one by one; a hung
job can only be ended through private attributes; and restarting a broken pool races its own
manager thread (CPython 3.11: ``OSError: handle is closed`` from ``shutdown`` or a hang at
interpreter exit, seen here about once in 12 runs of a test with a crashing worker).

Here every worker is a spawned process with its own pipe and runs one job at a time, so the
parent always knows which job a worker holds: a worker that dies fails exactly its job, a job
over ``kill_after`` seconds has exactly its worker killed, and only that worker is restarted.

Libraries that promise the same were tried. pebble 5.2.3's ProcessPool, behind this module's
interface, ran this module's tests and the two CLIs' pool tests 12 times: 5 runs failed, each
time because it learns which job a worker took from an acknowledgement read on another thread
and, when it notices the death first, breaks the whole pool ("All workers expired"). loky
3.7.0 failed all 8 jobs of a run in which 2 crashed, stayed broken, and has no per-job
timeout. This pool passed the same 12 runs.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from core.memory import limit_malloc_arenas

log = logging.getLogger(__name__)


class WorkerStartError(RuntimeError):
    """A worker's ``init`` raised, or workers keep dying before they are ready."""


@dataclass(frozen=True)
class JobFailure:
    """What a job yields instead of its result when its worker could not produce one."""

    code: str  # "worker_crashed" | "timeout" | "worker_error"
    detail: str


def _worker_main(conn: Connection, init: Callable[..., Any], init_args: tuple, job: Callable) -> None:
    limit_malloc_arenas()  # before init starts any thread; see core.memory
    try:
        state = init(*init_args)
    except BaseException as exc:  # reported to the parent, which decides
        conn.send(("init_failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone
            return
        if message is None:
            return
        try:
            reply = ("result", job(state, message))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. a result that cannot be pickled
            conn.send(("error", f"result could not be sent back: {type(exc).__name__}: {exc}"))


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process
    conn: Connection
    ready: bool = False
    gone: bool = False  # its pipe reached EOF
    index: int | None = None  # the job it holds
    started: float = 0.0

    @property
    def busy(self) -> bool:
        return self.index is not None


class IsolatedPool:
    """Runs ``job(state, item)`` for each item in ``workers`` spawned processes, where each
    process builds ``state = init(*init_args)`` once. ``init`` and ``job`` must be picklable
    (module-level functions). ``kill_after`` (seconds, 0: never) bounds one job's run."""

    def __init__(
        self,
        init: Callable[..., Any],
        init_args: tuple,
        job: Callable[[Any, Any], Any],
        *,
        workers: int,
        kill_after: float = 0.0,
        poll_s: float = 0.5,
        max_start_failures: int = 3,
    ):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.init = init
        self.init_args = init_args
        self.job = job
        self.workers = workers
        self.kill_after = kill_after
        self.poll_s = poll_s
        self.max_start_failures = max_start_failures
        self.restarts = 0  # workers lost to a crash or a kill (replaced while work remains)
        self._start_failures = 0  # workers in a row that died before they were ready
        # spawn: a forked child would inherit CUDA state and the parent's threads
        self._context = multiprocessing.get_context("spawn")

    def run(self, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yields ``(index, result or JobFailure)`` as jobs finish, exactly once per item.
        Raises WorkerStartError when workers cannot be started."""
        todo = deque(range(len(items)))
        pool: list[Any] = []  # _Worker, or None for a lost one not replaced (no work left)
        self._start_failures = 0
        try:
            pool = [self._start() for _ in range(min(self.workers, len(items)))]
            while todo or any(w.busy for w in pool):
                for w in pool:
                    if w.ready and not w.busy and todo:
                        self._dispatch(w, todo.popleft(), items)
                wait([w.conn for w in pool] + [w.process.sentinel for w in pool], timeout=self.poll_s)
                for k, w in enumerate(pool):
                    yield from self._collect(w)
                    if not w.gone and w.process.is_alive():
                        continue
                    w.process.join(timeout=10)
                    yield from self._collect(w)  # what it sent just before it went
                    self._end(w)
                    yield from self._bury(w)
                    pool[k] = self._replacement(bool(todo))
                yield from self._kill_overdue(pool, bool(todo))
                pool = [w for w in pool if w is not None]
        finally:
            self._stop(pool)

    def _collect(self, worker: _Worker) -> Iterator[tuple[int, Any]]:
        """The messages waiting from ``worker``; EOF marks it gone."""
        while not worker.gone:
            try:
                if not worker.conn.poll():
                    return
                kind, payload = worker.conn.recv()
            except (EOFError, OSError):  # its end of the pipe closed: the process is gone or going
                worker.gone = True
                return
            if kind == "ready":
                worker.ready = True
                self._start_failures = 0
            elif kind == "init_failed":
                raise WorkerStartError(payload)
            else:
                index, worker.index = worker.index, None
                yield index, payload if kind == "result" else JobFailure("worker_error", payload)

    def _bury(self, worker: _Worker) -> Iterator[tuple[int, JobFailure]]:
        """A worker that died: its job fails; one that never got ready counts towards giving up."""
        code = worker.process.exitcode
        if worker.busy:
            log.warning("worker died (exit code %s) on job %d", code, worker.index)
            detail = f"the worker process died on it (exit code {code})"
            yield worker.index, JobFailure("worker_crashed", detail)
            worker.index = None
        elif not worker.ready:
            self._start_failures += 1
            if self._start_failures >= self.max_start_failures:
                raise WorkerStartError(f"worker processes cannot start (last exit code {code})")

    # --- one worker -------------------------------------------------------------------------

    def _start(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(child, self.init, self.init_args, self.job), daemon=True
        )
        process.start()
        child.close()  # the parent keeps only its end: EOF then means the worker is gone
        return _Worker(process, parent)

    def _replacement(self, needed: bool) -> _Worker | None:
        """For a lost worker: another one if there is work left for it."""
        self.restarts += 1
        return self._start() if needed else None

    def _dispatch(self, worker: _Worker, index: int, items: Sequence[Any]) -> None:
        worker.index, worker.started = index, time.monotonic()
        # A worker that died meanwhile is found on the next round; the job fails with it.
        with contextlib.suppress(OSError):
            worker.conn.send(items[index])

    def _kill_overdue(self, pool: list[_Worker | None], needed: bool) -> Iterator[tuple[int, JobFailure]]:
        if self.kill_after <= 0:
            return
        now = time.monotonic()
        for k, w in enumerate(pool):
            if w is not None and w.busy and now - w.started > self.kill_after:
                log.warning("killing the worker stuck on job %d for %.0f s", w.index, now - w.started)
                yield w.index, JobFailure("timeout", f"stuck over {self.kill_after:g} s; worker killed")
                w.index = None
                self._end(w)
                pool[k] = self._replacement(needed)

    @staticmethod
    def _end(worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=10)
        worker.conn.close()

    @staticmethod
    def _stop(pool: list[_Worker | None]) -> None:
        """Idle workers are asked to exit; busy ones (the consumer stopped early) are killed."""
        pool = [w for w in pool if w is not None]
        for w in pool:
            if w.busy or not w.process.is_alive():
                continue
            with contextlib.suppress(OSError):
                w.conn.send(None)
        deadline = time.monotonic() + 5.0
        for w in pool:
            if not w.busy:
                w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            IsolatedPool._end(w)
