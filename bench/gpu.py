"""``make bench-gpu``: ``run.sh`` videos/s on a CUDA GPU, fp32 against fp16, ONNX Runtime's CUDA
provider against torch. Without a CUDA device it says it was skipped and exits 0.

Each configuration scores the same folder (the 1080p clips of ../shared/media, ``--copies``
times) through the submission's own batch runner, with preprocessing (RetinaFace, SyncNet) on
the GPU in worker processes and the detector on the GPU in this process; only the detector's
runtime and precision change between rows. The detector is ``--weights`` or a tiny random
fusion model (exported to ONNX for the ONNX Runtime row).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from core.memory import available_memory, preprocess_workers
from core.threads import available_cpus

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = (("torch", False), ("torch", True), ("onnxruntime", False))  # (runtime, fp16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    parser.add_argument("--weights", help="detector weights (default: a tiny random fusion model)")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument(
        "--workers", type=int, default=0, help="preprocessing processes (0: run.sh's default)"
    )
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(
            f"bench-gpu: skipped: no CUDA device here (torch {torch.__version__}, CUDA {torch.version.cuda})"
        )
        return 0
    from bench.pipeline import tiny_detector
    from bench.stages import find_clips
    from models.registry import load_model
    from models.runtimes import make_runtime
    from preprocess.pipeline import Preprocessor
    from submission.batch import score_videos
    from submission.preprocess_pool import PreprocessPool
    from submission.scoring import DetectorScorer

    clips = find_clips(args.media, 1080) * args.copies
    workers = args.workers or preprocess_workers(available_cpus(), available_memory())
    print(f"{torch.cuda.get_device_name()}: {len(clips)} videos, {workers} preprocessing workers")
    with tempfile.TemporaryDirectory(prefix="avdf-bench-gpu-") as tmp:
        weights = args.weights or str(Path(tmp) / "fusion")
        if not args.weights:
            tiny_detector(Path(tmp))
        base = DetectorScorer.from_weights(weights, runtime="torch", device="cuda")
        loaded = load_model(weights)
        onnx = loaded.path.with_suffix(".onnx")
        for kind, fp16 in CONFIGS:
            if kind == "onnxruntime" and not onnx.is_file():
                print(f"  onnxruntime: skipped ({onnx} absent)")
                continue
            runtime = make_runtime(
                kind,
                module=loaded.module,
                onnx_path=onnx,
                device="cuda",
                max_batch=base.batch_size,
                fp16=fp16,
            )
            scorer = DetectorScorer(runtime, base.detector, base.model_config, base.preprocess_config)
            pool = PreprocessPool(Preprocessor, scorer.preprocess_config, device="cuda", workers=workers)
            started = time.perf_counter()
            result = score_videos(clips, pool, scorer, progress=False)
            wall = time.perf_counter() - started
            ok = sum(s.ok for s in result.scores)
            label = f"{getattr(runtime, 'name', kind)} {'fp16' if fp16 else 'fp32'}"
            print(
                f"  {label:<24} {len(clips) / wall:6.2f} videos/s ({ok}/{len(clips)} scored; "
                f"inference {result.timings.inference_s:.2f} s in all)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
