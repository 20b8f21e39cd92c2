"""CUDA paths of inference: fp32 against the CPU, fp16 against fp32, for the three networks; and
SyncNet pretraining in fp16 mixed precision.

CI has no GPU, so these skip there; on a GPU machine run ``pytest tests/test_gpu.py
tests/test_train_module.py`` (the latter then trains in bf16-mixed, ``auto_precision``).
The real-frame test needs ../shared (or ``AVDF_SHARED``).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from conftest import shared_media

from core.preprocess_config import PreprocessConfig
from models.fusion import FusionConfig, FusionModel
from models.runtimes import TorchRuntime
from models.syncnet import SyncNet
from preprocess.faces.detector import FaceDetector
from preprocess.media import decode

DEVICE = "cuda"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _fake_probability(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), dim=1)[:, 1].numpy()


@pytest.mark.parametrize("size", ["tiny", "base"])
def test_fusion_on_cuda_fp32_and_fp16(size):
    torch.manual_seed(0)
    model = FusionModel(FusionConfig.tiny() if size == "tiny" else FusionConfig.base()).eval()
    with torch.no_grad():  # logits of a trained model's magnitude, not ~0
        model.head.weight.normal_(0, 0.5)
    inputs = [t.numpy() for t in model.example_inputs(batch=8)]
    cpu = TorchRuntime(copy.deepcopy(model), "cpu")(*inputs)[0]
    fp16 = TorchRuntime(copy.deepcopy(model), DEVICE, fp16=True)(*inputs)[0]
    fp32 = TorchRuntime(model, DEVICE)(*inputs)[0]
    assert np.abs(fp32 - cpu).max() <= 1e-3 * max(1.0, float(np.abs(cpu).max()))
    # fp16 is what run.sh uses on CUDA: a submission's probabilities may move by a hair only
    assert np.abs(_fake_probability(fp16) - _fake_probability(fp32)).max() < 1e-2


def test_retinaface_on_cuda_finds_the_same_faces():
    cfg = PreprocessConfig()
    frames = decode(shared_media("real", "retalking_face_1.mp4"), cfg.media).frames[::25][:4]
    cpu = FaceDetector.from_weights(cfg.detector.weights, cfg.detector, "cpu").detect(frames)
    gpu = FaceDetector.from_weights(cfg.detector.weights, cfg.detector, DEVICE)
    fp32 = gpu.detect(frames)
    gpu.network = TorchRuntime(gpu.network.module, DEVICE, fp16=True)
    fp16 = gpu.detect(frames)
    assert all(len(c) == 1 for c in cpu)
    for c, a, b in zip(cpu, fp32, fp16, strict=True):
        assert len(a) == len(b) == len(c)
        assert np.abs(a.boxes - c.boxes).max() < 1.0  # pixels
        assert np.abs(b.boxes - c.boxes).max() < 3.0


def test_syncnet_distances_on_cuda_fp16():
    torch.manual_seed(0)
    net = SyncNet().eval()
    lips = (torch.rand(8, 3, 5, 224, 224) * 255).numpy()
    mfcc = (torch.randn(8, 1, 13, 20) * 10).numpy()
    cpu_lip, cpu_aud = TorchRuntime(copy.deepcopy(net), "cpu")(lips, mfcc)
    fp16_lip, fp16_aud = TorchRuntime(copy.deepcopy(net), DEVICE, fp16=True)(lips, mfcc)
    d_cpu = np.linalg.norm(cpu_lip - cpu_aud, axis=1)
    d_fp16 = np.linalg.norm(fp16_lip - fp16_aud, axis=1)
    assert np.abs(d_fp16 - d_cpu).max() < 2e-2 * d_cpu.max()


def test_sync_pretraining_on_cuda_in_mixed_precision_resumes(tmp_path):
    """``train sync-pretrain --device cuda --amp``: fp16 autocast with a live gradient scaler,
    the loss falls, the checkpoint holds the scaler and a resume continues to the end (prints
    the windows/s, for the README's GPU figure)."""
    from preprocess.audio import mfcc
    from train.sync_pretrain import SyncClip, SyncPretrainConfig, pretrain_syncnet
    from train.synth.samples import crop_square
    from train.synth.videos import generate_videos

    clips = []
    for v in generate_videos(5, seconds=1.0, seed=4):
        faces = np.stack([crop_square(f, b, 0.4, 224) for f, b in zip(v.frames, v.boxes, strict=True)])
        clips.append(SyncClip(v.filename, faces, v.audio, mfcc(v.audio, v.sample_rate), v.sample_rate))
    cfg = SyncPretrainConfig(
        epochs=10, batch_size=2, eval_clips=1, eval_shifts=(0, 6), device=DEVICE, amp=True, log_every=4
    )
    first = pretrain_syncnet(None, None, cfg, clips=clips, progress=False, checkpoint=tmp_path / "ck.pt")
    assert first.precision == "fp16" and first.loss_last < first.loss_first
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert state["step"] == 20 and state["scaler"]["scale"] > 0
    longer = dataclasses.replace(cfg, epochs=12)
    resumed = pretrain_syncnet(
        None,
        None,
        longer,
        clips=clips,
        progress=False,
        checkpoint=tmp_path / "ck.pt",
        resume=tmp_path / "ck.pt",
    )
    assert resumed.steps == 24 and resumed.steps_this_run == 4
    print(
        f"sync pretraining on {torch.cuda.get_device_name()}: {first.windows_per_second:.1f} windows/s (batch 2)"
    )
