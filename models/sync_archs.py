"""Which weights the SyncNet offset search runs, torch-free (``preprocess.latency`` reads these
before deciding whether torch or ONNX Runtime runs the network; ``models.syncnet`` builds it)."""

from __future__ import annotations

import os
from pathlib import Path

ARCH = "syncnet"  # the published layout (joonson/syncnet_python)
UPSTREAM_SUFFIXES = (".model", ".pth", ".pt")  # syncnet_python's pickled state dict
# Weights archs the offset search can run: that layout, and the compact lower-face model we train
# and ship (models.syncnet_mouth); both take 224x224 face crops and 13x20 MFCC windows.
SYNC_ARCHS = (ARCH, "syncnet_mouth")


def normalised_arch(arch: str) -> bool:
    """Whether the network's embeddings have unit length (``syncnet_mouth``): the offset search
    then averages only over real audio windows, since the zero padding beyond the ends would sit
    at distance 1, closer than an unrelated window (~1.4), and pull the answer to the ends."""
    return arch != ARCH


def is_sync_weights(path: str | os.PathLike) -> bool:
    """Whether a weights name or path holds a sync model: an upstream ``syncnet_v2.model``-style
    file, or our weights whose JSON names a sync arch (read without loading any tensor)."""
    from weights.store import WeightsError, read_config

    if Path(path).suffix in UPSTREAM_SUFFIXES:
        return True
    try:
        return read_config(path).get("arch") in SYNC_ARCHS
    except WeightsError:
        return False
