"""Samples -> probability that the video is fake.

``FusionScorer`` runs the fusion model (through whichever runtime executes it) on batches of
samples; ``aggregate`` turns the per-track probabilities of one video into the video's.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from preprocess.config import PreprocessConfig
from preprocess.types import Sample

log = logging.getLogger("submission")

AGGREGATIONS = ("max", "mean")
RUNTIMES = ("auto", "torch", "onnxruntime", "tensorrt")


class ModelLoadError(Exception):
    """Fusion weights were found but do not make a working model."""


@dataclass(frozen=True)
class VideoScore:
    """The outcome for one video: a probability, or the reason there is none."""

    filename: str
    probability: float | None  # None: not scored (see reason); the CSV gets the fallback
    reason: str = ""
    track_probabilities: tuple[float, ...] = ()

    @property
    def ok(self) -> bool:
        return self.probability is not None


class SampleScorer(Protocol):
    """What the batch runner needs from a model: samples in, P(fake) per sample out."""

    batch_size: int
    preprocess_config: PreprocessConfig

    def score(self, samples: Sequence[Sample]) -> np.ndarray: ...


def aggregate(probabilities: Sequence[float], how: str = "max") -> float:
    """One probability per video from its tracks'. ``max``: a video is fake if any face is."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.size == 0:
        raise ValueError("no track probabilities to aggregate")
    if how == "max":
        return float(probs.max())
    if how == "mean":
        return float(probs.mean())
    raise ValueError(f"unknown aggregation {how!r}; choose from {AGGREGATIONS}")


def fake_probability(logits: np.ndarray) -> np.ndarray:
    """softmax(logits)[:, 1] for (B, 2) logits, computed stably as sigmoid(l1 - l0)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"expected (B, 2) logits, got shape {logits.shape}")
    diff = logits[:, 1] - logits[:, 0]
    return np.exp(-np.logaddexp(0.0, -diff))


class FusionScorer:
    """The fusion model on samples, ``batch_size`` samples per runtime call."""

    def __init__(
        self,
        runtime: Any,
        model_config: Any,
        preprocess_config: PreprocessConfig,
        batch_size: int = 16,
        description: str = "",
        identity: dict[str, Any] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.runtime = runtime
        self.model_config = model_config
        self.preprocess_config = preprocess_config
        self.batch_size = batch_size
        self.description = description
        self.identity = identity or {}  # what its scores depend on (the resume journal's key)

    def score(self, samples: Sequence[Sample]) -> np.ndarray:
        from submission.inputs import collate, sample_to_inputs

        out = []
        for start in range(0, len(samples), self.batch_size):
            chunk = samples[start : start + self.batch_size]
            frames, latency, has_latency = collate([sample_to_inputs(s, self.model_config) for s in chunk])
            logits = self.runtime(frames, latency, has_latency)[0]
            out.append(fake_probability(logits))
        return np.concatenate(out) if out else np.zeros((0,), np.float64)

    @classmethod
    def from_weights(
        cls, weights: str | Path, runtime: str = "auto", device: str = "cpu", batch_size: int = 16
    ) -> FusionScorer:
        """Load our fusion weights (safetensors + JSON) and put them on a runtime.

        Raises ``weights.store.WeightsError`` when the files are missing, corrupt or do not fit
        the architecture they name, and ``ModelLoadError`` when that architecture or its
        configuration is unknown.
        """
        from submission.fusion import model_from_weights

        try:
            module, loaded = model_from_weights(weights)
        except (KeyError, ValueError, TypeError) as exc:  # unknown arch or a config it rejects
            raise ModelLoadError(f"{weights}: {exc}") from exc
        if loaded.preprocess is None:
            log.warning("%s has no preprocess section: using the default preprocessing", loaded.path)
        preprocess_config = loaded.preprocess or PreprocessConfig()
        rt = make_fusion_runtime(runtime, module, Path(loaded.path), device, max_batch=batch_size)
        model_config = getattr(module, "config", loaded.model_config)
        rt_name = getattr(rt, "name", runtime)
        description = f"{loaded.arch} from {loaded.path} on {rt_name}/{device}"
        # The JSON records the tensors' sha256 besides the configurations; ONNX Runtime and
        # TensorRT run the .onnx instead of those tensors.
        json_path = Path(loaded.path).with_suffix(".json")
        identity: dict[str, Any] = {
            "weights": hashlib.sha256(json_path.read_bytes()).hexdigest(),
            "runtime": rt_name,
            "device": device,
        }
        if rt_name != "torch":
            onnx = Path(loaded.path).with_suffix(".onnx").stat()
            identity["onnx"] = [onnx.st_size, onnx.st_mtime_ns]
        return cls(rt, model_config, preprocess_config, batch_size, description, identity)


def make_fusion_runtime(kind: str, module: Any, weights_path: Path, device: str, max_batch: int = 16) -> Any:
    """The runtime asked for, or torch with a log line saying why when it cannot be had.

    ONNX Runtime and TensorRT run the ``.onnx`` export that sits beside the weights
    (``fusion.safetensors`` -> ``fusion.onnx``)."""
    from submission.runtimes import make_runtime

    if kind not in RUNTIMES:
        raise ValueError(f"unknown runtime {kind!r}; choose from {RUNTIMES}")
    onnx = weights_path.with_suffix(".onnx")
    onnx_path = onnx if onnx.is_file() else None
    if (
        onnx_path is not None
        and weights_path.is_file()
        and onnx.stat().st_mtime < weights_path.stat().st_mtime
    ):
        log.warning("%s is older than %s: re-export it if the weights changed", onnx, weights_path.name)
    if kind in ("onnxruntime", "tensorrt") and onnx_path is None:
        log.warning("--runtime %s needs %s, which is absent: using torch", kind, onnx)
        kind = "torch"
    try:
        # max_batch: a TensorRT engine is built for batches up to this size
        return make_runtime(kind, module=module, onnx_path=onnx_path, device=device, max_batch=max_batch)
    except Exception as exc:  # any failure of an optional backend: torch always works
        if kind == "torch":
            raise
        log.warning("runtime %s unavailable (%s: %s): using torch", kind, type(exc).__name__, exc)
        return make_runtime("torch", module=module, onnx_path=None, device=device)
