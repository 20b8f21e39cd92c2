"""A detector's probability mapping: its raw fake log-odds → calibrated log-odds.

A detector trained on pseudo-fakes says "fake" with a confidence that means little on footage
it never saw; a scorer such as DFDC's log loss punishes that harder than a constant 0.5.
The mapping is affine in log-odds (Platt scaling: ``z' = slope * z + bias``), so it keeps every
ranking (AUC, AP) and commutes with the max over face tracks. It is fitted on validation data
at export (``train.calibration``), stored in the weights' JSON and applied by the scorer after
whichever runtime ran the network, so torch, ONNX Runtime, TensorRT and ensembles all apply it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# Probabilities in this band are reported as uncertain (run summary, explain page): with the
# mapping fitted to be safe across sources, a score inside it says little either way.
UNCERTAIN_BAND = (0.35, 0.65)
# A probability is clipped this far from 0 and 1 before its log-odds are taken, so one
# saturated ensemble member (p == 1.0 in float64 past logit ≈ 37) weighs like a very confident
# one instead of deciding alone.
LOG_ODDS_EPS = 1e-12


def log_odds(probabilities: Any) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), LOG_ODDS_EPS, 1 - LOG_ODDS_EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: Any) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=np.float64)))


def is_uncertain(probability: float, band: tuple[float, float] = UNCERTAIN_BAND) -> bool:
    return band[0] <= probability <= band[1]


@dataclass(frozen=True)
class Calibration:
    """``calibrated log-odds = slope * raw log-odds + bias``; slope > 0 keeps the ranking."""

    slope: float = 1.0
    bias: float = 0.0
    method: str = "identity"  # how it was fitted (e.g. "platt, minimax over sources")
    fitted_on: str = ""  # what it was fitted on, for the model card

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slope) and self.slope > 0):
            raise ValueError(f"calibration slope must be a positive number, got {self.slope!r}")
        if not math.isfinite(self.bias):
            raise ValueError(f"calibration bias must be a finite number, got {self.bias!r}")

    @property
    def is_identity(self) -> bool:
        return self.slope == 1.0 and self.bias == 0.0

    def apply_log_odds(self, z: Any) -> np.ndarray:
        """Raw log-odds → calibrated; NaN (padding) stays NaN."""
        return self.slope * np.asarray(z, dtype=np.float64) + self.bias

    def apply(self, probabilities: Any) -> np.ndarray:
        """Raw probabilities → calibrated probabilities (float64, same shape)."""
        if self.is_identity:
            return np.asarray(probabilities, dtype=np.float64)
        return sigmoid(self.apply_log_odds(log_odds(probabilities)))

    def to_dict(self) -> dict[str, Any]:
        return {"slope": self.slope, "bias": self.bias, "method": self.method, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """From a weights JSON's ``calibration`` section; ``ValueError`` saying what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"calibration section is a {type(data).__name__}, not an object")
        unknown = set(data) - {"slope", "bias", "method", "fitted_on"}
        if unknown:
            raise ValueError(f"calibration section has unknown keys {sorted(unknown)}")
        try:
            slope, bias = float(data.get("slope", 1.0)), float(data.get("bias", 0.0))
        except (TypeError, ValueError) as err:
            raise ValueError(f"calibration slope/bias are not numbers: {err}") from err
        return cls(slope, bias, str(data.get("method", "")), str(data.get("fitted_on", "")))


IDENTITY = Calibration()
