"""Dataset adapters, group-aware balanced splits, manifest and annotation files."""

from __future__ import annotations

import csv
import json
import logging
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import shared_media

from preprocess.datasets import (
    MANIFEST_COLUMNS,
    DatasetError,
    ManifestRow,
    VideoItem,
    assign_splits,
    filter_single_person,
    load_csv,
    load_dataset,
    load_dfdc,
    load_folder,
    missing_files,
    split_counts,
    write_manifest,
)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# --- DFDC ---------------------------------------------------------------------------------


@pytest.fixture
def dfdc_tree(tmp_path):
    root = tmp_path / "dfdc"
    part0 = {
        "orig.mp4": {"label": "REAL", "split": "train", "original": None},
        "fake1.mp4": {"label": "FAKE", "split": "train", "original": "orig.mp4"},
        "fake2.mp4": {"label": "FAKE", "split": "train", "original": "orig.mp4"},
        "gone.mp4": {"label": "FAKE", "split": "train", "original": "orig.mp4"},
    }
    part1 = {
        "orig.mp4": {"label": "REAL", "split": "train", "original": None},  # same name, other part
        "other.mp4": {"label": "REAL", "split": "train", "original": None},
    }
    write_json(root / "dfdc_train_part_0" / "metadata.json", part0)
    write_json(root / "dfdc_train_part_1" / "metadata.json", part1)
    for name in ("orig.mp4", "fake1.mp4", "fake2.mp4", "unlisted.mp4"):
        touch(root / "dfdc_train_part_0" / name)
    for name in part1:
        touch(root / "dfdc_train_part_1" / name)
    return root


def test_dfdc_parts(dfdc_tree, caplog):
    with caplog.at_level(logging.WARNING):
        items = load_dataset(dfdc_tree)
    by_id = {item.video_id: item for item in items}
    assert sorted(by_id) == [
        "dfdc_train_part_0/fake1.mp4",
        "dfdc_train_part_0/fake2.mp4",
        "dfdc_train_part_0/gone.mp4",
        "dfdc_train_part_0/orig.mp4",
        "dfdc_train_part_1/orig.mp4",
        "dfdc_train_part_1/other.mp4",
    ]
    fake = by_id["dfdc_train_part_0/fake1.mp4"]
    assert (fake.label, fake.split, fake.original, fake.filename) == (1, "train", "orig.mp4", "fake1.mp4")
    assert fake.path == dfdc_tree / "dfdc_train_part_0" / "fake1.mp4"
    assert by_id["dfdc_train_part_0/orig.mp4"].label == 0
    assert fake.group == by_id["dfdc_train_part_0/orig.mp4"].group == "orig"
    assert [item.video_id for item in missing_files(items)] == ["dfdc_train_part_0/gone.mp4"]
    assert "gone.mp4" in caplog.text and "1 of 4" in caplog.text
    assert "not listed" in caplog.text  # unlisted.mp4 is reported, not silently added


def test_real_dfdc_metadata_with_missing_videos(tmp_path, caplog):
    metadata = shared_media("fake", "dfdc_metadata_aaronchong888.json")
    touch(tmp_path / "abofeumbvv.mp4")
    with caplog.at_level(logging.WARNING):
        items = load_dataset(tmp_path, labels=metadata)
    entries = json.loads(metadata.read_text())
    assert [item.filename for item in items] == sorted(entries)
    for item in items:
        entry = entries[item.filename]
        assert item.label == (1 if entry["label"] == "FAKE" else 0)
        assert item.original == entry["original"]
    assert len(missing_files(items)) == len(entries) - 1
    assert f"{len(entries) - 1} of {len(entries)}" in caplog.text


def test_bad_dfdc_metadata(tmp_path):
    write_json(tmp_path / "metadata.json", {"a.mp4": {"label": "MAYBE"}})
    with pytest.raises(DatasetError, match=r"metadata\.json.*a\.mp4"):
        load_dfdc(tmp_path)
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(DatasetError, match="metadata.json"):
        load_dataset(tmp_path)


# --- folders ------------------------------------------------------------------------------


def test_folder_with_splits(tmp_path):
    for rel in (
        "train/real/a.mp4",
        "train/fake/b.MOV",
        "val/REAL/c.avi",
        "validation/fake/d.mkv",
        "test/fake/e.webm",
    ):
        touch(tmp_path / rel)
    touch(tmp_path / "train" / "real" / "notes.txt")
    items = load_dataset(tmp_path)
    got = {(item.video_id, item.label, item.split) for item in items}
    assert got == {
        ("train/real/a.mp4", 0, "train"),
        ("train/fake/b.MOV", 1, "train"),
        ("val/REAL/c.avi", 0, "val"),
        ("validation/fake/d.mkv", 1, "val"),
        ("test/fake/e.webm", 1, "test"),
    }


def test_folder_without_splits_and_categories(tmp_path):
    touch(tmp_path / "real" / "x.mpg")
    touch(tmp_path / "fake" / "wav2lip" / "y.mp4")
    touch(tmp_path / "fake" / "z.mp4")
    items = load_folder(tmp_path)
    assert [(i.video_id, i.label, i.split, i.category) for i in items] == [
        ("fake/wav2lip/y.mp4", 1, None, "wav2lip"),
        ("fake/z.mp4", 1, None, None),
        ("real/x.mpg", 0, None, None),
    ]


def test_plain_folder_and_single_file_are_unlabelled(tmp_path):
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "sub" / "b.webm")
    touch(tmp_path / "readme.md")
    items = load_dataset(tmp_path)
    assert [(i.video_id, i.label) for i in items] == [("a.mp4", -1), ("sub/b.webm", -1)]
    assert [(i.filename, i.label) for i in load_dataset(tmp_path / "a.mp4")] == [("a.mp4", -1)]
    with pytest.raises(DatasetError, match="readme.md"):
        load_dataset(tmp_path / "readme.md")
    with pytest.raises(DatasetError, match="nowhere"):
        load_dataset(tmp_path / "nowhere")


# --- CSV ----------------------------------------------------------------------------------


def test_csv_with_header_and_label_spellings(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "filename,label,split,original,category\n"
        "a.mp4,1,train,b.mp4,faceswap\n"
        "b.mp4,REAL,train,,\n"
        "sub/c.mp4,fake,val,,lipsync\n"
        "d.mp4,0,,,\n"
        "e.mp4,,,,\n"
    )
    for name in ("a.mp4", "b.mp4", "sub/c.mp4", "d.mp4"):
        touch(tmp_path / name)
    items = load_dataset(tmp_path / "labels.csv")
    got = [(i.video_id, i.label, i.split, i.original, i.category, i.group) for i in items]
    assert got == [
        ("a.mp4", 1, "train", "b.mp4", "faceswap", "b"),
        ("b.mp4", 0, "train", None, None, "b"),
        ("d.mp4", 0, None, None, None, "d"),
        ("e.mp4", -1, None, None, None, "e"),
        ("sub/c.mp4", 1, "val", None, "lipsync", "c"),
    ]
    assert [i.video_id for i in missing_files(items)] == ["e.mp4"]


def test_csv_without_header_relative_to_root(tmp_path):
    data = tmp_path / "videos"
    touch(data / "x.mp4")
    (tmp_path / "labels.csv").write_text("x.mp4,real\ny.mp4,FAKE\n")
    items = load_dataset(data, labels=tmp_path / "labels.csv")
    assert [(i.path, i.label) for i in items] == [(data / "x.mp4", 0), (data / "y.mp4", 1)]
    assert load_csv(tmp_path / "labels.csv", root=data)[0].path == data / "x.mp4"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("filename,label\na.mp4,perhaps\n", r"labels\.csv:2.*perhaps"),
        ("filename,label\na.mp4,1\na.mp4,0\n", "listed twice"),
        ("filename,label\n,1\n", r"labels\.csv:2: empty filename"),
        ("", "no rows"),
    ],
)
def test_csv_errors_name_the_file(tmp_path, text, match):
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(DatasetError, match=match):
        load_csv(tmp_path / "labels.csv")


# --- filters and splits -------------------------------------------------------------------


def item(name: str, label: int, original: str | None = None, split: str | None = None) -> VideoItem:
    group = Path(original or name).stem
    return VideoItem(Path(name), name, label, split, original, group)


def test_filter_single_person():
    items = [item("a.mp4", 0), item("b.mp4", 1), item("c.mp4", 1)]
    kept = filter_single_person(items, {"a.mp4": 1, "b.mp4": 2})
    assert [i.filename for i in kept] == ["a.mp4"]


def random_dataset(rng: random.Random, n_originals: int) -> list[VideoItem]:
    """DFDC-like: each original has 0..6 fakes; some videos are unlabelled."""
    items = []
    for k in range(n_originals):
        original = f"o{k}.mp4"
        items.append(item(original, rng.choice([0, 0, 0, -1])))
        for j in range(rng.randint(0, 6)):
            items.append(item(f"f{k}_{j}.mp4", 1, original))
    rng.shuffle(items)
    return items


def test_groups_are_never_split_property():
    rng = random.Random(1234)
    for trial in range(60):
        items = random_dataset(rng, rng.randint(1, 40))
        fractions = rng.choice([(0.8, 0.1, 0.1), (0.7, 0.3), (0.5, 0.25, 0.25), (1.0,), (0.6, 0.0, 0.4)])
        out = assign_splits(items, fractions, seed=trial, balance=rng.random() < 0.8)
        assert [i.video_id for i in out] == [i.video_id for i in items]  # order and items kept
        names = ("train", "val", "test")
        allowed = {name for name, f in zip(names, fractions, strict=False) if f > 0}
        splits_of_group = defaultdict(set)
        for i in out:
            assert i.split in allowed
            splits_of_group[i.group].add(i.split)
        assert all(len(s) == 1 for s in splits_of_group.values()), trial
        # A fake always shares its original's split.
        split_of = {i.filename: i.split for i in out}
        for i in out:
            if i.original:
                assert split_of[i.original] == i.split


def test_split_is_deterministic_and_order_independent():
    items = random_dataset(random.Random(7), 60)
    a = assign_splits(items, seed=3)
    b = assign_splits(list(reversed(items)), seed=3)
    assert {i.video_id: i.split for i in a} == {i.video_id: i.split for i in b}
    c = assign_splits(items, seed=4)
    assert {i.video_id: i.split for i in a} != {i.video_id: i.split for i in c}


def test_split_sizes_and_class_balance():
    items = random_dataset(random.Random(11), 600)
    out = assign_splits(items, (0.8, 0.1, 0.1), seed=0, balance=True)
    counts = split_counts(out)
    total = len(items)
    overall_fake = sum(i.label == 1 for i in items) / total
    for split, fraction in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        c = counts[split]
        assert abs(c["total"] / total - fraction) < 0.02, counts
        assert abs(c["fake"] / c["total"] - overall_fake) < 0.03, counts
        assert c["real"] > 0 and c["fake"] > 0


def test_small_dataset_gets_both_classes_in_every_split():
    items = [item(f"r{k}.mp4", 0) for k in range(5)] + [item(f"f{k}.mp4", 1, f"r{k}.mp4") for k in range(5)]
    counts = split_counts(assign_splits(items, (0.6, 0.2, 0.2)))
    assert all(c["real"] >= 1 and c["fake"] >= 1 for c in counts.values()), counts


def test_provided_splits_are_kept_unless_resplit():
    items = [
        item("a.mp4", 0, split="train"),
        item("b.mp4", 1, "a.mp4", split=None),  # joins its original's split
        item("c.mp4", 0, split="test"),
        *[item(f"n{k}.mp4", k % 2) for k in range(20)],
    ]
    out = {i.filename: i.split for i in assign_splits(items)}
    assert out["a.mp4"] == out["b.mp4"] == "train" and out["c.mp4"] == "test"
    assert {out[f"n{k}.mp4"] for k in range(20)} == {"train", "val", "test"}
    # DFDC says "train" for every entry: that is no partition, so it is resplit.
    dfdc = [item(f"d{k}.mp4", k % 2, split="train") for k in range(30)]
    assert {i.split for i in assign_splits(dfdc)} == {"train", "val", "test"}
    # A labels file that calls every row "val" (or "test") is an evaluation set: kept whole.
    for name in ("val", "test"):
        evaluation = [item(f"e{k}.mp4", k % 2, split=name) for k in range(30)]
        assert {i.split for i in assign_splits(evaluation)} == {name}
    # --resplit ignores a real partition too.
    resplit = assign_splits(items, (0.5, 0.5), resplit=True)
    assert {i.split for i in resplit} == {"train", "val"}


def test_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits([item("a.mp4", 0)], (0.5, 0.2))
    with pytest.raises(ValueError, match="non-negative"):
        assign_splits([item("a.mp4", 0)], (1.2, -0.2))


# --- manifest -----------------------------------------------------------------------------


def test_manifest_and_annotations(tmp_path):
    cache = tmp_path / "cache"
    a = item("a.mp4", 0, split="train")
    b = VideoItem(Path("/v/b.mp4"), "b.mp4", 1, "val", "a.mp4", "a", "faceswap", "part/b.mp4")
    rows = [
        ManifestRow(b, 1, cache / "samples" / "b__t1.npz"),
        ManifestRow(b, 0, cache / "samples" / "b__t0.npz"),
        ManifestRow(a, 0, cache / "samples" / "a__t0.npz"),
    ]
    write_manifest(rows, cache / "manifest.csv")
    with open(cache / "manifest.csv", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        table = list(reader)
    assert tuple(header) == MANIFEST_COLUMNS and header[:4] == ["filename", "filepath", "split", "label"]
    assert [r[:6] for r in table] == [
        ["a.mp4", "a.mp4", "train", "0", "0", "samples/a__t0.npz"],
        ["b.mp4", "/v/b.mp4", "val", "1", "0", "samples/b__t0.npz"],
        ["b.mp4", "/v/b.mp4", "val", "1", "1", "samples/b__t1.npz"],
    ]
    assert table[1][6:] == ["part/b.mp4", "a", "a.mp4", "faceswap", "", ""]
    assert (cache / "annotations.txt").read_text().splitlines() == [
        "samples/a__t0.npz 0",
        "samples/b__t0.npz 1",
        "samples/b__t1.npz 1",
    ]
    assert (cache / "annotations_val.txt").read_text().splitlines() == [
        "samples/b__t0.npz 1",
        "samples/b__t1.npz 1",
    ]
    assert (cache / "annotations_test.txt").read_text() == ""
    assert not list(cache.glob(".*.tmp"))


def test_split_counts_report():
    counts = split_counts([item("a.mp4", 0, split="train"), item("b.mp4", 1, split="train"), item("c", -1)])
    assert counts == {
        "none": {"real": 0, "fake": 0, "unknown": 1, "total": 1},
        "train": {"real": 1, "fake": 1, "unknown": 0, "total": 2},
    }
    assert Counter(i.label for i in [item("a.mp4", 0)]) == {0: 1}


def test_fake_segments_pass_from_a_labels_csv_to_the_manifest(tmp_path):
    """``fake_start,fake_end`` (partially faked videos) reach the manifest and train's reader;
    files without them, and headerless ones, read as before."""
    from train.data import read_manifest

    for name in ("r.mp4", "p.mp4", "f.mp4"):
        touch(tmp_path / name)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "filename,label,split,fake_start,fake_end\nr.mp4,0,test,,\np.mp4,1,test,1.2,3.4\nf.mp4,1,test,,\n"
    )
    items = {i.filename: i for i in load_csv(labels)}
    assert (items["p.mp4"].fake_start, items["p.mp4"].fake_end) == (1.2, 3.4)
    assert items["r.mp4"].fake_start is None and items["f.mp4"].fake_end is None
    rows = [ManifestRow(i, 0, tmp_path / "samples" / f"{n}.npz") for n, i in items.items()]
    write_manifest(rows, tmp_path / "manifest.csv")
    read = {e.filename: e.fake_segment for e in read_manifest(tmp_path / "manifest.csv")}
    assert read == {"f.mp4": None, "p.mp4": (1.2, 3.4), "r.mp4": None}
    labels.write_text("filename,label,fake_start,fake_end\nr.mp4,0,0.5,1.0\n")
    with pytest.raises(DatasetError, match="not labelled fake"):
        load_csv(labels)
    labels.write_text("filename,label,fake_start,fake_end\np.mp4,1,2.0,1.0\n")
    with pytest.raises(DatasetError, match="start < end"):
        load_csv(labels)
    labels.write_text("p.mp4,1,test\n")  # headerless: positional columns only
    assert load_csv(labels)[0].fake_start is None
