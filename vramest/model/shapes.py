"""Model shapes: what tensors a transformer is made of, read from a Hugging Face config.

One parser (`shape_from_config`) serves the built-in catalog, a local config.json and GGUF
metadata (converted to config keys), so the shape of a model is computed one way only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property

from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING, field, fields, frozen, replace
from vramest.model.families import FAMILIES, apply_family_rules
from vramest.model.kinds import (
    GDN_HYBRID_FAMILIES,
    QWEN3_VL_FAMILIES,
    RECURRENT_FAMILIES,
    has_moe_layers,
    is_encoder_family,
)

if TYPE_CHECKING:
    from typing import Any

LAYER_FULL = "full"
LAYER_SLIDING = "sliding"
LAYER_NO_KV = "none"  # recurrent / linear-attention layers keep no per-token KV
LAYER_ENCODER = "encoder"  # a bidirectional encoder block: runs once over the input, no KV cache

DECODER = "decoder"
ENCODER = "encoder"  # BERT-style: embeddings or scores out, no generation
ENCODER_DECODER = "encoder-decoder"  # T5/BART/Whisper: decoder layers attend to the encoder


@frozen
class TensorSpec:
    """A group of identical tensors: `count` tensors of `rows` × `cols` elements each.

    `cols` is the row length (the input dimension), which llama.cpp's quantizer looks at.
    """

    role: str
    layer: int | None
    rows: int
    cols: int
    count: int = 1

    @property
    def elements(self) -> int:
        return self.rows * self.cols * self.count


@frozen
class ModelShape:
    name: str
    family: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool = False
    gated_mlp: bool = True
    fused_qkv: bool = False
    attention_bias: bool = False
    attention_out_bias: bool = False
    mlp_bias: bool = False
    layer_norm_bias: bool = False  # LayerNorm (weight + bias) instead of RMSNorm
    norms_per_layer: int = 2
    qk_norm: bool = False
    position_embeddings: int = 0  # learned absolute positions (GPT-2, OPT, BLOOM has none)
    lm_head_bias: bool = False
    layer_kinds: tuple[str, ...] = ()
    sliding_window: int | None = None
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_experts: int = 0
    shared_intermediate_size: int = 0
    moe_layers: tuple[bool, ...] = ()
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    max_context: int | None = None
    # the longest length vLLM and SGLang derive: max_context times a RoPE scaling factor (see
    # `rope_scaled_context`); None when the config scales no RoPE that way
    scaled_context: int | None = None
    native_dtype: str | None = None
    extra_params: int = 0  # parts not modelled per tensor (e.g. a vision tower), stored 16 bit
    architecture: str = DECODER
    encoder_layers: int = 0  # encoder-decoder: the first encoder_layers of num_layers
    encoder_context: int | None = None  # a fixed encoder length (Whisper: 1500 audio frames)
    key_bias: bool = True  # with attention_bias: Whisper's k_proj has none
    final_norms: int = 1  # norms outside the blocks (T5: encoder's and decoder's final norms)
    extra_tensors: tuple[TensorSpec, ...] = ()  # odd global tensors: pooler, token types, stems
    # every tensor listed (hybrid layouts; counted on the meta device): replace the parsed ones
    explicit_global: tuple[TensorSpec, ...] = ()
    explicit_layers: tuple[tuple[TensorSpec, ...], ...] = ()  # one per layer, layer=None
    # recurrent layers (Mamba, gated DeltaNet): a state per sequence, constant in its length
    state_layers: int = 0
    conv_state: int = 0  # elements per layer: the last conv_kernel - 1 inputs of the conv
    conv_kernel: int = 0
    ssm_state: int = 0  # elements per layer: the SSM / linear-attention state matrix
    ssm_state_bytes: float | None = None  # when it is kept in its own precision (fp32)
    # Mamba-2 mixers: heads (each head_dim × state) and the chunk of the prefill's chunked scan
    ssm_heads: int = 0
    ssm_head_dim: int = 0
    ssm_chunk: int = 0
    selective_scan: bool = False  # Mamba-1 mixers (Mamba, Falcon-Mamba, Jamba)
    # Llama 4: the sliding layers attend within fixed chunks of sliding_window tokens (a query
    # at p sees p mod chunk + 1 keys), which engines size apart from a sliding window
    chunked_attention: bool = False
    # DeepSeek sparse attention: the indexer's key width per layer (0: none; sparse_attention.py)
    indexer_head_dim: int = 0
    notes: tuple[str, ...] = field(default=())

    # --- derived ------------------------------------------------------------------------
    # Aggregates are computed once per shape (cached_property writes the instance dict, which a
    # frozen record allows): estimates and searches ask for them thousands of times.
    def __hash__(self) -> int:
        return self._hash

    @cached_property
    def _hash(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in fields(self)))

    @cached_property
    def layer_kind_counts(self) -> dict[str, int]:
        """How many layers of each kind (full attention, sliding window, no KV)."""
        return dict(Counter(self.kinds()))

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def gqa_ratio(self) -> int:
        return max(1, self.num_heads // max(1, self.num_kv_heads))

    def kinds(self) -> tuple[str, ...]:
        return self.layer_kinds or (LAYER_FULL,) * self.num_layers

    @property
    def decoder_layers(self) -> int:
        """Layers that run once per generated token (all of them, except an encoder's)."""
        return self.num_layers - self.layer_kind_counts.get(LAYER_ENCODER, 0)

    def has_cross_attention(self, layer: int) -> bool:
        """A decoder layer of an encoder-decoder: it also attends to the encoder output."""
        return self.architecture == ENCODER_DECODER and layer >= self.encoder_layers

    def is_moe_layer(self, layer: int) -> bool:
        if not self.is_moe:
            return False
        return self.moe_layers[layer] if self.moe_layers else True

    def tensors(self) -> Iterator[TensorSpec]:
        """Every weight tensor, grouped, with its role."""
        yield from self.global_tensors()
        for layer in range(self.num_layers):
            yield from self.layer_tensors(layer)

    def counted_tensors(self) -> Iterator[tuple[TensorSpec, int]]:
        """Every weight tensor once per layer group, with how many layers repeat it: the sums
        over `tensors()` without a loop over the layers."""
        for t in self.global_tensors():
            yield t, 1
        for layer, count in self.layer_groups():
            for t in self.layer_tensors(layer):
                yield t, count

    def global_tensors(self) -> Iterator[TensorSpec]:
        """Tensors outside the repeated blocks: embeddings, final norm, output head."""
        if self.explicit_layers:
            yield from self.explicit_global
            return
        h, v = self.hidden_size, self.vocab_size
        yield TensorSpec("embedding", None, v, h)
        if self.position_embeddings:
            yield TensorSpec("position_embedding", None, self.position_embeddings, h)
        yield TensorSpec("norm", None, 1, h, self.final_norms * (2 if self.layer_norm_bias else 1))
        if not self.tie_embeddings and self.architecture != ENCODER:
            yield TensorSpec("lm_head", None, v, h)
        if self.lm_head_bias:
            yield TensorSpec("bias", None, 1, v)
        if self.extra_params:
            yield TensorSpec("extra", None, 1, self.extra_params)
        yield from self.extra_tensors

    def layer_tensors(self, layer: int) -> Iterator[TensorSpec]:
        if self.explicit_layers:
            yield from (replace(t, layer=layer) for t in self.explicit_layers[layer])
            return
        yield from self._attention_tensors(layer)
        cross = self.has_cross_attention(layer)
        if cross:  # same projections again, keys and values from the encoder output
            yield from self._attention_tensors(layer)
        yield from self._mlp_tensors(layer)
        yield TensorSpec("norm", layer, 1, self.hidden_size, (self.norms_per_layer + cross)
                         * (2 if self.layer_norm_bias else 1))
        if self.qk_norm:
            yield TensorSpec("norm", layer, 1, self.head_dim, 2)

    def layer_groups(self) -> list[tuple[int, int]]:
        """(a representative layer, how many layers share its tensors): dense and MoE blocks."""
        return list(self._layer_groups)

    @cached_property
    def _layer_groups(self) -> tuple[tuple[int, int], ...]:
        if not self.moe_layers and not self.explicit_layers and \
                self.architecture != ENCODER_DECODER:  # every layer alike: one group, no loop
            return ((0, self.num_layers),) if self.num_layers > 0 else ()
        counts: dict[tuple[Any, ...], list[int]] = {}
        for layer in range(self.num_layers):
            key = (self.is_moe_layer(layer), self.has_cross_attention(layer),
                   self.explicit_layers[layer] if self.explicit_layers else ())
            counts.setdefault(key, []).append(layer)
        return tuple((layers[0], len(layers)) for layers in counts.values())

    def _attention_tensors(self, layer: int) -> Iterator[TensorSpec]:
        h = self.hidden_size
        if self.is_mla:
            qk_dim = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                yield TensorSpec("attn_q_a", layer, self.q_lora_rank, h)
                yield TensorSpec("norm", layer, 1, self.q_lora_rank)
                yield TensorSpec("attn_q_b", layer, self.num_heads * qk_dim, self.q_lora_rank)
            else:
                yield TensorSpec("attn_q", layer, self.num_heads * qk_dim, h)
            yield TensorSpec("attn_kv_a", layer, self.kv_lora_rank + self.qk_rope_head_dim, h)
            yield TensorSpec("norm", layer, 1, self.kv_lora_rank)
            kv_b_rows = self.num_heads * (self.qk_nope_head_dim + self.v_head_dim)
            yield TensorSpec("attn_kv_b", layer, kv_b_rows, self.kv_lora_rank)
            yield TensorSpec("attn_o", layer, h, self.num_heads * self.v_head_dim)
            return
        q_out = self.num_heads * self.head_dim
        kv_out = self.num_kv_heads * self.head_dim
        if self.fused_qkv:
            yield TensorSpec("attn_qkv", layer, q_out + 2 * kv_out, h)
        else:
            yield TensorSpec("attn_q", layer, q_out, h)
            yield TensorSpec("attn_k", layer, kv_out, h)
            yield TensorSpec("attn_v", layer, kv_out, h)
        yield TensorSpec("attn_o", layer, h, q_out)
        if self.attention_bias:
            yield TensorSpec("bias", layer, 1, q_out + (2 if self.key_bias else 1) * kv_out)
        if self.attention_out_bias:
            yield TensorSpec("bias", layer, 1, h)

    def _mlp_tensors(self, layer: int) -> Iterator[TensorSpec]:
        h = self.hidden_size
        if self.is_moe_layer(layer):
            inter, n = self.moe_intermediate_size, self.num_experts
            yield TensorSpec("router", layer, n, h)
            yield TensorSpec("expert_gate", layer, inter, h, n)
            yield TensorSpec("expert_up", layer, inter, h, n)
            yield TensorSpec("expert_down", layer, h, inter, n)
            if self.mlp_bias:
                yield TensorSpec("bias", layer, 1, (2 * inter + h) * n)
            if self.shared_experts:
                shared = self.shared_intermediate_size * self.shared_experts
                yield TensorSpec("shared_gate", layer, shared, h)
                yield TensorSpec("shared_up", layer, shared, h)
                yield TensorSpec("shared_down", layer, h, shared)
            return
        inter = self.intermediate_size
        if self.gated_mlp:
            yield TensorSpec("ffn_gate", layer, inter, h)
        yield TensorSpec("ffn_up", layer, inter, h)
        yield TensorSpec("ffn_down", layer, h, inter)
        if self.mlp_bias:
            yield TensorSpec("bias", layer, 1, inter * (2 if self.gated_mlp else 1) + h)

    def param_count(self) -> int:
        return self._param_count

    @cached_property
    def _param_count(self) -> int:
        return sum(count * t.elements for t, count in self.counted_tensors())

    def active_param_count(self) -> int:
        """Parameters one token uses: a MoE layer counts only its routed experts."""
        return self._active_param_count

    @cached_property
    def _active_param_count(self) -> int:
        return sum(count * (t.rows * t.cols * min(self.experts_per_token, t.count)
                            if t.role in ("expert_gate", "expert_up", "expert_down")
                            else t.elements) for t, count in self.counted_tensors())

    def scaled(self, name: str, **changes: Any) -> ModelShape:
        return replace(self, name=name, **changes)

    def summary(self) -> dict[str, Any]:
        kinds = self.kinds()
        out: dict[str, Any] = {
            "family": self.family,
            "layers": self.num_layers,
            "hidden": self.hidden_size,
            "heads": self.num_heads,
            "kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "intermediate": self.intermediate_size,
            "vocab": self.vocab_size,
            "tied_embeddings": self.tie_embeddings,
            "full_attention_layers": kinds.count(LAYER_FULL),
            "sliding_window_layers": kinds.count(LAYER_SLIDING),
            "no_kv_layers": kinds.count(LAYER_NO_KV),
        }
        if self.state_layers:
            out.update(recurrent_layers=self.state_layers, conv_state=self.conv_state,
                       ssm_state=self.ssm_state)
        if self.architecture != DECODER:
            out.update(architecture=self.architecture,
                       encoder_layers=kinds.count(LAYER_ENCODER))
        if self.sliding_window:
            out["sliding_window"] = self.sliding_window
        if self.is_moe:
            out.update(experts=self.num_experts, experts_per_token=self.experts_per_token,
                       moe_intermediate=self.moe_intermediate_size,
                       shared_experts=self.shared_experts,
                       moe_layers=sum(self.is_moe_layer(i) for i in range(self.num_layers)))
        if self.is_mla:
            out.update(kv_lora_rank=self.kv_lora_rank, qk_rope_head_dim=self.qk_rope_head_dim,
                       q_lora_rank=self.q_lora_rank)
        if self.max_context:
            out["max_context"] = self.max_context
        return out


# --- parsing a Hugging Face config ----------------------------------------------------------
_MAX_DIM = 1 << 24  # Llama 4 Scout declares 10,485,760 positions
_MAX_LAYERS = 10_000


class _Config:
    """Typed reads of a config dict, with one-sentence errors that name the key."""

    def __init__(self, data: Mapping[str, Any], origin: str) -> None:
        self.data, self.origin = data, origin

    def has(self, *keys: str) -> bool:
        return any(self.data.get(k) is not None for k in keys)

    def int(self, *keys: str, default: int | None = None, minimum: int = 1) -> int:
        for key in keys:
            value = self.data.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise InputError(f"{self.origin}: {key} must be a whole number, got {short(value)}.")
            if not minimum <= value <= _MAX_DIM:
                raise InputError(
                    f"{self.origin}: {key} = {value} is out of range ({minimum}..{_MAX_DIM})."
                )
            return value
        if default is None:
            raise InputError(f"{self.origin} has no {' or '.join(keys)}; a model shape needs it.")
        return default

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InputError(f"{self.origin}: {key} must be true or false, got {short(value)}.")
        return value

    def str(self, key: str, default: str = "") -> str:
        value = self.data.get(key, default)
        return value if isinstance(value, str) else default


def rope_scaled_context(config: Mapping[str, Any], max_context: int | None) -> int | None:
    """vLLM's derived maximum length under RoPE scaling: max_position_embeddings times the
    factor, from original_max_position_embeddings for yarn; llama3, longrope and su scaling
    leave it (vllm/config.py _get_and_verify_max_len: 'if rope_type not in ("su", "longrope",
    "llama3") ... derived_max_model_len *= scaling_factor'; SGLang copies the rule). Gemma 3
    is left at max_position_embeddings ('if rope_scaling is not None and "gemma3" not in
    hf_config.model_type', vllm/config.py @v0.8.3): its linear factor is for the global layers'
    RoPE only."""
    rope = config.get("rope_scaling")
    if not isinstance(rope, dict) or not max_context or "gemma3" in str(
            config.get("model_type", "")):
        return None
    kind = rope.get("rope_type", rope.get("type"))
    factor = rope.get("factor")
    if kind in (None, "default", "su", "longrope", "llama3") or not isinstance(
            factor, (int, float)) or isinstance(factor, bool) or not 1 < factor <= 1024:
        return None
    base = rope.get("original_max_position_embeddings") if kind == "yarn" else max_context
    if not isinstance(base, int) or isinstance(base, bool) or base <= 0:
        return None
    return min(int(base * factor), _MAX_DIM)


_NO_GATE_FAMILIES = {"gpt2", "gpt_bigcode", "gpt_neox", "gptj", "bloom", "opt", "falcon", "phi",
                     "starcoder2", "mpt"}


# Class defaults of transformers' config classes, for configs that leave keys out (the Gemma 3
# multimodal releases store a sparse text_config). Facts from transformers' Gemma3TextConfig.
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {"vocab_size": 262_208, "hidden_size": 2304, "intermediate_size": 9216,
                    "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
                    "head_dim": 256, "sliding_window": 4096, "max_position_embeddings": 131_072,
                    "sliding_window_pattern": 6},
}
_FAMILY_DEFAULTS["gemma3"] = _FAMILY_DEFAULTS["gemma3_text"]


# Decoder families whose every tensor the parser below knows (their modeling code was read).
COUNTED_DECODERS = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
    "gemma3", "gemma3_text", "phi", "phi3", "deepseek_v2", "deepseek_v3", "gpt_oss", "chatglm",
    "glm", "gpt2", "gpt_bigcode", "gpt_neox", "gptj", "bloom", "opt", "falcon", "starcoder2",
    "mllama", "mllama_text_model", "olmo2", "qwen2_vl", "yi",
    # InternLM2 (remote code; vLLM and SGLang models/internlm2.py): one fused wqkv of the query
    # and KV heads and wo (both biased when config.bias), w1/w3/w2 SwiGLU, attention_norm and
    # ffn_norm, untied output: Llama's tensors under other names
    "internlm2",
}) | frozenset(FAMILIES)  # and those whose layout vramest/model/families.py adjusts
# What a generic decoder parse would get wrong for these, in words for the refusal.
_NOT_MODELLED = {
    # RWKV-5/6/7 ship as remote code: transformers has no class to count their layers against
    **{f"rwkv{v}": f"RWKV-{v}'s layers and per-sequence state, which transformers does not "
       "implement (RWKV-4, model_type 'rwkv', is counted)" for v in (5, 6, 7)},
    "lfm2": "the state of its short-convolution layers",
    "nomic_bert": "its fused SwiGLU encoder blocks",
    "modernbert": "its alternating local/global encoder blocks",
    # transformers Gemma4TextConfig: global_head_dim, num_global_key_value_heads,
    # attention_k_eq_v, hidden_size_per_layer_input, num_kv_shared_layers
    "gemma4": "its global layers' wider keys shared as values beside its sliding layers' "
              "heads, per-layer embeddings and KV shared across layers",
    "gemma4_text": "its global layers' wider keys shared as values beside its sliding layers' "
                   "heads, per-layer embeddings and KV shared across layers",
    # transformers DeepseekV4Config: compress_ratios, hc_mult
    "deepseek_v4": "its per-layer compressed KV cache (compress_ratios) and hyper-connections",
}


class UnknownArchitecture(InputError):
    """A config whose tensors the estimator cannot count; `family` is its model_type."""

    def __init__(self, message: str, family: str) -> None:
        super().__init__(message)
        self.family = family


def _refusal(config: Mapping[str, Any], family: str, origin: str) -> UnknownArchitecture:
    archs = config.get("architectures")
    arch = f" ({archs[0]})" if isinstance(archs, list) and archs else ""
    if family in _NOT_MODELLED:
        return UnknownArchitecture(
            f"{origin}: model_type {family!r}{arch} is not modelled yet: vramest has no formula "
            f"for {_NOT_MODELLED[family]}, so an estimate would be a guess (`vramest models` "
            "lists the architectures it counts).", family)
    return UnknownArchitecture(
        f"{origin}: model_type {family!r}{arch} is not an architecture vramest counts, so its "
        "layer layout would be a guess; install vramest[calibrate] to count it exactly with "
        "transformers on the meta device, or give the model folder with its safetensors "
        "(`vramest models` lists what is counted).", family)


def shape_from_config(config: Mapping[str, Any], name: str, origin: str = "config", *,
                      generic_decoder: bool = False) -> ModelShape:
    """Build a ModelShape from a Hugging Face config.json dict (multimodal: its text_config).

    A model_type outside the counted families raises `UnknownArchitecture`, unless
    `generic_decoder` (the caller has the exact tensors from the files, and the family is a
    plain decoder) lets it be read from the standard keys with a note saying so.
    """
    if not isinstance(config, Mapping):
        raise InputError(f"{origin} is not a JSON object; a config.json holds one.")
    top_family = str(config.get("model_type") or "").lower()
    if top_family in GDN_HYBRID_FAMILIES:
        from vramest.model.gdn_hybrid import gdn_hybrid_shape

        return _built(gdn_hybrid_shape, config, name, origin)
    if has_moe_layers(config):
        from vramest.model.hybrid_moe import nemotron_moe_shape

        return _built(nemotron_moe_shape, config, name, origin)
    if top_family in QWEN3_VL_FAMILIES:
        from vramest.model.qwen_vit import qwen3_vl_shape

        return _built(qwen3_vl_shape, config, name, origin)
    if is_encoder_family(top_family) or top_family in RECURRENT_FAMILIES:
        from vramest.model.encoders import encoder_shape
        from vramest.model.recurrent import recurrent_shape

        c = _Config(config, origin)
        try:
            shape = (recurrent_shape(c, top_family, name) if top_family in RECURRENT_FAMILIES
                     else encoder_shape(c, top_family, name))
        except InputError:
            raise
        except (TypeError, ValueError, KeyError, ZeroDivisionError, IndexError) as exc:
            raise InputError(f"{origin} could not be read as a model shape ({exc}).") from None
        _check(shape, origin)
        return shape
    extra = 0
    text = config.get("text_config")
    if isinstance(text, Mapping) and text:
        merged = dict(text)
        merged.setdefault("model_type", config.get("model_type", ""))
        extra = _vision_params(config)
        config = merged
    family = str(config.get("model_type") or "unknown").lower()
    generic = family not in COUNTED_DECODERS
    if generic and (not generic_decoder or family in _NOT_MODELLED or top_family in _NOT_MODELLED):
        raise _refusal(config, family, origin)
    if family in _FAMILY_DEFAULTS:
        config = {**_FAMILY_DEFAULTS[family], **config}
    c = _Config(config, origin)
    shape = _read(lambda: _parse(c, family, name), origin)
    if extra:
        shape = replace(shape, extra_params=extra,
                        notes=(*shape.notes, "vision tower counted as one 16-bit block"))
    if generic:
        shape = replace(shape, notes=(*shape.notes, f"model_type {family!r} is not modelled "
                                      "tensor by tensor: its KV and activations are read from "
                                      "the standard config keys as a llama-style decoder"))
    if _base_model_only(config) and family not in ("chatglm", "glm"):  # ChatGLMModel has a head
        shape = _as_embedding_model(shape)
    _check(shape, origin)
    return shape


def _built(builder: Callable[[Mapping[str, Any], str, str], ModelShape],
           config: Mapping[str, Any], name: str, origin: str) -> ModelShape:
    """A shape from a module of its own (gdn_hybrid, hybrid_moe), checked like the others."""
    shape = _read(lambda: builder(config, name, origin), origin)
    _check(shape, origin)
    return shape


def _read(build: Callable[[], ModelShape], origin: str) -> ModelShape:
    """A config's shape, or one sentence saying the config could not be read as one."""
    try:
        return build()
    except InputError:
        raise
    except (TypeError, ValueError, KeyError, ZeroDivisionError, IndexError) as exc:
        raise InputError(f"{origin} could not be read as a model shape ({exc}).") from None


def _base_model_only(config: Mapping[str, Any]) -> bool:
    """A decoder checkpoint of the bare model (`Qwen3Model`, `MistralModel`): an embedding
    model such as E5-Mistral or Qwen3-Embedding, stored without its LM head."""
    archs = config.get("architectures")
    return isinstance(archs, list) and len(archs) == 1 and isinstance(archs[0], str) and \
        archs[0].endswith("Model") and not archs[0].endswith("LMHeadModel")


def _as_embedding_model(shape: ModelShape) -> ModelShape:
    """One forward per input, hidden states out: no LM head, no KV cache, no logits."""
    return replace(shape, architecture=ENCODER, layer_kinds=(LAYER_ENCODER,) * shape.num_layers,
                   sliding_window=None, notes=(*shape.notes, "embedding model: the decoder "
                                               "without its LM head, one forward per input"))


def _vision_params(config: Mapping[str, Any]) -> int:
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping):
        return 0
    text = config.get("text_config")
    text = text if isinstance(text, Mapping) else {}
    text_hidden = text.get("hidden_size") or _FAMILY_DEFAULTS.get(
        str(text.get("model_type", "")), {}).get("hidden_size")
    if isinstance(text_hidden, int):
        from vramest.model.vision import vision_tower_params

        exact = vision_tower_params(config, text_hidden)  # the towers counted tensor by tensor
        if exact is not None:
            return exact
    c = _Config(vision, "vision_config")
    try:
        hidden = c.int("hidden_size", default=0, minimum=0)
        layers = c.int("num_hidden_layers", "depth", default=0, minimum=0)
        inter = c.int("intermediate_size", default=4 * hidden, minimum=0)
    except InputError:
        return 0
    return layers * (4 * hidden * hidden + 2 * hidden * inter)


def _parse(c: _Config, family: str, name: str) -> ModelShape:
    hidden = c.int("hidden_size", "n_embd", "n_embed", "d_model", "dim")
    layers = c.int("num_hidden_layers", "n_layer", "num_layers", "n_layers")
    heads = c.int("num_attention_heads", "n_head", "n_heads", "num_heads")
    if c.data.get("multi_query") is True and family == "gpt_bigcode":
        kv_heads = 1
    elif family == "falcon":
        # FalconAttention: num_kv_heads if new_decoder_architecture or not multi_query, else 1
        # (transformers models/falcon/modeling_falcon.py); Falcon-180B sets both and has 8
        multi_query = c.data.get("multi_query", True) is True
        kv_heads = (c.int("num_kv_heads", "n_head_kv", default=heads)
                    if c.bool("new_decoder_architecture", False) or not multi_query else 1)
    elif family == "chatglm" or family == "glm":
        kv_heads = (c.int("multi_query_group_num", default=heads)
                    if c.bool("multi_query_attention", False) else heads)
    else:
        kv_heads = c.int("num_key_value_heads", "num_kv_heads", "n_head_kv", default=heads)
    head_dim = c.int("head_dim", "kv_channels", default=hidden // heads)
    gated = family not in _NO_GATE_FAMILIES
    if family == "gpt_oss":
        gated = True
    inter_default = 4 * hidden
    inter = c.int("intermediate_size", "n_inner", "ffn_hidden_size", "ffn_dim", "ffn_inner_dim",
                  default=inter_default)
    vocab = c.int("padded_vocab_size", "vocab_size", "n_vocab")
    # Starcoder2Config leaves tie_word_embeddings to PretrainedConfig's True: the 3B and 7B
    # configs omit the key and their checkpoints hold one table (3,030,371,328 and 7,173,923,840)
    tie_default = family in ("gpt2", "gpt_bigcode", "bloom", "opt", "gemma", "gemma2",
                             "gemma3_text", "gemma3", "falcon", "starcoder2")
    tie = c.bool("tie_word_embeddings", tie_default)
    if family in ("chatglm", "glm"):
        tie = False
    layernorm = family in _NO_GATE_FAMILIES
    shape = ModelShape(
        name=name, family=family, num_layers=layers, hidden_size=hidden, num_heads=heads,
        num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=inter, vocab_size=vocab,
        tie_embeddings=tie, gated_mlp=gated, layer_norm_bias=layernorm,
        max_context=c.int("max_position_embeddings", "n_positions", "seq_length",
                          "max_sequence_length", default=0, minimum=0) or None,
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
    )
    shape = replace(shape, scaled_context=rope_scaled_context(c.data, shape.max_context))
    shape = _family_details(shape, c, family)
    shape = _attention_layout(shape, c, family)
    shape = _moe(shape, c, family)
    return apply_family_rules(_mla(shape, c), c.data, family)


def _family_details(s: ModelShape, c: _Config, family: str) -> ModelShape:
    bias = c.bool("attention_bias", False) or c.bool("bias", False)
    changes: dict[str, Any] = {"attention_bias": bias, "attention_out_bias": bias,
                               "mlp_bias": c.bool("mlp_bias", False)}
    if family in ("qwen2", "qwen2_moe", "qwen2_vl"):
        changes.update(attention_bias=True, attention_out_bias=False)
    if family in ("qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2"):
        changes["qk_norm"] = True
    if family in ("gemma2", "gemma3", "gemma3_text"):
        changes["norms_per_layer"] = 4
    if family == "gpt2":
        changes.update(fused_qkv=True, attention_bias=True, attention_out_bias=True,
                       mlp_bias=True, position_embeddings=c.int("n_positions", default=1024))
    elif family == "gpt_bigcode":
        changes.update(fused_qkv=True, attention_bias=True, attention_out_bias=True,
                       mlp_bias=True, position_embeddings=c.int("n_positions", default=8192))
    elif family == "gpt_neox":
        changes.update(fused_qkv=True, attention_bias=True, attention_out_bias=True, mlp_bias=True)
    elif family == "gptj":
        changes.update(attention_bias=False, mlp_bias=True, lm_head_bias=True, norms_per_layer=1)
    elif family == "bloom":
        changes.update(fused_qkv=True, attention_bias=True, attention_out_bias=True,
                       mlp_bias=True, extra_params=2 * s.hidden_size)  # embedding LayerNorm
    elif family == "opt":
        changes.update(attention_bias=True, attention_out_bias=True, mlp_bias=True,
                       position_embeddings=c.int("max_position_embeddings", default=2048) + 2)
    elif family == "falcon":
        new_arch = c.bool("new_decoder_architecture", False)
        changes.update(fused_qkv=True, mlp_bias=False,
                       norms_per_layer=2 if new_arch else 1)
    elif family == "phi":
        changes.update(attention_bias=True, attention_out_bias=True, mlp_bias=True,
                       norms_per_layer=1, lm_head_bias=True)
    elif family in ("chatglm", "glm"):
        changes.update(fused_qkv=True, attention_bias=c.bool("add_qkv_bias", True),
                       attention_out_bias=False)
    elif family == "gpt_oss":
        changes.update(attention_bias=True, attention_out_bias=True, mlp_bias=True)
    elif family == "starcoder2":  # Starcoder2Config.use_bias (default True): q/k/v/o and c_fc/c_proj
        use_bias = c.bool("use_bias", True)
        changes.update(attention_bias=use_bias, attention_out_bias=use_bias, mlp_bias=use_bias)
    return replace(s, **changes)


def _attention_layout(s: ModelShape, c: _Config, family: str) -> ModelShape:
    n = s.num_layers
    window = c.data.get("sliding_window")
    window = window if isinstance(window, int) and not isinstance(window, bool) and window > 0 \
        else None
    kinds: list[str] = [LAYER_FULL] * n
    layer_types = c.data.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == n:
        kinds = [_layer_kind(str(t)) for t in layer_types]
    elif window and family in ("gemma2",):
        kinds = [LAYER_SLIDING if i % 2 == 0 else LAYER_FULL for i in range(n)]
    elif window and family in ("gemma3", "gemma3_text", "cohere2"):
        # every pattern-th layer global (transformers Gemma3TextConfig and Cohere2Config build
        # layer_types so when a config gives only the pattern; Cohere2's defaults to 4)
        pattern = c.int("sliding_window_pattern", default=4 if family == "cohere2" else 6)
        kinds = [LAYER_FULL if (i + 1) % pattern == 0 else LAYER_SLIDING for i in range(n)]
    elif window and family in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe"):
        if c.bool("use_sliding_window", False):
            first = c.int("max_window_layers", default=n, minimum=0)
            kinds = [LAYER_FULL if i < first else LAYER_SLIDING for i in range(n)]
    elif window and family in ("mistral", "mixtral", "phi3", "starcoder2") and (
            window < (s.max_context or 0) or family == "mistral"):
        kinds = [LAYER_SLIDING] * n
    cross = c.data.get("cross_attention_layers")
    if isinstance(cross, list):  # mllama: these attend to image tokens, not the prompt
        for i in cross:
            if isinstance(i, int) and 0 <= i < n:
                kinds[i] = LAYER_NO_KV
    if LAYER_SLIDING not in kinds:
        window = None
    return replace(s, layer_kinds=tuple(kinds), sliding_window=window)


def _layer_kind(text: str) -> str:
    text = text.lower()
    if "sliding" in text or "local" in text or text == "chunked_attention":
        return LAYER_SLIDING
    if "linear" in text or "mamba" in text or "recurrent" in text or "conv" in text:
        return LAYER_NO_KV
    return LAYER_FULL


def _moe(s: ModelShape, c: _Config, family: str) -> ModelShape:
    experts = c.int("num_local_experts", "n_routed_experts", "num_experts", default=0, minimum=0)
    if experts <= 1:
        return s
    per_token = c.int("num_experts_per_tok", "num_experts_per_token", "top_k", default=2)
    moe_inter = c.int("moe_intermediate_size", default=s.intermediate_size)
    shared = c.int("n_shared_experts", default=0, minimum=0)
    shared_inter = moe_inter
    if c.has("shared_expert_intermediate_size"):
        shared_inter = c.int("shared_expert_intermediate_size", default=0, minimum=0)
        shared = 1 if shared_inter else 0
    first_dense = c.int("first_k_dense_replace", default=0, minimum=0)
    step = c.int("moe_layer_freq", "decoder_sparse_step", default=1)
    mlp_only = c.data.get("mlp_only_layers") or []
    mlp_only = set(mlp_only) if isinstance(mlp_only, list) else set()
    moe_layers = tuple(
        i >= first_dense and (i - first_dense) % step == 0 and i not in mlp_only
        for i in range(s.num_layers)
    )
    if family in ("qwen2_moe", "qwen3_moe"):
        moe_layers = tuple((i + 1) % step == 0 and i not in mlp_only for i in range(s.num_layers))
    return replace(s, num_experts=experts, experts_per_token=per_token,
                   moe_intermediate_size=moe_inter, shared_experts=shared,
                   shared_intermediate_size=shared_inter, moe_layers=moe_layers)


def _mla(s: ModelShape, c: _Config) -> ModelShape:
    rank = c.int("kv_lora_rank", default=0, minimum=0)
    if not rank:
        return s
    rope = c.int("qk_rope_head_dim", default=64)
    nope = c.int("qk_nope_head_dim", default=128)
    return replace(s, kv_lora_rank=rank, q_lora_rank=c.int("q_lora_rank", default=0, minimum=0),
                   qk_rope_head_dim=rope, qk_nope_head_dim=nope,
                   v_head_dim=c.int("v_head_dim", default=nope), head_dim=nope + rope,
                   num_kv_heads=s.num_heads)


def _check(s: ModelShape, origin: str) -> None:
    if s.num_layers > _MAX_LAYERS:
        raise InputError(f"{origin}: {s.num_layers} layers is more than {_MAX_LAYERS}.")
    if s.num_kv_heads > s.num_heads or s.num_heads % s.num_kv_heads:
        raise InputError(
            f"{origin}: {s.num_heads} attention heads cannot be shared by {s.num_kv_heads} "
            "KV heads; the KV head count must divide the head count."
        )
    if s.is_moe and s.experts_per_token > s.num_experts:
        raise InputError(f"{origin}: {s.experts_per_token} experts per token but only "
                         f"{s.num_experts} experts.")


def with_overrides(shape: ModelShape, **overrides: int | None) -> ModelShape:
    """Apply --layers/--hidden/... overrides, keeping the derived fields consistent."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return shape
    changes: dict[str, Any] = dict(given)
    if shape.explicit_layers:  # the counted tensors no longer describe the overridden shape
        changes.update(explicit_layers=(), explicit_global=())
    if "num_layers" in given and given["num_layers"] != shape.num_layers:
        kinds = shape.kinds()
        changes["layer_kinds"] = tuple(kinds[i % len(kinds)] for i in range(given["num_layers"]))
        if shape.moe_layers:
            changes["moe_layers"] = tuple(shape.moe_layers[i % len(shape.moe_layers)]
                                          for i in range(given["num_layers"]))
    if "num_heads" in given and "head_dim" not in given and not shape.is_mla:
        changes["head_dim"] = changes.get("hidden_size", shape.hidden_size) // given["num_heads"]
    if "num_heads" in given and "num_kv_heads" not in given and \
            shape.num_kv_heads == shape.num_heads:
        changes["num_kv_heads"] = given["num_heads"]
    result = replace(shape, name=f"{shape.name} (overridden)", **changes)
    _check(result, "the shape overrides")
    return result
