"""EfficientNet-B0 against the original code: timm's and torchvision's networks on seeded
weights (``fixtures/efficientnet_b0_reference.json``, made by ``make_efficientnet_fixture.py``),
and the checkpoint loader a detector starts training from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.make_efficientnet_fixture import seeded_input, seeded_state_dict
from safetensors.torch import save_file

from models.checkpoints import ConversionError
from models.efficientnet import (
    EfficientNet,
    EfficientNetConfig,
    efficientnet_from_timm,
    efficientnet_from_torchvision,
    load_efficientnet_checkpoint,
    make_divisible,
)
from models.efficientnet_frames import EfficientNetFrames, EfficientNetFramesConfig
from weights.store import WeightsError

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "efficientnet_b0_reference.json").read_text())


def upstream_state_dict(layout: str) -> dict[str, torch.Tensor]:
    """The seeded tensors the fixture's reference network held, under that library's names."""
    return seeded_state_dict(REFERENCE[layout]["keys"])


def pooled(model: EfficientNet) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(seeded_input())[0].numpy()


@pytest.mark.parametrize(
    "layout, convert", [("timm", efficientnet_from_timm), ("torchvision", efficientnet_from_torchvision)]
)
def test_published_layouts_load_and_compute_what_the_original_computes(layout, convert):
    upstream = upstream_state_dict(layout)
    assert len(upstream) == 360 and sum(v.numel() for v in upstream.values()) > 5_000_000  # B0 + classifier
    model = EfficientNet()
    model.load_state_dict(convert(upstream), strict=True)  # every tensor has its place, nothing left over
    np.testing.assert_allclose(pooled(model), REFERENCE[layout]["features"], atol=1e-4)


def test_a_misplaced_tensor_changes_the_features():
    """The reference comparison is sharp: swapping two same-shaped BatchNorms breaks it."""
    sd = efficientnet_from_timm(upstream_state_dict("timm"))
    for stat in ("weight", "bias", "running_mean", "running_var"):
        a, b = f"blocks.1.0.bn1.{stat}", f"blocks.1.0.bn2.{stat}"
        sd[a], sd[b] = sd[b], sd[a]
    model = EfficientNet()
    model.load_state_dict(sd)
    assert np.abs(pooled(model) - np.asarray(REFERENCE["timm"]["features"])).max() > 1e-2


def test_converters_refuse_other_networks():
    with pytest.raises(ConversionError, match="not a timm-layout EfficientNet"):
        efficientnet_from_timm({"features.0.0.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="not a torchvision-layout EfficientNet"):
        efficientnet_from_torchvision({"conv_stem.weight": torch.zeros(1)})
    bad = dict(upstream_state_dict("torchvision"), **{"features.3.0.extra.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="no timm counterpart: features.3.0.extra.weight"):
        efficientnet_from_torchvision(bad)


def test_checkpoint_files_load_from_pth_and_safetensors(tmp_path):
    timm_sd = upstream_state_dict("timm")
    torch.save({"state_dict": {f"module.{k}": v for k, v in timm_sd.items()}}, tmp_path / "timm.pth")
    save_file(upstream_state_dict("torchvision"), str(tmp_path / "tv.safetensors"))
    for name in ("timm.pth", "tv.safetensors"):
        model = EfficientNet()
        model.load_state_dict(load_efficientnet_checkpoint(tmp_path / name))
        np.testing.assert_allclose(pooled(model), REFERENCE["timm"]["features"], atol=1e-4)
    with pytest.raises(WeightsError, match=r"timm\.pth: weights do not fit EfficientNet: .*shape mismatches"):
        load_efficientnet_checkpoint(tmp_path / "timm.pth", EfficientNetConfig(channel_multiplier=0.5))
    torch.save({"conv1.weight": torch.zeros(2)}, tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match=r"resnet\.pth: not a torchvision-layout EfficientNet"):
        load_efficientnet_checkpoint(tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match="checkpoint not found"):
        load_efficientnet_checkpoint(tmp_path / "none.pth")


def test_a_detector_starts_from_the_imagenet_backbone(tmp_path):
    torch.save(upstream_state_dict("timm"), tmp_path / "efficientnet_b0.pth")
    detector = EfficientNetFrames(EfficientNetFramesConfig(num_frames=2, img_size=64))
    head = detector.head.weight.clone()
    detector.init_from_upstream(str(tmp_path / "efficientnet_b0.pth"))
    np.testing.assert_allclose(pooled(detector.backbone), REFERENCE["timm"]["features"], atol=1e-4)
    assert torch.equal(detector.head.weight, head)  # the detector's own head is untouched


def test_channel_and_depth_scaling_follow_the_family_rules():
    assert [make_divisible(c * 0.25) for c in (32, 16, 24, 40, 1280)] == [8, 8, 8, 16, 320]
    small = EfficientNet(EfficientNetConfig(channel_multiplier=0.25, depth_multiplier=0.34))
    assert [len(stage) for stage in small.blocks] == [1, 1, 1, 2, 2, 2, 1]
    assert [len(stage) for stage in EfficientNet().blocks] == [1, 2, 2, 3, 3, 4, 1]
    assert small(torch.zeros(2, 3, 64, 64)).shape == (2, 320)
