"""Time-resolved scores through the submission: ``--per-second`` and the data ``--explain``
reads, with a test detector that has time outputs (the real ones gain them on another branch),
through torch and ONNX Runtime; ensembles combined per second; the CSV unchanged without the
flags; resume; a broken video."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from submission_fakes import TimedFakePreprocessor

from core.aggregation import combine_log_odds, per_second
from core.preprocess_config import PreprocessConfig
from models.detector import DetectorModel
from models.runtimes import TorchRuntime
from submission.cli import main
from submission.ensemble import EnsembleScorer
from submission.scoring import DetectorScorer

NAMES = ["a_p30.mp4", "b_p10_p70.mp4", "c_broken.mp4", "d_noface.mp4"]


class TimedDetector(DetectorModel):
    """Each crop's fake log-odds = logit(pixel / 100) (+ ``shift``); the sample's = their mean.
    Outputs (B, 1) log-odds and (B, F) per-crop log-odds; column k is crop k, at its frame's time
    (+ ``time_shift`` seconds, to make members cover different seconds)."""

    input_names = ("values",)
    output_names = ("logits", "frame_logits")
    video_aggregation = "max"
    sign = 1.0
    time_shift = 0.0

    def __init__(self):
        super().__init__()
        self.config = None

    @classmethod
    def sample_inputs(cls, sample, config):
        return {"values": sample.faces[:, 0, 0, 0].astype(np.float32) / 100.0}

    def forward(self, values):
        z = self.sign * torch.logit(values.clamp(1e-4, 1 - 1e-4))
        return z.mean(dim=1, keepdim=True), z

    @classmethod
    def time_columns(cls, sample, config):
        return sample.face_frame_indices / sample.meta.fps + cls.time_shift

    @staticmethod
    def time_logits(outputs):
        return outputs[1]

    def example_inputs(self, batch=1, seed=0):
        return (torch.rand(batch, 6, generator=torch.Generator().manual_seed(seed)),)


class ShiftedInverse(TimedDetector):
    sign = -1.0
    time_shift = 1.0


class Untimed(TimedDetector):
    @staticmethod
    def time_logits(outputs):
        return None


def scorer(cls=TimedDetector, runtime=None) -> DetectorScorer:
    rt = runtime or TorchRuntime(cls().eval())
    return DetectorScorer(
        rt, cls, None, PreprocessConfig(), batch_size=3, description=cls.__name__, arch=cls.__name__
    )


def expected_seconds(value: int, sign: float = 1.0, shift: float = 0.0) -> list[tuple[int, float]]:
    """What per_second gives for a TimedFakePreprocessor track of pixel ``value``."""
    frames = np.array(TimedFakePreprocessor.FRAMES)
    pixels = np.minimum(value + 5 * np.arange(len(frames)), 250) / 100.0
    z = sign * np.log(np.clip(pixels, 1e-4, 1 - 1e-4) / (1 - np.clip(pixels, 1e-4, 1 - 1e-4)))
    return per_second(frames / 25.0 + shift, z)


def run(tmp_path: Path, sc, *extra: str, names=NAMES, out="out"):
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for n in names:
        if not (folder / n).exists():  # an unchanged file (size, mtime) is what a resume reuses
            (folder / n).touch()
    csv_path = tmp_path / out / "submission.csv"
    argv = ["-input", str(folder), "-output", str(csv_path), "--no-progress", "--workers", "0", *extra]
    assert main(argv, preprocessor_factory=TimedFakePreprocessor, scorer=sc) == 0
    return csv_path


def read(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_per_second_rows_match_per_second_of_the_detectors_outputs(tmp_path):
    seconds = tmp_path / "per_second.csv"
    csv_path = run(tmp_path, scorer(), "--per-second", str(seconds))
    rows = read(seconds)
    assert rows[0] == ["filename", "track", "second", "score", "measured"]
    expected = []
    for name, values in (("a_p30.mp4", [30]), ("b_p10_p70.mp4", [10, 70])):
        for track, v in enumerate(values):
            expected += [[name, str(track), str(s), f"{p:.6f}", "1"] for s, p in expected_seconds(v)]
    assert rows[1:] == expected  # broken and faceless videos: no rows
    assert {r[2] for r in rows[1:]} == {"0", "1", "2"}
    # the video's probability is still the detector's, from the same model call
    assert (
        dict(read(csv_path)[1:])["a_p30.mp4"]
        == f"{1 / (1 + np.exp(-np.mean(np.log([x / (1 - x) for x in np.arange(30, 60, 5) / 100])))):.6f}"
    )


def test_per_second_through_onnx_runtime(tmp_path):
    """Outputs beyond the first come back from ONNX Runtime too."""
    from models.onnx_export import export_onnx
    from models.runtimes import OnnxRuntimeRuntime

    onnx = export_onnx(TimedDetector().eval(), tmp_path / "timed.onnx")
    sc = scorer(runtime=OnnxRuntimeRuntime(onnx, providers="cpu", threads=1))
    seconds = tmp_path / "per_second.csv"
    run(tmp_path, sc, "--per-second", str(seconds), names=["a_p30.mp4"])
    got = [(int(r[2]), float(r[3])) for r in read(seconds)[1:]]
    np.testing.assert_allclose(got, expected_seconds(30), atol=1e-6)


def test_ensemble_keeps_members_and_combines_per_second(tmp_path):
    ens = EnsembleScorer([scorer(), scorer(ShiftedInverse)], ["timed", "inverse"], [2.0, 1.0])
    seconds = tmp_path / "per_second.csv"
    explain = tmp_path / "explain"
    run(tmp_path, ens, "--per-second", str(seconds), "--explain", str(explain), names=["a_p30.mp4"])
    a, b = dict(expected_seconds(30)), dict(expected_seconds(30, -1.0, 1.0))
    assert sorted(a) == [0, 1, 2] and sorted(b) == [1, 2, 3]
    want = []
    for s in range(4):  # each second: the members that have it, by their weights
        have = [(p[s], w) for p, w in ((a, 2.0), (b, 1.0)) if s in p]
        want.append((s, combine_log_odds([p for p, _ in have], [w for _, w in have])))
    got = [(int(r[2]), float(r[3])) for r in read(seconds)[1:]]
    np.testing.assert_allclose(got, want, atol=1e-6)
    page = json.loads((explain / "a_p30.mp4.json").read_text())
    track = page["tracks"][0]["seconds"]
    assert track["seconds"] == [0, 1, 2, 3]
    assert track["members"][0][3] is None and track["members"][1][0] is None  # each member's kept
    np.testing.assert_allclose(track["members"][1][1:], [b[s] for s in (1, 2, 3)], atol=1e-9)
    assert [m["name"] for m in page["models"]] == ["timed", "inverse"]


def test_detector_without_time_outputs_warns_once_and_writes_no_rows(tmp_path, caplog):
    seconds = tmp_path / "per_second.csv"
    with caplog.at_level(logging.WARNING, logger="submission"):
        run(tmp_path, scorer(Untimed), "--per-second", str(seconds))
    assert read(seconds) == [["filename", "track", "second", "score", "measured"]]
    assert caplog.text.count("gives no time-resolved scores") == 1


def test_submission_csv_and_sidecars_are_byte_identical_with_and_without_the_flags(tmp_path):
    ens = EnsembleScorer([scorer(), scorer(ShiftedInverse)], ["timed", "inverse"], [1.0, 1.0])
    plain = run(tmp_path, ens, out="plain")
    flagged = run(
        tmp_path, ens, "--per-second", str(tmp_path / "s.csv"), "--explain", str(tmp_path / "e"), out="flags"
    )
    for name in ("submission.csv", "submission_failures.csv", "submission_members.csv"):
        assert (plain.parent / name).read_bytes() == (flagged.parent / name).read_bytes(), name
    # without the flags the journal holds what it always did (no per-second scores)
    assert '"seconds"' not in (plain.parent / "submission_journal.jsonl").read_text()


def test_broken_video_gets_no_rows_and_an_error_page(tmp_path):
    explain = tmp_path / "explain"
    seconds = tmp_path / "s.csv"
    run(tmp_path, scorer(), "--per-second", str(seconds), "--explain", str(explain))
    assert not any(r[0] == "c_broken.mp4" for r in read(seconds))
    page = json.loads((explain / "c_broken.mp4.json").read_text())
    assert page["probability"] is None and page["error"] == "decode_error: fake"
    html = (explain / "c_broken.mp4.html").read_text()
    assert "decode_error: fake" in html and "not scored" in html
    index = (explain / "index.html").read_text()
    # by score, highest first; failed videos last
    order = [index.index(n) for n in ("b_p10_p70.mp4.html", "a_p30.mp4.html", "c_broken.mp4.html")]
    assert order == sorted(order)
    b = json.loads((explain / "b_p10_p70.mp4.json").read_text())
    assert b["driving_track"] == 1 and "track 1 drove the score" in b["driver"]
    assert b["tracks"][0]["latency_note"].endswith("the video has no audio")


def test_resume_gives_complete_rows_and_pages(tmp_path, monkeypatch):
    processed = tmp_path / "processed.txt"
    monkeypatch.setenv("FAKE_PROCESS_LOG", str(processed))
    # a run without the flags journals no per-second scores: asking for them rescores
    run(tmp_path, scorer())
    processed.unlink()
    seconds, explain = tmp_path / "s.csv", tmp_path / "e"
    run(tmp_path, scorer(), "--per-second", str(seconds), "--explain", str(explain))
    # the failures too: they had no error page yet
    assert sorted(processed.read_text().split()) == sorted(NAMES)
    first = seconds.read_bytes()
    # resumed: nothing to score, the rows come from the journal; a missing page is remade
    processed.unlink()
    seconds.unlink()
    (explain / "a_p30.mp4.html").unlink()
    run(tmp_path, scorer(), "--per-second", str(seconds), "--explain", str(explain))
    assert processed.read_text().split() == ["a_p30.mp4"]
    assert seconds.read_bytes() == first
    assert (explain / "a_p30.mp4.html").is_file()
    # and a run without the flags reuses entries that carry them
    processed.unlink()
    run(tmp_path, scorer())
    assert not processed.exists()


class BadColumns(TimedDetector):
    @classmethod
    def time_columns(cls, sample, config):
        return np.zeros(2)  # fewer columns than the time logits: a detector's bug


def test_a_bad_time_output_costs_the_rows_not_the_score(tmp_path, caplog):
    good = run(tmp_path, scorer(), out="good")
    seconds = tmp_path / "s.csv"
    bad = run(tmp_path, scorer(BadColumns), "--per-second", str(seconds), out="bad")
    assert bad.read_bytes() == good.read_bytes()
    assert read(seconds) == [["filename", "track", "second", "score", "measured"]]
    assert "2 time columns for 6 time logits" in caplog.text


class SparseTimedPreprocessor(TimedFakePreprocessor):
    """A 10 s face track (frames 0..249 at 25 fps) of which the detector scores 4 crops, at
    seconds 0, 3, 6 and 9: what the shipped detector does with a 10 s video."""

    FRAMES = (0, 75, 150, 249)


def test_per_second_gives_every_second_of_the_track_and_says_which_were_measured(tmp_path):
    seconds = tmp_path / "per_second.csv"
    explain = tmp_path / "explain"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_p30.mp4").touch()
    argv = ["-input", str(folder), "-output", str(tmp_path / "out"), "--no-progress", "--workers", "0"]
    argv += ["--per-second", str(seconds), "--explain", str(explain)]
    code = main(argv, preprocessor_factory=SparseTimedPreprocessor, scorer=scorer())
    assert code == 0
    rows = read(seconds)[1:]
    assert [int(r[2]) for r in rows] == list(range(10))  # one row per second, not per scored frame
    assert [r[4] for r in rows] == ["1", "0", "0", "1", "0", "0", "1", "0", "0", "1"]
    z = {int(r[2]): np.log(float(r[3]) / (1 - float(r[3]))) for r in rows}
    measured = [0, 3, 6, 9]
    pixels = np.array([30, 35, 40, 45]) / 100.0
    np.testing.assert_allclose([z[s] for s in measured], np.log(pixels / (1 - pixels)), atol=1e-5)
    # between two measured seconds: linear in log-odds
    np.testing.assert_allclose(z[1], z[0] + (z[3] - z[0]) / 3, atol=1e-5)
    np.testing.assert_allclose(z[5], z[3] + 2 * (z[6] - z[3]) / 3, atol=1e-5)
    # the page draws only what was measured: 4 points, no line across the unmeasured seconds
    page = (explain / "a_p30.mp4.html").read_text()
    chart = page[page.index("per-second score") :].split("</svg>")[0]
    assert chart.count("<circle") == 4 and "<polyline" not in chart
    assert "seconds 1–2, 4–5, 7–8" in page
    data = json.loads((explain / "a_p30.mp4.json").read_text())
    assert data["tracks"][0]["seconds"]["measured"] == [r[4] == "1" for r in rows]


def test_track_span_is_the_seconds_of_its_frames_within_the_analysed_duration():
    from submission_fakes import fake_sample

    from submission.per_second import fill_seconds, track_span

    s = fake_sample("v.mp4", 10, 0, 1)
    s.frame_start, s.boxes = 30, np.zeros((221, 4), np.float32)  # frames 30..250 at 25 fps
    s.meta.duration = 10.0
    assert track_span(s) == (1, 9)  # frame 250 is at 10.0 s: past a 10 s clip
    s.meta.duration = 10.04
    assert track_span(s) == (1, 10)
    filled = fill_seconds({2: 0.5, 4: 0.9}, 0, 5)
    assert sorted(filled) == [0, 1, 2, 3, 4, 5]
    assert filled[0] == pytest.approx(0.5) and filled[1] == pytest.approx(
        0.5
    )  # the nearest value at the ends
    assert filled[5] == pytest.approx(0.9) and filled[2] == 0.5 and filled[4] == 0.9  # measured: as they are
    assert filled[3] == pytest.approx(1 / (1 + np.exp(-np.log(9) / 2)))  # halfway in log-odds
