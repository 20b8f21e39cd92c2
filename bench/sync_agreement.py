"""Does the sampled offset search give the full search's answer? Measured on real talking faces
whose audio is shifted by known amounts.

For each clip the main face track is cropped at every frame (as the full search needs) and
SyncNet embeds every lip window once; the audio, padded with ``max_shift`` frames of silence on
both sides, is embedded once too. Delaying the audio by ``s`` frames (what
``train.sync_pretrain.shifted_mfcc`` does) then only moves which audio embedding sits under which
frame: ``A_s[n] = A_padded[n + max_shift - s]``, so every shift costs no network call. The full
search uses every lip window; a sampled configuration (``SyncConfig.windows``/``runs``) the
ones its ``plan`` picks: exactly what ``SyncNetScorer.latency`` computes, since it embeds the
windows it reads with the same network.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.preprocess_config import PreprocessConfig, SyncConfig
from core.preprocess_data import PreprocessError
from preprocess.audio import mfcc as compute_mfcc
from preprocess.latency import (
    AUDIO_WINDOW,
    MFCC_PER_FRAME,
    SyncNetScorer,
    _audio_batch,
    _lip_batch,
    offset_search,
)
from preprocess.pipeline import Preprocessor
from preprocess.tracks import crop_faces

log = logging.getLogger(__name__)


@dataclass
class TrackEmbeddings:
    name: str
    lip: np.ndarray  # (N, D): every lip window of the main track
    audio_padded: np.ndarray  # (N + 2 * pad, D): audio windows of the silence-padded soundtrack
    pad: int

    def audio_shifted(self, shift: int) -> np.ndarray:
        """Audio embeddings under frames 0..N-1 with the audio delayed by ``shift`` frames."""
        start = self.pad - shift
        return self.audio_padded[start : start + len(self.lip)]


@dataclass
class Agreement:
    """Sampled search against the full one over trials (clip, shift)."""

    label: str
    trials: int = 0
    same_offset: int = 0  # sampled offset == full search's offset
    near_offset: int = 0  # within one frame of it
    full_correct: int = 0  # full search finds the shift (within one frame)
    sampled_correct: int = 0
    kept: int = 0  # both find it: the full search's right answers the sampled one keeps
    confidence_change: list[float] = field(default_factory=list)  # sampled - full

    def add(self, shift: int, full, sampled) -> None:
        self.trials += 1
        self.same_offset += sampled.offset == full.offset
        self.near_offset += abs(sampled.offset - full.offset) <= 1
        full_right, sampled_right = abs(full.offset + shift) <= 1, abs(sampled.offset + shift) <= 1
        self.full_correct += full_right
        self.sampled_correct += sampled_right
        self.kept += full_right and sampled_right
        self.confidence_change.append(sampled.confidence - full.confidence)

    def row(self) -> str:
        change = np.abs(self.confidence_change) if self.confidence_change else np.zeros(1)
        n = max(self.trials, 1)
        return (
            f"{self.label:<22} same offset {self.same_offset / n:6.1%}, ±1 {self.near_offset / n:6.1%}"
            f" | shift found ±1: full {self.full_correct / n:5.1%}, sampled {self.sampled_correct / n:5.1%},"
            f" kept {self.kept}/{self.full_correct}"
            f" | |Δconf| median {np.median(change):.2f}, p90 {np.quantile(change, 0.9):.2f}"
        )


def embed_tracks(
    videos: Iterable[str | Path],
    scorer: SyncNetScorer,
    cfg: PreprocessConfig | None = None,
    max_shift: int = 10,
    device: str = "cpu",
) -> list[TrackEmbeddings]:
    """Every lip window of each video's longest face track, and its padded audio's windows."""
    cfg = cfg or PreprocessConfig()
    full = SyncNetScorer(scorer.runtime, dataclasses.replace(scorer.cfg, windows=0, stride=1))
    pre = Preprocessor(cfg, device=device, syncnet=False)
    out = []
    for path in videos:
        try:
            clip, track = pre.speaking_face(path)
        except PreprocessError as err:
            log.warning("agreement: skipping %s", err)
            continue
        start, stop = int(track.frame_indices[0]), int(track.frame_indices[-1]) + 1
        faces = crop_faces(clip.frames, track, cfg.track)
        per_frame = clip.sample_rate / clip.fps
        audio = clip.audio[int(round(start * per_frame)) : int(round(stop * per_frame))]
        quiet = np.zeros(int(round(max_shift * per_frame)), np.int16)
        mfcc_padded = compute_mfcc(np.concatenate([quiet, audio, quiet]), clip.sample_rate, cfg.audio)
        mfcc = compute_mfcc(audio, clip.sample_rate, cfg.audio)
        try:
            lip, _, _ = full.embed(faces, mfcc)
        except ValueError as err:
            log.warning("agreement: skipping %s: %s", path, err)
            continue
        windows = np.arange(len(lip) + 2 * max_shift)
        if (mfcc_padded.shape[1] - AUDIO_WINDOW) // MFCC_PER_FRAME + 1 < len(windows):
            log.warning("agreement: skipping %s: padded audio too short", path)
            continue
        one_lip = _lip_batch(faces, np.arange(len(faces)), np.zeros(1, np.int64))  # the runtime wants both
        _, audio_emb = full.runtime(one_lip, _audio_batch(mfcc_padded, windows))
        out.append(TrackEmbeddings(Path(path).name, lip, audio_emb, max_shift))
    return out


def compare(
    tracks: Sequence[TrackEmbeddings],
    configs: Sequence[SyncConfig],
    shifts: Sequence[int],
    valid_only: bool = False,
) -> list[Agreement]:
    """Each sampled configuration's agreement with the full search over ``tracks`` × ``shifts``
    (``valid_only``: the scorer's padding rule, ``SyncNetScorer.valid_only``)."""
    results = [Agreement(f"windows {c.windows}, runs {c.runs}") for c in configs]
    for track in tracks:
        n = len(track.lip)
        every = np.arange(n)
        for shift in shifts:
            audio = track.audio_shifted(shift)
            full = offset_search(track.lip, audio, every, configs[0].vshift, valid_only=valid_only)
            for config, agreement in zip(configs, results, strict=True):
                # the same plan SyncNetScorer.latency makes on a track of this many windows
                plan = SyncNetScorer(_NoRuntime(), config).plan(n + 4, 4 * n + 16)
                sampled = offset_search(
                    track.lip[plan.lip], audio, plan.lip, config.vshift, valid_only=valid_only
                )
                agreement.add(shift, full, sampled)
    return results


class _NoRuntime:
    """Planning needs no network."""

    name = "none"

    def __call__(self, *inputs):
        raise AssertionError("compare() plans windows only")
