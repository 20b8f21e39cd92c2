"""The frame detectors (MesoNet-4, MesoInception-4, EfficientNet-B0 per frame, EfficientNet + LSTM):
their layouts, how frames become a sample's logit, ONNX parity, and scoring from the weights alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT
from submission_fakes import fake_sample

from core.preprocess_config import PreprocessConfig
from models.detector import DetectorModel
from models.efficientnet_frames import EfficientNetFrames
from models.efficientnet_lstm import EfficientNetLSTM
from models.face_frames import PerFrameDetector
from models.mesonet import Meso4, MesoConfig, MesoInception4
from models.mobilenet_frames import MobileNetFrames, MobileNetFramesConfig
from models.onnx_export import export_onnx, onnx_io_names
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
        outputs = model(frames)
    outputs = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
    assert len(outputs) == len(model.output_names)
    logits = outputs[0]
    assert logits.shape == (2, 1) and torch.isfinite(logits).all()
    assert not torch.allclose(logits[0], logits[1])  # the frames matter
    with pytest.raises(ValueError, match=r"frames must be \(B, 3, 3, 64, 64\)"):
        model(frames[:, :2])


PER_FRAME = ["meso4", "mesoinception4", "efficientnet_b0", "mobilenetv2_frames"]


@pytest.mark.parametrize("arch", PER_FRAME)
def test_per_frame_detectors_average_their_frame_logits(arch):
    model = tiny(arch)
    (frames,) = model.example_inputs(2, seed=3)
    with torch.no_grad():
        whole, per_frame = model(frames)
        reordered, per_frame_reordered = model(frames[:, [2, 0, 1]])
        single = torch.stack([model(frames[:, [t, t, t]])[0] for t in range(3)]).mean(0)
        alone = torch.cat([model(frames[:, [t, t, t]])[1][:, :1] for t in range(3)], dim=1)
    torch.testing.assert_close(whole, reordered, atol=1e-5, rtol=1e-5)  # order does not matter
    torch.testing.assert_close(whole, single, atol=1e-5, rtol=1e-5)  # the mean of each frame's logit
    # frame_logits: frame t's own logit, in input order (a frame scored alone gives the same)
    assert per_frame.shape == (2, 3) and model.output_names == ("logits", "frame_logits")
    torch.testing.assert_close(per_frame, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_frame_reordered, per_frame[:, [2, 0, 1]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_frame.mean(1, keepdim=True), whole, atol=1e-6, rtol=1e-6)
    assert model.time_logits((whole, per_frame)) is per_frame
    assert model.time_logits((whole,)) is None  # an ONNX exported before frame_logits existed


@pytest.mark.parametrize("arch", PER_FRAME)
def test_time_columns_are_the_seconds_of_the_frames_sample_inputs_picks(arch):
    """Five crops at clip frames 0, 10, 20, 30, 40 of a 25 fps clip; three picked: first,
    middle, last, exactly as ``face_frames`` picks them (marked by brightness)."""
    model = tiny(arch)
    sample = faces_sample(np.random.default_rng(0), "clip.mp4", frames=5, size=96)
    sample.faces[:] = (np.arange(5) * 50)[:, None, None, None].astype(np.uint8)
    sample.face_frame_indices = np.array([0, 10, 20, 30, 40])
    sample.meta.fps = 25.0
    times = model.time_columns(sample, model.config)
    np.testing.assert_allclose(times, [0.0, 0.8, 1.6])
    frames = type(model).sample_inputs(sample, model.config)["frames"]
    brightness = frames.mean(axis=(1, 2, 3))
    assert np.all(np.diff(brightness) > 0) and len(brightness) == len(times)
    np.testing.assert_allclose(brightness, frames[[0, 1, 2]].mean(axis=(1, 2, 3)))
    # the brightness of each picked frame matches the crop at the time the column names
    picked = np.round(times * 25 / 10).astype(int)
    expected = type(model).sample_inputs(_only(sample, picked), model.config)["frames"].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(brightness, expected, rtol=1e-6)


def _only(sample, picked):
    import copy

    out = copy.deepcopy(sample)
    out.faces, out.face_frame_indices = sample.faces[picked], sample.face_frame_indices[picked]
    return out


class _MeanColour(PerFrameDetector):
    """A frame detector that writes only its features: each frame's mean colour."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.add_linear_head(3, dropout=0.5)

    def forward_features(self, frames):
        return frames.mean(dim=(2, 3))


def test_a_new_frame_detector_writes_only_its_features():
    """The base reshapes the frames, adds the head (dropout → linear) and returns the sample's
    logit (the mean over frames) and each frame's, in input order."""
    model = _MeanColour(MesoConfig(num_frames=3, img_size=64)).eval()
    (frames,) = model.example_inputs(2, seed=5)
    with torch.no_grad():
        logits, per_frame = model(frames)
        colours = frames.mean(dim=(3, 4))  # (B, T, 3)
        want = colours @ model.head.weight[0] + model.head.bias
    assert sorted(model.state_dict()) == ["head.bias", "head.weight"]
    torch.testing.assert_close(per_frame, want)
    torch.testing.assert_close(logits, want.mean(dim=1, keepdim=True))
    with pytest.raises(ValueError, match=r"frames must be \(B, 3, 3, 64, 64\)"):
        model(frames[:, :2])


def test_the_shipped_detector_computes_what_its_onnx_was_exported_from():
    """``weights/detector.safetensors`` loads strictly into today's module, which gives on fixed
    frames what the ``.onnx`` exported beside it (from the module as it was then) gives."""
    from models.runtimes import OnnxRuntimeRuntime

    weights = ROOT / "weights" / "detector"
    model = load_model(weights).module
    inputs = tuple(t.numpy() for t in model.example_inputs(3, seed=7))
    with torch.no_grad():
        torch_out = [t.numpy() for t in model(*(torch.from_numpy(x) for x in inputs))]
    onnx_out = OnnxRuntimeRuntime(weights.with_suffix(".onnx"), providers="cpu", threads=1)(*inputs)
    assert len(onnx_out) == len(torch_out) == 2
    for got, want in zip(onnx_out, torch_out, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.ptp(torch_out[0]) > 1e-3  # the frames matter


def test_the_lstm_has_no_time_outputs():
    model = tiny("efficientnet_lstm")
    sample = faces_sample(np.random.default_rng(0), "clip.mp4")
    assert model.output_names == ("logits",)
    assert model.time_columns(sample, model.config) is None
    assert model.time_logits(model.example_inputs(1)) is None


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
    assert onnx_io_names(path)[1] == list(model.output_names)  # frame_logits travels too
    assert onnx_difference(model, path, batch=3) <= 1e-4  # every output, another batch size


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


def test_export_from_weights_keeps_the_pair_and_writes_the_onnx(tmp_path):
    """``train export --from-weights``: the safetensors and JSON byte for byte, a fresh ONNX with
    both outputs, at the pair's own stem or another one."""
    from train.cli import main

    model = tiny("meso4", seed=1)
    save_weights(tmp_path / "m", model.state_dict(), "meso4", model.config.to_dict(), None)
    before = {s: (tmp_path / f"m{s}").read_bytes() for s in (".safetensors", ".json")}
    assert main(["export", "--from-weights", str(tmp_path / "m")]) == 0
    assert main(["export", "--from-weights", str(tmp_path / "m"), "--out", str(tmp_path / "copy/n")]) == 0
    for stem in ("m", "copy/n"):
        for suffix, data in before.items():
            assert (tmp_path / f"{stem}{suffix}").read_bytes() == data
        assert onnx_io_names(tmp_path / f"{stem}.onnx")[1] == ["logits", "frame_logits"]
    assert main(["export"]) == 2  # neither a checkpoint nor --from-weights
