"""ONNX export (fusion model with mmaction2's TimeSformer, RetinaFace, SyncNet) and the runtimes.

Parity: ONNX Runtime on CPU matches torch within 1e-4 (tiny fusion, RetinaFace, SyncNet) and
1e-3 (base fusion). TensorRT needs an NVIDIA GPU; its parity test runs only where one is.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from models.fusion import FusionConfig, FusionModel
from models.onnx_export import OnnxSpec, export_onnx, onnx_io_names
from models.runtimes import (
    OnnxRuntimeRuntime,
    RuntimeUnavailable,
    TensorRTRuntime,
    TorchRuntime,
    choose_providers,
    cuda_index,
    engine_cache_path,
    make_runtime,
    preload_cuda_libraries,
    profile_shapes,
    tensorrt_available,
)

torch.set_num_threads(2)


def _numpy(inputs):
    return tuple(t.numpy() for t in inputs)


def _torch_out(module, inputs):
    with torch.no_grad():
        out = module(*inputs)
    return (out,) if isinstance(out, torch.Tensor) else out


def _max_diff(a, b) -> float:
    return max(float(np.abs(np.asarray(x) - y.numpy()).max()) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    torch.manual_seed(0)
    model = FusionModel(FusionConfig.tiny()).eval()
    path = tmp_path_factory.mktemp("onnx") / "fusion_tiny.onnx"
    export_onnx(model, path)  # as the model describes itself: onnx_spec()
    return model, path


# --- export ----------------------------------------------------------------------------------


def test_fusion_export_matches_torch_for_any_batch(tiny_export):
    model, path = tiny_export
    runtime = OnnxRuntimeRuntime(path, providers="cpu", threads=2)
    assert runtime.providers == ["CPUExecutionProvider"]
    for batch in (1, 3, 5):  # exported with batch 2: the batch axis is free
        inputs = model.example_inputs(batch, seed=batch)
        out = runtime(*_numpy(inputs))
        assert out[0].shape == (batch, 2)
        assert _max_diff(out, _torch_out(model, inputs)) <= 1e-4


def test_export_writes_a_checked_file_atomically(tiny_export):
    model, path = tiny_export
    assert onnx_io_names(path) == (["frames", "latency", "has_latency"], ["logits"])
    graph = onnx.load(str(path), load_external_data=False).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporaries left


def test_failed_export_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="2 example inputs but 1 input names"):
        OnnxSpec(("x",), ("y",), (torch.zeros(1, 3), torch.zeros(1)))

    class Broken(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eig(x)[0]  # complex output: no ONNX equivalent

    spec = OnnxSpec.batch_first(["x"], ["y"], (torch.eye(3)[None],))
    with pytest.raises(Exception):  # noqa: B017 - whatever the exporter raises
        export_onnx(Broken(), tmp_path / "broken.onnx", spec)
    assert list(tmp_path.iterdir()) == []


def test_fixed_batch_export_keeps_static_shapes(tmp_path):
    model = torch.nn.Linear(4, 2).eval()
    path = export_onnx(model, tmp_path / "lin.onnx", OnnxSpec(("x",), ("y",), (torch.randn(3, 4),)))
    dim = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_value == 3 and not dim.dim_param


@pytest.mark.slow
def test_fusion_export_with_the_torch_export_exporter(tmp_path):
    torch.manual_seed(0)
    model = FusionModel(FusionConfig.tiny(num_layers=1)).eval()
    path = export_onnx(model, tmp_path / "dyn.onnx", dynamo=True)
    runtime = OnnxRuntimeRuntime(path, providers="cpu", threads=2)
    inputs = model.example_inputs(3, seed=1)
    assert _max_diff(runtime(*_numpy(inputs)), _torch_out(model, inputs)) <= 1e-4


@pytest.mark.slow
def test_base_fusion_export_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = FusionModel(FusionConfig.base()).eval()
    start = time.perf_counter()
    path = export_onnx(model, tmp_path / "base.onnx")
    exported = time.perf_counter() - start
    runtime = OnnxRuntimeRuntime(path, providers="cpu", threads=2)
    inputs = model.example_inputs(1, seed=1)
    diff = _max_diff(runtime(*_numpy(inputs)), _torch_out(model, inputs))
    print(f"base fusion: export {exported:.1f} s, max |onnxruntime - torch| {diff:.2e}")
    assert diff <= 1e-3


def test_retinaface_export_matches_torch(tmp_path):
    from models.retinaface import build_retinaface, fuse_batchnorm

    torch.manual_seed(0)
    model = fuse_batchnorm(build_retinaface("mobilenetv2").eval())
    path = export_onnx(model, tmp_path / "retinaface.onnx")
    runtime = OnnxRuntimeRuntime(path, providers="cpu", threads=2)
    image = torch.randn(3, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    out = runtime(image.numpy())
    assert [o.shape for o in out] == [tuple(t.shape) for t in _torch_out(model, (image,))]
    assert _max_diff(out, _torch_out(model, (image,))) <= 1e-4


def test_syncnet_export_matches_torch(tmp_path):
    from models.syncnet import AUDIO_INPUT, LIP_INPUT, SyncNet

    torch.manual_seed(0)
    model = SyncNet().eval()
    g = torch.Generator().manual_seed(1)
    path = export_onnx(model, tmp_path / "syncnet.onnx")
    assert onnx_io_names(path) == (["video", "audio"], ["lip", "aud"])
    runtime = make_runtime("onnxruntime", onnx_path=path, device="cpu", threads=2)
    inputs = (torch.rand(3, *LIP_INPUT, generator=g) * 255, torch.randn(3, *AUDIO_INPUT, generator=g))
    expected = _torch_out(model, inputs)
    scale = max(float(e.abs().max()) for e in expected)
    assert _max_diff(runtime(*_numpy(inputs)), expected) <= 1e-4 * max(1.0, scale)


# --- ONNX Runtime runtime --------------------------------------------------------------------


def test_onnxruntime_errors_name_the_file(tmp_path, tiny_export):
    with pytest.raises(FileNotFoundError, match=r"absent\.onnx: ONNX model not found"):
        OnnxRuntimeRuntime(tmp_path / "absent.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(RuntimeError, match=r"bad\.onnx: ONNX Runtime could not load the model"):
        OnnxRuntimeRuntime(bad)
    runtime = OnnxRuntimeRuntime(tiny_export[1], providers="cpu")
    with pytest.raises(ValueError, match=r"takes 3 inputs \['frames', 'latency', 'has_latency'\], got 1"):
        runtime(np.zeros((1, 3, 4, 64, 64), np.float32))


def test_onnxruntime_casts_inputs_to_the_graph_types(tiny_export):
    model, path = tiny_export
    runtime = OnnxRuntimeRuntime(path, providers="cpu")
    inputs = model.example_inputs(2)
    as_float64 = tuple(t.double().numpy() for t in inputs)
    np.testing.assert_allclose(runtime(*as_float64)[0], runtime(*_numpy(inputs))[0], atol=1e-6)


def test_provider_choice():
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = choose_providers(everything, "auto", Path("/cache"), fp16=True)
    assert chosen[0] == (
        "TensorrtExecutionProvider",
        {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": "/cache"},
    )
    assert chosen[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["CPUExecutionProvider"], "auto") == ["CPUExecutionProvider"]
    assert choose_providers(everything, "cpu") == ["CPUExecutionProvider"]
    assert choose_providers(everything, ["CUDAExecutionProvider"]) == ["CUDAExecutionProvider"]
    with pytest.raises(ValueError):
        choose_providers(everything, "gpu")
    # PyPI's onnxruntime-gpu lists TensorRT's provider without TensorRT's libraries: CUDA first then
    without_trt = choose_providers(everything, "auto", Path("/cache"), tensorrt_libs=False)
    assert without_trt == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    # cuda:1: both GPU providers on GPU 1 (ONNX Runtime's own default is GPU 0)
    second = choose_providers(everything, "auto", None, device_id=1)
    assert second[0] == ("TensorrtExecutionProvider", {"trt_fp16_enable": True, "device_id": 1})
    assert second[1:] == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert choose_providers(everything, "cpu", device_id=1) == ["CPUExecutionProvider"]


def test_cuda_index_reads_the_gpu_of_a_device_name():
    assert [cuda_index(d) for d in ("cuda:3", "cuda", "cpu", "cuda:0")] == [3, 0, 0, 0]
    with pytest.raises(ValueError, match="cuda:N"):
        cuda_index("cuda:x")


def test_a_gpu_provider_that_does_not_load_is_logged(tiny_export, caplog):
    # this install's onnxruntime has no CUDA provider: ONNX Runtime runs the CPU one, and says so
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    _, path = tiny_export
    with caplog.at_level("WARNING", logger="models.runtimes"):
        runtime = OnnxRuntimeRuntime(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert runtime.providers == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider did not load" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="models.runtimes"):
        OnnxRuntimeRuntime(path, providers="cpu")
    assert "did not load" not in caplog.text


def test_preloading_cuda_libraries_logs_what_failed_instead_of_printing(caplog, capsys):
    class PrintingOrt:  # onnxruntime.preload_dlls prints each library it cannot load
        calls: list[dict] = []

        def preload_dlls(self, **kwargs):
            self.calls.append(kwargs)
            print("Failed to load libcudnn.so.9: not found")

    ort = PrintingOrt()
    with caplog.at_level("WARNING", logger="models.runtimes"):
        preload_cuda_libraries(ort)
    assert ort.calls == [{"cuda": True, "cudnn": True, "msvc": False}]
    assert capsys.readouterr().out == ""
    assert "Failed to load libcudnn.so.9" in caplog.text
    preload_cuda_libraries(object())  # an onnxruntime older than 1.21 has no preload_dlls: nothing to do


# --- TensorRT --------------------------------------------------------------------------------


def test_engine_cache_key_covers_everything_that_makes_an_engine_unportable():
    args = dict(
        cache_dir=Path("/c"),
        onnx_path=Path("/m/fusion.onnx"),
        onnx_sha256="ab" * 32,
        gpu_name="NVIDIA H100 80GB HBM3",
        capability=(9, 0),
        trt_version="10.3.0",
        fp16=True,
        max_batch=32,
    )
    path = engine_cache_path(**args)
    assert path.parent == Path("/c") and path.suffix == ".engine"
    assert "nvidia-h100-80gb-hbm3" in path.name and "sm90" in path.name and "trt10.3.0" in path.name
    variants = dict(
        onnx_sha256="cd" * 32,
        gpu_name="NVIDIA A100",
        capability=(8, 0),
        trt_version="10.4.0",
        fp16=False,
        max_batch=8,
    )
    for key, value in variants.items():
        assert engine_cache_path(**{**args, key: value}) != path, key


def test_profile_shapes_free_only_the_batch_axis():
    lo, opt, hi = profile_shapes("frames", (-1, 3, 8, 224, 224), max_batch=16, opt_batch=8)
    assert (lo, opt, hi) == ((1, 3, 8, 224, 224), (8, 3, 8, 224, 224), (16, 3, 8, 224, 224))
    assert profile_shapes("x", (4, 33), 16, 8) == ((4, 33),) * 3
    assert profile_shapes("x", (-1,), 16, 64)[1] == (16,)
    with pytest.raises(ValueError, match="only the first .batch. axis may be dynamic"):
        profile_shapes("image", (-1, 3, -1, -1), 16, 8)


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT and a GPU are present: see the parity test")
def test_tensorrt_unavailable_is_a_clear_error(tiny_export):
    with pytest.raises(RuntimeUnavailable, match="TensorRT"):
        TensorRTRuntime(tiny_export[1])
    with pytest.raises(RuntimeUnavailable, match="TensorRT"):
        make_runtime("tensorrt", onnx_path=tiny_export[1], device="cpu")


@pytest.mark.skipif(not tensorrt_available(), reason="needs TensorRT 10 and an NVIDIA GPU")
def test_tensorrt_matches_torch(tiny_export, tmp_path):
    model, path = tiny_export
    runtime = TensorRTRuntime(path, cache_dir=tmp_path, fp16=False, max_batch=4)
    inputs = model.example_inputs(6, seed=2)  # more than max_batch: run in slices
    assert _max_diff(runtime(*_numpy(inputs)), _torch_out(model, inputs)) <= 1e-3
    assert runtime.engine_path.is_file()
    again = TensorRTRuntime(path, cache_dir=tmp_path, fp16=False, max_batch=4)  # from the cache
    np.testing.assert_allclose(again(*_numpy(inputs))[0], runtime(*_numpy(inputs))[0], atol=1e-5)


# --- make_runtime ----------------------------------------------------------------------------


def test_make_runtime_picks_what_is_available(tiny_export):
    model, path = tiny_export
    inputs = model.example_inputs(2, seed=3)
    expected = _torch_out(model, inputs)

    torch_rt = make_runtime("torch", module=model, device="cpu")
    assert isinstance(torch_rt, TorchRuntime)
    ort_rt = make_runtime("onnxruntime", onnx_path=path, device="cpu")
    assert isinstance(ort_rt, OnnxRuntimeRuntime) and ort_rt.providers == ["CPUExecutionProvider"]
    auto_cpu = make_runtime("auto", module=model, onnx_path=path, device="cpu")
    assert auto_cpu.name == "onnxruntime"  # no GPU: TensorRT is never tried on the CPU
    assert make_runtime("auto", module=model, device="cpu").name == "torch"
    for runtime in (torch_rt, ort_rt, auto_cpu):
        assert _max_diff(runtime(*_numpy(inputs)), expected) <= 1e-4

    with pytest.raises(ValueError, match="unknown runtime 'cuda'"):
        make_runtime("cuda", module=model)
    with pytest.raises(ValueError, match="needs an onnx_path or a module"):
        make_runtime("auto", device="cpu")
    with pytest.raises(ValueError, match="needs a module"):
        make_runtime("torch")
