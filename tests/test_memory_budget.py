"""How much memory a scoring run may use, and how many preprocessing workers that holds."""

from __future__ import annotations

from core.memory import (
    MAIN_PROCESS_BYTES,
    WORKER_PEAK_BYTES,
    available_memory,
    preprocess_workers,
)

GIB = 1024**3


def _meminfo(tmp_path, available_kib: int):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       99999999 kB\nMemAvailable:   {available_kib} kB\n")
    return path


def test_machine_memory_without_a_cgroup_limit(tmp_path):
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory(cgroup, _meminfo(tmp_path, 8 * 1024**2)) == 8 * GIB


def test_cgroup_v2_limit_less_its_usage_caps_the_machines(tmp_path):
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{3 * GIB}\n")  # docker run --memory 3g
    (cgroup / "memory.current").write_text(f"{GIB // 2}\n")
    assert available_memory(cgroup, _meminfo(tmp_path, 20 * 1024**2)) == 3 * GIB - GIB // 2


def test_cgroup_v1_limit_and_its_no_limit_value(tmp_path):
    cgroup = tmp_path / "cg"
    (cgroup / "memory").mkdir(parents=True)
    (cgroup / "memory" / "memory.limit_in_bytes").write_text(f"{4 * GIB}\n")
    (cgroup / "memory" / "memory.usage_in_bytes").write_text("0\n")
    meminfo = _meminfo(tmp_path, 20 * 1024**2)
    assert available_memory(cgroup, meminfo) == 4 * GIB
    (cgroup / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert available_memory(cgroup, meminfo) == 20 * GIB


def test_nothing_readable_is_unknown(tmp_path):
    assert available_memory(tmp_path / "none", tmp_path / "no_meminfo") is None


def test_workers_one_per_core_as_memory_allows():
    assert preprocess_workers(2, 24 * GIB) == 2  # this project's development machine
    assert preprocess_workers(2, 3 * GIB) == 1  # docker run --memory 3g: a 16 s 1080p window each
    assert preprocess_workers(16, 8 * GIB) == (8 * GIB - MAIN_PROCESS_BYTES) // WORKER_PEAK_BYTES
    assert preprocess_workers(4, GIB // 2) == 1  # never none
    assert preprocess_workers(4, None) == 3  # unknown memory: a core left to the main process
