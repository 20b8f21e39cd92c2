"""The learning tests' measure: a trained checkpoint's video AUC on one split of a cache."""

from __future__ import annotations

from pathlib import Path

import torch

from train.evaluate import load_scoring_model, manifest_labels, score_manifest
from train.metrics import roc_auc


def held_out_auc(checkpoint: Path, manifest: Path, split: str = "test") -> tuple[float, int, torch.nn.Module]:
    """(AUC, videos scored, the scoring model) of ``checkpoint`` on ``split`` of ``manifest``."""
    model = load_scoring_model(checkpoint=checkpoint)
    scores = score_manifest(model, manifest, [split])[split]
    labels = manifest_labels(manifest)
    names = sorted(scores)
    return roc_auc([labels[n].label for n in names], [scores[n] for n in names]), len(names), model
