"""``make bench``: per-stage preprocessing time on the 1080p clips in ../shared/media.

The floor is FFmpeg itself: ``ffmpeg -threads N -i FILE -f null -`` decodes every frame and
does nothing else. The target (2-core machine, 10 s 1080p clip) is
decode + faces + tracks + crops + audio features ≤ 1.5 × that decode time, in wall time from
the start of decoding to the last crop. Face detection runs while the video decodes, so the
table shows both the detector's CPU time (``det_cpu``) and the part of it that decoding did not
hide (``detect``: the wait after decoding). ``cpu×`` compares CPU seconds with FFmpeg's: on a
machine other jobs keep busy, wall ratios swing and the CPU ratio is the steadier figure.
SyncNet is network inference (it moves to the GPU in the container), so it is reported on its
own, with the knobs that bound it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.preprocess_config import PreprocessConfig
from core.threads import limit_threads
from preprocess.media import probe
from preprocess.pipeline import Preprocessor

ROOT = Path(__file__).resolve().parents[1]
# Pipeline stages in the order they run; "detect" is only the wait left after decoding.
PREPROCESS_STAGES = ("decode", "detect", "track", "crop", "audio")


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def ffmpeg_decode_seconds(path: Path, threads: int, repeat: int) -> Timing:
    """FFmpeg's fastest wall time over ``repeat`` runs, with that run's CPU time."""
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [exe, "-v", "error", "-threads", str(threads), "-i", str(path), "-f", "null", "-"]
    runs = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        runs.append(Timing(wall, cpu))
    return min(runs, key=lambda t: t.wall)


def _preprocess_seconds(timings: dict[str, float]) -> float:
    """Wall time from the start of decoding to the last crop (SyncNet excluded)."""
    if "preprocess_wall" in timings:
        return timings["preprocess_wall"]
    return sum(timings.get(s, 0.0) for s in PREPROCESS_STAGES)


def find_clips(media: Path, min_height: int) -> list[Path]:
    clips = []
    for path in sorted(media.glob("*/*")):
        if path.suffix.lower() not in {".mp4", ".mpg", ".mov", ".mkv"}:
            continue
        info = probe(path)
        if min(info.width, info.height) >= min_height:
            clips.append(path)
    return clips


def random_syncnet(cfg: PreprocessConfig):
    """SyncNet with random weights: same compute as trained weights, for timing only."""
    from models.syncnet import SyncNet
    from preprocess.latency import SyncNetScorer

    return SyncNetScorer(SyncNet(), cfg.sync)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    parser.add_argument(
        "--min-height", type=int, default=1080, help="clips whose short side is at least this"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="ffmpeg decode threads")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="network threads; 1 avoids OpenMP spinning against the decoder's threads",
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs per clip; the fastest counts")
    parser.add_argument("--no-syncnet", action="store_true")
    args = parser.parse_args(argv)
    if not args.media.is_dir():
        print(f"bench: {args.media} not found (it needs ../shared/media)", file=sys.stderr)
        return 2
    limit_threads(args.torch_threads)
    cfg = PreprocessConfig()
    pre = Preprocessor(cfg, syncnet=None if args.no_syncnet else random_syncnet(cfg))
    clips = find_clips(args.media, args.min_height)
    print(f"{len(clips)} clips ≥{args.min_height}p, {args.threads} threads, best of {args.repeat}")
    print(
        f"detector every {cfg.detector.detect_every} frames at ≤{cfg.detector.max_side} px,"
        f" {args.torch_threads} torch thread(s); window {cfg.media.window_s} s"
    )
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    header = ["clip", "ffmpeg", "decode", "detect", "det_cpu", "track", "crop", "audio", "total", "ratio"]
    header += ["cpu", "ff_cpu", "cpu×", "syncnet"]
    print(" ".join(f"{h:>9}" for h in header))
    ratios = []
    for path in clips:
        floor = ffmpeg_decode_seconds(path, args.threads, args.repeat)
        best: dict[str, float] | None = None
        result = None
        for _ in range(args.repeat):
            result = pre.process(path)
            if not result.ok:
                break
            if best is None or _preprocess_seconds(result.timings) < _preprocess_seconds(best):
                best = result.timings
        if result is None or not result.ok or best is None:
            print(f"{path.name}: failed: {result.error.reason if result else 'no result'}")
            continue
        sync_s = best.get("syncnet", float("nan"))
        total = _preprocess_seconds(best)
        ratio = total / floor.wall
        ratios.append(ratio)
        cpu = best.get("preprocess_cpu", float("nan"))
        stages = [best.get(s, 0.0) for s in ("decode", "detect", "detect_cpu", "track", "crop", "audio")]
        cells = [path.name[:9], floor.wall, *stages, total, ratio, cpu, floor.cpu, cpu / floor.cpu, sync_s]
        print(" ".join(f"{c:>9.3f}" if isinstance(c, float) else f"{c:>9}" for c in cells))
        print(f"  {path.name}: {len(result.samples)} track(s); ratio {ratio:.2f}x ffmpeg decode")
    if ratios:
        print(f"median ratio preprocessing / ffmpeg decode: {statistics.median(ratios):.2f}x (target ≤ 1.5x)")
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    s = cfg.sync
    print(
        f"SyncNet knobs: window {cfg.media.window_s} s, stride {s.stride}, max_frames {s.max_frames or 'all'}, "
        f"vshift ±{s.vshift}, batch {s.batch_size} (CPU seconds above scale ~linearly with frames/stride)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
