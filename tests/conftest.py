"""Shared fixtures: where ../shared lives, and small clips generated on the fly."""

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
