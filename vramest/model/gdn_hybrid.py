"""Qwen3.5 / Qwen3.6 (model_type qwen3_5, qwen3_5_moe): gated-DeltaNet hybrids with a vision tower.

The text model is Qwen3-Next's layout (transformers' Qwen3_5GatedDeltaNet splits Qwen3-Next's
in_proj_qkvz and in_proj_ba into in_proj_qkv, in_proj_z, in_proj_b and in_proj_a: the same
elements), with a dense gated MLP in every layer (qwen3_5) or a routed MoE with a gated shared
expert (qwen3_5_moe), so its tensors and recurrent state are counted by
`recurrent.recurrent_shape(..., "qwen3_next", ...)`. Each release also holds a ViT
(Qwen3_5VisionModel: Qwen3-VL's without deepstack mergers), counted tensor by tensor in
`qwen_vit.vision_params`.

The recurrent state is kept in fp32: the configs set `mamba_ssm_dtype: float32`, which vLLM's
qwen3_5.py reads for its state caches, conv and temporal alike (quoted in
https://github.com/baidu/vLLM-Kunlun/pull/336). `ssm_state_bytes` carries it; the vLLM engine
rules (inference/engines/vllm_hybrid.py) apply it to nemotron_h only so far.
"""

from __future__ import annotations

from collections.abc import Mapping

from vramest.frozen import TYPE_CHECKING, replace

if TYPE_CHECKING:
    from typing import Any

    from vramest.model.shapes import ModelShape

_FP32 = {"float32": 4.0, "fp32": 4.0}


def gdn_hybrid_shape(config: Mapping[str, Any], name: str, origin: str) -> ModelShape:
    from vramest.model.qwen_vit import vision_params
    from vramest.model.recurrent import recurrent_shape
    from vramest.model.shapes import TensorSpec, _Config

    family = str(config.get("model_type") or "").lower()
    text = config.get("text_config")
    text = dict(text) if isinstance(text, Mapping) else dict(config)
    if "moe" in family and "intermediate_size" not in text:
        # every layer routes (mlp_only_layers is empty), so the dense width is never built
        text["intermediate_size"] = text.get("moe_intermediate_size")
    text.setdefault("tie_word_embeddings", config.get("tie_word_embeddings", False))
    shape = recurrent_shape(_Config(text, origin), "qwen3_next", name)
    vision = config.get("vision_config")
    tower = vision_params(vision, shape.hidden_size) if isinstance(vision, Mapping) else 0
    notes = [f"Qwen3.5 hybrid: {shape.state_layers} gated DeltaNet layers keep a recurrent "
             f"state, {shape.num_layers - shape.state_layers} gated-attention layers a KV cache"]
    if tower:
        notes.append(f"vision tower ({tower:,} parameters) counted tensor by tensor, 16 bit")
    ssm_dtype = str(text.get("mamba_ssm_dtype") or "")
    # A shape with explicit layers lists every tensor itself, so the tower is one "extra"
    # tensor there (16 bit, as extra_params are); extra_params still says the model has a
    # tower (the engines budget their image encoders by it) and is not counted twice.
    extra = (TensorSpec("extra", None, 1, tower),) if tower else ()
    return replace(shape, family=family.removesuffix("_text") or "qwen3_5",
                   explicit_global=(*shape.explicit_global, *extra), extra_params=tower,
                   ssm_state_bytes=_FP32.get(ssm_dtype), notes=tuple(notes))
