"""``python -m preprocess INPUT [--labels FILE] --out CACHE [--ray ADDRESS]``: a dataset → a cache
of Samples, in local worker processes or as Ray tasks on a cluster.

The command line only: the run is ``preprocess.cache_build``, the cache it writes is described
in ``preprocess.cache_layout``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from core.preprocess_config import PreprocessConfig, load_preprocess_config
from core.ray_pool import add_ray_arguments, ray_options
from preprocess.cache_build import PreprocessorFactory, WorkerInitError, build_preprocessor, run_preprocess
from preprocess.datasets import DatasetError, load_dataset
from weights.store import WEIGHTS_ENV, weights_dir


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--split {text!r}: comma-separated numbers expected") from err
    if not 1 <= len(values) <= 3 or any(v < 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"--split {text!r}: 1-3 non-negative fractions summing to 1")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess",
        description="Preprocess a video dataset into a cache of Samples (.npz), a manifest and failures.csv.",
    )
    parser.add_argument("input", type=Path, help="dataset folder, labels CSV, DFDC metadata.json or a video")
    parser.add_argument(
        "--labels", type=Path, help="labels CSV or DFDC metadata.json (paths relative to INPUT)"
    )
    parser.add_argument("--out", type=Path, required=True, help="cache folder (created; reruns resume)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes; 0 runs in this process")
    parser.add_argument("--threads", type=int, help="torch threads per worker (default: cores / workers)")
    parser.add_argument(
        "--video-timeout",
        type=float,
        default=600.0,
        help="seconds one video may take in a worker before the worker is killed (0: no limit)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for the networks, e.g. cuda")
    parser.add_argument(
        "--config", type=Path, help="PreprocessConfig JSON (or a JSON with a 'preprocess' key)"
    )
    parser.add_argument("--window", type=float, help="seconds analysed per video (media.window_s)")
    parser.add_argument(
        "--still-images", action="store_true", help="accept face photos as one-frame clips (training data)"
    )
    parser.add_argument("--detect-every", type=int, help="run the face detector every K frames")
    parser.add_argument("--num-frames", type=int, help="face crops kept per sample")
    parser.add_argument(
        "--single-person", action="store_true", help="keep videos with exactly one face track"
    )
    parser.add_argument("--split", type=_fractions, default=(0.8, 0.1, 0.1), help="train,val,test fractions")
    parser.add_argument("--resplit", action="store_true", help="ignore the splits the dataset provides")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split assignment")
    parser.add_argument("--limit", type=int, help="only the first N videos (sorted by path)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_ray_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> PreprocessConfig:
    cfg = load_preprocess_config(args.config)
    if args.window is not None:
        cfg = cfg.replace("media", window_s=args.window)
    if args.detect_every is not None:
        cfg = cfg.replace("detector", detect_every=args.detect_every)
    if args.still_images:
        cfg = cfg.replace("media", still_images=True)
    if args.num_frames is not None:
        cfg = cfg.replace("sample", num_frames=args.num_frames)
    return cfg


def main(
    argv: Sequence[str] | None = None, preprocessor_factory: PreprocessorFactory = build_preprocessor
) -> int:
    """Exit codes: 0 done (individual videos may have failed: see failures.csv), 1 the
    preprocessor could not be built, 2 bad arguments or dataset, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = config_from_args(args)
        items = load_dataset(args.input, args.labels)
        # Ray workers load the weights this process hashes into the cache's config hash.
        ray = ray_options(args, {WEIGHTS_ENV: str(weights_dir().resolve())})
    except (DatasetError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.limit is not None:
        items = items[: args.limit]
    if not items:
        print(f"error: no videos found in {args.input}", file=sys.stderr)
        return 2
    try:
        summary = run_preprocess(
            items,
            args.out,
            cfg,
            workers=args.workers,
            device=args.device,
            preprocessor_factory=preprocessor_factory,
            single_person=args.single_person,
            fractions=args.split,
            resplit=args.resplit,
            seed=args.seed,
            threads=args.threads,
            video_timeout=args.video_timeout,
            progress=not args.no_progress,
            ray=ray,
        )
    except WorkerInitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: rerun the same command to resume ({args.out})", file=sys.stderr)
        return 130
    print(summary.format(), file=sys.stderr)
    return 0
