"""What vLLM builds when it serves an embedding or reranking model (its pooling runner).

Rules, read from vLLM's source (vllm-project/vllm):
- The pooling adapter deletes the LM head: `_create_pooling_model_cls` removes `lm_head` and
  `logits_processor` ("These are not used in pooling models") and skips `lm_head.*` weights
  (vllm/model_executor/models/adapters.py @00620f91). An untied checkpoint's head costs no
  memory; a bare `*Model` checkpoint (E5-Mistral) has none to begin with.
- A decoder's layers keep causal attention, so each keeps its KV cache in the block pool as a
  generating model does (FullAttentionSpec); only encoder-only attention (BERT, XLM-R) needs
  none: EncoderOnlyAttentionSpec.max_memory_usage_bytes returns 0, "Encoder-only layers do not
  need KV cache" (vllm/v1/kv_cache_interface.py @001cabc1). vLLM 0.10.1.1 serving
  Qwen3-Embedding-0.6B logged "GPU KV cache size: 222,864 tokens" (gpustack/gpustack#2793).
- The profiling forward ends in the pooler, not the sampler: `profile_run` calls
  `_dummy_pooler_run(hidden_states)` for a pooling model instead of `_dummy_sampler_run`
  (vllm/v1/worker/gpu_model_runner.py @4e179065), so no max_num_seqs × vocabulary logits.
"""

from __future__ import annotations

from vramest.errors import InputError
from vramest.frozen import frozen, replace
from vramest.model.encoders import ENCODER_FAMILIES
from vramest.model.shapes import DECODER, ENCODER, LAYER_FULL, ModelShape

RUNNERS = ("auto", "generate", "pooling")


@frozen
class ServedModel:
    shape: ModelShape  # the layers vLLM runs and caches, as a decoder
    pooling: bool
    note: str = ""


def parse_runner(value: object, what: str) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else ""
    aliases = {"embed": "pooling", "embedding": "pooling", "classify": "pooling",
               "score": "pooling", "reward": "pooling", "generation": "generate"}
    text = aliases.get(text, text)
    if text not in RUNNERS:
        raise InputError(f"{what} {value!r} is not understood; give auto, generate or pooling "
                         "(vLLM's --runner; --task embed/classify/score means pooling).")
    return text


def served_model(shape: ModelShape, runner: str = "auto") -> ServedModel:
    """The model vLLM's chosen runner builds: `auto` pools for an embedding checkpoint (a bare
    `*Model` decoder, an encoder) and generates otherwise, as vLLM's runner resolution does."""
    embedding = shape.architecture == ENCODER
    if runner == "generate" and embedding:
        raise InputError(f"{shape.name} is an embedding model (no LM head): vLLM serves it "
                         "with the pooling runner only.")
    if not (runner == "pooling" or embedding):
        return ServedModel(shape, pooling=False)
    if shape.family in ENCODER_FAMILIES:
        raise InputError(f"--engine vllm does not emulate start-up for the encoder-only "
                         f"{shape.family} ({shape.name}): vLLM keeps no KV cache for its "
                         "layers (EncoderOnlyAttentionSpec); the estimate without --engine "
                         "holds.")
    if shape.architecture not in (DECODER, ENCODER) or shape.encoder_layers:
        raise InputError(f"--engine vllm does not emulate a pooling {shape.architecture} "
                         "model; the estimate without --engine holds.")
    causal = replace(shape, architecture=DECODER, tie_embeddings=True,
                     layer_kinds=tuple(LAYER_FULL for _ in range(shape.num_layers))
                     if embedding else shape.layer_kinds)
    note = ("Pooling runner (embedding/score): vLLM drops the LM head and profiles the pooler "
            "instead of the sampler; the causal layers keep their KV cache in the block pool.")
    if embedding and shape.notes and any("sliding" in n for n in shape.notes):
        note += " Sliding windows are sized as full attention here."
    return ServedModel(causal, pooling=True, note=note)
