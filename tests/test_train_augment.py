"""Clip-level augmentations: one random draw per clip, applied identically to every frame."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from core.preprocess_data import Sample, SampleMeta
from train.augment import AugmentConfig, ClipAugmenter, augment_audio, augment_faces


def _faces(frames: int = 4, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    base[:, : size // 2] //= 3  # left half darker: a flip is visible
    return np.repeat(base[None], frames, axis=0)


@pytest.mark.parametrize("seed", range(6))
def test_identical_frames_stay_identical(seed):
    faces = _faces()
    out = augment_faces(faces, AugmentConfig(blur_p=0.5, jpeg_p=0.5), np.random.default_rng(seed))
    assert out.shape == faces.shape and out.dtype == np.uint8
    for frame in out[1:]:
        assert np.array_equal(frame, out[0])


def test_flip_mirrors_every_frame():
    faces = _faces()
    cfg = dataclasses.replace(AugmentConfig.none(), flip_p=1.0)
    out = augment_faces(faces, cfg, np.random.default_rng(0))
    assert np.array_equal(out, faces[:, :, ::-1])


def test_none_is_the_identity():
    faces = _faces()
    assert np.array_equal(augment_faces(faces, AugmentConfig.none(), np.random.default_rng(0)), faces)


def test_jpeg_and_blur_degrade_detail():
    faces = _faces()
    for cfg in (
        dataclasses.replace(AugmentConfig.none(), jpeg_p=1.0, jpeg_quality=(20, 20)),
        dataclasses.replace(AugmentConfig.none(), blur_p=1.0, blur_sigma=(1.5, 1.5)),
    ):
        out = augment_faces(faces, cfg, np.random.default_rng(0)).astype(float)
        detail_in = np.abs(np.diff(faces.astype(float), axis=2)).mean()
        assert np.abs(np.diff(out, axis=2)).mean() < 0.8 * detail_in


def test_audio_gain_and_noise():
    audio = (np.sin(np.arange(16000) / 10) * 8000).astype(np.int16)
    quiet = augment_audio(
        audio, dataclasses.replace(AugmentConfig.none(), gain_db=6.0), np.random.default_rng(1)
    )
    ratio = np.abs(quiet.astype(float)).sum() / np.abs(audio.astype(float)).sum()
    assert 0.5 <= ratio <= 2.0 and quiet.dtype == np.int16
    noisy = augment_audio(
        audio,
        dataclasses.replace(AugmentConfig.none(), noise_p=1.0, noise_snr_db=(10, 10)),
        np.random.default_rng(1),
    )
    residual = noisy.astype(float) - audio
    snr = 10 * np.log10(np.mean(audio.astype(float) ** 2) / np.mean(residual**2))
    assert 8 < snr < 12
    assert augment_audio(np.zeros(0, np.int16), AugmentConfig(), np.random.default_rng(0)).size == 0


def test_augmenter_recomputes_mel_only_when_asked():
    audio = (np.random.default_rng(0).standard_normal(8000) * 3000).astype(np.int16)
    meta = SampleMeta("v.mp4", "v.mp4", 25.0, 0.5, True, 1, 0)
    mel = np.zeros((80, 50), np.float32)
    sample = Sample(
        meta, _faces(), np.arange(4), np.zeros((4, 4), np.float32), 0, audio, np.zeros((13, 49)), mel, None
    )
    cfg = dataclasses.replace(AugmentConfig(), gain_db=10.0)
    faces_only, label = ClipAugmenter(cfg)(sample, 1, np.random.default_rng(0))
    assert faces_only.mel is mel and faces_only.audio is audio and label == 1
    with_audio, label = ClipAugmenter(cfg, audio=True)(sample, 0, np.random.default_rng(0))
    assert label == 0  # augmentation never changes what a sample is
    assert with_audio.mel.shape == (80, 50) and not np.array_equal(with_audio.mel, mel)
    assert sample.faces is not with_audio.faces  # the cached sample is not modified in place


def test_repackage_augmentation_is_a_lossy_round_trip_drawn_per_clip():
    """``repackage_p``: the clip's crops downscaled, H.264-coded and scaled back — close to the
    other augmentations' output (a re-encode, not noise), the same for the same seed (one x264
    thread), and nothing drawn when off."""
    rng = np.random.default_rng(0)
    faces = np.stack([cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (0, 0), 2)] * 4)
    faces = np.stack([np.roll(f, 2 * i, axis=1) for i, f in enumerate(faces)])  # some motion
    plain_cfg, packaged_cfg = AugmentConfig(), AugmentConfig(repackage_p=1.0)
    plain = augment_faces(faces, plain_cfg, np.random.default_rng(3))
    packaged = augment_faces(faces, packaged_cfg, np.random.default_rng(3))
    again = augment_faces(faces, packaged_cfg, np.random.default_rng(3))
    assert packaged.shape == faces.shape and packaged.dtype == np.uint8
    np.testing.assert_array_equal(packaged, again)
    mse = np.mean((packaged.astype(np.float64) - plain.astype(np.float64)) ** 2)
    psnr = 10 * np.log10(255**2 / mse)
    assert 18 < psnr < 50, psnr
    # off: the random stream after augmenting is the one a run without the option draws
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    augment_faces(faces, AugmentConfig(repackage_p=0.0), a)
    augment_faces(faces, AugmentConfig(), b)
    assert a.random() == b.random()
