"""Datasets → ``VideoItem`` lists, group-aware splits, and the manifest of cached samples.

Accepted inputs (``load_dataset`` picks by what it finds):

- DFDC: ``metadata.json`` files (one per ``dfdc_train_part_N`` folder, or one given as
  ``--labels``) mapping ``"abc.mp4"`` to ``{"label": "FAKE"|"REAL", "split", "original"}``;
  the videos sit next to the JSON.
- Folders: ``{split}/{real,fake}/**`` or ``{real,fake}/**``; a sub-folder below ``real``/``fake``
  becomes the item's ``category`` (e.g. ``fake/wav2lip/x.mp4``).
- CSV: ``filename,label[,split][,original][,category]`` (header optional; label 0/1,
  real/fake, REAL/FAKE, empty = unknown); filenames are relative to the CSV's folder or a root.
  With a header, ``fake_start,fake_end`` (seconds) may give a partially faked video's segment.
- Anything else: a folder (or a single file) of videos, unlabelled.

Labels: 1 fake, 0 real, -1 unknown. ``group`` ties a fake to its original: it is the stem of
``original`` when known, else the item's own stem, so a fake, its original and every other
fake of that original share a group, and whole groups go to one split (no identity leaks).

Outputs written next to the cache (``write_manifest``):

- ``manifest.csv``: one row per sample; the first four columns are always
  ``filename,filepath,split,label`` (video file name, video path, split, label), then
  ``track_id,sample,video_id,group,original,category,fake_start,fake_end``; ``sample`` is
  relative to the manifest's folder; the segment columns are empty unless the labels gave one.
- ``annotations.txt`` (and ``annotations_<split>.txt``): the mmaction-style annotation list,
  one line per sample: ``<sample path relative to the cache> <label>``, separated by one
  space (sample paths never contain spaces). Use the cache folder as ``data_prefix``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from core.files import atomic_write

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mpg", ".mpeg", ".mov", ".avi", ".mkv", ".webm", ".m4v"})
SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val", "eval": "test", "testing": "test"}
_LABELS = {"1": 1, "fake": 1, "0": 0, "real": 0, "": -1, "-1": -1, "unknown": -1}
LABEL_NAMES = {1: "fake", 0: "real", -1: "unknown"}
MANIFEST_COLUMNS = (
    "filename",
    "filepath",
    "split",
    "label",
    "track_id",
    "sample",
    "video_id",
    "group",
    "original",
    "category",
    "fake_start",
    "fake_end",
)


class DatasetError(ValueError):
    """A labels file or dataset folder that cannot be read; the message names the file."""


@dataclass(frozen=True)
class VideoItem:
    path: Path  # the video file (may be missing: see ``missing_files``)
    filename: str  # file name, as the submission CSV names the video
    label: int  # 1 fake, 0 real, -1 unknown
    split: str | None
    original: str | None  # file name of the real video a fake was made from
    group: str  # items sharing a group always land in the same split
    category: str | None = None  # e.g. the manipulation method
    video_id: str = ""  # unique key: path relative to the dataset root (defaults to filename)
    # A partially faked video's manipulated segment (seconds); None when the whole video is
    # one label. Passed through to the manifest for localisation metrics.
    fake_start: float | None = None
    fake_end: float | None = None

    def __post_init__(self) -> None:
        if not self.video_id:
            object.__setattr__(self, "video_id", self.filename)


@dataclass(frozen=True)
class ManifestRow:
    """One cached sample of one video."""

    item: VideoItem
    track_id: int
    sample: Path  # the .npz file


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def parse_label(value: object, where: str = "") -> int:
    key = str(value).strip().lower()
    if key not in _LABELS:
        raise DatasetError(f"{where}: label {value!r} is not one of 0/1/real/fake")
    return _LABELS[key]


def normalize_split(value: str | None) -> str | None:
    if value is None or not str(value).strip():
        return None
    name = str(value).strip().lower()
    return _SPLIT_ALIASES.get(name, name)


def _group_of(filename: str, original: str | None) -> str:
    return PurePosixPath(original or filename).stem


def _item(root: Path, path: Path, label: int, split=None, original=None, category=None) -> VideoItem:
    try:
        video_id = path.relative_to(root).as_posix()
    except ValueError:  # an absolute filename outside the root
        video_id = path.as_posix()
    original = original or None
    return VideoItem(
        path=path,
        filename=path.name,
        label=label,
        split=normalize_split(split),
        original=original,
        group=_group_of(path.name, original),
        category=category or None,
        video_id=video_id,
    )


def missing_files(items: Iterable[VideoItem]) -> list[VideoItem]:
    return [item for item in items if not item.path.is_file()]


def _report_missing(items: list[VideoItem], source: Path) -> None:
    missing = missing_files(items)
    if missing:
        shown = ", ".join(item.video_id for item in missing[:5])
        more = ", ..." if len(missing) > 5 else ""
        log.warning(
            "%s: %d of %d listed videos are missing (%s%s)", source, len(missing), len(items), shown, more
        )


# --- DFDC ---------------------------------------------------------------------------------


def load_dfdc_metadata(
    json_path: Path, root: Path | None = None, video_dir: Path | None = None
) -> list[VideoItem]:
    """Items of one DFDC ``metadata.json``; videos are looked up in ``video_dir`` (default: the
    JSON's folder) and ``video_id`` is relative to ``root`` (default: ``video_dir``)."""
    json_path = Path(json_path)
    video_dir = Path(video_dir) if video_dir is not None else json_path.parent
    root = Path(root) if root is not None else video_dir
    try:
        entries = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{json_path}: cannot read DFDC metadata: {err}") from err
    if not isinstance(entries, dict):
        raise DatasetError(f"{json_path}: expected an object mapping file names to entries")
    items = []
    for name, entry in entries.items():
        if not isinstance(entry, dict) or "label" not in entry:
            raise DatasetError(f"{json_path}: entry {name!r} has no label")
        items.append(
            _item(
                root,
                video_dir / name,
                parse_label(entry["label"], f"{json_path} [{name}]"),
                split=entry.get("split"),
                original=entry.get("original"),
            )
        )
    return items


def find_dfdc_metadata(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("metadata.json") if p.is_file())


def load_dfdc(root: Path) -> list[VideoItem]:
    """All ``metadata.json`` parts under ``root`` (missing videos are kept and reported)."""
    items = []
    for json_path in find_dfdc_metadata(root):
        part = load_dfdc_metadata(json_path, root=root)
        _report_missing(part, json_path)
        listed = {item.path.name for item in part}
        unlisted = [p for p in json_path.parent.iterdir() if is_video(p) and p.name not in listed]
        if unlisted:
            log.warning(
                "%s: %d videos in its folder are not listed and are ignored", json_path, len(unlisted)
            )
        items.extend(part)
    return _sorted_unique(items, root)


# --- folders ------------------------------------------------------------------------------


def _class_dirs(folder: Path) -> dict[int, Path]:
    found = {}
    for child in folder.iterdir():
        if child.is_dir() and child.name.lower() in ("real", "fake"):
            found[1 if child.name.lower() == "fake" else 0] = child
    return found


def has_class_folders(root: Path) -> bool:
    root = Path(root)
    return bool(_class_dirs(root)) or any(child.is_dir() and _class_dirs(child) for child in root.iterdir())


def videos_under(folder: Path) -> list[Path]:
    """Every video file below ``folder`` (recursively, hidden files skipped), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_video(p))


def load_folder(root: Path) -> list[VideoItem]:
    """``{split}/{real,fake}/**`` or ``{real,fake}/**``."""
    root = Path(root)
    layouts: list[tuple[str | None, Path]] = [(None, root)]
    layouts += [
        (child.name, child) for child in sorted(root.iterdir()) if child.is_dir() and _class_dirs(child)
    ]
    items = []
    for split, folder in layouts:
        for label, class_dir in sorted(_class_dirs(folder).items()):
            for path in videos_under(class_dir):
                sub = path.parent.relative_to(class_dir).as_posix()
                items.append(_item(root, path, label, split=split, category=None if sub == "." else sub))
    return _sorted_unique(items, root)


def load_unlabelled(root: Path) -> list[VideoItem]:
    root = Path(root)
    if root.is_file():
        return [_item(root.parent, root, -1)]
    return _sorted_unique([_item(root, path, -1) for path in videos_under(root)], root)


# --- CSV ----------------------------------------------------------------------------------

_CSV_FIELDS = ("filename", "label", "split", "original", "category")
_SEGMENT_FIELDS = ("fake_start", "fake_end")  # by header only: never positional


def parse_segment(start: object, end: object, where: str = "") -> tuple[float, float] | None:
    """``fake_start,fake_end`` cells → (start, end) seconds, or None when both are empty."""
    start, end = str(start or "").strip(), str(end or "").strip()
    if not start and not end:
        return None
    try:
        a, b = float(start), float(end)
    except ValueError as err:
        raise DatasetError(f"{where}: fake segment {start!r}-{end!r} is not two numbers") from err
    if not (0 <= a < b):
        raise DatasetError(f"{where}: fake segment {a}-{b} must have 0 <= start < end")
    return a, b


def load_csv(csv_path: Path, root: Path | None = None) -> list[VideoItem]:
    """``filename,label[,split][,original][,category]``; filenames relative to ``root``
    (default: the CSV's folder). A header row is recognised by its ``filename`` column."""
    csv_path = Path(csv_path)
    root = Path(root) if root is not None else csv_path.parent
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{csv_path}: cannot read labels CSV: {err}") from err
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise DatasetError(f"{csv_path}: no rows")
    header = [cell.strip().lower() for cell in rows[0]]
    if "filename" in header:
        unknown = set(header) - set(_CSV_FIELDS) - set(_SEGMENT_FIELDS)
        if unknown:
            log.warning("%s: ignoring columns %s", csv_path, sorted(unknown))
        columns, body, first_line = header, rows[1:], 2
    else:
        columns, body, first_line = list(_CSV_FIELDS[: len(rows[0])]), rows, 1
    items = []
    for line, row in enumerate(body, start=first_line):
        record = {name: (row[i].strip() if i < len(row) else "") for i, name in enumerate(columns)}
        if not record.get("filename"):
            raise DatasetError(f"{csv_path}:{line}: empty filename")
        path = Path(record["filename"])
        path = path if path.is_absolute() else root / path
        label = parse_label(record.get("label", ""), f"{csv_path}:{line}")
        item = _item(root, path, label, record.get("split"), record.get("original"), record.get("category"))
        segment = parse_segment(record.get("fake_start"), record.get("fake_end"), f"{csv_path}:{line}")
        if segment is not None:
            if label != 1:
                raise DatasetError(f"{csv_path}:{line}: a fake segment on a video not labelled fake")
            item = dataclasses.replace(item, fake_start=segment[0], fake_end=segment[1])
        items.append(item)
    _report_missing(items, csv_path)
    return _sorted_unique(items, csv_path)


# --- dispatch -----------------------------------------------------------------------------


def _sorted_unique(items: list[VideoItem], source: Path) -> list[VideoItem]:
    seen: dict[str, VideoItem] = {}
    for item in items:
        if item.video_id in seen:
            raise DatasetError(f"{source}: video {item.video_id!r} is listed twice")
        seen[item.video_id] = item
    return sorted(items, key=lambda item: item.video_id)


def _load_labels_file(labels: Path, root: Path) -> list[VideoItem]:
    if labels.suffix.lower() == ".json":
        items = load_dfdc_metadata(labels, root=root, video_dir=root)
        _report_missing(items, labels)
        return _sorted_unique(items, labels)
    return load_csv(labels, root=root)


def load_dataset(input_path: str | Path, labels: str | Path | None = None) -> list[VideoItem]:
    """Every video of a dataset, sorted by ``video_id``; see the module docstring for layouts."""
    input_path = Path(input_path)
    if not input_path.exists():
        raise DatasetError(f"{input_path}: no such file or folder")
    if labels is not None:
        labels = Path(labels)
        if not labels.is_file():
            raise DatasetError(f"{labels}: labels file not found")
        return _load_labels_file(labels, input_path if input_path.is_dir() else input_path.parent)
    if input_path.is_file():
        suffix = input_path.suffix.lower()
        if suffix in (".csv", ".json"):
            return _load_labels_file(input_path, input_path.parent)
        if is_video(input_path):
            return load_unlabelled(input_path)
        raise DatasetError(f"{input_path}: neither a video, a labels CSV nor a DFDC metadata.json")
    if find_dfdc_metadata(input_path):
        return load_dfdc(input_path)
    if has_class_folders(input_path):
        return load_folder(input_path)
    return load_unlabelled(input_path)


# --- filters and splits -------------------------------------------------------------------


def filter_single_person(items: Iterable[VideoItem], num_tracks: Mapping[str, int]) -> list[VideoItem]:
    """Videos with exactly one face track; ``num_tracks`` is keyed by ``video_id`` (videos
    absent from it, e.g. failed ones, are dropped)."""
    return [item for item in items if num_tracks.get(item.video_id) == 1]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fractions = tuple(float(f) for f in fractions)
    if not 1 <= len(fractions) <= len(SPLITS) or any(f < 0 for f in fractions):
        raise ValueError(f"split fractions {fractions}: give 1 to 3 non-negative numbers (train, val, test)")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions {fractions} must sum to 1")
    return fractions


def assign_splits(
    items: Sequence[VideoItem],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    balance: bool = True,
    resplit: bool = False,
) -> list[VideoItem]:
    """Give every item a split (``train``/``val``/``test``), moving whole groups.

    Splits the dataset provides are kept unless ``resplit``, when they form a real partition
    (at least two distinct splits: DFDC's ``"train"`` on every entry does not) or name only
    evaluation splits (a labels file whose every row says ``val`` or ``test`` is an evaluation
    set: split again, most of it would silently land in ``train``); unsplit items then join
    their group's split, and unsplit groups are assigned like the rest.
    Assignment is greedy, largest group first (ties in a seeded shuffle): each group goes to
    the split that still lacks most of its target, counted per class when ``balance`` (so
    every split keeps the dataset's real/fake ratio) or in videos otherwise. The result only
    depends on the set of items and the seed, not on their order.
    """
    fractions = _check_fractions(fractions)
    names = SPLITS[: len(fractions)]
    provided = {item.split for item in items if item.split}
    keep = not resplit and (len(provided) >= 2 or provided in ({"val"}, {"test"}))

    groups: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        groups[item.group].append(index)

    splits: list[str | None] = [item.split if keep else None for item in items]
    classes = sorted({item.label for item in items}) if balance else [None]
    totals = Counter(item.label if balance else None for item in items)
    current: dict[str, Counter] = {name: Counter() for name in names}
    free_groups = []
    for key in sorted(groups):
        members = groups[key]
        given = Counter(splits[i] for i in members if splits[i])
        if not given:
            free_groups.append(key)
            continue
        if len(given) > 1:
            log.warning("group %r spans splits %s as the dataset provides them", key, dict(given))
        fallback = given.most_common(1)[0][0]
        for i in members:
            splits[i] = splits[i] or fallback
            if splits[i] in current:
                current[splits[i]][items[i].label if balance else None] += 1

    rng = np.random.default_rng(seed)
    order = [free_groups[i] for i in rng.permutation(len(free_groups))]
    order.sort(key=lambda key: -len(groups[key]))  # stable: shuffled order breaks ties
    active = [(f, -rank, name) for rank, (f, name) in enumerate(zip(fractions, names, strict=True)) if f > 0]
    for key in order:
        composition = Counter(items[i].label if balance else None for i in groups[key])

        def need(name: str, fraction: float, composition: Counter = composition) -> float:
            # The share of its target each class still misses, weighted by the group's classes.
            score = 0.0
            for cls in classes:
                target = fraction * totals[cls]
                score += composition[cls] * (target - current[name][cls]) / max(target, 1e-9)
            return score

        # Most need first; ties go to the larger fraction, then to the earlier split name.
        chosen = max(active, key=lambda entry: (need(entry[2], entry[0]), entry[0], entry[1]))[2]
        for i in groups[key]:
            splits[i] = chosen
        current[chosen].update(composition)
    return [dataclasses.replace(item, split=split) for item, split in zip(items, splits, strict=True)]


def split_counts(items: Iterable[VideoItem]) -> dict[str, dict[str, int]]:
    """``{split: {"real": n, "fake": n, "unknown": n, "total": n}}`` for reports."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for item in items:
        counts[item.split or "none"][LABEL_NAMES[item.label]] += 1
    return {
        split: {**{name: c[name] for name in ("real", "fake", "unknown")}, "total": sum(c.values())}
        for split, c in sorted(counts.items())
    }


# --- manifest -----------------------------------------------------------------------------


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


def write_manifest(rows: Iterable[ManifestRow], path: str | Path) -> list[Path]:
    """Write ``manifest.csv`` at ``path`` plus the annotation lists beside it (atomically);
    returns the files written. Sample paths are stored relative to ``path``'s folder."""
    path = Path(path)
    base = path.parent
    rows = sorted(rows, key=lambda row: (row.item.video_id, row.track_id))
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    # Every standard split gets its list, empty when unused, so no stale list survives a resplit.
    lines: dict[str, list[str]] = {"": [], **{split: [] for split in SPLITS}}
    for row in rows:
        item = row.item
        sample = _relative(row.sample, base)
        writer.writerow(
            [
                item.filename,
                str(item.path),
                item.split or "",
                item.label,
                row.track_id,
                sample,
                item.video_id,
                item.group,
                item.original or "",
                item.category or "",
                "" if item.fake_start is None else item.fake_start,
                "" if item.fake_end is None else item.fake_end,
            ]
        )
        lines[""].append(f"{sample} {item.label}")
        if item.split:
            lines.setdefault(item.split, []).append(f"{sample} {item.label}")
    atomic_write(path, table.getvalue())
    written = [path]
    for split, split_lines in lines.items():
        target = base / (f"annotations_{split}.txt" if split else "annotations.txt")
        atomic_write(target, "".join(line + "\n" for line in split_lines))
        written.append(target)
    return written
