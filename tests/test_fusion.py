"""The fusion model, its inputs, its weight round trip, and the mmaction2/ViT → TimeSformer converters."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.aggregation import aggregate
from core.preprocess_data import Latency, Sample, SampleMeta
from models.checkpoints import ConversionError
from models.fusion import MEAN, STD, FusionConfig, FusionModel, mel_frames
from models.mmaction_compat import build_timesformer
from models.registry import create_model, load_model
from models.timesformer_convert import (
    interpolate_pos_embed,
    interpolate_time_embed,
    load_timesformer_checkpoint,
    timesformer_from_mmaction,
    timesformer_from_vit,
)
from weights.store import WeightsError, save_weights

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tiny() -> FusionModel:
    torch.manual_seed(0)
    model = FusionModel(FusionConfig.tiny()).eval()
    with torch.no_grad():  # a trained-looking head, so the latency branch visibly matters
        model.head.weight.normal_(0, 0.5)
        model.no_latency.normal_(0, 1.0)
    return model


def _run(model, frames, latency, has):
    with torch.no_grad():
        return model(frames, latency, has)


# --- configuration and registry ---------------------------------------------------------------


def test_config_presets_and_round_trip():
    base, tiny = FusionConfig.base(), FusionConfig.tiny()
    assert (base.embed_dims, base.num_heads, base.num_layers, base.num_frames, base.img_size) == (
        768,
        12,
        12,
        8,
        224,
    )
    assert base.audio_frames == 0 and base.latency_dim == 33 and base.vshift == 15
    assert tiny.num_layers == 2 and tiny.img_size == 64 and tiny.total_frames == 4
    assert FusionConfig.tiny(audio_frames=2).total_frames == 6
    assert FusionConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ValueError, match="unknown fusion config keys"):
        FusionConfig.from_dict({"embed_dim": 3})
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        FusionConfig.tiny(img_size=60)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        FusionConfig.tiny(num_heads=5)
    with pytest.raises(ValueError, match="latency_dim"):
        FusionConfig.tiny(latency_dim=32)


def test_create_model_by_name():
    model = create_model("fusion_timesformer", **FusionConfig.tiny().to_dict())
    assert isinstance(model, FusionModel) and model.config == FusionConfig.tiny()
    assert (
        type(model.backbone).__name__ == "TimeSformer"
        and model.backbone.attention_type == "divided_space_time"
    )
    layer = model.backbone.transformer_layers.layers[0]
    assert [type(a).__name__ for a in layer.attentions] == [
        "DividedTemporalAttentionWithNorm",
        "DividedSpatialAttentionWithNorm",
    ]


# --- forward ---------------------------------------------------------------------------------


def test_forward_shapes_and_input_checks(tiny):
    frames, latency, has = tiny.example_inputs(3)
    logits = _run(tiny, frames, latency, has)
    assert logits.shape == (3, 2) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match=r"frames must be \(B, 3, 4, 64, 64\)"):
        tiny(frames[:, :, :3], latency, has)
    with pytest.raises(ValueError, match=r"latency must be \(3, 33\)"):
        tiny(frames, latency[:, :31], has)


def test_no_latency_ignores_the_latency_vector(tiny):
    frames, latency, _ = tiny.example_inputs(2)
    off = torch.zeros(2)
    a = _run(tiny, frames, latency, off)
    b = _run(tiny, frames, torch.full_like(latency, float("nan")), off)  # even garbage cannot leak
    assert torch.equal(a, b)
    on = torch.ones(2)
    c = _run(tiny, frames, latency, on)
    d = _run(tiny, frames, latency + 3.0, on)
    assert not torch.allclose(a, c) and not torch.allclose(c, d)
    assert torch.equal(_run(tiny, frames, latency, torch.tensor([True, True])), c)  # bool flags work


def test_latency_switched_off_ignores_it_and_keeps_the_inputs(tiny, tmp_path):
    import onnxruntime as ort

    from models.onnx_export import export_onnx

    off = FusionModel(dataclasses.replace(tiny.config, use_latency=False)).eval()
    off.load_state_dict(tiny.state_dict())
    frames, latency, _ = tiny.example_inputs(2)
    has = torch.ones(2)
    a = _run(off, frames, latency, has)
    assert torch.equal(a, _run(off, frames, latency + 3.0, has))  # the latency changes nothing
    assert torch.equal(a, _run(tiny, frames, latency, torch.zeros(2)))  # = the "no audio" path
    assert not torch.allclose(a, _run(tiny, frames, latency, has))
    assert FusionConfig.from_dict(off.config.to_dict()).use_latency is False
    assert FusionConfig.from_dict(
        {k: v for k, v in tiny.config.to_dict().items() if k != "use_latency"}
    ).use_latency
    path = export_onnx(off, tmp_path / "off.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["frames", "latency", "has_latency"]
    feeds = {"frames": frames.numpy(), "latency": latency.numpy(), "has_latency": has.numpy()}
    np.testing.assert_allclose(session.run(None, feeds)[0], a.numpy(), atol=1e-4)


def test_samples_in_a_batch_are_independent(tiny):
    frames, latency, has = tiny.example_inputs(4)
    batch = _run(tiny, frames, latency, has)
    single = torch.cat([_run(tiny, frames[i : i + 1], latency[i : i + 1], has[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


def test_latency_is_scaled_to_unit_range(tiny):
    cfg = tiny.config
    vec = torch.cat([torch.linspace(5, 15, 31), torch.tensor([-15.0, 10.0])])
    scaled = (vec - tiny.latency.center) / tiny.latency.scale
    assert scaled.abs().max() <= 1.0 + 1e-6
    assert scaled[-2] == -1.0 and scaled[-1] == 1.0
    assert "latency.center" not in tiny.state_dict()  # derived from the config, not stored
    assert cfg.distance_center == 10.0


def test_gradients_reach_both_branches():
    torch.manual_seed(1)
    model = FusionModel(FusionConfig.tiny(num_layers=1)).train()
    frames, latency, _ = model.example_inputs(2)
    loss = model(frames, latency, torch.tensor([1.0, 0.0])).logsumexp(1).sum()
    loss.backward()
    assert model.no_latency.grad.abs().sum() > 0
    assert model.latency.fc1.weight.grad.abs().sum() > 0
    assert model.backbone.patch_embed.projection.weight.grad.abs().sum() > 0


def test_mel_frames_extend_the_clip():
    torch.manual_seed(2)
    model = FusionModel(FusionConfig.tiny(audio_frames=2, num_layers=1)).eval()
    assert model.backbone.time_embed.shape[1] == 6
    assert _run(model, *model.example_inputs(2)).shape == (2, 2)


# --- inputs ----------------------------------------------------------------------------------


def _sample(num_faces=8, size=96, latency=True, mel_frames=1600, vshift=15) -> Sample:
    rng = np.random.default_rng(0)
    lat = None
    if latency:
        dist = rng.uniform(6, 14, 2 * vshift + 1).astype(np.float32)
        lat = Latency(
            dist, offset=3, min_distance=float(dist.min()), confidence=4.5, frame_confidence=np.ones(5)
        )
    return Sample(
        meta=SampleMeta(
            video="clip.mp4",
            source="/x/clip.mp4",
            fps=25,
            duration=4,
            has_audio=latency,
            num_tracks=1,
            track_id=0,
        ),
        faces=rng.integers(0, 256, (num_faces, size, size, 3), dtype=np.uint8),
        face_frame_indices=np.arange(num_faces),
        boxes=np.zeros((num_faces, 4), np.float32),
        frame_start=0,
        audio=np.zeros(0, np.int16),
        mfcc=np.zeros((13, mel_frames), np.float32),
        mel=rng.uniform(-80, 0, (80, mel_frames)).astype(np.float32),
        latency=lat,
    )


def test_sample_inputs_normalise_and_resize():
    cfg = FusionConfig.tiny()
    sample = _sample(num_faces=8, size=64)
    inputs = FusionModel.sample_inputs(sample, cfg)
    assert list(inputs) == list(FusionModel.input_names)
    assert inputs["frames"].shape == (3, 4, 64, 64) and inputs["frames"].dtype == np.float32
    # 8 faces → 4 evenly spaced ones (0, 2, 5, 7), normalised with mmaction's ImageNet mean/std.
    picked = sample.faces[[0, 2, 5, 7]].astype(np.float32)
    expected = ((picked - MEAN) / STD).transpose(3, 0, 1, 2)
    np.testing.assert_allclose(inputs["frames"], expected, rtol=1e-6, atol=1e-6)
    assert inputs["latency"].shape == (33,) and inputs["has_latency"] == 1.0
    np.testing.assert_array_equal(inputs["latency"], sample.latency.vector())

    big = FusionModel.sample_inputs(_sample(size=224), cfg)  # crops of another size are resized
    assert big["frames"].shape == (3, 4, 64, 64)


def test_missing_latency_and_wrong_latency_size():
    cfg = FusionConfig.tiny()
    inputs = FusionModel.sample_inputs(_sample(latency=False), cfg)
    assert inputs["has_latency"] == 0.0 and not inputs["latency"].any()
    with pytest.raises(ValueError, match=r"clip\.mp4: latency vector has 23 values.*vshift must be 15"):
        FusionModel.sample_inputs(_sample(vshift=10), cfg)
    with pytest.raises(ValueError, match=r"clip\.mp4: faces must be"):
        FusionModel.sample_inputs(_sample(num_faces=0), cfg)


def test_mel_frames_render_the_spectrogram():
    cfg = FusionConfig.tiny(audio_frames=2)
    mel = np.full((80, 400), -100.0, np.float32)
    mel[:, 200:] = 0.0  # silence, then loud
    mel[0, 200:] = 0.0
    images = mel_frames(mel, cfg)
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8
    assert images[0].max() == 0 and images[1].min() == 255  # -100 dB is below the 80 dB range
    assert not mel_frames(np.zeros((80, 0), np.float32), cfg).any()  # no audio: black
    assert mel_frames(np.zeros((80, 1), np.float32), cfg).shape == (2, 64, 64, 3)  # shorter than the cut

    frames = FusionModel.sample_inputs(_sample(), cfg)["frames"]
    assert frames.shape == (3, 6, 64, 64)
    grey = frames[:, 4:] * STD[:, None, None, None] + MEAN[:, None, None, None]
    np.testing.assert_allclose(grey[0], grey[1], atol=1e-3)  # three equal channels


def test_batch_inputs_stack_and_feed_the_model(tiny):
    samples = [_sample(latency=i % 2 == 0) for i in range(3)]
    frames, latency, has = FusionModel.batch_inputs(samples, tiny.config)
    assert frames.shape == (3, 3, 4, 64, 64) and latency.shape == (3, 33) and has.dtype == np.float32
    np.testing.assert_array_equal(has, [1, 0, 1])
    logits = _run(tiny, *(torch.from_numpy(a) for a in (frames, latency, has)))
    assert logits.shape == (3, 2)
    probs = FusionModel.fake_probability([logits.numpy()])
    np.testing.assert_allclose(probs, torch.softmax(logits.double(), 1)[:, 1].numpy(), atol=1e-12)
    assert aggregate(probs, FusionModel.video_aggregation) == probs.max()  # a video: its most fake face
    with pytest.raises(ValueError):
        FusionModel.batch_inputs([], tiny.config)


# --- weights ---------------------------------------------------------------------------------


def test_weights_round_trip_reproduces_outputs(tiny, tmp_path):
    save_weights(tmp_path / "fusion", tiny.state_dict(), tiny.arch, tiny.config.to_dict(), None)
    loaded = load_model(tmp_path / "fusion")
    loaded_model = loaded.module
    assert loaded.arch == "fusion_timesformer" and loaded_model.config == tiny.config
    x = tiny.example_inputs(2)
    torch.testing.assert_close(_run(loaded_model, *x), _run(tiny, *x), atol=0, rtol=0)

    other = dict(tiny.config.to_dict(), num_layers=3)
    save_weights(tmp_path / "mismatch", tiny.state_dict(), tiny.arch, other, None)
    with pytest.raises(
        WeightsError, match=r"mismatch\.safetensors: .*missing keys: backbone\.transformer_layers\.layers\.2"
    ):
        load_model(tmp_path / "mismatch")


# --- converters: mmaction2 TimeSformer and ViT → our backbone ---------------------------------

C, HEADS, LAYERS, IMG, PATCH = 32, 4, 2, 32, 16


def _timesformer(num_frames: int, img: int = IMG):
    return build_timesformer(
        num_frames=num_frames,
        img_size=img,
        patch_size=PATCH,
        embed_dims=C,
        num_heads=HEADS,
        num_transformer_layers=LAYERS,
    ).eval()


def _random_like(model) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in model.state_dict().items()}


def test_mmaction_checkpoint_converts_to_backbone_keys():
    source = _random_like(_timesformer(4))
    ckpt = {
        "meta": {"mmaction_version": "1.2.0"},
        "state_dict": {
            **{f"backbone.{k}": v for k, v in source.items()},
            "cls_head.fc_cls.weight": torch.zeros(400, C),
            "cls_head.fc_cls.bias": torch.zeros(400),
        },
    }
    same = timesformer_from_mmaction(ckpt, num_frames=4)
    assert set(same) == set(source) and all(torch.equal(same[k], source[k]) for k in source)
    _timesformer(4).load_state_dict(same, strict=True)

    longer = timesformer_from_mmaction(ckpt, num_frames=6)
    assert longer["time_embed"].shape == (1, 6, C)
    _timesformer(6).load_state_dict(longer, strict=True)
    fewer = timesformer_from_mmaction(ckpt, num_frames=2, img_size=48)
    assert fewer["pos_embed"].shape == (1, 10, C)
    _timesformer(2, img=48).load_state_dict(fewer, strict=True)

    with pytest.raises(ConversionError, match="not an mmaction2 TimeSformer"):
        timesformer_from_mmaction({"state_dict": {"conv.weight": torch.zeros(1)}}, 4)


def test_time_embedding_is_resampled_linearly():
    ramp = torch.arange(4.0).reshape(1, 4, 1).expand(1, 4, 3).contiguous()  # embedding = frame index
    out = interpolate_time_embed(ramp, 8)
    # Sample centres of 8 frames over the span of 4: positions (i + 0.5) / 2 - 0.5, clamped.
    expected = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    np.testing.assert_allclose(out[0, :, 0].numpy(), expected, atol=1e-6)
    assert interpolate_time_embed(ramp, 4) is ramp
    constant = torch.full((1, 8, 5), 0.7)
    torch.testing.assert_close(interpolate_time_embed(constant, 3), torch.full((1, 3, 5), 0.7))
    with pytest.raises(ConversionError):
        interpolate_time_embed(torch.zeros(4, 5), 2)


def test_pos_embedding_is_resampled_on_the_patch_grid():
    pos = torch.randn(1, 1 + 4 * 4, 8)
    out = interpolate_pos_embed(pos, img_size=128, patch_size=16)
    assert out.shape == (1, 65, 8) and torch.equal(out[:, 0], pos[:, 0])
    assert interpolate_pos_embed(pos, 64, 16) is pos
    with pytest.raises(ConversionError, match="square patch grid"):
        interpolate_pos_embed(torch.zeros(1, 7, 8), 64)


def _timm_vit(seed: int = 4) -> dict[str, torch.Tensor]:
    """A random ViT in timm's key layout (what ImageNet ViT-B/16 checkpoints hold), tiny dims."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    grid = (IMG // PATCH) ** 2
    sd = {
        "cls_token": r(1, 1, C),
        "pos_embed": r(1, grid + 1, C),
        "patch_embed.proj.weight": r(C, 3, PATCH, PATCH, scale=0.05),
        "patch_embed.proj.bias": r(C),
        "norm.weight": 1 + r(C),
        "norm.bias": r(C),
        "head.weight": r(1000, C),
        "head.bias": r(1000),
    }
    for i in range(LAYERS):
        p = f"blocks.{i}."
        sd.update(
            {
                p + "norm1.weight": 1 + r(C),
                p + "norm1.bias": r(C),
                p + "attn.qkv.weight": r(3 * C, C),
                p + "attn.qkv.bias": r(3 * C),
                p + "attn.proj.weight": r(C, C),
                p + "attn.proj.bias": r(C),
                p + "norm2.weight": 1 + r(C),
                p + "norm2.bias": r(C),
                p + "mlp.fc1.weight": r(4 * C, C),
                p + "mlp.fc1.bias": r(4 * C),
                p + "mlp.fc2.weight": r(C, 4 * C),
                p + "mlp.fc2.bias": r(C),
            }
        )
    return sd


def _vit_forward(sd: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
    """The image ViT itself (pre-norm blocks, fused qkv), written independently of mmaction."""
    b = image.shape[0]
    x = F.conv2d(image, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=PATCH)
    x = torch.cat([sd["cls_token"].expand(b, -1, -1), x.flatten(2).transpose(1, 2)], 1) + sd["pos_embed"]
    n = x.shape[1]
    for i in range(LAYERS):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (C,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        qkv = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(b, n, 3, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2) / math.sqrt(C // HEADS)).softmax(-1) @ v
        x = x + F.linear(
            att.transpose(1, 2).reshape(b, n, C), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"]
        )
        h = F.layer_norm(x, (C,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        x = x + F.linear(
            F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
            sd[p + "mlp.fc2.weight"],
            sd[p + "mlp.fc2.bias"],
        )
    return F.layer_norm(x, (C,), sd["norm.weight"], sd["norm.bias"], 1e-6)[:, 0]


def test_vit_converts_to_a_timesformer_that_starts_as_the_image_model():
    vit = _timm_vit()
    sd = timesformer_from_vit(vit, num_frames=3)
    backbone = _timesformer(3)
    backbone.load_state_dict(sd, strict=True)
    layer = f"transformer_layers.layers.{LAYERS - 1}.attentions"
    assert torch.equal(sd[f"{layer}.0.attn.in_proj_weight"], vit[f"blocks.{LAYERS - 1}.attn.qkv.weight"])
    assert not sd[f"{layer}.0.temporal_fc.weight"].any() and not sd["time_embed"].any()

    # Zero temporal projection + zero time embedding: a clip of one repeated image gives the
    # image model's class token exactly, which checks every mapped key (qkv order, norms, MLP).
    image = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(5))
    clip = image[:, :, None].expand(2, 3, 3, IMG, IMG).contiguous()
    with torch.no_grad():
        torch.testing.assert_close(backbone(clip), _vit_forward(vit, image), atol=2e-5, rtol=1e-4)


def test_vit_with_unknown_keys_is_refused():
    vit = _timm_vit()
    vit["blocks.0.ls1.gamma"] = torch.ones(C)  # LayerScale: a ViT variant TimeSformer cannot hold
    with pytest.raises(ConversionError, match="no TimeSformer counterpart.*ls1"):
        timesformer_from_vit(vit, 3)
    del vit["blocks.0.ls1.gamma"], vit["blocks.1.mlp.fc2.bias"]
    with pytest.raises(ConversionError, match=r"lacks blocks\.1\.mlp\.fc2\.bias"):
        timesformer_from_vit(vit, 3)


def test_mmcv_layout_vit_is_mapped_as_mmaction_does():
    # The ViT file mmaction2's configs name: one attention per layer plus norms.0 / norms.1.
    full = _random_like(_timesformer(4))
    mmcv = {"head.fc.weight": torch.zeros(10, C)}
    for key, value in full.items():
        if ".attentions.1." in key or "temporal_fc" in key or key == "time_embed":
            continue
        key = key.replace(".attentions.0.norm.", ".norms.0.").replace(".ffns.0.norm.", ".norms.1.")
        mmcv[key] = value
    sd = timesformer_from_mmaction({"state_dict": mmcv}, num_frames=4)
    _timesformer(4).load_state_dict(sd, strict=True)
    for i in range(LAYERS):
        p = f"transformer_layers.layers.{i}."
        assert torch.equal(
            sd[p + "attentions.1.attn.in_proj_weight"], full[p + "attentions.0.attn.in_proj_weight"]
        )
        assert torch.equal(sd[p + "attentions.1.norm.weight"], full[p + "attentions.0.norm.weight"])
        assert torch.equal(sd[p + "ffns.0.norm.bias"], full[p + "ffns.0.norm.bias"])
        assert not sd[p + "attentions.0.temporal_fc.weight"].any()


def test_load_timesformer_checkpoint_from_files(tmp_path):
    source = _random_like(_timesformer(4))
    mm = tmp_path / "timesformer_k400.pth"
    torch.save({"meta": {"epoch": 15}, "state_dict": {f"backbone.{k}": v for k, v in source.items()}}, mm)
    sd = load_timesformer_checkpoint(mm, num_frames=8)
    assert sd["time_embed"].shape == (1, 8, C)
    vit_path = tmp_path / "vit.pth"
    torch.save({"model": _timm_vit()}, vit_path)
    assert load_timesformer_checkpoint(vit_path, num_frames=2)["time_embed"].shape == (1, 2, C)

    with pytest.raises(WeightsError, match=r"absent\.pth: TimeSformer/ViT checkpoint not found"):
        load_timesformer_checkpoint(tmp_path / "absent.pth", 8)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(
        WeightsError, match=r"junk\.pth: not a readable torch checkpoint \(weights_only loading refused it"
    ):
        load_timesformer_checkpoint(junk, 8)
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": source, "hook": _PickledObject()}, pickled)
    with pytest.raises(
        WeightsError, match=r"pickled\.pth: not a readable torch checkpoint \(weights_only loading refused it"
    ):
        load_timesformer_checkpoint(pickled, 8)
    broken = dict(source)
    del broken["transformer_layers.layers.1.ffns.0.norm.bias"]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(
        WeightsError, match=r"broken\.pth: .*missing keys: transformer_layers\.layers\.1\.ffns\.0\.norm\.bias"
    ):
        load_timesformer_checkpoint(tmp_path / "broken.pth", 4)


class _PickledObject:
    """An arbitrary class instance: weights_only loading must refuse it."""


def test_timesformer_builds_beside_an_incompatible_transformers(tmp_path):
    """mmaction2 1.2.0 imports its VindLU models when any transformers>=4.28 is installed; a
    transformers without the 4.x internals they use (5.x, as on CUDA images) must not break us."""
    import subprocess
    import sys
    from pathlib import Path

    site = tmp_path / "site"
    pkg = site / "transformers"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '5.0.0'\n")
    (pkg / "modeling_utils.py").write_text("raise ImportError('no apply_chunking_to_forward in 5.x')\n")
    dist = site / "transformers-5.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: transformers\nVersion: 5.0.0\n")
    code = (
        "from models.mmaction_compat import build_timesformer\n"
        "m = build_timesformer(num_frames=2, img_size=32, patch_size=16, embed_dims=32, num_heads=2,"
        " num_transformer_layers=1)\n"
        "print(type(m).__name__)\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": f"{site}:{root}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("TimeSformer")
