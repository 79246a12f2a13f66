"""vLLM start-up rules for AWQ's early kernel, V0's multimodal profile and the RoPE caches, each
checked against the outcome or figure a public log reports."""

from __future__ import annotations

import pytest

import vramest

GIB = 2**30


def _vllm(model: str, gpu: str, num_gpus: int = 1, dtype: str | None = None, **options: object):  # type: ignore[no-untyped-def]
    return vramest.estimate(model=model, dtype=dtype, gpu=gpu, num_gpus=num_gpus, engine="vllm",
                            engine_options=options, profile="none")


def test_v0_gemma3_profile_runs_one_picture_per_sequence():
    """vLLM issue #16199 (0.8.3, VLLM_USE_V1=0): gemma-3-27b-it int4 AWQ on an A10 at
    utilization 0.98 of 21.99 GiB, max_model_len 4096: "Model loading took 17.6110 GiB",
    3,584 KV tokens (507,904 bytes each). What the profile left out of the KV cache besides
    the weights: 21.99 x 0.98 - 17.611 - 3584 x 507904 / 2^30 = 2.24 GiB (activation peak and
    non-torch memory); V0 profiles 5120 tokens over 5120 // 256 = 20 sequences, each with
    one 896 px picture through SigLIP."""
    est = _vllm("google/gemma-3-27b-it", "a10", 1, "awq-int4", version="0.7.3",
                gpu_memory_utilization=0.98, max_model_len=4096, total_memory_bytes="21.99GiB")
    report = est.engine_report
    assert report.max_num_batched_tokens == 5120
    assert "20 dummy sequences" in report.notes[0]
    logged = 21.99 * 0.98 - 17.611 - 3584 * 507904 / GIB
    profiled = (report.activation_peak_bytes + report.non_torch_bytes) / GIB
    assert profiled == pytest.approx(logged, rel=0.10)


def test_v0_text_models_keep_their_batch():
    """The 5120-token floor is for multimodal models only (PR #8028)."""
    est = _vllm("meta-llama/Llama-3.1-8B", "a10", 1, version="0.7.3", max_model_len=4096)
    assert est.engine_report.max_num_batched_tokens == 4096


@pytest.mark.parametrize(("model", "length", "fits"), [
    ("huggyllama/llama-7b", 2048, True),  # tulu-7B-AWQ: "its 2k seq length taking up 11.2GB"
    ("meta-llama/Llama-2-7b-hf", 16384, False),  # leo-hessianai-7B-AWQ: "This fails OOM"
    ("codellama/CodeLlama-7b-hf", 16384, False),  # CodeLlama-7B-AWQ, vLLM #1479 on a 3060
])
def test_early_awq_profile_on_a_12gb_3060(model, length, fits):
    """vLLM issues #1234 (0.2.0) and #1479 (0.2.1): 7B AWQ checkpoints on an RTX 3060 12 GB at
    the config's max_model_len. The profile runs max(max_model_len, 2048) tokens through
    awq_gemm, whose split-k partials (8 per output) for QKV stay reserved by the caching
    allocator while the gate/up partials take their own segment."""
    est = _vllm(model, "rtx 3060 12gb", 1, "awq-int4", version="0.2.1",
                max_model_len=length)
    assert est.fit.fits is fits
    if not fits:
        assert "profiling forward" in est.engine_report.refusal


def test_dequantized_awq_from_030_leaves_the_long_profile_alone():
    """From 0.3.0 a batch of 256 tokens or more dequantizes the AWQ weight and runs
    torch.matmul (awq.py FP16_MATMUL_HEURISTIC_CONDITION): no split-k partials to hold."""
    est = _vllm("codellama/CodeLlama-7b-hf", "rtx 3060 12gb", 1, "awq-int4", version="0.3.0",
                max_model_len=16384)
    assert "profiling forward" not in est.engine_report.refusal


def test_gemma3_weights_include_both_rope_caches():
    """vLLM issue #16378 (0.8.x run as V0): Gemma 3 27B bf16 at TP 4, "Model loading took
    13.1664 GB" on each rank. The tensors alone are 0.39 GiB short; the global layers'
    linear-x8 cache (131072 x 8 positions x 128 x 2 bytes) and the sliding layers' own (131072
    positions) are 0.28 GiB of it, whole on every rank."""
    est = _vllm("google/gemma-3-27b-it", "a100 sxm4 80gb", 4, version="v0")
    assert est.engine_report.weights_bytes / GIB == pytest.approx(13.1664, rel=0.01)
    # vLLM leaves Gemma 3's max_model_len unscaled by that factor
    assert est.engine_report.max_model_len == 131072


def test_rope_cache_rows_follow_the_scaling_kind():
    from vramest.inference.engines.versions import Release
    from vramest.inference.engines.vllm_rope import rope_cache_bytes
    from vramest.model.catalog import default_catalog
    from vramest.model.shapes import shape_from_config

    config = dict(default_catalog().get("meta-llama/Llama-3.1-8B").config)
    shape = shape_from_config(config, "llama")
    plain = rope_cache_bytes(config, shape, Release((0, 8)), 2)
    assert plain == 131072 * 128 * 2
    linear = {**config, "rope_scaling": {"rope_type": "linear", "factor": 4.0}}
    assert rope_cache_bytes(linear, shape, Release((0, 8)), 2) == 4 * plain
    llama3 = {**config, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    assert rope_cache_bytes(llama3, shape, Release((0, 8)), 2) == plain
    # before get_rope's shared instances (0.2.3) every layer built its own
    assert rope_cache_bytes(config, shape, Release((0, 2, 1)), 2) == 32 * plain


def test_v1_weights_leave_the_rope_cache_out():
    """vLLM 0.9.0.1 (V1): Qwen3-Embedding-0.6B "Model loading took 1.1098 GiB", its tensors
    alone (QwenLM/Qwen3-Embedding issue #1)."""
    est = _vllm("Qwen/Qwen3-Embedding-0.6B", "h100", 1, version="0.9.0")
    assert est.engine_report.weights_bytes / GIB == pytest.approx(1.1098, abs=0.0001)


def test_gemma3_int4_awq_checkpoint_weights_are_the_group_32_layout():
    """vLLM issue #16199 (0.8.3, V0): gaunernst/gemma-3-27b-it-int4-awq, "Model loading took
    17.6110 GiB"; the group-32 layout (Google's Q4_0 blocks) with the 16-bit vision tower,
    embeddings and RoPE caches, not the default group 128 (16.08 GiB), and with it the KV
    cache holds fewer than the 4096 tokens asked, as logged (3,584): refused."""
    est = _vllm("google/gemma-3-27b-it", "a10", 1, "awq-int4-g32", version="0.7.3",
                gpu_memory_utilization=0.98, max_model_len=4096, total_memory_bytes="21.99GiB")
    report = est.engine_report
    assert report.weights_bytes / GIB == pytest.approx(17.611, rel=0.01)
    assert report.kv_cache_tokens == pytest.approx(3584, rel=0.15)
    assert not est.fit.fits


@pytest.mark.parametrize(("version", "tokens"), [("0.5.4", 2048), ("0.6.2", 4096),
                                                  ("0.6.3", 5120)])
def test_v0_multimodal_batch_floor_by_release(version, tokens):
    """config.py _MULTIMODAL_MODEL_MAX_NUM_BATCHED_TOKENS: none before PR #8028 (0.6.0), 4096 in
    the 0.6.0-0.6.2 wheels, 5120 from 0.6.3; LLaVA-1.5 at 2048 tokens, one 576-token picture a
    sequence."""
    est = _vllm("llava-hf/llava-1.5-7b-hf", "a100 sxm4 80gb", 1, version=version,
                max_model_len=2048)
    assert est.engine_report.max_num_batched_tokens == tokens
