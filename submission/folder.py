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


PROBED_AT_MOST = 20  # skipped files of unknown extensions probed for a video stream


@dataclass(frozen=True)
class FolderListing:
    """The regular files directly in a folder: the videos to score, the files skipped, and
    which of those skipped hold video (a known container's extension, or PyAV finds footage)."""

    folder: Path
    extensions: tuple[str, ...]
    videos: list[Path]
    skipped: list[Path]
    skipped_videos: list[Path]

    def skipped_note(self) -> str | None:
        """One line naming the skipped files, and the ``--extensions`` that would score the ones
        holding video; None: nothing skipped."""
        if not self.skipped:
            return None
        exts = ",".join(e.lstrip(".") for e in self.extensions)
        note = (
            f"skipped {plural(len(self.skipped), 'file')} in {self.folder} "
            f"(extension not in --extensions {exts}): {_names(self.skipped)}"
        )
        if self.skipped_videos:
            more = sorted({p.suffix.lower() for p in self.skipped_videos} - set(self.extensions))
            one = len(self.skipped_videos) == 1
            note += (
                f"; {_names(self.skipped_videos)} {'holds' if one else 'hold'} video: to score "
                f"{'it' if one else 'them'}, --extensions {','.join([exts, *(e.lstrip('.') for e in more)])}"
            )
        return note


def _names(paths: list[Path]) -> str:
    names = ", ".join(p.name for p in paths[:NAMES_SHOWN])
    return names + (f" and {len(paths) - NAMES_SHOWN} more" if len(paths) > NAMES_SHOWN else "")


def holds_video(path: Path) -> bool:
    """Whether PyAV finds footage in the file (its first frame decodes; images and text do not
    count)."""
    from core.preprocess_data import PreprocessError
    from preprocess.media import probe

    try:
        probe(path)
    except PreprocessError:
        return False
    return True


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
    known = [p for p in skipped if p.suffix.lower() in DEFAULT_EXTENSIONS]
    unknown = [p for p in skipped if p.suffix.lower() not in DEFAULT_EXTENSIONS and p.suffix]
    found = [p for p in unknown[:PROBED_AT_MOST] if holds_video(p)]
    skipped_videos = sorted(known + found, key=lambda p: p.name)
    return FolderListing(folder, tuple(extensions), videos, skipped, skipped_videos)


def list_videos(folder: str | Path, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS) -> list[Path]:
    """The videos of ``scan_folder``."""
    return scan_folder(folder, extensions).videos
