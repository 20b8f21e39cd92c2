"""Stand-ins for the preprocessor and the fusion model, to test the submission's orchestration.

They live in their own light module (no torch) because spawned worker processes import it to
unpickle the factory. What a fake video does is spelt in its file name:

- ``p30``, ``p80`` ...: one face track per token, whose model probability is 0.30, 0.80
- ``noface``: no track; ``broken``: a decode error; ``raise``: process() raises
- ``crash``: the worker process dies (os._exit); ``hang``: sleeps (SIGALRM ends it)
- ``stuck``: sleeps with SIGALRM blocked (only killing the worker ends it)
- ``badmodel``: the fake model raises on it

``$FAKE_INIT_LOG`` collects the pid of every preprocessor built, ``$FAKE_PROCESS_LOG`` the
name of every video processed.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import PreprocessError, Sample, SampleMeta, VideoResult

BAD_MODEL_VALUE = 255  # a track value the fake model refuses


def fake_sample(path: str, value: int, track_id: int, num_tracks: int) -> Sample:
    meta = SampleMeta(
        video=Path(path).name,
        source=path,
        fps=25.0,
        duration=1.0,
        has_audio=False,
        num_tracks=num_tracks,
        track_id=track_id,
    )
    return Sample(
        meta=meta,
        faces=np.full((2, 4, 4, 3), value, np.uint8),
        face_frame_indices=np.arange(2),
        boxes=np.zeros((2, 4), np.float32),
        frame_start=0,
        audio=np.zeros((0,), np.int16),
        mfcc=np.zeros((13, 0), np.float32),
        mel=np.zeros((80, 0), np.float32),
        latency=None,
    )


class FakePreprocessor:
    """Built once per worker like the real one: counts its instances in ``$FAKE_INIT_LOG``."""

    def __init__(self, cfg: PreprocessConfig, device: str = "cpu"):
        self.cfg = cfg
        self.device = device
        log = os.environ.get("FAKE_INIT_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")

    def process(self, path: str | Path, label: int = -1) -> VideoResult:
        path = str(path)
        name = Path(path).name
        processed = os.environ.get("FAKE_PROCESS_LOG")
        if processed:
            with open(processed, "a") as f:
                f.write(f"{name}\n")
        timings = {"decode": 0.01, "detect": 0.02}
        if "crash" in name:
            os._exit(3)
        if "stuck" in name:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(600)
        if "hang" in name:
            time.sleep(600)
        if "raise" in name:
            raise RuntimeError("fake bug")
        if "broken" in name:
            return VideoResult(path, error=PreprocessError(path, "decode_error", "fake"), timings=timings)
        values = [int(v) for v in re.findall(r"(?:^|_)p(\d+)", Path(path).stem)]
        if "badmodel" in name:
            values = [BAD_MODEL_VALUE]
        if "noface" in name:
            values = []
        samples = [fake_sample(path, v, i, len(values)) for i, v in enumerate(values)]
        return VideoResult(path, samples=samples, timings=timings)


class FailingPreprocessor:
    def __init__(self, cfg: PreprocessConfig, device: str = "cpu"):
        raise FileNotFoundError("retinaface_mobilenetv2.safetensors: weights not found")


class FakeScorer:
    """P(fake) of a sample = its face pixel value / 100; records the batches it was given."""

    video_aggregation = "max"
    member_names: tuple[str, ...] = ()
    member_weights: tuple[float, ...] = ()
    description = "fake scorer"

    def __init__(self, batch_size: int = 4, preprocess_config: PreprocessConfig | None = None):
        self.batch_size = batch_size
        self.preprocess_config = preprocess_config or PreprocessConfig()
        self.batches: list[list[str]] = []

    def score(self, samples) -> np.ndarray:
        self.batches.append([s.meta.video for s in samples])
        values = [int(s.faces.flat[0]) for s in samples]
        if BAD_MODEL_VALUE in values:
            raise ValueError("fake model cannot score this sample")
        return np.array(values, np.float64) / 100.0


class TimedFakePreprocessor(FakePreprocessor):
    """As ``FakePreprocessor``, but each track's crops spread over 3 s (frames 0, 12, 25, 37,
    50, 62 at 25 fps) with a pixel value that rises by 5 per crop: a detector that scores each
    crop gets a different score every moment (tests of the per-second scores)."""

    FRAMES = (0, 12, 25, 37, 50, 62)

    def process(self, path: str | Path, label: int = -1) -> VideoResult:
        result = super().process(path, label)
        for s in result.samples:
            v = int(s.faces.flat[0])
            s.faces = np.stack(
                [np.full((4, 4, 3), min(v + 5 * i, 250), np.uint8) for i in range(len(self.FRAMES))]
            )
            s.face_frame_indices = np.array(self.FRAMES)
            s.boxes = np.zeros((self.FRAMES[-1] + 1, 4), np.float32)  # the track: frames 0..last crop
            s.meta.duration = 3.0
            s.meta.warnings = ["no_audio"]
        return result
