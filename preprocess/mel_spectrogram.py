"""A log-mel spectrogram, computed as librosa 0.11 computes it, without librosa.

``librosa.feature.melspectrogram`` (centred zero-padded Hann STFT, |X|², Slaney mel filters)
and ``librosa.power_to_db`` were the only librosa functions scoring called, and librosa brings
numba, llvmlite and scikit-learn (~290 MB of the ~1.1 GB scoring image). Reproduced here step
for step, in the same dtypes and the same array layouts (the window product and FFT in float64,
the spectrum rounded to complex64, the filter bank applied by the same ``einsum``), so the
values are librosa's, bit for bit (tests/test_mel_spectrogram.py compares them with librosa,
which the training install keeps).
"""

from __future__ import annotations

import numpy as np

AMIN = 1e-10  # power_to_db's floor


def periodic_hann(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` samples (float64), as ``scipy.signal.get_window("hann",
    n, fftbins=True)`` computes it, to the bit: the symmetric window of n + 1 points, less its
    last point."""
    if n <= 1:
        return np.ones(max(n, 0))
    phase = np.linspace(-np.pi, np.pi, n + 1)[:-1]
    return 0.5 + 0.5 * np.cos(phase)


def stft_power(y: np.ndarray, n_fft: int, hop: int, win_length: int) -> np.ndarray:
    """|STFT|² (1 + n_fft // 2, frames) float32 of float32 samples: frames centred on multiples
    of ``hop`` (zero padding of n_fft // 2 at both ends), a periodic Hann window of
    ``win_length`` centred in each ``n_fft`` frame. F-ordered, as librosa's."""
    window = periodic_hann(win_length)
    left = (n_fft - win_length) // 2
    window = np.pad(window, (left, n_fft - win_length - left))
    padded = np.pad(y, (n_fft // 2, n_fft // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # (T, n_fft) float32
    spectrum = np.empty((len(frames), 1 + n_fft // 2), np.complex64)
    for start in range(0, len(frames), 1024):  # bounded float64 temporaries on long clips
        spectrum[start : start + 1024] = np.fft.rfft(window * frames[start : start + 1024], axis=-1)
    return (np.abs(spectrum) ** 2.0).T


def hz_to_mel(frequency: float) -> float:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3
    if frequency < 1000.0:
        return frequency / f_sp
    return 1000.0 / f_sp + float(np.log(frequency / 1000.0) / (np.log(6.4) / 27.0))


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """The inverse of ``hz_to_mel``, elementwise."""
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_mel = 1000.0 / f_sp
    logstep = np.log(6.4) / 27.0
    above = mels >= min_log_mel
    freqs[above] = 1000.0 * np.exp(logstep * (mels[above] - min_log_mel))
    return freqs


def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) float32 triangles on the Slaney mel scale from 0 Hz to Nyquist,
    each normalised to unit area (librosa.filters.mel's defaults)."""
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0), n_mels + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, fft_freqs)
    for i in range(n_mels):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, np.newaxis]
    return weights


def log_mel_power(
    y: np.ndarray, sample_rate: int, n_fft: int, hop: int, win_length: int, n_mels: int, top_db: float
) -> np.ndarray:
    """(n_mels, 1 + len(y) // hop) float32 dB of float32 samples: 10·log10 of the mel power
    (floored at 1e-10, reference 1.0), the quietest bins raised to ``top_db`` below the loudest."""
    power = stft_power(y, n_fft, hop, win_length)
    mel = np.einsum("...ft,mf->...mt", power, mel_filters(sample_rate, n_fft, n_mels), optimize=True)
    db = 10.0 * np.log10(np.maximum(AMIN, mel))
    db -= 10.0 * np.log10(np.maximum(AMIN, 1.0))
    return np.maximum(db, db.max() - top_db)
