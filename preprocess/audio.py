"""Audio features: SyncNet's MFCCs and a log-mel spectrogram, both at 100 frames per second.

``mfcc`` reproduces ``python_speech_features.mfcc`` with its default parameters on int16-scale
samples, because that is the input SyncNet was trained on (syncnet_python passes the wav's int16
samples straight to it). ``log_mel`` is the spectrogram the fusion model's audio branch consumes
(librosa's, computed without librosa: ``preprocess.mel_spectrogram``).
"""

from __future__ import annotations

import math

import numpy as np

from core.preprocess_config import AudioConfig
from core.preprocess_data import AudioFeatures
from preprocess.mel_spectrogram import log_mel_power

# python_speech_features defaults, which SyncNet's training features used; not tunable on purpose.
MFCC_FILTERS = 26
MFCC_MIN_FFT = 512
MFCC_PREEMPHASIS = 0.97
MFCC_LIFTER = 22
MEL_TOP_DB = 80.0  # dynamic range kept by power_to_db (relative to the clip's loudest bin)


def mfcc(audio: np.ndarray, sample_rate: int, cfg: AudioConfig | None = None) -> np.ndarray:
    """MFCCs (n_mfcc, T) float32 of mono samples on the int16 scale.

    Frames are ``mfcc_win_s`` long every ``mfcc_hop_s``; the last frame is zero-padded, so N
    samples give ``1 + ceil((N - win) / hop)`` frames (4 per 25 fps video frame, minus one).
    Coefficient 0 is the log frame energy. Empty audio gives a (n_mfcc, 0) array.
    """
    cfg = cfg or AudioConfig()
    x = _mono(audio)
    if x.size == 0:
        return np.zeros((cfg.n_mfcc, 0), np.float32)
    x = x.astype(np.float64)
    emphasized = np.concatenate([x[:1], x[1:] - MFCC_PREEMPHASIS * x[:-1]])

    frame_len = _round_half_up(cfg.mfcc_win_s * sample_rate)
    hop = _round_half_up(cfg.mfcc_hop_s * sample_rate)
    n_frames = 1 if len(x) <= frame_len else 1 + math.ceil((len(x) - frame_len) / hop)
    padded = np.pad(emphasized, (0, (n_frames - 1) * hop + frame_len - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_len)[::hop]

    n_fft = MFCC_MIN_FFT
    while n_fft < frame_len:  # never truncate a frame (python_speech_features >= 0.6.1 does the same)
        n_fft *= 2
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft
    eps = np.finfo(np.float64).eps  # zeros (digital silence) would make log() -inf
    energy = np.maximum(power.sum(axis=1), eps)
    bands = np.maximum(power @ _mel_filterbank(MFCC_FILTERS, n_fft, sample_rate).T, eps)

    cepstra = np.log(bands) @ dct_matrix(MFCC_FILTERS)[: cfg.n_mfcc].T
    cepstra *= 1 + (MFCC_LIFTER / 2) * np.sin(np.pi * np.arange(cfg.n_mfcc) / MFCC_LIFTER)
    cepstra[:, 0] = np.log(energy)
    return np.ascontiguousarray(cepstra.T, dtype=np.float32)


def log_mel(audio: np.ndarray, sample_rate: int, cfg: AudioConfig | None = None) -> np.ndarray:
    """Log-power mel spectrogram (n_mels, N // mel_hop) float32 in dB (ref 1.0, 80 dB range).

    int16 input is scaled to [-1, 1]. Frames are centred on multiples of ``mel_hop`` samples and
    cut to ``N // mel_hop`` so that, at 16 kHz and 25 fps, frames ``4i .. 4i+3`` belong to video
    frame ``i``. Audio shorter than one hop gives a (n_mels, 0) array.
    """
    cfg = cfg or AudioConfig()
    y = _mono(audio)
    if np.issubdtype(y.dtype, np.integer):
        y = y.astype(np.float32) / 32768.0
    y = y.astype(np.float32, copy=False)
    n_frames = len(y) // cfg.mel_hop
    if n_frames == 0:
        return np.zeros((cfg.n_mels, 0), np.float32)
    db = log_mel_power(y, sample_rate, cfg.mel_n_fft, cfg.mel_hop, cfg.mel_win, cfg.n_mels, MEL_TOP_DB)
    return np.ascontiguousarray(db[:, :n_frames], dtype=np.float32)


def audio_features(
    audio: np.ndarray | None, sample_rate: int, cfg: AudioConfig | None = None
) -> AudioFeatures:
    """Both feature sets of one clip's audio; ``None`` (no audio stream) gives empty arrays."""
    cfg = cfg or AudioConfig()
    samples = np.zeros(0, np.int16) if audio is None else audio
    return AudioFeatures(mfcc=mfcc(samples, sample_rate, cfg), mel=log_mel(samples, sample_rate, cfg))


def _mono(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(f"audio must be mono samples of shape (N,), got shape {x.shape}")
    return x


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def dct_matrix(n: int) -> np.ndarray:
    """(n, n) orthonormal DCT-II: ``x @ dct_matrix(n).T`` is ``scipy.fft.dct(x, type=2,
    norm="ortho")`` along the last axis (to ~1e-15 relative; a product, not SciPy's FFT)."""
    k = np.arange(n)[:, None]
    basis = np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n))
    basis *= np.sqrt(2.0 / n)
    basis[0] *= np.sqrt(0.5)
    return basis


def _mel_filterbank(n_filters: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """Triangular filters (n_filters, n_fft // 2 + 1) on FFT bins, edges floored to whole bins
    (the HTK-style bank python_speech_features uses, not librosa's Slaney one)."""
    mel_edges = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_filters + 2)
    edges = np.floor((n_fft + 1) * _mel_to_hz(mel_edges) / sample_rate)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bins = np.arange(n_fft // 2 + 1)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((bins >= left) & (bins < centre), (bins - left) / (centre - left), 0.0)
        falling = np.where((bins >= centre) & (bins < right), (right - bins) / (right - centre), 0.0)
    return rising + falling
