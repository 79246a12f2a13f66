"""Per-family tensor layouts that the standard config keys do not say (issue 18, item 7).

Each rule reads the family's modeling code's layout, named on its line, and adjusts the shape
parsed from the standard keys. `vramest.model.shapes` calls `apply_family_rules` last.
"""

from __future__ import annotations

from collections.abc import Mapping

from vramest.frozen import TYPE_CHECKING, replace

if TYPE_CHECKING:
    from typing import Any

    from vramest.model.shapes import ModelShape

FAMILIES = ("qwen", "cohere", "cohere2", "phimoe", "llama4_text", "glm4_moe", "glm4", "granite",
            "olmo2", "deepseek_v32", "minimax_m2", "glm_moe_dsa", "glm4_moe_lite", "phi3small",
            "seed_oss", "smollm3", "ernie4_5_moe")
# Llama 4: every fourth layer is a global NoPE layer, the others attend within chunks
# (transformers Llama4TextConfig: no_rope_layer_interval = 4)
LLAMA4_NOPE_INTERVAL = 4


def apply_family_rules(shape: ModelShape, config: Mapping[str, Any], family: str) -> ModelShape:
    if family == "qwen":
        return _qwen_v1(shape, config)
    if family in ("cohere", "cohere2"):
        return _cohere(shape, config)
    if family == "phimoe":
        return _phimoe(shape, config)
    if family == "llama4_text":
        return _llama4(shape, config)
    if family == "glm4_moe":
        return _glm4_moe(shape, config)
    if family == "glm4":
        return _glm4(shape, config)
    if family == "granite":
        return _granite(shape)
    if family == "olmo2":
        return _olmo2(shape)
    if family in ("deepseek_v32", "glm_moe_dsa"):  # GLM-5: DeepSeek-V3.2's MLA + indexer
        from vramest.model.sparse_attention import with_indexer

        return with_indexer(shape, config)
    if family == "minimax_m2":
        return _minimax_m2(shape)
    # glm4_moe_lite (GLM-4.7-Flash, transformers modeling_glm4_moe_lite.py): DeepSeek-V3's MLA
    # and MoE tensors under their config keys, which the standard parse reads as they are
    if family == "gpt_oss":
        return _gpt_oss(shape)
    if family == "phi3small":
        return _phi3_small(shape, config)
    if family == "seed_oss":
        return _seed_oss(shape, config)
    # smollm3 (transformers modeling_smollm3.py): Llama's tensors; no_rope_layers only skips the
    # rotation in some layers, which holds no weights and caches the same keys and values
    if family == "ernie4_5_moe":
        return _ernie45_moe(shape, config)
    return shape


def _phi3_small(s: ModelShape, config: Mapping[str, Any]) -> ModelShape:
    """Phi-3-small (Phi3SmallForCausalLM; vLLM vllm/model_executor/models/phi3_small.py at
    00db0119): one fused query_key_value and a dense output, both with bias; an up_proj of
    2 x intermediate (GeGELU's gate and linear halves, interleaved) and a down_proj, both with
    bias; LayerNorms with bias; the embeddings tied to the head (PretrainedConfig's default,
    which the config leaves). The MLP width is the config's ff_intermediate_size, rounded up to
    a multiple of 256 when gegelu_pad_to_256 (configuration_phi3_small.py's next_mult).
    Every other layer attends block-sparsely (dense_attention_every_n_layers), but vLLM and
    the remote code keep every layer's keys and values, so each layer counts as full."""
    width = config.get("ff_intermediate_size")
    inter = width if isinstance(width, int) and width > 0 else s.intermediate_size
    if config.get("gegelu_pad_to_256") is True:
        inter = -(-inter // 256) * 256
    return replace(s, intermediate_size=inter, fused_qkv=True, attention_bias=True,
                   attention_out_bias=True, mlp_bias=True, layer_norm_bias=True,
                   tie_embeddings=bool(config.get("tie_word_embeddings", True)),
                   notes=(*s.notes, "block-sparse layers keep the full KV cache, as vLLM "
                          "allocates it"))


def _gpt_oss(s: ModelShape) -> ModelShape:
    """gpt-oss (transformers modeling_gpt_oss.py): each attention layer's learned sink logits
    (GptOssAttention.sinks, one per query head) and each router's bias (GptOssTopKRouter.bias,
    one per expert); both are logits, so they cache nothing."""
    from vramest.model.shapes import TensorSpec

    return replace(s, extra_tensors=(*s.extra_tensors,
                                     TensorSpec("norm", None, 1, s.num_heads, s.num_layers),
                                     TensorSpec("bias", None, 1, s.num_experts, s.num_layers)))


def _qwen_v1(s: ModelShape, config: Mapping[str, Any]) -> ModelShape:
    """Qwen (v1, remote code modeling_qwen.py): one fused c_attn with bias, c_proj without;
    the MLP's w1 and w2 are each intermediate_size // 2 wide (QWenMLP: ff_dim_in =
    config.intermediate_size // 2)."""
    return replace(s, intermediate_size=s.intermediate_size // 2, fused_qkv=True,
                   attention_bias=True, attention_out_bias=False, mlp_bias=False,
                   tie_embeddings=bool(config.get("tie_word_embeddings", False)))


def _cohere(s: ModelShape, config: Mapping[str, Any]) -> ModelShape:
    """Command-R (transformers modeling_cohere.py): one LayerNorm without bias per layer
    (attention and MLP run in parallel on it), embeddings tied by default; with use_qk_norm a
    per-head LayerNorm of heads x head_dim (q) and kv_heads x head_dim (k), counted in
    extra_params."""
    qk = 0
    if config.get("use_qk_norm") is True:
        qk = s.num_layers * (s.num_heads + s.num_kv_heads) * s.head_dim
    return replace(s, norms_per_layer=1, layer_norm_bias=False, qk_norm=False,
                   tie_embeddings=bool(config.get("tie_word_embeddings", True)),
                   extra_params=s.extra_params + qk,
                   notes=(*s.notes, "per-head q/k LayerNorms counted as one 16-bit block")
                   if qk else s.notes)


def _phimoe(s: ModelShape, config: Mapping[str, Any]) -> ModelShape:
    """Phi-3.5-MoE (transformers modeling_phimoe.py): LayerNorms with bias, q/k/v/o with
    bias (attention_bias), an lm_head bias; experts w1/w2/w3 without bias."""
    return replace(s, layer_norm_bias=True, mlp_bias=False,
                   lm_head_bias=bool(config.get("lm_head_bias", False)))


def _llama4(s: ModelShape, config: Mapping[str, Any]) -> ModelShape:
    """Llama 4 text (transformers modeling_llama4.py): MoE layers every
    interleave_moe_layer_step-th layer (Llama4TextConfig.moe_layers), each with a shared expert
    of intermediate_size beside the routed ones; dense layers are intermediate_size_mlp wide.
    Layers that use RoPE attend within chunks of attention_chunk_size tokens; they are counted
    as sliding-window layers of that size, an upper bound on what a chunk keeps."""
    from vramest.model.shapes import LAYER_FULL, LAYER_SLIDING

    n = s.num_layers
    step = int(config.get("interleave_moe_layer_step") or 1)
    listed = config.get("moe_layers")
    moe = set(listed) if isinstance(listed, list) and listed else set(range(step - 1, n, step))
    dense_width = int(config.get("intermediate_size_mlp") or s.intermediate_size)
    expert_width = int(config.get("intermediate_size") or s.moe_intermediate_size)
    rope = config.get("no_rope_layers")
    if not (isinstance(rope, list) and len(rope) == n):
        rope = [int((i + 1) % LLAMA4_NOPE_INTERVAL != 0) for i in range(n)]
    chunk = config.get("attention_chunk_size")
    kinds = tuple(LAYER_SLIDING if chunk and rope[i] else LAYER_FULL for i in range(n))
    return replace(s, intermediate_size=dense_width, moe_intermediate_size=expert_width,
                   shared_experts=1, shared_intermediate_size=expert_width,
                   moe_layers=tuple(i in moe for i in range(n)), layer_kinds=kinds,
                   sliding_window=int(chunk) if chunk else None, chunked_attention=bool(chunk),
                   notes=(*s.notes, f"chunked attention ({chunk} tokens) on 3 of 4 layers "
                          "counted as a sliding window of that size") if chunk else s.notes)


def _glm4_moe(s: ModelShape, config: Mapping[str, Any]) -> ModelShape:
    """GLM-4.5 (transformers modeling_glm4_moe.py): q/k/v with bias, o_proj without; per-head
    q/k RMSNorms when use_qk_norm."""
    return replace(s, attention_out_bias=False, qk_norm=config.get("use_qk_norm") is True)


def _glm4(s: ModelShape, config: Mapping[str, Any]) -> ModelShape:
    """GLM-4-0414 (transformers modeling_glm4.py, Glm4DecoderLayer): four RMSNorms per layer
    (input, post_self_attn, post_attention, post_mlp); q/k/v with bias only when
    attention_bias, o_proj without; one fused gate_up_proj, counted as the gated MLP it is."""
    return replace(s, norms_per_layer=4, attention_out_bias=False,
                   attention_bias=config.get("attention_bias") is True)


def _granite(s: ModelShape) -> ModelShape:
    """Granite 3.x (transformers modeling_granite.py, GraniteDecoderLayer): Llama's tensors;
    embedding_multiplier, residual_multiplier, attention_multiplier and logits_scaling scale
    activations and hold no weights, so the memory is a Llama's of the same keys."""
    return replace(s, notes=(*s.notes, "Granite's four multipliers scale activations only"))


def _olmo2(s: ModelShape) -> ModelShape:
    """OLMo 2 (transformers modeling_olmo2.py, Olmo2Attention): q_norm and k_norm are RMSNorms
    over the whole projections (num_heads x head_dim and num_kv_heads x head_dim), not per
    head; they are listed once as a global group of one such pair per layer. The block's two
    norms sit after attention and after the MLP (post-norm), two per layer as elsewhere."""
    from vramest.model.shapes import TensorSpec

    width = (s.num_heads + s.num_kv_heads) * s.head_dim
    return replace(s, qk_norm=False,
                   extra_tensors=(*s.extra_tensors, TensorSpec("norm", None, 1, width,
                                                               s.num_layers)))


def _minimax_m2(s: ModelShape) -> ModelShape:
    """MiniMax-M2 (transformers modeling_minimax_m2.py): Mixtral's layout (num_local_experts
    gated experts of intermediate_size, no shared expert) with q_norm and k_norm RMSNorms over
    the whole projections (num_heads x head_dim and num_kv_heads x head_dim), as OLMo 2's. The
    router's e_score_correction_bias is a buffer, not a parameter; rotary_dim (partial RoPE)
    holds no weights."""
    from vramest.model.shapes import TensorSpec

    width = (s.num_heads + s.num_kv_heads) * s.head_dim
    return replace(s, qk_norm=False,
                   extra_tensors=(*s.extra_tensors, TensorSpec("norm", None, 1, width,
                                                               s.num_layers)))


def _seed_oss(s: ModelShape, config: Mapping[str, Any]) -> ModelShape:
    """Seed-OSS (transformers modeling_seed_oss.py, SeedOssAttention): q/k/v carry a bias when
    attention_bias and o_proj only when attention_out_bias (SeedOssConfig defaults: True and
    False); the query width is num_attention_heads x head_dim (80 x 128, twice the hidden
    size of the 36B), which the standard keys already give."""
    return replace(s, attention_bias=config.get("attention_bias", True) is True,
                   attention_out_bias=config.get("attention_out_bias", False) is True)


def _ernie45_moe(s: ModelShape, config: Mapping[str, Any]) -> ModelShape:
    """ERNIE 4.5 MoE (transformers modeling_ernie4_5_moe.py): moe_num_experts routed experts of
    moe_intermediate_size, moe_k of them per token, in layers i with (i + 1) %
    moe_layer_interval == 0 and moe_layer_start_index <= i <= moe_layer_end_index (-1: the
    last); moe_num_shared_experts shared experts as one MLP of that many times the expert
    width; the router's moe_statics.e_score_correction_bias (one fp32 value per expert). Its
    use_bias (biases on q/k/v/o, the MLPs and lm_head; Ernie4_5_MoeConfig's default false, as
    in the 21B-A3B release) is not read: a config setting it true would count short."""
    from vramest.model.shapes import TensorSpec

    experts = int(config.get("moe_num_experts") or 0)
    if experts <= 1:
        return s
    n = s.num_layers
    start = int(config.get("moe_layer_start_index", 1))
    end = int(config.get("moe_layer_end_index", -1))
    end = n - 1 if end == -1 else end
    step = int(config.get("moe_layer_interval") or 1)
    moe = tuple((i + 1) % step == 0 and start <= i <= end for i in range(n))
    width = int(config.get("moe_intermediate_size") or s.intermediate_size)
    shared = int(config.get("moe_num_shared_experts") or 0)
    return replace(s, num_experts=experts, experts_per_token=int(config.get("moe_k") or 2),
                   moe_intermediate_size=width, shared_experts=shared,
                   shared_intermediate_size=width, moe_layers=moe,
                   extra_tensors=(*s.extra_tensors,
                                  TensorSpec("bias", None, 1, experts, sum(moe))))
