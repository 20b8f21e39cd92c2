"""``make bench``: preprocessing and ``run.sh`` speed, and SyncNet's sampled search against the full
one, all measured side by side in one run.

1. 1080p clips (and short/small ones): ``ffmpeg -threads N -f null`` decoding of the file (what
   ratios are taken against); the floor today's samples allow on this machine
   (``bench.floor``: the pipeline's own decode and RetinaFace's network, over every core);
   preprocessing without SyncNet and with it (the default sampled offset search), as
   ratios to FFmpeg's decode; SyncNet's CPU seconds with the full search (every frame, as before
   ``SyncConfig.windows``) against the sampled one, on the same track.
2. Offset agreement: ``../shared/media/real`` with the audio shifted by -10..+10 frames, each
   sampled configuration against the full search (``bench.sync_agreement``).
3. ``bash run.sh`` on the 1080p clips (each ``--copies`` times): videos/min from the command's
   start to its end, and its per-stage seconds.

SyncNet weights: ``--syncnet PATH``, else ``weights/syncnet`` when it exists, else random ones
(cost is the same; agreement on an untrained network says nothing, and the table says so). The
detector: ``--weights``, else ``weights/detector``, else a tiny random fusion model (its cost is
the inference part of run.sh only). On a machine other jobs keep busy, wall ratios swing: the
load average is printed, and medians are what count.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.floor import Floor, measure_floor
from bench.stages import ffmpeg_decode_seconds, find_clips
from core.preprocess_config import PreprocessConfig, SyncConfig
from core.threads import available_cpus, limit_threads
from models.runtimes import TorchRuntime
from preprocess.latency import SyncNetScorer
from preprocess.media import probe
from preprocess.pipeline import Preprocessor

ROOT = Path(__file__).resolve().parents[1]
SMALL_CLIPS = (  # short or small: fixed costs weigh most here
    "real/lipnet_GRID_bbaf2n.mpg",
    "real/pcavs_Audio_Source_00086.mp4",
    "real/retalking_face_3.mp4",
    "fake/sadtalker_art_0__japanese_es1.mp4",
)
AGREEMENT_CONFIGS = (
    (16, 16),
    (16, 2),
    (24, 24),
    (28, 28),
    (32, 32),
)  # (windows, runs); the first is the default


def load_syncnet_module(path: Path | None):
    """(module, description): the given weights, weights/syncnet, or random ones."""
    import torch

    from models.syncnet import SyncNet, load_syncnet
    from weights.store import tensors_path

    candidate = path or tensors_path(ROOT / "weights" / "syncnet")
    if Path(candidate).is_file():
        return load_syncnet(candidate), f"trained ({candidate})"
    torch.manual_seed(0)
    return SyncNet().eval(), "RANDOM weights (no weights/syncnet): costs are real, agreement is not"


def scorer(module, cfg: SyncConfig, fast: bool) -> SyncNetScorer:
    return SyncNetScorer(TorchRuntime(module, channels_last=fast), cfg)


@dataclasses.dataclass
class ClipRow:
    name: str
    ffmpeg: float  # FFmpeg's decode, wall seconds: what every ratio is taken against
    plain: float  # preprocessing wall without SyncNet
    synced: float  # preprocessing + sampled SyncNet, wall
    sync_cpu_full: float
    sync_cpu_sampled: float
    tracks: int
    ffmpeg_cpu: float  # FFmpeg's CPU seconds
    plain_cpu: float  # preprocessing's, without SyncNet
    parts: Floor  # the pipeline's decode and RetinaFace's network alone (bench.floor)

    @property
    def least(self) -> float:
        """The least wall time these samples allow on this machine's cores."""
        return self.parts.wall(available_cpus())

    def cells(self) -> list[str]:
        return [
            f"{self.name[:24]:<24}",
            f"{self.ffmpeg:7.2f}",
            f"{self.least / self.ffmpeg:6.2f}x",
            f"{self.plain:7.2f}",
            f"{self.plain / self.ffmpeg:6.2f}x",
            f"{self.synced:7.2f}",
            f"{self.synced / self.ffmpeg:6.2f}x",
            f"{self.sync_cpu_full:9.2f}",
            f"{self.sync_cpu_sampled:9.2f}",
            f"{self.tracks:3d}",
            f"{self.plain_cpu / self.ffmpeg_cpu:6.2f}x",
            f"{(self.plain_cpu + self.sync_cpu_sampled) / self.ffmpeg_cpu:6.2f}x",
        ]


# least: the floor's wall over ffmpeg's (bench.floor); ratio: wall / ffmpeg wall; cpu×: CPU seconds /
# ffmpeg's (steadier on a busy machine)
HEADER = [
    "clip",
    "ffmpeg",
    "least",
    "pre",
    "ratio",
    "pre+sync",
    "ratio",
    "sync_full",
    "sync_now",
    "trk",
    "cpu×",
    "cpu×sync",
]
WIDTHS = [24, 7, 7, 7, 7, 7, 7, 9, 9, 3, 7, 8]


def best_run(pre: Preprocessor, path: Path, repeat: int) -> dict[str, float] | None:
    best = None
    for _ in range(repeat):
        result = pre.process(path)
        if not result.ok:
            print(f"  {path.name}: failed: {result.error.reason}")
            return None
        wall = result.timings.get("preprocess_wall", 0.0) + result.timings.get("syncnet", 0.0)
        if best is None or wall < best["wall"]:
            best = {**result.timings, "wall": wall, "tracks": len(result.samples)}
    return best


def clip_rows(paths: list[Path], module, args) -> list[ClipRow]:
    cfg = PreprocessConfig()
    # the decoder gets ffmpeg's threads (--threads), the networks --torch-threads
    plain = Preprocessor(cfg, syncnet=None, decode_threads=args.threads)
    sampled = Preprocessor(
        cfg, detector=plain.detector, syncnet=scorer(module, cfg.sync, fast=True), decode_threads=args.threads
    )
    full_cfg = dataclasses.replace(cfg.sync, windows=0)  # before: every window, channels-first
    full = Preprocessor(
        cfg,
        detector=plain.detector,
        syncnet=scorer(module, full_cfg, fast=False),
        decode_threads=args.threads,
    )
    print(
        " ".join(
            f"{h:>{w}}" if i else f"{h:<{w}}" for i, (h, w) in enumerate(zip(HEADER, WIDTHS, strict=True))
        )
    )
    rows = []
    for path in paths:
        ffmpeg = ffmpeg_decode_seconds(path, args.threads, args.repeat)
        floor = measure_floor(path, plain.detector, cfg, args.threads, args.repeat)
        without = best_run(plain, path, args.repeat)
        with_sync = best_run(sampled, path, args.repeat)
        before = best_run(full, path, 1)
        if without is None or with_sync is None or before is None:
            continue
        row = ClipRow(
            path.name,
            ffmpeg.wall,
            without["preprocess_wall"],
            with_sync["wall"],
            before.get("syncnet_cpu", float("nan")),
            with_sync.get("syncnet_cpu", float("nan")),
            int(with_sync["tracks"]),
            ffmpeg.cpu,
            without["preprocess_cpu"],
            floor,
        )
        rows.append(row)
        print(" ".join(row.cells()), flush=True)
    return rows


# Issue 18's targets (2-core machine): median wall ratio to ffmpeg's decode, without / with SyncNet
# (None: no target); run.sh videos/min on the 10 s 1080p clips.
TARGETS = {"1080p": (1.2, 2.0), "short/small": (3.0, None)}
RUN_SH_TARGET = 40.0


def against(value: float, target: float | None, unit: str = "x", more_is_better: bool = False) -> str:
    """``value`` with its target beside it: "1.31x (target <= 1.2x: missed)"."""
    if target is None:
        return f"{value:.2f}{unit}"
    met = value >= target if more_is_better else value <= target
    sign = ">=" if more_is_better else "<="
    return f"{value:.2f}{unit} (target {sign} {target:g}{unit}: {'met' if met else 'MISSED'})"


def summarise(label: str, rows: list[ClipRow]) -> None:
    if not rows:
        print(f"{label}: no clips")
        return
    target_plain, target_synced = TARGETS.get(label, (None, None))
    plain = statistics.median(r.plain / r.ffmpeg for r in rows)
    synced = statistics.median(r.synced / r.ffmpeg for r in rows)
    plain_cpu = statistics.median(r.plain_cpu / r.ffmpeg_cpu for r in rows)
    synced_cpu = statistics.median((r.plain_cpu + r.sync_cpu_sampled) / r.ffmpeg_cpu for r in rows)
    least = statistics.median(r.least / r.ffmpeg for r in rows)
    decode_cpu = statistics.median(r.parts.decode_cpu / r.ffmpeg_cpu for r in rows)
    network_cpu = statistics.median(r.parts.network_cpu for r in rows)
    full = sum(r.sync_cpu_full for r in rows) / sum(r.tracks for r in rows)
    now = sum(r.sync_cpu_sampled for r in rows) / sum(r.tracks for r in rows)
    print(
        f"{label}: median ratio to ffmpeg decode: without SyncNet {against(plain, target_plain)},"
        f" with SyncNet {against(synced, target_synced)}"
        f" (CPU seconds: {plain_cpu:.2f}x, {synced_cpu:.2f}x); the least these samples allow on"
        f" {available_cpus()} cores: {least:.2f}x (the pipeline's decode alone {decode_cpu:.2f}x ffmpeg's"
        f" CPU-s, RetinaFace's network {network_cpu:.2f} CPU-s a clip);"
        f" SyncNet CPU-s per track: full search {full:.2f}, sampled {now:.2f} ({full / now:.1f}x less)"
    )


def agreement(module, args) -> None:
    from bench.sync_agreement import compare, embed_tracks

    real = sorted(p for p in (args.media / "real").iterdir() if p.suffix in (".mp4", ".mpg"))
    started = time.perf_counter()
    sync = scorer(module, SyncConfig(), fast=True)
    tracks = embed_tracks(real, sync)
    configs = [SyncConfig(windows=w, runs=r) for w, r in AGREEMENT_CONFIGS]
    shifts = range(-10, 11)
    results = compare(tracks, configs, shifts, valid_only=sync.valid_only)
    print(
        f"offset agreement, sampled vs full search: {len(tracks)} clips of media/real x shifts -10..+10"
        f" ({time.perf_counter() - started:.0f} s); chance of finding a shift ±1: 3/31 = 9.7 %"
    )
    for result in results:
        print("  " + result.row())
    print_per_clip(per_clip_offsets(tracks, shifts, configs[0].vshift, sync.valid_only))


def search_cost(module, args, clips: int = 4) -> None:
    """SyncNet CPU-s of the full search and of each sampled configuration on the same tracks (the
    first media/real clips), as ``SyncNetScorer.latency`` runs them: crops and MFCCs ready."""
    from preprocess.audio import mfcc
    from preprocess.tracks import crop_faces

    cfg = PreprocessConfig()
    pre = Preprocessor(cfg, syncnet=None)
    searches = {"full": scorer(module, dataclasses.replace(cfg.sync, windows=0), fast=True)}
    for w, r in AGREEMENT_CONFIGS:
        searches[f"{w}/{r}"] = scorer(module, dataclasses.replace(cfg.sync, windows=w, runs=r), fast=True)
    real = sorted(p for p in (args.media / "real").iterdir() if p.suffix in (".mp4", ".mpg"))[:clips]
    spent = dict.fromkeys(searches, 0.0)
    frames = 0
    for path in real:
        clip, track = pre.speaking_face(path)
        start, stop = int(track.frame_indices[0]), int(track.frame_indices[-1]) + 1
        faces = crop_faces(clip.frames, track, cfg.track)
        per_frame = clip.sample_rate / clip.fps
        features = mfcc(
            clip.audio[int(round(start * per_frame)) : int(round(stop * per_frame))], clip.sample_rate
        )
        frames += len(faces)
        for name, search in searches.items():
            best = float("inf")
            for _ in range(3):  # the fastest of 3: other jobs on the machine only add time
                t = time.process_time()
                search.latency(faces, features)
                best = min(best, time.process_time() - t)
            spent[name] += best
    per_10s = 250 / max(frames, 1)
    full = max(spent["full"], 1e-9)
    print(
        f"  search cost on {len(real)} media/real tracks ({frames} frames), CPU-s per 10 s of track: "
        + ", ".join(
            f"{k} {v * per_10s:.2f}" + ("" if k == "full" else f" ({v / full:.0%} of full)")
            for k, v in spent.items()
        )
    )


@dataclasses.dataclass
class ClipOffsets:
    name: str
    offset: int  # full search on the unshifted clip (0 ± 1 when in sync)
    confidence: float
    shifted_confidence: float  # median over the shifted trials
    hits: int  # shifts found ±1 (full search)
    trials: int
    # median distance minus the distance at offset 0: how in sync the clip is *as given*. The
    # search confidence above follows the lips wherever the audio was moved (a shifted clip
    # is found at its shift, as surely), so this is the figure that tells in sync from moved.
    margin: float = 0.0
    shifted_margin: float = 0.0  # the median over the trials shifted by 2 frames or more


def margin_at_zero(latency, vshift: int) -> float:
    curve = np.asarray(latency.distances, np.float64)
    return float(np.median(curve) - curve[vshift])


def per_clip_offsets(tracks, shifts, vshift: int, valid_only: bool) -> list[ClipOffsets]:
    from preprocess.latency import offset_search

    out = []
    for track in tracks:
        found = {
            s: offset_search(track.lip, track.audio_shifted(s), None, vshift, valid_only=valid_only)
            for s in shifts
        }
        zero = found.get(0) or offset_search(
            track.lip, track.audio_shifted(0), None, vshift, valid_only=valid_only
        )
        moved = [found[s].confidence for s in shifts if s != 0]
        hits = sum(abs(found[s].offset + s) <= 1 for s in shifts)
        margins = [margin_at_zero(found[s], vshift) for s in shifts if abs(s) > 1]
        out.append(
            ClipOffsets(
                track.name,
                zero.offset,
                zero.confidence,
                statistics.median(moved),
                hits,
                len(shifts),
                margin_at_zero(zero, vshift),
                statistics.median(margins),
            )
        )
    return out


def source_of(name: str) -> str:
    """media/real file names start with their source (lipnet_GRID_…, pcavs_…, dfdc_…)."""
    return name.split("_")[0]


def print_per_clip(rows: list[ClipOffsets]) -> None:
    print(
        "  per clip (full search): unshifted offset / confidence | median confidence when shifted | shifts found ±1"
        " | margin at offset 0, unshifted / median shifted by 2+"
    )
    for r in rows:
        print(
            f"    {r.name:<36} offset {r.offset:+3d} conf {r.confidence:5.3f} | shifted {r.shifted_confidence:5.3f}"
            f" | {r.hits:2d}/{r.trials} | {r.margin:+6.3f} / {r.shifted_margin:+6.3f}"
        )
    sources: dict[str, list[ClipOffsets]] = {}
    for r in rows:
        sources.setdefault(source_of(r.name), []).append(r)
    print(
        "  by source: "
        + ", ".join(
            f"{k} {sum(r.hits for r in v)}/{sum(r.trials for r in v)}" for k, v in sorted(sources.items())
        )
        + f"; unshifted clips at 0±1: {sum(abs(r.offset) <= 1 for r in rows)}/{len(rows)}"
        + f"; margin at offset 0 above the median 2+ shift's: {sum(r.margin > r.shifted_margin for r in rows)}/{len(rows)}"
        + f" (medians over clips {statistics.median(r.margin for r in rows):+.3f} unshifted,"
        + f" {statistics.median(r.shifted_margin for r in rows):+.3f} shifted)"
    )


def tiny_detector(folder: Path) -> str:
    """A tiny random fusion model saved in ``folder`` (where weights/detector is absent)."""
    import torch

    from models.fusion import FusionConfig, FusionModel
    from models.onnx_export import export_onnx
    from weights.store import save_weights

    torch.manual_seed(0)
    cfg = FusionConfig.tiny()
    model = FusionModel(cfg).eval()
    pre = PreprocessConfig().replace("sample", num_frames=cfg.num_frames)
    save_weights(folder / "fusion", model.state_dict(), model.arch, cfg.to_dict(), pre.to_dict())
    export_onnx(model, folder / "fusion.onnx")
    return "tiny random fusion model (no weights/detector)"


def run_sh(clips: list[Path], module, args) -> None:
    from weights.store import save_weights

    with tempfile.TemporaryDirectory(prefix="avdf-bench-") as tmp:
        tmp = Path(tmp)
        weights, videos = tmp / "weights", tmp / "in"
        weights.mkdir()
        videos.mkdir()
        # the project's weights (RetinaFace and its ONNX file, the shipped default and its
        # members), with the SyncNet this run measures
        for path in (ROOT / "weights").iterdir():
            if path.suffix in (".safetensors", ".json", ".onnx") and not path.stem.startswith("syncnet"):
                (weights / path.name).symlink_to(path)
        from models.syncnet_mouth import ARCH as MOUTH_ARCH
        from models.syncnet_mouth import SyncNetMouth

        arch = MOUTH_ARCH if isinstance(module, SyncNetMouth) else "syncnet"
        save_weights(weights / "syncnet", module.state_dict(), arch, module.config.to_dict(), None)
        if args.weights:
            model, described = str(Path(args.weights).resolve()), str(args.weights)
        elif (ROOT / "weights" / "default.json").is_file():
            model, described = "default", "weights/default (the shipped default)"
        elif (ROOT / "weights" / "detector.safetensors").is_file():
            model, described = "detector", "weights/detector"
        else:
            model, described = "fusion", tiny_detector(weights)
        for clip in clips:
            for k in range(args.copies):
                (videos / f"{clip.stem}_{k}{clip.suffix}").symlink_to(clip.resolve())
        n = len(clips) * args.copies
        command = ["bash", str(ROOT / "run.sh"), str(videos), str(tmp / "out"), "--no-progress"]
        command += ["--weights", model, *args.run_sh_args]
        env = {**os.environ, "AVDF_WEIGHTS": str(weights)}
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            print(f"run.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
            return
        inner = re.search(r"([\d.]+) videos/min", done.stderr)
        print(
            f"run.sh on {n} videos (1080p, 10 s; {len(clips)} clips x {args.copies}), detector: {described}"
        )
        print(
            f"  {against(60 * n / wall, RUN_SH_TARGET, ' videos/min', more_is_better=True)} from start to"
            f" exit ({wall:.1f} s, process start and model loading included);"
            f" {inner.group(1) if inner else '?'} videos/min once running"
        )
        table = done.stderr[done.stderr.find("stage") :].splitlines()
        print("\n".join("  " + line for line in table if line.strip() and not line.startswith("submission:")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    parser.add_argument("--syncnet", type=Path, help="SyncNet weights (default weights/syncnet, else random)")
    parser.add_argument(
        "--weights", help="detector weights for run.sh (default weights/detector, else tiny random)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="ffmpeg decode threads")
    parser.add_argument("--torch-threads", type=int, default=1, help="network threads in-process")
    parser.add_argument("--repeat", type=int, default=2, help="runs per clip; the fastest counts")
    parser.add_argument("--copies", type=int, default=3, help="run.sh input: each 1080p clip this many times")
    parser.add_argument("--no-agreement", action="store_true", help="skip the agreement section (minutes)")
    parser.add_argument(
        "--agreement-only",
        action="store_true",
        help="only the agreement section (with its SyncNet cost per track)",
    )
    parser.add_argument("--run-sh-args", nargs=argparse.REMAINDER, default=[], help="passed to run.sh")
    args = parser.parse_args(argv)
    if not args.media.is_dir():
        print(f"bench: {args.media} not found (it needs ../shared/media)", file=sys.stderr)
        return 2
    limit_threads(args.torch_threads)
    module, described = load_syncnet_module(args.syncnet)
    cfg = PreprocessConfig()
    print(f"SyncNet: {described}; sampled search: {cfg.sync.windows} windows in {cfg.sync.runs} runs")
    print(
        f"{os.cpu_count()} CPUs; load average at start: {os.getloadavg()[0]:.2f}; torch threads {args.torch_threads}"
    )
    if args.agreement_only:
        agreement(module, args)
        search_cost(module, args)
        return 0
    big = find_clips(args.media, 1080)
    small = [args.media / rel for rel in SMALL_CLIPS if (args.media / rel).is_file()]
    print(f"\n1080p clips (ffmpeg -threads {args.threads}, best of {args.repeat}; seconds, SyncNet in CPU-s)")
    big_rows = clip_rows(big, module, args)
    print("\nshort/small clips")
    small_rows = clip_rows(small, module, args)
    print()
    summarise("1080p", big_rows)
    summarise("short/small", small_rows)
    if not args.no_agreement:
        print()
        agreement(module, args)
    print()
    run_sh([c for c in big if probe(c).duration >= 9.0], module, args)  # the 10 s DFDC clips
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
