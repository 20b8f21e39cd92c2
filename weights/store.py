"""Our weight format: ``<stem>.safetensors`` (tensors) + ``<stem>.json`` (what they are).

The JSON names the architecture and its configuration, carries the ``PreprocessConfig``
the model was trained with (so inference preprocesses the same way) and the sha256 of the
tensor file, checked on every load::

    {"format": 1, "arch": "fusion_timesformer", "model": {...}, "preprocess": {...},
     "sha256": "...", "created": "2025-01-01T00:00:00+00:00", "extra": {...}}
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from preprocess.config import PreprocessConfig

FORMAT_VERSION = 1
WEIGHTS_ENV = "AVDF_WEIGHTS"
_SUFFIXES = (".safetensors", ".json")


class WeightsError(Exception):
    """A weights file that is missing, corrupt or does not fit the model; names the file."""


@dataclass
class LoadedWeights:
    state_dict: dict[str, torch.Tensor]
    arch: str
    model_config: dict[str, Any]
    preprocess: PreprocessConfig | None
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path = Path()  # the .safetensors file


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


def _stem(path_or_stem: str | os.PathLike) -> Path:
    path = resolve(path_or_stem)
    # Only our own suffixes are stripped: names like "mobilenet0.25" keep their dots.
    return path.with_suffix("") if path.suffix in _SUFFIXES else path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_tmp(target: Path) -> Path:
    """A fresh temporary file next to ``target`` (same filesystem, so os.replace is atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp)


def _plain_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous and unshared (safetensors refuses tensors that share memory)."""
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


def save_model(
    stem: Path | str,
    state_dict: Mapping[str, torch.Tensor],
    arch: str,
    model_config: dict[str, Any],
    preprocess: PreprocessConfig | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; returns the ``.safetensors`` path."""
    base = _stem(stem)
    base.parent.mkdir(parents=True, exist_ok=True)
    tensors_path = base.parent / (base.name + ".safetensors")
    json_path = base.parent / (base.name + ".json")

    tmp = _atomic_tmp(tensors_path)
    try:
        save_file(_plain_tensors(state_dict), str(tmp), metadata={"arch": arch})
        sha = _sha256(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; weights are ordinary shared files
        os.replace(tmp, tensors_path)
    finally:
        tmp.unlink(missing_ok=True)

    meta = {
        "format": FORMAT_VERSION,
        "arch": arch,
        "model": model_config,
        "preprocess": preprocess.to_dict() if preprocess is not None else None,
        "sha256": sha,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "extra": extra or {},
    }
    tmp = _atomic_tmp(json_path)
    try:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, json_path)
    finally:
        tmp.unlink(missing_ok=True)
    return tensors_path


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


def load_model(path_or_stem: str | os.PathLike) -> LoadedWeights:
    """Read and verify a weights pair given its name, stem, ``.safetensors`` or ``.json`` path."""
    base = _stem(path_or_stem)
    tensors_path = base.parent / (base.name + ".safetensors")
    json_path = base.parent / (base.name + ".json")
    if not tensors_path.is_file():
        raise WeightsError(f"{tensors_path}: weights not found")
    meta = read_config(base)

    sha = _sha256(tensors_path)
    if sha != meta["sha256"]:
        raise WeightsError(
            f"{tensors_path}: sha256 {sha[:12]}… does not match {json_path.name} ({str(meta['sha256'])[:12]}…);"
            " the file was changed or truncated"
        )
    try:
        state_dict = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{tensors_path}: weights corrupt: {e}") from e
    try:
        preprocess = PreprocessConfig.from_dict(meta["preprocess"]) if meta.get("preprocess") else None
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{json_path}: weights config corrupt: preprocess section: {e}") from e
    return LoadedWeights(
        state_dict=state_dict,
        arch=str(meta["arch"]),
        model_config=dict(meta["model"]),
        preprocess=preprocess,
        extra=dict(meta.get("extra") or {}),
        path=tensors_path,
    )


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" … (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ``WeightsError`` naming ``source`` unless ``state_dict`` fits ``model`` exactly."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_listing(mismatched)}")
    if problems:
        raise WeightsError(f"{source}: weights do not fit {type(model).__name__}: " + "; ".join(problems))
