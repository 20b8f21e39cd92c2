"""torch module → ONNX file, for ONNX Runtime and TensorRT.

The default is torch's TorchScript-based exporter (``dynamo=False``): mmaction2's TimeSformer
(einops ``rearrange`` with a batch size read from the input, ``nn.MultiheadAttention``)
traces into a graph whose batch axis stays symbolic, it exports a ViT-B model in ~15 s on
two CPU cores, and the result matches torch to ~1e-6. The ``torch.export``-based exporter
(``dynamo=True``) also works for these models but takes several times longer; it is kept
selectable for when the TorchScript exporter is removed from torch; it writes opset >= 18.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch


def export_onnx(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: str | os.PathLike,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_batch: bool = True,
    opset: int = 17,
    dynamo: bool = False,
) -> Path:
    """Export ``module`` (in eval mode) to ``path`` atomically; returns ``path``.

    With ``dynamic_batch`` the first axis of every input and output is named ``batch`` and
    left free. The written file is checked with ``onnx.checker`` before it replaces ``path``.
    """
    path = Path(path)
    if len(input_names) != len(example_inputs):
        raise ValueError(f"{len(example_inputs)} example inputs but {len(input_names)} input names")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter's notice
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # Strided slices are left unfolded: a note about the exporter, not about the model.
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            if dynamo:
                warnings.filterwarnings("ignore", message="# The axis name")  # shared batch-axis note
                _export_dynamo(module, example_inputs, tmp, input_names, output_names, dynamic_batch, opset)
            else:
                torch.onnx.export(
                    module,
                    tuple(example_inputs),
                    str(tmp),
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_axes=(
                        {name: {0: "batch"} for name in [*input_names, *output_names]}
                        if dynamic_batch
                        else None
                    ),
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
        onnx.checker.check_model(str(tmp))  # by path: works for models over 2 GB too
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        module.train(was_training)
    return path


def _export_dynamo(
    module, example_inputs, tmp: Path, input_names, output_names, dynamic_batch, opset
) -> None:
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=4096)
        dynamic_shapes = tuple({0: batch} for _ in example_inputs)
    program = torch.onnx.export(
        module,
        tuple(example_inputs),
        None,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_shapes=dynamic_shapes,
        opset_version=max(opset, 18),  # the torch.export exporter starts at opset 18
        dynamo=True,
        verbose=False,
    )
    program.save(str(tmp), external_data=False)


def onnx_io_names(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Graph input and output names of an ONNX file (initialisers excluded)."""
    model = onnx.load(str(path), load_external_data=False)
    initialisers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initialisers]
    return inputs, [o.name for o in model.graph.output]
