"""RetinaFace weights → an ONNX file beside them, for ONNX Runtime on CPU.

On this project's 2-core machines ONNX Runtime runs the MobileNetV2 RetinaFace at 1 thread in
~0.6x torch's time (384x216 frames, batches of 4), and detection is most of preprocessing's
CPU after decoding. ``make weights`` writes ``weights/<name>.onnx`` (batch norm folded, batch
and frame size free) and stamps it with the sha256 of the tensors it came from, so a file left
from other weights is recognised and not used.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from core.files import atomic_path
from weights.store import WeightsError, read_config, resolve

log = logging.getLogger(__name__)

SOURCE_KEY = "weights_sha256"  # ONNX metadata: the tensors this graph was exported from


def onnx_path(name_or_path: str | os.PathLike) -> Path:
    """Where the ONNX file of a weights pair lives: beside its ``.safetensors``."""
    return resolve(name_or_path).with_suffix(".onnx")


def tensors_sha256(name_or_path: str | os.PathLike) -> str:
    return str(read_config(resolve(name_or_path))["sha256"])


def export_retinaface_onnx(name_or_path: str | os.PathLike, force: bool = False) -> tuple[Path, bool]:
    """Write (or keep, when current) the ONNX file of a RetinaFace weights pair; returns (path,
    whether it was written)."""
    import onnx

    from models.onnx_export import export_onnx
    from models.retinaface import fuse_batchnorm, load_retinaface

    path = onnx_path(name_or_path)
    sha = tensors_sha256(name_or_path)
    if not force and stamped_source(path) == sha:
        return path, False
    net = fuse_batchnorm(load_retinaface(name_or_path)).eval()
    export_onnx(net, path, net.onnx_spec(batch=2, height=224, width=384))
    model = onnx.load(str(path))
    model.metadata_props.add(key=SOURCE_KEY, value=sha)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path, True


def stamped_source(path: Path) -> str | None:
    """The tensors' sha256 an ONNX file was exported from (None: no file, or not stamped)."""
    if not path.is_file():
        return None
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # a damaged file is as good as none
        return None
    return next((p.value for p in model.metadata_props if p.key == SOURCE_KEY), None)


def onnx_runtime(name_or_path: str | os.PathLike, threads: int, device: str = "cpu"):
    """An ONNX Runtime session of these RetinaFace weights' ONNX file, when the file exists
    and was exported from exactly these tensors; None otherwise (the caller runs torch), with
    a warning when a stale file is in the way. ``device`` "cpu": the CPU provider; a CUDA
    device: ONNX Runtime's GPU providers where this build has them, the CPU after them."""
    path = Path(name_or_path)
    if path.suffix in (".pth", ".pt", ".tar"):  # upstream checkpoints: torch only
        return None
    try:
        onnx = onnx_path(name_or_path)
        if not onnx.is_file():
            return None
        sha = tensors_sha256(name_or_path)
        import onnxruntime  # noqa: F401  (absent: torch it is)
    except (WeightsError, KeyError, OSError, ImportError):
        return None
    from models.runtimes import OnnxRuntimeRuntime, cuda_index

    try:
        # no spinning: the detector waits on the decoder between batches, and a spinning pool
        # burns the core the decoder needs
        providers = ["CPUExecutionProvider"] if device == "cpu" else "auto"
        runtime = OnnxRuntimeRuntime(
            onnx, providers, threads=threads, spinning=False, device_id=cuda_index(device)
        )
    except RuntimeError as err:
        log.warning("%s: %s; face detection runs on torch", onnx, err)
        return None
    stamp = runtime.session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)
    if stamp != sha:
        log.warning(
            "%s was not exported from %s (run `make weights`): face detection runs on torch", onnx, path
        )
        return None
    return runtime
