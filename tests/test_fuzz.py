"""A slice of ``make fuzz`` (tests/fuzz.py): its mutations, its decoder check, and nine mutated
real clips (one of each kind) through the real ``python -m submission``."""

from __future__ import annotations

import random

import pytest
from conftest import shared_media
from fuzz import MUTATIONS, decodable_frames, make_files, run_fuzz, source_clips


def test_mutations_are_seeded_and_change_the_file(tmp_path):
    shared_media()  # skips, saying why, without ../shared
    sources = source_clips(4, tmp_path / "sources")
    assert len(sources) == 6 and sum(p.name.startswith("faststart_") for p in sources) == 2
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    made = make_files(first, len(MUTATIONS), 7, sources)
    assert make_files(second, len(MUTATIONS), 7, sources) == made
    assert {name.split("_", 1)[1].removesuffix(".mp4") for name in made} == set(MUTATIONS)
    originals = {p.read_bytes() for p in sources}
    for name in made:
        data = (first / name).read_bytes()
        assert data == (second / name).read_bytes(), name  # the same seed, the same bytes
        assert data not in originals, name
    a, b = sources[0].read_bytes(), sources[-1].read_bytes()
    rng = random.Random(0)
    assert MUTATIONS["garbage_before"](a, b, rng).endswith(a)
    assert MUTATIONS["garbage_after"](a, b, rng).startswith(a)
    spliced = MUTATIONS["splice_header"](a, b, rng)
    assert len(spliced) == len(a) and spliced[:64] == b[:64] and spliced[-1000:] == a[-1000:]
    assert len(MUTATIONS["duplicate_block"](a, b, rng)) > len(a) > len(MUTATIONS["truncate"](a, b, rng))


def test_the_decoder_check_tells_footage_from_garbage(tmp_path):
    clip = shared_media("real", "pcavs_Pose_Source_620900105.mp4")
    assert decodable_frames(clip) > 0
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(random.Random(0).randbytes(50_000))
    assert decodable_frames(garbage) == 0


@pytest.mark.slow
def test_nine_mutated_clips_each_get_one_row_and_fall_back_only_when_undecodable(tmp_path):
    shared_media()
    report = run_fuzz(tmp_path, n=len(MUTATIONS), seed=1, sources=4, video_timeout=60)
    assert report.problems == [], report.line()
    assert report.files == report.rows == len(MUTATIONS)
    assert report.crashes == 0 and report.timeouts == 0 and report.exit_code == 0
