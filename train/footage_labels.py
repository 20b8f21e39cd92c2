"""A real-footage training set's MANIFEST.tsv → the labels CSV ``python -m preprocess`` reads.

The default detector learns from *real* faces only: training samples are real speech clips
and face photos, forged on the fly into pseudo-fakes (``train.pseudo_fakes``). Labelled fakes
(DeepfakeTIMIT face swaps, lip-sync and talking-head generator outputs) go to the ``val``
split with held-out real speakers: every generator there is one the model never trained on,
so the validation AUC is a leave-generator-out figure by construction. Held-out photos go to
``test`` (pseudo-fakes of unseen identities): in ``val`` they would let a photo-versus-video
cue into the real/fake figure.

Split by ``group`` (speaker, subject, photo, generator), never by file. Mouth-only clips
(kept in such sets for audio-visual sync) hold no whole face and are left out.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.files import atomic_write

MANIFEST_COLUMNS = ("file", "label", "kind", "group")
LABELS_COLUMNS = ("filename", "label", "split", "original", "category", "source")  # the CSV written here
CATEGORY_OF_KIND = (("face swap", "face_swap"), ("lip-sync", "lip_sync"), ("talking head", "talking_head"))


@dataclass(frozen=True)
class LabelledFile:
    filename: str  # relative to the set's root
    label: int  # 1 = fake
    split: str
    category: str  # real | photo | face_swap | lip_sync | talking_head
    group: str
    # where the video comes from, for calibration safe across sources (train.calibration):
    # a fake's generator (the manifest's ``kind``), a real's corpus folder
    source: str = ""


def category_of(label: int, kind: str) -> str | None:
    """The row's category, or None for files that hold no usable face (mouth-only crops)."""
    kind = kind.lower()
    if label == 0:
        if "mouth region only" in kind:
            return None
        return "photo" if "photo" in kind else "real"
    for needle, category in CATEGORY_OF_KIND:
        if needle in kind:
            return category
    raise ValueError(f"fake of unknown kind {kind!r}: expected one of {[n for n, _ in CATEGORY_OF_KIND]}")


def read_manifest_tsv(path: Path) -> list[dict[str, str]]:
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")), delimiter="\t"))
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read: {err}") from err
    missing = [c for c in MANIFEST_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(
            f"{path}: expected a TSV with columns {MANIFEST_COLUMNS}, missing {missing or 'rows'}"
        )
    return rows


def footage_labels(manifest: Path, val_every: int = 3, photo_test_every: int = 8) -> list[LabelledFile]:
    """Reals → train, except every ``val_every``-th real speaker and every ``val_every``-th clip
    of a speaker with many (GRID s1: 60) → val, and every ``photo_test_every``-th photo → test;
    every fake → val."""
    files = []
    for row in read_manifest_tsv(manifest):
        label = {"REAL": 0, "FAKE": 1}.get(row["label"].strip().upper())
        if label is None:
            raise ValueError(f"{manifest}: {row['file']}: label {row['label']!r} is not REAL or FAKE")
        category = category_of(label, row["kind"])
        if category is not None:
            source = row["kind"].strip() if label == 1 else str(Path(row["file"]).parent.as_posix())
            files.append(LabelledFile(row["file"], label, "train", category, row["group"], source))
    clips: dict[str, list[str]] = {}
    for f in files:
        if f.category == "real":
            clips.setdefault(f.group, []).append(f.filename)
    single = sorted(g for g, names in clips.items() if len(names) == 1)
    held = {name for i, g in enumerate(single) if i % val_every == val_every - 1 for name in clips[g]}
    for names in (v for v in clips.values() if len(v) > 1):
        held |= set(sorted(names)[val_every - 1 :: val_every])
    photos = sorted(f.filename for f in files if f.category == "photo")
    test_photos = set(photos[photo_test_every - 1 :: photo_test_every])
    out = []
    for f in files:
        split = (
            "val" if f.label == 1 or f.filename in held else "test" if f.filename in test_photos else "train"
        )
        out.append(LabelledFile(f.filename, f.label, split, f.category, f.group, f.source))
    return sorted(out, key=lambda f: f.filename)


def write_labels_csv(files: list[LabelledFile], out: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LABELS_COLUMNS)
    for f in files:
        writer.writerow([f.filename, f.label, f.split, "", f.category, f.source])
    atomic_write(out, buf.getvalue())


def read_labels_csv(path: str | Path, required: Sequence[str] = LABELS_COLUMNS) -> list[dict[str, str]]:
    """The rows of a labels CSV (``write_labels_csv``'s, or any with the ``required`` columns);
    ``FileNotFoundError`` / ``ValueError`` naming the file when it is absent or lacks a column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such labels CSV")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(
                f"{path}: missing columns {', '.join(missing)} (a labels CSV as `train footage-labels` writes)"
            )
        return list(reader)
