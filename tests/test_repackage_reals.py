"""Re-packaged reals (train.repackage_reals): face-centred squares at a low bitrate, whole
frames only, and labels rows that make them a source of their own."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np
import pytest

from core.preprocess_data import FaceDetections
from tests.clips import make_clip
from train.calibration import read_sources
from train.repackage_reals import (
    RepackageSpec,
    face_square,
    rate_map,
    read_label_rows,
    repackage_reals,
    repackage_video,
    write_label_rows,
)


class BoxDetector:
    """Finds one face at a fixed box on every frame: these tests check the packaging around it
    (RetinaFace's own tests check detection)."""

    def __init__(self, box: tuple[float, float, float, float] | None):
        self.box = box
        self.calls = 0

    def detect(self, frames: np.ndarray) -> list[FaceDetections]:
        self.calls += 1
        if self.box is None:
            return [FaceDetections.empty() for _ in frames]
        boxes = np.asarray([self.box], np.float32)
        return [
            FaceDetections(boxes, np.zeros((1, 5, 2), np.float32), np.ones(1, np.float32)) for _ in frames
        ]


def test_face_square_is_centred_on_the_face_and_stays_inside_the_frame():
    top, left, side = face_square([np.array([100.0, 50.0, 140.0, 100.0])], 360, 640, 2.0)
    assert side == 100  # 2 x the longer side (50)
    assert (left + side / 2, top + side / 2) == (120.0, 75.0)
    # a face at the edge: the square slides inside, keeping its size
    top, left, side = face_square([np.array([600.0, 300.0, 640.0, 360.0])], 360, 640, 2.0)
    assert side == 120 and left + side == 640 and top + side == 360
    # larger than the frame allows: the frame's short side
    assert face_square([np.array([0.0, 0.0, 300.0, 300.0])], 288, 360, 2.2)[2] == 288
    # several boxes: the median one; none: the centre square
    boxes = [
        np.array([10.0, 10.0, 30.0, 30.0]),
        np.array([12.0, 10.0, 32.0, 30.0]),
        np.array([500.0, 0, 520, 20]),
    ]
    assert face_square(boxes, 360, 640, 2.0) == (0, 2, 40)
    assert face_square([], 360, 640, 2.0) == (0, 140, 360)


@pytest.mark.parametrize(("fps_in", "fps_out"), [(25, 30), (30, 25), (24, 30), (25, 25)])
def test_rate_map_repeats_or_drops_whole_frames_in_order(fps_in, fps_out):
    n = 3 * fps_in
    order = rate_map(n, fps_in, fps_out)
    assert len(order) == 3 * fps_out
    assert order[0] == 0 and order[-1] <= n - 1
    steps = np.diff(order)
    assert steps.min() >= 0 and steps.max() <= int(np.ceil(fps_in / fps_out))
    if fps_out > fps_in:  # every source frame shown, some twice
        assert set(order) == set(range(n)) and (steps == 0).sum() == len(order) - n
    if fps_out < fps_in:
        assert len(set(order)) == len(order)


def test_repackaged_clip_is_the_face_square_at_the_spec(tmp_path):
    src = make_clip(tmp_path / "src.mp4", seconds=3.0, fps=25, size=(320, 240))
    spec = RepackageSpec(side=128, bitrate=200_000, face_scale=2.0, fps=30)
    detector = BoxDetector((200.0, 60.0, 240.0, 110.0))
    result = repackage_video(src, tmp_path / "out" / "src.mp4", spec, detector)
    assert result.crop == (35, 170, 100) and result.audio
    assert detector.calls == 1  # the crop is placed once, on a few frames
    with av.open(str(result.out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.width, video.height) == (128, 128)
        assert float(video.average_rate) == pytest.approx(30)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert (audio.rate, audio.channels) == (16000, 1)
        seconds = container.duration / 1e6
    assert len(frames) == result.frames == 90
    assert seconds == pytest.approx(3.0, abs=0.15)
    assert result.out.stat().st_size * 8 / seconds < 1.5 * spec.bitrate
    assert not list(result.out.parent.glob(".*part*"))  # no temporary left behind


def test_repackage_reals_labels_each_copy_as_a_real_of_its_own_source(tmp_path):
    root = tmp_path / "set"
    for name in ("real/a/one.mp4", "real/b/two.mpg", "fake/gen/three.mp4", "real/a/four.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        make_clip(
            root / name,
            seconds=1.0,
            size=(160, 120),
            codec="mpeg1video" if name.endswith(".mpg") else "libx264",
        )
    (root / "real/b/broken.mp4").write_bytes(b"not a video")
    labels = tmp_path / "labels.csv"
    header = "filename,label,split,original,category,source\n"
    labels.write_text(
        header
        + "real/a/one.mp4,0,val,,real,a\n"
        + "real/b/two.mpg,0,val,,real,b\n"
        + "real/b/broken.mp4,0,val,,real,b\n"
        + "fake/gen/three.mp4,1,val,,lip_sync,gen\n"
        + "real/a/four.mp4,0,train,,real,a\n"
    )
    spec = RepackageSpec(side=64, bitrate=100_000)
    rows, failed = repackage_reals(root, labels, tmp_path / "out", "val", spec, BoxDetector(None))
    assert [r.filename for r in rows] == ["repackaged/real/a/one.mp4", "repackaged/real/b/two.mp4"]
    assert [r.original for r in rows] == ["real/a/one.mp4", "real/b/two.mpg"]
    assert {r.source for r in rows} == {f"real re-packaged ({spec.describe()})"}
    assert all(r.label == "0" and r.split == "val" and r.category == "real" for r in rows)
    assert len(failed) == 1 and "broken.mp4" in failed[0]
    out_labels = tmp_path / "out" / "labels.csv"
    write_label_rows(rows, out_labels)
    assert read_label_rows(out_labels) == rows
    assert read_sources(out_labels)["repackaged/real/b/two.mp4"] == rows[1].source
    with open(out_labels, newline="") as f:
        assert next(csv.reader(f)) == ["filename", "label", "split", "original", "category", "source"]
    # a rerun keeps what was written (resumes) and names the same rows
    written = (tmp_path / "out" / rows[0].filename).stat().st_mtime_ns
    again, _ = repackage_reals(root, labels, tmp_path / "out", "val", spec, BoxDetector(None))
    assert again == rows and (tmp_path / "out" / rows[0].filename).stat().st_mtime_ns == written


def test_labels_without_the_footage_columns_are_refused_by_name(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\nx.mp4,0\n")
    with pytest.raises(ValueError, match=r"labels\.csv: missing columns"):
        read_label_rows(labels)
    assert Path(labels).exists()
