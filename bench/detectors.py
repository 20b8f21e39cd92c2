"""``make bench`` (second part): each detector's CPU inference cost per video, as ``run.sh`` pays it.

For every registered detector at its default configuration (the fusion model also at its
``tiny`` demo size), 8 videos of one face track each — samples holding
``SampleConfig.num_frames`` random 224² face crops and a latency vector — are scored the way
the submission scores them (``DetectorScorer.score``: ``sample_inputs``, batching, the runtime,
``fake_probability``) in one batch of 8, with torch and with ONNX Runtime (the model exported
to a temporary folder). Reported: milliseconds per video, best of up to ``--repeat`` runs
(fewer when one run takes longer than ``--budget`` seconds), and the share of it that making
the inputs takes. Weights are random: the cost does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.preprocess_config import PreprocessConfig
from core.preprocess_data import Latency, Sample, SampleMeta
from core.threads import limit_threads
from models.detector import DetectorModel
from models.fusion import FusionConfig
from models.onnx_export import export_onnx
from models.registry import create_model, model_entry, registered_models
from models.runtimes import make_runtime
from submission.scoring import DetectorScorer

VIDEOS_PER_BATCH = 8


@dataclass(frozen=True)
class ModelCost:
    name: str
    parameters: int
    inputs_ms: float  # per video: Sample → the model's input arrays
    torch_ms: float  # per video, inputs included
    onnxruntime_ms: float | None


def bench_samples(count: int, cfg: PreprocessConfig, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    frames, size, vshift = cfg.sample.num_frames, cfg.track.crop_size, cfg.sync.vshift
    samples = []
    for i in range(count):
        distances = rng.uniform(6, 14, 2 * vshift + 1).astype(np.float32)
        latency = Latency(distances, 0, float(distances.min()), 3.0, np.ones(5, np.float32))
        meta = SampleMeta(f"v{i}.mp4", f"v{i}.mp4", 25.0, 10.0, True, 1, 0)
        faces = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
        empty = np.zeros((0,), np.float32)
        samples.append(
            Sample(
                meta,
                faces,
                np.arange(frames),
                np.zeros((frames, 4), np.float32),
                0,
                np.zeros(0, np.int16),
                empty.reshape(13, 0),
                empty.reshape(80, 0),
                latency,
            )  # fmt: skip
        )
    return samples


def best_seconds(fn, repeat: int, budget: float) -> float:
    """Fastest of up to ``repeat`` calls after one warm-up; stops early past ``budget`` seconds."""
    fn()
    times, spent = [], 0.0
    while len(times) < repeat and (not times or spent < budget):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return min(times)


def model_cost(
    name: str,
    model: DetectorModel,
    samples: list[Sample],
    repeat: int,
    budget: float,
    onnx: bool,
    threads: int,
) -> ModelCost:
    model.eval()
    detector, config, n = type(model), model.config, len(samples)
    inputs = best_seconds(lambda: detector.batch_inputs(samples, config), repeat, budget)
    pre = PreprocessConfig()

    def scorer_seconds(runtime) -> float:
        scorer = DetectorScorer(runtime, detector, config, pre, batch_size=n)
        return best_seconds(lambda: scorer.score(samples), repeat, budget)

    torch_s = scorer_seconds(make_runtime("torch", module=model, device="cpu"))
    ort_s = None
    if onnx:
        with tempfile.TemporaryDirectory() as folder:
            path = export_onnx(model, Path(folder) / f"{name}.onnx")
            ort_s = scorer_seconds(make_runtime("onnxruntime", onnx_path=path, device="cpu", threads=threads))
    params = sum(p.numel() for p in model.parameters())
    per_video = 1000 / n
    return ModelCost(
        name, params, inputs * per_video, torch_s * per_video, None if ort_s is None else ort_s * per_video
    )


def bench_models(names: list[str]) -> list[tuple[str, DetectorModel]]:
    """(label, model) at each detector's default configuration; ``fusion_tiny`` is the demo's size."""
    out = []
    for name in names:
        if name == "fusion_tiny":
            out.append((name, create_model("fusion_timesformer", **FusionConfig.tiny().to_dict())))
        else:
            out.append((name, create_model(name)))
    return out


def detector_names() -> list[str]:
    names = [n for n in registered_models() if issubclass(model_entry(n).model_class, DetectorModel)]
    return [*names, "fusion_tiny"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", help=f"comma-separated (default: all of {', '.join(detector_names())})")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch and ONNX Runtime threads"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per model and runtime; the fastest counts"
    )
    parser.add_argument("--budget", type=float, default=20.0, help="seconds after which repeats stop")
    parser.add_argument("--no-onnx", action="store_true", help="torch only")
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else detector_names()
    unknown = sorted(set(names) - set(detector_names()))
    if unknown:
        print(f"bench.detectors: unknown detectors {unknown}; known: {detector_names()}", file=sys.stderr)
        return 2
    limit_threads(args.threads)
    torch.manual_seed(0)
    cfg = PreprocessConfig()
    samples = bench_samples(VIDEOS_PER_BATCH, cfg)
    print(
        f"per-video CPU inference, batch of {VIDEOS_PER_BATCH} videos (one face track each, "
        f"{cfg.sample.num_frames} crops of {cfg.track.crop_size}²), {args.threads} thread(s), "
        f"best of ≤{args.repeat}; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'detector':<20} {'params':>10} {'inputs ms':>10} {'torch ms':>10} {'onnxrt ms':>10}")
    for name, model in bench_models(names):
        cost = model_cost(name, model, samples, args.repeat, args.budget, not args.no_onnx, args.threads)
        ort = f"{cost.onnxruntime_ms:10.1f}" if cost.onnxruntime_ms is not None else f"{'-':>10}"
        print(
            f"{name:<20} {cost.parameters:>10,} {cost.inputs_ms:10.1f} {cost.torch_ms:10.1f} {ort}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
