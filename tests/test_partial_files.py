"""A faststart MP4 cut short (an interrupted upload) still holds its index and the frames up to
the cut: it is scored from what decodes, flagged ``partial`` in the failures sidecar, and not
sent to the fallback. One whose index sits at the end loses it with the cut: ffmpeg cannot
read it either, so it gets the fallback."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import shared_media
from remux import cut, moov_first, remux

from core.preprocess_data import PreprocessError
from preprocess.media import decode
from submission.cli import main

CLIP = ("real", "pcavs_Pose_Source_620900105.mp4")  # 4.3 s, a 224² face crop with speech
FRACTIONS = (0.3, 0.6, 0.9)


@pytest.fixture(scope="module")
def cuts(tmp_path_factory) -> dict[float, Path]:
    folder = tmp_path_factory.mktemp("partial")
    whole = remux(shared_media(*CLIP), folder / "whole.mp4", faststart=True)
    assert moov_first(whole)
    files = {1.0: whole}
    for f in FRACTIONS:
        files[f] = cut(whole, folder / f"cut{round(f * 100)}.mp4", f)
    return files


def test_a_cut_faststart_file_decodes_up_to_the_cut(cuts):
    whole = decode(cuts[1.0])
    assert not [w for w in whole.warnings if w.startswith(("partial", "video_truncated"))]
    counts = []
    for f in FRACTIONS:
        clip = decode(cuts[f])
        n = len(clip.frames)
        counts.append(n)
        assert 0 < n < len(whole.frames), (f, n)
        assert any(w.startswith("partial:") for w in clip.warnings), clip.warnings
        # the frames that decode are the whole file's, up to the last one or two before the cut
        # (a frame whose packet the cut splits decodes damaged)
        assert np.array_equal(clip.frames[: n - 2], whole.frames[: n - 2]), f
        assert clip.audio is not None and len(clip.audio) == round(n / clip.fps * clip.sample_rate)
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_a_cut_file_with_its_index_at_the_end_is_unreadable(cuts, tmp_path):
    tail = remux(cuts[1.0], tmp_path / "moov_last.mp4", faststart=False)
    assert not moov_first(tail)
    damaged = cut(tail, tmp_path / "moov_last_cut60.mp4", 0.6)
    with pytest.raises(PreprocessError) as err:
        decode(damaged)
    assert err.value.code == "decode_error"
    with pytest.raises(av.FFmpegError):  # the decoder itself cannot open it either
        av.open(str(damaged)).close()


@pytest.mark.slow
def test_cut_files_are_scored_and_flagged_partial(cuts, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in cuts.values():
        (folder / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out" / "submission.csv"
    code = main(["-input", str(folder), "-output", str(out), "--workers", "1", "--no-progress"])
    assert code == 0
    with open(out, newline="") as fh:
        rows = {r["filename"]: float(r["probability"]) for r in csv.DictReader(fh)}
    with open(out.with_name("submission_failures.csv"), newline="") as fh:
        sidecar = {r["filename"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {p.name for p in cuts.values()}
    assert "whole.mp4" not in sidecar  # neither failed nor partial
    for f in FRACTIONS:
        name = cuts[f].name
        assert sidecar[name]["reason"] == "", sidecar[name]  # scored, not the fallback
        assert sidecar[name]["warning"].startswith("partial: "), sidecar[name]
        assert 0.0 < rows[name] < 1.0
    # the 90 % cut holds almost every frame: its score stays near the whole file's
    assert abs(rows["cut90.mp4"] - rows["whole.mp4"]) < 0.2
