"""The real-footage labels: reals train, every labelled fake validates, no group on both sides;
face photos preprocess into one-frame samples only when asked."""

from __future__ import annotations

import csv

import pytest
from conftest import SHARED

from core.preprocess_config import PreprocessConfig
from preprocess.media import PreprocessError, decode
from train.footage_labels import footage_labels, write_labels_csv

HEADER = "file\tlabel\tkind\tgroup\n"


def manifest(tmp_path, rows):
    path = tmp_path / "MANIFEST.tsv"
    path.write_text(HEADER + "".join("\t".join(r) + "\n" for r in rows))
    return path


def test_reals_train_fakes_validate_and_mouth_crops_are_left_out(tmp_path):
    rows = [(f"real/grid/{i}.mpg", "REAL", "real speech, full face", "grid") for i in range(6)]
    rows += [(f"real/s{i}.mp4", "REAL", "real speech, full face", f"s{i}") for i in range(6)]
    rows += [(f"img/{i}.jpg", "REAL", "real face photo", f"p{i}") for i in range(16)]
    rows += [("mouth/0.mp4", "REAL", "real speech, mouth region only", "tedx")]
    rows += [
        ("fake/a.mp4", "FAKE", "lip-sync (Wav2Lip)", "gen_w"),
        ("fake/b.avi", "FAKE", "face swap (GAN)", "x"),
    ]
    rows += [("fake/c.mp4", "FAKE", "talking head (Hallo)", "gen_h")]
    files = footage_labels(manifest(tmp_path, rows))
    by_name = {f.filename: f for f in files}
    assert "mouth/0.mp4" not in by_name
    kinds = [by_name[n].category for n in ("fake/a.mp4", "fake/b.avi", "fake/c.mp4")]
    assert kinds == ["lip_sync", "face_swap", "talking_head"]
    assert all(f.split == "val" for f in files if f.label == 1)
    assert {f.label for f in files if f.split == "train"} == {0}
    val_speakers = {f.group for f in files if f.split == "val" and f.category == "real"}
    train_speakers = {f.group for f in files if f.split == "train" and f.category == "real"}
    assert val_speakers - {"grid"} and not (val_speakers & train_speakers) - {"grid"}  # grid: split by clip
    assert sum(f.split == "test" for f in files) == 2 and {
        f.category for f in files if f.split == "test"
    } == {"photo"}
    out = tmp_path / "labels.csv"
    write_labels_csv(files, out)
    rows_out = list(csv.DictReader(out.open()))
    assert len(rows_out) == len(files) and set(rows_out[0]) == {
        "filename",
        "label",
        "split",
        "original",
        "category",
        "source",
    }
    # calibration's sources: a fake's generator (its kind), a real's folder
    assert by_name["fake/a.mp4"].source == "lip-sync (Wav2Lip)"
    assert {f.source for f in files if f.category == "real"} == {"real/grid", "real"}


def test_bad_manifests_are_named(tmp_path):
    bad = tmp_path / "MANIFEST.tsv"
    bad.write_text("file\tlabel\n")
    with pytest.raises(ValueError, match="MANIFEST.tsv: expected a TSV"):
        footage_labels(bad)
    with pytest.raises(ValueError, match="is not REAL or FAKE"):
        footage_labels(manifest(tmp_path, [("x.mp4", "MAYBE", "real speech", "g")]))


def test_the_shared_training_set_splits_by_group():
    path = SHARED / "train" / "MANIFEST.tsv"
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: this test reads ../shared/train")
    files = footage_labels(path)
    train = {f.group for f in files if f.split == "train" and f.category != "photo"}
    val = {f.group for f in files if f.split == "val"}
    assert (train & val) <= {"grid_s1"}  # one speaker's 60 clips are split by clip
    assert sum(f.label for f in files) == sum(f.split == "val" and f.label for f in files) > 300


def test_photos_decode_as_one_frame_clips_only_when_asked():
    photo = SHARED / "train" / "real_images" / "faces_1081" / "real_00001.jpg"
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: this test reads a face photo from ../shared/train")
    with pytest.raises(PreprocessError, match="real_00001.jpg.*image or text format"):
        decode(photo)
    clip = decode(photo, PreprocessConfig().media.__class__(still_images=True))
    assert clip.frames.shape[0] == 1 and clip.frames.shape[-1] == 3 and not clip.has_audio
