"""What makes a registered network a deepfake detector: ``DetectorModel``.

A detector declares, in its own module, the whole path from preprocessing's output to a video's
score, so training, evaluation and the submission treat every detector alike:

- ``sample_inputs(sample, config)``: one ``Sample`` → the model's input arrays by name
  (unbatched; ``batch_inputs`` stacks them in ``input_names`` order);
- ``fake_probability(outputs)``: the network's outputs for a batch → P(fake) per sample;
- ``video_aggregation``: how a video's per-sample (per face track) probabilities become its
  score (a rule of ``core.aggregation``).

Both class methods take the config rather than the module, so data loaders and ONNX/TensorRT
runtimes use them without holding the torch network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from core.types import Sample
from models.onnx_export import OnnxSpec


def softmax_fake_probability(logits: np.ndarray) -> np.ndarray:
    """softmax(logits)[:, 1] for (B, 2) logits, computed stably as sigmoid(l1 - l0)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"expected (B, 2) logits, got shape {logits.shape}")
    diff = logits[:, 1] - logits[:, 0]
    return np.exp(-np.logaddexp(0.0, -diff))


class DetectorModel(nn.Module):
    """Base class of the registered detectors (see the module docstring). ``forward`` takes the
    inputs in ``input_names`` order, batched, and returns the tensors ``output_names`` name."""

    input_names: ClassVar[tuple[str, ...]]
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    video_aggregation: ClassVar[str] = "max"
    config: Any

    @classmethod
    def sample_inputs(cls, sample: Sample, config: Any) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def batch_inputs(cls, samples: Sequence[Sample], config: Any) -> tuple[np.ndarray, ...]:
        """The inputs of several samples, stacked, in ``input_names`` order."""
        if not samples:
            raise ValueError("batch_inputs needs at least one sample")
        each = [cls.sample_inputs(s, config) for s in samples]
        return tuple(np.stack([inputs[name] for inputs in each]) for name in cls.input_names)

    @staticmethod
    def fake_probability(outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Default: the first output holds (B, 2) real/fake logits."""
        return softmax_fake_probability(outputs[0])

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random inputs of the right shapes (export tracing, tests, benchmarks)."""
        raise NotImplementedError

    def onnx_spec(self, batch: int = 2) -> OnnxSpec:
        return OnnxSpec.batch_first(self.input_names, self.output_names, self.example_inputs(batch))
