"""Seeded fuzzing of the submission: ``make fuzz`` (``python tests/fuzz.py --seed 0 --n 200``).

Mutates real clips from ../shared/media (bit flips in the header and in the body, truncation,
zeroed / duplicated / swapped blocks, garbage before or after, the header of another file
spliced onto this one's body), scores them with the real ``python -m submission`` in one run,
and checks what a challenge host relies on:

- the run exits 0, with no traceback (no main-process crash);
- exactly one CSV row per file, each a probability in [0, 1];
- no video hit its timeout (``--video-timeout``);
- every video that got the fallback is one that PyAV (FFmpeg's libraries) cannot decode a
  single video frame of either, or one whose frames show no face (counted apart).

Prints one summary line (files, rows, crashes, time-outs, fallbacks by reason) and exits 1
when a check fails. The same seed makes the same files.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from remux import remux

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
HEADER_BYTES = 4096  # "the header": where containers keep what says how to read the rest


# ---------------------------------------------------------------------------------------------
# mutations: (data, another file's data, rng) -> new data


def _flip(data: bytes, rng: random.Random, lo: int, hi: int) -> bytes:
    out = bytearray(data)
    hi = min(hi, len(out))
    if hi <= lo:
        return bytes(out)
    for _ in range(rng.randint(1, 32)):
        out[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
    return bytes(out)


def flip_header(data: bytes, other: bytes, rng: random.Random) -> bytes:
    return _flip(data, rng, 0, HEADER_BYTES)


def flip_body(data: bytes, other: bytes, rng: random.Random) -> bytes:
    return _flip(data, rng, HEADER_BYTES, len(data))


def truncate(data: bytes, other: bytes, rng: random.Random) -> bytes:
    return data[: int(len(data) * rng.uniform(0.02, 0.98))]


def _block(data: bytes, rng: random.Random) -> tuple[int, int]:
    size = rng.randint(16, max(16, min(65536, len(data) // 4)))
    start = rng.randrange(0, max(1, len(data) - size))
    return start, size


def zero_block(data: bytes, other: bytes, rng: random.Random) -> bytes:
    start, size = _block(data, rng)
    return data[:start] + bytes(size) + data[start + size :]


def duplicate_block(data: bytes, other: bytes, rng: random.Random) -> bytes:
    start, size = _block(data, rng)
    return data[: start + size] + data[start : start + size] + data[start + size :]


def swap_blocks(data: bytes, other: bytes, rng: random.Random) -> bytes:
    start, size = _block(data, rng)
    second = rng.randrange(0, max(1, len(data) - size))
    a, b = sorted((start, second))
    if b < a + size:  # overlapping: swap with the block right after instead
        b = min(a + size, len(data) - size)
    if b < a + size:
        return zero_block(data, other, rng)
    return data[:a] + data[b : b + size] + data[a + size : b] + data[a : a + size] + data[b + size :]


def garbage_before(data: bytes, other: bytes, rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1, 8192)) + data


def garbage_after(data: bytes, other: bytes, rng: random.Random) -> bytes:
    return data + rng.randbytes(rng.randint(1, 65536))


def splice_header(data: bytes, other: bytes, rng: random.Random) -> bytes:
    cut = rng.randint(64, HEADER_BYTES)
    return other[:cut] + data[cut:]


MUTATIONS: dict[str, Callable[[bytes, bytes, random.Random], bytes]] = {
    f.__name__: f
    for f in (
        flip_header,
        flip_body,
        truncate,
        zero_block,
        duplicate_block,
        swap_blocks,
        garbage_before,
        garbage_after,
        splice_header,
    )
}


def source_clips(limit: int, work: Path) -> list[Path]:
    """The smallest clips of ../shared/media, for speed: ``limit`` - 2 MP4s, each also remuxed
    with its index at the front (``tests/remux.py``: a faststart file, whose cuts still decode),
    and 2 MPEG-PS files."""
    by_size = sorted((p for p in MEDIA.rglob("*") if p.is_file()), key=lambda p: (p.stat().st_size, p.name))
    mp4 = [p for p in by_size if p.suffix == ".mp4"][: max(1, limit - 2)]
    mpg = [p for p in by_size if p.suffix == ".mpg"][:2]
    work.mkdir(parents=True, exist_ok=True)
    faststart = [remux(p, work / f"faststart_{p.name}") for p in mp4]
    return mp4 + faststart + mpg


def make_files(folder: Path, n: int, seed: int, sources: list[Path]) -> dict[str, str]:
    """``n`` mutated files in ``folder``, named ``NNN_mutation.mp4``; returns name -> how made.
    Mutation kinds take turns, so every kind appears once ``n`` >= 9."""
    rng = random.Random(seed)
    data = [p.read_bytes() for p in sources]
    kinds = list(MUTATIONS)
    made = {}
    for i in range(n):
        kind = kinds[i % len(kinds)]
        a, b = rng.sample(range(len(sources)), 2) if len(sources) > 1 else (0, 0)
        name = f"{i:03d}_{kind}.mp4"
        (folder / name).write_bytes(MUTATIONS[kind](data[a], data[b], rng))
        made[name] = f"{kind} of {sources[a].name}" + (
            f" with {sources[b].name}" if kind == "splice_header" else ""
        )
    return made


# ---------------------------------------------------------------------------------------------
# the independent decoder check, in its own process: a file that crashes FFmpeg must not take
# the fuzzer with it

_DECODE = """
import sys, av
path = sys.argv[1]
try:
    c = av.open(path, metadata_errors="ignore")
except Exception:
    print(0); sys.exit()
name = c.format.name
if name == "tty" or name.startswith("image2") or name.endswith("_pipe"):
    print(0); sys.exit()  # text and still-image formats are not footage (preprocess.media._open)
streams = [s for s in c.streams.video]
if not streams:
    print(0); sys.exit()
n = 0
try:
    for packet in c.demux(streams[0]):
        try:
            n += len(streams[0].decode(packet))
        except av.FFmpegError:
            pass
        if n:
            break
except Exception:
    pass
print(n)
"""


def decodable_frames(path: Path, timeout: float = 60.0) -> int:
    """Video frames PyAV decodes from ``path`` on its own (-1: the decoder crashed or hung)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _DECODE, str(path)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return -1
    return int(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else -1


# ---------------------------------------------------------------------------------------------


@dataclass
class FuzzReport:
    files: int
    rows: int
    exit_code: int
    crashes: int  # main-process tracebacks or a non-zero exit
    timeouts: int
    fallbacks: Counter  # reason code -> count
    partial: int  # scored from what decodes, with the sidecar's "partial" warning
    wall_s: float
    problems: list[str]

    def line(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.fallbacks.items())) or "none"
        return (
            f"fuzz: {self.files} files, {self.rows} rows, {self.crashes} crashes, {self.timeouts} time-outs, "
            f"exit {self.exit_code}, {self.wall_s:.0f} s; fallbacks: {reasons}; {self.partial} scored partial; "
            f"{len(self.problems)} problems"
        )


def run_fuzz(work: Path, n: int, seed: int, sources: int = 8, video_timeout: float = 60.0) -> FuzzReport:
    inp, out = work / "input", work / "output"
    inp.mkdir(parents=True)
    made = make_files(inp, n, seed, source_clips(sources, work / "sources"))
    cmd = [sys.executable, "-m", "submission", "-input", str(inp), "-output", str(out / "submission.csv")]
    cmd += ["--no-progress", "--video-timeout", f"{video_timeout:g}"]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(600, 20 * n * video_timeout)
    )
    wall = time.perf_counter() - start
    problems = []
    crashes = int(proc.returncode != 0 or "Traceback" in proc.stderr)
    if crashes:
        problems.append(f"exit {proc.returncode}: {proc.stderr[-2000:]}")
    rows, sidecar = _read(out / "submission.csv"), _read(out / "submission_failures.csv")
    names = [r[0] for r in rows]
    if sorted(names) != sorted(made) or len(names) != len(set(names)):
        problems.append(f"rows {len(names)} for {len(made)} files: {sorted(set(made) ^ set(names))[:5]}")
    for name, p in rows:
        if not 0.0 <= float(p) <= 1.0:
            problems.append(f"{name}: probability {p}")
    fallbacks: Counter = Counter()
    timeouts = 0
    partial = sum(1 for _, reason, warning in sidecar if not reason and warning.startswith("partial"))
    for name, reason, _ in sidecar:
        if not reason:
            continue  # scored with a warning
        code = reason.split(":", 1)[0]
        fallbacks[code] += 1
        if code == "timeout" or "stuck over" in reason:
            timeouts += 1
            problems.append(f"{name} ({made.get(name)}): {reason}")
        elif code != "no_face" and decodable_frames(inp / name) != 0:
            problems.append(f"{name} ({made.get(name)}): fell back ({reason}) but PyAV decodes it")
    return FuzzReport(
        len(made), len(rows), proc.returncode, crashes, timeouts, fallbacks, partial, wall, problems
    )


def _read(path: Path) -> list[list[str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="mutated files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", type=int, default=8, help="the N smallest clips of ../shared/media")
    parser.add_argument("--video-timeout", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = parser.parse_args(argv)
    if not MEDIA.is_dir():
        print(f"fuzz: {MEDIA} is absent: fuzzing mutates its clips", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="avdf-fuzz."))
    report = run_fuzz(work, args.n, args.seed, args.sources, args.video_timeout)
    print(report.line())
    for problem in report.problems:
        print(f"  {problem}")
    if args.keep:
        print(f"work folder: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
