"""Make an ``--explain`` page with every part filled, from synthetic videos, and screenshot it:
how ``docs/explain_page.png`` was made.

    .venv/bin/python tests/explain_demo.py OUT_DIR [--syncnet PATH] [--png docs/explain_page.png]

The shipped detector returns no time-resolved scores yet (its per-frame outputs come with the
``localise`` branch) and its preprocessing switches SyncNet off, so this demo scores with the
shipped weights wrapped in ``TimedMobileNetFrames``, a test-side subclass that returns the
per-frame logits the network already computes, and preprocesses with a SyncNet (``--syncnet``,
e.g. ``runs/default/syncnet`` from ``make train-default``) switched on. Synthetic videos only
(``train.synth``): never faces from ``../shared``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.face_frames import pick_frames  # noqa: E402
from models.mobilenet_frames import MobileNetFrames  # noqa: E402

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # as root (CI, containers)
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # no network here: background requests would only wait for time-outs
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class TimedMobileNetFrames(MobileNetFrames):
    """The shipped network with its per-frame logits as a second output (what the frame
    detectors gain on the ``localise`` branch); the sample's logit is unchanged."""

    output_names = ("logits", "frame_logits")

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.body(frames.reshape(-1, *frames.shape[2:]))
        pooled = torch.cat([f.mean(dim=(2, 3)) for f in feats], dim=1)
        per_frame = self.head(self.head_drop(pooled)).reshape(frames.shape[0], -1)
        return per_frame.mean(dim=1, keepdim=True), per_frame

    @classmethod
    def time_columns(cls, sample, config):
        chosen = pick_frames(len(sample.faces), config.num_frames)  # the crops sample_inputs takes
        return np.asarray(sample.face_frame_indices)[chosen] / sample.meta.fps

    @staticmethod
    def time_logits(outputs):
        return outputs[1]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1200, 1600), timeout: float = 120) -> Path:
    """Headless Chromium's rendering of ``page`` (a local file) as a PNG."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [
            exe,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={size[0]},{size[1]}",
            page.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return png


def timed_scorer(syncnet: str | None):
    from models.registry import load_model
    from submission.onnx_runtimes import make_runtime
    from submission.scoring import DetectorScorer

    loaded = load_model(ROOT / "weights" / "detector")
    module = TimedMobileNetFrames(loaded.module.config)
    module.load_state_dict(loaded.module.state_dict())
    pre = loaded.preprocess
    if syncnet:
        pre = pre.replace("sync", weights=syncnet)
    rt = make_runtime("torch", module=module.eval(), onnx_path=None, device="cpu")
    return DetectorScorer(
        rt,
        TimedMobileNetFrames,
        module.config,
        pre,
        batch_size=8,
        description="shipped mobilenetv2_frames + per-frame outputs",
        arch="mobilenetv2_frames (+ frame logits, test-side)",
        weights_path=loaded.path,
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--syncnet", default=None, help="SyncNet weights (name or path) to preprocess with")
    p.add_argument("--png", type=Path, default=None)
    p.add_argument("--page", default="fake_0000_face_blend.mp4", help="the video whose page is shot")
    args = p.parse_args()

    from preprocess.pipeline import Preprocessor
    from submission.cli import main as submission
    from train.synth.videos import write_dataset

    videos = args.out / "videos"
    write_dataset(videos, 4, seconds=4.0, seed=3, categories=("audio_shift", "face_blend"), progress=False)
    code = submission(
        [
            "-input",
            str(videos),
            "-output",
            str(args.out / "submission.csv"),
            "--workers",
            "0",
            "--no-progress",
            "--explain",
            str(args.out / "explain"),
            "--per-second",
            str(args.out / "per_second.csv"),
        ],
        preprocessor_factory=Preprocessor,
        scorer=timed_scorer(args.syncnet),
    )
    if code != 0:
        return code
    if args.png:
        screenshot(args.out / "explain" / f"{args.page}.html", args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
