"""The per-detector inference cost bench runs every detector through the submission's scoring path."""

from __future__ import annotations

from bench.detectors import bench_samples, detector_names, main, model_cost
from core.preprocess_config import PreprocessConfig
from models.registry import create_model


def test_bench_covers_every_detector_and_scores_like_the_submission(capsys):
    assert set(detector_names()) >= {"meso4", "mesoinception4", "efficientnet_b0", "efficientnet_lstm"}
    assert "retinaface" not in detector_names() and "fusion_tiny" in detector_names()
    pre = PreprocessConfig().replace("sample", num_frames=2).replace("track", crop_size=64)
    samples = bench_samples(3, pre)
    assert samples[0].faces.shape == (2, 64, 64, 3) and samples[0].latency is not None
    model = create_model("meso4", num_frames=2, img_size=32)
    cost = model_cost("meso4", model, samples, repeat=1, budget=1.0, onnx=True, threads=1)
    # at 32² the head's first dense layer sees 16·1·1 values instead of 256²'s 16·8·8
    assert cost.parameters == 27_977 - 16 * (16 * 8 * 8 - 16)
    assert cost.torch_ms > 0 and cost.onnxruntime_ms > 0 and cost.inputs_ms > 0
    assert main(["--models", "meso5"]) == 2
    assert "unknown detectors ['meso5']" in capsys.readouterr().err
