"""Invariants: more context, batch, parameters or bits never lower the memory."""

from __future__ import annotations

import contextlib

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vramest.api import estimate
from vramest.errors import InputError

MODELS = ["meta-llama/Llama-3.1-8B", "mistralai/Mistral-7B-v0.1", "google/gemma-2-9b",
          "mistralai/Mixtral-8x7B-v0.1", "deepseek-ai/DeepSeek-V2-Lite", "openai/gpt-oss-20b",
          "openai-community/gpt2", "Qwen/Qwen3-30B-A3B"]
# Orderings by bits per weight within one family of formats (llama.cpp quantizes the
# embeddings; the Hugging Face-side formats keep them in 16 bit, so the families interleave).
DTYPE_CHAINS = [["q2_k", "q3_k_m", "q4_0", "q4_k_m", "q5_k_m", "q6_k", "q8_0", "gguf-f16",
                 "gguf-f32"],
                ["bnb-nf4-dq", "int4", "nf4", "fp8", "int8", "fp16", "fp32"]]

settings.register_profile("vramest", max_examples=60, deadline=None)
settings.load_profile("vramest")


@given(st.sampled_from(MODELS), st.integers(1, 200_000), st.integers(1, 200_000),
       st.integers(1, 64))
def test_more_context_never_lowers_memory(model: str, a: int, b: int, batch: int) -> None:
    lo, hi = sorted((a, b))
    small = estimate(model=model, ctx=lo, batch=batch)
    large = estimate(model=model, ctx=hi, batch=batch)
    assert large.memory.total >= small.memory.total
    assert large.memory.kv_cache.bytes >= small.memory.kv_cache.bytes


@given(st.sampled_from(MODELS), st.integers(1, 32_768), st.integers(1, 256), st.integers(1, 256))
def test_more_batch_never_lowers_memory(model: str, ctx: int, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert estimate(model=model, ctx=ctx, batch=hi).memory.total >= \
        estimate(model=model, ctx=ctx, batch=lo).memory.total


@given(st.integers(10**8, 2 * 10**12), st.integers(10**8, 2 * 10**12),
       st.sampled_from(["llama", "qwen", "gemma"]))
def test_more_params_never_lowers_weights(a: int, b: int, family: str) -> None:
    lo, hi = sorted((a, b))
    assert estimate(params=hi, family=family, dtype="bf16").memory.weights.bytes >= \
        estimate(params=lo, family=family, dtype="bf16").memory.weights.bytes


@given(st.sampled_from(MODELS), st.sampled_from(DTYPE_CHAINS), st.data())
def test_more_bits_never_lowers_weights(model: str, chain: list[str], data: st.DataObject) -> None:
    # gpt-oss rows are 2880 wide, not a multiple of 256: llama.cpp then stores K-quant tensors
    # in wider legacy blocks, so q3_k_m really is larger than q4_0 there.
    assume(not (model.startswith("openai/gpt-oss") and chain is DTYPE_CHAINS[0]))
    i = data.draw(st.integers(0, len(chain) - 2))
    fewer = estimate(model=model, dtype=chain[i]).memory.weights.bytes
    more = estimate(model=model, dtype=chain[i + 1]).memory.weights.bytes
    assert more >= fewer


@given(st.integers(10**8, 2 * 10**12))
def test_params_shape_has_the_requested_size(params: int) -> None:
    """A shape borrowed for --params N is solved to hold N parameters (to within 2%)."""
    got = estimate(params=params).model.params
    assert abs(got / params - 1) < 0.02


# Junk for the Python API: wrong types, non-finite and huge numbers, empty and odd text.
_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                  st.binary(max_size=4), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))
_ESTIMATE_ARGS = ("dtype", "ctx", "batch", "kv_dtype", "active_params", "family", "attention",
                  "prefill_chunk", "gpu", "num_gpus", "pp", "reserve", "prompt", "gen", "engine",
                  "num_layers", "hidden_size", "num_heads", "vocab_size")
_TRAINING_ARGS = ("gpu", "gpu_memory", "tokens", "reserve", "method", "precision", "optimizer",
                  "seq", "micro_batch", "grad_accumulation", "grad_checkpointing", "attention",
                  "lora_rank", "lora_targets", "base_dtype", "trainable_layers", "zero",
                  "num_gpus", "offload", "sequence_parallel", "upcast_unquantized", "moe_experts")


@settings(max_examples=150)
@given(st.dictionaries(st.sampled_from(_ESTIMATE_ARGS), _JUNK, min_size=1, max_size=3),
       st.sampled_from(["vllm", "llamacpp", "generic"]),
       st.dictionaries(st.sampled_from(["gpu_memory_utilization", "block_size", "max_model_len",
                                        "n_gpu_layers", "n_ubatch", "flash_attn", "cache_type_k"]),
                       _JUNK, max_size=2))
def test_the_api_answers_junk_with_input_errors(kwargs: dict, engine: str, options: dict) -> None:
    kwargs = {"engine": engine, **kwargs}
    if kwargs.get("engine") == engine and engine != "generic":
        kwargs.update(gpu="h100", engine_options=options)
    with contextlib.suppress(InputError):
        estimate(params="7B", **kwargs)


@settings(max_examples=150)
@given(st.dictionaries(st.sampled_from(_TRAINING_ARGS), _JUNK, min_size=1, max_size=3))
def test_the_training_api_answers_junk_with_input_errors(kwargs: dict) -> None:
    from vramest.training.estimate import estimate_training

    with contextlib.suppress(InputError):
        estimate_training(model="meta-llama/Llama-3.1-8B", **kwargs)


def test_the_typed_request_and_the_keyword_form_answer_alike() -> None:
    """vramest.run(EstimateRequest(...)) is what vramest.estimate(**kwargs) calls."""
    import vramest

    request = vramest.EstimateRequest(
        vramest.ModelQuery(model="llama-3.1-70b"), vramest.RunSettings(dtype="fp8", ctx="32k"),
        vramest.Deployment(gpu="h100", num_gpus=2, engine="vllm"))
    typed = vramest.run(request).to_json()
    flat = vramest.estimate(model="llama-3.1-70b", dtype="fp8", ctx="32k", gpu="h100",
                            num_gpus=2, engine="vllm").to_json()
    assert typed == flat


def test_a_remembered_answer_cannot_be_changed_by_its_caller() -> None:
    """The same request returns the same immutable answer; its JSON is the caller's own copy."""
    import pytest

    import vramest

    first = vramest.estimate(params="70B", dtype="int4", ctx=8192, gpu="h100")
    out = first.to_json()
    out["profile"]["path"] = "/elsewhere"
    with pytest.raises(TypeError):
        first.extras["profile"] = {}  # type: ignore[index]
    again = vramest.estimate(params="70B", dtype="int4", ctx=8192, gpu="h100")
    assert again.to_json()["profile"]["path"] is None
    assert again.to_json() == vramest.estimate(params="70B", dtype="int4", ctx=8192,
                                               gpu="h100").to_json()
