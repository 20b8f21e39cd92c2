"""Small real video files for tests, encoded on the fly with ``preprocess.media.write_video``.

Each frame carries its own index as a row of black/white blocks along the top (robust to lossy
coding), over a static gradient with a moving square, so a test can tell which source frame a
decoded frame came from. Audio is a 440 Hz tone.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from preprocess.media import write_video

INDEX_BITS = 10  # frame indices up to 1023


def pattern(index: int, size: tuple[int, int]) -> np.ndarray:
    """Frame ``index`` of the test pattern, (H, W, 3) uint8 RGB for ``size`` = (W, H)."""
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w]
    frame = np.stack([xs * 200 // max(1, w - 1), ys * 200 // max(1, h - 1), np.full_like(xs, 90)], -1)
    frame = frame.astype(np.uint8)
    side = max(4, min(w, h) // 5)
    x = (index * 3) % max(1, w - side)
    y = h // 2 - side // 2
    frame[y : y + side, x : x + side] = (250, 250, 40)
    band = _band_height(h)
    block = w // INDEX_BITS
    for bit in range(INDEX_BITS):
        on = (index >> bit) & 1
        frame[:band, bit * block : (bit + 1) * block] = 235 if on else 16
    return frame


def read_index(frame: np.ndarray) -> int:
    """Recover the index drawn by ``pattern`` from an upright decoded frame."""
    h, w = frame.shape[:2]
    band = _band_height(h)
    block = w // INDEX_BITS
    value = 0
    for bit in range(INDEX_BITS):
        cell = frame[band // 4 : band - band // 4, bit * block + block // 4 : (bit + 1) * block - block // 4]
        if cell.mean() > 128:
            value |= 1 << bit
    return value


def _band_height(h: int) -> int:
    return max(8, h // 8)


def tone(seconds: float, sample_rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def make_clip(
    path: str | Path,
    seconds: float = 2.0,
    fps: float = 25.0,
    size: tuple[int, int] = (160, 120),
    audio: bool = True,
    codec: str = "libx264",
    rotation: int = 0,
    sample_rate: int = 16000,
    audio_seconds: float | None = None,
    timestamps: np.ndarray | None = None,
    crf: int = 18,
) -> Path:
    """Encode a test clip; the container follows the suffix of ``path``. ``timestamps`` (seconds
    per frame) makes it variable-frame-rate; ``audio_seconds`` lets audio differ from video."""
    path = Path(path)
    count = len(timestamps) if timestamps is not None else max(1, round(seconds * fps))
    frames = np.stack([pattern(i, size) for i in range(count)])
    sound = tone(seconds if audio_seconds is None else audio_seconds, sample_rate) if audio else None
    write_video(
        path,
        frames,
        fps,
        audio=sound,
        sample_rate=sample_rate,
        codec=codec,
        crf=crf,
        rotation=rotation,
        timestamps=timestamps,
    )
    return path


def make_audio_only(path: str | Path, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    """An AAC file without any video stream (container by suffix, e.g. .m4a or .mp4)."""
    path = Path(path)
    samples = tone(seconds, sample_rate)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        stream.layout = "mono"
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + 1024], format="s16", layout="mono"
            )
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_png(path: str | Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A real PNG image, whatever the suffix of ``path`` says."""
    ok, data = cv2.imencode(".png", pattern(0, size)[:, :, ::-1])
    assert ok
    Path(path).write_bytes(data.tobytes())
    return Path(path)
