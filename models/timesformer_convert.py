"""mmaction2 TimeSformer and ViT checkpoints → the TimeSformer backbone of ``models.fusion``.

Targets mmaction2's ``TimeSformer`` backbone (divided space-time), keys relative to it: load
the result with ``FusionModel.backbone.load_state_dict``. Three sources:
 * mmaction2 TimeSformer checkpoints (K400 ``timesformer_divST_*.pth``): ``{'state_dict':
   {'backbone.*', 'cls_head.*'}}`` or bare; same keys, the classifier head dropped;
 * timm / official ViT-B/16 (``blocks.N.attn.qkv.weight`` ...), what the K400 model starts from;
 * the mmcv-layout ViT that mmaction2's configs name as ``pretrained`` (``...layers.N.norms.0``).
For the ViTs we do what mmaction2's ``TimeSformer.init_weights`` does: the image attention and
its norm go to both the spatial (``attentions.1``) and the temporal (``attentions.0``) branch,
and the temporal projection ``temporal_fc`` stays zero (as ``DividedTemporalAttentionWithNorm``
initialises it), so the untrained temporal branch adds nothing and the network starts as the
image model; ``time_embed`` starts at zero. The time embedding is resampled linearly when the
frame count differs, the patch position embedding bicubically when ``img_size`` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from models.checkpoints import ConversionError, read_torch_checkpoint, unwrap_state_dict
from models.mmaction_compat import build_timesformer
from models.registry import check_state_dict
from weights.store import WeightsError

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
    sd = unwrap_state_dict(state_dict_or_ckpt)
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
    sd = unwrap_state_dict(state_dict_or_ckpt)
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
    obj = read_torch_checkpoint(path, "TimeSformer/ViT")
    try:
        sd = unwrap_state_dict(obj)
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
