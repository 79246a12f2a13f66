"""Hybrids whose layers hold attention and a recurrent state at once, and RWKV-4.

Counted from transformers 5.24's modeling code (the module names beside each tensor):

- Falcon-H1 (FalconH1DecoderLayer): every layer runs attention and a Mamba-2 mixer in
  parallel, then a gated MLP, so every layer keeps both a KV cache and a recurrent state.
  The mixer's width is `mamba_d_ssm` (not expand × hidden) and its gated RMS norm exists
  only with `mamba_rms_norm`; in_proj's bias follows `mamba_proj_bias`, out_proj's
  `projectors_bias`.
- Zamba2 (Zamba2Model.get_layers): a Mamba-2 mixer in every layer; the "hybrid" layers also
  run one of `num_mem_blocks` shared transformer blocks (attention over the concatenation of
  the hidden state and the embeddings, 2 × hidden wide, then a gated MLP) and a linear of
  their own. A shared block's weights are stored once (tied); each hybrid layer owns LoRA
  adapters beside it (q, k, v with `use_shared_attention_adapter`, the MLP's gate_up always)
  and keeps its own KV cache.
- RWKV-4 (RwkvForCausalLM): per layer a time-mix (key, value, receptance, output) and a
  channel-mix; per sequence a token shift of both (2 × hidden, in the model dtype) and the
  WKV numerator, denominator and running maximum (3 × attention_hidden, fp32). RWKV-5/6/7
  (model_type rwkv5/rwkv6/rwkv7) are not in transformers and stay refused.
"""

from __future__ import annotations

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING
from vramest.model.recurrent import attention_tensors, heads_output, mamba2_mixer

if TYPE_CHECKING:
    from vramest.model.shapes import ModelShape, TensorSpec, _Config

# transformers' RwkvModel.forward: state[0..1] (token shifts) in the model dtype, [2..4] fp32
RWKV_SHIFT_STATES = 2
RWKV_WKV_STATES = 3
RWKV_WKV_BYTES = 4.0
_ZAMBA2_KINDS = {"mamba": "mamba", "linear_attention": "mamba", "m": "mamba",
                 "hybrid": "hybrid", "g": "hybrid"}


def falcon_h1_shape(c: _Config, name: str) -> ModelShape:
    from vramest.model.shapes import LAYER_FULL, ModelShape, TensorSpec

    hidden = c.int("hidden_size")
    layers = c.int("num_hidden_layers")
    heads = c.int("num_attention_heads")
    kv_heads = c.int("num_key_value_heads", default=heads)
    head_dim = c.int("head_dim", default=hidden // heads)
    inter = c.int("intermediate_size")
    inner = c.int("mamba_d_ssm", default=int(c.data.get("mamba_expand", 2) * hidden))
    m_heads = c.int("mamba_n_heads")
    auto = c.data.get("mamba_d_head", "auto") == "auto"
    m_head_dim = inner // m_heads if auto else c.int("mamba_d_head")
    if m_heads * m_head_dim != inner:
        raise InputError(f"{c.origin}: mamba_n_heads × mamba_d_head must equal mamba_d_ssm in a "
                         "Falcon-H1 config.")
    mixer, conv, ssm, kernel = mamba2_mixer(c, hidden, m_heads, m_head_dim, False)
    rms_norm = c.bool("mamba_rms_norm", False)
    block: list[TensorSpec] = [t for t in mixer if rms_norm or t.role != "norm"]
    if c.bool("mamba_proj_bias", False):
        block.append(TensorSpec("bias", None, 1, mixer[0].rows))  # in_proj
    if c.bool("projectors_bias", False):
        block.append(TensorSpec("bias", None, 1, hidden))
    block += attention_tensors(hidden, heads, kv_heads, head_dim, hidden,
                               bias=c.bool("attention_bias", False))
    block += [TensorSpec("ffn_gate", None, inter, hidden), TensorSpec("ffn_up", None, inter, hidden),
              TensorSpec("ffn_down", None, hidden, inter),
              TensorSpec("norm", None, 1, hidden, 2)]  # input and pre-FFN RMS norms
    if c.bool("mlp_bias", False):
        block.append(TensorSpec("bias", None, 1, 2 * inter + hidden))
    vocab = c.int("vocab_size")
    tie = c.bool("tie_word_embeddings", False)
    return ModelShape(
        name=name, family="falcon_h1", num_layers=layers, hidden_size=hidden, num_heads=heads,
        num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=inter, vocab_size=vocab,
        tie_embeddings=tie, gated_mlp=True, layer_kinds=(LAYER_FULL,) * layers,
        explicit_layers=(tuple(block),) * layers,
        explicit_global=heads_output(c, hidden, vocab, tie), state_layers=layers,
        conv_state=conv, conv_kernel=kernel, ssm_state=ssm, ssm_heads=m_heads,
        ssm_head_dim=m_head_dim, ssm_chunk=c.int("mamba_chunk_size", default=256),
        max_context=c.int("max_position_embeddings", default=0, minimum=0) or None,
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        notes=(f"hybrid: each of {layers} layers runs attention (KV cache) and a Mamba-2 "
               "mixer (recurrent state) in parallel",),
    )


def _zamba2_kinds(c: _Config, layers: int) -> list[str]:
    kinds = c.data.get("layers_block_type") or c.data.get("layer_types")
    if not (isinstance(kinds, list) and len(kinds) == layers):
        raise InputError(f"{c.origin} needs layers_block_type with one entry per layer "
                         "(mamba or hybrid) for a Zamba2 shape.")
    names = [_ZAMBA2_KINDS.get(str(k)) for k in kinds]
    if None in names:
        raise InputError(f"{c.origin}: layers_block_type may hold mamba and hybrid entries only.")
    return [str(n) for n in names]


def zamba2_shape(c: _Config, name: str) -> ModelShape:
    from vramest.model.shapes import LAYER_FULL, LAYER_NO_KV, ModelShape, TensorSpec

    hidden = c.int("hidden_size")
    layers = c.int("num_hidden_layers")
    kinds = _zamba2_kinds(c, layers)
    heads = c.int("num_attention_heads")
    kv_heads = c.int("num_key_value_heads", default=heads)
    wide = 2 * hidden  # the shared block reads [hidden state, embeddings] concatenated
    head_dim = wide // heads
    inter = c.int("intermediate_size", default=4 * hidden)
    rank = c.int("adapter_rank", default=128)
    blocks = c.int("num_mem_blocks", default=1)
    bias = c.bool("add_bias_linear", False)
    m_heads = c.int("n_mamba_heads", default=8)
    inner = int(c.data.get("mamba_expand", 2) * hidden)
    mixer, conv, ssm, kernel = mamba2_mixer(c, hidden, m_heads, inner // m_heads, bias)
    mamba = (*mixer, TensorSpec("norm", None, 1, hidden))
    shared = [*attention_tensors(wide, heads, kv_heads, head_dim, hidden, bias=False),
              TensorSpec("ffn_gate", None, inter, hidden), TensorSpec("ffn_up", None, inter, hidden),
              TensorSpec("ffn_down", None, hidden, inter),
              TensorSpec("norm", None, 1, wide), TensorSpec("norm", None, 1, hidden)]
    if bias:
        shared.append(TensorSpec("bias", None, 1, 2 * inter + hidden))
    adapters = [TensorSpec("ffn_up", None, rank, hidden),  # gate_up_proj's LoRA pair
                TensorSpec("ffn_up", None, 2 * inter, rank)]
    if c.bool("use_shared_attention_adapter", False):
        if kv_heads != heads:  # Zamba2Attention adds a 2 × hidden adapter output to k and v
            raise InputError(f"{c.origin}: Zamba2's attention adapters need num_key_value_heads "
                             f"equal to num_attention_heads ({kv_heads} and {heads} given).")
        adapters += [TensorSpec("attn_qkv", None, rank, wide, 3),
                     TensorSpec("attn_qkv", None, wide, rank, 3)]
    out: list[tuple[TensorSpec, ...]] = []
    hybrid_seen = 0
    for kind in kinds:
        if kind == "mamba":
            out.append(mamba)
            continue
        # the first layer of each shared block stores its weights; the others tie to them
        owner = shared if hybrid_seen < blocks else []
        hybrid_seen += 1
        out.append((*mamba, TensorSpec("attn_o", None, hidden, hidden), *owner, *adapters))
    vocab = c.int("vocab_size")
    tie = c.bool("tie_word_embeddings", True)
    attention = kinds.count("hybrid")
    return ModelShape(
        name=name, family="zamba2", num_layers=layers, hidden_size=hidden, num_heads=heads,
        num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=inter, vocab_size=vocab,
        tie_embeddings=tie, gated_mlp=True,
        layer_kinds=tuple(LAYER_FULL if k == "hybrid" else LAYER_NO_KV for k in kinds),
        explicit_layers=tuple(out), explicit_global=heads_output(c, hidden, vocab, tie),
        state_layers=layers, conv_state=conv, conv_kernel=kernel, ssm_state=ssm,
        ssm_heads=m_heads, ssm_head_dim=inner // m_heads,
        ssm_chunk=c.int("chunk_size", default=256),
        max_context=c.int("max_position_embeddings", default=0, minimum=0) or None,
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        notes=(f"hybrid: {layers} Mamba-2 layers keep a recurrent state; {attention} of them "
               f"also run one of {min(blocks, attention)} shared attention blocks (KV cache), "
               "whose weights are stored once: compute counts each block once, not per use",),
    )


def rwkv4_shape(c: _Config, name: str) -> ModelShape:
    from vramest.model.shapes import LAYER_NO_KV, ModelShape, TensorSpec

    hidden = c.int("hidden_size")
    layers = c.int("num_hidden_layers")
    attn = c.int("attention_hidden_size", default=hidden)
    inter = c.int("intermediate_size", default=4 * hidden)
    if attn != hidden:  # RwkvModel sizes its WKV state by hidden_size
        raise InputError(f"{c.origin}: attention_hidden_size {attn} differs from hidden_size "
                         f"{hidden}; transformers' RWKV-4 keeps its state at hidden_size only.")
    block = (TensorSpec("norm", None, 1, hidden, 4),  # ln1, ln2: LayerNorm weight + bias
             TensorSpec("ssm_param", None, 1, attn, 2),  # time_decay, time_first
             TensorSpec("ssm_param", None, 1, hidden, 5),  # time_mix k, v, r; k, r (channel)
             TensorSpec("ssm_in", None, attn, hidden, 3),  # key, value, receptance
             TensorSpec("ssm_out", None, hidden, attn),
             TensorSpec("ffn_up", None, inter, hidden),  # channel-mix key
             TensorSpec("ffn_gate", None, hidden, hidden),  # channel-mix receptance
             TensorSpec("ffn_down", None, hidden, inter))
    first = (*block, TensorSpec("norm", None, 1, hidden, 2))  # blocks.0.pre_ln
    vocab = c.int("vocab_size")
    tie = c.bool("tie_word_embeddings", False)
    global_tensors = [TensorSpec("embedding", None, vocab, hidden),
                      TensorSpec("norm", None, 1, hidden, 2)]  # ln_out
    if not tie:
        global_tensors.append(TensorSpec("lm_head", None, vocab, hidden))
    return ModelShape(
        name=name, family="rwkv", num_layers=layers, hidden_size=hidden, num_heads=1,
        num_kv_heads=1, head_dim=hidden, intermediate_size=inter, vocab_size=vocab,
        tie_embeddings=tie, gated_mlp=False, layer_kinds=(LAYER_NO_KV,) * layers,
        explicit_layers=(first,) + (block,) * (layers - 1),
        explicit_global=tuple(global_tensors), state_layers=layers,
        conv_state=RWKV_SHIFT_STATES * hidden, conv_kernel=2,
        ssm_state=RWKV_WKV_STATES * attn, ssm_state_bytes=RWKV_WKV_BYTES,
        max_context=c.int("context_length", default=0, minimum=0) or None,
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        notes=("RWKV-4: a recurrent state per sequence (token shifts and the WKV state) "
               "instead of a KV cache",),
    )
