"""One video in, one ``VideoResult`` out: decode → faces → tracks → crops → audio → SyncNet.

The submission container and the dataset cache both call ``Preprocessor.process``, so training
and inference can never preprocess differently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from preprocess.audio import audio_features
from preprocess.config import PreprocessConfig
from preprocess.faces.detector import FaceDetector
from preprocess.latency import SyncNetScorer
from preprocess.media import FrameBuffer, decode
from preprocess.tracks import build_tracks, crop_faces, uniform_indices
from preprocess.types import (
    AudioFeatures,
    Clip,
    FaceDetections,
    PreprocessError,
    Sample,
    SampleMeta,
    Track,
    VideoResult,
)

log = logging.getLogger(__name__)

MFCC_PER_FRAME = 4  # 100 Hz audio features against 25 fps video


class StageTimer:
    """Accumulates wall time per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


class Preprocessor:
    """Holds the networks (built once) and turns video files into Samples."""

    def __init__(
        self,
        cfg: PreprocessConfig | None = None,
        device: str = "cpu",
        detector: FaceDetector | None = None,
        syncnet: SyncNetScorer | None | bool = True,
    ):
        self.cfg = cfg or PreprocessConfig()
        self.detector = detector or FaceDetector.from_weights(
            self.cfg.detector.weights, self.cfg.detector, device
        )
        # syncnet=True: load the configured weights if present; None/False: run without SyncNet.
        if syncnet is True:
            syncnet = load_syncnet(self.cfg, device)
        self.syncnet: SyncNetScorer | None = syncnet or None
        # Reused across videos: faulting in ~1.5 GB of fresh pages per 1080p clip costs as much
        # as decoding it. Samples keep only copied crops, so reuse is safe.
        self.frame_buffer = FrameBuffer()

    def process(self, path: str | Path, label: int = -1) -> VideoResult:
        """Never raises for a bad video: the failure is returned with its reason."""
        path = str(path)
        timer = StageTimer()
        try:
            samples = self._process(path, label, timer)
        except PreprocessError as err:
            return VideoResult(path, error=err, timings=timer.seconds)
        except MemoryError:
            return VideoResult(path, error=PreprocessError(path, "out_of_memory"), timings=timer.seconds)
        except Exception as err:  # a bug or an unforeseen file must not stop a batch
            log.exception("unexpected failure on %s", path)
            error = PreprocessError(path, "internal_error", f"{type(err).__name__}: {err}")
            return VideoResult(path, error=error, timings=timer.seconds)
        return VideoResult(path, samples=samples, timings=timer.seconds)

    def _process(self, path: str, label: int, timer: StageTimer) -> list[Sample]:
        with timer("decode"):
            clip = decode(path, self.cfg.media, self.frame_buffer)
        with timer("detect"):
            detections = self.detect(clip.frames)
        with timer("track"):
            tracks = build_tracks(detections, len(clip.frames), self.cfg.track)
        if not tracks:
            raise PreprocessError(path, "no_face", f"no face track in {len(clip.frames)} frames")
        with timer("audio"):
            features = (
                audio_features(clip.audio, clip.sample_rate, self.cfg.audio) if clip.has_audio else None
            )
        return [self._sample(clip, track, len(tracks), features, label, timer) for track in tracks]

    def detect(self, frames: np.ndarray) -> list[FaceDetections | None]:
        """Detections on every k-th frame; ``None`` marks frames the detector skipped."""
        every = max(1, self.cfg.detector.detect_every)
        chosen = np.arange(0, len(frames), every)
        if len(frames) and chosen[-1] != len(frames) - 1:
            chosen = np.append(chosen, len(frames) - 1)  # anchor the track's end
        found = self.detector.detect(frames[chosen])
        detections: list[FaceDetections | None] = [None] * len(frames)
        for index, faces in zip(chosen, found, strict=True):
            detections[index] = faces
        return detections

    def _sample(
        self,
        clip: Clip,
        track: Track,
        num_tracks: int,
        features: AudioFeatures | None,
        label: int,
        timer: StageTimer,
    ) -> Sample:
        warnings = list(clip.warnings)
        start, stop = int(track.frame_indices[0]), int(track.frame_indices[-1]) + 1
        latency = None
        with timer("crop"):
            face_idx = uniform_indices(track, self.cfg.sample.num_frames)
            need_all = self.syncnet is not None and features is not None
            crops = crop_faces(clip.frames, track, self.cfg.track, None if need_all else face_idx)
            faces = crops[face_idx - start] if need_all else crops
        if features is None:
            warnings.append("no_audio")
        elif self.syncnet is None:
            warnings.append("no_syncnet_weights")
        else:
            with timer("syncnet"):
                mfcc = features.mfcc[:, start * MFCC_PER_FRAME : stop * MFCC_PER_FRAME]
                try:
                    latency = self.syncnet.latency(crops, mfcc)
                except ValueError as err:  # too short for one SyncNet window
                    warnings.append(f"no_latency: {err}")
        empty = np.zeros((self.cfg.audio.n_mfcc, 0), np.float32)
        meta = SampleMeta(
            video=Path(clip.info.path).name,
            source=clip.info.path,
            fps=clip.fps,
            duration=clip.duration,
            has_audio=clip.has_audio,
            num_tracks=num_tracks,
            track_id=track.track_id,
            label=label,
            warnings=sorted(set(warnings)),
        )
        return Sample(
            meta=meta,
            faces=faces,
            face_frame_indices=face_idx.astype(np.int64),
            boxes=track.boxes.astype(np.float32),
            frame_start=start,
            audio=clip.audio if clip.has_audio else np.zeros(0, np.int16),
            mfcc=features.mfcc if features is not None else empty,
            mel=features.mel if features is not None else np.zeros((self.cfg.audio.n_mels, 0), np.float32),
            latency=latency,
        )


def load_syncnet(cfg: PreprocessConfig, device: str = "cpu") -> SyncNetScorer | None:
    """The configured SyncNet, or None (samples then say ``no_syncnet_weights``)."""
    try:
        return SyncNetScorer.from_weights(cfg.sync.weights, cfg.sync, device)
    except FileNotFoundError:
        log.warning("SyncNet weights %r not found: latency features disabled", cfg.sync.weights)
        return None
