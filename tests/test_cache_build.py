"""``python -m preprocess`` (``preprocess.cache_build``, ``.cache_layout``, ``.cli``): cache,
manifest, failures, resuming, worker isolation.

Most tests drive ``run_preprocess`` with a small stand-in Preprocessor that reads tiny text
"videos" (``tracks=N``), so they exercise the cache logic quickly; the ``slow`` test at the end
runs the real pipeline on real clips through the command line.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, shared_media

from core.preprocess_config import PreprocessConfig, load_preprocess_config
from core.preprocess_data import PreprocessError, Sample, SampleMeta, VideoResult
from preprocess import cache_layout
from preprocess.cache_build import RunSummary, WorkerInitError, run_preprocess
from preprocess.cache_layout import VideoOutcome, config_hash, marker_path, sample_path
from preprocess.cli import main
from preprocess.datasets import load_dataset
from preprocess.sample_file import load_sample

CFG = PreprocessConfig().replace("sample", num_frames=3)


class StandInPreprocessor:
    """Reads ``tracks=N`` files; empty or other bytes fail the way a decoder reports them.
    ``crash`` kills the worker process, ``bug`` raises, ``interrupt`` stops the run."""

    def __init__(self, cfg: PreprocessConfig, device: str = "cpu", calls: list | None = None):
        self.cfg = cfg
        self.calls = calls if calls is not None else []

    def process(self, path, label: int = -1) -> VideoResult:
        path = str(path)
        self.calls.append(Path(path).name)
        data = Path(path).read_bytes()
        if data == b"crash":
            os._exit(7)
        if data == b"bug":
            raise RuntimeError("a bug in a stage")
        if data == b"hang":
            time.sleep(600)
        if data == b"interrupt":
            raise KeyboardInterrupt
        if not data:
            return VideoResult(path, error=PreprocessError(path, "empty_file", "0 bytes"))
        if not data.startswith(b"tracks="):
            return VideoResult(path, error=PreprocessError(path, "decode_error", "invalid data found"))
        found = int(data.split(b"=")[1])
        if found == 0:
            return VideoResult(path, error=PreprocessError(path, "no_face", "no face track"))
        n = min(found, self.cfg.track.max_tracks)
        samples = [make_sample(path, k, n, label, self.cfg) for k in range(n)]
        return VideoResult(path, samples=samples, timings={"decode": 0.01, "detect": 0.02})


def make_sample(path: str, track_id: int, num_tracks: int, label: int, cfg: PreprocessConfig) -> Sample:
    frames = cfg.sample.num_frames
    meta = SampleMeta(
        Path(path).name, path, 25.0, 2.0, True, num_tracks, track_id, label, ["no_syncnet_weights"]
    )
    return Sample(
        meta=meta,
        faces=np.full((frames, 16, 16, 3), track_id + 1, np.uint8),
        face_frame_indices=np.arange(frames, dtype=np.int64),
        boxes=np.zeros((50, 4), np.float32),
        frame_start=0,
        audio=np.arange(3200, dtype=np.int16),
        mfcc=np.zeros((13, 200), np.float32),
        mel=np.zeros((80, 200), np.float32),
        latency=None,
    )


def stand_in_factory(cfg: PreprocessConfig, device: str) -> StandInPreprocessor:
    return StandInPreprocessor(cfg, device)


def failing_factory(cfg: PreprocessConfig, device: str) -> StandInPreprocessor:
    raise FileNotFoundError("weights/retinaface_mobilenetv2.safetensors")


def recording_factory(calls: list):
    return lambda cfg, device: StandInPreprocessor(cfg, device, calls)


VIDEOS = {
    "real/a.mp4": b"tracks=1",
    "real/b.mp4": b"tracks=1",
    "real/r3.mp4": b"tracks=1",
    "fake/c.mp4": b"tracks=2",
    "fake/d.mp4": b"tracks=1",
    "fake/f3.mp4": b"tracks=1",
    "fake/noface.mp4": b"tracks=0",
    "fake/empty.mp4": b"",
    "fake/garbage.mp4": np.random.default_rng(0).bytes(2048),
}
GOOD = {"a.mp4", "b.mp4", "r3.mp4", "c.mp4", "d.mp4", "f3.mp4"}


def make_dataset(root: Path, videos: dict[str, bytes] = VIDEOS) -> Path:
    for rel, data in videos.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run(items, cache, calls=None, cfg=CFG, **kwargs) -> RunSummary:
    factory = recording_factory(calls if calls is not None else [])
    return run_preprocess(
        items, cache, cfg, workers=0, preprocessor_factory=factory, progress=False, **kwargs
    )


def test_run_writes_samples_manifest_and_failures(tmp_path):
    items = load_dataset(make_dataset(tmp_path / "data"))
    cache = tmp_path / "cache"
    summary = run(items, cache)

    assert (summary.videos, summary.processed, summary.skipped) == (9, 6, 0)
    assert dict(summary.failed) == {"no_face": 1, "empty_file": 1, "decode_error": 1}
    rows = read_csv(cache / "manifest.csv")
    assert list(rows[0])[:4] == ["filename", "filepath", "split", "label"]
    assert sorted((r["filename"], r["track_id"]) for r in rows) == sorted(
        [(name, "0") for name in GOOD] + [("c.mp4", "1")]
    )
    by_name = {item.filename: item for item in items}
    for row in rows:
        item = by_name[row["filename"]]
        assert row["label"] == str(item.label) and row["filepath"] == str(item.path)
        assert row["split"] in {"train", "val", "test"}
        sample = load_sample(cache / row["sample"])
        assert Path(cache / row["sample"]) == sample_path(cache, item.video_id, int(row["track_id"]))
        assert sample.meta.label == item.label and sample.meta.track_id == int(row["track_id"])
        assert sample.faces.shape == (3, 16, 16, 3) and sample.faces[0, 0, 0, 0] == int(row["track_id"]) + 1
    annotations = (cache / "annotations.txt").read_text().splitlines()
    assert sorted(annotations) == sorted(f"{r['sample']} {r['label']}" for r in rows)

    failures = {r["filename"]: r for r in read_csv(cache / "failures.csv")}
    assert {name: r["code"] for name, r in failures.items()} == {
        "noface.mp4": "no_face",
        "empty.mp4": "empty_file",
        "garbage.mp4": "decode_error",
    }
    assert failures["garbage.mp4"]["reason"] == "decode_error: invalid data found"
    assert failures["empty.mp4"]["filepath"] == str(tmp_path / "data" / "fake" / "empty.mp4")

    assert load_preprocess_config(cache / "preprocess_config.json") == CFG
    saved = json.loads((cache / "summary.json").read_text())
    assert saved["processed"] == 6 and saved["samples"] == 7 and saved["bytes_per_sample"] > 0
    assert summary.sample_bytes == sum((cache / r["sample"]).stat().st_size for r in rows)
    assert summary.stage_seconds["detect"] == pytest.approx(0.02 * 6)
    assert "failed 3" in summary.format()


def test_missing_files_are_failures(tmp_path):
    data = make_dataset(tmp_path / "data", {"a.mp4": b"tracks=1"})
    (data / "labels.csv").write_text("filename,label\na.mp4,0\nmissing.mp4,1\n")
    summary = run(load_dataset(data / "labels.csv"), tmp_path / "cache")
    assert summary.processed == 1 and dict(summary.failed) == {"missing_file": 1}
    assert read_csv(tmp_path / "cache" / "failures.csv")[0]["filename"] == "missing.mp4"


def test_resume_skips_finished_videos_and_redoes_a_deleted_marker(tmp_path):
    items = load_dataset(make_dataset(tmp_path / "data"))
    cache = tmp_path / "cache"
    first: list[str] = []
    run(items, cache, first)
    assert sorted(first) == sorted(GOOD | {"noface.mp4", "empty.mp4", "garbage.mp4"})
    manifest = (cache / "manifest.csv").read_text()

    second: list[str] = []
    summary = run(items, cache, second)
    # Samples and no_face are final; other failures are tried again.
    assert sorted(second) == ["empty.mp4", "garbage.mp4"]
    assert summary.skipped == 7 and summary.processed == 0
    assert (cache / "manifest.csv").read_text() == manifest
    assert len(read_csv(cache / "failures.csv")) == 3

    d = next(item for item in items if item.filename == "d.mp4")
    marker_path(cache, d.video_id).unlink()
    third: list[str] = []
    run(items, cache, third)
    assert sorted(third) == ["d.mp4", "empty.mp4", "garbage.mp4"]
    assert (cache / "manifest.csv").read_text() == manifest


def test_damaged_sample_or_marker_is_redone(tmp_path):
    items = load_dataset(
        make_dataset(tmp_path / "data", {"real/a.mp4": b"tracks=1", "fake/b.mp4": b"tracks=1"})
    )
    cache = tmp_path / "cache"
    run(items, cache)
    a, b = items[1], items[0]
    assert (a.filename, b.filename) == ("a.mp4", "b.mp4")
    npz = sample_path(cache, a.video_id, 0)
    npz.write_bytes(npz.read_bytes()[:100])  # truncated (e.g. by a full disk)
    marker_path(cache, b.video_id).write_text("{half a marker")
    calls: list[str] = []
    run(items, cache, calls)
    assert sorted(calls) == ["a.mp4", "b.mp4"]
    assert load_sample(npz).meta.video == "a.mp4"


def test_config_change_redoes_all_and_drops_stale_tracks(tmp_path):
    items = load_dataset(
        make_dataset(tmp_path / "data", {"real/a.mp4": b"tracks=1", "fake/c.mp4": b"tracks=3"})
    )
    cache = tmp_path / "cache"
    run(items, cache)
    assert len(list((cache / "samples").glob("c__*"))) == 3
    narrow = CFG.replace("track", max_tracks=1)
    assert config_hash(narrow) != config_hash(CFG)
    calls: list[str] = []
    summary = run(items, cache, calls, cfg=narrow)
    assert sorted(calls) == ["a.mp4", "c.mp4"] and summary.skipped == 0
    assert [p.name.endswith("__t0.npz") for p in (cache / "samples").glob("c__*")] == [True]
    assert json.loads((cache / "preprocess_config.json").read_text())["config_hash"] == config_hash(narrow)
    assert len(read_csv(cache / "manifest.csv")) == 2


def test_new_syncnet_weights_make_the_cache_stale(tmp_path, monkeypatch):
    """Samples made without SyncNet carry no latency; once weights appear they are redone."""
    import torch

    from weights.store import save_weights

    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("retinaface_mobilenetv2.safetensors", "retinaface_mobilenetv2.json"):
        (weights / name).symlink_to(ROOT / "weights" / name)
    monkeypatch.setenv("AVDF_WEIGHTS", str(weights))
    items = load_dataset(make_dataset(tmp_path / "data", {"real/a.mp4": b"tracks=1"}))
    cache = tmp_path / "cache"
    before = config_hash(CFG)
    run(items, cache)
    assert run(items, cache).skipped == 1
    save_weights(weights / "syncnet", {"w": torch.zeros(2)}, "syncnet", {}, None)
    assert config_hash(CFG) != before
    calls: list[str] = []
    summary = run(items, cache, calls)
    assert calls == ["a.mp4"] and summary.skipped == 0
    save_weights(weights / "syncnet", {"w": torch.ones(2)}, "syncnet", {}, None)  # retrained
    assert run(items, cache).skipped == 0


def test_interrupted_run_leaves_no_partial_files_and_resumes(tmp_path):
    items = load_dataset(make_dataset(tmp_path / "data"))
    cache = tmp_path / "cache"
    calls: list[str] = []

    class StopsOnThird(StandInPreprocessor):
        def process(self, path, label=-1):
            if len(self.calls) == 2:
                self.calls.append("stopped")
                raise KeyboardInterrupt
            return super().process(path, label)

    with pytest.raises(KeyboardInterrupt):
        run_preprocess(
            items,
            cache,
            CFG,
            workers=0,
            progress=False,
            preprocessor_factory=lambda c, d: StopsOnThird(c, d, calls),
        )
    assert not list(cache.rglob("*.tmp")) and not (cache / "manifest.csv").exists()
    finished = [item for item in items if item.filename in calls]
    assert len(finished) == 2 and len(list((cache / "done").glob("*.json"))) == 2
    for npz in (cache / "samples").glob("*.npz"):
        load_sample(npz)  # every file on disk is whole

    redo: list[str] = []
    summary = run(items, cache, redo)
    assert sorted(redo) == sorted(item.filename for item in items if item not in finished)
    assert (summary.skipped, summary.processed + sum(summary.failed.values())) == (2, len(items) - 2)


def test_stale_temp_files_from_a_killed_run_are_cleared(tmp_path):
    items = load_dataset(make_dataset(tmp_path / "data", {"a.mp4": b"tracks=1"}))
    cache = tmp_path / "cache"
    (cache / "samples").mkdir(parents=True)
    (cache / "samples" / ".a__x__t0.npz.k3j2.tmp").write_bytes(b"PK half")
    run(items, cache)
    assert not list(cache.rglob("*.tmp")) and len(list((cache / "samples").glob("*.npz"))) == 1


def test_pipeline_bug_fails_only_that_video(tmp_path):
    items = load_dataset(make_dataset(tmp_path / "data", {"a.mp4": b"tracks=1", "b.mp4": b"bug"}))
    summary = run(items, tmp_path / "cache")
    failure = read_csv(tmp_path / "cache" / "failures.csv")[0]
    assert summary.processed == 1 and failure["filename"] == "b.mp4" and failure["code"] == "internal_error"
    assert "a bug in a stage" in failure["reason"]


def test_single_person_filter(tmp_path):
    items = load_dataset(make_dataset(tmp_path / "data"))
    summary = run(items, tmp_path / "cache", single_person=True)
    names = {r["filename"] for r in read_csv(tmp_path / "cache" / "manifest.csv")}
    assert names == GOOD - {"c.mp4"} and summary.excluded_multi_person == 1


def test_worker_crash_fails_that_video_and_the_run_goes_on(tmp_path):
    videos = {"real/a.mp4": b"tracks=1", "real/b.mp4": b"tracks=1", "fake/crash.mp4": b"crash"}
    videos |= {"fake/c.mp4": b"tracks=2", "fake/d.mp4": b"tracks=1", "fake/e.mp4": b""}
    items = load_dataset(make_dataset(tmp_path / "data", videos))
    cache = tmp_path / "cache"
    summary = run_preprocess(
        items, cache, CFG, workers=2, threads=1, preprocessor_factory=stand_in_factory, progress=False
    )
    assert summary.pool_rebuilds >= 1
    assert summary.processed == 4 and dict(summary.failed) == {"worker_crashed": 1, "empty_file": 1}
    failures = {r["filename"]: r["code"] for r in read_csv(cache / "failures.csv")}
    assert failures == {"crash.mp4": "worker_crashed", "e.mp4": "empty_file"}
    assert {r["filename"] for r in read_csv(cache / "manifest.csv")} == {"a.mp4", "b.mp4", "c.mp4", "d.mp4"}


def test_stuck_video_is_killed_and_the_run_goes_on(tmp_path):
    videos = {"real/a.mp4": b"tracks=1", "fake/stuck.mp4": b"hang", "fake/b.mp4": b"tracks=1"}
    items = load_dataset(make_dataset(tmp_path / "data", videos))
    cache = tmp_path / "cache"
    started = time.monotonic()
    summary = run_preprocess(
        items, cache, CFG, workers=2, threads=1, preprocessor_factory=stand_in_factory,
        video_timeout=2.0, progress=False,
    )  # fmt: skip
    assert time.monotonic() - started < 60
    assert summary.processed == 2 and dict(summary.failed) == {"timeout": 1}
    failures = {r["filename"]: r["reason"] for r in read_csv(cache / "failures.csv")}
    assert failures == {"stuck.mp4": "timeout: stuck over 2 s; worker killed"}


def test_preprocessor_that_cannot_be_built_is_fatal(tmp_path):
    items = load_dataset(make_dataset(tmp_path / "data", {"a.mp4": b"tracks=1"}))
    for workers in (0, 1):
        with pytest.raises(WorkerInitError, match="retinaface_mobilenetv2"):
            run_preprocess(
                items,
                tmp_path / "cache",
                CFG,
                workers=workers,
                preprocessor_factory=failing_factory,
                progress=False,
            )


def test_main_exit_codes_and_options(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    cache = tmp_path / "cache"
    argv = [str(data), "--out", str(cache), "--workers", "0", "--no-progress", "--num-frames", "2"]
    argv += ["--window", "4", "--detect-every", "3", "--split", "0.5,0.5", "--limit", "8"]
    assert main(argv, preprocessor_factory=stand_in_factory) == 0  # despite the failed videos
    cfg = load_preprocess_config(cache / "preprocess_config.json")
    assert (cfg.sample.num_frames, cfg.media.window_s, cfg.detector.detect_every) == (2, 4.0, 3)
    rows = read_csv(cache / "manifest.csv")
    assert {r["split"] for r in rows} == {"train", "val"}
    assert load_sample(cache / rows[0]["sample"]).faces.shape[0] == 2
    assert json.loads((cache / "summary.json").read_text())["videos"] == 8
    assert "videos 8: processed" in capsys.readouterr().err

    # --config accepts a cache's own preprocess_config.json: same hash, so everything resumes.
    again = [str(data), "--out", str(cache), "--workers", "0", "--no-progress", "--limit", "8"]
    assert main([*again, "--config", str(cache / "preprocess_config.json")], stand_in_factory) == 0
    assert json.loads((cache / "summary.json").read_text())["processed"] == 0

    assert main([str(data), "--out", str(cache), "--workers", "0"], failing_factory) == 1
    assert main([str(tmp_path / "nowhere"), "--out", str(cache)], stand_in_factory) == 2
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(cache)], stand_in_factory) == 2
    with pytest.raises(SystemExit) as info:
        main([str(data), "--out", str(cache), "--split", "0.5,0.6"])
    assert info.value.code == 2


def test_marker_round_trip():
    outcome = VideoOutcome("p/a.mp4", "a.mp4", "/d/p/a.mp4", "h", "failed", code="no_face", detail="none")
    assert VideoOutcome.from_json(outcome.to_json()) == outcome
    assert outcome.reason == "no_face: none"
    with pytest.raises(ValueError):
        VideoOutcome.from_json(json.dumps({"marker_format": 99}))
    assert "no_face" in cache_layout.FINAL_FAILURES and "decode_error" not in cache_layout.FINAL_FAILURES


@pytest.mark.slow
def test_command_line_on_real_clips(tmp_path):
    """The real pipeline through ``python -m preprocess``: two real clips and a broken file."""
    data = tmp_path / "data"
    (data / "real").mkdir(parents=True)
    (data / "fake").mkdir()
    os.symlink(shared_media("real", "pcavs_Pose_Source_620900105.mp4"), data / "real" / "talk1.mp4")
    os.symlink(shared_media("real", "pcavs_Pose_Source_517600055.mp4"), data / "fake" / "talk2.mp4")
    (data / "fake" / "broken.mp4").write_bytes(np.random.default_rng(1).bytes(4096))
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "preprocess", str(data), "--out", str(cache), "--workers", "1"]
    command += ["--window", "2", "--num-frames", "4", "--threads", "2", "--no-progress"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    rows = read_csv(cache / "manifest.csv")
    assert {r["filename"] for r in rows} == {"talk1.mp4", "talk2.mp4"}
    for row in rows:
        sample = load_sample(cache / row["sample"])
        assert sample.faces.shape == (4, 224, 224, 3) and sample.faces.dtype == np.uint8
        assert sample.meta.label == int(row["label"]) == (1 if row["filename"] == "talk2.mp4" else 0)
        assert sample.meta.has_audio and sample.audio.dtype == np.int16 and sample.audio.size > 0
        assert sample.mfcc.shape[0] == 13 and sample.mfcc.shape[1] > 0
    failures = read_csv(cache / "failures.csv")
    assert [f["filename"] for f in failures] == ["broken.mp4"]
    assert failures[0]["code"] not in {"internal_error", "worker_crashed", "no_face"}, failures

    markers = {p: p.stat().st_mtime_ns for p in (cache / "done").glob("*.json") if "talk" in p.name}
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "skipped 2" in again.stderr, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in markers} == markers
