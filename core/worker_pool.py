"""The one way the project runs per-item jobs in other processes: ``make_pool``.

Locally, ``workers`` spawned processes (``core.isolated_pool.IsolatedPool``); with
``RayOptions``, one Ray task per item on a cluster (``core.ray_pool.RayPool``). Either way a job
that crashes or hangs its worker fails alone (``JobFailure``), ``run(items)`` yields
``(index, result or JobFailure)`` exactly once per item as jobs finish, ``init`` builds a
worker's state once (an ``init`` that fails stops the run: ``WorkerStartError``), and
``restarts`` counts the workers lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from core.isolated_pool import IsolatedPool
from core.ray_pool import RayOptions, RayPool


class WorkerPool(Protocol):
    restarts: int

    def run(self, items: Sequence[Any]) -> Iterator[tuple[int, Any]]: ...


def make_pool(
    init: Callable[..., Any],
    init_args: tuple,
    job: Callable[[Any, Any], Any],
    *,
    workers: int = 1,
    ray: RayOptions | None = None,
    kill_after: float = 0.0,
    poll_s: float = 0.5,
) -> WorkerPool:
    """A pool running ``job(state, item)`` with ``state = init(*init_args)`` built once per
    worker: as Ray tasks when ``ray`` names a cluster, else in ``workers`` spawned processes.
    ``init`` and ``job`` must be module-level functions (they are pickled to the workers);
    ``kill_after`` (seconds, 0: never) bounds one job's run."""
    if ray is not None:
        return RayPool(init, init_args, job, ray, kill_after=kill_after, poll_s=poll_s)
    return IsolatedPool(init, init_args, job, workers=workers, kill_after=kill_after, poll_s=poll_s)
