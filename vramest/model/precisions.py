"""Weight and KV-cache precisions with their true storage cost.

A format says how many bits each *role* of tensor costs (a linear layer in a block, the
embeddings, the output head, a norm), counting block scales and zero points, because real
quantized checkpoints leave some tensors in 16 bit and llama.cpp's file types mix block types
per tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from vramest.errors import InputError, short
from vramest.frozen import frozen, replace

# --- ggml block types: (elements per block, bytes per block) -----------------------------
# Facts from ggml's block_* structs (ggml/src/ggml-common.h @01243c587feceaa5d6a6c2305535ef2f549c48b8,
# e.g. block_iq3_s = fp16 d + 13 × QK_K/32 + QK_K/64 bytes = 110 per 256).
GGML_BLOCKS: dict[str, tuple[int, int]] = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "F64": (1, 8),
    "I8": (1, 1), "I16": (1, 2), "I32": (1, 4), "I64": (1, 8),
    "Q1_0": (128, 18), "Q2_0": (64, 18),
    "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24),
    "Q8_0": (32, 34), "Q8_1": (32, 36),
    "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176),
    "Q6_K": (256, 210), "Q8_K": (256, 292),
    "IQ2_XXS": (256, 66), "IQ2_XS": (256, 74), "IQ2_S": (256, 82), "IQ3_XXS": (256, 98),
    "IQ3_S": (256, 110), "IQ1_S": (256, 50), "IQ1_M": (256, 56), "IQ4_NL": (32, 18),
    "IQ4_XS": (256, 136), "TQ1_0": (256, 54), "TQ2_0": (256, 66), "MXFP4": (32, 17),
    "NVFP4": (64, 36),
}


def ggml_bits(type_name: str) -> float:
    elements, nbytes = GGML_BLOCKS[type_name]
    return nbytes * 8 / elements


# Tensor roles a model is made of (see shapes.TensorSpec).
LINEAR_ROLES = frozenset({
    "attn_q", "attn_k", "attn_v", "attn_qkv", "attn_o", "attn_q_a", "attn_q_b", "attn_kv_a",
    "attn_kv_b", "ffn_gate", "ffn_up", "ffn_down", "expert_gate", "expert_up", "expert_down",
    "shared_gate", "shared_up", "shared_down", "ssm_in", "ssm_out",
})
EXPERT_ROLES = frozenset({"expert_gate", "expert_up", "expert_down"})
# Small or vector tensors every format keeps in high precision.
VECTOR_ROLES = frozenset({"norm", "bias", "router", "position_embedding", "ssm_conv",
                          "ssm_param"})


@frozen
class TensorContext:
    """What llama.cpp's per-tensor rules look at besides the role."""

    layer: int | None
    num_layers: int
    row_length: int  # ne[0]: elements per row (the input dimension)
    gqa_ratio: int
    num_experts: int
    has_output_tensor: bool


@frozen
class WeightFormat:
    name: str
    description: str
    source: str
    linear_bits: float
    embedding_bits: float = 16.0
    lm_head_bits: float = 16.0
    vector_bits: float = 16.0
    compute_bytes: int = 2
    quantized_roles: frozenset[str] = LINEAR_ROLES
    gguf_rule: Callable[[str, TensorContext], str] | None = None
    # (roles, layer or None): tensors a checkpoint leaves unquantized (its ignore list)
    unquantized: tuple[tuple[frozenset[str], int | None], ...] = ()

    def bits(self, role: str, ctx: TensorContext) -> float:
        if self.gguf_rule is not None:
            return ggml_bits(self.gguf_rule(role, ctx))
        for roles, layer in self.unquantized:
            if role in roles and (layer is None or layer == ctx.layer):
                return 16.0 if self.compute_bytes <= 2 else 32.0
        if role in VECTOR_ROLES:
            return self.vector_bits
        if role == "embedding":
            return self.embedding_bits
        if role == "lm_head":
            return self.lm_head_bits
        if role in self.quantized_roles:
            return self.linear_bits
        return 16.0 if self.compute_bytes <= 2 else 32.0

    @property
    def is_quantized(self) -> bool:
        return self.linear_bits < 8 * self.compute_bytes


# Module-name fragments of ignore lists (modules_to_not_convert, compressed-tensors "ignore")
# and the tensor roles they name; the first match wins.
_MODULE_ROLES: tuple[tuple[str, frozenset[str]], ...] = (
    ("lm_head", frozenset({"lm_head"})),
    ("embed", frozenset({"embedding"})),
    ("router", frozenset({"router"})),
    ("mlp.gate.", frozenset({"router"})),
    ("block_sparse_moe.gate", frozenset({"router"})),
    ("shared_expert", frozenset({"shared_gate", "shared_up", "shared_down"})),
    ("experts", frozenset({"expert_gate", "expert_up", "expert_down"})),
    ("q_proj", frozenset({"attn_q", "attn_q_a", "attn_q_b"})),
    ("k_proj", frozenset({"attn_k"})), ("v_proj", frozenset({"attn_v"})),
    ("o_proj", frozenset({"attn_o"})), ("kv_a_proj", frozenset({"attn_kv_a"})),
    ("kv_b_proj", frozenset({"attn_kv_b"})),
    ("attn", frozenset({"attn_q", "attn_k", "attn_v", "attn_qkv", "attn_o", "attn_q_a",
                        "attn_q_b", "attn_kv_a", "attn_kv_b"})),
    ("gate_proj", frozenset({"ffn_gate", "shared_gate"})),
    ("up_proj", frozenset({"ffn_up", "shared_up"})),
    ("down_proj", frozenset({"ffn_down", "shared_down"})),
    ("mlp", frozenset({"ffn_gate", "ffn_up", "ffn_down", "expert_gate", "expert_up",
                       "expert_down", "shared_gate", "shared_up", "shared_down"})),
)
_ALL_LINEAR = LINEAR_ROLES
# Each role's module under transformers' names for DeepSeek-style MoE checkpoints, which a
# compressed-tensors "re:" pattern is matched against as the library matches module names
# (neuralmagic/compressed-tensors @52792be0, src/compressed_tensors/utils/match.py _match_name:
# re.match(target.removeprefix("re:"), name)). Kimi K2 Thinking's
# "re:.*mlp\\.(gate|up|gate_up|down)_proj.*" names the dense layer's MLP, not the experts under
# mlp.experts.N, which a fragment test ("mlp") would take as well.
_ROLE_MODULES: tuple[tuple[str, str], ...] = (
    ("lm_head", "lm_head"), ("embedding", "model.embed_tokens"),
    ("router", "model.layers.1.mlp.gate"),
    ("expert_gate", "model.layers.1.mlp.experts.0.gate_proj"),
    ("expert_up", "model.layers.1.mlp.experts.0.up_proj"),
    ("expert_down", "model.layers.1.mlp.experts.0.down_proj"),
    ("shared_gate", "model.layers.1.mlp.shared_experts.gate_proj"),
    ("shared_up", "model.layers.1.mlp.shared_experts.up_proj"),
    ("shared_down", "model.layers.1.mlp.shared_experts.down_proj"),
    ("ffn_gate", "model.layers.0.mlp.gate_proj"), ("ffn_up", "model.layers.0.mlp.up_proj"),
    ("ffn_down", "model.layers.0.mlp.down_proj"),
    ("attn_q", "model.layers.0.self_attn.q_proj"), ("attn_k", "model.layers.0.self_attn.k_proj"),
    ("attn_v", "model.layers.0.self_attn.v_proj"), ("attn_o", "model.layers.0.self_attn.o_proj"),
    ("attn_qkv", "model.layers.0.self_attn.qkv_proj"),
    ("attn_q_a", "model.layers.0.self_attn.q_a_proj"),
    ("attn_q_b", "model.layers.0.self_attn.q_b_proj"),
    ("attn_kv_a", "model.layers.0.self_attn.kv_a_proj_with_mqa"),
    ("attn_kv_b", "model.layers.0.self_attn.kv_b_proj"),
)


def _regex_roles(pattern: str) -> frozenset[str] | None:
    """The roles whose module a compressed-tensors "re:" pattern matches; None when it matches
    none of them (or does not compile), so the fragment test reads it instead."""
    import re

    try:
        compiled = re.compile(pattern)
    except re.error:
        return None
    roles = frozenset(role for role, module in _ROLE_MODULES if compiled.match(module))
    return roles or None


def unquantized_modules(patterns: list[str]) -> tuple[tuple[frozenset[str], int | None], ...]:
    """Read an ignore list ("lm_head", "model.layers.0.mlp", "re:.*self_attn.*", ...) as
    (roles, layer) pairs; patterns naming no known module are skipped. A "re:" pattern naming
    no layer is matched as a regular expression against each role's module name."""
    import re

    out: list[tuple[frozenset[str], int | None]] = []
    for raw in patterns[:10_000]:
        if not isinstance(raw, str):
            continue
        text = raw.removeprefix("re:").lower()
        layer_match = re.search(r"layers?[._](\d+)(?:[._]|$)", text)
        layer = int(layer_match.group(1)) if layer_match else None
        roles = (_regex_roles(raw[3:]) if raw.startswith("re:") and layer is None else None) \
            or next((r for fragment, r in _MODULE_ROLES if fragment in text), None)
        if roles is None and layer is not None:
            roles = _ALL_LINEAR  # a whole block left unquantized
        if roles is not None:
            out.append((roles, layer))
    return tuple(out)


# --- llama.cpp file types ------------------------------------------------------------------
# Per-tensor choices follow llama.cpp's quantizer (src/llama-quant.cpp
# @007dbbf3fd17eefe9b47fee45f48f7ba5e62b714: llama_tensor_get_type_impl, tensor_type_fallback,
# llama_ftype_get_default_type): 1-D tensors stay F32, the output head goes to Q6_K (Q5_K for
# the lowest i-quants), and each file type gives attn_v / ffn_down / attn_output / fused qkv
# more bits in chosen layers. Where a rule depends on an importance matrix it is taken with one:
# the i-quants below 4 bits cannot be made without, and the published i-quant files are made
# with one (bartowski/Llama-3.2-1B-Instruct-GGUF, llama.cpp b3821: IQ4_XS holds 96 IQ4_XS +
# 16 Q5_K matrices, IQ3_M 78 IQ3_S + 34 Q4_K, as a public port of those files lists them).

def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


# tensor_type_fallback: a row length the block does not divide takes a 32-wide type instead
_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
             "TQ1_0": "Q4_0", "TQ2_0": "Q4_0", "Q2_0": "Q4_0", "IQ4_XS": "IQ4_NL",
             "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL",
             "IQ3_S": "IQ4_NL", "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL"}
# the file types whose output head is Q5_K, and the 1–2-bit group with its own rules
_OUTPUT_Q5K = frozenset({"IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"})
_LOW_BIT_IQ = frozenset({"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"})
_ATTN_O_MOE8_Q5K = frozenset({"Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL",
                              "Q4_K_S", "Q4_K_M", "IQ3_S", "IQ3_M", "IQ4_XS"})


def _gguf_mix(ftype: str, base: str) -> Callable[[str, TensorContext], str]:
    float_file = base in ("F32", "F16", "BF16")

    def rule(role: str, ctx: TensorContext) -> str:
        if role in VECTOR_ROLES and role != "router":
            return "F32"
        if float_file:
            return "F32" if role == "router" else base
        if role == "router":
            return "F32"
        if ftype == "MXFP4_MOE" and role in EXPERT_ROLES:
            return "MXFP4"
        chosen = _choose(role, ctx)
        if GGML_BLOCKS[chosen][0] > 32 and ctx.row_length % GGML_BLOCKS[chosen][0] != 0:
            chosen = _FALLBACK.get(chosen, "Q8_0")
        return chosen

    def _choose(role: str, ctx: TensorContext) -> str:
        i, n = (ctx.layer or 0), max(ctx.num_layers, 1)
        is_output = role == "lm_head" or (role == "embedding" and not ctx.has_output_tensor)
        if is_output:
            if base == "Q8_0" or ctx.row_length % GGML_BLOCKS[base][0] != 0:
                return "Q8_0"
            return "Q5_K" if ftype in _OUTPUT_Q5K else "Q6_K"
        if role == "embedding":
            if ftype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
                return "Q2_K"
            if ftype in ("IQ2_S", "IQ2_M", "IQ3_S", "IQ3_M", "IQ3_XXS"):
                return "IQ3_S"
            return "Q4_K" if ftype in ("TQ1_0", "TQ2_0") else base
        if ftype in _LOW_BIT_IQ:
            return _low_bit_iq(role, i, n, ctx)
        moe8 = ctx.num_experts == 8
        if role == "attn_v":
            return "Q8_0" if moe8 else _attn_v(ctx, i, n)
        if role == "attn_k":
            if moe8:
                return "Q8_0"
            return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ftype, base)
        if role == "attn_q":
            return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ftype, base)
        if role in ("ffn_down", "expert_down"):
            return _ffn_down(ctx, i, n)
        if role == "attn_o":
            if moe8:
                return "Q5_K" if ftype in _ATTN_O_MOE8_Q5K else base
            return {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K",
                    "IQ3_M": "Q4_K"}.get(ftype, base)
        if role == "attn_qkv":
            return {"Q3_K_M": "Q4_K", "Q3_K_L": "Q4_K", "IQ3_M": "Q4_K", "Q4_K_M": "Q5_K",
                    "Q5_K_M": "Q6_K"}.get(ftype, base)
        if role in ("ffn_gate", "ffn_up", "expert_gate", "expert_up") and ftype == "IQ3_XS":
            return "IQ3_XXS" if n // 8 <= i < 7 * n // 8 else base
        return base

    def _attn_v(ctx: TensorContext, i: int, n: int) -> str:
        gqa4 = ctx.gqa_ratio >= 4
        if ftype == "Q2_K":
            return "Q4_K" if gqa4 else "Q3_K"
        if ftype in ("Q2_K_S", "IQ3_XS", "IQ3_S") and gqa4:
            return "Q4_K"
        if ftype == "IQ3_XXS":
            return "Q4_K" if gqa4 else "IQ3_XXS"
        if ftype == "IQ3_M":
            return "Q4_K"
        if ftype == "Q3_K_M":
            return "Q5_K" if i < 2 else "Q4_K"
        if ftype == "Q3_K_L":
            return "Q5_K"
        if ftype in ("IQ4_NL", "IQ4_XS") and gqa4:
            return "Q5_K"
        if ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            return "Q6_K"
        if ftype == "Q4_K_S" and i < 4:
            return "Q5_K"
        return base

    def _ffn_down(ctx: TensorContext, i: int, n: int) -> str:
        if ftype == "Q2_K":
            return "Q3_K"
        if ftype == "Q2_K_S":
            return "Q4_K" if i < n // 8 else base
        if ftype == "Q3_K_M":
            return "Q5_K" if i < n // 16 else "Q4_K"
        if ftype == "IQ3_M" and (i < n // 8 or (ctx.num_experts == 8 and _use_more_bits(i, n))):
            return "Q4_K"
        if ftype == "Q3_K_L":
            return "Q5_K"
        if ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            return "Q6_K"
        if ftype == "Q4_K_S" and i < n // 8:
            return "Q5_K"  # (IQ4_XS / IQ4_NL do the same only without an importance matrix)
        return base

    def _low_bit_iq(role: str, i: int, n: int, ctx: TensorContext) -> str:
        wide = ftype in ("IQ2_S", "IQ2_M")
        if role == "attn_v":
            if ctx.gqa_ratio >= 4 or ctx.num_experts >= 4:
                return "Q4_K"
            return "IQ3_S" if wide else "Q2_K"
        if role == "attn_k" and ctx.num_experts == 8:
            return "Q4_K"
        if role in ("ffn_down", "expert_down"):
            return ("IQ3_S" if wide else "Q2_K") if i < n // 8 else base
        if role == "attn_o":
            if ctx.num_experts == 8:
                return "Q5_K"
            if ftype in ("IQ1_S", "IQ1_M"):
                return "IQ2_XXS"
            return "IQ3_S" if wide else base
        return base

    return rule


_GGUF_FILE_TYPES: dict[str, str] = {
    # file type → the block type most tensors get (llama_ftype_get_default_type)
    "F32": "F32", "F16": "F16", "BF16": "BF16", "Q8_0": "Q8_0",
    "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1",
    "Q1_0": "Q1_0", "Q2_0": "Q2_0",
    "Q2_K": "Q2_K", "Q2_K_S": "Q2_K", "Q3_K_S": "Q3_K", "Q3_K_M": "Q3_K", "Q3_K_L": "Q3_K",
    "Q4_K_S": "Q4_K", "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K", "Q5_K_M": "Q5_K", "Q6_K": "Q6_K",
    "IQ4_XS": "IQ4_XS", "IQ4_NL": "IQ4_NL", "IQ3_XXS": "IQ3_XXS", "IQ3_XS": "IQ3_S",
    "IQ3_S": "IQ3_S", "IQ3_M": "IQ3_S", "IQ2_XXS": "IQ2_XXS", "IQ2_XS": "IQ2_XS",
    "IQ2_S": "IQ2_XS", "IQ2_M": "IQ2_S", "IQ1_S": "IQ1_S", "IQ1_M": "IQ1_M",
    "TQ1_0": "TQ1_0", "TQ2_0": "TQ2_0",
    "MXFP4_MOE": "Q8_0",  # experts in MXFP4, everything else Q8_0 (gpt-oss GGUF releases)
}
_LLAMA_QUANT_SOURCE = "llama.cpp src/llama-quant.cpp (llama_tensor_get_type) and ggml block sizes"


@cache  # one object per file type: its gguf_rule compares by identity
def _gguf_format(ftype: str) -> WeightFormat:
    base = _GGUF_FILE_TYPES[ftype]
    float_file = base in ("F32", "F16", "BF16")
    return WeightFormat(
        # GGUF float files differ from plain fp16/bf16 only in keeping norms in F32
        name=f"gguf-{ftype.lower()}" if float_file else ftype.lower(),
        description=f"llama.cpp GGUF {ftype}: {base} blocks ({ggml_bits(base):.4g} bits/weight) "
        "with llama.cpp's per-tensor upgrades (output head Q6_K, some attn_v/ffn_down layers)",
        source=_LLAMA_QUANT_SOURCE,
        linear_bits=ggml_bits(base),
        embedding_bits=ggml_bits(base),
        lm_head_bits=ggml_bits(base),
        vector_bits=32.0,
        compute_bytes=2 if base != "F32" else 4,
        gguf_rule=_gguf_mix(ftype, base),
    )


# Group-quantized 4-bit (GPTQ/AWQ): 4-bit weights + an fp16 scale and a packed 4-bit zero
# point per group of `group` input weights (AutoGPTQ/AutoAWQ packing); embeddings and the
# output head stay 16 bit.
def _group_int4_bits(group: int) -> float:
    return 4 + (16 + 4) / group


def gptq_format(name: str, group: int = 128) -> WeightFormat:
    kind = "GPTQ" if name.startswith("gptq") else "AWQ"
    return WeightFormat(
        name=name,
        description=f"{kind} 4-bit, group size {group}: 4-bit weights plus an fp16 scale and a "
        f"4-bit zero point per {group} weights ({_group_int4_bits(group):.3f} bits/weight); "
        "embeddings and lm_head stay 16 bit",
        source="AutoGPTQ / AutoAWQ packing (qweight int32, qzeros int32, scales fp16 per group)",
        linear_bits=_group_int4_bits(group),
    )


_FORMATS: dict[str, WeightFormat] = {}


def _register(fmt: WeightFormat, *aliases: str) -> None:
    for key in (fmt.name, *aliases):
        _FORMATS[key] = fmt


_register(WeightFormat("fp32", "32-bit float everywhere", "IEEE 754", 32, 32, 32, 32, 4), "float32", "f32")
_register(WeightFormat("fp16", "16-bit float everywhere", "IEEE 754", 16, 16, 16, 16, 2),
          "float16", "half", "f16")
_register(WeightFormat("bf16", "bfloat16 everywhere", "bfloat16 definition", 16, 16, 16, 16, 2), "bfloat16")
_register(WeightFormat(
    "fp8", "FP8 (E4M3) linear layers with per-tensor or per-channel scales; embeddings and "
    "lm_head stay 16 bit, as in published FP8 checkpoints",
    "FP8 checkpoints in compressed-tensors / fbgemm format (e.g. Llama-3.1 FP8 releases)", 8.0,
), "float8", "e4m3", "fp8_e4m3", "float8_e4m3fn")
_register(WeightFormat(
    "int8", "8-bit integer linear layers with a per-row scale (LLM.int8 / W8A16); embeddings "
    "and lm_head stay 16 bit", "bitsandbytes LLM.int8 (Dettmers et al. 2022): int8 rows + fp32 scale",
    8.0,
), "bnb-int8", "w8a16", "w8a8", "int8-w8a8", "8bit", "bnb-8bit", "load_in_8bit")
# NF4: 4-bit codes + one fp32 absmax per 64 weights; double quantization stores the absmax in
# 8 bits with an fp32 scale per 256 absmax values (QLoRA, Dettmers et al. 2023, section 3).
_register(WeightFormat(
    "nf4", "bitsandbytes NF4 (4-bit, block 64, fp32 absmax: 4.5 bits/weight); embeddings and "
    "lm_head stay 16 bit", "QLoRA paper, bitsandbytes Linear4bit", 4 + 32 / 64,
), "bnb-nf4", "bnb-4bit", "fp4", "bnb-fp4", "load_in_4bit", "bitsandbytes", "bnb")
_register(WeightFormat(
    "bnb-nf4-dq", "bitsandbytes NF4 with double quantization (8-bit absmax per 64, fp32 per "
    "256 blocks: 4.127 bits/weight)", "QLoRA paper, section 3 (double quantization)",
    4 + 8 / 64 + 32 / (64 * 256),
), "nf4-dq", "bnb-nf4-double-quant")
_register(gptq_format("gptq-int4"), "gptq", "gptq-4bit")
# Formats that transformers produces by quantizing on load with bitsandbytes (which replaces
# nn.Linear modules only).
BITSANDBYTES_FORMATS = frozenset({"nf4", "bnb-nf4-dq", "int8"})
_register(gptq_format("awq-int4"), "awq", "awq-4bit")
_register(WeightFormat(
    "int4", "generic 4-bit: the common group-quantized formats (GPTQ/AWQ group 128, 4.156 "
    "bits/weight with scales and zero points), not 0.5 byte per parameter; embeddings and "
    "lm_head stay 16 bit", "AutoGPTQ / AutoAWQ packing", _group_int4_bits(128),
), "4bit", "w4a16")
# MXFP4: 32 FP4 (E2M1) values share one 8-bit power-of-two scale (OCP MX spec v1.0).
_register(WeightFormat(
    "mxfp4", "OCP MXFP4: 4-bit E2M1 values with one 8-bit scale per 32 (4.25 bits/weight); "
    "embeddings and lm_head stay 16 bit", "OCP Microscaling Formats (MX) v1.0", 4.25,
), "mx-fp4")
# NVFP4: 16 FP4 (E2M1) values share one FP8 (E4M3) scale, plus one fp32 scale per tensor
# (NVIDIA, "Introducing NVFP4 for Efficient and Accurate Low-Precision Inference", 2025).
_register(WeightFormat(
    "nvfp4", "NVIDIA NVFP4 (Blackwell FP4 checkpoints): 4-bit E2M1 values with an FP8 scale "
    "per 16 (4.5 bits/weight); embeddings and lm_head stay 16 bit",
    "https://developer.nvidia.com/blog/introducing-nvfp4-for-efficient-and-accurate-low-precision-inference/",
    4 + 8 / 16,
), "nv-fp4", "modelopt-fp4")
_register(WeightFormat(
    "mxfp4-experts", "MXFP4 on the MoE experts only, everything else bf16 (gpt-oss releases)",
    "gpt-oss model card / quantization_config", 4.25, quantized_roles=EXPERT_ROLES,
))
# GGUF file types by every name --dtype takes for them; each format is made on first use (the
# 35 of them were half of this module's import, and a command asks for one at most).
_GGUF_NAMES: dict[str, str] = {}
for _ftype, _base in _GGUF_FILE_TYPES.items():
    if _base in ("F32", "F16", "BF16"):
        _GGUF_NAMES[f"gguf-{_ftype.lower()}"] = _ftype
    else:
        _GGUF_NAMES[_ftype.lower()] = _GGUF_NAMES[_ftype.lower().replace("_", "-")] = _ftype


def _known(key: str) -> WeightFormat | None:
    """A registered format or a GGUF file type, by one of its names."""
    fmt = _FORMATS.get(key)
    if fmt is None and key in _GGUF_NAMES:
        fmt = _gguf_format(_GGUF_NAMES[key])
    return fmt


def _qat_q4_0_rule(role: str, ctx: TensorContext) -> str:
    if role in VECTOR_ROLES or role == "router":
        return "F32"
    return "F16" if role in ("embedding", "lm_head") else "Q4_0"


# Google's quantization-aware-trained Gemma 3 GGUFs (google/gemma-3-*-it-qat-q4_0-gguf, and
# Ollama's gemma3:*-it-qat tags built from them): every matrix Q4_0, none of llama.cpp's
# per-tensor upgrades, and the token embeddings (Gemma's tied output head) kept in F16, which
# makes the 27B file 17.2 GB against 15.6 GB with a Q6_K table (huggingface.co/stduhpf/
# google-gemma-3-27b-it-qat-q4_0-gguf-small: "The official QAT weights released by google use
# fp16 (instead of Q6_K) for the embeddings table"; "Google decided to use only Q4_0")
_register(WeightFormat(
    "q4_0-qat", "Google's QAT Q4_0 GGUF: every matrix Q4_0 (4.5 bits/weight), the token "
    "embeddings F16", "google/gemma-3-27b-it-qat-q4_0-gguf as its requantizers describe it",
    ggml_bits("Q4_0"), embedding_bits=16.0, lm_head_bits=16.0, vector_bits=32.0,
    gguf_rule=_qat_q4_0_rule,
), "qat-q4_0", "qat")


# "Q4" as users write a GGUF's size class: the K-quant llama.cpp's README and the model
# pages list first for it (Q4_K_M, Q5_K_M ...); the answer prints the type it counted
_SIZE_CLASS = {"q2": "q2_k", "q3": "q3_k_m", "q4": "q4_k_m", "q5": "q5_k_m", "q6": "q6_k",
               "q8": "q8_0"}


def weight_format(name: str) -> WeightFormat:
    key = name.strip().lower()
    key = _SIZE_CLASS.get(key, key)
    # "4-bit" and "8 bit" as users write them are 4bit and 8bit
    fmt = _known(key) or _known(key.replace("-", "_")) or _known(
        key.replace(" ", "").replace("-bit", "bit"))
    if fmt is None:
        group = _parse_group_suffix(key)
        if group is not None:
            return group
        dynamic = _unsloth_dynamic(key)
        if dynamic is not None:
            return dynamic
        exl2 = _exl2_format(key)
        if exl2 is not None:
            return exl2
        raise InputError(
            f"Unknown --dtype {short(name)}; accepted: {', '.join(weight_format_names())}"
            f"{_nearest_hint(key, weight_format_names())}."
        )
    return fmt


# Unsloth's dynamic GGUFs (UD-IQ1_S, UD-Q4_K_XL, Q4_K_XL): a llama.cpp type with Unsloth's own
# choice of tensors kept at higher precision (unsloth.ai/blog/deepseekr1-dynamic); _K_XL has no
# type of its own and starts from _K_M. Counted as llama.cpp's mix of that type, which differs:
# DeepSeek-R1's UD-IQ1_S/IQ1_M/IQ2_XXS/Q2_K_XL are 131/158/183/212 GB (that blog), counted
# 134.5/149.7/174.9/243.9 GB.
_K_XL_BASE = {"q2": "q2_k", "q3": "q3_k_m", "q4": "q4_k_m", "q5": "q5_k_m", "q6": "q6_k",
              "q8": "q8_0"}


def _unsloth_dynamic(key: str) -> WeightFormat | None:
    words = key.replace("-", "_")
    dynamic = words.startswith("ud_")
    words = words.removeprefix("ud_")
    if words.endswith("_k_xl") and words[:2] in _K_XL_BASE:
        words, dynamic = _K_XL_BASE[words[:2]], True
    base = _known(words)
    if not dynamic or base is None or base.gguf_rule is None:
        return None
    return replace(base, name=key, description=f"Unsloth Dynamic {key.upper()}, counted as "
                   f"{base.name} ({base.description}); Unsloth keeps other tensors at higher "
                   "precision, within about 15% of this either way: give the .gguf file for its "
                   "exact size")


# ExLlamaV2's EXL2 (turboderp-org/exllamav2 @da07facd, exllamav2/conversion/convert_exl2.py:
# "-b" target bits per weight of the decoder's linear layers, default 4.125, scales included;
# "-hb" head bits, default 6). The head is quantized apart, "to about 6.3 bits" at -hb 6
# (turboderp, turboderp-org/exllamav2 issue #3): head bits + 0.3. Embeddings stay fp16.
EXL2_HEAD_OVERHEAD_BITS = 0.3


def _exl2_format(key: str) -> WeightFormat | None:
    """exl2-4.65bpw, exl2-2.4bpw-h6, exl2_5.0bpw_h8."""
    words = key.replace("_", "-").split("-")
    if len(words) not in (2, 3) or words[0] != "exl2" or not words[1].endswith("bpw"):
        return None
    head_word = words[2] if len(words) == 3 else "h6"
    try:
        bits, head = float(words[1].removesuffix("bpw")), int(head_word.removeprefix("h"))
    except ValueError:
        return None
    if not 2.0 <= bits <= 8.0 or head not in (6, 8):
        raise InputError(f"--dtype {key}: EXL2 takes 2 to 8 bits a weight and a head of 6 or "
                         "8 bits (exl2-4.65bpw, exl2-2.4bpw-h6).")
    return WeightFormat(
        name=key, description=f"ExLlamaV2 EXL2 at {bits:g} bits a weight (scales included), "
        f"the output head at {head} bits, embeddings 16 bit",
        source="exllamav2 convert_exl2.py -b / -hb", linear_bits=bits,
        lm_head_bits=head + EXL2_HEAD_OVERHEAD_BITS)


def _parse_group_suffix(key: str) -> WeightFormat | None:
    # gptq-int4-g64, awq-int4-g32: an overridden group size
    for prefix in ("gptq-int4-g", "awq-int4-g"):
        if key.startswith(prefix) and key[len(prefix):].isdigit():
            group = int(key[len(prefix):])
            if group in (32, 64, 128, 256, 512, 1024):
                return gptq_format(key, group)
    return None


def weight_format_names() -> list[str]:
    gguf = {name for name in _GGUF_NAMES if "-" not in name or name.startswith("gguf-")}
    return sorted({fmt.name for fmt in _FORMATS.values()} | gguf)


# --- KV cache --------------------------------------------------------------------------------
@frozen
class KVFormat:
    name: str
    bytes_per_element: float
    source: str


_KV_FORMATS = {
    "fp32": KVFormat("fp32", 4, "IEEE 754"),
    "fp16": KVFormat("fp16", 2, "IEEE 754"),
    "bf16": KVFormat("bf16", 2, "bfloat16"),
    "fp8": KVFormat("fp8", 1, "FP8 E4M3/E5M2 KV cache (vLLM kv_cache_dtype=fp8)"),
    "q8_0": KVFormat("q8_0", 34 / 32, "ggml Q8_0 block: 32 int8 + fp16 scale"),
    "q5_1": KVFormat("q5_1", 24 / 32, "ggml Q5_1 block"),
    "q5_0": KVFormat("q5_0", 22 / 32, "ggml Q5_0 block"),
    "q4_1": KVFormat("q4_1", 20 / 32, "ggml Q4_1 block"),
    "q4_0": KVFormat("q4_0", 18 / 32, "ggml Q4_0 block: 32 4-bit + fp16 scale"),
    "iq4_nl": KVFormat("iq4_nl", 18 / 32, "ggml IQ4_NL block"),
}
_KV_ALIASES = {"f32": "fp32", "float32": "fp32", "f16": "fp16", "float16": "fp16", "half": "fp16",
               "bfloat16": "bf16", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8"}


def kv_format(name: str) -> KVFormat:
    key = name.strip().lower().replace("-", "_")
    key = _KV_ALIASES.get(key, key)
    if key not in _KV_FORMATS:
        raise InputError(
            f"Unknown --kv-dtype {short(name)}; accepted: {', '.join(_KV_FORMATS)}"
            f"{_nearest_hint(key, list(_KV_FORMATS))}."
        )
    return _KV_FORMATS[key]


def default_kv_format(fmt: WeightFormat) -> KVFormat:
    """The KV cache is kept in the compute dtype unless asked otherwise."""
    if fmt.compute_bytes == 4:
        return _KV_FORMATS["fp32"]
    return _KV_FORMATS["bf16" if fmt.name == "bf16" else "fp16"]


def _nearest_hint(key: str, names: list[str]) -> str:
    from difflib import get_close_matches

    close = get_close_matches(key, names, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""
