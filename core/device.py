"""Which torch device a command line's ``--device`` means."""

from __future__ import annotations


def resolve_device(text: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; anything else unchanged."""
    if text != "auto":
        return text
    import torch  # only when a command resolves "auto": importing torch takes a second

    return "cuda" if torch.cuda.is_available() else "cpu"
