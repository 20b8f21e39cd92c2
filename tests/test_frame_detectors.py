"""The frame detectors (MesoNet-4, MesoInception-4, EfficientNet-B0 per frame, EfficientNet + LSTM):
their layouts, how frames become a sample's logit, ONNX parity, and scoring from the weights alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from submission_fakes import fake_sample

from core.preprocess_config import PreprocessConfig
from models.detector import DetectorModel
from models.efficientnet_frames import EfficientNetFrames
from models.efficientnet_lstm import EfficientNetLSTM
from models.mesonet import Meso4, MesoConfig, MesoInception4
from models.mobilenet_frames import MobileNetFrames, MobileNetFramesConfig
from models.onnx_export import export_onnx
from models.registry import create_model, load_model
from submission.scoring import DetectorScorer
from weights.store import load_weights, save_weights

TINY_EFFICIENTNET = {"channel_multiplier": 0.25, "depth_multiplier": 0.34}
TINY = {  # arch → a config small enough for a CPU test
    "meso4": {"num_frames": 3, "img_size": 64},
    "mesoinception4": {"num_frames": 3, "img_size": 64},
    "efficientnet_b0": {"num_frames": 3, "img_size": 64, **TINY_EFFICIENTNET},
    "efficientnet_lstm": {"num_frames": 3, "img_size": 64, "lstm_hidden": 16, **TINY_EFFICIENTNET},
    "mobilenetv2_frames": {"num_frames": 3, "img_size": 64},
}


def tiny(arch: str, seed: int = 0) -> DetectorModel:
    torch.manual_seed(seed)
    model = create_model(arch, **TINY[arch]).eval()
    with torch.no_grad():  # trained-looking BatchNorm statistics, so eval mode is not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def faces_sample(rng: np.random.Generator, name: str, frames: int = 4, size: int = 96):
    sample = fake_sample(name, 0, 0, 1)
    sample.faces = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    return sample


def test_mesonets_have_the_published_parameter_counts():
    """Afchar et al. 2018 report 27,977 and 28,615 trainable parameters at 256×256."""
    count = {
        arch: sum(p.numel() for p in create_model(arch).parameters()) for arch in ("meso4", "mesoinception4")
    }
    assert count == {"meso4": 27_977, "mesoinception4": 28_615}
    assert MesoInception4().features[0][0].out_channels == 11  # inception(1, 4, 4, 2)
    assert Meso4().head.fc1.in_features == 16 * 8 * 8
    with pytest.raises(ValueError, match="multiple of 32"):
        MesoConfig(img_size=100)


@pytest.mark.parametrize("arch", sorted(TINY))
def test_configs_round_trip_and_forward_one_logit_per_sample(arch):
    model = tiny(arch)
    config = type(model.config).from_dict(json.loads(json.dumps(model.config.to_dict())))
    assert config == model.config
    (frames,) = model.example_inputs(2)
    assert frames.shape == (2, 3, 3, 64, 64)
    with torch.no_grad():
        logits = model(frames)
    assert logits.shape == (2, 1) and torch.isfinite(logits).all()
    assert not torch.allclose(logits[0], logits[1])  # the frames matter
    with pytest.raises(ValueError, match=r"frames must be \(B, 3, 3, 64, 64\)"):
        model(frames[:, :2])


@pytest.mark.parametrize("arch", ["meso4", "mesoinception4", "efficientnet_b0", "mobilenetv2_frames"])
def test_per_frame_detectors_average_their_frame_logits(arch):
    model = tiny(arch)
    (frames,) = model.example_inputs(2, seed=3)
    with torch.no_grad():
        whole = model(frames)
        reordered = model(frames[:, [2, 0, 1]])
        single = torch.stack([model(frames[:, [t, t, t]]) for t in range(3)]).mean(0)
    torch.testing.assert_close(whole, reordered, atol=1e-5, rtol=1e-5)  # order does not matter
    torch.testing.assert_close(whole, single, atol=1e-5, rtol=1e-5)  # the mean of each frame's logit


def test_the_lstm_reads_the_frames_in_order():
    model = tiny("efficientnet_lstm")
    with torch.no_grad():  # an untrained LSTM barely moves: make its input weights count
        model.lstm.weight_ih_l0.mul_(20)
        model.head.weight.mul_(10)
        (frames,) = model.example_inputs(2, seed=3)
        forward, backward = model(frames), model(frames.flip(1))
        other = model(model.example_inputs(2, seed=4)[0])
    assert (forward - backward).abs().max() > 0.05 * (forward - other).abs().max() > 0


def test_sample_inputs_pick_resize_and_normalise():
    rng = np.random.default_rng(0)
    sample = faces_sample(rng, "clip.mp4", frames=5, size=96)
    meso = Meso4.sample_inputs(sample, MesoConfig(num_frames=3, img_size=64))["frames"]
    assert meso.shape == (3, 3, 64, 64) and meso.dtype == np.float32
    assert meso.min() >= 0.0 and meso.max() <= 1.0  # the paper's 1/255 scaling
    config = create_model("efficientnet_b0", **TINY["efficientnet_b0"]).config
    eff = EfficientNetFrames.sample_inputs(sample, config)["frames"]
    assert eff.shape == (3, 3, 64, 64) and eff.min() < -1.0  # ImageNet mean/std
    # evenly spaced crops: first, middle, last of five
    first = sample.faces[0].astype(np.float32).mean() / 255
    np.testing.assert_allclose(meso[0].mean(), first, atol=0.02)
    with pytest.raises(ValueError, match=r"clip\.mp4: faces must be"):
        Meso4.sample_inputs(faces_sample(rng, "clip.mp4", frames=0), MesoConfig())


@pytest.mark.parametrize("arch", sorted(TINY))
def test_onnx_export_matches_torch(arch, tmp_path):
    from train.export import onnx_difference

    model = tiny(arch)
    path = export_onnx(model, tmp_path / f"{arch}.onnx")
    assert onnx_difference(model, path, batch=3) <= 1e-4  # another batch size than the export's


@pytest.mark.parametrize("arch", sorted(TINY))
def test_scored_from_the_weights_alone_on_every_runtime(arch, tmp_path):
    """The weights' JSON names the model; torch and ONNX Runtime give the same probabilities."""
    model = tiny(arch, seed=1)
    pre = PreprocessConfig().replace("sample", num_frames=4)
    save_weights(tmp_path / arch, model.state_dict(), arch, model.config.to_dict(), pre.to_dict())
    export_onnx(model, tmp_path / f"{arch}.onnx")
    loaded = load_model(tmp_path / arch)
    assert type(loaded.module) is type(model) and loaded.preprocess == pre
    rng = np.random.default_rng(2)
    samples = [faces_sample(rng, f"v{i}.mp4") for i in range(5)]
    probs = {}
    for runtime in ("torch", "onnxruntime"):
        scorer = DetectorScorer.from_weights(tmp_path / arch, runtime=runtime, batch_size=2)
        assert scorer.runtime.name == runtime and scorer.video_aggregation == "max"
        probs[runtime] = scorer.score(samples)
    assert probs["torch"].shape == (5,) and np.ptp(probs["torch"]) > 0
    np.testing.assert_allclose(probs["onnxruntime"], probs["torch"], atol=1e-5)


def test_every_frame_detector_is_a_registered_detector():
    for cls in (Meso4, MesoInception4, EfficientNetFrames, EfficientNetLSTM, MobileNetFrames):
        assert issubclass(cls, DetectorModel) and cls.input_names == ("frames",)
        assert create_model(cls.arch).__class__ is cls
    with pytest.raises(ValueError, match="no upstream-checkpoint converter"):
        Meso4().init_from_upstream("meso4.h5")


def test_mobilenet_frames_reads_the_face_region_and_starts_from_the_face_detector(tmp_path):
    """The default detector's frames are the face square of the crop; its body loads from the
    RetinaFace-MobileNetV2 weights the setup builds, and the frozen part stays in eval mode."""
    sample = faces_sample(np.random.default_rng(0), "clip.mp4", frames=2, size=224)
    sample.faces[:, :, :16] = 0  # outside the default region (x 16..208): must not be read
    sample.faces[:, :, 208:] = 0
    cfg = MobileNetFramesConfig(num_frames=2, img_size=64)
    frames = MobileNetFrames.sample_inputs(sample, cfg)["frames"]
    assert frames.shape == (2, 3, 64, 64)
    assert frames[:, :, :, 0].min() > (0 - 123.675) / 58.395 + 0.5  # no black border came in
    with pytest.raises(ValueError, match="square inside the crop"):
        MobileNetFramesConfig(region=(0.5, 0.0, 0.6))
    model = MobileNetFrames(cfg)
    upstream = load_weights("retinaface_mobilenetv2").state_dict  # built by make setup
    model.init_from_upstream("retinaface_mobilenetv2")
    for key, value in model.body.state_dict().items():
        torch.testing.assert_close(value, upstream[f"body.{key}"])
    model.train()
    assert (
        not model.body.stem.training and not model.body.blocks[5].training and model.body.blocks[6].training
    )
    assert not any(p.requires_grad for p in model.body.blocks[5].parameters())
    save_weights(tmp_path / "other", {"x": torch.zeros(1)}, "meso4", {}, None)
    with pytest.raises(ValueError, match="not a RetinaFace-MobileNetV2"):
        model.init_from_upstream(str(tmp_path / "other"))
