"""The shipped default detector (weights/detector.*): what ``make train-default`` writes, within
the size limit, and it tells real faces from their pseudo-fakes on footage it never saw."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import ROOT, shared_media

from core.preprocess_config import PreprocessConfig
from models.registry import model_entry
from submission.scoring import DetectorScorer
from train.cli import model_spec
from train.pseudo_fakes import MouthRerender, SelfBlend
from weights.store import load_weights

WEIGHTS = ROOT / "weights" / "detector"


def recipe_model() -> tuple[str, dict]:
    """The ``--model`` of the Makefile's DEFAULT_FIT: the recipe the shipped weights came from."""
    text = (ROOT / "Makefile").read_text()
    return model_spec(re.search(r"DEFAULT_FIT \?= --model (\S+)", text).group(1))


def test_the_shipped_weights_are_the_recipes_model_and_fit_the_limit():
    stored = load_weights(WEIGHTS)  # verifies the sha256 in the JSON
    arch, overrides = recipe_model()
    assert stored.arch == arch
    recipe_config = model_entry(arch).config_class.from_dict(overrides).to_dict()
    assert json.loads(json.dumps(recipe_config)) == stored.model_config
    size = sum(WEIGHTS.with_suffix(s).stat().st_size for s in (".safetensors", ".json", ".onnx"))
    assert size <= 25 * 2**20
    meta = json.loads(WEIGHTS.with_suffix(".json").read_text())
    # the recipe's cache: default preprocessing plus photos; scoring: no photos, and no SyncNet
    # search for a detector that does not read the latency vector
    assert PreprocessConfig.from_dict(meta["preprocess"]) == PreprocessConfig().replace("sync", weights="")
    card = (ROOT / "weights" / "README.md").read_text()
    assert meta["sha256"][:12] in card, "the model card names the weights it describes"


@pytest.fixture(scope="module")
def real_samples():
    from preprocess.pipeline import Preprocessor

    scorer = DetectorScorer.from_weights(WEIGHTS, runtime="torch")
    pre = Preprocessor(scorer.preprocess_config, syncnet=None)  # as run.sh would preprocess
    clips = ["lipnet_GRID_bbaf2n.mpg", "retalking_face_2.mp4", "pcavs_Pose_Source_00067.mp4"]
    return scorer, [pre.process(shared_media("real", c)).samples[0] for c in clips]


def test_pseudo_fakes_of_unseen_real_faces_score_higher_than_the_faces(real_samples):
    """Footage from ../shared/media (never trained on): each face and its forged copies."""
    scorer, samples = real_samples
    rng = np.random.default_rng(0)
    forged = [
        kind.forge(s, rng) for s in samples for kind in (SelfBlend(), MouthRerender()) for _ in range(2)
    ]
    real_p, fake_p = scorer.score(samples), scorer.score(forged)
    assert np.isfinite(real_p).all() and ((real_p >= 0) & (real_p <= 1)).all()
    pairs = np.array([[f > r for f in fake_p[4 * i : 4 * i + 4]] for i, r in enumerate(real_p)])
    assert pairs.mean() >= 0.75, (real_p, fake_p)


def test_the_shipped_onnx_carries_frame_logits_and_matches_torch(real_samples):
    """``weights/detector.onnx`` re-exported from the unchanged safetensors (``train export
    --from-weights``): both outputs, ONNX Runtime against torch on real faces."""
    from models.onnx_export import onnx_io_names
    from models.registry import load_model
    from models.runtimes import OnnxRuntimeRuntime

    assert onnx_io_names(WEIGHTS.with_suffix(".onnx")) == (["frames"], ["logits", "frame_logits"])
    scorer, samples = real_samples
    model = load_model(WEIGHTS).module
    inputs = type(model).batch_inputs(samples, model.config)
    torch_out = scorer.runtime(*inputs) if scorer.runtime.name == "torch" else None
    ort_out = OnnxRuntimeRuntime(WEIGHTS.with_suffix(".onnx"), providers="cpu", threads=1)(*inputs)
    assert torch_out is not None and len(ort_out) == len(torch_out) == 2
    assert ort_out[1].shape == (len(samples), model.config.num_frames)
    for got, want in zip(ort_out, torch_out, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(ort_out[1].mean(axis=1), ort_out[0][:, 0], atol=1e-5)
