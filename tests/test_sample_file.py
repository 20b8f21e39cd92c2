"""Sample <-> .npz: lossless round trip, interrupted writes, clear errors, file naming in a cache."""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import numpy as np
import pytest

from core.preprocess_data import Latency, PreprocessError, Sample, SampleMeta
from preprocess import sample_file as sample_io
from preprocess.cache_layout import sample_path, video_key
from preprocess.sample_file import FORMAT_VERSION, load_sample, sample_to_arrays, save_sample


def make_sample(seed: int = 0, with_audio: bool = True, with_latency: bool = True) -> Sample:
    rng = np.random.default_rng(seed)
    frames, size, steps = 4, 32, 40
    latency = None
    if with_latency:
        distances = rng.normal(8, 2, 31).astype(np.float32)
        latency = Latency(
            distances=distances,
            offset=int(15 - distances.argmin()),
            min_distance=np.float32(distances.min()),  # numpy scalars, as the pipeline produces
            confidence=np.float32(np.median(distances) - distances.min()),
            frame_confidence=np.concatenate([rng.random(steps - 1), [np.nan]]).astype(np.float32),
        )
    n_audio = 16000 if with_audio else 0
    return Sample(
        meta=SampleMeta(
            video="clip ü.mp4",
            source="/data/part 1/clip ü.mp4",
            fps=25.0,
            duration=1.6,
            has_audio=with_audio,
            num_tracks=2,
            track_id=1,
            label=1,
            warnings=["variable_fps", 'quote " and \\ backslash'],
        ),
        faces=rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8),
        face_frame_indices=np.array([0, 13, 26, 39], np.int64),
        boxes=(rng.random((steps, 4)) * 100).astype(np.float32),
        frame_start=7,
        audio=rng.integers(-32768, 32767, n_audio, dtype=np.int16),
        mfcc=rng.normal(size=(13, 160 if with_audio else 0)).astype(np.float32),
        mel=rng.normal(-40, 10, size=(80, 160 if with_audio else 0)).astype(np.float32),
        latency=latency,
        landmarks=(rng.random((frames, 5, 2)) * size).astype(np.float32),
    )


def assert_same_array(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()  # bit-exact, NaN included


def assert_same_sample(a: Sample, b: Sample) -> None:
    assert a.meta == b.meta
    assert a.frame_start == b.frame_start
    for name in ("faces", "face_frame_indices", "boxes", "audio", "mfcc", "mel", "landmarks"):
        assert_same_array(getattr(a, name), getattr(b, name))
    assert (a.latency is None) == (b.latency is None)
    if a.latency is not None:
        assert_same_array(a.latency.distances, b.latency.distances)
        assert_same_array(a.latency.frame_confidence, b.latency.frame_confidence)
        assert a.latency.offset == b.latency.offset
        assert b.latency.min_distance == float(a.latency.min_distance)
        assert b.latency.confidence == float(a.latency.confidence)
        assert_same_array(a.latency.vector(), b.latency.vector())


@pytest.mark.parametrize(("with_audio", "with_latency"), [(True, True), (True, False), (False, False)])
def test_round_trip_is_lossless(tmp_path, with_audio, with_latency):
    original = make_sample(with_audio=with_audio, with_latency=with_latency)
    path = tmp_path / "s.npz"
    written = save_sample(original, path)
    assert written == path.stat().st_size > 0
    loaded = load_sample(path)
    assert_same_sample(original, loaded)
    assert loaded.meta.warnings == original.meta.warnings
    if not with_audio:
        assert loaded.audio.shape == (0,) and loaded.mfcc.shape == (13, 0) and loaded.mel.shape == (80, 0)


def test_dtypes_are_kept_as_given(tmp_path):
    original = dataclasses.replace(make_sample(), face_frame_indices=np.array([1, 2, 3, 4], np.int32))
    save_sample(original, tmp_path / "s.npz")
    assert load_sample(tmp_path / "s.npz").face_frame_indices.dtype == np.int32


def test_file_holds_json_metadata_and_no_pickles(tmp_path):
    save_sample(make_sample(), tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        header = json.loads(npz["meta"].tobytes())
        assert all(npz[name].dtype != object for name in npz.files)
    assert header["format"] == FORMAT_VERSION
    assert header["meta"]["label"] == 1 and header["frame_start"] == 7


def test_compression_is_lossless_and_smaller_on_smooth_faces(tmp_path):
    smooth = np.broadcast_to(np.linspace(0, 255, 32).astype(np.uint8)[None, :, None, None], (4, 32, 32, 3))
    sample = dataclasses.replace(make_sample(), faces=np.ascontiguousarray(np.swapaxes(smooth, 1, 2)))
    written = save_sample(sample, tmp_path / "s.npz")
    raw = sum(a.nbytes for a in sample_to_arrays(sample).values())
    assert written < raw
    assert_same_array(load_sample(tmp_path / "s.npz").faces, sample.faces)


def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    save_sample(make_sample(seed=1), path)
    before = path.read_bytes()

    def dies_midway(fh, **arrays):
        fh.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt  # the process is being stopped

    monkeypatch.setattr(sample_io.np, "savez_compressed", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_sample(make_sample(seed=2), path)
    with pytest.raises(KeyboardInterrupt):
        save_sample(make_sample(seed=2), tmp_path / "new.npz")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        lambda p: np.save(p.open("wb"), np.zeros(3)),  # a bare .npy
    ],
    ids=["empty", "random", "truncated", "npy"],
)
def test_corrupt_file_error_names_the_file(tmp_path, damage):
    path = tmp_path / "broken.npz"
    save_sample(make_sample(), path)
    damage(path)
    with pytest.raises(PreprocessError) as info:
        load_sample(path)
    assert info.value.code == "corrupt_sample"
    assert str(path) in str(info.value)


def test_flipped_byte_in_compressed_data_is_detected(tmp_path):
    path = tmp_path / "s.npz"
    save_sample(make_sample(), path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("faces.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 200] ^= 0xFF  # inside the deflated faces payload
    path.write_bytes(bytes(data))
    with pytest.raises(PreprocessError, match="corrupt_sample"):
        load_sample(path)


def test_missing_and_foreign_version(tmp_path):
    with pytest.raises(PreprocessError) as info:
        load_sample(tmp_path / "nope.npz")
    assert info.value.code == "missing_sample" and "nope.npz" in str(info.value)

    arrays = sample_to_arrays(make_sample())
    header = json.loads(arrays["meta"].tobytes())
    header["format"] = FORMAT_VERSION + 1
    arrays["meta"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(PreprocessError) as info:
        load_sample(tmp_path / "future.npz")
    assert info.value.code == "sample_format"

    del arrays["faces"]
    arrays["meta"] = sample_to_arrays(make_sample())["meta"]
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(PreprocessError, match="faces"):
        load_sample(tmp_path / "partial.npz")


def test_format_1_files_still_load_without_landmarks(tmp_path):
    arrays = sample_to_arrays(make_sample())
    header = json.loads(arrays["meta"].tobytes())
    header["format"] = 1  # written before samples kept landmarks
    arrays["meta"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    del arrays["landmarks"]
    np.savez(tmp_path / "old.npz", **arrays)
    loaded = load_sample(tmp_path / "old.npz")
    assert loaded.landmarks is None
    assert_same_array(loaded.faces, make_sample().faces)


def test_sample_path_naming(tmp_path):
    a = sample_path(tmp_path, "dfdc_train_part_0/abc.mp4", 0)
    b = sample_path(tmp_path, "dfdc_train_part_1/abc.mp4", 0)
    assert a != b  # the same file name in two DFDC parts does not collide
    assert a.parent == tmp_path / "samples" and a.name.startswith("abc__") and a.name.endswith("__t0.npz")
    assert sample_path(tmp_path, "dfdc_train_part_0/abc.mp4", 0) == a  # stable
    assert sample_path(tmp_path, "dfdc_train_part_0/abc.mp4", 1).name.endswith("__t1.npz")
    odd = video_key("some dir/we ird:na*me?.mp4")
    assert " " not in odd and ":" not in odd and "*" not in odd and "?" not in odd


def test_sample_files_are_readable_by_other_users(tmp_path):
    umask = os.umask(0o077)
    try:
        save_sample(make_sample(), tmp_path / "s.npz")
    finally:
        os.umask(umask)
    assert (tmp_path / "s.npz").stat().st_mode & 0o777 == 0o644  # training jobs of other users read it
