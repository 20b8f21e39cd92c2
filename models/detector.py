"""What makes a registered network a deepfake detector: ``DetectorModel``.

A detector declares, in its own module, the whole path from preprocessing's output to a video's
score, so training, evaluation and the submission treat every detector alike:

- ``sample_inputs(sample, config)``: one ``Sample`` → the model's input arrays by name
  (unbatched; ``batch_inputs`` stacks them in ``input_names`` order);
- ``fake_logit(outputs)``: the network's outputs for a batch → the log-odds that each sample
  is fake (what training's loss, ensembles and ``fake_probability`` use);
- ``video_aggregation``: how a video's per-sample (per face track) probabilities become its
  score (a rule of ``core.aggregation``).

How a detector's frames become one sample's logit (mean of frame logits, an LSTM over them,
a video transformer) happens inside its graph, so every runtime sees one logit per sample, in
the first output; time-resolved scores, where a detector has them, are further outputs (the
per-frame detectors' ``frame_logits``) that ``time_logits`` picks out.
The class methods take the config rather than the module, so data loaders and ONNX/TensorRT
runtimes use them without holding the torch network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Sample
from models.onnx_export import OnnxSpec


def sigmoid(log_odds: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) in float64, without overflow for large |x|."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(log_odds, dtype=np.float64)))


def logits_to_log_odds(logits: Any) -> Any:
    """(B, 2) real/fake logits → l_fake - l_real; (B, 1) → the fake log-odds as they are.
    Indexing and subtraction only, so numpy arrays and torch tensors (with gradients) alike."""
    if logits.ndim != 2 or logits.shape[1] not in (1, 2):
        raise ValueError(f"expected (B, 2) or (B, 1) logits, got shape {tuple(logits.shape)}")
    return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits[:, 0]


def softmax_fake_probability(logits: np.ndarray) -> np.ndarray:
    """softmax(logits)[:, 1] for (B, 2) logits, computed stably as sigmoid(l1 - l0)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"expected (B, 2) logits, got shape {logits.shape}")
    return sigmoid(logits_to_log_odds(logits))


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
    def fake_logit(outputs: Sequence[Any]) -> Any:
        """The log-odds that each sample is fake, (B,), from the outputs of a batch (numpy
        arrays from a runtime, or torch tensors in training). Default: the first output holds
        (B, 2) real/fake logits or (B, 1) fake log-odds."""
        return logits_to_log_odds(outputs[0])

    @classmethod
    def fake_probability(cls, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """P(fake) per sample, float64: the sigmoid of ``fake_logit``."""
        return sigmoid(cls.fake_logit([np.asarray(o, dtype=np.float64) for o in outputs]))

    @classmethod
    def time_columns(cls, sample: Sample, config: Any) -> np.ndarray | None:
        """(K,) float seconds from the video's start of each column of ``time_logits`` for this
        sample (a frame's time, a one-second chunk's start); None for a detector that scores
        only the whole sample. Must agree with ``sample_inputs``: column k is the k-th moment
        the inputs hold."""
        return None

    @staticmethod
    def time_logits(outputs: Sequence[Any]) -> Any | None:
        """(B, K) fake log-odds of moments of each sample (per frame, per one-second chunk), NaN
        in columns that hold no data (padding); None for a detector without time-resolved
        outputs. What ``--per-second`` and ``--explain`` read (see ``core.aggregation.per_second``)."""
        return None

    def training_loss(self, outputs: Sequence[Any], batch: Mapping[str, Any]) -> Any | None:
        """The loss of a training batch when the detector has its own (e.g. MDS's contrastive
        loss on its embeddings), from the forward ``outputs`` and the batch (inputs by name,
        ``label`` (B,) 0/1); None: training's binary cross-entropy on ``fake_logit``."""
        return None

    @staticmethod
    def threshold_statistic(outputs: Sequence[Any]) -> Any | None:
        """(B,) the raw per-sample statistic a decision threshold in the detector's config
        applies to (MDS: the mean chunk distance; NaN where it does not apply), which
        ``train export`` sets on the validation split through ``set_threshold``; None: the
        detector has no such threshold (its log-odds are calibrated by training)."""
        return None

    def set_threshold(self, threshold: float) -> None:
        raise ValueError(f"{type(self).__name__} has no decision threshold to set")

    @classmethod
    def preprocess_problem(cls, config: Any, preprocess: PreprocessConfig) -> str | None:
        """Why samples made with ``preprocess`` cannot feed this model, or None (export checks it)."""
        return None

    def init_from_upstream(self, path: str) -> None:
        """Start training from a published checkpoint (its converter lives beside the model)."""
        raise ValueError(f"{type(self).__name__} has no upstream-checkpoint converter to start from")

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random inputs of the right shapes (export tracing, tests, benchmarks)."""
        raise NotImplementedError

    def onnx_spec(self, batch: int = 2) -> OnnxSpec:
        return OnnxSpec.batch_first(self.input_names, self.output_names, self.example_inputs(batch))
