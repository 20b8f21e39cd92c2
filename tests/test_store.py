"""weights.store: our safetensors + JSON format, its checks and its error messages (storage only:
building models from it is ``models.registry``'s, tested in test_registry.py)."""

from __future__ import annotations

import json
import stat

import pytest
import torch

from core.files import sha256_file
from core.preprocess_config import PreprocessConfig
from weights import store
from weights.store import WeightsError, load_weights, read_config, resolve, save_weights


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "layer.weight": torch.randn(4, 3, generator=g),
        "layer.bias": torch.randn(4, generator=g),
        "bn.num_batches_tracked": torch.tensor(7),
        "half": torch.randn(2, 2, generator=g).half(),
    }


def test_round_trip_keeps_tensors_config_and_preprocessing(tmp_path):
    sd = _state_dict()
    pre = PreprocessConfig().replace("sample", num_frames=4).replace("sync", vshift=10)
    path = save_weights(
        tmp_path / "model", sd, "toy", {"width": 4, "names": ["a"]}, pre.to_dict(), {"auc": 0.9}
    )

    assert path == tmp_path / "model.safetensors"
    loaded = load_weights(tmp_path / "model")
    assert loaded.arch == "toy"
    assert loaded.model_config == {"width": 4, "names": ["a"]}
    assert loaded.preprocess == pre.to_dict() and PreprocessConfig.from_dict(loaded.preprocess) == pre
    assert loaded.extra == {"auc": 0.9}
    assert loaded.path == path
    assert set(loaded.state_dict) == set(sd)
    for key, value in sd.items():
        assert loaded.state_dict[key].dtype == value.dtype
        assert torch.equal(loaded.state_dict[key], value)

    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["format"] == 1 and meta["sha256"] == sha256_file(path) and meta["created"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]  # no temp files
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_every_spelling_of_the_same_weights_loads(tmp_path, monkeypatch):
    save_weights(tmp_path / "net.v2", _state_dict(), "toy", {}, None)
    monkeypatch.setenv("AVDF_WEIGHTS", str(tmp_path))
    for spelling in (
        "net.v2",
        tmp_path / "net.v2",
        tmp_path / "net.v2.json",
        tmp_path / "net.v2.safetensors",
    ):
        loaded = load_weights(spelling)
        assert loaded.path == tmp_path / "net.v2.safetensors"
        assert loaded.preprocess is None


def test_resolve_names_and_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("AVDF_WEIGHTS", str(tmp_path / "w"))
    assert store.weights_dir() == tmp_path / "w"
    assert resolve("syncnet") == tmp_path / "w" / "syncnet.safetensors"
    assert resolve("mobilenet0.25_Final") == tmp_path / "w" / "mobilenet0.25_Final.safetensors"
    existing = tmp_path / "elsewhere.pth"
    existing.write_bytes(b"x")
    assert resolve(existing) == existing
    assert resolve("some/dir/model") == store.Path("some/dir/model")
    monkeypatch.delenv("AVDF_WEIGHTS")
    assert store.weights_dir() == store.Path(store.__file__).resolve().parent


def test_shared_tensors_are_saved(tmp_path):
    # Tied weights share storage, which safetensors refuses unless copied.
    emb = torch.randn(5, 3)
    save_weights(tmp_path / "tied", {"a": emb, "b": emb, "c": emb[1:]}, "toy", {}, None)
    loaded = load_weights(tmp_path / "tied")
    assert torch.equal(loaded.state_dict["b"], emb) and torch.equal(loaded.state_dict["c"], emb[1:])


def test_missing_files_are_named(tmp_path):
    with pytest.raises(WeightsError, match=r"absent\.safetensors: weights not found"):
        load_weights(tmp_path / "absent")
    save_weights(tmp_path / "m", _state_dict(), "toy", {}, None)
    (tmp_path / "m.json").unlink()
    with pytest.raises(WeightsError, match=r"m\.json: weights config not found"):
        load_weights(tmp_path / "m")


def test_corrupt_json_is_reported(tmp_path):
    save_weights(tmp_path / "m", _state_dict(), "toy", {}, None)
    (tmp_path / "m.json").write_text('{"format": 1, "arch": ')
    with pytest.raises(WeightsError, match=r"m\.json: weights config corrupt"):
        load_weights(tmp_path / "m")
    (tmp_path / "m.json").write_text(json.dumps({"format": 2, "arch": "toy", "model": {}, "sha256": ""}))
    with pytest.raises(WeightsError, match="unsupported weights format 2"):
        read_config(tmp_path / "m")


def test_changed_tensor_file_fails_the_checksum(tmp_path):
    path = save_weights(tmp_path / "m", _state_dict(), "toy", {}, None)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"m\.safetensors: sha256 .* does not match m\.json"):
        load_weights(path)


def test_unparseable_tensor_file_is_corrupt(tmp_path):
    path = save_weights(tmp_path / "m", _state_dict(), "toy", {}, None)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json header!")
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["sha256"] = sha256_file(path)  # checksum agrees, content does not parse
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"m\.safetensors: weights corrupt"):
        load_weights(path)


def test_a_preprocess_section_that_is_not_an_object_is_corrupt(tmp_path):
    save_weights(tmp_path / "m", _state_dict(), "toy", {}, PreprocessConfig().to_dict())
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["preprocess"] = ["not", "a", "section"]
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="preprocess section is not an object"):
        load_weights(tmp_path / "m")


def test_failed_save_leaves_previous_files_and_no_temporaries(tmp_path):
    save_weights(tmp_path / "m", _state_dict(), "toy", {"v": 1}, None)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(TypeError, match="not a tensor"):
        save_weights(tmp_path / "m", {"w": [1, 2, 3]}, "toy", {"v": 2}, None)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_not_found_names_what_was_given(tmp_path, monkeypatch):
    from weights.store import available, not_found_message

    save_weights(tmp_path / "a", _state_dict(), "toy", {}, None)
    save_weights(tmp_path / "b", _state_dict(), "toy", {}, None)
    (tmp_path / "c.safetensors").write_bytes(b"")  # no JSON: not a pair
    assert available(tmp_path) == ["a", "b"]
    assert not_found_message(tmp_path) == (
        f"{tmp_path}: a folder, not a weights file; it holds a.safetensors, b.safetensors: pass one of those"
    )
    monkeypatch.setenv("AVDF_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match=r"no weights named 'nope' in .* \(there: a, b\)"):
        load_weights("nope")
    with pytest.raises(WeightsError, match=r"x/nope\.safetensors: weights not found"):
        load_weights(tmp_path / "x" / "nope")
