"""train.pseudo_fakes: each forgery on a real face, where it acts and where it does not."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from conftest import shared_media

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Latency, Sample
from train.pseudo_fake_mix import PseudoFakeConfig, PseudoFakes
from train.pseudo_fakes import (
    AudioShift,
    BlendFlicker,
    FaceFrame,
    MouthRerender,
    SelfBlend,
    shift_latency,
)


@pytest.fixture(scope="module")
def real_sample() -> Sample:
    """A real talking face from ../shared/media, preprocessed as training data would be."""
    from preprocess.pipeline import Preprocessor

    path = shared_media("real", "retalking_face_5.mp4")
    cfg = PreprocessConfig().replace("sample", num_frames=4)
    sample = Preprocessor(cfg, syncnet=None).process(path).samples[0]
    distances = np.linspace(9, 12, 31).astype(np.float32)
    distances[15] = 6.0  # in sync, as a real clip's curve looks
    latency = Latency(distances, 0, 6.0, float(np.median(distances) - 6.0), np.ones(10, np.float32))
    return dataclasses.replace(sample, latency=latency)


def region_mask(polygons: list[np.ndarray], size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for polygon in polygons:
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(polygon).astype(np.int32)), 1)
    return mask.astype(bool)


def change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(-1)  # (F, H, W)


def test_self_blend_changes_the_face_and_nothing_far_from_it(real_sample):
    forged = SelfBlend().forge(real_sample, np.random.default_rng(3))
    assert forged.faces.shape == real_sample.faces.shape and forged.faces.dtype == np.uint8
    diff = change(forged.faces, real_sample.faces)
    size = real_sample.faces.shape[1]
    for i, points in enumerate(real_sample.landmarks):
        face = region_mask([FaceFrame.of(points).face_outline()], size)
        grown = cv2.dilate(face.astype(np.uint8), np.ones((61, 61), np.uint8)).astype(bool)
        assert diff[i][face].mean() > 3.0  # the blended-in face differs
        assert diff[i][~grown].max() <= 2  # far outside the mask: untouched (feathering aside)
    assert forged.latency is real_sample.latency and forged.meta == real_sample.meta


def test_mouth_rerender_acts_on_the_lower_face(real_sample):
    forged = MouthRerender(box_paste_p=0.0).forge(real_sample, np.random.default_rng(5))
    diff = change(forged.faces, real_sample.faces)
    size = real_sample.faces.shape[1]
    for i, points in enumerate(real_sample.landmarks):
        f = FaceFrame.of(points)
        lower = region_mask([f.lower_face_outline()], size)
        eyes = region_mask(
            [np.array([p + d for p in points[:2] for d in ((-8, -8), (8, -8), (8, 8), (-8, 8))])], size
        )
        assert diff[i][lower].mean() > 4 * max(diff[i][eyes].mean(), 0.25)


def test_forgeries_are_consistent_over_a_clip_and_flicker_is_not(real_sample):
    """On a clip of one frame repeated, a clip-consistent forgery repeats too; flicker drifts."""
    still = dataclasses.replace(
        real_sample,
        faces=np.repeat(real_sample.faces[:1], 4, axis=0),
        landmarks=np.repeat(real_sample.landmarks[:1], 4, axis=0),
    )
    for category in (SelfBlend(), MouthRerender()):
        forged = category.forge(still, np.random.default_rng(7)).faces
        assert all(np.array_equal(forged[0], f) for f in forged[1:]), category.name
    flicker = BlendFlicker().forge(still, np.random.default_rng(7)).faces
    assert not any(np.array_equal(flicker[0], f) for f in flicker[1:])


def test_same_seed_same_forgery(real_sample):
    a = SelfBlend().forge(real_sample, np.random.default_rng(11)).faces
    b = SelfBlend().forge(real_sample, np.random.default_rng(11)).faces
    c = SelfBlend().forge(real_sample, np.random.default_rng(12)).faces
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("shift", [-12, -5, 5, 9])
def test_shift_latency_moves_the_match(real_sample, shift):
    before = real_sample.latency
    after = shift_latency(before, shift)
    assert int(np.argmin(after.distances)) == int(np.argmin(before.distances)) + shift
    assert after.offset == before.offset - shift
    assert after.min_distance == pytest.approx(before.min_distance)
    assert after.distances.shape == before.distances.shape
    forged = AudioShift(shift=(5, 5)).forge(real_sample, np.random.default_rng(0))
    assert abs(forged.latency.offset - before.offset) == 5 and np.array_equal(forged.faces, real_sample.faces)


def test_audio_desync_moves_the_latency_with_the_soundtrack(real_sample):
    from train.pseudo_fakes import AudioDesync

    length = 400  # 4 s of feature columns, numbered so that the rotation can be read back
    sample = dataclasses.replace(
        real_sample,
        mfcc=np.tile(np.arange(length, dtype=np.float32), (13, 1)),
        mel=np.tile(np.arange(length, dtype=np.float32), (80, 1)),
        audio=np.zeros(length * 160, np.int16),
    )
    before, fps = sample.latency, sample.meta.fps
    match = int(np.argmin(before.distances))
    inside = outside = 0
    for seed in range(16):
        forged = AudioDesync(swap_p=0.25).forge(sample, np.random.default_rng(seed))
        columns = (-int(forged.mfcc[0, 0])) % length
        columns = columns if columns <= length // 2 else columns - length
        frames = int(round(columns * fps / 100.0))
        assert abs(frames) >= 7  # 0.3 s at 25 fps, at least
        np.testing.assert_array_equal(forged.latency.distances, shift_latency(before, frames).distances)
        if 0 <= match + frames < len(before.distances):  # the match still inside the search
            assert forged.latency.offset == before.offset - frames
            inside += 1
        else:
            assert forged.latency.confidence < before.confidence  # the match has left the search
            outside += 1
    assert inside and outside
    silent = dataclasses.replace(sample, latency=None)
    assert AudioDesync().forge(silent, np.random.default_rng(0)).latency is None


def test_shift_latency_beyond_the_search_leaves_no_match(real_sample):
    for shift in (31, 40, -60):
        after = shift_latency(real_sample.latency, shift)
        assert after.confidence == 0.0 and np.ptp(after.distances) == 0.0


def test_transform_labels_and_skips(real_sample):
    rng = np.random.default_rng(0)
    always = PseudoFakes(PseudoFakeConfig(fake_p=1.0))
    for _ in range(6):
        sample, label = always(real_sample, 0, rng)
        assert label == 1
    fake_in = real_sample
    assert always(fake_in, 1, rng) == (fake_in, 1)  # labelled fakes pass through
    never = PseudoFakes(PseudoFakeConfig(fake_p=0.0))
    assert never(real_sample, 0, rng) == (real_sample, 0)
    only_audio = PseudoFakes(PseudoFakeConfig(fake_p=1.0, weights={"audio_shift": 1.0, "self_blend": 1e-9}))
    no_latency = dataclasses.replace(real_sample, latency=None)
    sample, label = only_audio(no_latency, 0, rng)
    assert label == 1 and sample.latency is None  # audio_shift skipped: nothing to shift


def test_config_is_validated_and_landmarks_are_required(real_sample):
    with pytest.raises(ValueError, match="unknown pseudo-fake categories"):
        PseudoFakeConfig(weights={"face_swap": 1.0})
    with pytest.raises(ValueError, match="bad pseudo-fake"):
        PseudoFakeConfig(fake_p=1.5)
    cfg = PseudoFakeConfig(params={"self_blend": {"colour": 0.0, "resample_p": 0.0}})
    assert cfg.category("self_blend").colour == 0.0
    with pytest.raises(ValueError, match="re-run `python -m preprocess`"):
        SelfBlend().forge(dataclasses.replace(real_sample, landmarks=None), np.random.default_rng(0))


def test_the_contact_sheet_shows_each_visual_category_beside_its_original(real_sample):
    from train.pseudo_fake_sheet import VISUAL, sheet_rows

    sheet = sheet_rows([real_sample, real_sample], seed=1, size=64)
    tiles = 1 + len(VISUAL) + 1 + 1  # original, categories (flicker twice), difference
    assert sheet.shape == (2 * 64, tiles * 64, 3) and sheet.dtype == np.uint8
    original = sheet[:64, :64].astype(int)
    for k in range(1, tiles - 1):
        assert np.abs(sheet[:64, 64 * k : 64 * (k + 1)].astype(int) - original).mean() > 0.3  # forged
    assert sheet[:64, -64:].max() > 0  # the difference image shows the mask
