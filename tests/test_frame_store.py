"""FrameStore (decode(lazy=True)): the same pixels and the same samples as decoding to RGB."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from clips import make_clip, read_index
from conftest import shared_media

from core.preprocess_config import MediaConfig, PreprocessConfig
from preprocess import pipeline
from preprocess.frame_store import FrameStore
from preprocess.media import FrameBuffer, decode
from preprocess.pipeline import Preprocessor

SHORT = MediaConfig(window_s=2.0)


def random_regions(rng: np.random.Generator, height: int, width: int, n: int):
    for _ in range(n):
        top, left = int(rng.integers(0, height - 2)), int(rng.integers(0, width - 2))
        yield top, int(rng.integers(top + 1, height + 1)), left, int(rng.integers(left + 1, width + 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frames_and_regions_match_the_rgb_decode(seed):
    path = shared_media("real", "dfdc_REAL_lynaeydofd.mp4")
    eager = decode(path, SHORT)
    lazy = decode(path, SHORT, lazy=True)
    store = lazy.frames
    assert isinstance(store, FrameStore) and isinstance(eager.frames, np.ndarray)
    assert store.shape == eager.frames.shape and len(store) == len(eager.frames)
    np.testing.assert_array_equal(lazy.timestamps, eager.timestamps)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(store), 6, replace=False)
    np.testing.assert_array_equal(store[chosen], eager.frames[chosen])
    _, height, width, _ = store.shape
    # odd and even bounds: regions are cut on the chroma grid and must still match exactly
    for slot in chosen[:3]:
        for top, bottom, left, right in random_regions(rng, height, width, 20):
            region = store.region(int(slot), top, bottom, left, right)
            np.testing.assert_array_equal(region, eager.frames[slot, top:bottom, left:right])


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotated_frames_match(tmp_path, rotation):
    path = make_clip(tmp_path / "rot.mp4", seconds=0.4, size=(160, 96), rotation=rotation)
    eager, lazy = decode(path, SHORT), decode(path, SHORT, lazy=True)
    assert isinstance(lazy.frames, FrameStore) and lazy.frames.shape == eager.frames.shape
    np.testing.assert_array_equal(lazy.frames[:], eager.frames)
    np.testing.assert_array_equal(lazy.frames.region(3, 5, 41, 7, 60), eager.frames[3, 5:41, 7:60])


def test_repeated_slots_share_one_copy(tmp_path):
    """12.5 fps into 25 fps slots: each source frame fills two slots, stored once."""
    path = make_clip(tmp_path / "slow.mp4", seconds=1.0, fps=12.5)
    clip = decode(path, SHORT, FrameBuffer(), lazy=True)
    store = clip.frames
    shown = [read_index(f) for f in store[:]]
    assert len(store) == len(decode(path, SHORT).frames) >= 20
    assert shown[:6] == [0, 0, 1, 1, 2, 2]
    assert store.nbytes == len(set(shown)) * 160 * 120 * 3 // 2  # each source frame once, 4:2:0


def test_streams_it_cannot_keep_still_decode_to_arrays(tmp_path):
    odd = make_clip(tmp_path / "scaled.mp4", seconds=0.4, size=(160, 120))
    clip = decode(odd, MediaConfig(window_s=2.0, max_side=80), lazy=True)  # scaled on decode
    assert isinstance(clip.frames, np.ndarray) and clip.frames.shape[1:] == (60, 80, 3)


def windows_config() -> PreprocessConfig:
    cfg = PreprocessConfig()
    return dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, sampling="windows"))


@pytest.mark.parametrize(
    "name",
    [
        "real/dfdc_REAL_lynaeydofd.mp4",
        "real/lipnet_GRID_bbaf2n.mpg",
        "fake/sadtalker_art_0__japanese_es1.mp4",
    ],
)
def test_cached_samples_equal_the_rgb_decode(monkeypatch, name):
    """The pipeline on planes gives the samples the RGB decode gave: crops, boxes, landmarks,
    audio features and the SyncNet latency, bit for bit."""
    path = shared_media(*name.split("/"))
    pre = Preprocessor(windows_config())
    lazy = pre.process(path)
    monkeypatch.setattr(pipeline, "decode", lambda *a, lazy=False, **k: decode(*a, lazy=False, **k))
    eager = pre.process(path)
    assert lazy.error is None and eager.error is None
    assert len(lazy.samples) == len(eager.samples) >= 1
    for a, b in zip(lazy.samples, eager.samples, strict=True):
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        np.testing.assert_array_equal(a.mfcc, b.mfcc)
        assert (a.latency is None) == (b.latency is None)
        if a.latency is not None:
            np.testing.assert_array_equal(a.latency.vector(), b.latency.vector())


def test_the_decoder_takes_the_process_thread_budget(monkeypatch, tmp_path):
    """A worker's share of the cores, not FFmpeg's one thread per core it sees."""
    from core.threads import thread_budget

    seen = []
    real = pipeline.decode

    def spy(*args, threads=0, **kwargs):
        seen.append(threads)
        return real(*args, threads=threads, **kwargs)

    monkeypatch.setattr(pipeline, "decode", spy)
    monkeypatch.setenv("AVDF_THREADS", "3")
    path = make_clip(tmp_path / "clip.mp4", seconds=0.4)
    pre = Preprocessor(PreprocessConfig(), syncnet=None)
    pre.process(path)
    monkeypatch.setenv("AVDF_THREADS", "1")  # what limit_threads(1) in a worker sets
    pre.process(path)
    Preprocessor(PreprocessConfig(), detector=pre.detector, syncnet=None, decode_threads=2).process(path)
    assert seen == [3, 1, 2] and thread_budget() == 1
