"""``--device auto`` without torch (the images): the NVIDIA driver asked through ctypes
(``core.device.probe_cuda``) and ONNX Runtime's providers decide; the command says which GPU it
found, or why none and that the CPU runs the networks."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.device import DRIVER_LIBRARY, CudaProbe, choose_auto_device, probe_cuda, resolve_device

ROOT = Path(__file__).resolve().parents[1]


class Driver:
    """libcuda's three calls as the driver answers them: an error code, results by pointer."""

    def __init__(self, init: int = 0, count: int = 0, version: int = 13000):
        self.init, self.count, self.version = init, count, version

    def cuInit(self, flags: int) -> int:  # noqa: N802 (the driver's names)
        return self.init

    def cuDeviceGetCount(self, out) -> int:  # noqa: N802
        out._obj.value = self.count
        return 0

    def cuDriverGetVersion(self, out) -> int:  # noqa: N802
        out._obj.value = self.version
        return 0


def loader(driver: Driver | None):
    def load(name: str):
        assert name == DRIVER_LIBRARY
        if driver is None:
            raise OSError(f"{name}: cannot open shared object file")
        return driver

    return load


def test_probe_reads_the_driver():
    assert probe_cuda(loader(Driver(count=2, version=13010))) == CudaProbe(2, "13.1")
    none = probe_cuda(loader(Driver(count=0)))
    assert none.devices == 0 and "sees no GPU" in none.reason
    assert "sees no GPU" in probe_cuda(loader(Driver(init=100))).reason  # CUDA_ERROR_NO_DEVICE
    failed = probe_cuda(loader(Driver(init=999)))
    assert failed.devices == 0 and "CUDA error 999" in failed.reason
    missing = probe_cuda(loader(None))
    assert missing.devices == 0 and DRIVER_LIBRARY in missing.reason


def test_probe_of_this_machine_never_raises():
    found = probe_cuda()
    assert (found.devices > 0) != bool(found.reason)
    try:
        ctypes.CDLL(DRIVER_LIBRARY)
    except OSError:
        assert found.devices == 0 and DRIVER_LIBRARY in found.reason


@pytest.mark.parametrize(
    ("ort_cuda", "probe", "device", "why"),
    [
        (False, CudaProbe(1, "13.0"), "cpu", "no CUDA execution provider"),
        (True, CudaProbe(0, reason="no NVIDIA driver (libcuda.so.1 not found)"), "cpu", "libcuda.so.1"),
        (True, CudaProbe(2, "13.0"), "cuda", "2 NVIDIA GPU(s), driver for CUDA 13.0"),
    ],
)
def test_auto_without_torch_needs_both_the_cuda_provider_and_a_gpu(ort_cuda, probe, device, why):
    choice = choose_auto_device(has_torch=False, ort_cuda=lambda: ort_cuda, probe=lambda: probe)
    assert choice.device == device and why in choice.why


def test_explicit_devices_are_not_probed():
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"


def test_check_without_torch_says_no_gpu_was_found_and_passes():
    # the image's Python (tests/scoring_only hides torch): this onnxruntime has no CUDA provider
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "scoring_only"), str(ROOT)]))
    proc = subprocess.run(
        [sys.executable, "-m", "submission", "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no GPU found (" in proc.stderr
    assert "the networks run on ONNX Runtime's CPU execution provider" in proc.stderr
    assert "check passed" in proc.stderr
