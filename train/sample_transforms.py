"""The seam where training changes a sample before the detector sees it.

A sample transform is any callable ``(sample, label, rng) -> (sample, label)``: it gets a
training ``Sample`` (loaded from the cache, never modified in place: return a copy, e.g. with
``dataclasses.replace``), its label (1 fake, 0 real) and a ``numpy.random.Generator`` seeded
per draw, and returns the sample and the label to train on. It may change the label: a
"pseudo-fake" transform forges a real sample (blends another face in, warps the mouth …) and
returns it with label 1. The training split's transforms run in order, in the data loader,
before the detector's ``sample_inputs``; validation and test samples are never transformed.

``FitConfig.sample_transforms`` lists the transforms a run applies, before the clip
augmentation of ``train.augment`` (``ClipAugmenter``, itself a sample transform), so
pseudo-fakes are augmented like every other sample. With ``--num-workers > 0`` the transforms
travel to the loader processes, so they must be picklable (module-level classes or functions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from core.preprocess_data import Sample


class SampleTransform(Protocol):
    def __call__(self, sample: Sample, label: int, rng: np.random.Generator) -> tuple[Sample, int]: ...


class ChainedTransforms:
    """Several transforms applied in order, sharing the draw's random generator."""

    def __init__(self, transforms: Sequence[SampleTransform]):
        self.transforms = tuple(transforms)

    def __call__(self, sample: Sample, label: int, rng: np.random.Generator) -> tuple[Sample, int]:
        for transform in self.transforms:
            sample, label = transform(sample, label, rng)
        return sample, label

    def __repr__(self) -> str:
        return f"ChainedTransforms({', '.join(map(repr, self.transforms))})"
