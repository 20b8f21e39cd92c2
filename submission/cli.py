"""``python -m submission -input DIR -output FILE``: score every video in DIR into a CSV.

Exit status: 0 when the CSV was written (individual videos may have failed: they get the
fallback probability and are listed with their reason in ``<stem>_failures.csv``);
2 bad arguments or input folder (or options this install cannot serve: ``--runtime torch``, or
weights without an ONNX export, where torch is not installed); 3 model weights missing or invalid; 4 output not writable;
5 the CSV was written but EVERY video failed, and not only for faults of their own files
(``all_failed_in_run``): the run itself is broken, and a host must not take the fallbacks
for a result.
A run that was killed resumes from ``<stem>_journal.jsonl`` (``submission.journal``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.aggregation import AGGREGATIONS
from core.calibration import UNCERTAIN_BAND, is_uncertain
from core.device import RUNTIMES, DeviceChoice, choose_auto_device
from core.memory import available_memory, preprocess_workers
from core.optional_torch import TorchMissing, torch_available
from core.ray_pool import RayOptions, add_ray_arguments, ray_options
from core.text import plural
from core.threads import available_cpus, limit_threads
from submission.folder import DEFAULT_EXTENSIONS, parse_extensions, scan_folder
from submission.journal import Journal, run_identity
from submission.per_second import write_per_second
from submission.scoring import SampleScorer, VideoScore
from submission.writer import (
    FORMATS,
    OutputError,
    check_writable,
    failures_path,
    write_member_scores,
    write_submission,
)

log = logging.getLogger("submission")

EXIT_OK, EXIT_USAGE, EXIT_WEIGHTS, EXIT_OUTPUT, EXIT_ALL_FAILED = 0, 2, 3, 4, 5

# Failure codes that a video's own file explains (it is broken, not a video, shows no face);
# any other code (internal_error, worker_crashed, timeout, preprocessor_unavailable,
# inference_error ...) says the run failed the video.
FILE_FAULTS = frozenset(
    {"not_found", "unreadable", "empty_file", "not_a_video", "no_video_stream", "decode_error", "no_face"}
)

# Log-loss punishes a confident miss without bound, and 6-decimal formatting would turn
# p < 5e-7 into exactly 0 (infinite loss). Clipping to [1e-3, 1 - 1e-3] caps one video's loss
# at 6.9 nats and costs a correct confident prediction only 0.001; it is monotone, so a ranking
# metric (AUC) changes only through ties beyond the clip.
DEFAULT_CLIP_EPS = 1e-3
# weights/default.json: the shipped default, an ensemble of detector.* (blend seams) and
# temporal_band.* (facial motion) with its own calibration (submission/ensemble.py)
DEFAULT_WEIGHTS = "default"


USAGE = """bash run.sh INPUT_DIR OUTPUT_DIR [options]          (writes OUTPUT_DIR/submission.csv)
       bash run.sh -input INPUT_DIR -output OUTPUT_CSV [options]
       python -m submission -input INPUT_DIR -output OUTPUT_CSV [options]"""


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except the ones that mean "not given"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m submission",
        usage=USAGE,
        formatter_class=_HelpWithDefaults,
        description="Score every video in a folder: probability that it is fake, one CSV row per video.",
        epilog="Exit status: 0 CSV written; 2 bad arguments/input; 3 weights missing or invalid; "
        "4 output not writable; 5 CSV written, but every video failed and not only for faults of "
        "its own file (a broken run: see the failures CSV).",
    )
    p.add_argument("-input", "--input", "-i", dest="input", help="folder of videos (required)")
    p.add_argument(
        "-output",
        "--output",
        "-o",
        dest="output",
        help="CSV to write (required; a folder means FOLDER/submission.csv)",
    )
    p.add_argument(
        "--weights",
        default=DEFAULT_WEIGHTS,
        help="detector weights: a name under the weights folder or a path; several comma-separated, "
        "or an ensemble JSON, average their logits (see submission/ensemble.py)",
    )
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="what executes the detector (auto: TensorRT on a GPU, else ONNX Runtime; torch needs the training install)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    p.add_argument(
        "--preprocess-device", default=None, help="device of the workers' networks (default: --device)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="preprocessing processes (default: one per CPU, as many as the memory holds at 2.5 GB each,"
        " at least 1; 0: in this process, without crash isolation or timeout)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="samples per model call")
    p.add_argument(
        "--extensions",
        default=",".join(e.lstrip(".") for e in DEFAULT_EXTENSIONS),
        help="comma-separated extensions of the files to score (other files are skipped, and named)",
    )
    p.add_argument(
        "--aggregate",
        choices=AGGREGATIONS,
        default=None,
        help="video score from its face tracks' (default: the detector's own rule, max for fusion)",
    )
    p.add_argument(
        "--fallback", type=float, default=0.5, help="probability for a video that cannot be scored"
    )
    p.add_argument(
        "--clip-eps",
        type=float,
        default=DEFAULT_CLIP_EPS,
        help="clip probabilities to [eps, 1-eps] (bounds log-loss; 0 disables)",
    )
    p.add_argument(
        "--video-timeout", type=float, default=300.0, help="seconds per video before it fails (0: none)"
    )
    p.add_argument(
        "--format",
        choices=tuple(FORMATS),
        default="tmc",
        help="CSV header: tmc filename,probability (AISG Trusted Media Challenge); dfdc filename,label (Kaggle DFDC)",
    )
    p.add_argument(
        "--fresh", action="store_true", help="score every video again, ignoring the journal of an earlier run"
    )
    p.add_argument(
        "--per-second",
        metavar="FILE",
        default=None,
        help="also write each video's per-second scores (filename,track,second,score,measured) to FILE, "
        "for detectors with time-resolved outputs: a row for every second of each face track, "
        "measured 0 where the detector looked at no moment of it (interpolated)",
    )
    p.add_argument(
        "--explain",
        metavar="DIR",
        default=None,
        help="also write DIR/<video>.json and a self-contained DIR/<video>.html per video (face tracks, "
        "per-second timeline, SyncNet curve, models) and DIR/index.html sorted by score",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--check", action="store_true", help="load weights and preprocessor, then exit (no videos)"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    add_ray_arguments(p)
    return p


class _UsageError(Exception):
    pass


def _resolve_output(text: str) -> Path:
    out = Path(text)
    if out.is_dir() or text.endswith(("/", os.sep)):
        return out / "submission.csv"
    return out


def _validate(args: argparse.Namespace) -> None:
    if not 0.0 <= args.fallback <= 1.0:
        raise _UsageError(f"--fallback {args.fallback} is outside [0, 1]")
    if not 0.0 <= args.clip_eps < 0.5:
        raise _UsageError(f"--clip-eps {args.clip_eps} is outside [0, 0.5)")
    if args.batch_size < 1:
        raise _UsageError("--batch-size must be >= 1")
    if args.workers is not None and args.workers < 0:
        raise _UsageError("--workers must be >= 0")
    try:
        args.extensions = parse_extensions(args.extensions)
    except ValueError as exc:
        raise _UsageError(f"--extensions: {exc}") from None


def _default_preprocessor_factory() -> Any:
    from preprocess.pipeline import Preprocessor

    return Preprocessor


def _load_scorer(args: argparse.Namespace, device: str) -> SampleScorer:
    from submission.ensemble import EnsembleScorer, ensemble_settings, is_ensemble, parse_members
    from submission.scoring import DetectorScorer

    if is_ensemble(args.weights):
        scorer = EnsembleScorer.from_members(
            parse_members(args.weights),
            args.runtime,
            device,
            args.batch_size,
            args.aggregate,
            ensemble_settings(args.weights),
        )
    else:
        scorer = DetectorScorer.from_weights(
            args.weights, runtime=args.runtime, device=device, batch_size=args.batch_size
        )
    log.info("model: %s", scorer.description)
    return scorer


def _weights_errors() -> tuple[type[BaseException], ...]:
    from weights.store import WeightsError

    return (WeightsError,)


def main(
    argv: list[str] | None = None, *, preprocessor_factory: Any = None, scorer: SampleScorer | None = None
) -> int:
    """Run the submission. ``preprocessor_factory`` and ``scorer`` replace the real pipeline and
    detector (tests inject fakes; the factory must be picklable for the worker processes)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.check and (args.input is None or args.output is None):
        parser.error("-input DIR and -output FILE are required")
    handler = _log_to_stderr(args.verbose)
    try:
        _validate(args)
        return _run(args, preprocessor_factory, scorer)
    except (_UsageError, TorchMissing) as exc:
        return _fail(EXIT_USAGE, str(exc))
    except OutputError as exc:
        return _fail(EXIT_OUTPUT, str(exc))
    except _weights_errors() as exc:
        return _fail(EXIT_WEIGHTS, f"model weights: {exc}{_weights_hint(args.weights, str(exc))}")
    except KeyboardInterrupt:
        return _fail(130, "interrupted; no CSV written (run again to resume)")
    finally:
        logging.getLogger().removeHandler(handler)


def _weights_hint(given: str, message: str) -> str:
    """What to do about a weights error: the fix for what was passed to --weights."""
    if Path(given).is_dir():
        return ""  # the message says what the folder holds
    about_given = message.startswith(f"no weights named {given!r}")
    if given == DEFAULT_WEIGHTS:
        return (
            "; the shipped default (weights/default.json with detector.* and temporal_band.*) is tracked in "
            "git: `git checkout weights/` restores it, `make train-default` rebuilds it; or pass --weights"
        )
    if about_given:
        names = ", ".join(_detector_names()) or "none"
        return f"; of those, detectors: {names} (--weights NAME); or pass a path to a .safetensors file"
    if "retinaface" in message.split(":", 1)[0]:
        return "; `make setup` builds the face detector's weights"
    if "weights not found" in message:
        return "; check the path given to --weights"
    return "; re-export them (`python -m train export`) or pass other --weights"


def _detector_names() -> list[str]:
    """The weights pairs in the weights folder that hold a detector (not, say, RetinaFace) this
    install can score with."""
    from models.detector_io import detector_io
    from weights.store import WeightsError, available, read_config

    names = []
    for name in available():
        try:
            detector_io(str(read_config(name)["arch"]))
        except (WeightsError, ValueError, TorchMissing):
            continue
        names.append(name)
    from submission.ensemble import is_ensemble
    from weights.store import weights_dir

    ensembles = [f"{p.stem} (ensemble)" for p in sorted(weights_dir().glob("*.json")) if is_ensemble(str(p))]
    return ensembles + names


def _resolve_devices(*texts: str) -> tuple[list[str], str | None]:
    """Each ``--device``-like text resolved, and what ``auto`` found to log (which GPU, or why
    none and that the CPU runs the networks; None when nothing said ``auto``). The caller logs it
    once the weights have loaded, so a run that cannot start says only why."""
    found: list[DeviceChoice] = []

    def resolve(text: str) -> str:
        if text != "auto":
            return text
        if not found:
            found.append(choose_auto_device())
        return found[0].device

    devices = [resolve(t) for t in texts]
    if not found:
        return devices, None
    if found[0].device == "cpu":
        # the images are torch-free: ONNX Runtime runs every network there
        on = "the CPU" if torch_available() else "ONNX Runtime's CPU execution provider"
        return devices, f"no GPU found ({found[0].why}): the networks run on {on}"
    return devices, f"GPU found ({found[0].why}): the networks run on {found[0].device}"


def _run(args: argparse.Namespace, preprocessor_factory: Any, scorer: SampleScorer | None) -> int:
    from submission.batch import score_videos
    from submission.preprocess_pool import PreprocessPool

    if not args.check:
        input_dir = Path(args.input)
        if not input_dir.is_dir():
            raise _UsageError(f"input folder {input_dir} does not exist or is not a folder")
        csv_path = _resolve_output(args.output)
        check_writable(csv_path)  # before minutes of work, not after
        if args.per_second:
            check_writable(Path(args.per_second))
        if args.explain:
            check_writable(Path(args.explain) / "index.html")
        listing = scan_folder(input_dir, args.extensions)
        videos = listing.videos
        if listing.skipped_note():
            log.warning("%s", listing.skipped_note())

    (device, pre_device), device_note = _resolve_devices(args.device, args.preprocess_device or args.device)
    ray = _ray_options(args)
    if ray is not None and args.preprocess_device is None:
        pre_device = "cuda" if ray.gpus > 0 else "cpu"  # the workers' device, not this machine's
    if scorer is None:
        scorer = _load_scorer(args, device)
    factory = preprocessor_factory or _default_preprocessor_factory()
    # Build one preprocessor here first, so missing detector weights fail once, clearly,
    # instead of in every worker. The in-process mode (--workers 0) keeps using it.
    try:
        preprocessor = factory(scorer.preprocess_config, pre_device)
    except (*_weights_errors(), TorchMissing):
        raise
    except Exception as exc:
        return _fail(EXIT_WEIGHTS, f"cannot build the preprocessor: {type(exc).__name__}: {exc}")
    if device_note:
        log.info("%s", device_note)
    if args.check:
        log.info("check passed: detector weights, runtime and preprocessor load")
        return EXIT_OK

    identity = run_identity(
        scorer,
        factory,
        aggregate=args.aggregate or scorer.video_aggregation,
        video_timeout=args.video_timeout,
        preprocess_device=pre_device,
    )
    how = args.aggregate or scorer.video_aggregation
    explainer = _explainer(args, scorer, how)
    journal = Journal(csv_path, videos, identity, fresh=args.fresh, reuse=_reuse(args, explainer))
    cpus = available_cpus()
    workers = preprocess_workers(cpus, available_memory()) if args.workers is None else args.workers
    threads = max(1, cpus // max(workers, 1))
    if ray is not None:
        threads = max(1, math.ceil(ray.cpus))
        log.info("preprocessing as Ray tasks at %s (%g CPU, %g GPU each)", ray.address, ray.cpus, ray.gpus)
    log.info(
        "%s in %s; %s (torch threads each: %d); model on %s, preprocessing on %s",
        plural(len(videos), "video"),
        input_dir,
        plural(workers, "worker process", "worker processes"),
        threads,
        device,
        pre_device,
    )
    pool = PreprocessPool(
        factory,
        scorer.preprocess_config,
        device=pre_device,
        workers=workers,
        threads_per_worker=threads,
        video_timeout=args.video_timeout,
        preprocessor=preprocessor if workers == 0 else None,
        ray=ray,
    )
    if workers > 0 or ray is not None:
        del preprocessor  # the workers build their own
    # inference shares the machine with the local workers (Ray's run elsewhere, or are Ray's to place)
    limit_threads(cpus if ray is not None else max(1, cpus - workers))
    try:
        result = score_videos(
            journal.todo,
            pool,
            scorer,
            how=how,
            progress=not args.no_progress,
            on_score=journal.record,
            # time-resolved scores and the samples' details cost time: only when asked for
            detailed=bool(args.per_second or args.explain),
            on_detail=explainer,
        )
    finally:
        journal.close()
    scores = journal.scores(result.scores)
    try:
        sidecar = write_submission(
            csv_path, scores, fallback=args.fallback, clip_eps=args.clip_eps, fmt=args.format
        )
        if scorer.member_names:
            log.info(
                "members' probabilities in %s", write_member_scores(csv_path, scores, scorer.member_names)
            )
        if args.per_second:
            log.info("per-second scores in %s", write_per_second(args.per_second, scores))
        if explainer is not None:
            log.info("explanations in %s", explainer.write_index(scores))
    except OSError as exc:
        raise OutputError(f"cannot write {csv_path}: {exc.strerror or exc}") from None
    failed = [s for s in scores if not s.ok]
    log_uncertain(scores)
    print(result.timings.summary(), file=sys.stderr)
    if result.pool_restarts:
        log.info("worker pool restarted %s", plural(result.pool_restarts, "time"))
    log.info("wrote %s (%s)", csv_path, plural(len(scores), "row"))
    if failed:
        log.warning(
            "%s got the fallback %.3g; reasons in %s", plural(len(failed), "video"), args.fallback, sidecar
        )
        if len(failed) == len(scores):
            log.warning("EVERY video failed: check %s", failures_path(csv_path))
    if not videos:
        log.warning(
            "no %s files in %s: the CSV has only its header%s",
            "/".join(e.lstrip(".") for e in args.extensions),
            input_dir,
            f"; {listing.skipped_note()}" if listing.skipped else "",
        )
    if all_failed_in_run(scores):
        return _fail(
            EXIT_ALL_FAILED,
            f"every video failed, not only for faults of their files (first: {_first_run_fault(scores)}); "
            f"the CSV holds only fallbacks",
        )
    return EXIT_OK


def log_uncertain(scores: Sequence[VideoScore]) -> None:
    """How many scores sit in the uncertain band (``core.calibration.UNCERTAIN_BAND``)."""
    scored = [s.probability for s in scores if s.probability is not None]
    uncertain = sum(is_uncertain(p) for p in scored)
    if uncertain:
        low, high = UNCERTAIN_BAND
        log.info(
            "%d of %d scored videos are uncertain (probability %.2f-%.2f): the detector says little about them",
            uncertain,
            len(scored),
            low,
            high,
        )


def _code(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def _first_run_fault(scores: list[VideoScore]) -> str:
    return next((s.reason for s in scores if _code(s.reason) not in FILE_FAULTS), "")


def all_failed_in_run(scores: list[VideoScore]) -> bool:
    """Every video failed and at least one for a reason its file does not explain: the run is
    broken (a cache it cannot write, workers that all crash, every video timing out). A folder
    of broken files only is an answer, not a broken run."""
    return bool(scores) and all(not s.ok for s in scores) and bool(_first_run_fault(scores))


def _explainer(args: argparse.Namespace, scorer: SampleScorer, how: str) -> Any:
    """The ``--explain`` page writer, or None."""
    if not args.explain:
        return None
    from submission.batch import ensemble_calibration
    from submission.explain import model_infos
    from submission.explain_pages import ExplainWriter

    return ExplainWriter(
        args.explain, model_infos(scorer), how, scorer.preprocess_config, ensemble_calibration(scorer)
    )


def _reuse(args: argparse.Namespace, explainer: Any) -> Any:
    """Which journal entries may stand for this run: with --per-second or --explain, those that
    carry their per-second scores and (--explain) whose pages are there; None: all of them."""
    if not (args.per_second or args.explain):
        return None

    def reuse(score: VideoScore) -> bool:
        if score.ok and score.per_second is None:  # scored by a run without the flags
            return False
        return explainer is None or explainer.has_page(score)

    return reuse


def _ray_options(args: argparse.Namespace) -> RayOptions | None:
    from weights.store import WEIGHTS_ENV, weights_dir

    try:  # the workers load the preprocessing weights from this process's weights folder
        return ray_options(args, {WEIGHTS_ENV: str(weights_dir().resolve())} if args.ray else None)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def _log_to_stderr(verbose: bool) -> logging.Handler:
    """Log lines of this run (ours at INFO, other packages' at WARNING) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler


def _fail(code: int, message: str) -> int:
    print(f"submission: error: {message}", file=sys.stderr)
    return code
