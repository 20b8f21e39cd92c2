"""What a command line's ``--device`` and ``--runtime`` may name.

Kept free of torch, so that ``--help`` and argument checks stay fast; ``models.runtimes`` builds
the runtimes these names stand for.
"""

from __future__ import annotations

from core.optional_torch import torch_available

# what executes a network: "auto" picks TensorRT, then ONNX Runtime, then torch (models.runtimes)
RUNTIMES = ("auto", "torch", "onnxruntime", "tensorrt")


def resolve_device(text: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; anything else unchanged.
    Without torch (the CPU image, ``core.optional_torch``) ``auto`` is ``cpu``: the GPU image
    carries torch."""
    if text != "auto":
        return text
    if not torch_available():
        return "cpu"
    import torch  # only when a command resolves "auto": importing torch takes a second

    return "cuda" if torch.cuda.is_available() else "cpu"


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
