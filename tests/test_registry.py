"""models.registry: every network by name, and the one loader that builds any of them from our
weights JSON (``arch`` + config) and loads its tensors strictly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from core.preprocess_config import PreprocessConfig
from models.detector import DetectorModel
from models.fusion import FusionConfig, FusionModel
from models.registry import check_state_dict, create_model, load_model, registered_models
from models.retinaface import RetinaFace
from models.retinaface_config import RetinaFaceConfig
from models.syncnet import SyncNet, SyncNetConfig
from weights.store import WeightsError, save_weights


def test_the_project_models_are_registered_by_their_weights_names():
    assert registered_models() == [
        "av_attention",
        "efficientnet_b0",
        "efficientnet_lstm",
        "fusion_timesformer",
        "mds",
        "meso4",
        "mesoinception4",
        "mobilenetv2_frames",
        "retinaface",
        "sync_evidence",
        "syncnet",
        "syncnet_mouth",
        "temporal_band",
        "temporal_net",
    ]
    assert (FusionModel.arch, RetinaFace.arch, SyncNet.arch) == (
        "fusion_timesformer",
        "retinaface",
        "syncnet",
    )
    assert issubclass(FusionModel, DetectorModel)


def test_create_model_builds_from_config_keywords():
    net = create_model("syncnet", embed_dim=256)
    assert isinstance(net, SyncNet) and net.config == SyncNetConfig(embed_dim=256)
    assert net.netfclip[-1].out_features == 256
    face = create_model("retinaface", backbone="resnet50", out_channels=256)
    assert isinstance(face, RetinaFace) and face.config.out_channels == 256
    tiny = create_model("fusion_timesformer", **FusionConfig.tiny().to_dict())
    assert isinstance(tiny, FusionModel) and tiny.config == FusionConfig.tiny()
    with pytest.raises(ValueError, match=r"unknown model arch 'lstm'; registered: \['av_attention'"):
        create_model("lstm")
    with pytest.raises(ValueError, match="unknown syncnet config keys: \\['width'\\]"):
        create_model("syncnet", width=3)


def test_configs_round_trip_through_their_dicts():
    for config in (
        SyncNetConfig(embed_dim=128),
        RetinaFaceConfig.for_backbone("mobilenet0.25"),
        RetinaFaceConfig(),
        FusionConfig.tiny(audio_frames=2),
    ):
        data = json.loads(json.dumps(config.to_dict()))  # what the weights JSON keeps
        assert type(config).from_dict(data) == config


@pytest.mark.parametrize(
    "arch, config",
    [
        ("syncnet", {"embed_dim": 64}),
        ("retinaface", RetinaFaceConfig.for_backbone("mobilenet0.25").to_dict()),
        ("fusion_timesformer", FusionConfig.tiny(num_layers=1).to_dict()),
    ],
)
def test_one_loader_builds_every_model_from_its_weights(tmp_path, arch, config):
    torch.manual_seed(0)
    original = create_model(arch, **config).eval()
    pre = PreprocessConfig().replace("sample", num_frames=4)
    save_weights(tmp_path / arch, original.state_dict(), arch, config, pre.to_dict(), {"note": "x"})

    loaded = load_model(tmp_path / arch)
    assert loaded.arch == arch and type(loaded.module) is type(original) and not loaded.module.training
    assert loaded.preprocess == pre and loaded.extra == {"note": "x"}
    assert loaded.path == tmp_path / f"{arch}.safetensors"
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value), key
    assert load_model(tmp_path / arch, arch=arch).arch == arch
    other = "syncnet" if arch != "syncnet" else "retinaface"
    with pytest.raises(WeightsError, match=f"holds a '{arch}' model, not '{other}'"):
        load_model(tmp_path / arch, arch=other)


def test_weights_that_do_not_make_a_model_name_the_file(tmp_path):
    tensors = SyncNet().state_dict()
    save_weights(tmp_path / "unknown", tensors, "lstm", {}, None)
    with pytest.raises(WeightsError, match=r"unknown\.safetensors: unknown model arch 'lstm'"):
        load_model(tmp_path / "unknown")
    save_weights(tmp_path / "badconfig", tensors, "syncnet", {"embed_dim": 1024, "depth": 3}, None)
    with pytest.raises(WeightsError, match=r"badconfig\.safetensors: unknown syncnet config keys"):
        load_model(tmp_path / "badconfig")
    save_weights(tmp_path / "misfit", tensors, "syncnet", {"embed_dim": 512}, None)
    with pytest.raises(
        WeightsError, match=r"misfit\.safetensors: weights do not fit SyncNet: .*shape mismatches"
    ):
        load_model(tmp_path / "misfit")


def test_a_bad_preprocess_section_is_reported(tmp_path):
    save_weights(tmp_path / "m", SyncNet().state_dict(), "syncnet", {}, PreprocessConfig().to_dict())
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["preprocess"]["sample"]["frames_per_second"] = 3
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"m\.json: .*preprocess section: unknown sample config keys"):
        load_model(tmp_path / "m")


def test_check_state_dict_lists_every_problem():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    good = model.state_dict()
    check_state_dict(model, good, "ok.safetensors")  # no exception

    bad = dict(good)
    del bad["1.bias"]
    bad["2.weight"] = torch.zeros(1)
    bad["0.weight"] = torch.zeros(4, 5)
    with pytest.raises(WeightsError) as info:
        check_state_dict(model, bad, "bad.safetensors")
    message = str(info.value)
    assert message.startswith("bad.safetensors: weights do not fit Sequential")
    assert "1 missing keys: 1.bias" in message
    assert "1 unexpected keys: 2.weight" in message
    assert "0.weight (4, 5) vs model (4, 3)" in message
