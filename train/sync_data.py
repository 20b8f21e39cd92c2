"""SyncNet training material, extracted once: each clip's lower-face crops and audio in an npz.

Decoding, face detection and tracking are the costly part of a sync training step; they are
done here once per clip with the preprocessing pipeline's own functions (``Preprocessor.
speaking_face``, ``crop_faces``), then ``models.syncnet_mouth.mouth_region`` (the function the
network applies at inference) cuts the lower face, with a margin for scale/shift jitter. A
cache entry is ``<out>/<name>.npz``: ``mouth`` (T, H, W, 3) uint8 RGB, ``audio`` (N,) int16
under the track's frames, ``sample_rate``, and the clip's manifest fields; clips without audio
or face are skipped (logged) and remembered in ``<out>/skipped.tsv`` so a rerun does not retry
them.

Sources (``../shared/train/MANIFEST.tsv``, split by ``group``): real speech (``real/``),
mouth-only speech (``real_mouth/``), and, on request, generated fakes whose mouth follows their
own audio (``fake/generated``: lip-sync and talking heads, in sync by construction).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import PreprocessError
from models.syncnet_mouth import mouth_region
from train.footage_labels import read_labels_csv

log = logging.getLogger("train")

MARGIN = 6  # pooled pixels cached around the inference crop, for scale/shift jitter
SOURCES = ("real/", "real_mouth/", "fake/generated/", "fake/deepfaketimit_hq/")  # extraction order
DEFAULT_SOURCES = ("real/", "real_mouth/")


@dataclass(frozen=True)
class ManifestClip:
    file: str  # relative to the training set's root
    label: str
    kind: str
    group: str


@dataclass
class SyncClipData:
    name: str
    group: str
    source: str  # the manifest path's first two parts, e.g. "real/lrs2"
    mouth: np.ndarray  # (T, H, W, 3) uint8 RGB: mouth_region(margin=MARGIN) of each track crop
    audio: np.ndarray  # (N,) int16 from the track's first frame
    sample_rate: int


def read_sync_manifest(root: str | Path, sources: Sequence[str] = DEFAULT_SOURCES) -> list[ManifestClip]:
    """Rows of ``root/MANIFEST.tsv`` whose file lies under one of ``sources`` (video files only)."""
    path = Path(root) / "MANIFEST.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no MANIFEST.tsv in the training set")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    missing = {"file", "label", "kind", "group"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: MANIFEST.tsv lacks columns {sorted(missing)}")
    return [
        ManifestClip(r["file"], r["label"], r["kind"], r["group"])
        for r in rows
        if r["file"].startswith(tuple(sources)) and not r["file"].lower().endswith((".jpg", ".jpeg", ".png"))
    ]


def cache_name(file: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", file)


def mouth_crops(faces: np.ndarray, margin: int = MARGIN, chunk: int = 64) -> np.ndarray:
    """(T, 224, 224, 3) uint8 RGB track crops → (T, 48 + 2m, 64 + 2m, 3) uint8 RGB."""
    out = []
    for i in range(0, len(faces), chunk):
        x = torch.from_numpy(np.ascontiguousarray(faces[i : i + chunk].transpose(0, 3, 1, 2))).float()
        out.append(mouth_region(x, margin).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def extract_clip(pre, path: Path, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """The longest face track's mouth crops and the audio under it."""
    from preprocess.tracks import crop_faces

    clip, track = pre.speaking_face(path)
    start, stop = int(track.frame_indices[0]), int(track.frame_indices[-1]) + 1
    mouth = np.concatenate(
        [
            mouth_crops(crop_faces(clip.frames, track, cfg.track, np.arange(s, min(s + 128, stop))))
            for s in range(start, stop, 128)
        ]
    )
    per_frame = clip.sample_rate / clip.fps
    audio = clip.audio[int(round(start * per_frame)) : int(round(stop * per_frame))]
    return mouth, np.asarray(audio, np.int16).reshape(-1), clip.sample_rate


def build_cache(
    root: str | Path, out: str | Path, sources: Sequence[str] = SOURCES, progress: bool = True
) -> Path:
    """Extract every clip of ``sources`` not cached yet; returns ``out``."""
    from preprocess.pipeline import Preprocessor

    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = PreprocessConfig()
    if cfg.track.crop_size != 224:
        raise ValueError("the mouth crop is defined on 224x224 track crops")
    skipped_path = out / "skipped.tsv"
    skipped = set(skipped_path.read_text().split("\n")) if skipped_path.is_file() else set()
    clips = read_sync_manifest(root, sources)
    clips.sort(key=lambda c: next(i for i, s in enumerate(sources) if c.file.startswith(s)))  # stable
    pre = Preprocessor(cfg, syncnet=False)
    for k, clip in enumerate(clips):
        target = out / f"{cache_name(clip.file)}.npz"
        if target.is_file() or clip.file in skipped:
            continue
        try:
            mouth, audio, rate = extract_clip(pre, root / clip.file, cfg)
        except PreprocessError as err:
            log.warning("sync cache: skipping %s", err)
            with skipped_path.open("a") as f:
                f.write(clip.file + "\n")
            continue
        source = "/".join(clip.file.split("/")[:2])
        tmp = target.with_suffix(".tmp.npz")
        np.savez(
            tmp, mouth=mouth, audio=audio, sample_rate=rate, path=clip.file, group=clip.group, source=source
        )
        tmp.replace(target)
        if progress:
            print(f"[sync-cache] {k + 1}/{len(clips)} {clip.file}: {len(mouth)} frames", flush=True)
    return out


def load_cache(folder: str | Path, sources: Sequence[str] = DEFAULT_SOURCES) -> list[SyncClipData]:
    """Cached clips whose manifest path lies under one of ``sources``."""
    folder = Path(folder)
    clips = []
    for path in sorted(folder.glob("*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        with np.load(path) as z:
            file = str(z["path"])
            if not file.startswith(tuple(sources)):
                continue
            clips.append(
                SyncClipData(
                    file, str(z["group"]), str(z["source"]), z["mouth"], z["audio"], int(z["sample_rate"])
                )
            )
    if not clips:
        raise FileNotFoundError(f"{folder}: no cached sync clips of {list(sources)} (run build_cache)")
    return clips


def drop_split(
    clips: Sequence[SyncClipData], labels: str | Path, split: str
) -> tuple[list[SyncClipData], list[str]]:
    """``clips`` less those a detector's labels CSV (``train footage-labels``) puts in ``split``.

    A sync model whose tower a detector reads must not have trained on that detector's
    validation reals, or their sync looks better than any unseen real's (returns kept, dropped)."""
    leave = {r["filename"] for r in read_labels_csv(labels, ("filename", "split")) if r["split"] == split}
    if not leave:
        raise ValueError(f"{labels}: no file in split {split!r}")
    kept = [c for c in clips if c.name not in leave]
    return kept, sorted(c.name for c in clips if c.name in leave)
