"""Samples -> probability that the video is fake.

``DetectorScorer`` runs a registered detector (through whichever runtime executes it) on batches
of samples; the detector's own module says how samples become its inputs, how its outputs
become probabilities and how a video's per-track probabilities become the video's
(``models.detector_io``). On ONNX Runtime or TensorRT no torch network is built: the default
detectors score in an install without torch.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from core.calibration import IDENTITY, Calibration
from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Sample

if TYPE_CHECKING:  # the models load when a scorer is built, not for --help
    from models.detector_io import DetectorIO
    from models.runtimes import Runtime

log = logging.getLogger("submission")


@dataclass(frozen=True)
class SampleScore:
    """One detector's score of one sample (face track): P(fake) and, for a detector with
    time-resolved outputs, the fake log-odds of moments of the sample (``time_log_odds[k]`` at
    ``times[k]`` seconds from the video's start; NaN where a column holds no data)."""

    probability: float
    times: np.ndarray | None = None  # (K,) seconds; None: the detector scores whole samples only
    time_log_odds: np.ndarray | None = None  # (K,)

    @property
    def time_resolved(self) -> bool:
        return self.times is not None and self.time_log_odds is not None


@dataclass(frozen=True)
class SecondScores:
    """One face track's per-second probabilities (``core.aggregation.per_second``): the
    detector's, or an ensemble's combined over the members that have that second, and, for an
    ensemble, each member's (None where the member has no value for that second)."""

    track: int  # the sample's track id
    seconds: tuple[int, ...]
    probabilities: tuple[float, ...]
    members: tuple[tuple[float | None, ...], ...] = ()  # members[m][i]: member m at seconds[i]
    # measured[i]: a scored moment lies in seconds[i]; False: interpolated (submission.per_second).
    # () (a journal written before this existed): every second measured.
    measured: tuple[bool, ...] = ()


@dataclass(frozen=True)
class VideoScore:
    """The outcome for one video: a probability, or the reason there is none."""

    filename: str
    probability: float | None  # None: not scored (see reason); the CSV gets the fallback
    reason: str = ""
    track_probabilities: tuple[float, ...] = ()
    member_probabilities: tuple[float, ...] = ()  # an ensemble's: each member's video probability
    # None: not asked for (no --per-second / --explain) or not scored; (): asked for, but the
    # detector gives no time-resolved scores; else one entry per face track that has seconds.
    per_second: tuple[SecondScores, ...] | None = None
    # scored, but from less than the file should hold: "partial: ..." (a truncated file scored
    # from the frames that decode); the failures sidecar's warning column
    warning: str = ""

    @property
    def ok(self) -> bool:
        return self.probability is not None


class SampleScorer(Protocol):
    """What the batch runner needs from a model: samples in, P(fake) per sample out, and the
    rule (``core.aggregation.aggregate``) that makes a video's probability of its samples'.

    A single detector returns (samples,) probabilities and has no member names; an ensemble
    (``submission.ensemble``) returns (samples, members), names its members and weighs them.
    A scorer may also have ``score_detailed`` (see ``score_detailed`` below): each sample's
    ``SampleScore`` per member, with time-resolved scores; the batch runner calls it only for
    ``--per-second`` / ``--explain``."""

    batch_size: int
    preprocess_config: PreprocessConfig
    video_aggregation: str
    member_names: tuple[str, ...]
    member_weights: tuple[float, ...]

    def score(self, samples: Sequence[Sample]) -> np.ndarray: ...


def score_detailed(scorer: Any, samples: Sequence[Sample]) -> list[tuple[SampleScore, ...]]:
    """Each sample's ``SampleScore`` of each member (one for a single detector), with the
    time-resolved scores where the scorer gives them. A scorer without ``score_detailed``
    (a test's stand-in) gets its probabilities wrapped, without times."""
    detailed = getattr(scorer, "score_detailed", None)
    if detailed is not None:
        return detailed(samples)
    probs = np.asarray(scorer.score(samples), dtype=np.float64).reshape(len(samples), -1)
    return [tuple(SampleScore(float(p)) for p in row) for row in probs]


class DetectorScorer:
    """A detector on samples, ``batch_size`` samples per runtime call; its weights' probability
    mapping (``core.calibration``) is applied to whatever the runtime returns, so every runtime
    gives the same calibrated probabilities."""

    member_names: tuple[str, ...] = ()
    member_weights: tuple[float, ...] = ()

    def __init__(
        self,
        runtime: Runtime,
        detector: type[DetectorIO],
        model_config: Any,
        preprocess_config: PreprocessConfig,
        batch_size: int = 16,
        description: str = "",
        identity: dict[str, Any] | None = None,
        arch: str = "",
        weights_path: str | Path | None = None,
        calibration: Calibration = IDENTITY,
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.runtime = runtime
        self.detector = detector
        self.model_config = model_config
        self.preprocess_config = preprocess_config
        self.batch_size = batch_size
        self.video_aggregation = detector.video_aggregation
        self.description = description
        self.identity = identity or {}  # what its scores depend on (the resume journal's key)
        self.arch = arch
        self.weights_path = Path(weights_path) if weights_path else None
        self.calibration = calibration
        self._warned_untimed = False

    def score(self, samples: Sequence[Sample]) -> np.ndarray:
        out = []
        for start in range(0, len(samples), self.batch_size):
            inputs = self.detector.batch_inputs(samples[start : start + self.batch_size], self.model_config)
            out.append(self.calibration.apply(self.detector.fake_probability(self.runtime(*inputs))))
        return np.concatenate(out) if out else np.zeros((0,), np.float64)

    def score_detailed(self, samples: Sequence[Sample]) -> list[tuple[SampleScore, ...]]:
        """``score`` plus each sample's time-resolved log-odds (``DetectorIO.time_columns``
        and ``time_logits``, read from whatever outputs the runtime returns): what
        ``--per-second`` and ``--explain`` use; ``score`` skips this work."""
        out: list[tuple[SampleScore, ...]] = []
        for start in range(0, len(samples), self.batch_size):
            chunk = samples[start : start + self.batch_size]
            outputs = self.runtime(*self.detector.batch_inputs(chunk, self.model_config))
            probs = self.calibration.apply(self.detector.fake_probability(outputs))
            logits = self.detector.time_logits([np.asarray(o, dtype=np.float64) for o in outputs])
            if logits is None:
                self._warn_untimed()
                out += [(SampleScore(float(p)),) for p in probs]
                continue
            logits = self.calibration.apply_log_odds(
                np.asarray(logits, dtype=np.float64).reshape(len(chunk), -1)
            )
            for sample, p, row in zip(chunk, probs, logits, strict=True):
                times = self.detector.time_columns(sample, self.model_config)
                if times is None:
                    self._warn_untimed()
                    out.append((SampleScore(float(p)),))
                    continue
                times = np.asarray(times, dtype=np.float64)
                if times.shape != row.shape:  # a detector's bug: its rows are lost, not the score
                    log.warning(
                        "%s: %d time columns for %d time logits: no per-second scores for it",
                        sample.meta.video,
                        times.size,
                        row.size,
                    )
                    out.append((SampleScore(float(p)),))
                    continue
                out.append((SampleScore(float(p), times, row),))
        return out

    def _warn_untimed(self) -> None:
        if not self._warned_untimed:
            self._warned_untimed = True
            log.warning(
                "%s gives no time-resolved scores: no per-second rows or timeline for it",
                self.arch or self.description or self.detector.__name__,
            )

    @classmethod
    def from_weights(
        cls, weights: str | Path, runtime: str = "auto", device: str = "cpu", batch_size: int = 16
    ) -> DetectorScorer:
        """Load a detector's weights (safetensors + JSON) and put it on a runtime.

        Raises ``weights.store.WeightsError`` when the files are missing or corrupt, name an
        unknown architecture or one that is not a detector, or do not fit it;
        ``core.optional_torch.TorchMissing`` when the runtime it gets needs torch and this
        install has none (see ``models.runtimes.make_model_runtime``).
        """
        from models.detector_io import detector_io
        from models.runtimes import make_model_runtime
        from models.stored_sections import stored_calibration, stored_preprocess
        from weights.store import WeightsError, verified_config

        stored = verified_config(weights)
        try:
            detector = detector_io(stored.arch)
            model_config = detector.config_class.from_dict(stored.model_config)
        except (KeyError, TypeError, ValueError) as e:  # unknown arch, not a detector, a bad config
            raise WeightsError(f"{stored.path}: {e}") from e
        preprocess = stored_preprocess(stored)
        calibration = stored_calibration(stored)
        if preprocess is None:
            log.warning("%s has no preprocess section: using the default preprocessing", stored.path)
        preprocess_config = preprocess or PreprocessConfig()

        def load_module() -> Any:  # torch's network, only when torch runs it
            from models.registry import load_model

            return load_model(stored.path, arch=stored.arch).module

        rt = make_model_runtime(runtime, stored.path, device, load_module, max_batch=batch_size)
        rt_name = getattr(rt, "name", runtime)
        description = f"{stored.arch} from {stored.path} on {rt_name}/{device}"
        # The JSON records the tensors' sha256 besides the configurations; ONNX Runtime and
        # TensorRT run the .onnx instead of those tensors.
        json_path = Path(stored.path).with_suffix(".json")
        identity: dict[str, Any] = {
            "weights": hashlib.sha256(json_path.read_bytes()).hexdigest(),
            "runtime": rt_name,
            "device": device,
        }
        if rt_name != "torch":
            onnx = Path(stored.path).with_suffix(".onnx").stat()
            identity["onnx"] = [onnx.st_size, onnx.st_mtime_ns]
        return cls(
            rt,
            detector,
            model_config,
            preprocess_config,
            batch_size,
            description,
            identity,
            arch=stored.arch,
            weights_path=stored.path,
            calibration=calibration,
        )
