"""Shared fixtures: where ../shared lives, small clips generated on the fly, and the synthetic
sample cache the learning tests train on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVDF_SHARED", ROOT.parent / "shared"))
MEDIA = SHARED / "media"


def shared_media(*parts: str) -> Path:
    """Path into ../shared/media; skips the test (saying why) only if ../shared is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: real-media tests need the project's ../shared folder")
    path = MEDIA.joinpath(*parts)
    assert path.exists(), f"{path} missing from ../shared"
    return path


@pytest.fixture
def media_dir() -> Path:
    return shared_media()


# The learning tests' data: 300 short clips (150 real, 150 face-blend fakes) as cached samples
# with two 64x64 face crops each, split by identity (train/val/test 3:1:1).
LEARN_VIDEOS = 300
LEARN_CROP = 64


@pytest.fixture(scope="session")
def face_blend_cache(tmp_path_factory) -> Path:
    """The manifest of the learning tests' sample cache (built once per session: ~1 min)."""
    from core.preprocess_config import PreprocessConfig
    from train.synth.samples import samples_from_videos, write_sample_cache
    from train.synth.videos import generate_videos

    cfg = PreprocessConfig().replace("sample", num_frames=2)
    videos = generate_videos(LEARN_VIDEOS, seconds=0.12, seed=4, categories=["face_blend"])
    pairs = samples_from_videos(videos, cfg, crop_size=LEARN_CROP)
    return write_sample_cache(pairs, tmp_path_factory.mktemp("face_blend_cache"), cfg)
