"""Run a network on a batch, whatever executes it.

Every network call in the pipeline goes through a ``Runtime``: numpy arrays in, a tuple of
numpy arrays out. The torch implementation lives here; ONNX Runtime and TensorRT ones join it
(``submission.onnx_runtimes``), so preprocessing and scoring never know which one runs.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch


class Runtime(Protocol):
    name: str

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]: ...


class TorchRuntime:
    """Runs a torch module; on CUDA optionally in fp16 (outputs come back as float32).

    ``channels_last``: convolution weights and 4-D/5-D inputs in channels-last memory order, which
    oneDNN's CPU convolutions run faster (SyncNet: 27 % less CPU time per lip window, 20 % per audio
    window, measured on 1 thread); the numbers are the same up to float rounding."""

    name = "torch"

    def __init__(
        self,
        module: torch.nn.Module,
        device: str | torch.device = "cpu",
        fp16: bool = False,
        channels_last: bool = False,
    ):
        self.device = torch.device(device)
        self.fp16 = fp16 and self.device.type == "cuda"
        self.channels_last = channels_last
        self.module = module.eval().to(self.device)
        if self.fp16:
            self.module = self.module.half()
        if channels_last:
            for param in self.module.parameters():
                param.data = _to_channels_last(param.data)

    @torch.inference_mode()
    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        tensors = []
        for x in inputs:
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
            if self.fp16 and t.is_floating_point():
                t = t.half()
            if self.channels_last:
                t = _to_channels_last(t)
            tensors.append(t)
        out = self.module(*tensors)
        if isinstance(out, torch.Tensor):
            out = (out,)
        return tuple(o.float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy() for o in out)


def _to_channels_last(t: torch.Tensor) -> torch.Tensor:
    if t.ndim == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if t.ndim == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t
