"""vLLM's rotary-embedding cos/sin caches: built on the GPU with the model, so part of what
"Model loading took" reports, and out of the KV budget.

Rules, read from vllm/model_executor/layers/rotary_embedding.py at v0.8.3:
- `RotaryEmbedding.__init__` computes `cos_sin_cache`, one row per position and rotary_dim
  columns (the cos and sin halves), casts it to the model's dtype and keeps it as a buffer.
- The rows depend on the scaling: `max_position_embeddings` plain (and for llama3 and mrope);
  times the factor for linear ("max_len = self.max_position_embeddings * scaling_factor") and
  dynamic NTK; `original_max_position_embeddings` times the factor for yarn and deepseek_yarn;
  the short and the long cache one after the other for longrope (Phi-3).
- `get_rope` keeps one instance per distinct (head size, rotary dim, positions, base, scaling)
  in `_ROPE_DICT`, from 0.2.3 (absent from the 0.2.2 wheel, present in 0.2.3's); before, every
  attention layer built its own.
- Gemma 3's sliding layers override the RoPE to the default at `rope_local_base_freq`, the
  global ones keep the config's (linear x 8 in the 4B, 12B and 27B releases) (models/gemma3.py
  Gemma3Attention @v0.8.3): two caches. vLLM does not scale Gemma 3's max_model_len by that
  factor (config.py _get_and_verify_max_len: 'if rope_scaling is not None and "gemma3" not in
  hf_config.model_type').
Measured on V0: Gemma 3 27B bf16 at TP 4 on vLLM 0.8.x logged "Model loading took 13.1664 GB"
(vLLM issue #16378), 0.39 GiB above the tensors alone, its two caches 0.28 GiB of it; the
0.6.4 start-up logs of vLLM issue #10517 leave 1% less KV cache than the tensors alone would.
V1 is left out: vLLM 0.9.0.1 (V1) logged "Model loading took 1.1098 GiB" for Qwen3-Embedding-
0.6B (QwenLM/Qwen3-Embedding issue #1), its tensors alone to the last digit, without its
8 MiB cache; where V1 keeps the cache is not established here.
"""

from __future__ import annotations

from collections.abc import Mapping

from vramest.frozen import TYPE_CHECKING
from vramest.inference.engines.versions import Release
from vramest.model.shapes import ModelShape

if TYPE_CHECKING:
    from typing import Any

# one shared instance per distinct RoPE from this release on (see the module's docstring)
SHARED_ROPE_SINCE = Release((0, 2, 3))
# families whose attention has no rotary embedding: learned absolute positions or ALiBi
_NO_ROPE = frozenset({"gpt2", "gpt_bigcode", "opt", "bloom", "mpt", "jamba", "whisper", "bert",
                      "roberta", "xlm-roberta", "t5"})


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, Mapping) else config


def _positive(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)


def _rows(rope: Mapping[str, Any] | None, max_position: int) -> int:
    """Positions in one cache under the config's rope_scaling."""
    if not isinstance(rope, Mapping):
        return max_position
    kind = rope.get("rope_type", rope.get("type"))
    factor = _positive(rope.get("factor")) or 1.0
    original = _positive(rope.get("original_max_position_embeddings"))
    if kind in ("linear", "dynamic"):
        return int(max_position * factor)
    if kind in ("yarn", "deepseek_yarn") and original:
        return int(original * factor)
    if kind in ("longrope", "su") and original:
        return int(original) + max_position
    return max_position


def rope_cache_bytes(config: Mapping[str, Any], shape: ModelShape, release: Release,
                     dtype_bytes: float) -> int:
    """The cos/sin caches one GPU holds (they are not split over tensor-parallel ranks)."""
    text = _text_config(config)
    family = str(text.get("model_type", shape.family)).lower()
    max_position = shape.max_context
    if family in _NO_ROPE or shape.family in _NO_ROPE or shape.position_embeddings or \
            not max_position or shape.architecture != "decoder":
        return 0
    if shape.kv_lora_rank:  # MLA: only the decoupled RoPE part rotates
        rotary = shape.qk_rope_head_dim
    else:
        partial = _positive(text.get("partial_rotary_factor", text.get("rotary_pct"))) or 1.0
        rotary = int(shape.head_dim * min(partial, 1.0))
    rope = text.get("rope_scaling")
    rows = _rows(rope if isinstance(rope, Mapping) else None, max_position)
    if family.startswith("gemma3"):  # the sliding layers' own default-RoPE cache
        rows += max_position
    attention_layers = shape.num_layers - shape.state_layers
    copies = 1 if release >= SHARED_ROPE_SINCE else max(1, attention_layers)
    return round(copies * rows * rotary * dtype_bytes)
