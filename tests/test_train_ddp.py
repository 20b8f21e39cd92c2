"""Distributed training: ``python -m train fit --devices 2 --strategy ddp`` on CPU (gloo), each
rank writing its own record (``--record-ranks``). Two ranks train one model — identical final
weights, disjoint shards of every epoch, metrics over both shards — and rank 0 alone writes
the run's files. Then the learning test's recipe, under DDP, still learns."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from core.preprocess_config import PreprocessConfig
from core.threads import BUDGET_ENV_VAR, THREAD_ENV_VARS, available_cpus, rank_threads
from models.mesonet import Meso4, MesoConfig
from train.data import BALANCE_MODES, ManifestDataModule
from train.evaluate import load_scoring_model, score_manifest
from train.metrics import log_loss, roc_auc
from train.rank_record import state_digest
from train.synth.samples import samples_from_videos, write_sample_cache
from train.synth.videos import generate_videos

ROOT = Path(__file__).resolve().parents[1]
CROP = 32
MODEL = f"meso4:img_size={CROP},num_frames=2"  # BatchNorm (buffers DDP must keep equal) and dropout
EPOCH_SIZE, BATCH, EPOCHS = 16, 4, 2  # per epoch 2 ranks x 2 steps x 4 samples


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """30 synthetic videos (one face each); one validation video dropped so the validation
    split is odd and the DistributedSampler pads a shard with a repeat."""
    cfg = PreprocessConfig().replace("sample", num_frames=2)
    pairs = samples_from_videos(
        generate_videos(30, seconds=0.12, seed=7, categories=["face_blend"]), cfg, crop_size=CROP
    )
    dropped = next(v.filename for v, _ in pairs if v.split == "val")
    pairs = [(v, s) for v, s in pairs if v.filename != dropped]
    return write_sample_cache(pairs, tmp_path_factory.mktemp("ddp_cache"), cfg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_fit(
    manifest: Path, out: Path, *extra: str, timeout: float = 1200, thread_env: bool = True
) -> subprocess.CompletedProcess:
    """``python -m train fit`` on 2 CPU processes; Lightning starts rank 1 itself (a second
    ``python -m train fit``). Its own session, so a stuck run is killed with every rank.
    ``thread_env``: one thread per rank through the environment; else none set there, and
    ``train fit`` shares the cores between its ranks itself (``ShareCoresAcrossRanks``)."""
    # with MKL at 2 threads (what an in-process run.sh leaves in os.environ), two ranks on
    # 2 cores spin against each other, 5x slower: never inherit the test process's settings
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV_VARS}
    env[BUDGET_ENV_VAR] = "1"
    if thread_env:
        env.update(dict.fromkeys(THREAD_ENV_VARS, "1"))
    env.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
    cmd = [sys.executable, "-m", "train", "fit", "--manifest", str(manifest), "--out", str(out)]
    cmd += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--num-workers", "0"]
    cmd += ["--record-ranks", "--quiet", *extra]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        pytest.fail(f"DDP fit did not finish in {timeout} s:\n{stdout[-4000:]}")
    assert proc.returncode == 0, stdout[-4000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout)


def read_records(out: Path) -> list[dict]:
    records = [json.loads((out / "ranks" / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(r["rank"], r["world_size"]) for r in records] == [(0, 2), (1, 2)]
    return records


def metric_rows(out: Path) -> list[dict]:
    (metrics,) = (out / "logs" / "csv").glob("version_*/metrics.csv")
    with open(metrics, newline="") as f:
        return list(csv.DictReader(f))


def data_module(manifest: Path, **changes) -> ManifestDataModule:
    params = dict(batch_size=BATCH, epoch_size=EPOCH_SIZE, augment=None)
    params.update(changes)
    return ManifestDataModule(manifest, Meso4, MesoConfig(img_size=CROP, num_frames=2), **params)


@pytest.fixture(scope="module")
def ddp_run(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_run")
    extra = ["--model", MODEL, "--optimizer", "adamw", "--lr", "1e-3", "--batch-size", str(BATCH)]
    extra += ["--epoch-size", str(EPOCH_SIZE), "--epochs", str(EPOCHS), "--log-every", "1"]
    proc = run_fit(cache, out, *extra, thread_env=False)
    return out, proc.stdout, read_records(out)


def test_cpu_ranks_share_the_cores(ddp_run):
    """No thread settings in the environment: each of the 2 ranks takes half the cores."""
    _, _, records = ddp_run
    assert [r["torch_threads"] for r in records] == [max(1, available_cpus() // 2)] * 2


def test_rank_threads_split_the_cores_unless_one_process_or_the_user_decides():
    assert rank_threads(16, 4, {}) == 4
    assert rank_threads(2, 2, {}) == 1
    assert rank_threads(2, 4, {}) == 1  # never 0
    assert rank_threads(16, 1, {}) is None  # one process: torch's own choice
    assert rank_threads(16, 4, {"OMP_NUM_THREADS": "2"}) is None  # the user's choice is kept
    assert rank_threads(16, 4, {"OMP_NUM_THREADS": ""}) == 4


def test_both_ranks_end_with_the_checkpointed_weights(ddp_run):
    out, _, (r0, r1) = ddp_run
    assert r0["state_digest"] == r1["state_digest"]
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state_digest(last["state_dict"]) == r0["state_digest"]
    # the ranks did train, each on its own losses (different samples)
    steps = EPOCHS * EPOCH_SIZE // (2 * BATCH)
    assert len(r0["train_losses"]) == len(r1["train_losses"]) == steps
    assert r0["train_losses"] != r1["train_losses"]


def test_each_rank_reads_its_own_shard_of_one_draw_per_epoch(ddp_run, cache):
    _, _, (r0, r1) = ddp_run
    # the same balanced sampler in one process, drawn epoch after epoch: the ranks split each draw
    sampler = data_module(cache).train_dataloader().sampler
    for epoch in range(EPOCHS):
        draw = list(sampler)
        a, b = r0["train_indices"][epoch], r1["train_indices"][epoch]
        assert len(a) == len(b) == EPOCH_SIZE // 2
        assert Counter(a) + Counter(b) == Counter(draw), f"epoch {epoch}"
    assert r0["train_indices"][0] != r1["train_indices"][0]
    # validation: every sample once, the odd one out repeated to pad a shard
    n_val = len(data_module(cache).entries("val"))
    assert n_val % 2 == 1
    for a, b in zip(r0["val_indices"], r1["val_indices"], strict=True):
        assert len(a) == len(b) == math.ceil(n_val / 2)
        assert set(a) | set(b) == set(range(n_val)) and len(set(a) & set(b)) == 1


def test_logged_metrics_are_over_both_ranks(ddp_run, cache):
    out, _, (r0, r1) = ddp_run
    rows = metric_rows(out)
    # training: each step's train_loss is the mean of the two ranks' own losses
    logged = [float(r["train_loss"]) for r in rows if r["train_loss"]]
    means = [(a + b) / 2 for a, b in zip(r0["train_losses"], r1["train_losses"], strict=True)]
    assert logged == pytest.approx(means, abs=1e-6)
    # validation: the last epoch's metrics equal the evaluation code's over the whole split,
    # scored in this process from the final checkpoint, and not rank 0's shard alone
    val = [r for r in rows if r["val_log_loss"]][-1]
    model = load_scoring_model(checkpoint=out / "checkpoints" / "last.ckpt")
    scores = score_manifest(model, cache, ["val"])["val"]
    entries = data_module(cache).entries("val")
    label = {e.video: e.label for e in entries}
    names = sorted(scores)
    assert len(names) == len(entries)
    whole = log_loss([label[n] for n in names], [scores[n] for n in names])
    assert float(val["val_log_loss"]) == pytest.approx(whole, abs=1e-5)
    assert float(val["val_auc"]) == pytest.approx(
        roc_auc([label[n] for n in names], [scores[n] for n in names])
    )
    shard = sorted({entries[i].video for i in r0["val_indices"][-1]})
    rank0_only = log_loss([label[n] for n in shard], [scores[n] for n in shard])
    assert abs(rank0_only - whole) > 1e-3


def test_rank_zero_alone_writes_the_run(ddp_run):
    out, stdout, _ = ddp_run
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    (events,) = [f for f in files if "tfevents" in f]
    assert files == sorted(
        [
            "checkpoints/best.ckpt",
            "checkpoints/last.ckpt",
            "fit_config.json",
            "logs/csv/version_0/hparams.yaml",
            "logs/csv/version_0/metrics.csv",
            events,
            "logs/tb/version_0/hparams.yaml",
            "ranks/rank0.json",
            "ranks/rank1.json",
        ]
    )
    assert events.startswith("logs/tb/version_0/")
    assert json.loads((out / "fit_config.json").read_text())["devices"] == 2
    for name in ("best", "last"):
        ckpt = torch.load(out / "checkpoints" / f"{name}.ckpt", map_location="cpu", weights_only=True)
        assert ckpt["state_dict"] and ckpt["global_step"] > 0
    assert stdout.count("best checkpoint:") == 1  # rank 1 prints nothing of its own


@pytest.mark.parametrize("balance", BALANCE_MODES)
@pytest.mark.parametrize("epoch_size", [None, EPOCH_SIZE])
def test_every_balance_mode_shards_under_ddp(cache, balance, epoch_size):
    """Each rank's training loader as Lightning rewrites it for 2 processes (the function the
    Trainer calls): half an epoch each, together one epoch of what one process would draw."""
    from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler

    def loader():
        return data_module(cache, balance=balance, epoch_size=epoch_size).train_dataloader()

    single = loader().sampler
    size = len(single)
    shards = [
        _get_distributed_sampler(loader(), shuffle=True, overfit_batches=0, num_replicas=2, rank=r, seed=0)
        for r in range(2)
    ]
    for epoch in range(2):
        for s in shards:
            s.set_epoch(epoch)
        a, b = (list(s) for s in shards)
        assert len(a) == len(b) == math.ceil(size / 2)
        if epoch_size is None and balance in ("loss", "none"):  # a shuffle: a permutation, split
            assert sorted(set(a) | set(b)) == list(range(size)) and len(a) + len(b) - size == len(
                set(a) & set(b)
            )
        else:  # one weighted draw, split
            assert Counter(a) + Counter(b) == Counter(list(single))


def test_digest_sees_one_ulp():
    """What makes the weight check fail: any rank off by a single bit in one weight."""
    model = Meso4(MesoConfig(img_size=CROP, num_frames=2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = state_digest(state)
    w = next(v for v in state.values() if v.is_floating_point())
    w.view(-1)[0] = torch.nextafter(w.view(-1)[0], torch.tensor(math.inf))
    assert state_digest(state) != before


def test_learning_recipe_learns_under_ddp(face_blend_cache, tmp_path):
    """test_train_module's learning run on 2 ranks: the same effective batch (8 per rank x 2)
    and step count, so the same recipe; the held-out AUC must clear the same bar."""
    from held_out import held_out_auc
    from test_train_module import LEARN_AUC, LEARN_STEPS
    from test_train_module import MODEL as LEARN_MODEL

    model = tmp_path / "model.json"
    model.write_text(json.dumps(LEARN_MODEL.to_dict()))
    out = tmp_path / "run"
    recipe = ["--model", str(model), "--optimizer", "adamw", "--lr", "1e-3", "--scheduler", "cosine"]
    recipe += ["--warmup-steps", "30", "--no-augment", "--patience", "0", "--batch-size", "8"]
    recipe += ["--epoch-size", str(16 * 25), "--epochs", str(LEARN_STEPS // 25)]
    run_fit(face_blend_cache, out, *recipe)
    r0, r1 = read_records(out)
    assert r0["state_digest"] == r1["state_digest"]
    assert len(r0["train_losses"]) == LEARN_STEPS
    auc, videos, _ = held_out_auc(out / "checkpoints" / "best.ckpt", face_blend_cache)
    print(f"held-out AUC {auc:.3f} after {LEARN_STEPS} steps on 2 ranks")
    assert auc >= LEARN_AUC, f"test AUC {auc:.3f} after {LEARN_STEPS} steps on 2 ranks"
