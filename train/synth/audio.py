"""Speech-like audio for synthetic talking faces.

Syllables (a raised-cosine amplitude envelope at 3–6 Hz, grouped into words and pauses)
modulate a harmonic source whose partials are shaped by three formant resonances, plus
short noise bursts for consonant onsets. The per-frame mouth opening is the smoothed
syllable envelope, so lips and sound carry the same timing, as in real speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Speech:
    audio: np.ndarray  # (N,) int16 mono
    sample_rate: int
    opening: np.ndarray  # (T,) float32 in [0, 1]: mouth opening per video frame


def _syllable_schedule(rng: np.random.Generator, seconds: float) -> list[tuple[float, float, float, float]]:
    """(start, duration, peak, openness) per syllable; openness drives F1 and the mouth."""
    out = []
    t = rng.uniform(0.05, 0.35)
    while t < seconds - 0.15:
        for _ in range(int(rng.integers(1, 5))):  # syllables per word
            dur = rng.uniform(0.12, 0.30)
            if t + dur > seconds - 0.02:
                break
            out.append((t, dur, rng.uniform(0.45, 1.0), rng.uniform(0.2, 1.0)))
            t += dur + rng.uniform(0.01, 0.06)
        t += rng.uniform(0.08, 0.45) if rng.random() < 0.85 else rng.uniform(0.5, 0.9)
    return out


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return np.convolve(np.pad(x, radius, mode="edge"), k / k.sum(), mode="valid")


def synthesize_speech(
    rng: np.random.Generator,
    seconds: float,
    fps: float = 25.0,
    sample_rate: int = 16000,
    f0: float | None = None,
) -> Speech:
    """A speech-like utterance of ``seconds`` and the mouth opening that goes with it."""
    n = int(round(seconds * sample_rate))
    hop = 80  # control signals are built on a 5 ms grid, then interpolated
    tc = np.arange(0, n + hop, hop) / sample_rate
    env = np.zeros_like(tc)
    open_c = np.zeros_like(tc)
    f1 = np.full_like(tc, 450.0)
    f2 = np.full_like(tc, 1500.0)
    bursts = []
    for start, dur, peak, openness in _syllable_schedule(rng, seconds):
        inside = (tc >= start) & (tc < start + dur)
        phase = (tc[inside] - start) / dur
        shape = np.sin(np.pi * phase) ** 0.8  # fast attack, slower release, like a vowel nucleus
        env[inside] = np.maximum(env[inside], peak * shape)
        open_c[inside] = np.maximum(open_c[inside], openness * peak * shape)
        f1[inside] = 300 + 550 * openness  # open vowels have a high first formant
        f2[inside] = rng.uniform(900, 2300)
        if rng.random() < 0.6:
            bursts.append((start - 0.02, rng.uniform(0.03, 0.07), rng.uniform(0.08, 0.25)))
    f1 = _smooth(f1, 4)
    f2 = _smooth(f2, 4)

    t = np.arange(n) / sample_rate
    base = f0 if f0 is not None else rng.uniform(95, 230)
    f0_c = base * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * tc + rng.uniform(0, 6.3)))
    f0_c *= 1 - 0.06 * tc / max(seconds, 1e-3)  # declination over the utterance
    f0_s = np.interp(t, tc, f0_c)
    phase = 2 * np.pi * np.cumsum(f0_s) / sample_rate
    f1_s, f2_s = np.interp(t, tc, f1), np.interp(t, tc, f2)
    f3 = rng.uniform(2400, 3000)
    voiced = np.zeros(n)
    for k in range(1, int(3800 / base) + 1):
        fk = k * f0_s
        gain = (
            1.0 / (1 + ((fk - f1_s) / 90) ** 2)
            + 0.6 / (1 + ((fk - f2_s) / 120) ** 2)
            + 0.3 / (1 + ((fk - f3) / 160) ** 2)
        ) / k**0.6
        voiced += gain * np.sin(k * phase)
    voiced /= np.abs(voiced).max() + 1e-9
    signal = voiced * np.interp(t, tc, env)
    for start, dur, amp in bursts:  # consonant-like noise onsets, high-passed by differencing
        a, b = int(max(0, start) * sample_rate), int(min(seconds, start + dur) * sample_rate)
        if b > a:
            burst = np.diff(rng.standard_normal(b - a + 1)) * np.hanning(b - a)
            signal[a:b] += amp * burst / 2
    signal += 0.003 * rng.standard_normal(n)  # room noise
    signal *= 0.6 / (np.abs(signal).max() + 1e-9)
    audio = np.clip(signal * 32767, -32768, 32767).astype(np.int16)

    num_frames = int(round(seconds * fps))
    frame_t = (np.arange(num_frames) + 0.5) / fps
    opening = _smooth(np.interp(frame_t, tc, open_c), 0.8)
    opening = np.clip(opening / (opening.max() + 1e-6), 0, 1) ** 0.8
    return Speech(audio=audio, sample_rate=sample_rate, opening=opening.astype(np.float32))


def opening_from_audio(audio: np.ndarray, sample_rate: int, num_frames: int, fps: float = 25.0) -> np.ndarray:
    """Mouth opening driven by an arbitrary waveform's loudness (used to re-drive a mouth)."""
    x = audio.astype(np.float32) / 32768.0
    per = sample_rate / fps
    rms = np.array(
        [np.sqrt(np.mean(x[int(i * per) : int((i + 1) * per)] ** 2) + 1e-12) for i in range(num_frames)]
    )
    rms = _smooth(rms, 0.8)
    return (np.clip(rms / (rms.max() + 1e-6), 0, 1) ** 0.8).astype(np.float32)
