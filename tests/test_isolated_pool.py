"""``core.isolated_pool.IsolatedPool``: a crashing, hanging or failing job harms only itself."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.isolated_pool import IsolatedPool, JobFailure, WorkerStartError


def make_state(tag: str) -> dict:
    return {"tag": tag, "pid": os.getpid()}


def run_job(state: dict, item: str):
    if item == "crash":
        os._exit(9)
    if item == "hang":
        time.sleep(600)
    if item == "raise":
        raise ValueError("bad item")
    if item == "unpicklable":
        return lambda: None
    return f"{state['tag']}:{item}:{state['pid']}"


def failing_init(tag: str):
    raise FileNotFoundError(f"weights {tag} not found")


def dying_init(tag: str):
    os._exit(3)


def results(pool: IsolatedPool, items) -> dict:
    out: dict = {}
    for index, value in pool.run(items):
        assert index not in out, f"job {index} reported twice"
        out[index] = value
    return out


def test_every_job_once_and_state_built_once_per_worker():
    items = [str(i) for i in range(12)]
    out = results(IsolatedPool(make_state, ("t",), run_job, workers=2), items)
    assert sorted(out) == list(range(12))
    assert all(out[i].startswith(f"t:{i}:") for i in range(12))
    assert len({v.rsplit(":", 1)[1] for v in out.values()}) <= 2  # two worker processes
    assert multiprocessing.active_children() == []


def test_crashes_fail_exactly_their_jobs():
    items = ["a", "crash", "b", "c", "crash", "crash", "d", "e", "f", "crash", "g"]
    for _ in range(3):  # the restart path used to race (CPython's executor); run it a few times
        pool = IsolatedPool(make_state, ("t",), run_job, workers=2)
        out = results(pool, items)
        assert sorted(out) == list(range(len(items)))
        for i, item in enumerate(items):
            if item == "crash":
                assert out[i] == JobFailure("worker_crashed", "the worker process died on it (exit code 9)")
            else:
                assert out[i].startswith(f"t:{item}:")
        assert pool.restarts == 4
    assert multiprocessing.active_children() == []


def test_a_hung_job_has_its_worker_killed():
    pool = IsolatedPool(make_state, ("t",), run_job, workers=2, kill_after=1.0, poll_s=0.1)
    started = time.monotonic()
    out = results(pool, ["hang", "a", "b", "c"])
    assert out[0] == JobFailure("timeout", "stuck over 1 s; worker killed")
    assert [out[i].split(":")[1] for i in (1, 2, 3)] == ["a", "b", "c"]
    assert time.monotonic() - started < 30
    assert pool.restarts == 1


def test_errors_in_a_job_come_back_as_failures():
    out = results(IsolatedPool(make_state, ("t",), run_job, workers=1), ["raise", "unpicklable", "a"])
    assert out[0] == JobFailure("worker_error", "ValueError: bad item")
    assert out[1].code == "worker_error" and "could not be sent back" in out[1].detail
    assert out[2].startswith("t:a:")


def test_init_that_raises_or_dies_stops_the_run():
    with pytest.raises(WorkerStartError, match="FileNotFoundError: weights x not found"):
        results(IsolatedPool(failing_init, ("x",), run_job, workers=2), ["a", "b"])
    with pytest.raises(WorkerStartError, match="cannot start"):
        results(IsolatedPool(dying_init, ("x",), run_job, workers=1, poll_s=0.1), ["a"])
    assert multiprocessing.active_children() == []


def test_a_consumer_that_stops_early_leaves_no_process():
    gen = IsolatedPool(make_state, ("t",), run_job, workers=2).run(["hang", "a", "b"])
    index, _ = next(gen)
    assert index in (1, 2)
    gen.close()
    assert multiprocessing.active_children() == []


def test_malloc_arena_cap_is_accepted_by_glibc():
    # mallopt returns 0 for a parameter it does not know: this checks the call, not its effect
    # (`make soak` shows that: a worker's peak RSS flat over 1,000 videos)
    code = "from core.memory import limit_malloc_arenas; print(limit_malloc_arenas())"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert proc.stdout.strip() == "True", proc.stderr


def test_the_pool_factory_runs_locally_unless_ray_names_a_cluster():
    from core.ray_pool import RayOptions, RayPool
    from core.worker_pool import make_pool

    local = make_pool(make_state, ("t",), run_job, workers=2, kill_after=30.0)
    assert isinstance(local, IsolatedPool) and (local.workers, local.kill_after) == (2, 30.0)
    out = results(local, ["a", "crash", "b"])
    assert out[0].startswith("t:a:") and out[2].startswith("t:b:")
    assert out[1].code == "worker_crashed" and local.restarts >= 1
    remote = make_pool(
        make_state, ("t",), run_job, workers=2, ray=RayOptions("auto", cpus=2.0), kill_after=30.0
    )
    assert isinstance(remote, RayPool) and remote.options.cpus == 2.0 and remote.kill_after == 30.0
    assert multiprocessing.active_children() == []
