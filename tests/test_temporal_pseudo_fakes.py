"""The temporal pseudo-fakes: each leaves everything but the faces as it was, and moves the clip
off real motion in the direction of the generators it imitates — a still frame animated or
keyframes interpolated are smoother than a camera's frames, per-frame re-rendering flickers more.
Measured with temporal_band's smoothness statistic (log E2/E1: second- against first-difference
energy) on generated clips, over three seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.temporal_band import motion_features
from tests.temporal_clips import real_motion, windows_sample
from train.pseudo_fake_mix import PseudoFakeConfig, PseudoFakes
from train.temporal_pool import PULLDOWN, repeat_frames, shrink
from train.temporal_pseudo_fakes import TEMPORAL_CATEGORIES, consecutive_runs

WINDOWS, FRAMES, CROP = 2, 20, 64


def real_clip(seed: int):
    rng = np.random.default_rng(seed)
    parts = [real_motion(rng, FRAMES, CROP, with_shift=True) for _ in range(WINDOWS)]
    frames = np.concatenate([p[0] for p in parts])
    shift = np.concatenate([p[1] for p in parts])
    return windows_sample(frames, f"real{seed}.mp4", 0, WINDOWS, FRAMES, shift)


def smoothness(sample) -> float:
    """Mean log E2/E1 of the grey face over the sample's windows (lower = smoother)."""
    values = []
    for rows in consecutive_runs(sample):
        grey = torch.tensor(sample.faces[rows].mean(-1) / 255.0, dtype=torch.float32)[None]
        values.append(float(motion_features(grey, torch.ones(1, len(rows)), ["smooth"])[0, 0]))
    return float(np.mean(values))


@pytest.mark.parametrize("name", sorted(TEMPORAL_CATEGORIES))
def test_forgery_changes_only_the_faces_and_is_seeded(name):
    sample = real_clip(0)
    forger = PseudoFakeConfig().category(name)
    a = forger.forge(sample, np.random.default_rng(5))
    b = forger.forge(sample, np.random.default_rng(5))
    assert np.array_equal(a.faces, b.faces)
    assert a.faces.shape == sample.faces.shape and a.faces.dtype == np.uint8
    assert np.array_equal(a.face_frame_indices, sample.face_frame_indices)
    assert a.meta == sample.meta and np.array_equal(a.landmarks, sample.landmarks)
    assert np.abs(a.faces.astype(int) - sample.faces).mean() > 0.3
    assert np.array_equal(sample.faces, real_clip(0).faces)  # the original is not touched


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forgeries_leave_the_band_of_real_motion_on_both_sides(seed):
    sample = real_clip(seed)
    # the whole crop animated (pasted over the real frames, the real background's noise stays)
    cfg = PseudoFakeConfig(params={"still_animation": {"paste_p": 0.0}})
    real = smoothness(sample)
    rng = np.random.default_rng(seed)
    # generators that render from a still frame or from keyframes: smoother than the camera
    for name in ("still_animation", "temporal_resynthesis"):
        forged = cfg.category(name).forge(sample, rng)
        assert smoothness(forged) < real - 0.1, f"{name}: {smoothness(forged):.3f} vs real {real:.3f}"
    # per-frame re-rendering: more frame-to-frame change than the camera's
    forged = cfg.category("face_flicker").forge(sample, rng)
    assert smoothness(forged) > real + 0.02, f"face_flicker: {smoothness(forged):.3f} vs real {real:.3f}"


def test_still_animation_freezes_the_texture_but_keeps_the_motion():
    sample = real_clip(3)
    forged = (
        PseudoFakeConfig(params={"still_animation": {"paste_p": 0.0}})
        .category("still_animation")
        .forge(sample, np.random.default_rng(0))
    )
    for rows in consecutive_runs(sample):
        real = sample.faces[rows].astype(np.float32).mean(-1)
        fake = forged.faces[rows].astype(np.float32).mean(-1)
        # the sensor noise of each frame is gone: consecutive frames differ far less in fine detail
        assert np.abs(np.diff(fake, axis=0)).mean() < 0.7 * np.abs(np.diff(real, axis=0)).mean()
        # ... while the face still moves: frames far apart differ like the real ones do
        far = np.abs(fake[-1] - fake[0]).mean()
        assert far > 0.5 * np.abs(real[-1] - real[0]).mean()


def test_mouth_temporal_changes_the_lower_face_only():
    sample = real_clip(4)
    forged = PseudoFakeConfig().category("mouth_temporal").forge(sample, np.random.default_rng(1))
    change = np.abs(forged.faces.astype(int) - sample.faces).mean(axis=(0, 3))
    eyes_row = int(0.40 * CROP)
    mouth_row = int(0.72 * CROP)
    assert change[mouth_row - 3 : mouth_row + 3].mean() > 4 * change[eyes_row - 3 : eyes_row + 3].mean()


def test_temporal_categories_run_through_the_training_transform():
    sample = real_clip(0)
    transform = PseudoFakes(
        PseudoFakeConfig(fake_p=1.0, weights={"face_flicker": 1.0, "still_animation": 1.0})
    )
    out, label = transform(sample, 0, np.random.default_rng(0))
    assert label == 1 and not np.array_equal(out.faces, sample.faces)
    with pytest.raises(ValueError, match="unknown pseudo-fake categories"):
        PseudoFakeConfig(weights={"still_animatoin": 1.0})


def test_frame_repetition_patterns():
    clip = np.arange(12)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    assert repeat_frames(clip, PULLDOWN["double_15"])[:, 0, 0, 0].tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
    ]
    assert repeat_frames(clip, PULLDOWN["pulldown_24"])[:, 0, 0, 0].tolist() == [
        0,
        1,
        2,
        3,
        3,
        4,
        5,
        6,
        7,
        7,
        8,
        9,
    ]
    small = shrink(real_clip(0), 48)
    assert small.faces.shape[1:] == (48, 48, 3)
    np.testing.assert_allclose(small.landmarks, real_clip(0).landmarks * 48 / CROP, rtol=1e-6)


def test_the_contact_sheet_shows_how_each_temporal_forgery_changes_from_frame_to_frame():
    from train.pseudo_fake_sheet import VISUAL, sheet_rows

    size = 64
    sheet = sheet_rows([real_clip(6)], seed=2, size=size).astype(int)
    spatial = 1 + len(VISUAL) + 1 + 1  # original, the seam categories (flicker twice), difference
    tiles = spatial + 1 + 2 * len(TEMPORAL_CATEGORIES)  # then the change, and frame + change each
    assert sheet.shape == (size, tiles * size, 3)

    def tile(k):
        return sheet[:, k * size : (k + 1) * size]

    original_change = tile(spatial).mean()
    order = list(TEMPORAL_CATEGORIES)
    change = {name: tile(spatial + 2 + 2 * i).mean() for i, name in enumerate(order)}
    assert change["face_flicker"] > original_change  # re-rendered every frame: grain everywhere
    assert change["temporal_resynthesis"] < original_change  # the noise between frames is gone
