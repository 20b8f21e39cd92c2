"""What makes a registered network a deepfake detector: ``DetectorModel``.

Its inputs, outputs and scoring rules are ``models.detector_io.DetectorIO`` (torch-free, see
there); this class adds what only the torch network has: its own training loss, a decision
threshold set at export, a start from an upstream checkpoint, example inputs and its ONNX
export. How a detector's frames become one sample's logit (mean of frame logits, an LSTM over
them, a video transformer) happens inside its graph, so every runtime sees one logit per
sample, in the first output; time-resolved scores, where a detector has them, are further
outputs (the per-frame detectors' ``frame_logits``) that ``time_logits`` picks out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from models.detector_io import DetectorIO
from models.onnx_export import OnnxSpec


class DetectorModel(DetectorIO, nn.Module):
    """Base class of the registered detectors (see the module docstring). ``forward`` takes the
    inputs in ``input_names`` order, batched, and returns the tensors ``output_names`` name."""

    config: Any

    def training_loss(self, outputs: Sequence[Any], batch: Mapping[str, Any]) -> Any | None:
        """The loss of a training batch when the detector has its own (e.g. MDS's contrastive
        loss on its embeddings), from the forward ``outputs`` and the batch (inputs by name,
        ``label`` (B,) 0/1); None: training's binary cross-entropy on ``fake_logit``."""
        return None

    def set_threshold(self, threshold: float) -> None:
        raise ValueError(f"{type(self).__name__} has no decision threshold to set")

    def init_from_upstream(self, path: str) -> None:
        """Start training from a published checkpoint (its converter lives beside the model)."""
        raise ValueError(f"{type(self).__name__} has no upstream-checkpoint converter to start from")

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random inputs of the right shapes (export tracing, tests, benchmarks)."""
        raise NotImplementedError

    def onnx_spec(self, batch: int = 2) -> OnnxSpec:
        return OnnxSpec.batch_first(self.input_names, self.output_names, self.example_inputs(batch))
