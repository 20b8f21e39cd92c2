"""Shared fixtures: where ../shared lives, small clips generated on the fly, and the synthetic
sample cache the learning tests train on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVDF_SHARED", ROOT.parent / "shared"))
MEDIA = SHARED / "media"


@pytest.fixture(autouse=True)
def _thread_settings_restored():
    """Code run in-process (``submission.cli.main``, the preprocessing pool) caps the numeric
    libraries' threads through ``os.environ`` (``core.threads.limit_threads``), as a process of
    its own should. In the test process the caps outlive the test and reach every subprocess
    started later: ``MKL_NUM_THREADS=2`` left behind made the two-rank DDP test 5x slower."""
    from core.threads import BUDGET_ENV_VAR, THREAD_ENV_VARS

    names = (*THREAD_ENV_VARS, BUDGET_ENV_VAR)
    saved = {name: os.environ.get(name) for name in names}
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and torch_threads is not None and torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


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
