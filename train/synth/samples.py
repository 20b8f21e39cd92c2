"""Synthetic videos straight to ``Sample`` objects, skipping decode and face detection.

The generator knows where every face is, so tests and quick experiments can cut the face
crops from the ground-truth boxes instead of running the detector over encoded video. The
crops are square around the box centre, enlarged by ``crop_scale`` per side like the
pipeline's; with a ``SyncNetScorer`` the latency is computed exactly as preprocessing does.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Sample, SampleMeta
from preprocess.audio import audio_features, log_mel, mfcc
from preprocess.cache_layout import sample_path, write_settings
from preprocess.datasets import ManifestRow, VideoItem, write_manifest
from preprocess.latency import SyncNetScorer
from preprocess.sample_file import save_sample
from preprocess.tracks import per_second_indices
from train.synth.audio import synthesize_speech
from train.synth.face import Identity, draw_mouth, face_outline, mouth_box, render_head_base
from train.synth.videos import SynthVideo, shift_audio


def crop_square(frame: np.ndarray, box: np.ndarray, scale: float, size: int) -> np.ndarray:
    """The square around ``box`` grown by ``scale`` per side, resized to ``size``; the frame is
    edge-padded where the square leaves it."""
    x1, y1, x2, y2 = (float(v) for v in box)
    half = max(x2 - x1, y2 - y1) * (1 + 2 * scale) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    m = np.float32([[size / (2 * half), 0, size / 2 - cx * size / (2 * half)],
                    [0, size / (2 * half), size / 2 - cy * size / (2 * half)]])  # fmt: skip
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def video_to_sample(
    video: SynthVideo,
    cfg: PreprocessConfig | None = None,
    syncnet: SyncNetScorer | None = None,
    crop_size: int | None = None,
) -> Sample:
    """One Sample per synthetic video (one face). ``crop_size`` overrides the config's crop size
    for the kept face frames (small models need small crops; SyncNet always gets 224)."""
    cfg = cfg or PreprocessConfig()
    n = len(video.frames)
    if cfg.sample.sampling == "per_second":  # the pipeline's one-second chunks
        keep = per_second_indices(np.arange(n), video.fps, cfg.sample.chunk_frames)
    else:
        keep = np.round(np.linspace(0, n - 1, cfg.sample.num_frames)).astype(np.int64)
    size = crop_size or cfg.track.crop_size
    faces = np.stack([crop_square(video.frames[i], video.boxes[i], cfg.track.crop_scale, size) for i in keep])
    features = audio_features(video.audio, video.sample_rate, cfg.audio)
    latency, warnings = None, []
    if syncnet is None:
        warnings.append("no_syncnet_weights")
    else:
        crops = np.stack(
            [
                crop_square(f, b, cfg.track.crop_scale, 224)
                for f, b in zip(video.frames, video.boxes, strict=True)
            ]
        )
        latency = syncnet.latency(crops, features.mfcc)
    meta = SampleMeta(
        video=video.filename,
        source=video.filename,
        fps=video.fps,
        duration=n / video.fps,
        has_audio=True,
        num_tracks=1,
        track_id=0,
        label=video.label,
        warnings=warnings,
    )
    return Sample(
        meta=meta,
        faces=faces,
        face_frame_indices=keep,
        boxes=video.boxes.astype(np.float32),
        frame_start=0,
        audio=video.audio,
        mfcc=features.mfcc,
        mel=features.mel,
        latency=latency,
    )


def samples_from_videos(
    videos: Iterable[SynthVideo],
    cfg: PreprocessConfig | None = None,
    syncnet: SyncNetScorer | None = None,
    crop_size: int | None = None,
) -> list[tuple[SynthVideo, Sample]]:
    """(video without its frames, sample) pairs: frames are dropped to keep memory small."""
    out = []
    for video in videos:
        sample = video_to_sample(video, cfg, syncnet, crop_size)
        video.frames = video.frames[:0]
        out.append((video, sample))
    return out


def write_sample_cache(
    pairs: Iterable[tuple[SynthVideo, Sample]], out: str | Path, cfg: PreprocessConfig | None = None
) -> Path:
    """Save samples and a manifest laid out like ``python -m preprocess`` does; returns the manifest."""
    cfg = cfg or PreprocessConfig()
    out = Path(out)
    rows = []
    for video, sample in pairs:
        path = sample_path(out, video.filename, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_sample(sample, path)
        item = VideoItem(
            path=out / video.filename,
            filename=video.filename,
            label=video.label,
            split=video.split,
            original=video.original or None,
            group=Path(video.original or video.filename).stem,
            category=video.category,
            # a partial fake's segment, so localisation metrics work on these caches too
            fake_start=float(video.fake_start) if video.fake_start != "" else None,
            fake_end=float(video.fake_end) if video.fake_end != "" else None,
        )
        rows.append(ManifestRow(item, 0, path))
    write_settings(out, cfg, "synthetic")
    manifest = out / "manifest.csv"
    write_manifest(rows, manifest)
    return manifest


@functools.lru_cache(maxsize=64)
def _talker_head(seed: int, identity: int) -> tuple[Identity, np.ndarray, np.ndarray]:
    """Identity ``identity`` of ``seed``, its static head layer and its face box in the layer."""
    ident = Identity.random(np.random.default_rng([seed, 1, identity]))
    base_rgb, _ = render_head_base(ident, np.random.default_rng([seed, 4, identity]))
    outline = face_outline(ident)
    return ident, base_rgb, np.array([*outline.min(0), *outline.max(0)], np.float32)


def talking_sample(
    seed: int,
    index: int,
    seconds: float = 3.0,
    cfg: PreprocessConfig | None = None,
    crop_size: int = 64,
    identities: int | None = None,
    audio_shift_frames: int = 0,
    audio_from: int | None = None,
    fps: float = 25.0,
) -> Sample:
    """Utterance ``index`` of a synthetic talker straight to a ``"per_second"`` sample, drawing
    only the frames the sample keeps: the talker's still head with its mouth opening with the
    loudness of its speech-like soundtrack, cropped around the face (no eyes moving, background,
    camera motion or noise: the mouth and the sound are what changes). Talker ``index %
    identities`` speaks (default: a talker per utterance). ``audio_shift_frames`` moves the
    soundtrack against the face (the synthetic ``audio_shift`` fake), ``audio_from`` takes
    utterance ``audio_from``'s speech instead (``audio_swap``). Ten times cheaper than rendering
    whole videos: what audio-visual learning tests need in bulk."""
    cfg = (cfg or PreprocessConfig()).replace("sample", sampling="per_second")
    ident, base_rgb, box = _talker_head(seed, index % identities if identities else index)
    speech = synthesize_speech(np.random.default_rng([seed, 2, index]), seconds, fps=fps)
    num_frames = int(round(seconds * fps))
    keep = per_second_indices(np.arange(num_frames), fps, cfg.sample.chunk_frames)
    x0, y0, x1, y1 = mouth_box(ident)
    faces = []
    for i in keep:
        layer = base_rgb.copy()
        draw_mouth(layer[y0:y1, x0:x1], ident, float(speech.opening[i]), origin=(x0, y0))
        faces.append(
            crop_square(np.clip(layer, 0, 255).astype(np.uint8), box, cfg.track.crop_scale, crop_size)
        )
    audio = speech.audio
    if audio_from is not None:  # utterance audio_from's speech, drawn as its own sample draws it
        audio = synthesize_speech(np.random.default_rng([seed, 2, audio_from]), seconds, fps=fps).audio
    if audio_shift_frames:
        rng = np.random.default_rng([seed, 3, index])
        audio = shift_audio(audio, audio_shift_frames, fps, speech.sample_rate, rng)
    label = int(bool(audio_shift_frames) or audio_from is not None)
    meta = SampleMeta(
        video=f"talker_{index:04d}{'_fake' if label else ''}.mp4",
        source="synthetic",
        fps=fps,
        duration=num_frames / fps,
        has_audio=True,
        num_tracks=1,
        track_id=0,
        label=label,
        warnings=["no_syncnet_weights"],
    )
    return Sample(
        meta=meta,
        faces=np.stack(faces),
        face_frame_indices=keep,
        boxes=np.repeat(box[None], num_frames, axis=0),
        frame_start=0,
        audio=audio,
        mfcc=mfcc(audio, speech.sample_rate, cfg.audio),
        mel=log_mel(audio, speech.sample_rate, cfg.audio),
        latency=None,
    )
