"""Long runs survive: the journal beside the CSV, resuming, ``--fresh``, and the CSV forms.

The fast tests drive ``main`` with the fakes of ``submission_fakes`` (``$FAKE_PROCESS_LOG``
lists every video a preprocessor processed); the slow one SIGKILLs a real ``bash run.sh`` run
mid-batch and starts it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import shared_media
from submission_fakes import FakePreprocessor, FakeScorer
from test_submission import ROOT, make_folder, read_csv, tiny_weights  # noqa: F401 (a fixture)

from submission.cli import main
from submission.journal import Journal, journal_path
from submission.scoring import VideoScore

NAMES = ["a_p10.mp4", "b_p20_p70.mp4", "c_noface.mp4", "d_broken.mp4", "e_p40.mp4"]


@pytest.fixture
def processed(tmp_path, monkeypatch) -> Path:
    log = tmp_path / "processed.txt"
    monkeypatch.setenv("FAKE_PROCESS_LOG", str(log))
    return log


def names_in(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def score(folder: Path, out: Path, *extra: str) -> int:
    argv = ["-input", str(folder), "-output", str(out), "--no-progress", "--workers", "0", *extra]
    return main(argv, preprocessor_factory=FakePreprocessor, scorer=FakeScorer())


def entries(csv_path: Path) -> list[dict]:
    lines = journal_path(csv_path).read_text().splitlines()
    assert json.loads(lines[0])["journal"] == 1
    return [json.loads(line) for line in lines[1:]]


def test_dfdc_and_tmc_forms(tmp_path):
    folder = make_folder(tmp_path / "in", NAMES)
    assert score(folder, tmp_path / "tmc.csv") == 0
    assert score(folder, tmp_path / "dfdc.csv", "--format", "dfdc") == 0
    tmc, dfdc = read_csv(tmp_path / "tmc.csv"), read_csv(tmp_path / "dfdc.csv")
    assert tmc[0] == ["filename", "probability"] and dfdc[0] == ["filename", "label"]
    assert dfdc[1:] == tmc[1:] and len(tmc) == len(NAMES) + 1
    with pytest.raises(SystemExit) as exc:
        score(folder, tmp_path / "x.csv", "--format", "kaggle")
    assert exc.value.code == 2


def test_rerun_resumes_from_the_journal(tmp_path, processed, capsys):
    folder = make_folder(tmp_path / "in", NAMES)
    out = tmp_path / "out" / "submission.csv"
    assert score(folder, out) == 0
    first = read_csv(out)
    assert sorted(names_in(processed)) == NAMES
    assert sorted(e["file"] for e in entries(out)) == NAMES
    capsys.readouterr()

    processed.unlink()
    assert score(folder, out, "--format", "dfdc") == 0
    assert names_in(processed) == []  # nothing preprocessed again
    assert read_csv(out)[1:] == first[1:]
    assert f"{len(NAMES)} of {len(NAMES)} videos already scored, 0 to go" in capsys.readouterr().err
    assert {r[0]: r[1] for r in read_csv(out.with_name("submission_failures.csv"))[1:]} == {
        "c_noface.mp4": "no_face",
        "d_broken.mp4": "decode_error: fake",
    }


def test_fresh_changed_settings_and_changed_files_are_scored_again(tmp_path, processed, capsys):
    folder = make_folder(tmp_path / "in", NAMES)
    out = tmp_path / "submission.csv"
    assert score(folder, out) == 0
    processed.unlink()
    assert score(folder, out, "--fresh") == 0
    assert sorted(names_in(processed)) == NAMES

    processed.unlink()
    capsys.readouterr()
    assert score(folder, out, "--aggregate", "mean") == 0  # another score for b: not reusable
    assert sorted(names_in(processed)) == NAMES
    assert "another model or settings" in capsys.readouterr().err
    assert dict(read_csv(out)[1:])["b_p20_p70.mp4"] == "0.450000"

    processed.unlink()
    (folder / "e_p40.mp4").write_bytes(b"new content under the old name")
    assert score(folder, out, "--aggregate", "mean") == 0
    assert names_in(processed) == ["e_p40.mp4"]
    assert [e["file"] for e in entries(out)].count("e_p40.mp4") == 1


def test_cut_line_and_duplicates_in_the_journal(tmp_path, processed):
    """A SIGKILL can leave half a line; a line for a video twice is read as its last one."""
    folder = make_folder(tmp_path / "in", NAMES)
    out = tmp_path / "submission.csv"
    assert score(folder, out) == 0
    journal = journal_path(out)
    a = next(e for e in entries(out) if e["file"] == "a_p10.mp4")
    with open(journal, "a") as f:
        f.write(json.dumps({**a, "probability": 0.9, "tracks": [0.9]}) + "\n")
        f.write(json.dumps({**a, "probability": "high"}) + "\n")  # not ours: skipped
        f.write('{"file": "e_p40.mp4", "probab')
    processed.unlink()
    assert score(folder, out) == 0
    assert names_in(processed) == []
    assert dict(read_csv(out)[1:])["a_p10.mp4"] == "0.900000"
    assert len(read_csv(out)) == len(NAMES) + 1
    # rewritten whole: every line parses, one per video
    assert sorted(e["file"] for e in entries(out)) == NAMES


def test_failures_of_the_run_are_not_journaled(tmp_path):
    videos = make_folder(tmp_path / "in", ["a.mp4", "b.mp4", "c.mp4"])
    videos = sorted(videos.iterdir())
    out = tmp_path / "submission.csv"
    journal = Journal(out, videos, {"model": "x"})
    journal.record(VideoScore("a.mp4", None, "decode_error: truncated"))
    journal.record(VideoScore("b.mp4", None, "not_scored: no result came back for this video"))
    journal.record(VideoScore("c.mp4", None, "inference_error: inference thread stopped"))
    journal.close()
    again = Journal(out, videos, {"model": "x"})
    assert set(again.done) == {"a.mp4"} and [v.name for v in again.todo] == ["b.mp4", "c.mp4"]
    again.close()
    other = Journal(out, videos, {"model": "y"})
    assert other.done == {} and len(other.todo) == 3
    other.close()


def test_a_journal_that_cannot_be_written_does_not_stop_the_run(tmp_path, capsys):
    folder = make_folder(tmp_path / "in", NAMES)
    out = tmp_path / "submission.csv"
    journal_path(out).mkdir()  # a folder where the journal should go
    assert score(folder, out) == 0
    assert len(read_csv(out)) == len(NAMES) + 1
    err = capsys.readouterr().err
    assert f"cannot write {journal_path(out)}" in err and "cannot be resumed" in err


# --- a real run killed with SIGKILL, then started again --------------------------------------

CLIPS = [
    "pcavs_Pose_Source_620900105.mp4",
    "pcavs_Pose_Source_517600055.mp4",
    "pcavs_Pose_Source_00067.mp4",
    "retalking_face_5.mp4",
]
BATCH = 12


def journal_entries(path: Path) -> list[dict]:
    """The complete lines after the header (a kill may have cut the last one)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines()[1:]:
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


@pytest.mark.slow
@pytest.mark.shared
def test_sigkill_mid_batch_then_rerun_finishes_only_the_rest(tiny_weights, tmp_path):  # noqa: F811
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(BATCH):
        (folder / f"v{i:02d}.mp4").symlink_to(shared_media("real", CLIPS[i % len(CLIPS)]))
    out = tmp_path / "out"
    csv_path = out / "submission.csv"
    journal = journal_path(csv_path)
    cmd = ["bash", str(ROOT / "run.sh"), str(folder), str(out), "--no-progress", "--workers", "1"]
    cmd += ["--runtime", "torch"]
    env = {**os.environ, "AVDF_WEIGHTS": str(tiny_weights)}

    # its own session: the kill takes the worker processes too, as a killed container would
    run = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(journal_entries(journal)) < 3 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL, run.stderr.read()
    before = journal_entries(journal)
    assert 3 <= len(before) < BATCH, f"{len(before)} videos were done when the kill came"
    assert not csv_path.exists()  # the CSV is written only at the end

    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    done, rest = len(before), BATCH - len(before)
    assert f"{done} of {BATCH} videos already scored, {rest} to go" in proc.stderr
    assert f"{rest} videos (0 failed)" in proc.stderr  # the timing summary counts only this run's
    rows = read_csv(csv_path)
    assert [r[0] for r in rows[1:]] == [f"v{i:02d}.mp4" for i in range(BATCH)]  # once each, sorted
    after = journal_entries(journal)
    assert sorted(e["file"] for e in after) == [r[0] for r in rows[1:]]
    assert after[:done] == before  # the finished ones are kept as they were, not recomputed
    probabilities = dict(rows[1:])
    for e in before:
        assert probabilities[e["file"]] == f"{e['probability']:.6f}"
