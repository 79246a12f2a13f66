"""The memory model: weights, KV cache, activations and runtime overhead, each with its formula."""

from __future__ import annotations

from functools import lru_cache

from vramest.frozen import TYPE_CHECKING, frozen
from vramest.inference.constants import Constants
from vramest.model.precisions import KVFormat, TensorContext, WeightFormat
from vramest.model.shapes import (
    DECODER,
    ENCODER,
    ENCODER_DECODER,
    LAYER_FULL,
    LAYER_NO_KV,
    LAYER_SLIDING,
    ModelShape,
    TensorSpec,
)
from vramest.units import format_bytes

if TYPE_CHECKING:
    from vramest.model.vision import VisionTower

ATTENTION_KINDS = ("sdpa", "flash", "eager")
# transformers 5 implements only eager attention for these families (fake-tensor traces:
# vramest/validation/traces/google__gemma-2-9b.json has eager rows only).
EAGER_ONLY_FAMILIES = frozenset({"gemma2"})


# transformers' reference Mamba-2 chunked scan (`mamba2_chunk_scan`, the path taken without
# the mamba_ssm kernels; the same function in Mamba2, Nemotron-H, Granite 4.0-H, Bamba,
# Zamba2 and Falcon-H1 at transformers 5.24), live at its peak (the output's contiguous copy),
# fp32 per padded token; fake-tensor trace of Mamba-Codestral-7B (vramest/validation/traces/):
SCAN_CHUNK_TENSORS = 3  # heads × chunk each: the decay L, the C·B scores G, and M = G × L
SCAN_STATE_TENSORS = 3  # heads × state each: B and C repeated to every head, B × decay
SCAN_INNER_TENSORS = 7  # inner (heads × head_dim) each: x, D × x, Y_diag, C·states, Y_off, sum
# and its contiguous copy; in the compute dtype the in_proj output (inner + conv_dim + heads)
# and the conv output (conv_dim) per token; per sequence the chunk states + 2 state copies.
SCAN_STATE_COPIES = 2
# A second moment of the same scan: the chunk-states einsum (B × decay against x), with its
# operands' contiguous copies live; it is the peak when the state is wide (Falcon-H1's 256):
# heads × chunk, heads × state and inner fp32 tensors per padded token. Fake-tensor runs of
# falcon_h1's mamba2_chunk_scan at 4096 tokens: (heads, head_dim, state) = (48, 64, 256),
# (24, 128, 256), (32, 128, 256) within 0.3%; at state 128 and below the first moment rules.
SCAN_WIDE_STATE_MOMENT = (1, 5, 6)
# transformers' reference Mamba-1 selective scan (`slow_forward` / `mamba_selective_scan`, the
# path without mamba_ssm or mambapy) discretises the whole prompt before its loop: A, B and
# B·u as inner × state fp32 tensors per token, all live through the loop; beside them 2 fp32
# and 6 compute-dtype inner-wide tensors (in_proj's x and z, the conv output, dt, the stacked
# outputs). Fake-tensor trace of Jamba-v0.1 (vramest/validation/traces/): 869 MiB at 512 tokens.
SELECTIVE_SCAN_STATE_TENSORS = 3
SELECTIVE_SCAN_FP32_INNER = 2
SELECTIVE_SCAN_INNER = 6
# T5's relative position bias under sdpa is a heads × chunk × keys tensor in the compute dtype
# built once per stack and broadcast over the batch: the decoder's bias, its causal-masked
# copy, the cross-attention's zero bias, and the mask sdpa receives (fake-tensor traces of
# Flan-T5-large at batch 1 and 2: 4 × 32 MiB at 1024 tokens either way).
T5_BIAS_TENSORS = 4
# Under eager attention T5 keeps the scores, their softmax and the weighted copy per sequence
# (in the compute dtype: T5's softmax does not upcast) beside 2 of the shared bias tensors
# (the same traces at batch 1 and 2, bf16 and fp32).
T5_EAGER_SCORE_TENSORS = 3
T5_EAGER_BIAS_TENSORS = 2
T5_FAMILIES = frozenset({"t5", "mt5", "umt5"})
# RWKV-4's channel mix (transformers RwkvFeedForward): square(relu(key(k))) keeps key's output
# and the relu beside the token-shifted input and its key and receptance mixes (fake-tensor
# traces of rwkv-4-169m, vramest/validation/traces/: peak at aten.relu)
RWKV_FFN_TENSORS = 2
RWKV_MIX_TENSORS = 3


@frozen
class Part:
    """One part of the total: its bytes and the formula with the numbers filled in."""

    name: str
    bytes: int
    formula: str


@frozen
class MemoryBreakdown:
    weights: Part
    kv_cache: Part
    activations: Part
    overhead: Part

    @property
    def total(self) -> int:
        return self.weights.bytes + self.kv_cache.bytes + self.activations.bytes + \
            self.overhead.bytes

    def parts(self) -> tuple[Part, ...]:
        return (self.weights, self.kv_cache, self.activations, self.overhead)

    def to_json(self) -> dict[str, int]:
        return {
            "weights": self.weights.bytes,
            "kv_cache": self.kv_cache.bytes,
            "activations": self.activations.bytes,
            "overhead": self.overhead.bytes,
            "total": self.total,
        }


def weight_bytes_by_group(shape: ModelShape, fmt: WeightFormat) -> dict[str, float]:
    """Stored bytes per group of tensors: embedding, lm_head, experts, and the rest of the layers."""
    groups: dict[str, float] = {"embedding": 0.0, "lm_head": 0.0, "experts": 0.0, "layers": 0.0}
    for role, nbytes in _weight_bytes_by_role(shape, fmt):
        groups[_GROUP_OF.get(role, "layers")] += nbytes
    return groups


def weight_bytes_by_role(shape: ModelShape, fmt: WeightFormat) -> dict[str, float]:
    """Stored bytes per tensor role (attn_q, expert_down, …) over the whole model."""
    return dict(_weight_bytes_by_role(shape, fmt))


def _stored_bytes(shape: ModelShape, fmt: WeightFormat, t: TensorSpec) -> float:
    """One tensor's stored bytes in this format (its precision may depend on its layer)."""
    bits = fmt.bits(t.role, TensorContext(
        layer=t.layer, num_layers=shape.num_layers, row_length=t.cols,
        gqa_ratio=shape.gqa_ratio, num_experts=shape.num_experts,
        has_output_tensor=not shape.tie_embeddings))
    return t.elements * bits / 8


@lru_cache(maxsize=64)
def layer_weight_bytes(shape: ModelShape, fmt: WeightFormat) -> tuple[tuple[float, float], ...]:
    """Each decoder layer's stored bytes as (experts, the rest): what a pipeline stage holding
    that layer loads (DeepSeek's first dense layers differ from its MoE layers)."""
    out = []
    for layer in range(shape.num_layers):
        experts = rest = 0.0
        for t in shape.layer_tensors(layer):
            if _GROUP_OF.get(t.role) == "experts":
                experts += _stored_bytes(shape, fmt, t)
            else:
                rest += _stored_bytes(shape, fmt, t)
        out.append((experts, rest))
    return tuple(out)


@lru_cache(maxsize=256)  # shapes and formats are frozen: sweeps and GPU tables reuse the sums
def _weight_bytes_by_role(shape: ModelShape, fmt: WeightFormat) -> tuple[tuple[str, float], ...]:
    roles: dict[str, float] = {}
    by_layer = fmt.gguf_rule is not None or any(layer is not None for _, layer in fmt.unquantized)
    # llama.cpp and ignore lists pick precisions by layer index
    counted = ((t, 1) for t in shape.tensors()) if by_layer else shape.counted_tensors()
    for t, times in counted:
        roles[t.role] = roles.get(t.role, 0.0) + times * _stored_bytes(shape, fmt, t)
    return tuple(roles.items())


_GROUP_OF = {"embedding": "embedding", "position_embedding": "embedding", "lm_head": "lm_head",
             "expert_gate": "experts", "expert_up": "experts", "expert_down": "experts"}


def weight_bytes(shape: ModelShape, fmt: WeightFormat) -> int:
    """Sum over every tensor of elements × the bits its format stores it in."""
    return round(sum(weight_bytes_by_group(shape, fmt).values()))


def weights_part(shape: ModelShape, fmt: WeightFormat, exact_bytes: int | None = None) -> Part:
    if exact_bytes is not None:
        return Part("weights", exact_bytes, "exact stored tensor bytes read from the model files")
    nbytes = weight_bytes(shape, fmt)
    params = shape.param_count()
    return Part("weights", nbytes,
                f"{params:,} params × {fmt.name} storage per tensor role "
                f"(avg {nbytes * 8 / params:.3f} bits/param) = {format_bytes(nbytes)}")


def kv_elements_per_token(shape: ModelShape, ctx: int, *, mla_latent: bool = True) -> float:
    """KV elements per sequence at `ctx` tokens, summed over layers (sliding layers capped).

    An encoder-decoder's decoder layers also keep the cross-attention keys and values of the
    encoder output, computed once per sequence: `encoder_tokens` of them per decoder layer.
    """
    counts = shape.layer_kind_counts
    tokens = counts.get(LAYER_FULL, 0) * ctx + counts.get(LAYER_SLIDING, 0) * min(
        ctx, shape.sliding_window or ctx)
    if shape.architecture == ENCODER_DECODER:
        tokens += shape.decoder_layers * encoder_tokens(shape, ctx)
    return tokens * _kv_width(shape, mla_latent)


def state_bytes(shape: ModelShape, kv: KVFormat) -> float:
    """Recurrent state of one sequence (Mamba conv + SSM state), the same at any length.

    The conv state is kept in the KV precision; the SSM state in its own (fp32 where the
    config says so, as vLLM's mamba_ssm_cache_dtype does), otherwise the KV precision."""
    ssm_bytes = shape.ssm_state_bytes or kv.bytes_per_element
    return shape.state_layers * (shape.conv_state * kv.bytes_per_element
                                 + shape.ssm_state * ssm_bytes)


def encoder_tokens(shape: ModelShape, ctx: int) -> int:
    """The encoder's input length: fixed for Whisper (1500 frames), else the context."""
    return shape.encoder_context or ctx


def kv_widths(shape: ModelShape, *, mla_latent: bool = True) -> tuple[int, int]:
    """(K, V) elements one token stores in one attention layer; engines that keep K and V in
    different types (llama.cpp's -ctk/-ctv, ExLlama's cache modes) weigh them apart."""
    if shape.is_mla:
        if mla_latent:  # compressed latent + decoupled rope key (DeepSeek-V2 paper, sec. 2.1)
            return shape.kv_lora_rank + shape.qk_rope_head_dim, 0
        return (shape.num_heads * (shape.qk_nope_head_dim + shape.qk_rope_head_dim),
                shape.num_heads * shape.v_head_dim)
    return shape.num_kv_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim


def _kv_width(shape: ModelShape, mla_latent: bool) -> int:
    """Elements one token stores in one layer."""
    k, v = kv_widths(shape, mla_latent=mla_latent)
    return k + v


def kv_layout_bytes(shape: ModelShape, ctx: int, bytes_per_element: float, *,
                    mla_latent: bool = True) -> float:
    """Bytes a sequence of `ctx` tokens keeps beside its KV elements × precision: DeepSeek
    sparse attention's indexer keys and FP8 latent scales (vramest/model/sparse_attention.py)."""
    if not mla_latent or not shape.indexer_head_dim:
        return 0.0
    from vramest.model.sparse_attention import extra_kv_bytes_per_layer

    counts = shape.layer_kind_counts
    tokens = counts.get(LAYER_FULL, 0) * ctx + counts.get(LAYER_SLIDING, 0) * min(
        ctx, shape.sliding_window or ctx)
    return tokens * extra_kv_bytes_per_layer(shape, bytes_per_element)


def kv_bytes_per_token(shape: ModelShape, bytes_per_element: float) -> float:
    """One token's KV over every layer in a precision, as engines size their pools."""
    return (kv_elements_per_token(shape, 1) * bytes_per_element
            + kv_layout_bytes(shape, 1, bytes_per_element))


def kv_part(shape: ModelShape, kv: KVFormat, ctx: int, batch: int, *,
            mla_latent: bool = True) -> Part:
    elements = kv_elements_per_token(shape, ctx, mla_latent=mla_latent)
    state = state_bytes(shape, kv)
    layout = kv_layout_bytes(shape, ctx, kv.bytes_per_element, mla_latent=mla_latent)
    nbytes = round((elements * kv.bytes_per_element + layout + state) * batch)
    kinds = shape.kinds()
    full, sliding = kinds.count(LAYER_FULL), kinds.count(LAYER_SLIDING)
    width = _kv_width(shape, mla_latent)
    what = (f"(kv_lora_rank {shape.kv_lora_rank} + rope {shape.qk_rope_head_dim})"
            if shape.is_mla and mla_latent else
            f"2 × {shape.num_kv_heads} kv_heads × {shape.head_dim} head_dim")
    layers = f"{full} full layers × {ctx} tokens"
    if shape.architecture == ENCODER:
        return Part("kv_cache", 0, "an encoder keeps no KV cache: each input is one forward "
                    "pass = 0 B")
    if shape.architecture == ENCODER_DECODER:
        layers = (f"{full} decoder layers × ({ctx} self-attention tokens + "
                  f"{encoder_tokens(shape, ctx)} cross-attention encoder tokens)")
    if sliding:
        layers += f" + {sliding} sliding layers × {min(ctx, shape.sliding_window or ctx)} tokens"
    formula = (f"{what} (= {width}) × [{layers}] × batch {batch} × "
               f"{kv.bytes_per_element:g} B ({kv.name})")
    if layout:
        formula += (f" + sparse-attention indexer keys and latent scales "
                    f"{format_bytes(round(layout))} per sequence")
    if shape.state_layers:
        ssm_bytes = shape.ssm_state_bytes or kv.bytes_per_element
        formula += (f" + recurrent state {shape.state_layers} layers × (conv "
                    f"{shape.conv_state} × {kv.bytes_per_element:g} B + ssm {shape.ssm_state} × "
                    f"{ssm_bytes:g} B) × batch {batch}, whatever the context")
    return Part("kv_cache", nbytes, f"{formula} = {format_bytes(nbytes)}")


def ffn_width(shape: ModelShape) -> int:
    """The widest MLP intermediate one token produces in a layer."""
    dense = shape.intermediate_size if not shape.is_moe or not all(
        shape.is_moe_layer(i) for i in range(shape.num_layers)) else 0
    moe = (shape.moe_intermediate_size * shape.experts_per_token
           + shape.shared_intermediate_size * shape.shared_experts) if shape.is_moe else 0
    return max(dense, moe)


def _mlp_transient(shape: ModelShape, constants: Constants) -> tuple[float, str]:
    """Elements per token the MLP holds at its peak, and how they were counted.

    A gated MLP with separate gate and up projections keeps act(gate), up and their product
    (`activation_ffn_factor` × ffn). MoE experts (transformers' grouped experts) compute gate
    and up as one fused output that stays live beside act(gate) and the product
    (`activation_fused_ffn_factor` × top_k × expert ffn), plus the tokens gathered per expert
    (top_k × hidden); shared experts run after the routed ones. An ungated MLP whose GELU is
    written as separate ops (GPT-2's tanh GELU) keeps as many: the fused factor too.
    """
    ffn_factor, fused = constants.activation_ffn_factor, constants.activation_fused_ffn_factor
    if _encoder_block(shape):
        factor = constants.activation_encoder_ffn_factor
        return factor * shape.intermediate_size, f"{factor:g} × ffn {shape.intermediate_size}"
    if shape.family == "rwkv":
        return (RWKV_FFN_TENSORS * shape.intermediate_size + RWKV_MIX_TENSORS * shape.hidden_size,
                f"RWKV channel mix {RWKV_FFN_TENSORS} × ffn {shape.intermediate_size} + "
                f"{RWKV_MIX_TENSORS} × hidden")
    candidates: list[tuple[float, str]] = []
    all_moe = shape.is_moe and all(shape.is_moe_layer(i) for i in range(shape.num_layers))
    if not all_moe:
        factor = ffn_factor if shape.gated_mlp else fused
        candidates.append((factor * shape.intermediate_size,
                           f"{factor:g} × ffn {shape.intermediate_size}"))
    if shape.is_moe:
        routed = shape.moe_intermediate_size * shape.experts_per_token
        candidates.append((fused * routed + shape.experts_per_token * shape.hidden_size,
                           f"{fused:g} × top_k {shape.experts_per_token} × expert ffn "
                           f"{shape.moe_intermediate_size} + {shape.experts_per_token} × hidden"))
        shared = shape.shared_intermediate_size * shape.shared_experts
        if shared:
            candidates.append((ffn_factor * shared, f"{ffn_factor:g} × shared ffn {shared}"))
    return max(candidates)


def _encoder_block(shape: ModelShape) -> bool:
    """BERT/BART/Whisper blocks: an ungated MLP whose GELU is one op (traced, not assumed, for
    bge/XLM-R encoders and BART's encoder-decoder; vramest/validation/traces/)."""
    return shape.architecture != DECODER and not shape.gated_mlp and shape.family != "t5"


def activations_part(shape: ModelShape, fmt: WeightFormat, chunk: int, ctx: int, batch: int,
                     attention: str, constants: Constants) -> Part:
    """Peak transient of one forward over `chunk` prompt tokens (the prefill).

    The larger of a layer's two high points, plus the last position's logits:
    - the MLP: its intermediates (`_mlp_transient`) + `activation_hidden_factor` × hidden
      (the embeddings, the residual, the normed input and the attention output);
    - eager attention only: the scores in the compute dtype, the fp32 softmax (and the fp32
      copy of the scores it is computed from, unless the compute dtype is fp32 already), the
      additive causal mask (batch × chunk × keys, compute dtype), and per token 3 × hidden +
      3 × heads × head_dim (queries, and keys and values repeated to every head).
    The last chunk attends to all `ctx` keys. Sliding-window layers under sdpa need an
    explicit boolean mask (chunk × keys, broadcast over the batch when nothing is padded) since
    a fused kernel's causal flag cannot express a window; flash attention takes the window as
    an argument.
    """
    act = fmt.compute_bytes
    if shape.encoder_context:  # Whisper: the encoder's forward runs over its fixed frames
        chunk = keys = max(chunk, shape.encoder_context)
    else:
        keys = ctx
    tokens = batch * chunk
    mlp_elements, mlp_text = _mlp_transient(shape, constants)
    encoder = shape.architecture == ENCODER
    hidden_factor = (constants.activation_encoder_hidden_factor if _encoder_block(shape)
                     else constants.activation_hidden_factor)
    if shape.architecture == ENCODER_DECODER:
        hidden_factor += 1  # the encoder's output stays live while the decoder runs
    mlp_bytes = tokens * (mlp_elements + hidden_factor * shape.hidden_size) * act
    formula = (f"max(MLP: batch {batch} × chunk {chunk} × ({mlp_text} + {hidden_factor:g} × "
               f"hidden {shape.hidden_size}) × {act} B")
    peak = mlp_bytes
    if shape.ssm_chunk and shape.state_layers:
        scan_bytes, scan_text = _ssm_scan_transient(shape, chunk, batch, act, hidden_factor)
        formula += f"; {scan_text}"
        peak = max(peak, scan_bytes)
    elif shape.selective_scan and shape.state_layers:
        inner = shape.conv_state // (shape.conv_kernel - 1)
        state = shape.ssm_state // inner
        scan_bytes = tokens * (4 * (SELECTIVE_SCAN_STATE_TENSORS * inner * state
                                    + SELECTIVE_SCAN_FP32_INNER * inner)
                               + act * (SELECTIVE_SCAN_INNER * inner
                                        + hidden_factor * shape.hidden_size))
        formula += (f"; Mamba-1 selective scan: {tokens} tokens × (4 B × ("
                    f"{SELECTIVE_SCAN_STATE_TENSORS} × inner {inner} × state {state} + "
                    f"{SELECTIVE_SCAN_FP32_INNER} × inner) + {act} B × ({SELECTIVE_SCAN_INNER} "
                    f"× inner + {hidden_factor:g} × hidden))")
        peak = max(peak, scan_bytes)
    if attention == "sdpa" and shape.family in T5_FAMILIES:
        bias = shape.num_heads * chunk * keys * act
        formula += (f"; T5 position bias {T5_BIAS_TENSORS} × {shape.num_heads} heads × {chunk} "
                    f"× {keys} keys × {act} B + {tokens} tokens × {hidden_factor:g} × hidden")
        peak = max(peak + (T5_BIAS_TENSORS - 1) * bias, T5_BIAS_TENSORS * bias
                   + tokens * hidden_factor * shape.hidden_size * act)
    has_attention = any(k != LAYER_NO_KV for k in shape.kinds())
    if not has_attention:
        pass
    elif attention == "eager" and shape.family in T5_FAMILIES:
        scores = shape.num_heads * chunk * keys * act
        attention_bytes = ((T5_EAGER_SCORE_TENSORS * batch + T5_EAGER_BIAS_TENSORS) * scores
                           + tokens * hidden_factor * shape.hidden_size * act)
        formula += (f"; T5 eager attention: ({T5_EAGER_SCORE_TENSORS} × batch {batch} + "
                    f"{T5_EAGER_BIAS_TENSORS}) × {shape.num_heads} heads × {chunk} × {keys} keys "
                    f"× {act} B + {tokens} tokens × {hidden_factor:g} × hidden")
        peak = max(peak, attention_bytes)
    elif attention == "eager" and _encoder_block(shape):
        # BERT/BART eager attention, all in the compute dtype: the scores and their scaled copy
        # (an encoder: no mask), or with a decoder's causal mask added, one more copy and the
        # mask itself (batch × chunk × keys); the input, output, q, k and v per token
        copies = 2 if encoder else 3
        q_width, kv_width = _attention_widths(shape)
        mask = 0 if encoder else batch * chunk * keys * act
        attention_bytes = (batch * shape.num_heads * chunk * keys * copies * act + mask
                           + tokens * (hidden_factor - 1 + q_width / shape.hidden_size
                                       + 2 * kv_width / shape.hidden_size)
                           * shape.hidden_size * act)
        formula += (f"; eager attention: scores {batch} × {shape.num_heads} heads × {chunk} × "
                    f"{keys} keys × {copies} × {act} B + mask {mask} B + {tokens} tokens × "
                    f"({hidden_factor - 1:g} × hidden + q {q_width} + 2 × kv {kv_width}) × "
                    f"{act} B")
        peak = max(peak, attention_bytes)
    elif attention == "eager":
        fp32_tensors = 1 if act >= 4 else 2  # the softmax output, and its fp32 input copy
        score_bytes = act + fp32_tensors * constants.eager_score_bytes_extra
        q_width, kv_width = _attention_widths(shape)
        attention_bytes = (batch * shape.num_heads * chunk * keys * score_bytes
                           + batch * chunk * keys * act
                           + tokens * (3 * shape.hidden_size + q_width + 2 * kv_width) * act)
        formula += (f"; eager attention: scores {batch} × {shape.num_heads} heads × {chunk} × "
                    f"{keys} keys × {score_bytes:g} B + mask {batch} × {chunk} × {keys} × {act} B"
                    f" + {tokens} tokens × (3 × hidden + q {q_width} + 2 × kv {kv_width}) × "
                    f"{act} B")
        peak = max(peak, attention_bytes)
    formula += ")"
    mask_bytes = 0.0
    if attention == "sdpa" and LAYER_SLIDING in shape.kinds():
        mask_bytes = chunk * keys * constants.activation_window_mask_bytes
        formula += (f" + window mask {chunk} × {keys} × "
                    f"{constants.activation_window_mask_bytes:g} B")
    if shape.architecture == ENCODER:  # hidden states or a score out, no vocabulary logits
        logits_bytes = 0
    else:  # logits of the last position only (generate keeps one), and their fp32 copy
        logits_bytes = batch * shape.vocab_size * (act + 4)
        formula += f" + logits {batch} × vocab {shape.vocab_size} × {act + 4} B"
    nbytes = round(peak + mask_bytes + logits_bytes)
    return Part("activations", nbytes, f"{formula} = {format_bytes(nbytes)}")


def _ssm_scan_transient(shape: ModelShape, chunk: int, batch: int, act: float,
                        hidden_factor: float) -> tuple[float, str]:
    """Bytes live at the peak of a Mamba-2 layer's prefill (transformers' reference chunked
    scan: see SCAN_*), and the formula."""
    heads, block = shape.ssm_heads, shape.ssm_chunk
    conv_dim = shape.conv_state // (shape.conv_kernel - 1)
    inner = heads * shape.ssm_head_dim
    state = shape.ssm_state // inner
    chunks = -(-chunk // block)
    padded = batch * chunks * block
    chunk_t, state_t, inner_t = max(
        (SCAN_CHUNK_TENSORS, SCAN_STATE_TENSORS, SCAN_INNER_TENSORS), SCAN_WIDE_STATE_MOMENT,
        key=lambda n: n[0] * heads * block + n[1] * heads * state + n[2] * inner)
    fp32 = padded * 4 * (chunk_t * heads * block + state_t * heads * state + inner_t * inner)
    compute = batch * chunk * act * (inner + 2 * conv_dim + heads
                                     + hidden_factor * shape.hidden_size)
    states = batch * (chunks + SCAN_STATE_COPIES) * shape.ssm_state * 4
    text = (f"Mamba-2 chunked scan: {padded} padded tokens × 4 B × ({chunk_t} × "
            f"{heads} heads × chunk {block} + {state_t} × {heads} × state {state} + "
            f"{inner_t} × inner {inner}) + {batch * chunk} tokens × {act} B × (inner + "
            f"2 × conv {conv_dim} + heads + {hidden_factor:g} × hidden) + {chunks} + "
            f"{SCAN_STATE_COPIES} states × {shape.ssm_state} × 4 B")
    return fp32 + compute + states, text


def with_vision_tower(part: Part, tower: VisionTower, pictures: int, act: float,
                      attention: str, constants: Constants) -> Part:
    """The activations part when `pictures` also pass through a fixed-size vision tower first:
    the larger of the text forward and the tower's own peak.

    The tower is a bidirectional encoder over every picture's patches at once: its MLP moment
    (the encoder factors, as BERT's blocks) or, under eager attention, the scores of every
    head (patches × patches per picture) in the compute dtype with the fp32 softmax and its
    fp32 input copy, beside the input, residual, normed input and q, k, v (6 × hidden) per
    patch; plus the pixels (3 × side² per picture). Fake-tensor traces of Gemma 3 4B's SigLIP
    tower at 896 px (4096 patches): 2.75 GB at one picture, 5.50 GB at two, eager bf16.
    """
    patches = pictures * tower.patches
    copies = (tower.hidden_copies or constants.activation_encoder_hidden_factor) \
        + tower.kept_states
    ffn_copies = tower.ffn_copies or constants.activation_encoder_ffn_factor
    mlp = patches * (ffn_copies * tower.ffn + copies * tower.hidden) * act
    text = (f"vision tower: {pictures} pictures × {tower.patches} patches × "
            f"({ffn_copies:g} × ffn {tower.ffn} + {copies:g} × hidden {tower.hidden}) × {act} B")
    peak = mlp
    if attention == "eager":
        fp32_tensors = 1 if act >= 4 else 2
        score_bytes = act + fp32_tensors * constants.eager_score_bytes_extra
        if tower.softmax_in_compute_dtype:  # the scores and their softmax, both in act
            score_bytes = 2 * act
        scores = (pictures * tower.heads * tower.patches ** 2 * score_bytes
                  + patches * (6 + tower.kept_states) * tower.hidden * act)
        text += (f"; eager: {pictures} × {tower.heads} heads × {tower.patches}² × "
                 f"{score_bytes:g} B + {patches} patches × {6 + tower.kept_states} × hidden × "
                 f"{act} B")
        peak = max(peak, scores)
    pixels = pictures * 3 * tower.side ** 2 * act
    tower_bytes = round(peak + pixels)
    if tower_bytes <= part.bytes:
        return Part(part.name, part.bytes, f"{part.formula}; ≥ {text} + pixels = "
                    f"{format_bytes(tower_bytes)}")
    return Part(part.name, tower_bytes, f"max(text forward {format_bytes(part.bytes)}, {text} "
                f"+ pixels {pictures} × 3 × {tower.side}² × {act} B) = "
                f"{format_bytes(tower_bytes)}")


def _attention_widths(shape: ModelShape) -> tuple[int, int]:
    """Elements per token of the queries and of keys (= values) repeated to every head."""
    if shape.is_mla:
        qk = shape.qk_nope_head_dim + shape.qk_rope_head_dim
        return shape.num_heads * qk, shape.num_heads * (qk + shape.v_head_dim) // 2
    return shape.num_heads * shape.head_dim, shape.num_heads * shape.head_dim


def overhead_part(constants: Constants, source: str) -> Part:
    nbytes = constants.runtime_overhead_bytes
    return Part("overhead", nbytes,
                f"runtime_overhead_bytes ({source}) = {format_bytes(nbytes)}")
