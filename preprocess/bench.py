"""``make bench``: per-stage preprocessing time on the 1080p clips in ../shared/media.

The floor is FFmpeg itself: ``ffmpeg -threads N -i FILE -f null -`` decodes every frame and
does nothing else. The target (2-core machine, 10 s 1080p clip) is
decode + faces + tracks + crops + audio features ≤ 1.5 × that decode time. SyncNet is network
inference (it moves to the GPU in the container), so it is reported on its own, with the knobs
that bound it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from preprocess.config import PreprocessConfig
from preprocess.media import probe
from preprocess.pipeline import Preprocessor

ROOT = Path(__file__).resolve().parents[1]
PREPROCESS_STAGES = ("decode", "detect", "track", "crop", "audio")


def ffmpeg_decode_seconds(path: Path, threads: int, repeat: int) -> float:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [exe, "-v", "error", "-threads", str(threads), "-i", str(path), "-f", "null", "-"]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def _preprocess_seconds(timings: dict[str, float]) -> float:
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
    from preprocess.latency import SyncNetScorer
    from preprocess.syncnet import SyncNet

    return SyncNetScorer(SyncNet(), cfg.sync)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    parser.add_argument(
        "--min-height", type=int, default=1080, help="clips whose short side is at least this"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=2, help="runs per clip; the fastest counts")
    parser.add_argument("--no-syncnet", action="store_true")
    args = parser.parse_args(argv)
    if not args.media.is_dir():
        print(f"bench: {args.media} not found (it needs ../shared/media)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg = PreprocessConfig()
    pre = Preprocessor(cfg, syncnet=None if args.no_syncnet else random_syncnet(cfg))
    clips = find_clips(args.media, args.min_height)
    print(f"{len(clips)} clips ≥{args.min_height}p, {args.threads} threads, best of {args.repeat}")
    print(
        f"detector every {cfg.detector.detect_every} frames at ≤{cfg.detector.max_side} px; window {cfg.media.window_s} s"
    )
    header = ["clip", "ffmpeg", *PREPROCESS_STAGES, "total", "ratio", "syncnet"]
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
        ratio = total / floor
        ratios.append(ratio)
        cells = [path.name[:9], floor, *(best.get(s, 0.0) for s in PREPROCESS_STAGES), total, ratio, sync_s]
        print(" ".join(f"{c:>9.3f}" if isinstance(c, float) else f"{c:>9}" for c in cells))
        print(f"  {path.name}: {len(result.samples)} track(s); ratio {ratio:.2f}x ffmpeg decode")
    if ratios:
        print(f"median ratio preprocessing / ffmpeg decode: {statistics.median(ratios):.2f}x (target ≤ 1.5x)")
    s = cfg.sync
    print(
        f"SyncNet knobs: window {cfg.media.window_s} s, stride {s.stride}, max_frames {s.max_frames or 'all'}, "
        f"vshift ±{s.vshift}, batch {s.batch_size} (CPU seconds above scale ~linearly with frames/stride)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
