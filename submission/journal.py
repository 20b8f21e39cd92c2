"""Resume a killed scoring run from a journal of finished videos beside the output CSV.

``out/submission.csv`` -> ``out/submission_journal.jsonl``. Its first line identifies what
produced the scores (model weights, runtime, preprocessing and the settings that change a
video's score); then each finished video appends one line (its file's size and mtime, the
probability or the failure reason), flushed and fsynced before the next, so a SIGKILL loses at
most the videos in flight. A rerun with the same identity takes the videos recorded there as
done; another identity or ``--fresh`` starts a new journal. The CSV is still written once, at
the end, atomically; the journal stays (a rerun then only rewrites the CSV).

A video scored with ``--per-second`` or ``--explain`` also records its per-second scores
(``seconds``; absent otherwise, so a run without those flags writes the journal it always did).
A rerun that asks for them reuses only the entries that can give them: ``reuse`` (from the
CLI) sends a video recorded without its per-second scores, or whose explanation page is
missing, to be scored again, so the sidecar and the pages are complete after any resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from core.text import plural
from submission import per_second
from submission.scoring import VideoScore

log = logging.getLogger("submission")

VERSION = 1
# Failures of the run rather than of the video: not recorded, so a rerun tries those videos again.
RUN_FAILURES = ("not_scored", "worker_error", "preprocessor_unavailable", "inference_error: inference thread")


def journal_path(csv_path: str | Path) -> Path:
    """``out/submission.csv`` -> ``out/submission_journal.jsonl``."""
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}_journal.jsonl")


def file_stamp(path: Path) -> list[int]:
    """What tells a finished video from a new file under the same name."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def _read(path: Path) -> tuple[Any, dict[str, dict]]:
    """(identity, entries by file name; the last one wins). A line cut short by a kill, or
    any other unreadable line, is skipped."""
    identity, entries = None, {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f):
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if number == 0:
                if isinstance(item, dict) and item.get("journal") == VERSION:
                    identity = item.get("identity")
                else:
                    return None, {}
            elif _is_entry(item):
                entries[item["file"]] = item
    return identity, entries


def _is_entry(item: Any) -> bool:
    number = (int, float)
    return (
        isinstance(item, dict)
        and isinstance(item.get("file"), str)
        and (item.get("probability") is None or isinstance(item.get("probability"), number))
        and isinstance(item.get("reason", ""), str)
        and isinstance(item.get("warning", ""), str)
        and all(isinstance(t, number) for t in item.get("tracks", ()))
        and all(isinstance(t, number) for t in item.get("members", ()))
        and isinstance(item.get("seconds", []), list)
    )


def _score(entry: dict) -> VideoScore:
    p = entry.get("probability")
    return VideoScore(
        entry["file"],
        None if p is None else float(p),
        entry.get("reason", ""),
        tuple(entry.get("tracks", ())),
        tuple(entry.get("members", ())),
        per_second.from_json(entry["seconds"]) if "seconds" in entry else None,
        entry.get("warning", ""),
    )


def _readable(entry: dict) -> bool:
    try:
        _score(entry)
        return True
    except (ValueError, TypeError, KeyError):
        return False


class Journal:
    """Opened for one run over ``videos``: ``done`` holds the scores an earlier run with the
    same identity recorded for files unchanged since; ``todo`` lists the other videos."""

    def __init__(
        self,
        csv_path: str | Path,
        videos: Sequence[Path],
        identity: dict,
        fresh: bool = False,
        reuse: Callable[[VideoScore], bool] | None = None,
    ):
        """``reuse``: whether a recorded score may stand for this run (default: every one)."""
        self.path = journal_path(csv_path)
        identity = json.loads(json.dumps(identity, sort_keys=True))  # as it reads back
        self._stamps = {v.name: file_stamp(v) for v in videos}
        kept = {} if fresh else self._reusable(identity)
        kept = {n: e for n, e in kept.items() if _readable(e)}
        if reuse is not None:
            kept = {n: e for n, e in kept.items() if reuse(_score(e))}
        self.done = {name: _score(entry) for name, entry in kept.items()}
        self.todo = [v for v in videos if v.name not in self.done]
        self._file = self._start(identity, kept)
        if self.done:
            log.info(
                "resuming from %s: %d of %s already scored, %d to go",
                self.path,
                len(self.done),
                plural(len(videos), "video"),
                len(self.todo),
            )

    def _reusable(self, identity: dict) -> dict[str, dict]:
        if not self.path.is_file():
            return {}
        try:
            previous, entries = _read(self.path)
        except OSError as exc:
            log.warning("cannot read %s (%s): scoring every video", self.path, exc.strerror or exc)
            return {}
        if previous != identity:
            log.info("%s was written with another model or settings: not resuming from it", self.path)
            return {}
        return {n: e for n, e in entries.items() if n in self._stamps and e.get("stamp") == self._stamps[n]}

    def _start(self, identity: dict, kept: dict[str, dict]) -> TextIO | None:
        """Replace the journal with what is kept (no half line, no duplicates), then append."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps({"journal": VERSION, "identity": identity}, sort_keys=True) + "\n")
                for entry in kept.values():
                    f.write(json.dumps(entry, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            return open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (open for the run; see close)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("cannot write %s (%s): this run cannot be resumed", self.path, exc.strerror or exc)
            return None

    def record(self, score: VideoScore) -> None:
        """Append one finished video, on disk before this returns. A write that fails stops
        the journal (the run goes on; only its resumability is lost)."""
        if self._file is None or score.reason.startswith(RUN_FAILURES):
            return
        entry = {
            "file": score.filename,
            "stamp": self._stamps.get(score.filename),
            "probability": score.probability,
            "reason": score.reason,
            "tracks": list(score.track_probabilities),
            "members": list(score.member_probabilities),  # an ensemble's, for its members CSV
        }
        if score.warning:  # only when there is one: journals of unwarned runs stay byte for byte
            entry["warning"] = score.warning
        if score.per_second is not None:  # only runs that compute them (see the module docstring)
            entry["seconds"] = per_second.to_json(score.per_second)
        try:
            self._file.write(json.dumps(entry, sort_keys=True) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            log.warning(
                "cannot append to %s (%s): this run cannot be resumed", self.path, exc.strerror or exc
            )
            self.close()

    def scores(self, new: Sequence[VideoScore]) -> list[VideoScore]:
        """The journal's scores and this run's: one per video."""
        return [*self.done.values(), *new]

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def run_identity(
    scorer: Any, factory: Any, *, aggregate: str, video_timeout: float, preprocess_device: str
) -> dict[str, Any]:
    """What a video's score depends on besides its file: the model (its own ``identity``, or
    its class), the preprocessor, its configuration with the detector and SyncNet weights it
    loads (``preprocess.cache_layout.config_hash``), and the settings that change an outcome."""
    from preprocess.cache_layout import config_hash

    return {
        "model": getattr(scorer, "identity", None) or {"class": type(scorer).__qualname__},
        "preprocessor": f"{factory.__module__}.{factory.__qualname__}",
        "preprocess": config_hash(scorer.preprocess_config),
        "preprocess_device": preprocess_device,
        "aggregate": aggregate,
        "video_timeout": video_timeout,
    }
