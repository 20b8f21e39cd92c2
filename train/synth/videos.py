"""Labelled synthetic talking-face videos, real and fake, for tests and the demo.

Real clips: a drawn head talking (mouth opening = smoothed loudness of its speech-like
audio), moving and blinking. Fakes are made from a real clip the ways real deepfakes differ:

- ``audio_shift``: the soundtrack moved by 5–12 frames (lips and sound out of sync);
- ``audio_swap``: another clip's soundtrack;
- ``face_blend``: another identity's inner face pasted in with a soft mask, at a lower
  resolution and with only partly corrected colour (a visible blend boundary);
- ``mouth_rerender``: the lower face regenerated at low resolution, smoothed and tinted
  around a flat, detail-free mouth (what lip-sync generators leave);
- ``mouth_redrive``: the same, with the mouth driven by another clip's audio.

Partial fakes (``partial`` > 0, ``python -m train synth --partial F``): that fraction of the
fakes keeps the real clip everywhere but in one segment of 1–3 s (at most half the clip), where
the fake's frames and/or soundtrack are spliced in: a face manipulation, a re-rendered mouth or
an audio-visual desync inside the segment only. Their category is ``partial_<category>`` and
labels.csv's ``fake_start,fake_end`` hold the segment in seconds (empty for fully real and
fully fake videos), what ``train eval`` localisation metrics compare against.

Splits are by identity: a fake stays in the split of the real clip it was made from.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.files import atomic_write
from core.isolated_pool import JobFailure
from core.worker_pool import make_pool
from train.synth.audio import Speech, synthesize_speech
from train.synth.face import Identity, inner_face_region, mouth_region
from train.synth.scene import Scene, face_boxes, head_layer, make_scene, render_frames

FAKE_CATEGORIES = ("audio_shift", "audio_swap", "face_blend", "mouth_rerender", "mouth_redrive")
VISUAL_CATEGORIES = ("face_blend", "mouth_rerender", "mouth_redrive")
LABEL_COLUMNS = ("filename", "label", "split", "original", "category", "fake_start", "fake_end")
PARTIAL_SECONDS = (1.0, 3.0)  # a partial fake's segment length, drawn uniformly


@dataclass
class SynthVideo:
    filename: str
    label: int  # 1 fake, 0 real
    split: str
    original: str  # the real clip a fake was made from ("" for reals)
    category: str  # "real" or one of FAKE_CATEGORIES
    detail: str  # e.g. "shift=+7"
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    audio: np.ndarray  # (N,) int16
    fps: float
    sample_rate: int
    boxes: np.ndarray  # (T, 4) float32 ground-truth face boxes (x1, y1, x2, y2)
    # A partial fake's manipulated segment in seconds; "" for real and fully fake videos (the
    # empty labels.csv cells).
    fake_start: float | str = ""
    fake_end: float | str = ""


@dataclass
class _Actor:
    """One real clip's ingredients, shared with the fakes made from it."""

    index: int
    split: str
    ident: Identity
    speech: Speech
    scene: Scene

    @property
    def name(self) -> str:
        return f"real_{self.index:04d}.mp4"


def assign_splits(n: int, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> list[str]:
    """Split names for ``n`` identities: train/val/test in ``fractions``; val and test get
    at least one each once n >= 3 (so there is always something held out)."""
    n_val = max(1 if n >= 3 else 0, int(round(n * fractions[1])))
    n_test = max(1 if n >= 2 else 0, int(round(n * fractions[2])))
    n_train = max(0, n - n_val - n_test)
    return ["train"] * n_train + ["val"] * n_val + ["test"] * n_test


def shift_audio(
    audio: np.ndarray, frames: int, fps: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Delay (frames > 0) or advance (< 0) a soundtrack, keeping its length; the gap gets room noise."""
    k = int(round(abs(frames) * sample_rate / fps))
    fill = (rng.standard_normal(k) * 30).astype(np.int16)
    if frames > 0:
        return np.concatenate([fill, audio[: len(audio) - k]])
    return np.concatenate([audio[k:], fill])


def _degrade(img: np.ndarray, factor: float) -> np.ndarray:
    """What a low-resolution face generator leaves: detail lost to down- and up-sampling."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, int(w / factor)), max(1, int(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def face_blend_edit(actor: _Actor, donor: _Actor, opening: np.ndarray, rng: np.random.Generator):
    """Layer edit pasting the donor's inner face (same pose, mouth and blinks) into the actor's head."""
    donor_base = donor.scene.base_rgb  # the donor as it looks in its own video
    mask = inner_face_region(actor.ident, feather=rng.uniform(2.0, 4.0))[..., None]
    target, source = np.asarray(actor.ident.skin), np.asarray(donor.ident.skin)
    correct = rng.uniform(0.0, 0.3)  # colour transfer only partly matches the skin tones
    gain = (1 - correct) + correct * target / np.maximum(source, 1.0)
    factor = rng.uniform(3.0, 5.0)
    jitter = rng.normal(0, 0.7, (actor.scene.num_frames, 2))  # per-frame alignment flicker

    def edit(i: int, layer: np.ndarray) -> np.ndarray:
        face = head_layer(actor.scene, donor.ident, donor_base, i, opening[i]) * gain.astype(np.float32)
        face = cv2.warpAffine(_degrade(face, factor), np.float32([[1, 0, jitter[i, 0]], [0, 1, jitter[i, 1]]]),
                              (face.shape[1], face.shape[0]), borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        return layer * (1 - mask) + face * mask

    return edit


def mouth_rerender_edit(actor: _Actor, opening: np.ndarray, rng: np.random.Generator):
    """Layer edit regenerating the lower face around a flat mouth driven by ``opening``: at a
    generator's low resolution, smoothed, and with a slight tint (lip-sync models re-render
    the lower half of the face and blend it back)."""
    mask = mouth_region(actor.ident, feather=rng.uniform(2.5, 4.5))[..., None]
    factor = rng.uniform(3.5, 6.0)
    sigma = rng.uniform(1.0, 2.0)
    tint = (1 + rng.choice([-1, 1], 3) * rng.uniform(0.06, 0.16, 3)).astype(np.float32)

    def edit(i: int, layer: np.ndarray) -> np.ndarray:
        alt = head_layer(actor.scene, actor.ident, actor.scene.base_rgb, i, opening[i], smooth_mouth=True)
        alt = cv2.GaussianBlur(_degrade(alt, factor), (0, 0), sigma) * tint
        return layer * (1 - mask) + alt * mask

    return edit


class _Cast:
    """The real clips' ingredients. Each identity is drawn from its own seed and its clip
    (speech, scene) is built on first use, so any shard of the videos can be rendered on its
    own, in another process, with results identical to a single-process run."""

    def __init__(self, n_real: int, seconds: float, fps: float, seed: int):
        self.seconds, self.fps, self.seed = seconds, fps, seed
        order = np.random.default_rng([seed, 0]).permutation(n_real)  # which identity lands in which split
        splits = assign_splits(n_real)
        self.splits = [splits[order[i]] for i in range(n_real)]
        self.idents = [Identity.random(np.random.default_rng([seed, 1, i])) for i in range(n_real)]
        self._actors: dict[int, _Actor] = {}

    def __len__(self) -> int:
        return len(self.idents)

    def actor(self, i: int) -> _Actor:
        if i not in self._actors:
            rng = np.random.default_rng([self.seed, 2, i])
            speech = synthesize_speech(rng, self.seconds, fps=self.fps)
            num_frames = int(round(self.seconds * self.fps))
            scene = make_scene(rng, self.idents[i], num_frames, self.fps)
            self._actors[i] = _Actor(i, self.splits[i], self.idents[i], speech, scene)
        return self._actors[i]

    def forget(self, i: int, keep: int = 32) -> None:
        """Drop clip ``i`` and, past ``keep`` cached clips, the rest (donors are rebuilt on demand)."""
        self._actors.pop(i, None)
        if len(self._actors) > keep:
            self._actors.clear()


def pick_donor(cast: _Cast, index: int, rng: np.random.Generator) -> int:
    """Another identity of the same split, preferring a visibly different skin tone (swaps
    between similar tones exist, but colour mismatch is the commonest tell)."""
    peers = [j for j in range(len(cast)) if j != index and cast.splits[j] == cast.splits[index]]
    peers = peers or [j for j in range(len(cast)) if j != index] or [index]
    tone = np.asarray(cast.idents[index].skin)
    far = [j for j in peers if np.abs(np.asarray(cast.idents[j].skin) - tone).mean() > 30]
    pool = far or peers
    return pool[int(rng.integers(len(pool)))]


def deal_categories(cast: _Cast, n_fakes: int, categories: Sequence[str]) -> dict[int, str]:
    """Fake category per real clip (the first ``n_fakes`` clips get a fake), dealt in turn split
    by split, so each split gets a run of consecutive categories: all of them once it has as
    many fakes as there are categories."""
    dealt = [i for split in ("train", "val", "test") for i in range(n_fakes) if cast.splits[i] == split]
    return {index: categories[k % len(categories)] for k, index in enumerate(dealt)}


def make_fake(cast: _Cast, k: int, category: str, frames: np.ndarray) -> SynthVideo:
    """The fake made from real clip ``k`` (whose rendered frames are ``frames``)."""
    rng = np.random.default_rng([cast.seed, 3, k])
    actor = cast.actor(k)
    donor = cast.actor(pick_donor(cast, k, rng))
    fps, sr = cast.fps, actor.speech.sample_rate
    audio, detail, fake_frames = actor.speech.audio, "", frames
    opening = actor.speech.opening
    if category == "audio_shift":
        shift = int(rng.integers(5, 13)) * (1 if rng.random() < 0.5 else -1)
        audio, detail = shift_audio(audio, shift, fps, sr, rng), f"shift={shift:+d}"
    elif category == "audio_swap":
        audio, detail = donor.speech.audio, f"audio_from={donor.name}"
    elif category == "face_blend":
        fake_frames = render_frames(actor.scene, opening, face_blend_edit(actor, donor, opening, rng))
        detail = f"face_from={donor.name}"
    elif category == "mouth_rerender":
        fake_frames = render_frames(actor.scene, opening, mouth_rerender_edit(actor, opening, rng))
    elif category == "mouth_redrive":
        fake_frames = render_frames(
            actor.scene, opening, mouth_rerender_edit(actor, donor.speech.opening, rng)
        )
        detail = f"driven_by={donor.name}"
    boxes = face_boxes(actor.scene)
    name = f"fake_{k:04d}_{category}.mp4"
    return SynthVideo(name, 1, actor.split, actor.name, category, detail, fake_frames, audio, fps, sr, boxes)


def fake_segment(seconds: float, fps: float, rng: np.random.Generator) -> tuple[int, int]:
    """A partial fake's segment as clip frames ``[a, b)``: 1–3 s long but at most half the clip
    (so real footage surrounds it), placed uniformly, on frame boundaries."""
    total = int(round(seconds * fps))
    length = int(round(rng.uniform(*PARTIAL_SECONDS) * fps))
    length = max(1, min(length, total // 2))
    start = int(rng.integers(0, total - length + 1))
    return start, start + length


def splice_segment(real: SynthVideo, fake: SynthVideo, segment: tuple[int, int]) -> SynthVideo:
    """The real clip with the fake's frames and soundtrack inside ``segment`` (clip frames
    ``[a, b)``) only. Both renders share the scene's motion and per-frame noise, so the cuts
    show no jump but the manipulation itself; the audio is cut at the same instants."""
    a, b = segment
    frames = real.frames.copy()
    frames[a:b] = fake.frames[a:b]
    per_frame = real.sample_rate / real.fps
    s0, s1 = int(round(a * per_frame)), int(round(b * per_frame))
    audio = real.audio.copy()
    audio[s0:s1] = fake.audio[s0 : min(s1, len(fake.audio))][: s1 - s0]
    start, end = round(a / real.fps, 4), round(b / real.fps, 4)
    return SynthVideo(
        fake.filename.replace(".mp4", "_partial.mp4"),
        1,
        fake.split,
        fake.original,
        f"partial_{fake.category}",
        f"{fake.detail} segment={start:.2f}-{end:.2f}".strip(),
        frames,
        audio,
        fake.fps,
        fake.sample_rate,
        fake.boxes,
        start,
        end,
    )


def generate_videos(
    n: int,
    seconds: float = 3.0,
    seed: int = 0,
    categories: Sequence[str] = FAKE_CATEGORIES,
    fps: float = 25.0,
    shard: tuple[int, int] = (0, 1),
    partial: float = 0.0,
) -> Iterator[SynthVideo]:
    """``n`` videos, half real (rounded up) and half fake, fake categories taken in turn.
    Deterministic for a seed. Videos come one at a time (frames are large). ``shard=(i, m)``
    yields only real clips ``k`` with ``k % m == i`` and their fakes. ``partial``: the fraction
    of the fakes that are faked only inside one segment (see the module docstring); each fake is
    drawn partial or not from its own seed, so shards agree with a single run."""
    if not 0.0 <= partial <= 1.0:
        raise ValueError(f"partial must be a fraction in [0, 1], got {partial}")
    unknown = set(categories) - set(FAKE_CATEGORIES)
    if unknown or not categories:
        raise ValueError(
            f"fake categories must be a non-empty subset of {FAKE_CATEGORIES}, got {list(categories)}"
        )
    n_real = (n + 1) // 2
    cast = _Cast(n_real, seconds, fps, seed)
    category_of = deal_categories(cast, n - n_real, list(categories))
    for k in range(shard[0], n_real, shard[1]):
        actor = cast.actor(k)
        frames = render_frames(actor.scene, actor.speech.opening)
        boxes = face_boxes(actor.scene)
        sr = actor.speech.sample_rate
        yield SynthVideo(
            actor.name, 0, actor.split, "", "real", "", frames, actor.speech.audio, fps, sr, boxes
        )
        if k in category_of:
            fake = make_fake(cast, k, category_of[k], frames)
            rng = np.random.default_rng([seed, 4, k])
            if partial > 0 and rng.random() < partial:
                real = SynthVideo(
                    actor.name, 0, actor.split, "", "real", "", frames, actor.speech.audio, fps, sr, boxes
                )
                fake = splice_segment(real, fake, fake_segment(seconds, fps, rng))
            yield fake
        cast.forget(k)  # memory stays flat: ~1.5 MB per cached clip


def write_labels(path: Path, rows: list[dict[str, object]], columns: Sequence[str] = LABEL_COLUMNS) -> None:
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, table.getvalue())


def _write_shard(
    out: Path,
    n: int,
    seconds: float,
    seed: int,
    categories: Sequence[str],
    fps: float,
    shard: tuple[int, int],
    progress: bool,
    partial: float = 0.0,
) -> list[dict[str, object]]:
    from preprocess.media import write_video

    rows = []
    for video in generate_videos(n, seconds, seed, categories, fps, shard, partial):
        write_video(out / video.filename, video.frames, video.fps, video.audio, sample_rate=video.sample_rate)
        rows.append({c: getattr(video, c) for c in (*LABEL_COLUMNS, "detail")})
        if progress:
            print(f"[synth] {video.filename} ({video.split}, {video.category})", flush=True)
    return rows


def _shard_settings(*settings: object) -> tuple:
    """A worker's state: what every shard of the dataset shares."""
    return settings


def _shard_job(settings: tuple, shard: tuple[int, int]) -> list[dict[str, object]]:
    out, n, seconds, seed, categories, fps, progress, partial = settings
    return _write_shard(out, n, seconds, seed, categories, fps, shard, progress, partial)


def write_dataset(
    out: str | Path,
    n: int,
    seconds: float = 3.0,
    seed: int = 0,
    categories: Sequence[str] = FAKE_CATEGORIES,
    fps: float = 25.0,
    progress: bool = True,
    workers: int = 1,
    partial: float = 0.0,
) -> Path:
    """Write ``n`` videos (.mp4, H.264 + AAC), ``labels.csv``
    (filename,label,split,original,category,fake_start,fake_end) and ``details.csv``
    (filename,detail: shift, donor, segment) into ``out``; returns the labels path.
    ``workers`` > 1 renders shards in that many processes (same files as one process)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = (out, n, seconds, seed, list(categories), fps, progress, partial)
    if workers <= 1:
        rows = _shard_job(settings, (0, 1))
    else:
        pool = make_pool(_shard_settings, settings, _shard_job, workers=workers)
        parts = []
        for i, part in pool.run([(i, workers) for i in range(workers)]):
            if isinstance(part, JobFailure):
                raise RuntimeError(f"{out}: rendering shard {i} of {workers} failed: {part.detail}")
            parts.append(part)
        rows = sorted(
            (r for part in parts for r in part),
            key=lambda r: (str(r["original"] or r["filename"]), r["label"]),
        )
    labels = out / "labels.csv"
    write_labels(labels, [{c: row[c] for c in LABEL_COLUMNS} for row in rows])
    write_labels(
        out / "details.csv",
        [{c: row[c] for c in ("filename", "detail")} for row in rows],
        ("filename", "detail"),
    )
    return labels
