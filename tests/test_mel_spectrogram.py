"""preprocess.mel_spectrogram: librosa's log-mel spectrogram without librosa, the same float32
values (bit for bit) on real soundtracks and on noise of several lengths and seeds."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from core.preprocess_config import AudioConfig, MediaConfig
from preprocess.media import decode
from preprocess.mel_spectrogram import log_mel_power, mel_filters
from tests.conftest import shared_media

CFG = AudioConfig()
SR = 16000


def librosa_log_mel(y: np.ndarray, top_db: float = 80.0) -> np.ndarray:
    power = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=CFG.mel_n_fft, hop_length=CFG.mel_hop, win_length=CFG.mel_win, n_mels=CFG.n_mels,
        power=2.0, center=True,
    )  # fmt: skip
    return librosa.power_to_db(power, ref=1.0, top_db=top_db)


def ours(y: np.ndarray, top_db: float = 80.0) -> np.ndarray:
    return log_mel_power(y, SR, CFG.mel_n_fft, CFG.mel_hop, CFG.mel_win, CFG.n_mels, top_db)


def test_filters_are_librosas():
    for n_fft, n_mels in ((CFG.mel_n_fft, CFG.n_mels), (1024, 64), (400, 40)):
        np.testing.assert_array_equal(
            mel_filters(SR, n_fft, n_mels), librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=n_mels)
        )


@pytest.mark.shared
@pytest.mark.parametrize("name", ["real/dfdc_REAL_lynaeydofd.mp4", "real/lipnet_GRID_bbaf2n.mpg"])
def test_real_soundtracks_give_librosas_values(name):
    clip = decode(shared_media(*name.split("/")), MediaConfig())
    y = clip.audio.astype(np.float32) / 32768.0
    got = ours(y)
    assert got.dtype == np.float32 and got.shape == (CFG.n_mels, 1 + len(y) // CFG.mel_hop)
    np.testing.assert_array_equal(got, librosa_log_mel(y))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_of_any_length_gives_librosas_values(seed):
    rng = np.random.default_rng(seed)
    for length in (CFG.mel_hop, 777, 16000 + int(rng.integers(0, 4000))):
        y = (rng.normal(size=length) * rng.uniform(0.01, 0.5)).astype(np.float32)
        np.testing.assert_array_equal(
            ours(y, top_db=60.0), librosa_log_mel(y, top_db=60.0), err_msg=str(length)
        )
