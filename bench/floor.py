"""The lowest preprocessing wall time today's samples allow on this machine.

Two costs no reordering of the pipeline removes without changing which pixels the face
detector or the crops see: the pipeline's own decode (PyAV into the frame store, every frame,
nothing else) and RetinaFace's network on the every-k-th frames it must see. Spread perfectly
over every core with nothing else running, they still take ``(decode CPU + network CPU) /
cores`` seconds, and never less than the decode's own wall time. That over FFmpeg's decode is
the floor ``make bench`` prints beside issue 18's ratio targets: a target below it needs other
samples (fewer or smaller detections) or other hardware, not a faster pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.preprocess_config import PreprocessConfig
from preprocess.faces.detector import FaceDetector
from preprocess.media import FrameBuffer, decode
from preprocess.pipeline import detection_frames


@dataclass(frozen=True)
class Floor:
    """One clip's unavoidable costs: seconds, CPU seconds summed over threads."""

    decode_wall: float
    decode_cpu: float
    network_cpu: float  # RetinaFace's forward passes alone, on the frames the pipeline detects on
    detections: int  # frames the detector sees

    def wall(self, cores: int) -> float:
        """The least wall time both costs need on ``cores`` cores."""
        return max(self.decode_wall, (self.decode_cpu + self.network_cpu) / max(1, cores))


def measure_floor(
    path: Path, detector: FaceDetector, cfg: PreprocessConfig, threads: int, repeat: int = 2
) -> Floor:
    """The pipeline's decode of ``path`` (the frame store, ``threads`` decoder threads; the
    fastest of ``repeat``), then the detector's network timed on its detection frames, prepared
    beforehand so that only the forward passes count."""
    buffer = FrameBuffer()
    best = None
    for _ in range(max(1, repeat)):
        start, cpu = time.perf_counter(), time.process_time()
        clip = decode(path, cfg.media, buffer, lazy=True, threads=threads)
        timing = (time.perf_counter() - start, time.process_time() - cpu)
        best = timing if best is None or timing[0] < best[0] else best
    chosen = detection_frames(len(clip.frames), cfg.detector.detect_every)
    frames = np.stack([clip.frames[int(i)] for i in chosen])
    size = detector.input_size(*frames.shape[1:3])
    step = max(1, cfg.detector.batch_size)
    batches = [detector.prepare(frames[i : i + step], size) for i in range(0, len(frames), step)]
    detector.network(batches[0])  # the first call allocates: not part of the steady cost
    cpu = time.process_time()
    for batch in batches:
        detector.network(batch)
    return Floor(best[0], best[1], time.process_time() - cpu, len(chosen))
