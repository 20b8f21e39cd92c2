"""A contact sheet of pseudo-fakes: real samples and each visual category forged from them, so a
person can look at what the detector is taught (``python -m train pseudo-fake-sheet``).

One row per real sample: the original's first face frame, then each category's forgery of it
(``blend_flicker`` shows its first and last frame: the drift is the point), then the absolute
difference to the original ×4, for the last category, so the mask's shape shows.

Where the sample holds consecutive frames (a ``"windows"`` cache), the row goes on with the
temporal categories (``train.temporal_pseudo_fakes``), whose forgery is in how frames change: the
original's change between its first two consecutive frames (absolute difference ×8), then each
temporal category's first frame and its own change between the same two frames. A still
animation's change holds only moving edges (the sensor noise is gone); a flicker's is grain
over the whole face.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.files import atomic_path
from preprocess.sample_file import load_sample
from train.data import read_manifest
from train.pseudo_fake_mix import PseudoFakeConfig
from train.temporal_pseudo_fakes import TEMPORAL_CATEGORIES, consecutive_runs

VISUAL = ("self_blend", "mouth_rerender", "blend_flicker")
MASK_GAIN = 4  # a forgery's difference from its original, amplified so the mask shows
CHANGE_GAIN = 8  # frame-to-frame change is a few grey levels: amplified to be seen


def amplified_difference(a: np.ndarray, b: np.ndarray, gain: int) -> np.ndarray:
    return np.clip(np.abs(a.astype(np.int16) - b.astype(np.int16)) * gain, 0, 255).astype(np.uint8)


def sheet_rows(samples: list, seed: int = 0, size: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cfg = PseudoFakeConfig()
    rows = []
    for sample in samples:
        tiles = [sample.faces[0]]
        for name in VISUAL:
            forged = cfg.category(name).forge(sample, rng).faces
            tiles += [forged[0], forged[-1]] if name == "blend_flicker" else [forged[0]]
        tiles.append(amplified_difference(tiles[-1], sample.faces[-1], MASK_GAIN))
        runs = [r for r in consecutive_runs(sample) if len(r) >= 2]
        if runs:
            a, b = int(runs[0][0]), int(runs[0][1])
            tiles.append(amplified_difference(sample.faces[b], sample.faces[a], CHANGE_GAIN))
            for name in TEMPORAL_CATEGORIES:
                forged = cfg.category(name).forge(sample, rng).faces
                tiles += [forged[a], amplified_difference(forged[b], forged[a], CHANGE_GAIN)]
        rows.append(
            np.concatenate([cv2.resize(t, (size, size), interpolation=cv2.INTER_AREA) for t in tiles], 1)
        )
    return np.concatenate(rows, 0)


def write_sheet(manifest: Path, out: Path, count: int = 6, seed: int = 0) -> Path:
    entries = [e for e in read_manifest(manifest) if e.label == 0]
    if not entries:
        raise ValueError(f"{manifest}: no real samples to forge")
    step = max(1, len(entries) // count)
    samples = [load_sample(e.sample) for e in entries[::step][:count]]
    samples = [s for s in samples if s.landmarks is not None]
    if not samples:
        raise ValueError(f"{manifest}: the samples carry no landmarks (sample format 1): re-preprocess")
    image = sheet_rows(samples, seed)
    with atomic_path(out) as tmp:  # the temporary name keeps .png: imwrite picks the format by it
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {out}")
    return out
