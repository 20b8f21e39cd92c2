"""``--explain DIR``: the per-video JSON and self-contained HTML pages, checked in a real browser
(headless Chromium, which CI installs: .ci/run); synthetic videos only."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from explain_demo import chromium, screenshot
from submission_fakes import FakePreprocessor, TimedFakePreprocessor
from test_per_second import ShiftedInverse, Untimed, scorer

from submission.cli import main
from submission.ensemble import EnsembleScorer

needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="chromium is not installed (CI installs it: apt-get install chromium)"
)
# Anything that would make the browser reach out: a URL with a scheme or protocol-relative.
EXTERNAL = re.compile(
    r"""(?:https?:)?//[\w.-]+|(?:src|href)\s*=\s*(?!["']?(?:data:|#|[\w%.-]+\.html["'\s>]))""", re.I
)


def assert_self_contained(page: str) -> None:
    page = re.sub(r"data:image/jpeg;base64,[A-Za-z0-9+/=]+", "data:", page)  # base64 holds "//"
    assert not EXTERNAL.search(page), EXTERNAL.search(page).group(0)
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page


def assert_rendered(png: Path) -> None:
    image = cv2.imread(str(png))
    assert image is not None and image.shape[:2] == (1600, 1200)
    assert image.std() > 10, "the screenshot is blank"


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """Three synthetic talking-face videos and a broken file, scored by the shipped seam detector
    (``weights/detector``, the default ensemble's frame member) through the real preprocessing,
    with --explain and --per-second."""
    from preprocess.pipeline import Preprocessor
    from train.synth.videos import write_dataset

    tmp = tmp_path_factory.mktemp("explain")
    videos = tmp / "videos"
    write_dataset(videos, 3, seconds=2.0, seed=1, categories=("face_blend",), progress=False)
    (videos / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    out = tmp / "out"
    argv = ["-input", str(videos), "-output", str(out / "submission.csv"), "--workers", "0", "--no-progress"]
    argv += ["--device", "cpu", "--explain", str(out / "explain"), "--per-second", str(out / "seconds.csv")]
    argv += ["--weights", "detector"]
    assert main(argv, preprocessor_factory=Preprocessor) == 0
    return out


def test_explain_json_and_pages_of_synthetic_videos(synthetic_run):
    explain = synthetic_run / "explain"
    with open(synthetic_run / "submission.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert len(rows) == 4
    for name, value in rows:
        data = json.loads((explain / f"{name}.json").read_text())
        assert data["filename"] == name
        page = (explain / f"{name}.html").read_text()
        assert_self_contained(page)
        if name == "broken.mp4":
            assert data["probability"] is None and data["error"] and "not scored" in page
            continue
        assert data["probability"] == pytest.approx(float(value), abs=1e-6)
        assert data["tracks"] and data["driving_track"] == data["tracks"][0]["track"]
        assert data["models"][0]["arch"] == "mobilenetv2_frames" and len(data["models"][0]["sha256"]) == 64
        assert "data:image/jpeg;base64," in page  # the face thumbnails, inline
        # the shipped detector: SyncNet off in its preprocessing; its frame_logits give a
        # per-second timeline of each track (4 frames over a 2 s clip: seconds 0 and 1)
        assert "SyncNet is switched off" in data["tracks"][0]["latency_note"]
        assert data["timeline_note"] == "" and data["tracks"][0]["seconds"] is not None
    index = (explain / "index.html").read_text()
    assert_self_contained(index)
    assert all(f'href="{name}.html"' in index for name, _ in rows)
    # the sidecar: the header, then each scored video's track 0 at seconds 0 and 1
    with open(synthetic_run / "seconds.csv", newline="") as f:
        seconds = list(csv.DictReader(f))
    scored = sorted(name for name, _ in rows if name != "broken.mp4")
    assert sorted({r["filename"] for r in seconds}) == scored
    for name in scored:
        mine = [r for r in seconds if r["filename"] == name and r["track"] == "0"]
        assert [r["second"] for r in mine] == ["0", "1"]
        assert all(0.0 < float(r["score"]) < 1.0 for r in mine)


@needs_chromium
def test_chromium_renders_a_video_page_and_the_index(synthetic_run, tmp_path):
    explain = synthetic_run / "explain"
    page = next(p for p in sorted(explain.glob("*.mp4.html")) if p.name != "broken.mp4.html")
    assert_rendered(screenshot(page, tmp_path / "page.png"))
    assert_rendered(screenshot(explain / "index.html", tmp_path / "index.png"))


@needs_chromium
def test_chromium_renders_an_ensembles_timeline(tmp_path):
    """Per-second charts (each member and the combined line) as inline SVG."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_p30_p60.mp4").touch()
    ens = EnsembleScorer(
        [scorer(), scorer(ShiftedInverse), scorer(Untimed)], ["timed", "inverse", "flat"], [1, 1, 1]
    )
    argv = ["-input", str(folder), "-output", str(tmp_path / "o.csv"), "--workers", "0", "--no-progress"]
    assert (
        main(
            [*argv, "--explain", str(tmp_path / "e")], preprocessor_factory=TimedFakePreprocessor, scorer=ens
        )
        == 0
    )
    page = (tmp_path / "e" / "a_p30_p60.mp4.html").read_text()
    assert_self_contained(page)
    assert page.count("<polyline") == 2 * 3  # two tracks: timed, inverse, combined (flat has no line)
    assert ">flat</text>" not in page  # nor a legend entry
    assert "no per-second scores from flat" in page
    assert "max over face tracks per member" in page
    assert_rendered(screenshot(tmp_path / "e" / "a_p30_p60.mp4.html", tmp_path / "page.png"))


def test_every_string_is_escaped(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    name = 'x_<b>"&_p40.mp4'
    (folder / name).touch()
    argv = ["-input", str(folder), "-output", str(tmp_path / "o.csv"), "--workers", "0", "--no-progress"]
    assert (
        main(
            [*argv, "--explain", str(tmp_path / "e")], preprocessor_factory=FakePreprocessor, scorer=scorer()
        )
        == 0
    )
    for page in (tmp_path / "e" / f"{name}.html", tmp_path / "e" / "index.html"):
        text = page.read_text()
        assert "<b>" not in text and "x_&lt;b&gt;&quot;&amp;_p40.mp4" in text
    assert 'href="x_%3Cb%3E%22%26_p40.mp4.html"' in (tmp_path / "e" / "index.html").read_text()


def test_syncnet_curve_and_timeline_in_the_page():
    """A track with a latency: the curve over offsets with the chosen one marked (Latency.offset =
    vshift - argmin); a non-finite distance is null in the JSON, skipped in the chart."""
    from submission_fakes import fake_sample

    from core.preprocess_config import PreprocessConfig
    from core.preprocess_data import Latency, VideoResult
    from submission.batch import VideoDetail
    from submission.explain import ModelInfo, explain_video
    from submission.explain_html import render_video
    from submission.scoring import SampleScore, SecondScores, VideoScore

    d = np.linspace(9.0, 7.0, 31)
    d[20] = 5.0  # argmin 20 -> offset 15 - 20 = -5
    d[3] = np.nan
    sample = fake_sample("v.mp4", 40, 0, 1)
    sample.latency = Latency(d, -5, 5.0, 2.5, d[:3])
    sample.meta.has_audio = True
    seconds = (SecondScores(0, (0, 1), (0.2, 0.7)),)
    score = VideoScore("v.mp4", 0.4, "", (0.4,), (), seconds)
    times = SampleScore(0.4, np.array([0.1, 1.2]), np.array([-1.4, 0.8]))
    detail = VideoDetail(score, VideoResult("v.mp4", [sample]), ((times,),))
    model = ModelInfo("m", "m", "m.safetensors", "0" * 64, "torch/cpu")
    expl = explain_video(detail, [model], "max", PreprocessConfig())
    data = json.loads(json.dumps(expl.to_json(), allow_nan=False))
    latency = data["tracks"][0]["latency"]
    assert latency["offset"] == -5 and latency["offsets"][20] == -5 and latency["offsets"][0] == 15
    assert latency["distances"][3] is None and latency["confidence"] == 2.5
    page = render_video(expl)
    assert_self_contained(page)
    # the timeline, and the curve in two pieces: no line drawn across the offset without a distance
    assert "offset -5, confidence 2.50" in page and page.count("<polyline") == 3
    assert data["tracks"][0]["seconds"]["probabilities"] == [0.2, 0.7]


def test_page_shows_weights_under_the_working_directory_relative(tmp_path, monkeypatch):
    """The models table: a weights path under the working directory relative (not the checkout's
    absolute path), one elsewhere as it is; the JSON keeps both in full."""
    from submission_fakes import fake_sample

    from core.preprocess_config import PreprocessConfig
    from core.preprocess_data import VideoResult
    from submission.batch import VideoDetail
    from submission.explain import ModelInfo, explain_video
    from submission.explain_html import render_video
    from submission.scoring import VideoScore

    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    inside = str(tmp_path / "repo" / "weights" / "detector.safetensors")
    outside = str(tmp_path / "elsewhere" / "fusion.safetensors")
    models = [ModelInfo(n, "m", w, "0" * 64, "torch/cpu") for n, w in (("a", inside), ("b", outside))]
    sample = fake_sample("v.mp4", 40, 0, 1)
    detail = VideoDetail(VideoScore("v.mp4", 0.4, "", (0.4, 0.4), ()), VideoResult("v.mp4", [sample]), ())
    expl = explain_video(detail, models, "max", PreprocessConfig())
    assert [m["weights"] for m in expl.to_json()["models"]] == [inside, outside]
    page = render_video(expl)
    assert "<code>weights/detector.safetensors</code>" in page and inside not in page
    assert f"<code>{outside}</code>" in page
