"""Soak benchmark: does memory stay flat over a long scoring run?

``python -m bench.soak VIDEOS [--every 100] [-- options of python -m submission]``
(``make soak`` generates 1,000 short synthetic clips first). Runs the real command,
``python -m submission``, on every video in VIDEOS with a fresh journal, and whenever another
``--every`` videos are in that journal prints the peak resident memory so far of the main
process (its VmHWM) and of its preprocessing workers (the largest VmHWM of those alive, and
the most the whole process tree held at once, sampled every 0.2 s). At the end: the growth
of each peak between the first report and the last.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from submission.folder import list_videos, parse_extensions
from submission.journal import journal_path

POLL_S = 0.2


def _status_kb(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM`` line of /proc/PID/status in kB (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children's children too)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def journal_count(path: Path) -> int:
    """Videos recorded in a journal (its first line is the header)."""
    try:
        with open(path, "rb") as f:
            return max(0, sum(1 for line in f if line.endswith(b"\n")) - 1)
    except FileNotFoundError:
        return 0


def mb(kb: int) -> str:
    return f"{kb / 1024:8.1f}"


def soak(videos: Path, every: int, extra: list[str], out: Path) -> int:
    total = len(list_videos(videos, parse_extensions("mp4")))
    if total == 0:
        print(f"soak: no .mp4 files in {videos}", file=sys.stderr)
        return 2
    csv_path = out / "submission.csv"
    cmd = [sys.executable, "-m", "submission", "-input", str(videos), "-output", str(csv_path)]
    cmd += ["--no-progress", "--fresh", *extra]
    print(f"soak: {total} videos; {' '.join(cmd)}", flush=True)
    journal = journal_path(csv_path)
    journal.unlink(missing_ok=True)  # the count below must start from this run's
    log = open(out / "run.log", "w")  # noqa: SIM115 (the child writes it until it ends)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    tree_peak = worker_peak = main_peak = 0
    reports: list[tuple[int, int, int, int]] = []
    print(f"{'videos':>7} {'s':>7} {'main peak MB':>13} {'worker peak MB':>15} {'tree peak MB':>13}")

    def report(n: int) -> None:
        reports.append((n, main_peak, worker_peak, tree_peak))
        row = f"{n:7d} {time.monotonic() - start:7.0f} {mb(main_peak):>13} {mb(worker_peak):>15} {mb(tree_peak):>13}"
        print(row, flush=True)

    while True:
        done = proc.poll() is not None
        workers = descendants(proc.pid)
        main_peak = max(main_peak, _status_kb(proc.pid, "VmHWM"))
        worker_peak = max([worker_peak, *(_status_kb(w, "VmHWM") for w in workers)])
        tree = _status_kb(proc.pid, "VmRSS") + sum(_status_kb(w, "VmRSS") for w in workers)
        tree_peak = max(tree_peak, tree)
        count = journal_count(journal)
        while count >= (len(reports) + 1) * every:
            report((len(reports) + 1) * every)
        if done:
            if count and (not reports or reports[-1][0] < count):
                report(count)
            break
        time.sleep(POLL_S)
    log.close()
    if proc.returncode != 0:
        print(f"soak: python -m submission exited {proc.returncode}; see {out / 'run.log'}", file=sys.stderr)
        return 1
    if not reports:
        print(f"soak: no video was scored; see {out / 'run.log'}", file=sys.stderr)
        return 1
    first, last = reports[0], reports[-1]
    for label, k in (("main", 1), ("worker", 2), ("tree", 3)):
        growth = 100.0 * (last[k] - first[k]) / max(first[k], 1)
        print(
            f"{label} peak: {mb(first[k]).strip()} MB at {first[0]} videos, {mb(last[k]).strip()} MB at {last[0]}: {growth:+.1f} %"
        )
    print(f"soak: {total} videos in {time.monotonic() - start:.0f} s; log and CSV in {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("videos", type=Path, help="folder of .mp4 clips")
    parser.add_argument("--every", type=int, default=100, help="report every N videos")
    parser.add_argument("--out", type=Path, help="where the CSV, journal and log go (default: a temp folder)")
    parser.epilog = "Options after -- go to python -m submission, e.g. -- --workers 2"
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    extra = argv[split + 1 :]
    out = args.out or Path(tempfile.mkdtemp(prefix="soak."))
    out.mkdir(parents=True, exist_ok=True)
    return soak(args.videos, args.every, extra, out)


if __name__ == "__main__":
    sys.exit(main())
