"""A weights pair's JSON sections read as what they are: its preprocessing and its calibration.

Shared by ``models.registry.load_model`` (the torch network) and the torch-free scorer
(``submission.scoring``), so a corrupt section fails the same way, naming the JSON, before a
network is built or a runtime started.
"""

from __future__ import annotations

from core.calibration import IDENTITY, Calibration
from core.preprocess_config import PreprocessConfig
from weights.store import StoredConfig, WeightsError


def stored_preprocess(stored: StoredConfig) -> PreprocessConfig | None:
    """What the model was trained on; None when the JSON records none."""
    try:
        return PreprocessConfig.from_dict(stored.preprocess) if stored.preprocess else None
    except (TypeError, ValueError) as e:
        raise WeightsError(
            f"{stored.path.with_suffix('.json')}: weights config corrupt: preprocess section: {e}"
        ) from e


def stored_calibration(stored: StoredConfig) -> Calibration:
    """The detector's probability mapping; the identity when the JSON carries none."""
    try:
        return Calibration.from_dict(stored.calibration) if stored.calibration else IDENTITY
    except ValueError as e:
        raise WeightsError(f"{stored.path.with_suffix('.json')}: weights config corrupt: {e}") from e
