"""Ray: ``core.ray_pool.RayPool`` and the ``--ray`` option of ``python -m preprocess`` and
``run.sh``, on a real local cluster.

The cluster is two Ray nodes on this machine: a head node and a second worker node, each with its
own GCS/raylet processes (``ray.cluster_utils.Cluster``, Ray's own multi-node harness) and one
CPU, so two tasks in flight run on different nodes. Everything listens and connects on
127.0.0.1. ``ray`` is an optional extra (``requirements-ray.txt``) that ``make setup`` installs;
these tests fail rather than skip without it, because CI must run them.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray_jobs
from conftest import ROOT, shared_media
from submission_fakes import FakePreprocessor

from core.isolated_pool import JobFailure, WorkerStartError
from core.preprocess_config import PreprocessConfig
from core.ray_pool import RayOptions, RayPool
from preprocess.cache_build import run_preprocess
from preprocess.datasets import load_dataset
from preprocess.sample_file import load_sample
from submission.cli import build_parser
from submission.preprocess_pool import PreprocessPool

TESTS = Path(__file__).resolve().parent
CFG = PreprocessConfig().replace("sample", num_frames=3)


@pytest.fixture(scope="module")
def cluster():
    """Head + one worker node on 127.0.0.1, one CPU each; torn down (its own processes) after."""
    saved = {k: os.environ.get(k) for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "PYTHONPATH")}
    # Ray gives a node the machine's network address; this switch (meant for single-machine
    # clusters on macOS/Windows) makes nodes and drivers use 127.0.0.1 instead. Read at import.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Worker processes inherit the raylets' environment: they import the test helpers from here.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(TESTS), saved["PYTHONPATH"]]))
    try:
        from ray.cluster_utils import Cluster
    except ImportError:
        pytest.fail("ray is not installed: `make setup` installs the optional extra requirements-ray.txt")
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 100 * 1024**2}
    started = time.monotonic()
    ray_cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    ray_cluster.add_node(**node)
    print(f"local Ray cluster of 2 nodes up in {time.monotonic() - started:.1f} s")
    try:
        yield ray_cluster
    finally:
        ray_cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def collect(pool, items) -> dict:
    out: dict = {}
    for index, value in pool.run(items):
        assert index not in out, f"job {index} reported twice"
        out[index] = value
    return out


# --- the pool -------------------------------------------------------------------------------------


def test_every_job_once_on_both_nodes_and_failures_stay_alone(cluster):
    items = ["a", "crash", "b", "hang", "raise", "c", "d", "e", "f"]
    # the clock runs from submission: it covers starting the worker process (seconds here)
    pool = RayPool(
        ray_jobs.make_state, ("t",), ray_jobs.run_job, RayOptions(cluster.address), kill_after=15.0
    )
    started = time.monotonic()
    out = collect(pool, items)
    assert time.monotonic() - started < 120
    assert sorted(out) == list(range(len(items)))
    assert out[1] == JobFailure("worker_crashed", out[1].detail) and "WorkerCrashedError" in out[1].detail
    assert out[3] == JobFailure("timeout", "stuck over 15 s; worker killed")
    assert out[4] == JobFailure("worker_error", "ValueError: bad item")
    good = [out[i] for i in (0, 2, 5, 6, 7, 8)]
    assert [name for name, _, _ in good] == ["t:a", "t:b", "t:c", "t:d", "t:e", "t:f"]
    assert len(pool.nodes) == 2 and {node for _, _, node in good} == pool.nodes  # both nodes worked
    assert pool.restarts == 2  # the crashed worker and the killed one


def test_an_init_that_fails_stops_the_run(cluster):
    pool = RayPool(ray_jobs.failing_init, ("x",), ray_jobs.run_job, RayOptions(cluster.address))
    with pytest.raises(WorkerStartError, match="weights x not found"):
        collect(pool, ["a", "b"])


def test_a_task_no_node_can_hold_is_refused(cluster):
    pool = RayPool(ray_jobs.make_state, ("t",), ray_jobs.run_job, RayOptions(cluster.address, gpus=1))
    with pytest.raises(WorkerStartError, match="fits one task"):
        collect(pool, ["a"])


# --- the submission's preprocessing pool on Ray ---------------------------------------------------


def test_submission_pool_on_ray_times_out_inside_and_kills_stuck_workers(cluster, tmp_path):
    log = tmp_path / "inits.txt"
    names = ["a_p10.mp4", "b_crash.mp4", "c_hang.mp4", "d_stuck.mp4", "e_p20_p30.mp4", "f_broken.mp4"]
    options = RayOptions(cluster.address, env={"FAKE_INIT_LOG": str(log)})
    pool = PreprocessPool(
        FakePreprocessor, PreprocessConfig(), video_timeout=1.0, startup_grace=15.0, ray=options
    )
    results = dict(pool.results([str(tmp_path / n) for n in names]))
    assert sorted(results) == list(range(len(names)))
    codes = [r.error.code if r.error else "ok" for _, r in sorted(results.items())]
    assert codes == ["ok", "worker_crashed", "timeout", "timeout", "ok", "decode_error"]
    assert "killed" in results[3].error.detail and "killed" not in results[2].error.detail  # SIGALRM
    assert [s.faces.flat[0] for s in results[4].samples] == [20, 30]
    # one preprocessor per worker process, not per video
    assert len(log.read_text().split()) <= 2 + pool.restarts


# --- python -m preprocess on Ray ---------------------------------------------------------------


def write_dataset(root: Path, names: dict[str, str]) -> Path:
    for rel in names:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"fake")
    return root


def test_cache_build_on_ray_writes_in_the_driver_and_resumes(cluster, tmp_path):
    data = write_dataset(
        tmp_path / "data", {"real/a_p10.mp4": "", "real/b_crash.mp4": "", "fake/c_p20_p30.mp4": ""}
    )
    items = load_dataset(data)
    cache = tmp_path / "cache"
    options = RayOptions(cluster.address)
    first = run_preprocess(
        items, cache, CFG, preprocessor_factory=FakePreprocessor, progress=False, ray=options
    )
    assert first.processed == 2 and dict(first.failed) == {"worker_crashed": 1}
    assert first.samples == 3 and first.pool_rebuilds == 1
    assert not list(cache.rglob(".*.tmp*"))  # atomic writes left nothing behind
    again = run_preprocess(
        items, cache, CFG, preprocessor_factory=FakePreprocessor, progress=False, ray=options
    )
    assert again.skipped == 2 and again.processed == 0  # the crashed one is tried again
    assert dict(again.failed) == {"worker_crashed": 1}


def test_nodes_with_other_weights_are_refused(cluster, tmp_path, monkeypatch):
    """The driver hashes its weights into the cache; a node that would load others stops the run."""
    items = load_dataset(write_dataset(tmp_path / "data", {"real/a_p10.mp4": ""}))
    node_weights = tmp_path / "node_weights"
    node_weights.mkdir()
    (node_weights / "syncnet.safetensors").write_bytes(b"not the driver's")
    options = RayOptions(cluster.address, env={"AVDF_WEIGHTS": str(node_weights)})
    from preprocess.cache_build import WorkerInitError

    with pytest.raises(WorkerInitError, match="weights differ from the driver's"):
        run_preprocess(
            items, tmp_path / "cache", CFG, preprocessor_factory=FakePreprocessor, progress=False, ray=options
        )


# --- real pipeline: the same cache and the same submission as the local pool ---------------------


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory) -> Path:
    """RetinaFace (the repository's, linked), a SyncNet with fixed random weights (no trained one
    ships) and a tiny random fusion model with a 1 s window (quick on CPU)."""
    import torch

    from models.fusion import FusionConfig, FusionModel
    from models.syncnet import ARCH, SyncNet, SyncNetConfig
    from weights.store import save_weights

    folder = tmp_path_factory.mktemp("weights")
    detector = PreprocessConfig().detector.weights
    for suffix in (".safetensors", ".json"):
        src = ROOT / "weights" / f"{detector}{suffix}"
        assert src.is_file(), f"{src} missing: run `make setup`"
        (folder / src.name).symlink_to(src)
    torch.manual_seed(0)
    save_weights(folder / "syncnet", SyncNet().state_dict(), ARCH, SyncNetConfig().to_dict(), None)
    cfg = FusionConfig.tiny()
    model = FusionModel(cfg).eval()
    pre = PreprocessConfig().replace("media", window_s=1.0).replace("sample", num_frames=cfg.num_frames)
    # under run.sh's default weights name, so the runs below need no --weights
    default = build_parser().get_default("weights")
    save_weights(folder / default, model.state_dict(), model.arch, cfg.to_dict(), pre.to_dict())
    return folder


@pytest.fixture(scope="module")
def real_videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    (root / "real").mkdir()
    (root / "fake").mkdir()
    (root / "real" / "talk1.mp4").symlink_to(shared_media("real", "pcavs_Pose_Source_620900105.mp4"))
    (root / "fake" / "talk2.mpg").symlink_to(shared_media("real", "lipnet_GRID_bbaf2n.mpg"))
    (root / "fake" / "broken.mp4").write_bytes(np.random.default_rng(1).bytes(4096))
    return root


def run_command(command: list[str], weights: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "AVDF_WEIGHTS": str(weights)}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def assert_same_sample(a, b):
    assert dataclasses.asdict(a.meta) == dataclasses.asdict(b.meta)
    for name in ("faces", "face_frame_indices", "boxes", "audio", "mfcc", "mel"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.frame_start == b.frame_start
    assert (a.latency is None) == (b.latency is None)
    if a.latency is not None:
        np.testing.assert_array_equal(a.latency.distances, b.latency.distances)
        np.testing.assert_array_equal(a.latency.frame_confidence, b.latency.frame_confidence)
        assert (a.latency.offset, a.latency.confidence) == (b.latency.offset, b.latency.confidence)


@pytest.mark.slow
def test_preprocess_cli_on_ray_makes_the_local_pools_cache(cluster, weights_folder, real_videos, tmp_path):
    base = [sys.executable, "-m", "preprocess", str(real_videos), "--no-progress", "--window", "1"]
    base += ["--num-frames", "4", "--video-timeout", "300"]
    local, remote = tmp_path / "local", tmp_path / "ray"
    run_command([*base, "--out", str(local), "--workers", "1", "--threads", "1"], weights_folder, ROOT)
    started = time.monotonic()
    done = run_command([*base, "--out", str(remote), "--ray", cluster.address], weights_folder, ROOT)
    print(f"preprocess on Ray: {time.monotonic() - started:.1f} s for 3 videos")
    assert "processed 2" in done.stderr
    rows = {r["filename"]: r for r in read_rows(local / "manifest.csv")}
    assert set(rows) == {"talk1.mp4", "talk2.mpg"}
    assert read_rows(remote / "manifest.csv") == read_rows(local / "manifest.csv")
    assert read_rows(remote / "failures.csv") == read_rows(local / "failures.csv")
    assert [r["filename"] for r in read_rows(remote / "failures.csv")] == ["broken.mp4"]
    for row in rows.values():
        a, b = load_sample(local / row["sample"]), load_sample(remote / row["sample"])
        assert a.latency is not None  # SyncNet ran (its weights are in the folder)
        assert_same_sample(a, b)
    assert (local / "preprocess_config.json").read_text() == (remote / "preprocess_config.json").read_text()

    again = run_command([*base, "--out", str(remote), "--ray", cluster.address], weights_folder, ROOT)
    assert "skipped 2" in again.stderr  # resumed: the finished videos are not sent to the cluster


@pytest.mark.slow
def test_run_sh_on_ray_scores_every_video(cluster, weights_folder, real_videos, tmp_path):
    """The samples are the local pool's (test above); here the driver's batched inference on them."""
    videos = tmp_path / "in"
    videos.mkdir()
    for path in real_videos.rglob("*"):
        if path.is_file():
            (videos / path.name).symlink_to(path)
    command = ["bash", str(ROOT / "run.sh"), str(videos), str(tmp_path / "out"), "--no-progress"]
    command += ["--extensions", "mp4,mpg", "--runtime", "torch", "--device", "cpu", "--ray", cluster.address]
    done = run_command(command, weights_folder, tmp_path)
    assert "Ray tasks" in done.stderr and "videos/min" in done.stderr
    rows = read_rows(tmp_path / "out" / "submission.csv")
    assert [r["filename"] for r in rows] == ["broken.mp4", "talk1.mp4", "talk2.mpg"]
    probs = [float(r["probability"]) for r in rows]
    assert probs[0] == 0.5 and all(0 < p < 1 and p != 0.5 for p in probs[1:])  # scored by the model
    failures = read_rows(tmp_path / "out" / "submission_failures.csv")
    assert [r["filename"] for r in failures] == ["broken.mp4"]
