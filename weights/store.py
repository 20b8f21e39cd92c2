"""Our weight format: ``<stem>.safetensors`` (tensors) + ``<stem>.json`` (what they are).

The JSON names the architecture and its configuration, carries the preprocessing configuration
the model was trained with (so inference preprocesses the same way) and the sha256 of the
tensor file, checked on every load::

    {"format": 1, "arch": "fusion_timesformer", "model": {...}, "preprocess": {...},
     "sha256": "...", "created": "2025-01-01T00:00:00+00:00", "extra": {...}}

Pure storage: this module neither builds networks nor interprets the configurations it keeps
(``models.registry.load_model`` does both). It imports torch only to read or write tensors:
``verified_config`` checks a pair without loading them, which is all scoring on ONNX Runtime
needs (the torch-free image).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from core.files import atomic_path, atomic_write, sha256_file

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1
WEIGHTS_ENV = "AVDF_WEIGHTS"
_SUFFIXES = (".safetensors", ".json")


class WeightsError(Exception):
    """A weights file that is missing, corrupt or does not fit the model; names the file."""


@dataclass
class StoredConfig:
    """A verified weights pair's JSON sections, uninterpreted (its tensors not loaded)."""

    arch: str
    model_config: dict[str, Any]
    preprocess: dict[str, Any] | None  # a PreprocessConfig as a dict
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path = Path()  # the .safetensors file
    calibration: dict[str, Any] | None = None  # the probability mapping (core.calibration), uninterpreted


@dataclass
class StoredWeights(StoredConfig):
    """A verified weights pair as stored: tensors and the JSON's sections, uninterpreted."""

    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)


def weights_dir() -> Path:
    """The repository's ``weights/`` folder, or ``$AVDF_WEIGHTS`` when set."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else Path(__file__).resolve().parent


def resolve(name_or_path: str | os.PathLike) -> Path:
    """``"syncnet"`` → ``weights_dir()/syncnet.safetensors``; an existing file or any path
    (something with a folder or one of our suffixes) is returned unchanged."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    if os.sep in text or "/" in text or path.suffix in _SUFFIXES:
        return path
    return weights_dir() / f"{text}.safetensors"


def available(folder: str | os.PathLike | None = None) -> list[str]:
    """The weights pairs (``NAME.safetensors`` + ``NAME.json``) in ``folder`` (default
    ``weights_dir()``), by name."""
    folder = Path(folder) if folder is not None else weights_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.safetensors") if p.with_suffix(".json").is_file())


def is_name(name_or_path: str | os.PathLike) -> bool:
    """A bare weights name (``"detector"``), looked up in ``weights_dir()``, rather than a path."""
    text = str(name_or_path)
    return not ("/" in text or os.sep in text or Path(text).suffix in _SUFFIXES or Path(text).exists())


def not_found_message(name_or_path: str | os.PathLike) -> str:
    """Why ``name_or_path`` holds no weights, naming it as it was given."""
    text = str(name_or_path)
    if Path(text).is_dir():
        inside = available(text)
        what = (
            f"it holds {', '.join(n + '.safetensors' for n in inside)}: pass one of those"
            if inside
            else "it holds no weights pair (NAME.safetensors + NAME.json)"
        )
        return f"{text}: a folder, not a weights file; {what}"
    if is_name(text):
        names = ", ".join(available()) or "none"
        return f"no weights named {text!r} in {weights_dir()} (there: {names})"
    return f"{tensors_path(text)}: weights not found"


def _stem(path_or_stem: str | os.PathLike) -> Path:
    path = resolve(path_or_stem)
    # Only our own suffixes are stripped: names like "mobilenet0.25" keep their dots.
    return path.with_suffix("") if path.suffix in _SUFFIXES else path


def tensors_path(path_or_stem: str | os.PathLike) -> Path:
    """The ``.safetensors`` file of a weights name, stem, ``.safetensors`` or ``.json`` path."""
    base = _stem(path_or_stem)
    return base.parent / (base.name + ".safetensors")


def _plain_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous and unshared (safetensors refuses tensors that share memory)."""
    import torch

    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu").contiguous()
        if t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def save_weights(
    stem: Path | str,
    state_dict: Mapping[str, torch.Tensor],
    arch: str,
    model_config: dict[str, Any],
    preprocess: Mapping[str, Any] | None,
    extra: dict[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; returns the ``.safetensors`` path.
    ``preprocess`` is the training preprocessing as a dict (``PreprocessConfig.to_dict()``);
    ``calibration`` the probability mapping fitted at export (``core.calibration``), if any."""
    from safetensors.torch import save_file

    base = _stem(stem)
    tensors = base.parent / (base.name + ".safetensors")
    with atomic_path(tensors) as tmp:
        save_file(_plain_tensors(state_dict), str(tmp), metadata={"arch": arch})
        sha = sha256_file(tmp)
    meta = {
        "format": FORMAT_VERSION,
        "arch": arch,
        "model": model_config,
        "preprocess": dict(preprocess) if preprocess is not None else None,
        "sha256": sha,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "extra": extra or {},
    }
    if calibration is not None:
        meta["calibration"] = dict(calibration)
    atomic_write(base.parent / (base.name + ".json"), json.dumps(meta, indent=2, sort_keys=False) + "\n")
    return tensors


def read_config(path_or_stem: str | os.PathLike) -> dict[str, Any]:
    """The parsed JSON of a weights pair (no tensors loaded, no checksum verified)."""
    base = _stem(path_or_stem)
    json_path = base.parent / (base.name + ".json")
    if not json_path.is_file():
        raise WeightsError(f"{json_path}: weights config not found")
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{json_path}: weights config corrupt: {e}") from e
    if not isinstance(meta, dict):
        raise WeightsError(f"{json_path}: weights config corrupt: not a JSON object")
    if meta.get("format") != FORMAT_VERSION:
        raise WeightsError(f"{json_path}: unsupported weights format {meta.get('format')!r} (expected 1)")
    for key in ("arch", "model", "sha256"):
        if key not in meta:
            raise WeightsError(f"{json_path}: weights config corrupt: no {key!r} entry")
    return meta


def write_calibration(
    path_or_stem: str | os.PathLike,
    calibration: Mapping[str, Any] | None,
    note: Mapping[str, Any] | None = None,
) -> Path:
    """Set (or, with None, remove) the JSON's ``calibration`` section, recording ``note`` (how it
    was fitted) under ``extra.calibration_fit``; the tensors and their sha256 are untouched.
    Returns the JSON's path."""
    base = _stem(path_or_stem)
    json_path = base.parent / (base.name + ".json")
    meta = read_config(base)
    if calibration is None:
        meta.pop("calibration", None)
        (meta.get("extra") or {}).pop("calibration_fit", None)
    else:
        meta["calibration"] = dict(calibration)
        meta.setdefault("extra", {})["calibration_fit"] = dict(note or {})
    atomic_write(json_path, json.dumps(meta, indent=2, sort_keys=False) + "\n")
    return json_path


def verified_config(path_or_stem: str | os.PathLike) -> StoredConfig:
    """Read a weights pair's JSON and verify its tensors' sha256 against it, without loading
    them (no torch): given its name, stem, ``.safetensors`` or ``.json`` path."""
    tensors = tensors_path(path_or_stem)
    json_path = tensors.with_suffix(".json")
    if not tensors.is_file():
        raise WeightsError(not_found_message(path_or_stem))
    meta = read_config(tensors)

    sha = sha256_file(tensors)
    if sha != meta["sha256"]:
        raise WeightsError(
            f"{tensors}: sha256 {sha[:12]}… does not match {json_path.name} ({str(meta['sha256'])[:12]}…);"
            " the file was changed or truncated"
        )
    preprocess = meta.get("preprocess")
    if preprocess is not None and not isinstance(preprocess, dict):
        raise WeightsError(f"{json_path}: weights config corrupt: preprocess section is not an object")
    calibration = meta.get("calibration")
    if calibration is not None and not isinstance(calibration, dict):
        raise WeightsError(f"{json_path}: weights config corrupt: calibration section is not an object")
    return StoredConfig(
        arch=str(meta["arch"]),
        model_config=dict(meta["model"]),
        preprocess=preprocess or None,
        extra=dict(meta.get("extra") or {}),
        path=tensors,
        calibration=calibration,
    )


def load_weights(path_or_stem: str | os.PathLike) -> StoredWeights:
    """Read and verify a weights pair given its name, stem, ``.safetensors`` or ``.json`` path."""
    from safetensors.torch import load_file

    stored = verified_config(path_or_stem)
    try:
        state_dict = load_file(str(stored.path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{stored.path}: weights corrupt: {e}") from e
    return StoredWeights(**vars(stored), state_dict=state_dict)
