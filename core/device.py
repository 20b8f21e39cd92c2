"""What a command line's ``--device`` and ``--runtime`` may name.

Kept free of torch, so that ``--help`` and argument checks stay fast; ``models.runtimes`` builds
the runtimes these names stand for.
"""

from __future__ import annotations

# what executes a network: "auto" picks TensorRT, then ONNX Runtime, then torch (models.runtimes)
RUNTIMES = ("auto", "torch", "onnxruntime", "tensorrt")


def resolve_device(text: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; anything else unchanged."""
    if text != "auto":
        return text
    import torch  # only when a command resolves "auto": importing torch takes a second

    return "cuda" if torch.cuda.is_available() else "cpu"
