"""Where a ``"windows"`` sample's windows lie among its crops (preprocessing writes them, the
temporal detector reads them back)."""

from __future__ import annotations

import numpy as np


def window_runs(frame_indices: np.ndarray, window_frames: int) -> list[np.ndarray]:
    """Positions in ``frame_indices`` of each window: runs of consecutive indices, each cut into
    pieces of at most ``window_frames`` (windows that abut form one run)."""
    indices = np.asarray(frame_indices, np.int64)
    if len(indices) == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    runs = np.split(np.arange(len(indices)), breaks)
    return [run[i : i + window_frames] for run in runs for i in range(0, len(run), window_frames)]
