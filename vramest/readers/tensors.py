"""What a checkpoint holds, tensor by tensor: names, storage types, shapes and stored bytes.

Both readers (safetensors headers and GGUF files) produce a `TensorSet`; nothing here reads
files. `component_of` sorts tensor names into the parts of a transformer so that reports can
say where the parameters live (embeddings, attention, MLP, experts, ...).
"""

from __future__ import annotations

import math
import re

from vramest.frozen import field, frozen

COMPONENTS: tuple[str, ...] = (
    "embeddings", "attention", "mlp", "experts", "router", "norms", "lm_head", "other",
)


@frozen
class TensorInfo:
    """One stored tensor.

    `dtype` is the storage type as the file names it ("BF16", "F8_E4M3", "Q4_K", ...),
    `shape` is row-major (the last dimension is contiguous; GGUF dimensions are reversed into
    this order), and `nbytes` is the exact number of bytes the tensor's data takes in the file.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @property
    def numel(self) -> int:
        """Logical element count (for a quantized GGUF type: the weights, not the blocks)."""
        return math.prod(self.shape)


@frozen
class TensorSet:
    """All tensors of a checkpoint plus its free-form string metadata."""

    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def total_params(self) -> int:
        return sum(t.numel for t in self.tensors)

    def names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tensors)

    def params_by_dtype(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tensor in self.tensors:
            counts[tensor.dtype] = counts.get(tensor.dtype, 0) + tensor.numel
        return counts

    def bytes_by_dtype(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for tensor in self.tensors:
            sizes[tensor.dtype] = sizes.get(tensor.dtype, 0) + tensor.nbytes
        return sizes

    def params_by_component(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tensor in self.tensors:
            part = component_of(tensor.name)
            counts[part] = counts.get(part, 0) + tensor.numel
        return counts


# --- naming rules ---------------------------------------------------------------------------
# Checked in order; the first rule that matches wins. Names are lower-cased first.

# Vision towers, projectors of multimodal models and GGUF mmproj tensors are not part of the
# language model's blocks.
_OTHER_PREFIX = re.compile(
    r"^(?:model\.)?(?:vision_tower|vision_model|visual|multi_modal_projector|mm_projector|"
    r"audio_tower|v\.|mm\.|a\.)"
)
_GGUF_EMBEDDINGS = re.compile(r"^(?:token_embd|position_embd|token_types|per_layer_token_embd)\.")
_GGUF_LM_HEAD = re.compile(r"^output\.")
_NORM = re.compile(r"norm|(?:^|[._])ln(?:_|\d|\.|$)|layernorm")
_ROUTER = re.compile(
    r"(?:^|\.)(?:router|gate_inp|ffn_gate_inp\w*|shared_expert_gate|e_score_correction)"
    r"|(?:mlp|block_sparse_moe|moe|feed_forward|ffn)\.gate\.|ffn_gate_inp|exp_probs_b"
)
_SHARED_EXPERTS = re.compile(r"shared_expert|_shexp|shared_mlp")
_EXPERTS = re.compile(r"(?:^|\.)experts?\.|_exps(?:\.|$)|block_sparse_moe\.(?:w\d|experts)")
_EMBEDDINGS = re.compile(
    r"(?:^|\.)(?:embed_tokens|wte|wpe|word_embeddings|position_embeddings|embed_in|"
    r"token_type_embeddings|embeddings|tok_embeddings|embed_positions|emb)(?:\.|$)"
)
_LM_HEAD = re.compile(r"(?:^|\.)(?:lm_head|embed_out|output_layer)(?:\.|$)")
_ATTENTION = re.compile(
    r"(?:^|\.)(?:self_attn|attn|attention|self_attention|cross_attn)\.|"
    r"(?:^|\.)attn_\w+|query_key_value|\.(?:q_proj|k_proj|v_proj|o_proj|qkv_proj|c_attn|wqkv|"
    r"wq|wk|wv|wo|kv_a_proj_with_mqa|kv_b_proj|q_a_proj|q_b_proj)\.|(?:^|\.)rel_attn"
)
_MLP = re.compile(
    r"(?:^|\.)(?:mlp|feed_forward|ffn|mixer_mlp)\.|(?:^|\.)ffn_\w+|dense_h_to_4h|dense_4h_to_h|"
    r"\.(?:gate_proj|up_proj|down_proj|gate_up_proj|c_fc|fc1|fc2|w1|w2|w3)\."
)


def component_of(tensor_name: str) -> str:
    """Which part of the model a tensor belongs to, from its name alone.

    Understands Hugging Face names (Llama, Mistral/Mixtral, Qwen, GPT-2, GPT-NeoX, Falcon,
    DeepSeek, gpt-oss, ...) and llama.cpp's GGUF names (token_embd, blk.N.attn_q, ffn_*_exps,
    ...). Shared experts are always active, so they count as "mlp", not "experts".
    Returns one of COMPONENTS.
    """
    name = tensor_name.lower()
    if _OTHER_PREFIX.match(name):
        return "other"
    if _GGUF_EMBEDDINGS.match(name):
        return "embeddings"
    if _GGUF_LM_HEAD.match(name):
        return "lm_head"
    if _NORM.search(name):
        return "norms"
    if _ROUTER.search(name):
        return "router"
    if _SHARED_EXPERTS.search(name):
        return "mlp"
    if _EXPERTS.search(name):
        return "experts"
    if _LM_HEAD.search(name):
        return "lm_head"
    if _EMBEDDINGS.search(name):
        return "embeddings"
    if _ATTENTION.search(name):
        return "attention"
    if _MLP.search(name):
        return "mlp"
    return "other"
