"""Scoring without torch (the submission image installs requirements.txt, which has none, nor
librosa, numba, scikit-learn, SciPy or OpenCV): the shipped default scores real clips on ONNX
Runtime with only requirements.txt's packages importable and gives the probabilities the full
install gives; every path that needs torch stops with a message naming the file or option and
what to do.
The other packages are hidden in subprocesses by tests/scoring_only (its sitecustomize)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_media

ROOT = Path(__file__).resolve().parents[1]
SCORING_ONLY = Path(__file__).parent / "scoring_only"
# a 224² crop, a GRID mpg, a generated talking head: three decoders and face sizes
CLIPS = (
    "real/pcavs_Pose_Source_620900105.mp4",
    "real/lipnet_GRID_bbaf2n.mpg",
    "fake/sadtalker_art_2__RD_Radio31_000.mp4",
)
# Detection without torch is bit-exact (the same resize bytes, the same ONNX graph, the same
# float32 decoding and NMS: tests/test_resize.py); the probabilities agree far inside this.
TOLERANCE = 1e-4


def run(args: list[str], scoring_only: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if scoring_only:
        env["PYTHONPATH"] = os.pathsep.join([str(SCORING_ONLY), str(ROOT)])
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )


def probabilities(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        return {row[0]: [float(v) for v in row[1:]] for row in list(csv.reader(f))[1:]}


def test_only_the_scoring_packages_are_importable():
    check = (
        "import importlib.util as u;"
        "assert all(u.find_spec(m) for m in ('numpy', 'av', 'onnxruntime', 'safetensors', 'tqdm'));"
        "assert not any(u.find_spec(m) for m in ('scipy', 'cv2', 'librosa', 'numba', 'sklearn', 'PIL', 'lightning'));"
        "assert u.find_spec('torch') is None; import torch"
    )
    proc = run(["-c", check], scoring_only=True)
    assert proc.returncode == 1 and "No module named 'torch'" in proc.stderr, proc.stderr


@pytest.mark.slow
@pytest.mark.shared
def test_default_scoring_without_torch_gives_the_same_probabilities(tmp_path):
    inp = tmp_path / "input"
    inp.mkdir()
    for rel in CLIPS:
        (inp / Path(rel).name).symlink_to(shared_media(*rel.split("/")))
    results = {}
    for hide in (False, True):
        out = tmp_path / ("without_torch" if hide else "with_torch") / "submission.csv"
        cmd = [
            "-m",
            "submission",
            "--input",
            str(inp),
            "--output",
            str(out),
            "--no-progress",
            "--workers",
            "1",
        ]
        proc = run(cmd, scoring_only=hide)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "on onnxruntime/cpu" in proc.stderr  # both members, in both installs
        results[hide] = (probabilities(out), probabilities(out.with_name("submission_members.csv")))
    for with_torch, without in zip(results[False], results[True], strict=True):
        assert sorted(with_torch) == sorted(without) == sorted(Path(c).name for c in CLIPS)
        for video, values in with_torch.items():
            np.testing.assert_allclose(without[video], values, atol=TOLERANCE, rtol=0, err_msg=video)


@pytest.mark.shared
def test_a_real_clip_scores_without_scipy_or_opencv(tmp_path):
    """The image has neither (requirements.txt): decoding, detection, tracking, crops, audio
    features and both detectors of the default run with them unimportable, so a stray
    ``import cv2`` or ``import scipy`` on the scoring path fails here, without Docker."""
    inp = tmp_path / "input"
    inp.mkdir()
    (inp / "clip.mpg").symlink_to(shared_media("real", "lipnet_GRID_bbaf2n.mpg"))
    out = tmp_path / "submission.csv"
    script = (
        "import sys, runpy;"
        "from importlib.util import find_spec;"
        "assert find_spec('cv2') is None and find_spec('scipy') is None, 'not hidden';"
        "sys.argv = ['submission', '--input', sys.argv[1], '--output', sys.argv[2], '--no-progress', '--workers', '1'];"
        "runpy.run_module('submission', run_name='__main__');"
    )
    proc = run(["-c", script, str(inp), str(out)], scoring_only=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "No module named" not in proc.stderr
    (probability,) = probabilities(out)["clip.mpg"]
    assert 0.0 < probability < 1.0
    assert probabilities(out.with_name("submission_failures.csv")) == {}  # scored, no fallback
    assert len(probabilities(out.with_name("submission_members.csv"))["clip.mpg"]) == 2


def test_the_image_check_passes_without_torch():
    proc = run(["-m", "submission", "--check", "--device", "cpu"], scoring_only=True)
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime/cpu" in proc.stderr and "check passed" in proc.stderr


def test_paths_that_need_torch_say_so(tmp_path):
    proc = run(["-m", "submission", "--check", "--runtime", "torch"], scoring_only=True)
    assert proc.returncode == 2, proc.stderr
    assert "--runtime torch needs torch" in proc.stderr and "requirements-train.txt" in proc.stderr
    assert "--runtime auto or onnxruntime" in proc.stderr and "Traceback" not in proc.stderr

    # weights exported without their ONNX file: torch would run the tensors
    for suffix in (".safetensors", ".json"):
        shutil.copy(ROOT / "weights" / f"detector{suffix}", tmp_path / f"detector{suffix}")
    proc = run(["-m", "submission", "--check", "--weights", str(tmp_path / "detector")], scoring_only=True)
    assert proc.returncode == 2, proc.stderr
    assert f"{tmp_path / 'detector.safetensors'} has no ONNX export (detector.onnx is absent)" in proc.stderr
    assert "python -m train export --from-weights" in proc.stderr and "Traceback" not in proc.stderr

    # training needs torch: its entry point says what to install
    proc = run(["-m", "train", "--help"], scoring_only=True)
    assert proc.returncode == 1 and "lacks torch" in proc.stderr and "make setup" in proc.stderr


def test_syncnet_without_torch_runs_its_onnx_export(tmp_path):
    """SyncNet is off in the default's preprocessing; weights that switch it on score without
    torch when its ONNX export is there, with the embeddings torch computes."""
    from preprocess.latency import SyncNetScorer

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (12, 224, 224, 3), dtype=np.uint8)
    mfcc = rng.normal(size=(13, 48)).astype(np.float32)
    np.save(tmp_path / "faces.npy", faces)
    np.save(tmp_path / "mfcc.npy", mfcc)
    script = (
        "import sys, numpy as np; from preprocess.latency import SyncNetScorer;"
        "from models.runtimes import OnnxRuntimeRuntime; d = sys.argv[1];"
        "s = SyncNetScorer.from_weights('syncnet'); assert isinstance(s.runtime, OnnxRuntimeRuntime);"
        "lip, aud, _ = s.embed(np.load(d + '/faces.npy'), np.load(d + '/mfcc.npy'));"
        "np.save(d + '/lip.npy', lip); np.save(d + '/aud.npy', aud); print(s.valid_only)"
    )
    proc = run(["-c", script, str(tmp_path)], scoring_only=True)
    assert proc.returncode == 0, proc.stderr
    reference = SyncNetScorer.from_weights("syncnet")
    assert proc.stdout.strip() == str(reference.valid_only)
    lip, aud, _ = reference.embed(faces, mfcc)
    np.testing.assert_allclose(np.load(tmp_path / "lip.npy"), lip, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "aud.npy"), aud, atol=1e-4)

    for suffix in (".safetensors", ".json"):  # no ONNX export beside these
        shutil.copy(ROOT / "weights" / f"syncnet{suffix}", tmp_path / f"syncnet{suffix}")
    script = f"from preprocess.latency import SyncNetScorer; SyncNetScorer.from_weights({str(tmp_path / 'syncnet')!r})"
    proc = run(["-c", script], scoring_only=True)
    assert proc.returncode == 1 and "TorchMissing" in proc.stderr and "syncnet.onnx is absent" in proc.stderr
