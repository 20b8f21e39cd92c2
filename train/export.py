"""``python -m train export``: a training checkpoint → the files ``run.sh`` loads.

Writes ``<out>.safetensors`` + ``<out>.json`` (``weights.store`` format: arch, model config, the
PreprocessConfig the training samples were made with) and ``<out>.onnx`` beside them (as the
model's ``onnx_spec`` describes), then checks that ONNX Runtime reproduces every torch output.

``--from-weights STEM`` starts from an exported weights pair instead of a checkpoint: the
safetensors and JSON are kept byte for byte (copied when ``--out`` is another stem) and only
the ONNX is written again, e.g. when a model gains an output that adds no parameters (the
frame detectors' ``frame_logits``) and the shipped ONNX must carry it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.preprocess_config import PreprocessConfig
from models.detector import DetectorModel
from models.onnx_export import export_onnx
from train.module import load_checkpoint
from weights.store import save_weights

log = logging.getLogger("train")

ONNX_TOLERANCE = 1e-3  # max |logit difference| accepted between torch and ONNX Runtime


class ExportError(Exception):
    """The checkpoint cannot become a working submission model; the message says why."""


@dataclass
class ExportResult:
    weights: Path
    config: Path
    onnx: Path | None
    onnx_max_abs_diff: float | None


def checkpoint_extra(path: Path) -> dict[str, Any]:
    """Provenance for the weights' JSON: epoch, step and the best val AUC the checkpoint saw."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    extra: dict[str, Any] = {
        "source_checkpoint": str(path),
        "epoch": ckpt.get("epoch"),
        "step": ckpt.get("global_step"),
    }
    for key, state in (ckpt.get("callbacks") or {}).items():
        if key.startswith("ModelCheckpoint") and state.get("best_model_score") is not None:
            extra["best_val_auc"] = float(state["best_model_score"])
    return extra


def scoring_preprocess(preprocess: PreprocessConfig, input_names: tuple[str, ...]) -> PreprocessConfig:
    """The preprocessing a scorer runs for this model: training-only options off (still images
    are training data, never videos to score), and no SyncNet search for a model that does not
    read its latency vector (1-1.5 CPU-s per video saved)."""
    preprocess = preprocess.replace("media", still_images=False)
    if "latency" not in input_names:
        preprocess = preprocess.replace("sync", weights="")
    return preprocess


def run_manifest(checkpoint: Path) -> Path | None:
    """The manifest the run that wrote ``checkpoint`` trained on (RUN/fit_config.json beside
    RUN/checkpoints/), or None when the run recorded none."""
    config = checkpoint.parent.parent / "fit_config.json"
    if not config.is_file():
        return None
    manifest = json.loads(config.read_text(encoding="utf-8")).get("manifest")
    return Path(manifest) if manifest else None


def has_threshold(model: torch.nn.Module) -> bool:
    """Whether the detector keeps a decision threshold in its config (``threshold_statistic``)."""
    return type(model).threshold_statistic is not DetectorModel.threshold_statistic


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    preprocess: PreprocessConfig | None = None,
    onnx: bool = True,
    calibrate: str | Path | None = None,
    calibrate_split: str = "val",
    probability_mapping: bool = True,
    sources: dict[str, str] | None = None,
) -> ExportResult:
    """Export ``checkpoint`` to ``out`` (a stem: ``weights/fusion`` → ``weights/fusion.*``).

    A detector with a decision threshold in its config (MDS's ``distance_threshold``) gets it
    chosen on ``calibrate_split`` of the ``calibrate`` manifest (default: the manifest the run
    trained on) before anything is written, so the weights JSON, the graph and the ONNX file
    all carry it; the choice is recorded under ``threshold_calibration`` in the JSON.

    With ``probability_mapping``, the probability mapping (``train.calibration``: safe across
    the split's sources) is fitted on the same split when it holds real and fake videos, and
    stored in the JSON's ``calibration`` section, which every runtime applies."""
    checkpoint = Path(checkpoint)
    module = load_checkpoint(checkpoint)
    model = module.scoring_model().eval()
    extra = checkpoint_extra(checkpoint)
    manifest = Path(calibrate) if calibrate else run_manifest(checkpoint)
    if has_threshold(model):
        if manifest is None:
            log.warning("%s: no manifest to choose the decision threshold on: kept the config's", checkpoint)
        else:
            from train.evaluate import choose_model_threshold

            choice = choose_model_threshold(model, manifest, calibrate_split)
            model.set_threshold(choice.threshold)
            extra["threshold_calibration"] = {**choice.to_dict(), "manifest": str(manifest)}
            log.info(
                "decision threshold %.4f: balanced accuracy %.3f on %d %s videos (%d fake)",
                choice.threshold,
                choice.balanced_accuracy,
                choice.videos,
                calibrate_split,
                choice.fakes,
            )
    calibration = None
    if probability_mapping and manifest is not None and manifest.is_file():
        fit = fit_probability_mapping(model, manifest, calibrate_split, sources)
        if fit is not None:
            calibration = fit.calibration.to_dict()
            extra["calibration_fit"] = fit.to_dict()
    if preprocess is None:
        stored = module.hparams.get("preprocess")
        if stored is None:
            log.warning("%s records no PreprocessConfig: exporting the default one", checkpoint)
        preprocess = PreprocessConfig.from_dict(stored) if stored else PreprocessConfig()
    problem = model.preprocess_problem(model.config, preprocess)
    if problem:
        raise ExportError(f"{checkpoint}: {problem}")
    preprocess = scoring_preprocess(preprocess, model.input_names)
    weights = save_weights(
        weights_stem(out),
        model.state_dict(),
        model.arch,
        model.config.to_dict(),
        preprocess.to_dict(),
        extra=extra,
        calibration=calibration,
    )
    result = ExportResult(
        weights=weights, config=weights.with_suffix(".json"), onnx=None, onnx_max_abs_diff=None
    )
    if onnx:
        result.onnx, result.onnx_max_abs_diff = write_checked_onnx(model, weights.with_suffix(".onnx"))
    return result


def fit_probability_mapping(
    model: torch.nn.Module, manifest: Path, split: str = "val", sources: dict[str, str] | None = None
):
    """``train.calibration.fit_across_sources`` on ``split`` of ``manifest`` (videos grouped by
    ``sources`` where given), logged; None (with a warning) when that split lacks real or fake
    videos."""
    from train.calibration import fit_on_manifest, format_fit

    try:
        fit = fit_on_manifest(model, manifest, split, sources)
    except ValueError as err:
        log.warning("no probability mapping fitted: %s", err)
        return None
    log.info("%s", format_fit(fit))
    return fit


def weights_stem(out: str | Path) -> Path:
    """``out`` without one of our weights suffixes (``.safetensors``, ``.json``, ``.onnx``);
    other dots stay (``mobilenet0.25``)."""
    out = Path(out)
    return out.with_suffix("") if out.suffix in (".safetensors", ".json", ".onnx") else out


def write_fitted_weights(
    model: torch.nn.Module,
    out: str | Path,
    preprocess: PreprocessConfig,
    extra: dict[str, Any],
    onnx: bool = True,
) -> tuple[Path, Path | None, float | None]:
    """A model fitted outside Lightning (the ``fit-*`` commands) → ``<stem>.safetensors`` +
    JSON with its scoring preprocessing and ``extra``, and (``onnx``) the ONNX graph checked
    against torch; returns the tensors' path, the ONNX path and the measured difference."""
    weights = save_weights(
        weights_stem(out),
        model.state_dict(),
        model.arch,
        model.config.to_dict(),
        scoring_preprocess(preprocess, model.input_names).to_dict(),
        extra=extra,
    )
    if not onnx:
        return weights, None, None
    onnx_path, difference = write_checked_onnx(model.eval(), weights.with_suffix(".onnx"))
    return weights, onnx_path, difference


def write_checked_onnx(model: torch.nn.Module, path: Path) -> tuple[Path, float]:
    """``model`` → ONNX at ``path``, refused (``ExportError``) unless ONNX Runtime agrees with
    torch within ``ONNX_TOLERANCE``; returns the file and the measured difference."""
    written = export_onnx(model, path)
    difference = onnx_difference(model, written)
    if difference > ONNX_TOLERANCE:
        raise ExportError(f"{written}: ONNX Runtime differs from torch by {difference:.2e}")
    return written, difference


def onnx_difference(model: torch.nn.Module, path: Path, batch: int = 3) -> float:
    """Max |difference| between torch and ONNX Runtime over every output (relative to the
    output's largest |value| when that exceeds 1), on random inputs
    (another batch size than the export's, so the dynamic batch axis is exercised too); inf when
    the outputs' number, shapes or NaN positions differ."""
    import onnxruntime as ort

    inputs = model.example_inputs(batch, seed=1)
    with torch.no_grad():
        outputs = model(*inputs)
    expected = [o.numpy() for o in ((outputs,) if isinstance(outputs, torch.Tensor) else outputs)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
    if len(got) != len(expected):
        return math.inf
    worst = 0.0
    for a, b in zip(got, expected, strict=True):  # every output; NaN (padding) must match NaN
        if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
            return math.inf
        both = ~np.isnan(a)
        # float32 rounding grows with magnitude: a saturated logit of 20 differs by ~1e-3 between
        # runtimes. Compare relative to the output's scale (absolute while that is below 1).
        scale = max(1.0, float(np.abs(b[both]).max(initial=0.0)))
        worst = max(worst, float(np.abs(a[both] - b[both]).max(initial=0.0)) / scale)
    return worst


def export_weights(source: str | Path, out: str | Path | None = None, onnx: bool = True) -> ExportResult:
    """A weights pair (name or path stem) → ``<out>.onnx`` from the current model code, with the
    pair's safetensors and JSON unchanged (copied byte for byte when ``out`` is another stem)."""
    from models.registry import load_model

    loaded = load_model(source)
    model = loaded.module.eval()
    weights = Path(loaded.path)
    stem = weights_stem(out if out is not None else weights.with_suffix(""))
    target = stem.with_suffix(".safetensors")
    if target.resolve() != weights.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, target)
        shutil.copyfile(weights.with_suffix(".json"), target.with_suffix(".json"))
    result = ExportResult(target, target.with_suffix(".json"), None, None)
    if onnx:
        result.onnx, result.onnx_max_abs_diff = write_checked_onnx(model, target.with_suffix(".onnx"))
    return result
