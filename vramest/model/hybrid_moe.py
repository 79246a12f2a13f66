"""Nemotron 3 (model_type nemotron_h with `E` layers): Nemotron-H's Mamba-2 and attention layers
with mixture-of-experts layers in place of the MLP ones.

Counted from transformers' modeling_nemotron_h.py (NemotronHMoE): a router (NemotronHTopkRouter,
n_routed_experts x hidden; its e_score_correction_bias is a buffer), non-gated experts
(NemotronHExperts: up_proj and down_proj only, relu2), a non-gated shared expert
(NemotronHMLP of moe_shared_expert_intermediate_size) and, where moe_latent_size is set, the
latent projections fc1_latent_proj / fc2_latent_proj around the routed experts, which then run
at the latent width. The other layers, the recurrent state and the KV cache are Nemotron-H's
(`recurrent.recurrent_shape`).
"""

from __future__ import annotations

from collections.abc import Mapping

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, replace
from vramest.model.kinds import MOE_LAYER

if TYPE_CHECKING:
    from typing import Any

    from vramest.model.shapes import ModelShape, TensorSpec

_MOE_KEYS = ("n_routed_experts", "moe_intermediate_size", "num_experts_per_tok")


def nemotron_moe_shape(config: Mapping[str, Any], name: str, origin: str) -> ModelShape:
    from vramest.model.recurrent import recurrent_shape
    from vramest.model.shapes import _Config

    pattern = str(config["hybrid_override_pattern"])
    missing = [k for k in _MOE_KEYS if not isinstance(config.get(k), int)]
    if missing:
        raise InputError(f"{origin}: hybrid_override_pattern's E (mixture-of-experts) layers "
                         f"need {', '.join(missing)} in the config; a Nemotron-H config without "
                         "E layers needs none of them.")
    # Nemotron-H with the MoE layers read as MLP layers, whose blocks are then replaced
    dense = dict(config, hybrid_override_pattern=pattern.replace(MOE_LAYER, "-"))
    shape = recurrent_shape(_Config(dense, origin), "nemotron_h", name)
    c = _Config(config, origin)
    hidden = shape.hidden_size
    experts = c.int("n_routed_experts")
    width = c.int("moe_intermediate_size")
    shared = c.int("moe_shared_expert_intermediate_size", default=0, minimum=0)
    latent = c.int("moe_latent_size", default=0, minimum=0) if config.get(
        "moe_latent_size") is not None else 0
    block = _moe_block(hidden, experts, width, shared, latent, c.bool("mlp_bias", False))
    is_moe = tuple(ch == MOE_LAYER for ch in pattern)
    layers = tuple(block if moe else layer for moe, layer in zip(is_moe, shape.explicit_layers,
                                                                  strict=True))
    return replace(
        shape, explicit_layers=layers, num_experts=experts,
        experts_per_token=c.int("num_experts_per_tok"), moe_intermediate_size=width,
        shared_experts=1 if shared else 0, shared_intermediate_size=shared, moe_layers=is_moe,
        notes=(*shape.notes, f"{sum(is_moe)} MoE layers: {experts} non-gated experts "
               f"(width {width}{f', at a latent width of {latent}' if latent else ''}) "
               "and a shared expert"))


def _moe_block(hidden: int, experts: int, width: int, shared: int, latent: int,
               bias: bool) -> tuple[TensorSpec, ...]:
    from vramest.model.shapes import TensorSpec

    inner = latent or hidden
    tensors = [TensorSpec("router", None, experts, hidden),
               TensorSpec("expert_up", None, width, inner, experts),
               TensorSpec("expert_down", None, inner, width, experts),
               TensorSpec("shared_up", None, shared, hidden),
               TensorSpec("shared_down", None, hidden, shared),
               TensorSpec("norm", None, 1, hidden)]
    if latent:
        tensors += [TensorSpec("ffn_up", None, latent, hidden),  # fc1_latent_proj
                    TensorSpec("ffn_down", None, hidden, latent)]  # fc2_latent_proj
    if bias:
        tensors.append(TensorSpec("bias", None, 1, shared + hidden
                                  + (latent + hidden if latent else 0)))
    return tuple(tensors)
