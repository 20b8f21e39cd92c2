"""Mixed precision for a hand-written training loop: autocast around the forward passes, and on
CUDA a gradient scaler (fp16's 5-bit exponent underflows small gradients; the scaler lifts the
loss before backward and takes the factor out again before the optimiser step).

On CUDA ``--amp`` means fp16 + scaler (every CUDA GPU has fp16). On CPU it means bf16 autocast
(fp32's exponent, so no scaler): measured for SyncNet on this project's 2-core AMD EPYC (it has
AVX512-BF16), a training step of 4 lip windows took 0.41 s against 0.64 s in fp32 on one thread,
and the loss fell as in fp32 (``tests/test_train_sync_pretrain.py``).

Not every CPU computes bf16 training correctly: on an Intel Xeon with AMX (oneDNN's bf16 path,
torch 2.13) the weight gradient of SyncNet's first 3-D convolution at 224² came out 10⁴ times
too large (at 64² it is within 0.3 % of fp32), so the first step turned every weight to NaN. So
before bf16 is used on a CPU, ``cpu_bf16_gradient_error`` compares that layer's weight gradient
under autocast with fp32's (~0.2 s), and above ``BF16_GRADIENT_TOLERANCE`` training stays in
fp32 with a warning.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger("train")

BF16_GRADIENT_TOLERANCE = 0.05  # relative error of the probe's weight gradient against fp32


def cpu_bf16_gradient_error(side: int = 224, seed: int = 0) -> float:
    """Relative error (norm of the difference / norm of fp32's) of the weight gradient of a 3-D
    convolution shaped like SyncNet's first lip layer, on a random batch at ``side``², computed
    under CPU bf16 autocast against fp32."""
    g = torch.Generator().manual_seed(seed)
    conv = torch.nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2))
    x = torch.rand(2, 3, 5, side, side, generator=g)
    grads = []
    for enabled in (False, True):
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            y = conv(x)
        y.float().pow(2).mean().backward()
        grads.append(conv.weight.grad.detach().clone())
    return float((grads[1] - grads[0]).norm() / grads[0].norm().clamp(min=1e-12))


@dataclass(frozen=True)
class MixedPrecision:
    device_type: str  # "cpu" or "cuda"
    dtype: torch.dtype | None  # None: fp32 throughout

    @classmethod
    def for_device(cls, device: str, enabled: bool) -> MixedPrecision:
        kind = torch.device(device).type
        if not enabled:
            return cls(kind, None)
        if kind == "cpu":
            error = cpu_bf16_gradient_error()
            if not error <= BF16_GRADIENT_TOLERANCE:
                log.warning(
                    "--amp: this CPU's bf16 weight gradients are off by %.3g (relative, against fp32; "
                    "limit %g): training in fp32",
                    error,
                    BF16_GRADIENT_TOLERANCE,
                )
                return cls(kind, None)
        return cls(kind, torch.float16 if kind == "cuda" else torch.bfloat16)

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """Active for fp16 only; a disabled scaler passes ``scale``/``step``/``update`` through."""
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)
