"""Score a list of videos: preprocessing in worker processes, overlapped with model inference.

The main thread feeds the worker pool and collects its results; an inference thread takes
the videos' samples, batches them across videos (greedily: whatever has arrived, up to the
batch size) and runs the model. Torch releases the GIL while it computes, so the pool keeps
being fed during inference. Every video ends with exactly one ``VideoScore``.

``detailed=True`` (``--per-second``, ``--explain``) also asks the model for each sample's
time-resolved scores and hands each finished video, with its samples, to ``on_detail`` (the
explanation pages are written then, so no batch keeps every sample in memory); off, the runner
does no more than the probabilities need.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from core.aggregation import aggregate, combine_log_odds
from core.calibration import IDENTITY, Calibration
from core.preprocess_data import VideoResult
from submission.per_second import video_seconds
from submission.preprocess_pool import PreprocessPool
from submission.scoring import SampleScore, SampleScorer, VideoScore, score_detailed
from submission.timing import RunTimings

log = logging.getLogger("submission")

_STOP = object()


def ensemble_calibration(scorer: object) -> Calibration:
    """An ensemble's mapping of its combined log-odds (its JSON's ``calibration``); identity
    for a single detector, whose own mapping is applied inside its scorer."""
    return getattr(scorer, "ensemble_calibration", IDENTITY)


@dataclass(frozen=True)
class VideoDetail:
    """A finished video with what explains its score: the preprocessing result (its samples,
    or its error; None when nothing came back) and each sample's score of each member."""

    score: VideoScore
    result: VideoResult | None = None
    sample_scores: tuple[tuple[SampleScore, ...], ...] = ()


@dataclass
class BatchResult:
    scores: list[VideoScore]  # one per input path, in input order
    timings: RunTimings
    pool_restarts: int = 0


class _Collector:
    """Gathers scores from both threads, with the progress bar."""

    def __init__(
        self,
        paths: Sequence[str],
        timings: RunTimings,
        progress: bool,
        on_score: Callable[[VideoScore], None] | None = None,
        on_detail: Callable[[VideoDetail], None] | None = None,
    ):
        self.names = [Path(p).name for p in paths]
        self.scores: dict[int, VideoScore] = {}
        self.on_score = on_score
        self.on_detail = on_detail
        self.timings = timings
        self.lock = threading.Lock()
        self.bar = tqdm(
            total=len(paths),
            desc="videos",
            unit="video",
            file=sys.stderr,
            disable=not progress,
            mininterval=0.5,
        )

    def put(
        self,
        index: int,
        score: VideoScore,
        result: VideoResult | None = None,
        sample_scores: tuple[tuple[SampleScore, ...], ...] = (),
    ) -> None:
        with self.lock:
            if index in self.scores:  # never count a video twice
                return
            self.scores[index] = score
            if self.on_score is not None:  # under the lock: one video at a time
                self.on_score(score)
            if self.on_detail is not None:
                try:
                    self.on_detail(VideoDetail(score, result, sample_scores))
                except Exception:  # an explanation that fails never costs the video its score
                    log.exception("explaining %s failed", score.filename)
            if not score.ok:
                self.timings.failed += 1
                self.bar.set_postfix(failed=self.timings.failed, refresh=False)
            self.bar.update(1)

    def fail(self, index: int, reason: str, result: VideoResult | None = None) -> None:
        self.put(index, VideoScore(self.names[index], None, reason), result)


class _InferenceThread(threading.Thread):
    def __init__(
        self, scorer: SampleScorer, how: str, collector: _Collector, max_queued: int, detailed: bool = False
    ):
        super().__init__(name="inference", daemon=True)
        self.scorer = scorer
        self.detailed = detailed
        self.how = how
        self.collector = collector
        # bounded: when inference is the bottleneck the pool waits instead of filling memory
        self.inbox: queue.Queue = queue.Queue(maxsize=max_queued)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            stop = False
            while not stop:
                item = self.inbox.get()
                if item is _STOP:
                    break
                batch = [item]
                n = len(item[1].samples)
                while n < self.scorer.batch_size:
                    try:
                        item = self.inbox.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                    n += len(item[1].samples)
                self._score(batch)
        except BaseException as exc:  # recorded; the videos it never scored fail, the run goes on
            self.error = exc
            log.exception("inference thread stopped")

    def offer(self, item: object) -> bool:
        """Queue an item, waiting while the queue is full; False if the thread has stopped."""
        while self.is_alive():
            try:
                self.inbox.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _score(self, batch: list[tuple[int, VideoResult]]) -> None:
        samples = [s for _, result in batch for s in result.samples]
        start = time.perf_counter()
        detail: list[tuple[SampleScore, ...]] = []
        try:
            if self.detailed:
                detail = score_detailed(self.scorer, samples)
                probs = np.array([[m.probability for m in row] for row in detail], np.float64)
            else:
                probs = np.asarray(self.scorer.score(samples), dtype=np.float64)
            if len(probs) != len(samples):
                raise ValueError(f"scorer returned {len(probs)} probabilities for {len(samples)} samples")
            probs = probs.reshape(len(samples), -1)  # (samples, members); one detector is one member
        except Exception as exc:
            if len(batch) > 1:  # find the video that breaks the batch; score the others
                for video in batch:
                    self._score([video])
                return
            index = batch[0][0]
            log.debug("inference failed on %s", self.collector.names[index], exc_info=True)
            self.collector.fail(index, f"inference_error: {type(exc).__name__}: {exc}", batch[0][1])
            return
        with self.collector.lock:
            self.collector.timings.add_batch(time.perf_counter() - start, len(samples))
        offset = 0
        for index, result in batch:
            track_probs = probs[offset : offset + len(result.samples)]
            track_detail = tuple(detail[offset : offset + len(result.samples)])
            offset += len(result.samples)
            members = []
            for column in track_probs.T:  # each member's video score, by the same rule
                finite = column[np.isfinite(column)]
                members.append(float(np.clip(aggregate(finite, self.how), 0.0, 1.0)) if finite.size else None)
            if None in members:
                self.collector.fail(index, "inference_error: non-finite model output", result)
                continue
            if len(members) == 1:
                p, per_member = members[0], ()
            else:
                p = combine_log_odds(members, self.scorer.member_weights, ensemble_calibration(self.scorer))
                per_member = tuple(members)
            name = self.collector.names[index]
            tracks = tuple(map(float, track_probs[:, 0])) if len(members) == 1 else ()
            seconds = None
            if self.detailed:
                try:
                    seconds = video_seconds(
                        result.samples,
                        track_detail,
                        self.scorer.member_weights,
                        ensemble_calibration(self.scorer),
                    )
                except Exception:  # a bad time output costs the video its rows, never its score
                    log.warning("no per-second scores for %s", name, exc_info=True)
                    seconds = ()
            score = VideoScore(name, p, "", tracks, per_member, seconds, video_warning(result))
            self.collector.put(index, score, result, track_detail)


# Preprocessing warnings (preprocess.media.decode) that mean the file holds less than it
# declares: the video is scored from what decodes, and the sidecar says so.
PARTIAL_WARNINGS = ("partial", "video_truncated")


def video_warning(result: VideoResult) -> str:
    """``partial: <what decode noticed>`` when the video's file is cut short, else ""."""
    notes = sorted({w for s in result.samples for w in s.meta.warnings if w.startswith(PARTIAL_WARNINGS)})
    if not notes:
        return ""
    return "partial: " + "; ".join(n.split(":", 1)[1].strip() if ":" in n else n for n in notes)


def _feed(pool: PreprocessPool, paths: list[str], inference: _InferenceThread, collector: _Collector) -> None:
    """Preprocessing results -> the inference thread (or straight to a failure)."""
    for index, result in pool.results(paths):
        with collector.lock:
            collector.timings.add_stages(result.timings)
        if result.error is not None:
            collector.fail(index, result.error.reason, result)
        elif not result.samples:
            collector.fail(index, "no_face", result)
        elif not inference.offer((index, result)):
            collector.fail(index, "inference_error: inference thread stopped")


def score_videos(
    paths: Sequence[str | Path],
    pool: PreprocessPool,
    scorer: SampleScorer,
    *,
    how: str = "max",
    progress: bool = True,
    on_score: Callable[[VideoScore], None] | None = None,
    detailed: bool = False,
    on_detail: Callable[[VideoDetail], None] | None = None,
) -> BatchResult:
    """Preprocess and score every video; failures become scores with a reason, never exceptions.
    ``on_score`` is called with each video's score as soon as it is known (the journal);
    ``detailed``: each score carries its per-second scores, and ``on_detail`` gets each video
    with its samples (see the module docstring)."""
    aggregate([0.5], how)  # reject an unknown aggregation before any work
    paths = [str(p) for p in paths]
    timings = RunTimings(videos=len(paths))
    collector = _Collector(paths, timings, progress, on_score, on_detail)
    inference = _InferenceThread(
        scorer, how, collector, max_queued=max(4, 2 * scorer.batch_size), detailed=detailed
    )
    start = time.perf_counter()
    inference.start()
    # log lines go above the progress bar instead of through it
    with logging_redirect_tqdm() if progress else contextlib.nullcontext():
        try:
            _feed(pool, paths, inference, collector)
        finally:
            inference.offer(_STOP)
            inference.join()
            timings.wall_s = time.perf_counter() - start
            for i in range(len(paths)):
                if (
                    i not in collector.scores
                ):  # a video nobody reported on (a stopped thread) still gets a row
                    collector.fail(i, "not_scored: no result came back for this video")
            collector.bar.close()
    scores = [collector.scores[i] for i in range(len(paths))]
    return BatchResult(scores=scores, timings=timings, pool_restarts=pool.restarts)
