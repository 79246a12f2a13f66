"""DeepSeek Sparse Attention (DeepSeek-V3.2): the lightning indexer beside MLA.

Every layer runs an indexer that scores all earlier tokens and keeps the top `index_topk`
(2048) for the MLA attention. Read from deepseek-ai/DeepSeek-V3.2-Exp inference/model.py
@6d8cb70d (class Indexer) and vLLM's port (vllm/model_executor/models/deepseek_v2.py
@002d6073, class Indexer / DeepseekV32IndexerCache):
- weights per layer: wq_b (q_lora_rank -> index_n_heads x index_head_dim), wk (hidden ->
  index_head_dim), k_norm (a LayerNorm: weight and bias), weights_proj (hidden ->
  index_n_heads, kept in bf16). vLLM replicates them on every tensor-parallel rank ("no tensor
  parallel, just replicated").
- its cache: one key of index_head_dim per token and layer, stored in FP8 with one fp32 scale
  per 128 values ("fp8 naive cache"): head_dim + head_dim // 128 * 4 = 132 bytes, whatever the
  KV cache's own precision (vLLM: DeepseekV32IndexerCache, an MLAAttentionSpec of uint8 with
  num_kv_heads 1; the reference code's k_cache + k_scale_cache).
- an FP8 latent cache for the sparse MLA kernels (FlashMLA sparse) is not 576 bytes but 656:
  the 512 latent values in FP8, a float32 scale per 128 of them, and the 64 rope values kept in
  bf16 (vllm/v1/kv_cache_interface.py @001cabc1: MLAAttentionSpec with "fp8_ds_mla" is
  block_size * 656 bytes). SGLang's pool for DeepSeek-V3.2 keeps the same 656 + 132 bytes per
  layer: its log's 54.52 GB for 1,462,784 tokens over 61 layers is 656.0 bytes per layer-token
  before it counted the indexer, 43.67 GB for 975,424 tokens 788.0 after
  (sgl-project/sglang#11309).

Attention sinks (gpt-oss's learned per-head sink logits) add one parameter per query head and
layer (64 x 24 = 1,536 in gpt-oss-20b) and nothing to the KV cache: the sink is a logit, not a
cached key, so they change memory by 3 KiB of weights and no KV.
"""

from __future__ import annotations

from collections.abc import Mapping

from vramest.frozen import TYPE_CHECKING, replace

if TYPE_CHECKING:
    from typing import Any

    from vramest.model.shapes import ModelShape

QUANT_BLOCK = 128  # values per FP8 scale (Indexer.quant_block_size; act_quant's block_size)
SCALE_BYTES = 4  # one float32 scale per block
ROPE_BYTES = 2  # the sparse FP8 latent keeps its rope part in bf16


def with_indexer(s: ModelShape, config: Mapping[str, Any]) -> ModelShape:
    """The DeepSeek-V3.2 shape: V3's MLA + MoE layers, each with its lightning indexer."""
    from vramest.model.shapes import TensorSpec

    head_dim = int(config.get("index_head_dim", 128))
    heads = int(config.get("index_n_heads", 64))
    layers, h = s.num_layers, s.hidden_size
    indexer = (TensorSpec("attn_q_b", None, heads * head_dim, s.q_lora_rank or h, layers),
               TensorSpec("attn_k", None, head_dim, h, layers),
               TensorSpec("norm", None, 1, head_dim, 2 * layers),
               TensorSpec("router", None, heads, h, layers))
    topk = int(config.get("index_topk", 2048))
    return replace(s, indexer_head_dim=head_dim, extra_tensors=(*s.extra_tensors, *indexer),
                   notes=(*s.notes, f"DeepSeek sparse attention: a {heads}-head indexer per "
                          f"layer keeps {head_dim} FP8 key values + a scale per token "
                          f"({indexer_bytes(head_dim)} B) and picks {topk} tokens"))


def indexer_bytes(head_dim: int) -> int:
    """Bytes one token's indexer key takes in one layer: FP8 values + fp32 scales."""
    return head_dim + head_dim // QUANT_BLOCK * SCALE_BYTES


def extra_kv_bytes_per_layer(shape: ModelShape, kv_bytes_per_element: float) -> float:
    """Bytes per token and attention layer beyond the latent's elements x precision: the
    indexer key, and with an FP8 cache the sparse latent's scales and bf16 rope."""
    if not shape.indexer_head_dim:
        return 0.0
    extra = float(indexer_bytes(shape.indexer_head_dim))
    if kv_bytes_per_element == 1:
        extra += (shape.kv_lora_rank // QUANT_BLOCK * SCALE_BYTES
                  + shape.qk_rope_head_dim * (ROPE_BYTES - 1))
    return extra
