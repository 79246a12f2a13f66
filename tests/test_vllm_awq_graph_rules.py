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
