"""What executes a network: torch, ONNX Runtime or TensorRT, and the choice between them.

Every network call in the pipeline goes through a ``Runtime``: numpy arrays in (batch first), a
tuple of numpy arrays out, so preprocessing and scoring never know which one runs.
``make_runtime("auto", ...)`` takes TensorRT on an NVIDIA GPU when it is installed, else ONNX
Runtime, else torch; ``make_model_runtime`` does the same for a weights pair, running the
``.onnx`` export (``models.onnx_export``) that sits beside its tensors.

torch is imported only by the runtimes that need it (torch itself; TensorRT, whose buffers are
torch CUDA tensors): ONNX Runtime on a weights pair's ``.onnx`` runs in an install without torch
(``make_model_runtime`` builds no torch module then). TensorRT is imported lazily too (it is not
installable on CPU-only machines); the engine it builds
from an ONNX file is cached on disk, keyed by everything that makes an engine non-portable:
GPU model, compute capability, TensorRT version, the ONNX file's sha256, precision and the
batch range of its optimisation profile.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from core.device import RUNTIMES, resolve_device
from core.files import atomic_write, sha256_file
from core.optional_torch import INSTALL_HINT, require_torch, torch_available
from core.scratch import scratch_dir, writable

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class Runtime(Protocol):
    name: str

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]: ...


class RuntimeUnavailable(RuntimeError):
    """The requested runtime cannot run here (package or GPU missing)."""


def _require_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX model not found")
    return path


# ---------------------------------------------------------------------------------------------
# torch


class TorchRuntime:
    """Runs a torch module; on CUDA optionally in fp16 (outputs come back as float32).

    ``channels_last``: convolution weights and 4-D/5-D inputs in channels-last memory order, which
    oneDNN's CPU convolutions run faster (SyncNet: 27 % less CPU time per lip window, 20 % per audio
    window, measured on 1 thread); the numbers are the same up to float rounding."""

    name = "torch"

    def __init__(
        self,
        module: torch.nn.Module,
        device: str | torch.device = "cpu",
        fp16: bool = False,
        channels_last: bool = False,
    ):
        import torch

        self.device = torch.device(device)
        self.fp16 = fp16 and self.device.type == "cuda"
        self.channels_last = channels_last
        self.module = module.eval().to(self.device)
        if self.fp16:
            self.module = self.module.half()
        if channels_last:
            for param in self.module.parameters():
                param.data = _to_channels_last(param.data)

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        import torch

        with torch.inference_mode():
            tensors = []
            for x in inputs:
                t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
                if self.fp16 and t.is_floating_point():
                    t = t.half()
                if self.channels_last:
                    t = _to_channels_last(t)
                tensors.append(t)
            out = self.module(*tensors)
            if isinstance(out, torch.Tensor):
                out = (out,)
            return tuple(o.float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy() for o in out)


def _to_channels_last(t: torch.Tensor) -> torch.Tensor:
    import torch

    if t.ndim == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if t.ndim == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t


# ---------------------------------------------------------------------------------------------
# ONNX Runtime

_ORT_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(bool)": np.bool_,
}


def choose_providers(
    available: Sequence[str],
    wanted: str | Sequence[Any] = "auto",
    cache_dir: Path | None = None,
    fp16: bool = True,
    tensorrt_libs: bool = True,
    device_id: int = 0,
) -> list[Any]:
    """Execution providers in preference order. ``"auto"``: TensorRT (only with
    ``tensorrt_libs``: TensorRT's own libraries load), CUDA, then CPU, each where this
    onnxruntime build has it, the GPU ones on GPU ``device_id`` (``cuda:N``'s N); ``"cpu"``:
    CPU only; a list is used as given."""
    if not isinstance(wanted, str):
        return list(wanted)
    if wanted == "cpu":
        return ["CPUExecutionProvider"]
    if wanted != "auto":
        raise ValueError(f"providers must be 'auto', 'cpu' or a list, not {wanted!r}")
    chosen: list[Any] = []
    if "TensorrtExecutionProvider" in available and tensorrt_libs:
        options: dict[str, Any] = {"trt_fp16_enable": bool(fp16)}
        if cache_dir is not None:
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
        if device_id:
            options["device_id"] = device_id
        chosen.append(("TensorrtExecutionProvider", options))
    if "CUDAExecutionProvider" in available:
        chosen.append(
            ("CUDAExecutionProvider", {"device_id": device_id}) if device_id else "CUDAExecutionProvider"
        )
    chosen.append("CPUExecutionProvider")
    return chosen


def _provider_name(provider: Any) -> str:
    return provider if isinstance(provider, str) else provider[0]


def tensorrt_libs_loadable() -> bool:
    """Whether TensorRT 10's libraries (libnvinfer, libnvonnxparser) load: ONNX Runtime's
    TensorRT provider needs them, and PyPI's onnxruntime-gpu lists that provider without them
    (then every session would warn that it failed). The tensorrt package's import loads them
    from its tensorrt_libs wheel; else they must be on the loader's path."""
    if importlib.util.find_spec("tensorrt") is not None:
        try:
            import tensorrt  # noqa: F401
        except Exception:  # a broken TensorRT install is as good as none
            return False
    try:
        for name in ("libnvinfer.so.10", "libnvonnxparser.so.10"):
            ctypes.CDLL(name)
    except OSError:
        return False
    return True


def preload_cuda_libraries(ort: Any) -> None:
    """Load the CUDA and cuDNN libraries of the nvidia-* pip wheels (onnxruntime-gpu[cuda,cudnn])
    before a CUDA session: ONNX Runtime's CUDA provider finds them on no path of its own (its
    library has no RPATH). ``onnxruntime.preload_dlls`` (1.21+) does it and prints what fails
    to load: that goes to the log instead of stdout."""
    if not hasattr(ort, "preload_dlls"):
        return
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
    if printed.getvalue().strip():
        log.warning("onnxruntime.preload_dlls: %s", " ".join(printed.getvalue().split()))


class OnnxRuntimeRuntime:
    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        providers: str | Sequence[Any] = "auto",
        threads: int = 0,
        cache_dir: str | os.PathLike | None = None,
        fp16: bool = True,
        spinning: bool = True,
        device_id: int = 0,
    ):
        """``threads``: intra-op threads (0 = onnxruntime's default, all cores). ``cache_dir``
        and ``fp16`` apply to ONNX Runtime's own TensorRT provider when it is chosen;
        ``device_id``: the GPU its GPU providers use.
        ``spinning=False``: idle pool threads sleep instead of spinning (for a network that
        shares the cores with other work between calls)."""
        import onnxruntime as ort

        self.path = _require_file(onnx_path)
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
        available = ort.get_available_providers()
        gpu_asked = providers == "auto" and "CUDAExecutionProvider" in available
        chosen = choose_providers(
            available,
            providers,
            Path(cache_dir) if cache_dir else None,
            fp16,
            tensorrt_libs=gpu_asked and tensorrt_libs_loadable(),
            device_id=device_id,
        )
        names = [_provider_name(p) for p in chosen]
        if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(names):
            preload_cuda_libraries(ort)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=chosen)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise RuntimeError(f"{self.path}: ONNX Runtime could not load the model: {e}") from e
        lost = [n for n in names if n != "CPUExecutionProvider" and n not in self.session.get_providers()]
        if lost:  # ONNX Runtime falls back to the CPU with a message of its own; say so in ours
            log.warning(
                "%s: %s did not load (ONNX Runtime's message above says why): running on its CPU "
                "execution provider",
                self.path.name,
                " and ".join(lost),
            )
        inputs = self.session.get_inputs()
        self.input_names = [i.name for i in inputs]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_types = [_ORT_NUMPY_TYPES.get(i.type) for i in inputs]

    @property
    def providers(self) -> list[str]:
        """The providers the session actually uses."""
        return self.session.get_providers()

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        if len(inputs) != len(self.input_names):
            raise ValueError(
                f"{self.path.name} takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}"
            )
        feed = {
            name: np.ascontiguousarray(x, dtype=dtype) if dtype is not None else np.ascontiguousarray(x)
            for name, x, dtype in zip(self.input_names, inputs, self._input_types, strict=True)
        }
        return tuple(self.session.run(None, feed))


# ---------------------------------------------------------------------------------------------
# TensorRT (10.x Python API)


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise RuntimeUnavailable(
            "TensorRT is not installed (it needs an NVIDIA GPU machine: pip install 'tensorrt>=10,<11'); "
            "use the 'onnxruntime' or 'torch' runtime instead"
        ) from e
    major = int(str(trt.__version__).split(".")[0])
    if major != 10:
        raise RuntimeUnavailable(
            f"TensorRT {trt.__version__} is installed; this runtime is written for TensorRT 10"
        )
    return trt


def tensorrt_available() -> bool:
    """TensorRT and torch are importable and torch sees an NVIDIA (CUDA, not ROCm) GPU."""
    if importlib.util.find_spec("tensorrt") is None or not torch_available():
        return False
    import torch

    return (
        torch.cuda.is_available()
        and torch.version.cuda is not None
        and getattr(torch.version, "hip", None) is None
    )


def default_engine_cache() -> Path:
    """``weights/cache``, or a scratch folder when that cannot be written (a read-only image):
    an engine built there lasts only for the run, but the run works."""
    from weights.store import weights_dir

    folder = weights_dir() / "cache"
    if writable(folder):
        return folder
    return scratch_dir("engines") or folder


def engine_cache_path(
    cache_dir: Path,
    onnx_path: Path,
    onnx_sha256: str,
    gpu_name: str,
    capability: tuple[int, int],
    trt_version: str,
    fp16: bool,
    max_batch: int,
) -> Path:
    """Where the engine for this (model, GPU, TensorRT, precision, batch range) is cached."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
    precision = "fp16" if fp16 else "fp32"
    name = (
        f"{onnx_path.stem}-{onnx_sha256[:16]}-{gpu}-sm{capability[0]}{capability[1]}"
        f"-trt{trt_version}-{precision}-b{max_batch}.engine"
    )
    return Path(cache_dir) / name


def profile_shapes(
    name: str, shape: Sequence[int], max_batch: int, opt_batch: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of one input for the optimisation profile: only the batch
    axis (first, -1 in the ONNX graph) may vary; it ranges 1..max_batch."""
    shape = tuple(int(d) for d in shape)
    if not shape:
        return shape, shape, shape
    free = [i for i, d in enumerate(shape) if d < 0]
    if any(i != 0 for i in free):
        raise ValueError(
            f"input {name!r} has shape {shape}: only the first (batch) axis may be dynamic; "
            "export with fixed frame/image sizes"
        )
    if not free:  # exported with a fixed batch
        return shape, shape, shape
    rest = shape[1:]
    opt = max(1, min(opt_batch, max_batch))
    return (1, *rest), (opt, *rest), (max_batch, *rest)


_TORCH_DTYPES = ("FLOAT", "HALF", "BF16", "INT8", "UINT8", "INT32", "INT64", "BOOL")  # TensorRT's names


def _torch_dtype_of(trt_name: str) -> torch.dtype:
    import torch

    return {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "BOOL": torch.bool,
    }[trt_name]


class TensorRTRuntime:
    """An ONNX file compiled by TensorRT 10 for this GPU; torch CUDA tensors are the buffers."""

    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        cache_dir: str | os.PathLike | None = None,
        fp16: bool = True,
        max_batch: int = 32,
        opt_batch: int | None = None,
        device: str | torch.device = "cuda",
        workspace_bytes: int = 4 << 30,
    ):
        trt = _import_tensorrt()
        self._trt = trt
        require_torch(
            "the TensorRT runtime (its buffers are torch CUDA tensors)", "use --runtime onnxruntime"
        )
        import torch

        if not torch.cuda.is_available():
            raise RuntimeUnavailable("TensorRT needs a CUDA GPU and torch sees none")
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"TensorRT runs on a CUDA device, not {self.device}")
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.path = _require_file(onnx_path)
        self.fp16 = fp16
        self.max_batch = int(max_batch)
        self.opt_batch = int(opt_batch or max(1, self.max_batch // 2))
        self.workspace_bytes = int(workspace_bytes)

        if cache_dir is None:
            cache_dir = default_engine_cache()
        props = torch.cuda.get_device_properties(self.device)
        self.engine_path = engine_cache_path(
            Path(cache_dir),
            self.path,
            sha256_file(self.path),
            props.name,
            (props.major, props.minor),
            str(trt.__version__),
            fp16,
            self.max_batch,
        )
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self.engine = self._load_or_build()
            self.context = self.engine.create_execution_context()
            self._stream = torch.cuda.Stream(self.device)
        if self.context is None:
            raise RuntimeError(f"{self.engine_path}: TensorRT could not create an execution context")

        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self._dtypes = {n: self._torch_dtype(n) for n in names}

    def _torch_dtype(self, name: str) -> torch.dtype:
        dtype = self.engine.get_tensor_dtype(name)
        if dtype.name not in _TORCH_DTYPES:
            raise RuntimeError(f"{self.engine_path}: tensor {name!r} has unsupported type {dtype.name}")
        return _torch_dtype_of(dtype.name)

    def _load_or_build(self):
        if self.engine_path.is_file():
            engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is not None:
                return engine
            warnings.warn(f"{self.engine_path}: cached engine unusable; rebuilding", stacklevel=3)
        data = self._build()
        atomic_write(self.engine_path, data)
        engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise RuntimeError(f"{self.engine_path}: TensorRT could not load the engine it just built")
        return engine

    def _build(self) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(self.path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"{self.path}: TensorRT could not parse the ONNX model: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_bytes)
        if self.fp16:
            config.set_flag(trt.BuilderFlag.FP16)  # layers may run in fp16; I/O stays as exported
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            lo, opt, hi = profile_shapes(tensor.name, tuple(tensor.shape), self.max_batch, self.opt_batch)
            profile.set_shape(tensor.name, lo, opt, hi)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"{self.path}: TensorRT engine build failed (see TensorRT's log above)")
        return bytes(serialized)

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        if len(inputs) != len(self.input_names):
            raise ValueError(
                f"{self.path.name} takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}"
            )
        batch = len(inputs[0]) if np.ndim(inputs[0]) else 1
        if batch <= self.max_batch:
            return self._run(inputs)
        # The engine's profile stops at max_batch: run larger batches in slices.
        parts = [
            self._run(tuple(x[s : s + self.max_batch] for x in inputs))
            for s in range(0, batch, self.max_batch)
        ]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(len(parts[0])))

    def _run(self, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        import torch

        ctx = self.context
        with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            keep = []  # the buffers must outlive the asynchronous execution
            for name, x in zip(self.input_names, inputs, strict=True):
                t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self._dtypes[name])
                if not ctx.set_input_shape(name, tuple(t.shape)):
                    raise ValueError(
                        f"{self.path.name}: input {name!r} shape {tuple(t.shape)} is outside the engine's profile"
                    )
                ctx.set_tensor_address(name, t.data_ptr())
                keep.append(t)
            outputs = []
            for name in self.output_names:
                out = torch.empty(
                    tuple(ctx.get_tensor_shape(name)), dtype=self._dtypes[name], device=self.device
                )
                ctx.set_tensor_address(name, out.data_ptr())
                outputs.append(out)
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"{self.engine_path}: TensorRT execution failed")
            self._stream.synchronize()
        return tuple(o.float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy() for o in outputs)


# ---------------------------------------------------------------------------------------------


def cuda_index(device: str) -> int:
    """``cuda:N`` → N; ``cuda``, ``cpu`` and anything else → 0."""
    kind, _, index = str(device).partition(":")
    if kind != "cuda" or not index:
        return 0
    if not index.isdigit():
        raise ValueError(f"device {device!r}: expected cuda:N with N a GPU index")
    return int(index)


def make_runtime(
    kind: str = "auto",
    module: torch.nn.Module | None = None,
    onnx_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    *,
    fp16: bool = True,
    cache_dir: str | os.PathLike | None = None,
    max_batch: int = 32,
    threads: int = 0,
) -> Runtime:
    """A runtime of ``kind`` ("auto" | "torch" | "onnxruntime" | "tensorrt").

    ``auto``: TensorRT when ``onnx_path`` is given, the device is an NVIDIA GPU and TensorRT is
    importable; else ONNX Runtime when ``onnx_path`` is given; else torch on ``module``.
    A TensorRT failure under ``auto`` falls back to ONNX Runtime with a warning.
    ``device`` defaults to ``core.device.resolve_device("auto")`` (the first GPU torch sees,
    else the CPU).
    """
    dev = str(device) if device is not None else resolve_device("auto")
    on_gpu = dev.startswith("cuda")
    if kind == "torch":
        if module is None:
            raise ValueError("the torch runtime needs a module")
        return TorchRuntime(module, dev, fp16=fp16 and on_gpu)
    if kind == "onnxruntime":
        if onnx_path is None:
            raise ValueError("the onnxruntime runtime needs an onnx_path")
        return OnnxRuntimeRuntime(
            onnx_path,
            providers="auto" if on_gpu else "cpu",
            threads=threads,
            cache_dir=cache_dir,
            fp16=fp16,
            device_id=cuda_index(dev),
        )
    if kind == "tensorrt":
        if onnx_path is None:
            raise ValueError("the tensorrt runtime needs an onnx_path")
        return TensorRTRuntime(onnx_path, cache_dir=cache_dir, fp16=fp16, max_batch=max_batch, device=dev)
    if kind != "auto":
        raise ValueError(f"unknown runtime {kind!r}: use {', '.join(RUNTIMES)}")

    if onnx_path is not None and on_gpu and tensorrt_available():
        try:
            return TensorRTRuntime(onnx_path, cache_dir=cache_dir, fp16=fp16, max_batch=max_batch, device=dev)
        except (RuntimeError, ValueError) as e:
            warnings.warn(f"TensorRT unavailable for {onnx_path} ({e}); using ONNX Runtime", stacklevel=2)
    if onnx_path is not None and importlib.util.find_spec("onnxruntime") is not None:
        return OnnxRuntimeRuntime(
            onnx_path, providers="auto" if on_gpu else "cpu", threads=threads, device_id=cuda_index(dev)
        )
    if module is not None:
        return TorchRuntime(module, dev, fp16=fp16 and on_gpu)
    raise ValueError("make_runtime('auto') needs an onnx_path or a module")


def make_model_runtime(
    kind: str,
    weights_path: Path,
    device: str,
    load_module: Callable[[], torch.nn.Module],
    max_batch: int = 16,
) -> Runtime:
    """The runtime asked for, for the model of the weights pair ``weights_path``, or torch with
    a log line saying why when it cannot be had.

    ONNX Runtime and TensorRT run the ``.onnx`` export that sits beside the weights
    (``fusion.safetensors`` -> ``fusion.onnx``); only torch runs the tensors, so
    ``load_module`` (which builds the torch network from them) is called only then. Without
    torch installed, a path that needs it raises ``TorchMissing`` naming the file or option."""
    if kind not in RUNTIMES:
        raise ValueError(f"unknown runtime {kind!r}; choose from {RUNTIMES}")
    onnx = weights_path.with_suffix(".onnx")
    onnx_path = onnx if onnx.is_file() else None
    if (
        onnx_path is not None
        and weights_path.is_file()
        # a checkout writes both files within moments of each other, in either order
        and onnx.stat().st_mtime < weights_path.stat().st_mtime - 60
    ):
        log.warning("%s is older than %s: re-export it if the weights changed", onnx, weights_path.name)
    if onnx_path is None:
        require_torch(
            f"{weights_path} has no ONNX export ({onnx.name} is absent), and running its tensors",
            f"write {onnx.name} where torch is installed (`python -m train export --from-weights "
            f"{weights_path.with_suffix('')}`) and copy it beside the weights",
        )
        if kind in ("onnxruntime", "tensorrt"):
            log.warning("--runtime %s needs %s, which is absent: using torch", kind, onnx)
        kind = "torch"
    if kind == "torch":
        require_torch(
            "--runtime torch", "use --runtime auto or onnxruntime (the ONNX exports beside the weights)"
        )
        return make_runtime("torch", module=load_module(), device=device)
    try:
        # max_batch: a TensorRT engine is built for batches up to this size
        return make_runtime(kind, onnx_path=onnx_path, device=device, max_batch=max_batch)
    except Exception as exc:  # any failure of an optional backend: torch works where installed
        if not torch_available():
            raise RuntimeUnavailable(
                f"runtime {kind} cannot run {onnx} ({type(exc).__name__}: {exc}), and torch, the "
                f"fallback, is not installed: {INSTALL_HINT}"
            ) from exc
        log.warning("runtime %s unavailable (%s: %s): using torch", kind, type(exc).__name__, exc)
        return make_runtime("torch", module=load_module(), device=device)
