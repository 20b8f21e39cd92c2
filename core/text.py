"""Words for messages a person reads."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``plural(1, "video")`` → "1 video", ``plural(3, "video")`` → "3 videos"."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"
