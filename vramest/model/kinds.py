"""Which builder counts each model_type outside shapes.py's decoder path: names only, so that
shape_from_config imports a builder's module for its own models alone (the five builders cost
3.6M instructions of a command that reads a plain decoder)."""

from __future__ import annotations

from collections.abc import Mapping

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

BERT_LIKE = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "deberta-v2"})
ENCODER_DECODER_FAMILIES = frozenset({"t5", "mt5", "umt5", "bart", "whisper"})
RECURRENT_FAMILIES = frozenset({"mamba", "falcon_mamba", "mamba2", "nemotron_h", "jamba",
                                "qwen3_next", "granitemoehybrid", "falcon_h1", "zamba2", "rwkv"})
GDN_HYBRID_FAMILIES = frozenset({"qwen3_5", "qwen3_5_moe", "qwen3_5_text", "qwen3_5_moe_text"})
# Qwen3-VL's families, each with its text model's family
QWEN3_VL_FAMILIES = {"qwen3_vl": "qwen3", "qwen3_vl_moe": "qwen3_moe"}
MOE_LAYER = "E"  # hybrid_override_pattern's character for a MoE layer


def is_encoder_family(family: str) -> bool:
    return family in BERT_LIKE or family in ENCODER_DECODER_FAMILIES


def has_moe_layers(config: Mapping[str, Any]) -> bool:
    pattern = config.get("hybrid_override_pattern")
    return str(config.get("model_type", "")).lower() == "nemotron_h" and \
        isinstance(pattern, str) and MOE_LAYER in pattern
