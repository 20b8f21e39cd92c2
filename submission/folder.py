"""Which files in the input folder are videos to score, and which are skipped (said aloud)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.text import plural

# Every common container PyAV (FFmpeg) decodes. Chosen by name, not by probing: a broken or
# truncated video must still get its row (the fallback probability), and probing would drop it;
# FFmpeg would also "decode" a .jpg or .png as a one-frame video.
DEFAULT_EXTENSIONS = (
    ".mp4",
    ".m4v",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".ts",
    ".flv",
    ".wmv",
)
NAMES_SHOWN = 5  # a warning names this many skipped files, then counts the rest


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


@dataclass(frozen=True)
class FolderListing:
    """The regular files directly in a folder: the videos to score and the files skipped."""

    folder: Path
    extensions: tuple[str, ...]
    videos: list[Path]
    skipped: list[Path]

    def skipped_note(self) -> str | None:
        """One line naming the skipped files and the option that scores them; None: none skipped."""
        if not self.skipped:
            return None
        names = ", ".join(p.name for p in self.skipped[:NAMES_SHOWN])
        more = len(self.skipped) - NAMES_SHOWN
        if more > 0:
            names += f" and {more} more"
        others = sorted({p.suffix.lower() for p in self.skipped if p.suffix})
        wanted = ",".join(e.lstrip(".") for e in (*self.extensions, *others))
        them = "it" if len(self.skipped) == 1 else "them"
        return (
            f"skipped {plural(len(self.skipped), 'file')} in {self.folder} whose extension is not in "
            f"--extensions {','.join(e.lstrip('.') for e in self.extensions)}: {names}"
            + (f" (to score {them}: --extensions {wanted})" if others else "")
        )


def scan_folder(folder: str | Path, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS) -> FolderListing:
    """Files directly in ``folder``, split by extension (case-insensitive), each list sorted by name.

    Every matching file is listed, even one that will not decode: the submission needs a row for
    each video the organisers put there, and a broken one gets the fallback probability.
    Sub-folders are not entered.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"input folder {folder} does not exist or is not a folder")
    wanted = {e.lower() for e in extensions}
    files = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.name)
    videos = [p for p in files if p.suffix.lower() in wanted]
    skipped = [p for p in files if p.suffix.lower() not in wanted]
    return FolderListing(folder, tuple(extensions), videos, skipped)


def list_videos(folder: str | Path, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS) -> list[Path]:
    """The videos of ``scan_folder``."""
    return scan_folder(folder, extensions).videos
