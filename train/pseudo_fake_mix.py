"""The pseudo-fake mix a training run draws from: which categories (per-frame ones from
``train.pseudo_fakes``, temporal ones from ``train.temporal_pseudo_fakes``), how often, with
what parameters, and the sample transform that applies it. Its own module so that the two
category modules never import each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.preprocess_data import Sample
from train.pseudo_fakes import CATEGORIES
from train.temporal_pseudo_fakes import TEMPORAL_CATEGORIES


def all_categories() -> dict[str, type]:
    """The per-frame categories (``train.pseudo_fakes``) and the temporal ones
    (``train.temporal_pseudo_fakes``, built on the former's geometry)."""
    return {**CATEGORIES, **TEMPORAL_CATEGORIES}


@dataclass(frozen=True)
class PseudoFakeConfig:
    """Which categories, how often each, and with what parameters (``params[name]`` overrides
    the category's defaults). ``fake_p``: the share of real training samples forged."""

    fake_p: float = 0.5
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "self_blend": 0.4,
            "mouth_rerender": 0.35,
            "blend_flicker": 0.15,
            "audio_shift": 0.1,
        }
    )
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self):
        known = all_categories()
        unknown = (set(self.weights) | set(self.params)) - set(known)
        if unknown:
            raise ValueError(f"unknown pseudo-fake categories {sorted(unknown)}; known: {sorted(known)}")
        if (
            not 0 <= self.fake_p <= 1
            or any(w < 0 for w in self.weights.values())
            or not sum(self.weights.values())
        ):
            raise ValueError(f"bad pseudo-fake probabilities: fake_p {self.fake_p}, weights {self.weights}")

    def category(self, name: str) -> Any:
        return all_categories()[name](**self.params.get(name, {}))


class PseudoFakes:
    """The training-sample transform ``(sample, label, rng) -> (sample, label)``: a real sample
    becomes, with probability ``fake_p``, a pseudo-fake of a category drawn by weight (label 1).
    Categories a sample cannot take (``audio_shift`` without a latency, ``audio_desync`` without
    a soundtrack) are skipped for it; a sample that can take none stays real."""

    def __init__(self, cfg: PseudoFakeConfig | None = None):
        self.cfg = cfg or PseudoFakeConfig()
        self.categories = {name: self.cfg.category(name) for name, w in self.cfg.weights.items() if w > 0}

    def __repr__(self) -> str:
        return f"PseudoFakes(fake_p={self.cfg.fake_p}, weights={self.cfg.weights}, params={self.cfg.params})"

    @staticmethod
    def _applies(name: str, category: Any, sample: Sample) -> bool:
        if name == "audio_shift":
            return sample.latency is not None
        applies = getattr(category, "applies", None)
        return applies is None or applies(sample)

    def __call__(self, sample: Sample, label: int, rng: np.random.Generator) -> tuple[Sample, int]:
        if label != 0 or rng.random() >= self.cfg.fake_p:
            return sample, label
        names = [n for n, c in self.categories.items() if self._applies(n, c, sample)]
        if not names:  # nothing this sample can become (e.g. audio categories, no soundtrack)
            return sample, label
        weights = np.array([self.cfg.weights[n] for n in names], np.float64)
        name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        return self.categories[name].forge(sample, rng), 1
