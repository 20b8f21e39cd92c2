"""Which files in the input folder are videos to score."""

from __future__ import annotations

from pathlib import Path

DEFAULT_EXTENSIONS = (".mp4",)


def parse_extensions(text: str) -> tuple[str, ...]:
    """``"mp4,MPG, .mov"`` -> ``(".mp4", ".mpg", ".mov")``."""
    exts = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        ext = part if part.startswith(".") else "." + part
        if ext not in exts:
            exts.append(ext)
    if not exts:
        raise ValueError(f"no file extension in {text!r}")
    return tuple(exts)


def list_videos(folder: str | Path, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS) -> list[Path]:
    """Files directly in ``folder`` whose extension matches (case-insensitive), sorted by name.

    Every matching file is listed, even one that will not decode: the submission needs a row for
    each video the organisers put there, and a broken one gets the fallback probability.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"input folder {folder} does not exist or is not a folder")
    wanted = {e.lower() for e in extensions}
    videos = [p for p in folder.iterdir() if p.suffix.lower() in wanted and p.is_file()]
    return sorted(videos, key=lambda p: p.name)
