"""Keep a long-lived worker process's memory flat, and know how much there is.

glibc gives each thread that meets a locked heap an arena of its own (up to 8 per core) and
seldom hands their freed pages back. In a preprocessing worker (torch's and the decoder's
threads allocating frame-sized buffers) RSS then rose in steps, +12 % over 1,000 videos
(`make soak`), with the Python heap flat; capped at 2 arenas it stayed flat and ~200 MB lower.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process (as MALLOC_ARENA_MAX does at exec). Must run
    before the process starts threads: the limit is fixed when the 9th arena is wanted.
    Returns False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_ARENA_MAX, count))


def available_memory(
    cgroup: Path = Path("/sys/fs/cgroup"), meminfo: Path = Path("/proc/meminfo")
) -> int | None:
    """Bytes this process tree may still use: the machine's available memory (``MemAvailable``),
    capped by a cgroup limit (``docker run --memory 3g``: v2 ``memory.max``, v1
    ``memory.limit_in_bytes``) less what the cgroup already uses; None where neither reads."""
    found = []
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (
        (cgroup / "memory.max", cgroup / "memory.current"),
        (cgroup / "memory" / "memory.limit_in_bytes", cgroup / "memory" / "memory.usage_in_bytes"),
    ):
        try:
            text = limit_file.read_text().strip()
        except OSError:
            continue
        if text == "max" or not text.isdigit() or int(text) >= 1 << 60:  # v1's "no limit" is ~2**63
            break
        try:
            used = int(usage_file.read_text().strip())
        except (OSError, ValueError):
            used = 0
        found.append(max(0, int(text) - used))
        break
    return min(found) if found else None


# What one preprocessing worker may hold at its peak: the decoded window, capped at
# preprocess.media.MAX_FRAME_BYTES (2 GiB: 16 s of 1080p planes is 1.24 GB), plus its networks and
# buffers (~0.4 GiB; a worker measured 801 MB flat on 10 s 1080p clips, `make soak`).
WORKER_PEAK_BYTES = int(2.5 * 1024**3)
MAIN_PROCESS_BYTES = int(0.75 * 1024**3)  # the scoring process: detector, batches (526 MB measured)


def preprocess_workers(cpus: int, memory: int | None) -> int:
    """Worker processes for a scoring run by default: one per core (the main process's batched
    inference is ~1 % of a worker's load with the shipped default, and on 2 cores a second
    worker ran 5-15 % more videos a minute than one), as many as ``memory`` bytes hold at their
    peak beside the main process, at least one. Memory unknown: one core left to the main
    process, as before."""
    if memory is None:
        return max(1, cpus - 1)
    return max(1, min(cpus, (memory - MAIN_PROCESS_BYTES) // WORKER_PEAK_BYTES))
