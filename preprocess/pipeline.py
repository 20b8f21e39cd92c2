"""One video in, one ``VideoResult`` out: decode → faces → tracks → crops → audio → SyncNet.

The submission container and the dataset cache both call ``Preprocessor.process``, so training
and inference can never preprocess differently. Face detection runs on a second thread while
the video is still decoding (``DetectionStage``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.preprocess_config import DetectorConfig, PreprocessConfig
from core.preprocess_data import (
    AudioFeatures,
    Clip,
    FaceDetections,
    PreprocessError,
    Sample,
    SampleMeta,
    Track,
    VideoResult,
)
from core.threads import thread_budget
from preprocess.audio import audio_features
from preprocess.faces.detector import FaceDetector
from preprocess.latency import SyncNetScorer
from preprocess.media import FrameBuffer, decode
from preprocess.tracks import (
    build_tracks,
    crop_faces,
    crop_landmarks,
    per_second_indices,
    steady_track,
    uniform_indices,
    window_indices,
)

log = logging.getLogger(__name__)

MFCC_PER_FRAME = 4  # 100 Hz audio features against 25 fps video


class StageTimer:
    """Accumulates wall time (``seconds``) and process CPU time (``cpu_seconds``) per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + time.process_time() - cpu_start


def detection_frames(num_frames: int, every: int) -> np.ndarray:
    """Frames the detector runs on: every k-th, plus the last (it anchors the tracks' end)."""
    chosen = np.arange(0, num_frames, max(1, every))
    if num_frames and chosen[-1] != num_frames - 1:
        chosen = np.append(chosen, num_frames - 1)
    return chosen


class DetectionStage:
    """Runs the face detector on a worker thread, fed by ``decode``'s ``on_frames`` hook.

    Each batch of every-k-th frames goes to the detector as soon as it is decoded, so detection
    uses the CPU the decoder leaves idle (PyAV and torch release the GIL while they compute).
    Batches are cut exactly as ``Preprocessor.detect`` cuts them, so the detections are the same.
    Use as a context manager: leaving it, normally or by an exception, stops and joins the thread.
    """

    def __init__(self, detector: FaceDetector, cfg: DetectorConfig):
        self.detector = detector
        self.every = max(1, cfg.detect_every)
        self.batch_size = max(1, cfg.batch_size)
        self.cpu_seconds = 0.0  # CPU time of the worker thread (torch's own threads excluded)
        self._jobs: queue.SimpleQueue[tuple[np.ndarray, list[int]] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._next = 0  # next frame index to pick for detection
        self._pending: list[int] = []  # picked, waiting for a full batch
        self._submitted: list[int] = []
        self._found: list[FaceDetections] = []  # in the order of _submitted
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="face-detection", daemon=True)

    def __enter__(self) -> DetectionStage:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def on_frames(self, frames: np.ndarray, count: int) -> None:
        """``decode``'s hook: queue the picked frames among the first ``count`` slots."""
        if self._error is not None:
            raise self._error  # stop decoding: the result would be thrown away
        while self._next < count:
            self._pending.append(self._next)
            self._next += self.every
            if len(self._pending) == self.batch_size:
                self._submit(frames, self._pending)
                self._pending = []

    def finish(self, frames: np.ndarray) -> list[FaceDetections | None]:
        """Detections for the whole decoded clip ``frames``, once the worker has caught up;
        ``None`` marks frames the detector skipped. Raises what the detector raised."""
        num_frames = len(frames)
        self.on_frames(frames, num_frames)
        picked = self._pending
        if num_frames and (num_frames - 1) % self.every:
            picked.append(num_frames - 1)
        for start in range(0, len(picked), self.batch_size):
            self._submit(frames, picked[start : start + self.batch_size])
        self._pending = []
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        detections: list[FaceDetections | None] = [None] * num_frames
        for index, faces in zip(self._submitted, self._found, strict=True):
            detections[index] = faces
        return detections

    def close(self) -> None:
        """Stop the worker after its current batch and wait for it (idempotent)."""
        if self._thread.is_alive():
            self._stop.set()
            self._jobs.put(None)
            self._thread.join()

    def _submit(self, frames: np.ndarray, indices: list[int]) -> None:
        self._submitted += indices
        self._jobs.put((frames, list(indices)))

    def _work(self) -> None:
        start = time.thread_time()
        try:
            while not self._stop.is_set():
                job = self._jobs.get()
                if job is None:
                    break
                frames, indices = job
                self._found += self.detector.detect(frames[indices])
        except BaseException as err:  # handed to the decoding thread, which raises it
            self._error = err
        finally:
            self.cpu_seconds = time.thread_time() - start


class Preprocessor:
    """Holds the networks (built once) and turns video files into Samples."""

    def __init__(
        self,
        cfg: PreprocessConfig | None = None,
        device: str = "cpu",
        detector: FaceDetector | None = None,
        syncnet: SyncNetScorer | None | bool = True,
        decode_threads: int = 0,
    ):
        """``decode_threads``: the video decoder's threads; 0: this process's thread budget
        (``core.threads.thread_budget``: a worker's share of the cores, not FFmpeg's one thread
        per core it sees, which in a container limited to 2 CPUs of a big host is dozens)."""
        self.cfg = cfg or PreprocessConfig()
        self.decode_threads = decode_threads
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
        """Timings: ``decode`` is decoding's wall time, with detection running alongside;
        ``detect`` only the wait for detection after decoding ended, ``detect_cpu`` the detector
        thread's CPU time; ``preprocess_wall``/``_cpu`` span decoding to the last crop (SyncNet
        excluded); ``syncnet_cpu`` is SyncNet's CPU time, all threads."""
        start, cpu_start = time.perf_counter(), time.process_time()
        with DetectionStage(self.detector, self.cfg.detector) as detection:
            with timer("decode"):
                clip = decode(
                    path,
                    self.cfg.media,
                    self.frame_buffer,
                    on_frames=detection.on_frames,
                    lazy=True,
                    threads=self.decode_threads or thread_budget(),
                )
            with timer("detect"):
                detections = detection.finish(clip.frames)
        timer.seconds["detect_cpu"] = detection.cpu_seconds
        with timer("track"):
            tracks = build_tracks(detections, len(clip.frames), self.cfg.track)
        if not tracks:
            raise PreprocessError(path, "no_face", f"no face track in {len(clip.frames)} frames")
        with timer("audio"):
            features = (
                audio_features(clip.audio, clip.sample_rate, self.cfg.audio) if clip.has_audio else None
            )
        samples = [self._sample(clip, track, len(tracks), features, label, timer) for track in tracks]
        if "syncnet" in timer.cpu_seconds:
            timer.seconds["syncnet_cpu"] = timer.cpu_seconds["syncnet"]
        timer.seconds["preprocess_wall"] = time.perf_counter() - start - timer.seconds.get("syncnet", 0.0)
        timer.seconds["preprocess_cpu"] = (
            time.process_time() - cpu_start - timer.cpu_seconds.get("syncnet", 0.0)
        )
        return samples

    def speaking_face(self, path: str | Path) -> tuple[Clip, Track]:
        """A video with its audio and its longest face track (SyncNet's training and evaluation
        material). Raises ``PreprocessError`` (``no_audio``, ``no_face``, decoder errors)."""
        clip = decode(path, self.cfg.media)
        if not clip.has_audio:
            raise PreprocessError(str(path), "no_audio")
        tracks = build_tracks(self.detect(clip.frames), len(clip.frames), self.cfg.track)
        if not tracks:
            raise PreprocessError(str(path), "no_face")
        return clip, max(tracks, key=len)

    def detect(self, frames: np.ndarray) -> list[FaceDetections | None]:
        """Detections on every k-th frame of a decoded clip; ``None`` marks frames the detector
        skipped. (``process`` gets the same result while decoding, from ``DetectionStage``.)"""
        chosen = detection_frames(len(frames), self.cfg.detector.detect_every)
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
        # a still image (one frame) keeps one crop, not num_frames copies of it
        if self.cfg.sample.sampling == "per_second" and len(clip.frames) > 1:
            face_idx = per_second_indices(track.frame_indices, clip.fps, self.cfg.sample.chunk_frames)
        elif self.cfg.sample.sampling == "windows" and len(clip.frames) > 1:
            sample_cfg = self.cfg.sample
            face_idx = window_indices(track.frame_indices, sample_cfg.windows, sample_cfg.window_frames)
        else:
            face_idx = uniform_indices(track, self.cfg.sample.num_frames if len(clip.frames) > 1 else 1)
        plan = None  # the SyncNet windows: only their frames are cropped beyond the sample's
        if features is None:
            warnings.append("no_audio")
        elif self.syncnet is None:
            if self.cfg.sync.weights:  # empty: switched off by design (the detector reads no latency)
                warnings.append("no_syncnet_weights")
        else:
            mfcc = features.mfcc[:, start * MFCC_PER_FRAME : stop * MFCC_PER_FRAME]
            try:
                plan = self.syncnet.plan(stop - start, mfcc.shape[1])
            except ValueError as err:  # too short for one SyncNet window
                warnings.append(f"no_latency: {err}")
        crop_track = track
        if self.cfg.sample.sampling == "windows" and len(clip.frames) > 1:
            # one still crop per window (see steady_track); SyncNet's frames keep the moving box
            crop_track = steady_track(track, face_idx, self.cfg.sample.window_frames)
        with timer("crop"):
            wanted = face_idx if plan is None else np.union1d(face_idx, plan.video_frames + start)
            crops = None
            if plan is not None or crop_track is track:
                crops = crop_faces(clip.frames, track, self.cfg.track, wanted)
                faces = crops[np.searchsorted(wanted, face_idx)]
            if crop_track is not track:
                faces = crop_faces(clip.frames, crop_track, self.cfg.track, face_idx)
        if plan is not None:
            with timer("syncnet"):
                latency = self.syncnet.latency(crops, mfcc, wanted - start, plan)
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
            landmarks=crop_landmarks(crop_track, self.cfg.track, face_idx),
        )


def load_syncnet(cfg: PreprocessConfig, device: str = "cpu") -> SyncNetScorer | None:
    """The configured SyncNet, or None (samples then say ``no_syncnet_weights``); an empty
    ``sync.weights`` switches it off (a detector that does not read the latency vector)."""
    if not cfg.sync.weights:
        return None
    try:
        return SyncNetScorer.from_weights(cfg.sync.weights, cfg.sync, device)
    except FileNotFoundError:
        log.warning("SyncNet weights %r not found: latency features disabled", cfg.sync.weights)
        return None
