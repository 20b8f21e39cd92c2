"""How many threads the numeric libraries may use in this process.

Worker processes share the machine's cores; left alone, torch, OpenCV and the BLAS/OpenMP
libraries each start one thread per core in every process, and the oversubscribed threads
spin against each other and the video decoder.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# The budget limit_threads last set, for code that sizes its own threads (the video decoder);
# in the environment, so a worker process started with it inherits it until it sets its own.
BUDGET_ENV_VAR = "AVDF_THREADS"


def limit_threads(threads: int) -> None:
    """Cap OpenMP/MKL/OpenBLAS (through the environment, read when they load), and torch's and
    OpenCV's thread pools if they are already imported. Importing them here would cost every
    worker a second even when its job needs neither, so a caller that imports them afterwards
    calls this again."""
    threads = max(1, int(threads))
    for var in (*THREAD_ENV_VARS, BUDGET_ENV_VAR):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(threads)


def rank_threads(cpus: int, local_ranks: int, environ: Mapping[str, str]) -> int | None:
    """Torch threads for each of ``local_ranks`` training processes sharing ``cpus`` cores:
    an equal share (at least 1), so that N CPU ranks do not each start a pool the size of the
    machine; None when one process runs alone or the user chose (``OMP_NUM_THREADS`` & co.)."""
    if local_ranks <= 1 or any(environ.get(var) for var in THREAD_ENV_VARS):
        return None
    return max(1, cpus // local_ranks)


def thread_budget() -> int:
    """Threads this process may use: what ``limit_threads`` last set (a worker's share of the
    cores), else every CPU it may run on (``available_cpus``)."""
    try:
        return max(1, int(os.environ[BUDGET_ENV_VAR]))
    except (KeyError, ValueError):
        return available_cpus()


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its CPU set (``docker --cpuset-cpus``), capped by a cgroup
    CPU quota (``docker --cpus 2`` on a 16-core host: 2, not 16 workers in 3 GB)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_quota(root: Path) -> float | None:
    """CPUs of the cgroup's quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``); None: no limit."""
    try:
        text = (root / "cpu.max").read_text().split()  # "max 100000" or "200000 100000"
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
