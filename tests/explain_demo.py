"""Make an ``--explain`` page with every part filled, from synthetic videos, and screenshot it:
how ``docs/explain_page.png`` was made.

    .venv/bin/python tests/explain_demo.py OUT_DIR [--syncnet PATH] [--png docs/explain_page.png]

Scores as ``run.sh`` does: the shipped detector (``weights/detector``, ``mobilenetv2_frames``)
through ``DetectorScorer.from_weights`` on the default runtime; its ``frame_logits`` give the
per-second timeline. The one change: its preprocessing switches SyncNet off (``sync.weights``
is empty), so ``--syncnet`` (e.g. ``runs/default/syncnet`` from ``make train-default``) switches
it on, for the page's SyncNet curve; the detector does not read the latency, so the scores are
those ``run.sh`` gives. Run it from the repository root, so the page shows the weights path
relative. Synthetic videos only (``train.synth``): never faces from ``../shared``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def shipped_scorer(syncnet: str | None):
    """The scorer ``run.sh`` builds (default weights, runtime and device), with SyncNet on."""
    from submission.scoring import DetectorScorer

    scorer = DetectorScorer.from_weights("detector")
    if syncnet:
        scorer.preprocess_config = scorer.preprocess_config.replace("sync", weights=syncnet)
    return scorer


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
        scorer=shipped_scorer(args.syncnet),
    )
    if code != 0:
        return code
    if args.png:
        screenshot(args.out / "explain" / f"{args.page}.html", args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
