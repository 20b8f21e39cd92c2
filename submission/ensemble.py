"""Several detectors as one: ``--weights a,b,c`` or ``--weights ensemble.json``.

An ensemble JSON names its members and their weights (a member's weight defaults to 1)::

    {"members": [{"weights": "meso4", "weight": 1.0},
                 {"weights": "runs/effnet/weights", "weight": 2.0, "name": "effnet"}]}

A member's ``weights`` is looked up beside the JSON first, then as ``--weights`` is (a name
under the weights folder, or a path). Each member scores every sample with its own runtime,
makes its video score with its own rule over the face tracks, and the ensemble's video
probability is the sigmoid of the weighted mean of the members' video log-odds
(``core.aggregation.combine_log_odds``); ``<stem>_members.csv`` beside the submission keeps
every member's probability per video.

Preprocessing: a video is preprocessed once, so every member must have been trained on
samples made the same way: their weights must carry the same ``PreprocessConfig`` (train the
members on one cache). Members that differ are refused before any video is read, with the
settings that differ — unless the ensemble JSON names the preprocessing itself
(``"preprocess": {...}``) and every member can read samples made that way (each model's
``preprocess_problem``: e.g. a frame detector picks its frames from a temporal detector's
windows of consecutive crops).

An ensemble JSON may also carry its own ``calibration`` (``core.calibration``), applied to the
combined log-odds: with the member weights, a logistic stacking fitted on validation data
(``python -m train ensemble``). A bare name (``--weights default``) is an ensemble when the
weights folder holds ``default.json`` with ``members``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.calibration import IDENTITY, Calibration
from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Sample
from submission.scoring import DetectorScorer, SampleScore
from weights.store import WeightsError, is_name, tensors_path, weights_dir


@dataclass(frozen=True)
class EnsembleMember:
    weights: str  # a weights name or path
    weight: float = 1.0
    name: str = ""  # the member's column in the members CSV (default: the weights' file stem)


def ensemble_path(text: str) -> Path:
    """``--weights`` as an ensemble JSON's path: a bare name is looked up in the weights folder."""
    return weights_dir() / f"{text}.json" if is_name(text) else Path(text)


def is_ensemble(text: str) -> bool:
    """Whether ``--weights`` names several detectors: a comma list, or a JSON with ``members``
    (given as a path, or as a bare name under the weights folder)."""
    if "," in text:
        return True
    path = ensemble_path(text)
    if path.suffix != ".json" or not path.is_file():
        return False
    try:
        return "members" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def parse_members(text: str) -> list[EnsembleMember]:
    """The members ``--weights`` names (see the module docstring); each has a distinct name."""
    if "," in text:
        members = [EnsembleMember(part.strip()) for part in text.split(",") if part.strip()]
    else:
        members = _members_from_json(ensemble_path(text))
    if len(members) < 2:
        raise WeightsError(f"an ensemble needs at least two members, got {len(members)} from {text!r}")
    named, seen = [], {}
    for m in members:
        base = m.name or tensors_path(m.weights).stem
        seen[base] = seen.get(base, 0) + 1
        named.append(EnsembleMember(m.weights, m.weight, base if seen[base] == 1 else f"{base}#{seen[base]}"))
    return named


def _members_from_json(path: Path) -> list[EnsembleMember]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["members"]
        members = []
        for entry in entries:
            weights = str(entry["weights"])
            beside = path.parent / weights
            if tensors_path(beside).is_file():
                weights = str(beside)
            members.append(
                EnsembleMember(weights, float(entry.get("weight", 1.0)), str(entry.get("name", "")))
            )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"{path}: not an ensemble JSON ({type(e).__name__}: {e})") from e
    if any(not m.weight > 0 for m in members):
        raise WeightsError(f"{path}: member weights must be positive")
    return members


def preprocessing_differences(a: PreprocessConfig, b: PreprocessConfig) -> list[str]:
    """``section.field: value_a vs value_b`` for every setting that differs."""
    out = []
    for section, fields in asdict(a).items():
        other = asdict(b)[section]
        out += [f"{section}.{k}: {v!r} vs {other[k]!r}" for k, v in fields.items() if other[k] != v]
    return out


@dataclass(frozen=True)
class EnsembleSettings:
    """What an ensemble JSON says besides its members: the preprocessing every member reads
    (None: the members' own, which must agree) and the mapping of the combined log-odds."""

    preprocess: PreprocessConfig | None = None
    calibration: Calibration = IDENTITY


def ensemble_settings(text: str) -> EnsembleSettings:
    """The ``preprocess`` and ``calibration`` sections of an ensemble JSON (defaults for a
    comma list)."""
    if "," in text:
        return EnsembleSettings()
    path = ensemble_path(text)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        preprocess = PreprocessConfig.from_dict(data["preprocess"]) if data.get("preprocess") else None
        calibration = Calibration.from_dict(data["calibration"]) if data.get("calibration") else IDENTITY
    except (OSError, ValueError, TypeError) as e:
        raise WeightsError(f"{path}: ensemble JSON corrupt: {e}") from e
    return EnsembleSettings(preprocess, calibration)


class EnsembleScorer:
    """``SampleScorer`` over several ``DetectorScorer``s: ``score`` returns one column of
    probabilities per member; the batch runner combines them per video (``member_weights``,
    then ``ensemble_calibration``)."""

    def __init__(
        self,
        members: Sequence[DetectorScorer],
        names: Sequence[str],
        weights: Sequence[float],
        aggregate: str | None = None,
        settings: EnsembleSettings | None = None,
    ):
        settings = settings or EnsembleSettings()
        first = members[0]
        if settings.preprocess is not None:
            for name, member in zip(names, members, strict=True):
                problem = member.detector.preprocess_problem(member.model_config, settings.preprocess)
                if problem:
                    raise WeightsError(
                        f"ensemble member {name!r} cannot read the ensemble's samples: {problem}"
                    )
                member.preprocess_config = settings.preprocess
        for name, member in zip(names[1:], members[1:], strict=True):
            diff = preprocessing_differences(first.preprocess_config, member.preprocess_config)
            if diff:
                raise WeightsError(
                    f"ensemble members {names[0]!r} and {name!r} were trained on different preprocessing "
                    f"({'; '.join(diff[:4])}); a video is preprocessed once, so train every member on one cache"
                )
        rules = {m.video_aggregation for m in members}
        if aggregate is None and len(rules) > 1:
            raise WeightsError(
                f"ensemble members aggregate face tracks differently ({sorted(rules)}): pass --aggregate"
            )
        self.members = list(members)
        self.member_names = tuple(names)
        self.member_weights = tuple(float(w) for w in weights)
        self.preprocess_config = first.preprocess_config
        self.ensemble_calibration = settings.calibration
        self.video_aggregation = aggregate or first.video_aggregation
        self.batch_size = first.batch_size
        self.description = "ensemble of " + "; ".join(
            f"{n} (weight {w:g}): {m.description}" for n, w, m in zip(names, weights, members, strict=True)
        )

    @property
    def identity(self) -> dict:
        """What the ensemble's scores depend on (the resume journal's key)."""
        return {
            "members": [
                dict(m.identity, name=n, weight=w)
                for m, n, w in zip(self.members, self.member_names, self.member_weights, strict=True)
            ],
            "calibration": self.ensemble_calibration.to_dict(),
            "aggregate": self.video_aggregation,
        }

    def score(self, samples: Sequence[Sample]) -> np.ndarray:
        """(samples, members) probabilities."""
        return np.stack([member.score(samples) for member in self.members], axis=1)

    def score_detailed(self, samples: Sequence[Sample]) -> list[tuple[SampleScore, ...]]:
        """Each sample's ``SampleScore`` of every member, in member order (each member keeps its
        own time-resolved scores; the batch runner combines them per second)."""
        per_member = [member.score_detailed(samples) for member in self.members]
        return [tuple(scores[0] for scores in row) for row in zip(*per_member, strict=True)]

    @classmethod
    def from_members(
        cls,
        members: Sequence[EnsembleMember],
        runtime: str = "auto",
        device: str = "cpu",
        batch_size: int = 16,
        aggregate: str | None = None,
        settings: EnsembleSettings | None = None,
    ) -> EnsembleScorer:
        scorers = [DetectorScorer.from_weights(m.weights, runtime, device, batch_size) for m in members]
        return cls(scorers, [m.name for m in members], [m.weight for m in members], aggregate, settings)
