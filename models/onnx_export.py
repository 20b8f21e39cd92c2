"""torch module → ONNX file, for ONNX Runtime and TensorRT, from the description each model gives.

A model that can be exported says how in ``onnx_spec()``: its input and output names, example
inputs, and which axes stay free (``OnnxSpec``); ``export_onnx(model, path)`` needs nothing else.

The default is torch's TorchScript-based exporter (``dynamo=False``): mmaction2's TimeSformer
(einops ``rearrange`` with a batch size read from the input, ``nn.MultiheadAttention``)
traces into a graph whose batch axis stays symbolic, it exports a ViT-B model in ~15 s on
two CPU cores, and the result matches torch to ~1e-6. The ``torch.export``-based exporter
(``dynamo=True``) also works for these models but takes several times longer; it is kept
selectable for when the TorchScript exporter is removed from torch; it writes opset >= 18.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.files import atomic_path

BATCH_AXIS = {0: "batch"}


@dataclass(frozen=True)
class OnnxSpec:
    """How one model is exported: names of its inputs and outputs, example inputs (their
    shapes and dtypes become the graph's) and the axes left free, by tensor name."""

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    example_inputs: tuple[torch.Tensor, ...]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.input_names) != len(self.example_inputs):
            raise ValueError(
                f"{len(self.example_inputs)} example inputs but {len(self.input_names)} input names"
            )

    @classmethod
    def batch_first(
        cls, input_names: Sequence[str], output_names: Sequence[str], example_inputs: Sequence[torch.Tensor]
    ) -> OnnxSpec:
        """The common case: only the first axis of every input and output is free."""
        names = (*input_names, *output_names)
        return cls(
            tuple(input_names), tuple(output_names), tuple(example_inputs), dict.fromkeys(names, BATCH_AXIS)
        )


def export_onnx(
    module: torch.nn.Module,
    path: str | os.PathLike,
    spec: OnnxSpec | None = None,
    opset: int = 17,
    dynamo: bool = False,
) -> Path:
    """Export ``module`` (in eval mode) to ``path`` atomically as ``spec`` (default: the
    module's own ``onnx_spec()``) describes; returns ``path``. The written file is checked with
    ``onnx.checker`` before it replaces ``path``."""
    import onnx

    path = Path(path)
    spec = spec if spec is not None else module.onnx_spec()
    was_training = module.training
    module.eval()
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter's notice
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # Strided slices are left unfolded: a note about the exporter, not about the model.
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            # An LSTM's zero initial state is built from the input's batch size in the graph;
            # the parity checks run other batch sizes than the export's to prove it.
            warnings.filterwarnings(
                "ignore", message="Exporting a model to ONNX with a batch_size other than 1"
            )
            if dynamo:
                warnings.filterwarnings("ignore", message="# The axis name")  # shared batch-axis note
                _export_dynamo(module, spec, tmp, opset)
            else:
                torch.onnx.export(
                    module,
                    spec.example_inputs,
                    str(tmp),
                    input_names=list(spec.input_names),
                    output_names=list(spec.output_names),
                    dynamic_axes=spec.dynamic_axes or None,
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
            onnx.checker.check_model(str(tmp))  # by path: works for models over 2 GB too
    finally:
        module.train(was_training)
    return path


def _export_dynamo(module: torch.nn.Module, spec: OnnxSpec, tmp: Path, opset: int) -> None:
    dims: dict[str, torch.export.Dim] = {}  # one Dim per axis name, shared across inputs
    dynamic_shapes = tuple(
        {
            axis: dims.setdefault(name, torch.export.Dim(name, min=1, max=4096))
            for axis, name in spec.dynamic_axes.get(input_name, {}).items()
        }
        or None
        for input_name in spec.input_names
    )
    program = torch.onnx.export(
        module,
        spec.example_inputs,
        None,
        input_names=list(spec.input_names),
        output_names=list(spec.output_names),
        dynamic_shapes=dynamic_shapes if spec.dynamic_axes else None,
        opset_version=max(opset, 18),  # the torch.export exporter starts at opset 18
        dynamo=True,
        verbose=False,
    )
    program.save(str(tmp), external_data=False)


def onnx_io_names(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Graph input and output names of an ONNX file (initialisers excluded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initialisers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initialisers]
    return inputs, [o.name for o in model.graph.output]
