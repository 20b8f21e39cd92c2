"""What a command line's ``--device`` and ``--runtime`` may name, and what ``auto`` finds.

Kept free of torch, so that ``--help`` and argument checks stay fast; ``models.runtimes`` builds
the runtimes these names stand for. Without torch (the images: scoring runs on ONNX Runtime)
``auto`` asks the NVIDIA driver itself whether a GPU is visible (``probe_cuda``: libcuda
through ctypes, no CUDA toolkit needed) and ONNX Runtime whether it can use one.
"""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from core.optional_torch import torch_available

# what executes a network: "auto" picks TensorRT, then ONNX Runtime, then torch (models.runtimes)
RUNTIMES = ("auto", "torch", "onnxruntime", "tensorrt")

# The driver library the NVIDIA container toolkit mounts into a container run with --gpus.
DRIVER_LIBRARY = "libcuda.so.1"
CUDA_ERROR_NO_DEVICE = 100


@dataclass(frozen=True)
class CudaProbe:
    """How many GPUs the NVIDIA driver shows (``driver``: the CUDA version it supports, e.g.
    "13.0"), or why none (``reason``)."""

    devices: int
    driver: str = ""
    reason: str = ""


def probe_cuda(load: Callable[[str], object] = ctypes.CDLL) -> CudaProbe:
    """Ask the NVIDIA driver (``cuInit``, ``cuDeviceGetCount``) how many GPUs it sees. Never
    raises: a missing driver or a failing call is a probe with 0 devices and the reason."""
    try:
        lib = load(DRIVER_LIBRARY)
    except OSError:
        return CudaProbe(0, reason=f"no NVIDIA driver ({DRIVER_LIBRARY} not found)")
    err = lib.cuInit(0)
    if err == CUDA_ERROR_NO_DEVICE:
        return CudaProbe(0, reason="the NVIDIA driver sees no GPU")
    if err != 0:
        return CudaProbe(0, reason=f"the NVIDIA driver failed to start (cuInit: CUDA error {err})")
    count, version = ctypes.c_int(0), ctypes.c_int(0)
    err = lib.cuDeviceGetCount(ctypes.byref(count))
    if err != 0:
        return CudaProbe(0, reason=f"the NVIDIA driver cannot count its GPUs (CUDA error {err})")
    driver = ""
    if lib.cuDriverGetVersion(ctypes.byref(version)) == 0:
        driver = f"{version.value // 1000}.{version.value % 1000 // 10}"
    if count.value < 1:
        return CudaProbe(0, driver, "the NVIDIA driver sees no GPU")
    return CudaProbe(count.value, driver)


@dataclass(frozen=True)
class DeviceChoice:
    """What ``auto`` resolved to, and why (one line for the log)."""

    device: str
    why: str


def _ort_has_cuda() -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def choose_auto_device(
    has_torch: bool | None = None,
    ort_cuda: Callable[[], bool] = _ort_has_cuda,
    probe: Callable[[], CudaProbe] = probe_cuda,
) -> DeviceChoice:
    """``auto``: with torch, CUDA when torch sees a GPU. Without torch (the images), CUDA when
    this ONNX Runtime has its CUDA execution provider and the driver shows a GPU; else CPU."""
    if has_torch is None:
        has_torch = torch_available()
    if has_torch:
        import torch  # only when a command resolves "auto": importing torch takes a second

        if torch.cuda.is_available():
            return DeviceChoice("cuda", f"torch sees {torch.cuda.device_count()} CUDA GPU(s)")
        return DeviceChoice("cpu", "torch sees no CUDA GPU")
    if not ort_cuda():
        return DeviceChoice("cpu", "this ONNX Runtime has no CUDA execution provider")
    found = probe()
    if found.devices < 1:
        return DeviceChoice("cpu", found.reason)
    driver = f", driver for CUDA {found.driver}" if found.driver else ""
    return DeviceChoice("cuda", f"{found.devices} NVIDIA GPU(s){driver}")


def resolve_device(text: str) -> str:
    """``auto`` → ``choose_auto_device``'s device; anything else unchanged."""
    if text != "auto":
        return text
    return choose_auto_device().device


def require_device(text: str) -> str:
    """``resolve_device``, then a check that torch can use the device: ``ValueError`` saying why
    not (no CUDA build, no GPU visible, no such index) instead of a traceback from the first
    tensor moved there."""
    device = resolve_device(text)
    if device == "cpu":
        return device
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"--device {text}: not a device name ({err})") from None
    if parsed.type != "cuda":
        raise ValueError(f"--device {text}: only cpu, cuda, cuda:N and auto are supported")
    if not torch.cuda.is_available():
        why = "this torch was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise ValueError(f"--device {text}: CUDA is not available ({why}); use --device cpu or auto")
    count = torch.cuda.device_count()
    if parsed.index is not None and parsed.index >= count:
        raise ValueError(f"--device {text}: only {count} CUDA device(s) visible")
    return device
