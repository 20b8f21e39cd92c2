"""Synthetic talking faces: speech-driven mouths, fakes that differ the intended way, files
the pipeline reads, and faces the project's RetinaFace finds."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from core.preprocess_config import DetectorConfig
from train.synth.audio import opening_from_audio, synthesize_speech
from train.synth.videos import FAKE_CATEGORIES, assign_splits, generate_videos, shift_audio, write_dataset


@pytest.fixture(scope="module")
def videos():
    # 10 videos: 5 reals, one fake of each category
    return list(generate_videos(10, seconds=1.2, seed=7))


def test_mouth_follows_the_speech_loudness():
    speech = synthesize_speech(np.random.default_rng(0), 3.0)
    assert speech.audio.dtype == np.int16 and len(speech.audio) == 48000
    assert speech.opening.shape == (75,) and speech.opening.min() >= 0 and speech.opening.max() <= 1
    loud = opening_from_audio(speech.audio, 16000, 75)
    assert np.corrcoef(loud, speech.opening)[0, 1] > 0.8
    # pauses exist (mouth shut) and syllables open it
    assert (speech.opening < 0.05).mean() > 0.05 and (speech.opening > 0.5).mean() > 0.1


def test_split_assignment_holds_out_identities():
    assert assign_splits(10) == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert set(assign_splits(3)) == {"train", "val", "test"}


def test_every_category_is_made_and_fakes_follow_their_original(videos):
    by_name = {v.filename: v for v in videos}
    assert sum(v.label == 0 for v in videos) == 5
    assert sorted(v.category for v in videos if v.label) == sorted(FAKE_CATEGORIES)
    for fake in (v for v in videos if v.label):
        real = by_name[fake.original]
        assert fake.split == real.split
        assert fake.frames.shape == real.frames.shape and fake.boxes.shape == (len(fake.frames), 4)
        if fake.category in ("audio_shift", "audio_swap"):
            assert np.array_equal(fake.frames, real.frames)
            assert not np.array_equal(fake.audio, real.audio)
        else:
            assert np.array_equal(fake.audio, real.audio)
            assert np.abs(fake.frames.astype(int) - real.frames).mean() > 0.2


def test_audio_shift_moves_the_soundtrack_by_whole_frames():
    audio = (np.arange(16000) % 1000).astype(np.int16)
    rng = np.random.default_rng(0)
    late = shift_audio(audio, 5, 25.0, 16000, rng)
    early = shift_audio(audio, -5, 25.0, 16000, rng)
    assert len(late) == len(early) == len(audio)
    assert np.array_equal(late[3200:], audio[:-3200]) and np.array_equal(early[:-3200], audio[3200:])


def test_face_blend_changes_the_face_not_the_background(videos):
    by_name = {v.filename: v for v in videos}
    fake = next(v for v in videos if v.category == "face_blend")
    real = by_name[fake.original]
    diff = np.abs(fake.frames[0].astype(int) - real.frames[0]).sum(-1)
    x1, y1, x2, y2 = real.boxes[0].astype(int)
    inside = diff[y1:y2, x1:x2].mean()
    outside = np.concatenate([diff[:, : max(1, x1 - 10)].ravel(), diff[:, x2 + 10 :].ravel()]).mean()
    assert inside > 10 * outside + 5


def test_ground_truth_boxes_follow_the_head(videos):
    v = videos[0]
    assert (v.boxes[:, 2] > v.boxes[:, 0]).all() and (v.boxes[:, 3] > v.boxes[:, 1]).all()
    h, w = v.frames.shape[1:3]
    centre = (v.boxes[:, :2] + v.boxes[:, 2:]) / 2
    assert (centre[:, 0] > 0).all() and (centre[:, 0] < w).all() and (centre[:, 1] < h).all()


def test_generation_is_deterministic():
    a = next(iter(generate_videos(2, seconds=0.4, seed=3)))
    b = next(iter(generate_videos(2, seconds=0.4, seed=3)))
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)


def test_unknown_category_is_refused():
    with pytest.raises(ValueError, match="fake categories"):
        next(iter(generate_videos(2, categories=["deepfake"])))


def test_written_dataset_decodes_with_labels(tmp_path):
    from preprocess.media import decode

    labels = write_dataset(tmp_path, 4, seconds=0.8, seed=1, categories=["face_blend"], progress=False)
    with open(labels, newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"filename", "label", "split", "original", "category", "fake_start", "fake_end"}
    assert all(r["fake_start"] == r["fake_end"] == "" for r in rows)  # no partial fakes asked for
    assert sorted(r["label"] for r in rows) == ["0", "0", "1", "1"]
    clip = decode(tmp_path / rows[0]["filename"])
    assert clip.has_audio and len(clip.frames) == 20 and abs(len(clip.audio) - 12800) <= 160


def test_the_project_detector_finds_the_synthetic_faces(videos):
    from preprocess.faces.detector import FaceDetector
    from train.synth.detection_check import check_detection

    cfg = DetectorConfig()
    detector = FaceDetector.from_weights(cfg.weights, cfg)
    result = check_detection(videos, detector, step=6)
    assert result.frames == 50
    assert result.rate >= 0.95, result.summary()
    assert min(result.scores) >= cfg.score_threshold


@pytest.mark.parametrize("category", ["face_blend", "audio_shift"])
def test_partial_fakes_are_the_real_clip_outside_their_segment(category):
    """``partial=1``: the fake's frames (face_blend) or sound (audio_shift) only inside a
    segment of 1 s at most (half of a 2 s clip), the real clip's everywhere else."""
    real, fake = generate_videos(2, seconds=2.0, seed=11, categories=[category], partial=1.0)
    assert fake.label == 1 and fake.category == f"partial_{category}" and real.category == "real"
    assert fake.filename.endswith("_partial.mp4") and fake.original == real.filename
    a, b = round(fake.fake_start * fake.fps), round(fake.fake_end * fake.fps)
    assert 0 <= a < b <= len(real.frames) and b - a <= len(real.frames) // 2
    assert f"segment={fake.fake_start:.2f}-{fake.fake_end:.2f}" in fake.detail
    outside = np.r_[0:a, b : len(real.frames)]
    np.testing.assert_array_equal(fake.frames[outside], real.frames[outside])
    per_frame = real.sample_rate / real.fps
    s0, s1 = round(a * per_frame), round(b * per_frame)
    np.testing.assert_array_equal(fake.audio[:s0], real.audio[:s0])
    np.testing.assert_array_equal(fake.audio[s1:], real.audio[s1:])
    changed_video = not np.array_equal(fake.frames[a:b], real.frames[a:b])
    changed_audio = not np.array_equal(fake.audio[s0:s1], real.audio[s0:s1])
    assert (changed_video, changed_audio) == ((True, False) if category == "face_blend" else (False, True))


def test_partial_fraction_and_segment_labels(tmp_path):
    whole = [v for v in generate_videos(6, seconds=0.8, seed=2, categories=["face_blend"]) if v.label]
    assert all(v.fake_start == "" for v in whole)
    with pytest.raises(ValueError, match="fraction"):
        next(iter(generate_videos(2, partial=1.5)))
    labels = write_dataset(
        tmp_path, 4, seconds=1.2, seed=1, categories=["mouth_rerender"], progress=False, partial=1.0
    )
    from train.evaluate import read_labels

    read = read_labels(labels)
    fakes = {n: lab for n, lab in read.items() if lab.label == 1}
    assert len(fakes) == 2 and all(n.endswith("_partial.mp4") for n in fakes)
    for lab in fakes.values():
        start, end = lab.segment
        assert 0 <= start < end <= 1.2 and end - start <= 0.6 + 1e-9
    assert all(lab.segment is None for lab in read.values() if lab.label == 0)


def test_synthetic_sample_caches_keep_the_segment(tmp_path):
    from core.preprocess_config import PreprocessConfig
    from train.data import read_manifest
    from train.synth.samples import samples_from_videos, write_sample_cache

    cfg = PreprocessConfig().replace("sample", num_frames=2)
    videos = generate_videos(2, seconds=0.8, seed=5, categories=["face_blend"], partial=1.0)
    pairs = samples_from_videos(videos, cfg, crop_size=32)
    segments = {v.filename: (v.fake_start, v.fake_end) if v.label else None for v, _ in pairs}
    manifest = write_sample_cache(pairs, tmp_path, cfg)
    assert {e.filename: e.fake_segment for e in read_manifest(manifest)} == segments
    assert sum(s is not None for s in segments.values()) == 1
