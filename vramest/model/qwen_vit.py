"""The Qwen3-VL / Qwen3.5 vision tower, and Qwen3-VL's shape (model_type qwen3_vl, qwen3_vl_moe).

The tower (transformers modeling_qwen3_vl.py Qwen3VLVisionModel; Qwen3_5VisionModel is the same
without deepstack mergers), counted tensor by tensor with its biases: a Conv3d patch embedding,
a learned position table, `depth` blocks (two LayerNorms, fused qkv, proj, fc1/fc2), a patch
merger (LayerNorm over one patch, fc1 over merge² patches, fc2 to the text width) and one more
merger per deepstack_visual_indexes entry whose LayerNorm spans the merged patches
(use_postshuffle_norm).

Qwen3-VL's text model is Qwen3's (dense) or Qwen3-MoE's (per-head q/k RMSNorms; M-RoPE holds
no weights), so it is parsed as those families and the tower added as extra_params.
"""

from __future__ import annotations

from collections.abc import Mapping

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, replace
from vramest.model.kinds import QWEN3_VL_FAMILIES

if TYPE_CHECKING:
    from typing import Any

    from vramest.model.shapes import ModelShape



def vision_params(vision: Mapping[str, Any], text_hidden: int) -> int:
    """Parameters of the Qwen3-VL / Qwen3.5 ViT with its mergers."""
    try:
        h = int(vision["hidden_size"])
        ffn = int(vision["intermediate_size"])
        depth = int(vision["depth"])
        patch = int(vision.get("patch_size", 16))
        temporal = int(vision.get("temporal_patch_size", 2))
        channels = int(vision.get("in_channels", 3))
        positions = int(vision.get("num_position_embeddings", 2304))
        merge = int(vision.get("spatial_merge_size", 2))
        out = int(vision.get("out_hidden_size", text_hidden))
        deepstack = len(vision.get("deepstack_visual_indexes") or ())
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"the vision_config could not be read ({exc}).") from None
    patch_embed = h * channels * temporal * patch * patch + h
    block = 4 * h + (3 * h * h + 3 * h) + (h * h + h) + (ffn * h + ffn) + (h * ffn + h)
    merged = h * merge * merge
    fcs = (merged * merged + merged) + (out * merged + out)
    return (patch_embed + positions * h + depth * block + (2 * h + fcs)
            + deepstack * (2 * merged + fcs))


def qwen3_vl_shape(config: Mapping[str, Any], name: str, origin: str) -> ModelShape:
    from vramest.model.shapes import shape_from_config

    family = str(config.get("model_type") or "").lower()
    text = config.get("text_config")
    if not isinstance(text, Mapping):
        raise InputError(f"{origin}: a {family} config needs its text_config.")
    text = dict(text, model_type=QWEN3_VL_FAMILIES[family])
    text.setdefault("tie_word_embeddings", config.get("tie_word_embeddings", False))
    shape = shape_from_config(text, name, origin)
    vision = config.get("vision_config")
    tower = vision_params(vision, shape.hidden_size) if isinstance(vision, Mapping) else 0
    return replace(shape, family=family, extra_params=tower, notes=(
        *shape.notes, f"Qwen3-VL: the text model is {QWEN3_VL_FAMILIES[family]}'s; vision tower "
        f"({tower:,} parameters) counted tensor by tensor, 16 bit"))
