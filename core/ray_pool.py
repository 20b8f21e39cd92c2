"""Per-item jobs as Ray tasks on a cluster, with ``IsolatedPool``'s guarantees.

``RayPool(init, init_args, job, options).run(items)`` yields ``(index, result or JobFailure)`` as
jobs finish, exactly once per item, like ``core.isolated_pool.IsolatedPool.run``:

- One Ray task per item, declaring its resources (``RayOptions.cpus``/``gpus``/``memory_mb``).
  Tasks are never retried, so an item that kills its worker process (a decoder segfault, the OOM
  killer) fails alone (``worker_crashed``) and Ray starts a fresh worker for the next task.
- A job running past ``kill_after`` seconds is cancelled and its worker process killed
  (``timeout``); a job that raises fails with ``worker_error``; an ``init`` that raises stops the
  run (``WorkerStartError``), as in the local pool.
- At most one task per slot of the cluster is in flight, so results stream back as they finish
  instead of piling up, and ``kill_after``, counted from submission, counts from when the task can
  start; on a worker's first task it also covers starting the process and ``init`` (seconds), so
  it should be generous (it is a last resort: the submission's workers time a video out
  themselves).

Ray keeps worker processes for many tasks of one job (a connection), so the state ``init``
builds (networks loaded once) is kept in the worker process and reused by later tasks of the
same run (``_run_task``). ``ray`` is an optional dependency (``requirements-ray.txt``), imported
only when a pool runs.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.isolated_pool import JobFailure, WorkerStartError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RayOptions:
    """Where the tasks run and what each declares."""

    address: str  # "auto" (the cluster this machine belongs to), "HOST:PORT" or "ray://HOST:PORT"
    cpus: float = 1.0  # per task (per video)
    gpus: float = 0.0  # per task; > 0 puts the workers' networks on their GPU
    memory_mb: int = 0  # per task; 0 declares none
    # Environment of the worker processes. Nodes run the same checkout (or image) at the same path
    # as the driver; PYTHONPATH makes it importable there, ${PYTHONPATH} keeps the node's own.
    env: Mapping[str, str] = field(default_factory=dict)

    def worker_env(self, python_path: Sequence[str | Path] = ()) -> dict[str, str]:
        paths = [str(PROJECT_ROOT), *map(str, python_path)]
        return {"PYTHONPATH": ":".join([*paths, "${PYTHONPATH}"]), **self.env}


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray cluster (optional: pip install -r requirements-ray.txt)")
    group.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the per-video work as Ray tasks on this cluster: auto, HOST:PORT or ray://HOST:PORT",
    )
    group.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs each video's task declares")
    group.add_argument(
        "--ray-gpus", type=float, default=0.0, help="GPUs each task declares (> 0: its networks on CUDA)"
    )
    group.add_argument("--ray-memory-mb", type=int, default=0, help="memory each task declares (0: none)")


def ray_options(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> RayOptions | None:
    if not args.ray:
        return None
    if args.ray_cpus <= 0 or args.ray_gpus < 0 or args.ray_memory_mb < 0:
        raise ValueError("--ray-cpus must be > 0, --ray-gpus and --ray-memory-mb >= 0")
    return RayOptions(args.ray, args.ray_cpus, args.ray_gpus, args.ray_memory_mb, dict(env or {}))


def import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise WorkerStartError(
            "--ray needs the optional Ray extra: pip install --no-deps -r requirements-ray.txt"
        ) from err
    return ray


# The state ``init`` built in this worker process, for the run whose key it holds. Module-level
# because a Ray task is a plain function call: this is the one place a worker process can keep
# what its first task of a run loaded for the next ones (IsolatedPool keeps it in a local of its
# worker loop). One run at a time: a new key replaces it.
_worker_state: dict[str, Any] = {}


def _run_task(key: str, setup: tuple[Callable, tuple, Callable], item: Any) -> tuple[str, Any]:
    """One item in a Ray worker: ``("result", job(state, item))``, ``("error", message)`` when the
    job raised, ``("init_failed", message)`` when ``init`` did."""
    init, init_args, job = setup
    if _worker_state.get("key") != key:
        _worker_state.clear()
        try:
            _worker_state["state"] = init(*init_args)
        except BaseException as exc:  # reported to the driver, which stops the run
            return "init_failed", f"{type(exc).__name__}: {exc}"
        _worker_state["key"] = key
    try:
        return "result", job(_worker_state["state"], item)
    except Exception as exc:
        return "error", f"{type(exc).__name__}: {exc}"


class RayPool:
    """Runs ``job(state, item)`` for each item as a Ray task; ``state = init(*init_args)`` is built
    once per worker process. ``init`` and ``job`` must be importable module-level functions (on
    every node). ``kill_after`` (seconds, 0: never) bounds one job's run."""

    def __init__(
        self,
        init: Callable[..., Any],
        init_args: tuple,
        job: Callable[[Any, Any], Any],
        options: RayOptions,
        *,
        kill_after: float = 0.0,
        poll_s: float = 0.5,
        slots: int = 0,
        python_path: Sequence[str | Path] = (),
    ):
        self.init = init
        self.init_args = init_args
        self.job = job
        self.options = options
        self.kill_after = kill_after
        self.poll_s = poll_s
        self.slots = slots  # tasks in flight; 0: as many as the cluster's resources fit
        self.python_path = python_path
        self.restarts = 0  # workers lost to a crash or a kill
        self.nodes: set[str] = set()  # the cluster's nodes while the last run was connected

    def run(self, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yields ``(index, result or JobFailure)`` as tasks finish, exactly once per item.
        Raises WorkerStartError when the cluster cannot be reached or ``init`` fails."""
        if not items:
            return
        ray = import_ray()
        connected_here = not ray.is_initialized()
        if connected_here:
            try:
                ray.init(
                    address=self.options.address,
                    runtime_env={"env_vars": self.options.worker_env(self.python_path)},
                    logging_level=logging.WARNING,
                )
            except Exception as err:  # no cluster there, refused, wrong version ...
                raise WorkerStartError(f"cannot connect to Ray at {self.options.address}: {err}") from err
        running: dict[Any, tuple[int, float]] = {}  # task ref -> (item index, submitted)
        try:
            self.nodes = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
            task = ray.remote(_run_task).options(**self._resources(), max_retries=0, retry_exceptions=False)
            setup = ray.put((self.init, self.init_args, self.job))  # shipped once, not per task
            key = uuid.uuid4().hex
            slots = self.slots or self._cluster_slots(ray)
            log.info("Ray: %d task slots on %d nodes", slots, len(self.nodes))
            todo = deque(range(len(items)))
            while todo or running:
                while todo and len(running) < slots:
                    index = todo.popleft()
                    running[task.remote(key, setup, items[index])] = (index, time.monotonic())
                done, _ = ray.wait(list(running), num_returns=1, timeout=self.poll_s)
                for ref in done:
                    index, _ = running.pop(ref)
                    yield index, self._outcome(ray, ref)
                yield from self._cancel_overdue(ray, running)
        finally:
            for ref in running:  # the consumer stopped early, or an error: leave nothing running
                ray.cancel(ref, force=True)
            if connected_here:
                ray.shutdown()

    def _resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = {"num_cpus": self.options.cpus, "num_gpus": self.options.gpus}
        if self.options.memory_mb:
            resources["memory"] = self.options.memory_mb * 1024 * 1024
        return resources

    def _cluster_slots(self, ray: Any) -> int:
        total = ray.cluster_resources()
        fits = [total.get("CPU", 0.0) / self.options.cpus]
        if self.options.gpus > 0:
            fits.append(total.get("GPU", 0.0) / self.options.gpus)
        if self.options.memory_mb:
            fits.append(total.get("memory", 0.0) / (self.options.memory_mb * 1024 * 1024))
        slots = int(min(fits) + 1e-9)
        if slots < 1:
            raise WorkerStartError(
                f"no node of the Ray cluster fits one task's resources {self._resources()}"
            )
        return slots

    def _outcome(self, ray: Any, ref: Any) -> Any:
        try:
            kind, payload = ray.get(ref)
        except ray.exceptions.RayTaskError as err:  # _run_task itself failed (e.g. unpickling an item)
            return JobFailure("worker_error", str(err.cause if err.cause is not None else err))
        except ray.exceptions.RayError as err:  # the worker process or its node is gone
            self.restarts += 1
            log.warning("Ray task lost its worker: %s", type(err).__name__)
            detail = f"the worker process died on it ({type(err).__name__})"
            return JobFailure("worker_crashed", detail)
        if kind == "init_failed":
            raise WorkerStartError(payload)
        return payload if kind == "result" else JobFailure("worker_error", payload)

    def _cancel_overdue(self, ray: Any, running: dict[Any, tuple[int, float]]) -> Iterator[tuple[int, Any]]:
        if self.kill_after <= 0:
            return
        now = time.monotonic()
        for ref, (index, started) in list(running.items()):
            if now - started > self.kill_after:
                log.warning("cancelling the Ray task stuck on item %d for %.0f s", index, now - started)
                ray.cancel(ref, force=True)  # force: its worker process is killed
                del running[ref]
                self.restarts += 1
                yield index, JobFailure("timeout", f"stuck over {self.kill_after:g} s; worker killed")
