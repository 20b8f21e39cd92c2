"""What a detector reads and what its outputs mean, without its network: ``DetectorIO``.

``models.detector.DetectorModel`` (the torch network) inherits all of it; this half is what
scoring needs besides a runtime, so a detector exported to ONNX scores on ONNX Runtime in an
install without torch (the submission image) when its inputs and outputs are defined here
rather than beside its network. ``IO_MODULES`` lists the modules that define such detectors;
``detector_io(arch)`` finds the class of any registered detector, these without importing torch.

A detector declares, in its own module, the whole path from preprocessing's output to a video's
score, so training, evaluation and the submission treat every detector alike:

- ``sample_inputs(sample, config)``: one ``Sample`` → the model's input arrays by name
  (unbatched; ``batch_inputs`` stacks them in ``input_names`` order);
- ``fake_logit(outputs)``: the network's outputs for a batch → the log-odds that each sample
  is fake (what training's loss, ensembles and ``fake_probability`` use);
- ``video_aggregation``: how a video's per-sample (per face track) probabilities become its
  score (a rule of ``core.aggregation``).

The class methods take the config rather than the module, so data loaders and ONNX/TensorRT
runtimes use them without holding the torch network.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from core.optional_torch import require_torch
from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Sample

# The modules whose detectors' inputs and outputs need no torch (each registers with ``register_io``).
IO_MODULES = ("models.mobilenet_frames_io", "models.temporal_band_io", "models.temporal_net_io")

IOT = TypeVar("IOT", bound=type)
_IO: dict[str, type[DetectorIO]] = {}


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


class DetectorIO:
    """A detector's inputs and outputs (see the module docstring). Its network's ``forward``
    takes the inputs in ``input_names`` order, batched, and returns the tensors ``output_names``
    name; ``config_class`` is its config dataclass (set by ``register_io`` or, for a detector
    defined beside its network only, by ``models.registry.register_model``)."""

    arch: ClassVar[str]
    config_class: ClassVar[type]
    input_names: ClassVar[tuple[str, ...]]
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    video_aggregation: ClassVar[str] = "max"

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

    @staticmethod
    def threshold_statistic(outputs: Sequence[Any]) -> Any | None:
        """(B,) the raw per-sample statistic a decision threshold in the detector's config
        applies to (MDS: the mean chunk distance; NaN where it does not apply), which
        ``train export`` sets on the validation split through ``set_threshold``; None: the
        detector has no such threshold (its log-odds are calibrated by training)."""
        return None

    @classmethod
    def preprocess_problem(cls, config: Any, preprocess: PreprocessConfig) -> str | None:
        """Why samples made with ``preprocess`` cannot feed this model, or None (export checks it)."""
        return None


def register_io(arch: str, config_class: type) -> Callable[[IOT], IOT]:
    """Class decorator for a ``DetectorIO`` defined apart from its network: ``detector_io``
    finds it by ``arch`` without importing torch. The network class (``models.registry``)
    then inherits it and registers under the same ``arch``."""

    def register(io_class: IOT) -> IOT:
        io_class.arch = arch
        io_class.config_class = config_class
        _IO[arch] = io_class
        return io_class

    return register


def detector_io(arch: str) -> type[DetectorIO]:
    """The inputs and outputs of the detector ``arch``: its torch-free ``DetectorIO`` when one
    is registered (``IO_MODULES``), else its network's class from the model registry, which
    needs torch (``core.optional_torch.TorchMissing`` without it). ``ValueError`` for an arch
    that is not registered or not a detector."""
    for module in IO_MODULES:
        importlib.import_module(module)
    if arch in _IO:
        return _IO[arch]
    require_torch(
        f"a {arch!r} detector (its inputs are defined beside its torch network)",
        f"or score with weights whose detectors all define theirs apart ({', '.join(sorted(_IO))})",
    )
    from models.registry import model_entry

    model_class = model_entry(arch).model_class
    if not issubclass(model_class, DetectorIO):
        raise ValueError(f"a {arch!r} model does not score videos")
    return model_class


def torch_free_detectors() -> list[str]:
    """The detector archs whose inputs and outputs need no torch."""
    for module in IO_MODULES:
        importlib.import_module(module)
    return sorted(_IO)
