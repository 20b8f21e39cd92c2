"""preprocess.audio: MFCCs identical to python_speech_features (SyncNet's training features),
log-mel frames aligned 4 per 25 fps video frame, empty and short audio."""

from __future__ import annotations

import av
import librosa
import numpy as np
import pytest
import python_speech_features as psf

from core.preprocess_config import AudioConfig
from preprocess.audio import audio_features, log_mel, mfcc
from tests.conftest import shared_media

SR = 16000


def decode_audio(path, rate: int = SR) -> np.ndarray:
    """Whole audio track as mono int16 at ``rate`` (PyAV's resampler)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.int16)


def speechlike(n: int, seed: int = 0) -> np.ndarray:
    """Noise bursts, tones and a stretch of digital silence, on the int16 scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 4000 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + rng.normal(0, 800, n)
    x[n // 3 : n // 3 + 2000] = 0
    return np.clip(x, -32768, 32767).astype(np.int16)


def assert_matches_reference(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    scale = np.abs(reference).max()
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("n", [1, 399, 400, 401, 560, 16000, 3 * 16000 + 123])
def test_mfcc_matches_python_speech_features(n):
    x = speechlike(n, seed=n)
    assert_matches_reference(mfcc(x, SR), psf.mfcc(x, SR).T)


def test_mfcc_frame_count_for_video_length():
    # T video frames at 25 fps = 640 T samples → 4 T - 1 frames (the last hop has no full window).
    assert mfcc(speechlike(640 * 50), SR).shape == (13, 4 * 50 - 1)


def test_mfcc_long_frames_use_a_larger_fft():
    # At 48 kHz a 25 ms frame is 1200 samples: ours grows the FFT instead of truncating the frame.
    x = speechlike(48000)
    assert_matches_reference(mfcc(x, 48000), psf.mfcc(x, 48000, nfft=2048).T)
    assert not np.allclose(mfcc(x, 48000), psf.mfcc(x, 48000).T, rtol=1e-3)


def test_mfcc_digital_silence_is_finite():
    out = mfcc(np.zeros(8000, np.int16), SR)
    assert np.isfinite(out).all()
    assert_matches_reference(out, psf.mfcc(np.zeros(8000, np.int16), SR).T)


def test_mfcc_real_speech_matches_reference():
    x = decode_audio(shared_media("real", "pcavs_Audio_Source_00086.mp4"))
    assert len(x) > 4 * SR  # the clip is 5.2 s of speech
    assert_matches_reference(mfcc(x, SR), psf.mfcc(x, SR).T)


def test_empty_audio_gives_empty_features():
    cfg = AudioConfig()
    feats = audio_features(np.zeros(0, np.int16), SR, cfg)
    assert feats.mfcc.shape == (13, 0) and feats.mel.shape == (cfg.n_mels, 0)
    assert audio_features(None, SR, cfg).mfcc.shape == (13, 0)
    assert log_mel(np.zeros(100, np.int16), SR, cfg).shape == (cfg.n_mels, 0)  # shorter than one hop


def test_stereo_audio_is_rejected():
    with pytest.raises(ValueError, match="mono"):
        mfcc(np.zeros((2, 1600), np.int16), SR)


def test_log_mel_shape_dtype_and_range():
    cfg = AudioConfig()
    x = speechlike(640 * 25)  # one second of 25 fps video
    mel = log_mel(x, SR, cfg)
    assert mel.shape == (cfg.n_mels, 100) and mel.dtype == np.float32
    assert mel.max() - mel.min() <= 80.0 + 1e-3  # fixed top_db
    # int16 input is the same signal as float input in [-1, 1]
    np.testing.assert_allclose(mel, log_mel(x.astype(np.float32) / 32768, SR, cfg), atol=1e-4)


def test_log_mel_tone_lands_in_its_band():
    cfg = AudioConfig()
    t = np.arange(SR) / SR
    mel = log_mel((8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16), SR, cfg)
    centres = librosa.mel_frequencies(cfg.n_mels + 2, fmin=0, fmax=SR / 2)[1:-1]
    loudest = int(np.argmax(mel[:, 50]))
    assert abs(centres[loudest] - 1000) < 60


def test_log_mel_frames_align_with_video_frames():
    cfg = AudioConfig()
    x = np.zeros(640 * 20, np.int16)
    x[640 * 7 : 640 * 7 + 40] = 20000  # a click at the start of video frame 7
    energy = log_mel(x, SR, cfg).mean(axis=0)
    assert int(np.argmax(energy)) == 4 * 7
