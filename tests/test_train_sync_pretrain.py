"""SyncNet self-supervised pretraining: pairs, loss, shift evaluation, weights preprocessing loads;
for real corpora: speaker folders split by speaker, the device check, mixed precision, resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.device import require_device
from core.preprocess_config import PreprocessConfig
from models.syncnet import SyncNet, SyncNetConfig
from preprocess.audio import mfcc
from preprocess.latency import SyncNetScorer
from train.cli import main
from train.mixed_precision import MixedPrecision
from train.run_checkpoint import CheckpointError, load_checkpoint, save_atomically
from train.speaker_videos import speaker_videos, split_by_speaker
from train.sync_pretrain import (
    SyncClip,
    SyncPretrainConfig,
    contrastive_loss,
    draw_batch,
    pretrain_syncnet,
    shifted_mfcc,
)
from train.synth.samples import crop_square
from train.synth.videos import generate_videos


@pytest.fixture(scope="module")
def clips():
    """Three real synthetic clips cropped from their ground-truth boxes (no detector needed)."""
    out = []
    for v in generate_videos(3, seconds=0.6, seed=2):
        faces = np.stack([crop_square(f, b, 0.4, 224) for f, b in zip(v.frames, v.boxes, strict=True)])
        out.append(SyncClip(v.filename, faces, v.audio, mfcc(v.audio, v.sample_rate), v.sample_rate))
    return out


def test_contrastive_loss_rewards_close_positives_and_far_negatives():
    torch.manual_seed(0)
    lip = torch.randn(4, 16)
    near = lip + 0.01 * torch.randn(4, 16)
    far = lip + 100.0
    good = contrastive_loss(lip, near, far, margin=5.0)
    bad = contrastive_loss(lip, far, near, margin=5.0)
    assert good < 1.0 < bad


def test_batches_pair_windows_with_in_sync_and_shifted_audio(clips):
    cfg = SyncPretrainConfig(batch_size=3)
    lip, pos, neg = draw_batch(clips, cfg, np.random.default_rng(0))
    assert lip.shape == (3, 3, 5, 224, 224) and pos.shape == neg.shape == (3, 1, 13, 20)
    assert not torch.equal(pos, neg)
    assert float(lip.min()) >= 0 and float(lip.max()) <= 255  # raw BGR pixels, as SyncNet was trained


def test_shifted_audio_moves_mfcc_by_four_columns_per_frame(clips):
    clip, cfg = clips[0], PreprocessConfig()
    late = shifted_mfcc(clip, 3, cfg)
    early = shifted_mfcc(clip, -3, cfg)
    assert late.shape == early.shape == clip.mfcc.shape
    np.testing.assert_allclose(late[:, 13:-1], clip.mfcc[:, 1:-13], rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(early[:, 1:-13], clip.mfcc[:, 13:-1], rtol=1e-3, atol=1e-2)


def test_pretraining_writes_weights_preprocessing_loads(clips, tmp_path):
    torch.manual_seed(0)
    cfg = SyncPretrainConfig(steps=2, batch_size=2, eval_clips=1, eval_shifts=(0, 6), log_every=1)
    result = pretrain_syncnet(None, tmp_path / "syncnet", cfg, clips=clips, progress=False)
    assert result.steps == 2 and result.train_clips == 2 and result.eval_clips == 1
    assert np.isfinite([result.loss_first, result.loss_last]).all()
    assert result.before.trials == result.after.trials == 2
    assert [t for _, t, _ in result.after.found] == [0, -6]  # delayed audio: the search must answer -6
    scorer = SyncNetScorer.from_weights(result.weights)  # what preprocessing does with SyncConfig.weights
    lat = scorer.latency(clips[0].faces, clips[0].mfcc)
    assert lat.distances.shape == (31,) and np.isfinite(lat.distances).all()
    assert "shift recovery" in result.summary()


# --- real corpora: speaker folders, device, mixed precision, resume -----------------------------

SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "train" / "real"
needs_shared = pytest.mark.skipif(not SHARED_REAL.is_dir(), reason="needs ../shared/train (real clips)")
cuda_absent = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")


def speaker_folder(root: Path) -> Path:
    """A small corpus laid out as LRS2 (speaker/clip) and VoxCeleb2 (speaker/video/clip), of
    links to real clips of ../shared/train; every clip file is called 00001.mp4 or 00002.mp4."""
    layout = {
        "grid/00001.mpg": "grid_s1/bbaf3s.mpg",
        "grid/00002.mpg": "grid_s1/bbaf4p.mpg",
        "bbc_a/video1/00001.mp4": "lrs2/00001.mp4",
        "bbc_a/video2/00001.mp4": "lrs2/00002.mp4",
        "bbc_b/00001.mp4": "lrs2/00006.mp4",
        "loose.mp4": "lrs2/00008.mp4",  # in the root itself: a group of its own
    }
    for rel, src in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(SHARED_REAL / src)
    (root / "grid" / "notes.txt").write_text("not a video")
    return root


@needs_shared
def test_a_speaker_folder_is_read_recursively_and_split_by_speaker(tmp_path):
    root = speaker_folder(tmp_path / "main")
    videos = speaker_videos(root)
    assert {v.name: v.group for v in videos} == {
        "bbc_a/video1/00001.mp4": "bbc_a",
        "bbc_a/video2/00001.mp4": "bbc_a",
        "bbc_b/00001.mp4": "bbc_b",
        "grid/00001.mpg": "grid",
        "grid/00002.mpg": "grid",
        "loose.mp4": "loose.mp4",
    }
    splits = [split_by_speaker(videos, 2, seed) for seed in range(6)]
    for split in splits:
        assert not split.train_groups & split.held_out_groups  # no speaker on both sides
        assert sorted(v.name for v in split.train + split.held_out) == sorted(v.name for v in videos)
        assert len(split.held_out) >= 2 and split.train
        assert split == split_by_speaker(videos, 2, splits.index(split))  # seeded
    assert len({frozenset(s.held_out_groups) for s in splits}) > 1  # the seed picks the speakers
    assert split_by_speaker(videos, 0, 0).held_out == []
    one_speaker = [v for v in videos if v.group == "grid"]
    assert split_by_speaker(one_speaker, 2, 0).held_out == []  # nothing left to train on otherwise


def test_a_folder_without_videos_is_named_in_the_error(tmp_path):
    (tmp_path / "spk").mkdir()
    (tmp_path / "spk" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=f"{tmp_path}: no videos found"):
        speaker_videos(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing: no such folder"):
        speaker_videos(tmp_path / "missing")
    assert main(["sync-pretrain", str(tmp_path), "--device", "cpu", "--quiet"]) == 2


@needs_shared
def test_sync_pretrain_trains_on_a_speaker_folder_and_holds_out_whole_speakers(tmp_path, capsys):
    """The command a user with LRS2/LRS3/VoxCeleb runs, on a tiny corpus of real clips: it
    trains (mixed precision, device auto), writes weights and a checkpoint, and the clips it
    evaluates on belong to speakers it never trained on."""
    from weights.store import read_config

    root = speaker_folder(tmp_path / "main")
    argv = ["sync-pretrain", str(root), "--out", str(tmp_path / "syncnet"), "--steps", "2"]
    argv += ["--batch-size", "2", "--eval-clips", "1", "--max-frames", "30", "--device", "auto", "--amp"]
    argv += ["--checkpoint", str(tmp_path / "ck.pt"), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert MixedPrecision.for_device("cpu", True).name in printed and "windows/s" in printed
    extra = read_config(tmp_path / "syncnet")["extra"]
    assert len(extra["eval_clips"]) == 1

    def group(name: str) -> str:
        return name.split("/")[0]

    assert group(extra["eval_clips"][0]) not in {group(n) for n in extra["train_clips"]}
    assert (tmp_path / "ck.pt").is_file() and not (tmp_path / "ck.pt.tmp").exists()


@cuda_absent
def test_device_cuda_without_cuda_is_a_clear_error_and_auto_picks_the_cpu(tmp_path, capsys):
    assert require_device("auto") == "cpu"
    with pytest.raises(ValueError, match="--device cuda: CUDA is not available"):
        require_device("cuda")
    (tmp_path / "clip.mp4").write_bytes(b"")  # never opened: the device is checked first
    assert main(["sync-pretrain", str(tmp_path), "--device", "cuda", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error: --device cuda: CUDA is not available" in err and "Traceback" not in err


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_precision_trains_on_the_cpu(clips, seed):
    """bf16 autocast on the CPU: the forward passes run in bf16 and the loss falls (measured over
    10 steps, seeds 0-3: 319-348 -> 210-227, fp32 310-345 -> 206-224) — where this CPU computes
    bf16 gradients correctly; where it does not (``cpu_bf16_gradient_error``), --amp trains in
    fp32 and the loss still falls."""
    from train.mixed_precision import BF16_GRADIENT_TOLERANCE, cpu_bf16_gradient_error

    bf16_ok = cpu_bf16_gradient_error() <= BF16_GRADIENT_TOLERANCE
    precision = MixedPrecision.for_device("cpu", True)
    assert precision.name == ("bf16" if bf16_ok else "fp32")
    with MixedPrecision("cpu", torch.bfloat16).autocast():
        assert SyncNet().forward_aud(torch.randn(2, 1, 13, 20)).dtype == torch.bfloat16
    torch.set_num_threads(1)
    cfg = SyncPretrainConfig(steps=10, batch_size=2, eval_clips=0, seed=seed, amp=True, log_every=3)
    result = pretrain_syncnet(None, None, cfg, clips=clips, progress=False)
    assert result.precision == precision.name
    assert result.loss_last < 0.85 * result.loss_first, (result.loss_first, result.loss_last)


def test_amp_falls_back_to_fp32_where_the_cpu_gets_bf16_gradients_wrong(monkeypatch, caplog):
    import train.mixed_precision as mp

    assert mp.cpu_bf16_gradient_error(side=32) < 0.01  # small convolutions are right everywhere
    monkeypatch.setattr(mp, "cpu_bf16_gradient_error", lambda: 1e4)
    with caplog.at_level("WARNING", logger="train"):
        assert MixedPrecision.for_device("cpu", True).name == "fp32"
    assert "training in fp32" in caplog.text
    monkeypatch.setattr(mp, "cpu_bf16_gradient_error", lambda: 0.003)
    assert MixedPrecision.for_device("cpu", True).name == "bf16"
    assert MixedPrecision.for_device("cpu", False).name == "fp32"


@pytest.fixture(scope="module")
def five_clips():
    out = []
    for v in generate_videos(5, seconds=0.6, seed=4):
        faces = np.stack([crop_square(f, b, 0.4, 224) for f, b in zip(v.frames, v.boxes, strict=True)])
        out.append(SyncClip(v.filename, faces, v.audio, mfcc(v.audio, v.sample_rate), v.sample_rate))
    return out


def test_resuming_half_way_gives_the_weights_of_one_run(five_clips, tmp_path):
    """4 epochs in one go against 2 epochs, then a resume for 2 more (1 clip held out, 4 train:
    2 steps an epoch): the same weights, bit for bit, on the CPU."""
    torch.set_num_threads(1)
    cfg = SyncPretrainConfig(epochs=4, batch_size=2, eval_clips=1, eval_shifts=(0, 6), seed=3, log_every=1)
    whole = pretrain_syncnet(None, None, cfg, clips=five_clips, progress=False, checkpoint=tmp_path / "a.pt")
    half = replace(cfg, epochs=2)
    pretrain_syncnet(None, None, half, clips=five_clips, progress=False, checkpoint=tmp_path / "b.pt")
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 4
    resumed = pretrain_syncnet(
        None,
        None,
        cfg,
        clips=five_clips,
        progress=False,
        checkpoint=tmp_path / "b.pt",
        resume=tmp_path / "b.pt",
    )
    assert whole.steps == resumed.steps == 8 and resumed.steps_this_run == 4
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert (whole.loss_first, whole.loss_last) == (resumed.loss_first, resumed.loss_last)
    assert whole.before == resumed.before and whole.after == resumed.after
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 8


def test_resuming_another_architecture_or_configuration_fails_clearly(five_clips, tmp_path, capsys):
    from weights.store import save_weights

    small = SyncNet(SyncNetConfig(embed_dim=64))
    save_weights(tmp_path / "small", small.state_dict(), "syncnet", small.config.to_dict(), None)
    cfg = SyncPretrainConfig(steps=1, batch_size=2, eval_clips=0, init=str(tmp_path / "small"))
    pretrain_syncnet(None, None, cfg, clips=five_clips, progress=False, checkpoint=tmp_path / "small.pt")
    with pytest.raises(
        CheckpointError,
        match=r"small\.pt: .*another architecture.*model\.embed_dim: 64 in the checkpoint, 1024 now",
    ):
        pretrain_syncnet(None, None, replace(cfg, init=None), clips=five_clips, resume=tmp_path / "small.pt")
    with pytest.raises(CheckpointError, match=r"train\.batch_size: 2 in the checkpoint, 3 now"):
        pretrain_syncnet(
            None, None, replace(cfg, batch_size=3), clips=five_clips, resume=tmp_path / "small.pt"
        )
    with pytest.raises(CheckpointError, match="small.pt: the train clips differ from the checkpoint's"):
        pretrain_syncnet(None, None, cfg, clips=five_clips[1:], resume=tmp_path / "small.pt")
    # the command line says so before it reads a video
    (tmp_path / "clip.mp4").write_bytes(b"")
    argv = [
        "sync-pretrain",
        str(tmp_path),
        "--device",
        "cpu",
        "--resume",
        str(tmp_path / "small.pt"),
        "--quiet",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "another architecture or configuration" in err and "Traceback" not in err
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a sync_pretrain checkpoint"):
        pretrain_syncnet(None, None, cfg, clips=five_clips, resume=tmp_path / "other.pt")


def test_a_failed_checkpoint_write_leaves_the_previous_one_whole(tmp_path):
    path = save_atomically(tmp_path / "ck.pt", {"kind": "x", "step": 1})
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        save_atomically(path, {"kind": "x", "step": 2, "bad": lambda: None})
    assert load_checkpoint(path, "x")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
