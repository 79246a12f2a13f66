"""Recurrent and hybrid decoders: Mamba-2 mixers beside attention and MLP layers.

Counted from transformers' modeling code (Mamba2Mixer, NemotronHMamba2Mixer; module names
beside each tensor). A Mamba-2 layer keeps, per sequence and whatever its length:
- a conv state: the last `conv_kernel - 1` inputs of its depthwise conv over
  conv_dim = intermediate + 2 × n_groups × state_size channels (vLLM
  `MambaStateShapeCalculator.mamba2_state_shape`; llama.cpp `llama_memory_recurrent` r_l);
- an SSM state: heads × head_dim × state_size (vLLM's temporal state; llama.cpp s_l).
Nemotron-H keeps the SSM state in fp32 (`mamba_ssm_cache_dtype`).
"""

from __future__ import annotations

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from vramest.model.shapes import ModelShape, TensorSpec, _Config

# Nemotron-H's hybrid_override_pattern: one character per layer
_PATTERN = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}
_LIST_NAMES = {"linear_attention": "mamba", "mamba": "mamba", "full_attention": "attention",
               "attention": "attention", "mlp": "mlp", "moe": "moe"}
_FP32 = {"float32": 4.0, "fp32": 4.0}


def recurrent_shape(c: _Config, family: str, name: str) -> ModelShape:
    if family in ("mamba", "falcon_mamba"):
        return _mamba1(c, family, name)
    if family == "mamba2":
        return _mamba2(c, name)
    if family == "jamba":
        return _jamba(c, name)
    if family == "qwen3_next":
        return _qwen3_next(c, name)
    if family == "granitemoehybrid":
        return _granite_hybrid(c, name)
    if family in ("falcon_h1", "zamba2", "rwkv"):
        from vramest.model.recurrent_hybrids import falcon_h1_shape, rwkv4_shape, zamba2_shape

        build = {"falcon_h1": falcon_h1_shape, "zamba2": zamba2_shape, "rwkv": rwkv4_shape}
        return build[family](c, name)
    return _nemotron_h(c, name)


def _mamba1_mixer(hidden: int, inner: int, state: int, kernel: int, rank: int, *,
                  conv_bias: bool, proj_bias: bool) -> list[TensorSpec]:
    """MambaMixer's tensors (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj)."""
    from vramest.model.shapes import TensorSpec

    tensors = [TensorSpec("ssm_in", None, 2 * inner, hidden),  # in_proj: x and the gate z
               TensorSpec("ssm_conv", None, inner, kernel),  # conv1d (depthwise)
               TensorSpec("ssm_in", None, rank + 2 * state, inner),  # x_proj: dt, B, C
               TensorSpec("ssm_in", None, inner, rank),  # dt_proj
               TensorSpec("bias", None, 1, inner),  # dt_proj bias
               TensorSpec("ssm_param", None, inner, state + 1),  # A_log and D
               TensorSpec("ssm_out", None, hidden, inner)]  # out_proj
    if conv_bias:
        tensors.append(TensorSpec("bias", None, 1, inner))
    if proj_bias:
        tensors.append(TensorSpec("bias", None, 1, 2 * inner + hidden))
    return tensors


def _rank(c: _Config, key: str, hidden: int) -> int:
    value = c.data.get(key, "auto")
    return -(-hidden // 16) if value == "auto" else c.int(key)


def heads_output(c: _Config, hidden: int, vocab: int, tie: bool) -> tuple[TensorSpec, ...]:
    from vramest.model.shapes import TensorSpec

    out = [TensorSpec("embedding", None, vocab, hidden), TensorSpec("norm", None, 1, hidden)]
    if not tie:
        out.append(TensorSpec("lm_head", None, vocab, hidden))
    return tuple(out)


def _mamba1(c: _Config, family: str, name: str) -> ModelShape:
    """Mamba-1 (MambaMixer; Falcon-Mamba adds weightless RMS norms): per sequence a conv state
    of (conv_kernel - 1) × intermediate and an SSM state of intermediate × state_size."""
    from vramest.model.shapes import LAYER_NO_KV, ModelShape, TensorSpec

    hidden = c.int("hidden_size")
    layers = c.int("num_hidden_layers")
    inner = c.int("intermediate_size", default=int(c.data.get("expand", 2) * hidden))
    state = c.int("state_size", default=16)
    kernel = c.int("conv_kernel", default=4)
    tensors = (*_mamba1_mixer(hidden, inner, state, kernel, _rank(c, "time_step_rank", hidden),
                              conv_bias=c.bool("use_conv_bias", True),
                              proj_bias=c.bool("use_bias", False)),
               TensorSpec("norm", None, 1, hidden))
    vocab = c.int("vocab_size")
    tie = c.bool("tie_word_embeddings", True)
    return ModelShape(
        name=name, family=family, num_layers=layers, hidden_size=hidden, num_heads=1,
        num_kv_heads=1, head_dim=hidden, intermediate_size=inner, vocab_size=vocab,
        tie_embeddings=tie, gated_mlp=False, layer_kinds=(LAYER_NO_KV,) * layers,
        explicit_layers=(tensors,) * layers, explicit_global=heads_output(c, hidden, vocab, tie),
        state_layers=layers, conv_state=(kernel - 1) * inner, conv_kernel=kernel,
        ssm_state=inner * state, selective_scan=True,
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        notes=("Mamba: a recurrent state per sequence instead of a KV cache",),
    )


def _jamba(c: _Config, name: str) -> ModelShape:
    """Jamba (JambaForCausalLM): Mamba-1 mixers with RMS norms on dt, B and C, one attention
    layer every `attn_layer_period`, a mixture of experts every `expert_layer_period`."""
    from vramest.model.shapes import LAYER_FULL, LAYER_NO_KV, ModelShape, TensorSpec

    hidden = c.int("hidden_size")
    layers = c.int("num_hidden_layers")
    heads = c.int("num_attention_heads")
    kv_heads = c.int("num_key_value_heads", default=heads)
    head_dim = hidden // heads
    inter = c.int("intermediate_size")
    experts = c.int("num_experts", default=16)
    per_token = c.int("num_experts_per_tok", default=2)
    state = c.int("mamba_d_state", default=16)
    kernel = c.int("mamba_d_conv", default=4)
    inner = c.int("mamba_expand", default=2) * hidden
    rank = _rank(c, "mamba_dt_rank", hidden)
    attn_period = c.int("attn_layer_period", default=8)
    attn_offset = c.int("attn_layer_offset", default=4, minimum=0)
    expert_period = c.int("expert_layer_period", default=2)
    expert_offset = c.int("expert_layer_offset", default=1, minimum=0)
    mamba = (*_mamba1_mixer(hidden, inner, state, kernel, rank,
                            conv_bias=c.bool("mamba_conv_bias", True),
                            proj_bias=c.bool("mamba_proj_bias", False)),
             TensorSpec("norm", None, 1, rank), TensorSpec("norm", None, 1, state, 2))
    attention = attention_tensors(hidden, heads, kv_heads, head_dim, hidden, bias=False)
    dense = (TensorSpec("ffn_gate", None, inter, hidden), TensorSpec("ffn_up", None, inter, hidden),
             TensorSpec("ffn_down", None, hidden, inter))
    moe = (TensorSpec("router", None, experts, hidden),
           TensorSpec("expert_gate", None, inter, hidden, experts),
           TensorSpec("expert_up", None, inter, hidden, experts),
           TensorSpec("expert_down", None, hidden, inter, experts))
    norms = (TensorSpec("norm", None, 1, hidden, 2),)  # input and pre-FFN RMS norms
    is_attention = [i % attn_period == attn_offset for i in range(layers)]
    is_moe = tuple(experts > 1 and i % expert_period == expert_offset for i in range(layers))
    blocks = tuple((*(attention if att else mamba), *(moe if m else dense), *norms)
                   for att, m in zip(is_attention, is_moe, strict=True))
    vocab = c.int("vocab_size")
    tie = c.bool("tie_word_embeddings", False)
    return ModelShape(
        name=name, family="jamba", num_layers=layers, hidden_size=hidden, num_heads=heads,
        num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=inter, vocab_size=vocab,
        tie_embeddings=tie, gated_mlp=True,
        layer_kinds=tuple(LAYER_FULL if a else LAYER_NO_KV for a in is_attention),
        num_experts=experts if any(is_moe) else 0, experts_per_token=per_token,
        moe_intermediate_size=inter, moe_layers=is_moe if any(is_moe) else (),
        explicit_layers=blocks, explicit_global=heads_output(c, hidden, vocab, tie),
        state_layers=layers - sum(is_attention), conv_state=(kernel - 1) * inner,
        conv_kernel=kernel, ssm_state=inner * state, selective_scan=True,
        max_context=c.int("max_position_embeddings", default=0, minimum=0) or None,
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        notes=(f"hybrid: {layers - sum(is_attention)} Mamba layers keep a recurrent state, "
               f"{sum(is_attention)} attention layers a KV cache",),
    )


def _qwen3_next(c: _Config, name: str) -> ModelShape:
    """Qwen3-Next (Qwen3NextForCausalLM): gated DeltaNet layers with a recurrent state, and
    every `full_attention_interval`-th layer gated attention (q_proj twice as wide: queries and
    their output gate); a routed MoE with a gated shared expert after each.

    DeltaNet state per sequence: a conv window of (kernel - 1) × (2 × key_dim + value_dim) and
    a value_heads × key_head_dim × value_head_dim matrix (vLLM `gated_delta_net_state_shape`).
    """
    from vramest.model.shapes import LAYER_FULL, LAYER_NO_KV, ModelShape, TensorSpec

    hidden = c.int("hidden_size")
    layers = c.int("num_hidden_layers")
    heads = c.int("num_attention_heads")
    kv_heads = c.int("num_key_value_heads", default=heads)
    head_dim = c.int("head_dim", default=hidden // heads)
    kinds = c.data.get("layer_types")
    if not (isinstance(kinds, list) and len(kinds) == layers):
        interval = c.int("full_attention_interval", default=4)
        kinds = ["full_attention" if (i + 1) % interval == 0 else "linear_attention"
                 for i in range(layers)]
    k_heads, v_heads = c.int("linear_num_key_heads"), c.int("linear_num_value_heads")
    k_dim, v_dim = c.int("linear_key_head_dim"), c.int("linear_value_head_dim")
    kernel = c.int("linear_conv_kernel_dim", default=4)
    key, value = k_heads * k_dim, v_heads * v_dim
    conv_dim = 2 * key + value
    delta = (TensorSpec("ssm_in", None, 2 * key + 2 * value, hidden),  # in_proj_qkvz
             TensorSpec("ssm_in", None, 2 * v_heads, hidden),  # in_proj_ba
             TensorSpec("ssm_conv", None, conv_dim, kernel),  # conv1d, no bias
             TensorSpec("ssm_param", None, 1, v_heads, 2),  # dt_bias, A_log
             TensorSpec("norm", None, 1, v_dim),  # gated RMSNorm over a head
             TensorSpec("ssm_out", None, hidden, value))
    attention = [TensorSpec("attn_q", None, 2 * heads * head_dim, hidden),
                 TensorSpec("attn_k", None, kv_heads * head_dim, hidden),
                 TensorSpec("attn_v", None, kv_heads * head_dim, hidden),
                 TensorSpec("attn_o", None, hidden, heads * head_dim),
                 TensorSpec("norm", None, 1, head_dim, 2)]  # q_norm, k_norm
    if c.bool("attention_bias", False):
        attention.append(TensorSpec("bias", None, 1, (2 * heads + 2 * kv_heads) * head_dim
                                    + hidden))
    experts = c.int("num_experts", default=0, minimum=0)
    inter = c.int("intermediate_size")
    moe_inter = c.int("moe_intermediate_size", default=inter)
    shared = c.int("shared_expert_intermediate_size", default=0, minimum=0)
    step = c.int("decoder_sparse_step", default=1)
    mlp_only = c.data.get("mlp_only_layers") or []
    is_moe = tuple(experts > 0 and i not in mlp_only and (i + 1) % step == 0
                   for i in range(layers))
    dense = (TensorSpec("ffn_gate", None, inter, hidden), TensorSpec("ffn_up", None, inter, hidden),
             TensorSpec("ffn_down", None, hidden, inter))
    moe = (TensorSpec("router", None, experts, hidden),
           TensorSpec("expert_gate", None, moe_inter, hidden, experts),
           TensorSpec("expert_up", None, moe_inter, hidden, experts),
           TensorSpec("expert_down", None, hidden, moe_inter, experts),
           TensorSpec("shared_gate", None, shared, hidden),
           TensorSpec("shared_up", None, shared, hidden),
           TensorSpec("shared_down", None, hidden, shared),
           TensorSpec("router", None, 1, hidden))  # shared_expert_gate
    norms = (TensorSpec("norm", None, 1, hidden, 2),)
    blocks = tuple((*(attention if kind == "full_attention" else delta),
                    *(moe if m else dense), *norms) for kind, m in zip(kinds, is_moe, strict=True))
    vocab = c.int("vocab_size")
    tie = c.bool("tie_word_embeddings", False)
    recurrent = sum(kind != "full_attention" for kind in kinds)
    return ModelShape(
        name=name, family="qwen3_next", num_layers=layers, hidden_size=hidden, num_heads=heads,
        num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=inter, vocab_size=vocab,
        tie_embeddings=tie, gated_mlp=True, qk_norm=True,
        layer_kinds=tuple(LAYER_FULL if kind == "full_attention" else LAYER_NO_KV
                          for kind in kinds),
        num_experts=experts if any(is_moe) else 0,
        experts_per_token=c.int("num_experts_per_tok", default=1), moe_intermediate_size=moe_inter,
        shared_experts=1 if shared and any(is_moe) else 0, shared_intermediate_size=shared,
        moe_layers=is_moe if any(is_moe) else (), explicit_layers=blocks,
        explicit_global=heads_output(c, hidden, vocab, tie), state_layers=recurrent,
        conv_state=(kernel - 1) * conv_dim, conv_kernel=kernel, ssm_state=v_heads * k_dim * v_dim,
        max_context=c.int("max_position_embeddings", default=0, minimum=0) or None,
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        notes=(f"hybrid: {recurrent} gated DeltaNet layers keep a recurrent state, "
               f"{layers - recurrent} gated-attention layers a KV cache",),
    )


def _granite_hybrid(c: _Config, name: str) -> ModelShape:
    """Granite 4.0 hybrid (GraniteMoeHybridForCausalLM): Mamba-2 or attention per layer, then
    an optional routed MoE beside a shared gated MLP in every layer."""
    from vramest.model.shapes import LAYER_FULL, LAYER_NO_KV, ModelShape, TensorSpec

    hidden = c.int("hidden_size")
    layers = c.int("num_hidden_layers")
    kinds = c.data.get("layer_types") or c.data.get("layers_block_type")
    if not (isinstance(kinds, list) and len(kinds) == layers):
        raise InputError(f"{c.origin} needs layer_types with one entry per layer for a Granite "
                         "hybrid shape.")
    names = [_LIST_NAMES.get(str(k)) for k in kinds]
    if None in names or "mlp" in names or "moe" in names:
        raise InputError(f"{c.origin}: layer_types may hold mamba and attention entries only.")
    heads = c.int("num_attention_heads")
    kv_heads = c.int("num_key_value_heads", default=heads)
    head_dim = hidden // heads
    m_heads = c.int("mamba_n_heads")
    inner = int(c.data.get("mamba_expand", 2) * hidden)
    m_head_dim = inner // m_heads
    mixer, conv, ssm, kernel = mamba2_mixer(c, hidden, m_heads, m_head_dim,
                                      c.bool("mamba_proj_bias", False))
    attention = attention_tensors(hidden, heads, kv_heads, head_dim, hidden,
                                  bias=c.bool("attention_bias", False))
    experts = c.int("num_local_experts", default=0, minimum=0)
    inter = c.int("intermediate_size")
    shared = c.int("shared_intermediate_size")
    ffn = [TensorSpec("shared_up", None, 2 * shared, hidden),  # input_linear: gate and up
           TensorSpec("shared_down", None, hidden, shared),
           TensorSpec("norm", None, 1, hidden, 2)]
    if experts:
        ffn += [TensorSpec("router", None, experts, hidden),
                TensorSpec("expert_gate", None, inter, hidden, experts),
                TensorSpec("expert_up", None, inter, hidden, experts),
                TensorSpec("expert_down", None, hidden, inter, experts)]
    blocks = tuple((*(attention if n == "attention" else mixer), *ffn) for n in names)
    vocab = c.int("vocab_size")
    tie = c.bool("tie_word_embeddings", True)
    recurrent = names.count("mamba")
    return ModelShape(
        name=name, family="granitemoehybrid", num_layers=layers, hidden_size=hidden,
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=shared,
        vocab_size=vocab, tie_embeddings=tie, gated_mlp=True,
        layer_kinds=tuple(LAYER_FULL if n == "attention" else LAYER_NO_KV for n in names),
        num_experts=experts, experts_per_token=c.int("num_experts_per_tok", default=1)
        if experts else 0, moe_intermediate_size=inter if experts else 0,
        shared_experts=1 if experts else 0, shared_intermediate_size=shared if experts else 0,
        explicit_layers=blocks, explicit_global=heads_output(c, hidden, vocab, tie),
        state_layers=recurrent, conv_state=conv, conv_kernel=kernel, ssm_state=ssm,
        ssm_heads=m_heads, ssm_head_dim=m_head_dim, ssm_chunk=c.int("mamba_chunk_size", default=256),
        max_context=c.int("max_position_embeddings", default=0, minimum=0) or None,
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        notes=(f"hybrid: {recurrent} Mamba-2 layers keep a recurrent state, "
               f"{layers - recurrent} attention layers a KV cache",),
    )


def attention_tensors(hidden_in: int, heads: int, kv_heads: int, head_dim: int, out: int, *,
                      bias: bool) -> list[TensorSpec]:
    """A hybrid's plain attention block: q, k, v and o projections, their biases as one."""
    from vramest.model.shapes import TensorSpec

    tensors = [TensorSpec("attn_q", None, heads * head_dim, hidden_in),
               TensorSpec("attn_k", None, kv_heads * head_dim, hidden_in),
               TensorSpec("attn_v", None, kv_heads * head_dim, hidden_in),
               TensorSpec("attn_o", None, out, heads * head_dim)]
    if bias:
        tensors.append(TensorSpec("bias", None, 1, (heads + 2 * kv_heads) * head_dim + out))
    return tensors


def mamba2_mixer(c: _Config, hidden: int, heads: int, head_dim: int,
           bias: bool) -> tuple[tuple[TensorSpec, ...], int, int, int]:
    """A Mamba-2 mixer's tensors, its conv state and SSM state (elements per sequence), and
    its conv kernel."""
    from vramest.model.shapes import TensorSpec

    state = c.int("ssm_state_size", "state_size", "mamba_d_state")
    groups = c.int("n_groups", "mamba_n_groups", "mamba_ngroups", default=1)
    kernel = c.int("conv_kernel", "mamba_d_conv", default=4)
    inner = heads * head_dim
    conv_dim = inner + 2 * groups * state
    tensors = [
        TensorSpec("ssm_in", None, inner + conv_dim + heads, hidden),  # in_proj: z, xBC, dt
        TensorSpec("ssm_conv", None, conv_dim, kernel),  # conv1d (depthwise)
        TensorSpec("ssm_param", None, 1, heads, 3),  # dt_bias, A_log, D
        TensorSpec("norm", None, 1, inner),  # gated RMSNorm
        TensorSpec("ssm_out", None, hidden, inner),  # out_proj
    ]
    if c.bool("use_conv_bias", True) and c.bool("mamba_conv_bias", True):
        tensors.append(TensorSpec("bias", None, 1, conv_dim))
    if bias:
        tensors.append(TensorSpec("bias", None, 1, inner + conv_dim + heads + hidden))
    return tuple(tensors), (kernel - 1) * conv_dim, heads * head_dim * state, kernel


def _mamba2(c: _Config, name: str) -> ModelShape:
    from vramest.model.shapes import LAYER_NO_KV, ModelShape, TensorSpec

    hidden = c.int("hidden_size")
    layers = c.int("num_hidden_layers")
    heads = c.int("num_heads")
    head_dim = c.int("head_dim", default=64)
    if heads * head_dim != int(c.data.get("expand", 2) * hidden):
        raise InputError(f"{c.origin}: num_heads × head_dim must equal expand × hidden_size in a "
                         "Mamba-2 config.")
    mixer, conv, ssm, kernel = mamba2_mixer(c, hidden, heads, head_dim, c.bool("use_bias", False))
    block = (*mixer, TensorSpec("norm", None, 1, hidden))
    vocab = c.int("vocab_size")
    tie = c.bool("tie_word_embeddings", True)
    global_tensors = heads_output(c, hidden, vocab, tie)
    return ModelShape(
        name=name, family="mamba2", num_layers=layers, hidden_size=hidden, num_heads=heads,
        num_kv_heads=heads, head_dim=head_dim, intermediate_size=heads * head_dim,
        vocab_size=vocab, tie_embeddings=tie, gated_mlp=False,
        layer_kinds=(LAYER_NO_KV,) * layers, explicit_layers=(block,) * layers,
        explicit_global=tuple(global_tensors), state_layers=layers, conv_state=conv,
        ssm_state=ssm, conv_kernel=kernel, ssm_heads=heads, ssm_head_dim=head_dim,
        ssm_chunk=c.int("chunk_size", default=256),  # Mamba2Config's default
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        notes=("Mamba-2: a recurrent state per sequence instead of a KV cache",),
    )


def _nemotron_layers(c: _Config) -> list[str]:
    pattern = c.data.get("hybrid_override_pattern")
    if isinstance(pattern, str) and pattern:
        unknown = sorted(set(pattern) - set(_PATTERN))
        if unknown:
            raise InputError(f"{c.origin}: hybrid_override_pattern has {''.join(unknown)!r}; "
                             "accepted: M (Mamba-2), * (attention), - (MLP), E (MoE).")
        return [_PATTERN[ch] for ch in pattern]
    for key in ("layers_block_type", "layer_types"):
        kinds = c.data.get(key)
        if isinstance(kinds, list) and kinds:
            names = [_LIST_NAMES.get(str(k)) for k in kinds]
            if None in names:
                raise InputError(f"{c.origin}: {key} holds a layer type vramest does not know.")
            return [str(n) for n in names]
    raise InputError(f"{c.origin} has no hybrid_override_pattern or layers_block_type; a "
                     "Nemotron-H shape needs one.")


def _nemotron_h(c: _Config, name: str) -> ModelShape:
    from vramest.model.shapes import LAYER_FULL, LAYER_NO_KV, ModelShape, TensorSpec

    layer_types = _nemotron_layers(c)
    if "moe" in layer_types:
        raise InputError(f"{c.origin}: Nemotron-H mixture-of-experts layers (E) are not "
                         "modelled yet; the dense M/*/- layouts are.")
    hidden = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    kv_heads = c.int("num_key_value_heads", default=heads)
    head_dim = c.int("head_dim", "attention_head_dim", default=hidden // heads)
    inter = c.int("intermediate_size")
    m_heads = c.int("mamba_num_heads")
    m_head_dim = c.int("mamba_head_dim")
    mixer, conv, ssm, kernel = mamba2_mixer(c, hidden, m_heads, m_head_dim, c.bool("use_bias", False))
    attention = attention_tensors(hidden, heads, kv_heads, head_dim, hidden,
                                  bias=c.bool("attention_bias", False))
    mlp = [TensorSpec("ffn_up", None, inter, hidden), TensorSpec("ffn_down", None, hidden, inter)]
    if c.bool("mlp_bias", False):
        mlp.append(TensorSpec("bias", None, 1, inter + hidden))
    norm = TensorSpec("norm", None, 1, hidden)
    blocks = {"mamba": (*mixer, norm), "attention": (*attention, norm), "mlp": (*mlp, norm)}
    vocab = c.int("vocab_size")
    tie = c.bool("tie_word_embeddings", False)
    global_tensors = [TensorSpec("embedding", None, vocab, hidden),
                      TensorSpec("norm", None, 1, hidden)]
    if not tie:
        global_tensors.append(TensorSpec("lm_head", None, vocab, hidden))
    ssm_dtype = str(c.data.get("mamba_ssm_cache_dtype", "float32")).lower()
    return ModelShape(
        name=name, family="nemotron_h", num_layers=len(layer_types), hidden_size=hidden,
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=inter,
        vocab_size=vocab, tie_embeddings=tie, gated_mlp=False,
        layer_kinds=tuple(LAYER_FULL if t == "attention" else LAYER_NO_KV for t in layer_types),
        explicit_layers=tuple(blocks[t] for t in layer_types),
        explicit_global=tuple(global_tensors), state_layers=layer_types.count("mamba"),
        conv_state=conv, conv_kernel=kernel, ssm_state=ssm, ssm_state_bytes=_FP32.get(ssm_dtype),
        ssm_heads=m_heads, ssm_head_dim=m_head_dim,  # NemotronHConfig's chunk_size default: 128
        ssm_chunk=c.int("chunk_size", "mamba_chunk_size", default=128),
        max_context=c.int("max_position_embeddings", default=0, minimum=0) or None,
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        notes=(f"hybrid: {layer_types.count('mamba')} Mamba-2 layers keep a recurrent state, "
               f"{layer_types.count('attention')} attention layers a KV cache",),
    )
