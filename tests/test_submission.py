"""The submission entry point: a folder of videos -> submission.csv (+ failures sidecar).

Fast tests drive the real orchestration (worker processes, crash and timeout handling, the
inference thread, the CSV writer, the CLI) with the fakes of ``submission_fakes``; the slow
ones run ``bash run.sh`` on real clips with a tiny random fusion model.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_media
from submission_fakes import FailingPreprocessor, FakePreprocessor, FakeScorer

from core.aggregation import aggregate
from core.preprocess_config import PreprocessConfig
from core.preprocess_data import VideoResult
from models.detector_io import softmax_fake_probability
from submission import writer
from submission.cli import build_parser, main
from submission.folder import list_videos, parse_extensions, scan_folder
from submission.preprocess_pool import PreprocessPool
from submission.scoring import VideoScore

ROOT = Path(__file__).resolve().parents[1]


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def make_folder(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def run_main(tmp_path: Path, names: list[str], *extra: str, scorer=None, factory=FakePreprocessor):
    folder = make_folder(tmp_path / "in", names)
    out = tmp_path / "out" / "submission.csv"
    scorer = scorer or FakeScorer()
    argv = ["-input", str(folder), "-output", str(out), "--no-progress", *extra]
    code = main(argv, preprocessor_factory=factory, scorer=scorer)
    return code, out


# --- folder, aggregation, probabilities ------------------------------------------------------


def test_list_videos_filters_by_extension_and_sorts(tmp_path):
    make_folder(tmp_path, ["b.mp4", "a.MP4", "c.mpg", "d.MOV", "e.webm", "notes.txt", ".hidden.mp4"])
    (tmp_path / "dir.mp4").mkdir()
    # every common container by default
    assert [p.name for p in list_videos(tmp_path)] == [
        ".hidden.mp4",
        "a.MP4",
        "b.mp4",
        "c.mpg",
        "d.MOV",
        "e.webm",
    ]
    exts = parse_extensions("mp4, .MPG,mp4")
    assert exts == (".mp4", ".mpg")
    assert [p.name for p in list_videos(tmp_path, exts)] == [".hidden.mp4", "a.MP4", "b.mp4", "c.mpg"]
    listing = scan_folder(tmp_path, exts)
    assert [p.name for p in listing.skipped] == ["d.MOV", "e.webm", "notes.txt"]
    assert [p.name for p in listing.skipped_videos] == ["d.MOV", "e.webm"]  # by their names
    note = listing.skipped_note()
    assert note.startswith("skipped 3 files") and "d.MOV, e.webm, notes.txt" in note
    assert note.endswith("d.MOV, e.webm hold video: to score them, --extensions mp4,mpg,mov,webm")
    assert scan_folder(tmp_path / "dir.mp4").skipped_note() is None


def test_skipped_files_of_unknown_extensions_are_probed_for_video(tmp_path):
    make_folder(tmp_path, ["a.mp4", "notes.txt"])
    clip = shared_media("real", "lipnet_GRID_bbaf2n.mpg").read_bytes()
    (tmp_path / "phone.3gp").write_bytes(clip)  # footage under a name we do not score
    (tmp_path / "fake.3gp").write_bytes(b"not a video at all")
    listing = scan_folder(tmp_path)
    assert [p.name for p in listing.skipped] == ["fake.3gp", "notes.txt", "phone.3gp"]
    assert [p.name for p in listing.skipped_videos] == ["phone.3gp"]
    assert listing.skipped_note().endswith(
        "phone.3gp holds video: to score it, --extensions mp4,m4v,mov,avi,mkv,webm,mpg,mpeg,ts,flv,wmv,3gp"
    )
    with pytest.raises(ValueError):
        parse_extensions(" , ")
    with pytest.raises(NotADirectoryError):
        list_videos(tmp_path / "missing")


def test_aggregate_and_fake_probability():
    assert aggregate([0.2, 0.9, 0.4], "max") == pytest.approx(0.9)
    assert aggregate([0.2, 0.9, 0.4], "mean") == pytest.approx(0.5)
    with pytest.raises(ValueError):
        aggregate([], "max")
    with pytest.raises(ValueError):
        aggregate([0.1], "median")
    logits = np.array([[0.0, 0.0], [2.0, -1.0], [-800.0, 800.0], [1e3, -1e3]])
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected = expected[:, 1] / expected.sum(1)
    np.testing.assert_allclose(softmax_fake_probability(logits), expected, atol=1e-12)
    with pytest.raises(ValueError):
        softmax_fake_probability(np.zeros((2, 3)))


# --- CSV writer ----------------------------------------------------------------------------


def test_submission_rows_fallback_clip_and_format():
    scores = [
        VideoScore("b.mp4", 1.0),
        VideoScore("a.mp4", None, "no_face"),
        VideoScore("c.mp4", 0.123456789),
        VideoScore("d.mp4", 0.0),
    ]
    rows = writer.submission_rows(scores, fallback=0.5, clip_eps=0.001)
    assert rows == [
        ("a.mp4", "0.500000"),
        ("b.mp4", "0.999000"),
        ("c.mp4", "0.123457"),
        ("d.mp4", "0.001000"),
    ]
    unclipped = writer.submission_rows(scores, fallback=0.25, clip_eps=0.0)
    assert dict(unclipped) == {
        "a.mp4": "0.250000",
        "b.mp4": "1.000000",
        "c.mp4": "0.123457",
        "d.mp4": "0.000000",
    }
    with pytest.raises(ValueError):
        writer.submission_rows(scores, fallback=1.5, clip_eps=0.0)


def test_write_csv_atomic_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "submission.csv"
    target.write_text("old content\n")

    def rows():
        yield ("a.mp4", "0.1")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        writer.write_csv_atomic(target, writer.HEADER, rows())
    assert target.read_text() == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]  # no temp file left

    writer.write_csv_atomic(target, writer.HEADER, [("x,y.mp4", "0.5")])
    assert read_csv(target) == [["filename", "probability"], ["x,y.mp4", "0.5"]]
    assert target.stat().st_mode & 0o044  # readable by others (a grader with another uid)


def test_check_writable(tmp_path):
    writer.check_writable(tmp_path / "new" / "deeper" / "submission.csv")  # creates the folders
    assert (tmp_path / "new" / "deeper").is_dir()
    assert list((tmp_path / "new" / "deeper").iterdir()) == []  # the probe is gone
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(writer.OutputError, match="cannot write"):
        writer.check_writable(blocker / "submission.csv")
    with pytest.raises(writer.OutputError, match="is a folder"):
        writer.check_writable(tmp_path)


# --- worker pool: crashes and timeouts ----------------------------------------------------------


def pool(workers=2, **kw) -> PreprocessPool:
    return PreprocessPool(FakePreprocessor, PreprocessConfig(), workers=workers, **kw)


def test_pool_survives_a_worker_crash(tmp_path):
    paths = [str(tmp_path / n) for n in ["a_p10.mp4", "b_crash.mp4", "c_p20.mp4", "d_p30.mp4", "e_p40.mp4"]]
    p = pool(workers=2)
    results = dict(p.results(paths))
    assert sorted(results) == list(range(5))  # every video exactly once
    assert results[1].error.code == "worker_crashed"
    for i in (0, 2, 3, 4):
        assert results[i].ok and len(results[i].samples) == 1, results[i].error
    assert p.restarts >= 1


def test_pool_times_out_hanging_video_inside_the_worker(tmp_path):
    paths = [str(tmp_path / n) for n in ["a_p10.mp4", "b_hang.mp4", "c_p20.mp4"]]
    p = pool(workers=2, video_timeout=1.0)
    results = dict(p.results(paths))
    assert results[1].error.code == "timeout"
    assert results[0].ok and results[2].ok
    assert p.restarts == 0  # SIGALRM in the worker: no pool restart needed


def test_pool_kills_worker_stuck_in_native_code(tmp_path):
    # SIGALRM blocked, as in a decoder that never returns to Python: only a kill ends it
    paths = [str(tmp_path / n) for n in ["a_stuck.mp4", "b_p10.mp4", "c_p20.mp4"]]
    p = pool(workers=2, video_timeout=0.5, startup_grace=5.0, poll_s=0.2)
    results = dict(p.results(paths))
    assert results[0].error.code == "timeout" and "killed" in results[0].error.detail
    assert results[1].ok and results[2].ok
    assert p.restarts == 1


def test_pool_worker_whose_preprocessor_cannot_start(tmp_path):
    p = PreprocessPool(FailingPreprocessor, PreprocessConfig(), workers=1)
    results = dict(p.results([tmp_path / "a_p10.mp4", tmp_path / "b_p20.mp4"]))
    assert [r.error.code for _, r in sorted(results.items())] == ["preprocessor_unavailable"] * 2
    assert "weights not found" in results[0].error.detail
    assert p.restarts == 0  # reported per video, the pool itself is healthy


def test_pool_in_process_mode(tmp_path):
    results = dict(pool(workers=0).results([tmp_path / "a_p10.mp4", tmp_path / "b_raise.mp4"]))
    assert results[0].ok
    assert results[1].error.code == "internal_error" and "fake bug" in results[1].error.detail


# --- the whole entry point with fakes ------------------------------------------------------------


def test_main_scores_every_video_with_workers(tmp_path, capsys, monkeypatch):
    init_log = tmp_path / "inits.txt"
    monkeypatch.setenv("FAKE_INIT_LOG", str(init_log))
    names = [
        "a_p30.mp4",
        "b_p10_p80.mp4",
        "c_noface.mp4",
        "d_broken.mp4",
        "e_crash.mp4",
        "f_raise.mp4",
        "g_badmodel.mp4",
        "h_p60.mp4",
        "notes.txt",
    ]
    scorer = FakeScorer(batch_size=4)
    code, out = run_main(tmp_path, names, "--workers", "2", scorer=scorer)
    assert code == 0
    rows = read_csv(out)
    assert rows[0] == ["filename", "probability"]
    assert rows[1:] == [
        ["a_p30.mp4", "0.300000"],
        ["b_p10_p80.mp4", "0.800000"],  # max over its two face tracks
        ["c_noface.mp4", "0.500000"],
        ["d_broken.mp4", "0.500000"],
        ["e_crash.mp4", "0.500000"],
        ["f_raise.mp4", "0.500000"],
        ["g_badmodel.mp4", "0.500000"],
        ["h_p60.mp4", "0.600000"],
    ]
    failures = {r[0]: r[1] for r in read_csv(writer.failures_path(out))[1:]}
    assert set(failures) == {"c_noface.mp4", "d_broken.mp4", "e_crash.mp4", "f_raise.mp4", "g_badmodel.mp4"}
    assert failures["c_noface.mp4"] == "no_face"
    assert failures["d_broken.mp4"] == "decode_error: fake"
    assert failures["e_crash.mp4"].startswith("worker_crashed")
    assert failures["f_raise.mp4"] == "internal_error: RuntimeError: fake bug"
    assert failures["g_badmodel.mp4"].startswith("inference_error: ValueError")
    # the preprocessor is built once per worker process (+ once in the main process to check it)
    inits = init_log.read_text().split()
    assert len(inits) < len(names)
    assert str(os.getpid()) in inits
    err = capsys.readouterr().err
    assert "videos/min" in err and "decode" in err and "Traceback" not in err


def test_main_aggregate_mean_fallback_and_clip(tmp_path):
    code, out = run_main(
        tmp_path,
        ["a_p10_p80.mp4", "b_noface.mp4", "c_p0.mp4", "d_p100.mp4"],
        "--workers",
        "0",
        "--aggregate",
        "mean",
        "--fallback",
        "0.4",
        "--clip-eps",
        "0.01",
    )
    assert code == 0
    assert read_csv(out)[1:] == [
        ["a_p10_p80.mp4", "0.450000"],
        ["b_noface.mp4", "0.400000"],
        ["c_p0.mp4", "0.010000"],
        ["d_p100.mp4", "0.990000"],
    ]
    assert read_csv(writer.failures_path(out)) == [
        ["filename", "reason", "warning"],
        ["b_noface.mp4", "no_face", ""],
    ]


def test_main_batches_samples_across_videos(tmp_path):
    scorer = FakeScorer(batch_size=64)
    names = [f"v{i:02d}_p{i}.mp4" for i in range(12)]
    code, out = run_main(tmp_path, names, "--workers", "0", scorer=scorer)
    assert code == 0
    assert [r[1] for r in read_csv(out)[1:]] == [f"{max(i / 100, 0.001):.6f}" for i in range(12)]
    assert sum(len(b) for b in scorer.batches) == 12
    assert max(len(b) for b in scorer.batches) > 1  # samples of several videos in one model call


def test_main_extensions_option_and_empty_folder(tmp_path, capsys):
    code, out = run_main(
        tmp_path, ["a_p20.mpg", "b_p30.MOV", "c_p40.mp4"], "--workers", "0", "--extensions", "mpg,mov"
    )
    assert code == 0
    assert [r[0] for r in read_csv(out)[1:]] == ["a_p20.mpg", "b_p30.MOV"]
    assert "skipped 1 file in" in capsys.readouterr().err  # c_p40.mp4, said aloud
    code, out = run_main(tmp_path / "empty", [], "--workers", "0")
    assert code == 0 and read_csv(out) == [["filename", "probability"]]
    assert "no mp4/m4v/mov" in capsys.readouterr().err


def test_main_scores_every_common_container_and_names_the_files_it_skips(tmp_path, capsys):
    names = ["a_p20.mpg", "b_p30.MOV", "c_p40.mp4", "d_p50.avi", "e_p60.mkv", "f_p70.webm", "notes.txt"]
    code, out = run_main(tmp_path, names, "--workers", "0")
    err = capsys.readouterr().err
    assert code == 0
    assert [r[0] for r in read_csv(out)[1:]] == names[:-1]
    assert "skipped 1 file in" in err and "notes.txt" in err and "6 videos in" in err


def test_one_video_is_one_video_and_one_row(tmp_path, capsys):
    code, _ = run_main(tmp_path, ["a_p20.mp4"], "--workers", "0")
    err = capsys.readouterr().err
    assert code == 0 and "1 video in" in err and "(1 row)" in err and "1 video (0 failed)" in err
    assert not re.search(r"(^|[^\d.,])1 (videos|rows)\b", err)  # (a rate, "94124.1 videos/min", may)
    assert "1 worker process" not in err and "0 worker processes" in err  # --workers 0


def test_a_folder_of_only_mpg_clips_with_extensions_mp4_names_the_option(tmp_path, capsys):
    code, out = run_main(tmp_path, ["a_p20.mpg"], "--workers", "0", "--extensions", "mp4")
    err = capsys.readouterr().err
    assert code == 0 and read_csv(out) == [["filename", "probability"]]
    last = err.strip().splitlines()[-1]
    assert "no mp4 files" in last and "a_p20.mpg" in last and "--extensions mp4,mpg" in last
    assert "(0 rows)" in err and "0 videos in" in err


def test_every_video_failed_by_the_run_exits_5_with_the_csv_written(tmp_path, capsys):
    # a bug in preprocessing (f_raise) and a crashed worker: the run, not the files, failed
    code, out = run_main(tmp_path, ["a_broken.mp4", "e_crash.mp4", "f_raise.mp4"], "--workers", "1")
    err = capsys.readouterr().err
    assert code == 5, err
    assert read_csv(out)[1:] == [[n, "0.500000"] for n in ("a_broken.mp4", "e_crash.mp4", "f_raise.mp4")]
    assert "every video failed" in err and "EVERY video failed" in err
    # only the files' own faults (broken, no face): an answer, exit 0
    code, out = run_main(tmp_path / "files", ["a_broken.mp4", "b_noface.mp4"], "--workers", "0")
    assert code == 0 and len(read_csv(out)) == 3
    # one video scored: exit 0 whatever the others' reasons
    code, _ = run_main(tmp_path / "one", ["a_p20.mp4", "f_raise.mp4"], "--workers", "0")
    assert code == 0


def test_main_unwritable_output_fails_before_any_work(tmp_path, capsys):
    folder = make_folder(tmp_path / "in", ["a_p10.mp4"])
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    # FailingPreprocessor and no weights: a later check would exit 3, so 4 proves the order
    code = main(
        ["-input", str(folder), "-output", str(blocker / "submission.csv")],
        preprocessor_factory=FailingPreprocessor,
    )
    err = capsys.readouterr().err
    assert code == 4
    assert "cannot write to output folder" in err and str(blocker) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "given, expected",
    [
        ("{tmp}", ["{tmp}: a folder, not a weights file", "it holds no weights pair"]),
        ("{tmp}/mine/x.safetensors", ["{tmp}/mine/x.safetensors: weights not found", "check the path"]),
        (
            "detectr",
            [
                "no weights named 'detectr'",
                "of those, detectors: default (ensemble), detector, temporal_band, temporal_net (--weights NAME)",
            ],
        ),
    ],
)
def test_weights_errors_say_what_was_given_and_the_fix(tmp_path, capsys, given, expected):
    folder = make_folder(tmp_path / "in", ["a_p10.mp4"])
    out = tmp_path / "out" / "submission.csv"
    weights = given.format(tmp=tmp_path / "w")
    (tmp_path / "w").mkdir()
    code = main(["-input", str(folder), "-output", str(out), "--device", "cpu", "--weights", weights])
    err = capsys.readouterr().err
    assert code == 3 and len(err.strip().splitlines()) == 1, err
    for part in expected:
        assert part.format(tmp=tmp_path / "w") in err
    assert "git checkout" not in err and "make setup" not in err


def test_a_damaged_shipped_detector_is_restored_from_git(tmp_path, capsys, monkeypatch):
    folder = make_folder(tmp_path / "in", ["a_p10.mp4"])
    shipped = tmp_path / "weights"
    shipped.mkdir()
    for name in ("default.json", "detector.json", "temporal_band.json", "temporal_band.safetensors"):
        (shipped / name).write_bytes((ROOT / "weights" / name).read_bytes())
    (shipped / "detector.safetensors").write_bytes(b"truncated")
    monkeypatch.setenv("AVDF_WEIGHTS", str(shipped))
    code = main(["-input", str(folder), "-output", str(tmp_path / "o.csv"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 3 and "detector.safetensors: sha256" in err and "git checkout weights/" in err


def test_main_missing_weights_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AVDF_WEIGHTS", str(tmp_path / "no_weights_here"))
    folder = make_folder(tmp_path / "in", ["a_p10.mp4"])
    out = tmp_path / "out" / "submission.csv"
    code = main(["-input", str(folder), "-output", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 3
    assert "no weights named 'default' in" in err and "no_weights_here" in err and "--weights" in err
    assert "make train-default" in err and "git checkout weights/" in err  # the command that builds it
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_main_invalid_weights_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "w"
    bad.mkdir()
    (bad / "fusion.safetensors").write_bytes(b"not a safetensors file")
    (bad / "fusion.json").write_text("{not json")
    folder = make_folder(tmp_path / "in", ["a_p10.mp4"])
    code = main(["-input", str(folder), "-output", str(tmp_path / "o.csv"), "--weights", str(bad / "fusion")])
    err = capsys.readouterr().err
    assert code == 3 and "corrupt" in err and "Traceback" not in err


def test_main_preprocessor_that_cannot_start(tmp_path, capsys):
    code, out = run_main(tmp_path, ["a_p10.mp4"], "--workers", "0", factory=FailingPreprocessor)
    err = capsys.readouterr().err
    assert code == 3 and "cannot build the preprocessor" in err and "weights not found" in err
    assert not out.exists()


def test_main_failed_write_leaves_previous_csv(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out" / "submission.csv"
    out.parent.mkdir()
    out.write_text("filename,probability\nold.mp4,0.5\n")

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.os, "fsync", no_space)
    code, _ = run_main(tmp_path, ["a_p10.mp4"], "--workers", "0")
    assert code == 4 and "No space left" in capsys.readouterr().err
    assert out.read_text() == "filename,probability\nold.mp4,0.5\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["submission.csv"]


def test_usage_errors(tmp_path, capsys):
    assert main(["-input", str(tmp_path / "missing"), "-output", str(tmp_path / "o.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    folder = make_folder(tmp_path / "in", [])
    assert main(["-input", str(folder), "-output", str(tmp_path / "o.csv"), "--fallback", "2"]) == 2


def test_cli_accepts_challenge_and_long_forms(tmp_path):
    parser = build_parser()
    a = parser.parse_args(["-input", "/data/input/", "-output", "/data/output/submission.csv"])
    b = parser.parse_args(["--input", "/data/input/", "--output", "/data/output/submission.csv"])
    assert (a.input, a.output) == (b.input, b.output) == ("/data/input/", "/data/output/submission.csv")
    assert (a.weights, a.runtime, a.aggregate, a.fallback, a.video_timeout) == (
        "default",
        "auto",
        None,  # the detector's own rule (max over face tracks for the fusion model)
        0.5,
        300.0,
    )
    # an output folder means FOLDER/submission.csv
    folder = make_folder(tmp_path / "in", ["a_p70.mp4"])
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    code = main(
        ["--input", str(folder), "--output", str(outdir), "--workers", "0", "--no-progress"],
        preprocessor_factory=FakePreprocessor,
        scorer=FakeScorer(),
    )
    assert code == 0 and read_csv(outdir / "submission.csv")[1] == ["a_p70.mp4", "0.700000"]


def test_run_sh_works_from_any_cwd(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "run.sh")], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr
    proc = subprocess.run(
        ["bash", str(ROOT / "run.sh"), "missing_in", "out"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert "input folder missing_in does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_run_sh_help_lists_every_option_with_its_default_and_both_forms(tmp_path):
    proc = subprocess.run(
        ["bash", str(ROOT / "run.sh"), "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())  # argparse wraps lines
    assert (
        "bash run.sh INPUT_DIR OUTPUT_DIR" in out and "bash run.sh -input INPUT_DIR -output OUTPUT_CSV" in out
    )
    for option, default in [
        ("--fallback", "0.5"),
        ("--video-timeout", "300.0"),
        ("--clip-eps", "0.001"),
        ("--format", "tmc"),
        ("--weights", "default"),
        ("--runtime", "auto"),
    ]:
        assert option in out and f"(default: {default})" in out.split(option, 1)[1][:400], option
    assert "--per-second" in out and "--explain" in out and "Exit status" in out


def test_run_sh_takes_the_challenge_form_too(tmp_path):
    proc = subprocess.run(
        ["bash", str(ROOT / "run.sh"), "-input", "missing_in", "-output", "out/submission.csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "input folder missing_in does not exist" in proc.stderr


# --- real end to end: bash run.sh on real clips with a tiny random fusion model --------------------

REAL_CLIPS = [("real", "pcavs_Pose_Source_620900105.mp4"), ("real", "lipnet_GRID_bbaf2n.mpg")]
DETECTOR = PreprocessConfig().detector.weights
BROKEN = {
    "empty.mp4": "empty_file",
    "random_bytes.mp4": "",
    "truncated.mp4": "",
    "image.mp4": "",
}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """A weights folder (AVDF_WEIGHTS) with a tiny random fusion model under the default name,
    its ONNX export, and links to the RetinaFace weights `make setup` built in weights/."""
    import torch

    from models.fusion import FusionConfig, FusionModel
    from models.onnx_export import export_onnx
    from weights.store import save_weights

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    cfg = FusionConfig.tiny()
    model = FusionModel(cfg).eval()
    # a 2 s window keeps the real clips quick on CPU; frames per sample follow the model
    pre = PreprocessConfig().replace("media", window_s=2.0).replace("sample", num_frames=cfg.num_frames)
    name = build_parser().get_default("weights")
    save_weights(folder / name, model.state_dict(), model.arch, cfg.to_dict(), pre.to_dict())
    export_onnx(model, folder / f"{name}.onnx")
    for suffix in (".safetensors", ".json"):
        src = ROOT / "weights" / f"{DETECTOR}{suffix}"
        if src.is_file():  # the end-to-end tests assert it is there
            (folder / src.name).symlink_to(src)
    return folder


@pytest.fixture(scope="module")
def mixed_input(tmp_path_factory) -> Path:
    """Real clips, a generated clip without a face, and broken files, in one folder."""
    from clips import make_clip, make_png

    folder = tmp_path_factory.mktemp("videos")
    for parts in REAL_CLIPS:
        (folder / parts[-1]).symlink_to(shared_media(*parts))
    make_clip(folder / "generated_noface.mp4", seconds=1.0)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "random_bytes.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    real = shared_media("real", "pcavs_Pose_Source_00067.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(real[: len(real) // 3])
    make_png(folder / "image.mp4")
    (folder / "notes.txt").write_text("not a video")
    return folder


def run_sh(input_dir: Path, output_dir: Path, weights: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AVDF_WEIGHTS": str(weights)}
    cmd = ["bash", str(ROOT / "run.sh"), str(input_dir), str(output_dir), "--no-progress", *extra]
    return subprocess.run(cmd, cwd=output_dir.parent, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.shared
def test_run_sh_end_to_end_on_real_and_broken_videos(tiny_weights, mixed_input, tmp_path):
    assert (tiny_weights / f"{DETECTOR}.safetensors").exists(), (
        f"weights/{DETECTOR} missing: run `make setup`"
    )
    out = tmp_path / "out"
    proc = run_sh(
        mixed_input, out, tiny_weights, "--extensions", "mp4,mpg", "--workers", "2", "--runtime", "torch"
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(out / "submission.csv")
    videos = sorted(p.name for p in mixed_input.iterdir() if p.suffix in (".mp4", ".mpg"))
    assert rows[0] == ["filename", "probability"]
    assert [r[0] for r in rows[1:]] == videos  # one row per video, sorted
    probs = {name: float(p) for name, p in rows[1:]}
    assert all(0.0 < p < 1.0 for p in probs.values())
    failures = {r[0]: r[1] for r in read_csv(out / "submission_failures.csv")[1:]}
    assert set(failures) == set(BROKEN) | {"generated_noface.mp4"}, failures
    assert failures["generated_noface.mp4"].startswith("no_face")
    assert failures["empty.mp4"].startswith("empty_file")
    assert all(probs[name] == 0.5 for name in failures)
    for _, name in REAL_CLIPS:  # faces found and scored by the model
        assert name not in failures and probs[name] != 0.5
    assert "videos/min" in proc.stderr and "detect" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_detector_scorer_runtimes_agree(tiny_weights, caplog):
    """The real fusion model through each runtime on the same samples: ONNX Runtime (the
    detector.onnx beside the weights) matches torch; TensorRT, absent here, falls back to torch."""
    from core.preprocess_data import Latency
    from submission.scoring import DetectorScorer

    rng = np.random.default_rng(0)
    samples = []
    for i in range(5):
        s = fake_sample_with_faces(rng, f"v{i}.mp4")
        if i % 2:  # some with a latency vector, as when the audio is in sync
            d = rng.uniform(6, 12, 31).astype(np.float32)
            s.latency = Latency(d, int(15 - d.argmin()), float(d.min()), float(np.median(d) - d.min()), d[:3])
        samples.append(s)
    probs, used = {}, {}
    for runtime in ("torch", "onnxruntime", "tensorrt"):
        scorer = DetectorScorer.from_weights(
            tiny_weights / build_parser().get_default("weights"), runtime=runtime, device="cpu", batch_size=2
        )
        assert scorer.preprocess_config.media.window_s == 2.0  # from the weights' JSON
        probs[runtime] = scorer.score(samples)
        used[runtime] = scorer.runtime.name
        assert probs[runtime].shape == (5,) and np.all((probs[runtime] > 0) & (probs[runtime] < 1))
    assert used == {"torch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "torch"}
    assert "tensorrt unavailable" in caplog.text
    np.testing.assert_allclose(probs["onnxruntime"], probs["torch"], atol=1e-5)
    assert np.ptp(probs["torch"]) > 0  # the inputs matter


def test_check_loads_weights_and_preprocessor_without_videos(tiny_weights, tmp_path, capsys):
    weights = str(tiny_weights / build_parser().get_default("weights"))
    argv = ["--check", "--weights", weights, "--device", "cpu"]
    assert main(argv, preprocessor_factory=FakePreprocessor) == 0
    assert "check passed" in capsys.readouterr().err
    assert main(argv, preprocessor_factory=FailingPreprocessor) == 3
    assert main(["--check", "--weights", str(tmp_path / "nothing")]) == 3


def fake_sample_with_faces(rng, name):
    from submission_fakes import fake_sample

    s = fake_sample(name, 0, 0, 1)
    s.faces = rng.integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)
    return s


@pytest.mark.slow
def test_run_sh_missing_weights_exits_with_one_message(tmp_path):
    folder = make_folder(tmp_path / "in", ["a.mp4"])
    empty = tmp_path / "no_weights"
    empty.mkdir()
    proc = run_sh(folder, tmp_path / "out", empty)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "no weights named 'default'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "submission.csv").exists()


def test_available_cpus_honours_a_cgroup_quota(tmp_path):
    from core.threads import available_cpus

    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == affinity  # no cgroup files: the CPU set
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # docker --cpus 1.5
    assert available_cpus(tmp_path) == min(affinity, 2)
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")  # cgroup v1, --cpus 0.5
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(tmp_path) == 1


class SwallowsTheFirstAlarm:
    """A video whose code swallows the first time-out, as Python does when the alarm lands in
    a weakref callback or ``__del__`` during garbage collection ("Exception ignored in ..."),
    then works on: the deadline must still end it."""

    def __init__(self) -> None:
        self.swallowed = 0

    def process(self, path):
        deadline = time.monotonic() + 3.0
        try:
            while time.monotonic() < deadline:
                time.sleep(0.01)
        except BaseException:
            self.swallowed += 1
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return VideoResult(path=str(path))


def test_a_swallowed_time_out_fires_again_until_it_ends_the_video():
    from submission.preprocess_pool import _process_video, _WorkerSlot

    preprocessor = SwallowsTheFirstAlarm()
    started = time.monotonic()
    path, samples, error, _ = _process_video(_WorkerSlot(preprocessor, "", 0.1), "a.mp4")
    assert preprocessor.swallowed == 1 and error is not None and error[0] == "timeout"
    assert time.monotonic() - started < 1.0  # not the 3 s the video would have taken
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # nothing left armed
