"""vLLM 0.10+ real cases (issue #18): the fit half's logged KV figures stay within reach.

The figure is vLLM's own start-up log line ("GPU KV cache size: N tokens"), quoted in
vramest/validation/reference/real_cases.jsonl; this pins the estimate to it so a later rule change
that moves the 0.10.2 accounting for a small dense model shows up here.
"""

from __future__ import annotations

from vramest.validation.real_cases import load_cases, replay


def _case(case_id: str):
    return next(c for c in load_cases() if c.id == case_id)


def test_vllm_0102_qwen3_06b_a100_kv_tokens_match_the_log() -> None:
    # https://github.com/vllm-project/vllm/pull/24577: "GPU KV cache size: 652,144 tokens"
    case = _case("vllm-24577-a100-qwen3-06b-flashinfer")
    assert case.split == "fit"
    result = replay(case)
    assert result.fits is True  # it started and served lm_eval's gsm8k
    assert result.error is not None and abs(result.error) < 0.05


def _report(model: str, version: str, **options: object):
    from vramest.api import estimate

    est = estimate(model=model, dtype="bf16", gpu="h100", num_gpus=1, engine="vllm",
                   engine_options={"gpu_memory_utilization": 0.95, "max_model_len": 8192,
                                   "version": version, **options},
                   gen=128, profile="none")
    return est.engine_report


GIB = 2**30


def test_vllm_019_profile_samples_without_the_sort() -> None:
    # llm-d-planner accuracy/results/v0.19.0/accuracy_report.md @fbd68515, one H100 (1024
    # sequences, 8192 tokens): activation peaks logged 1.89 GiB (Llama-3.1-8B) and 3.62-3.66
    # GiB (Gemma-2, vocabulary 256,000); KV 476,000 tokens for Llama-3.1-8B
    llama = _report("meta-llama/Llama-3.1-8B-Instruct", "0.19.0")
    assert abs(llama.activation_peak_bytes / (1.89 * GIB) - 1) < 0.05
    assert abs(llama.kv_cache_tokens / 476_000 - 1) < 0.02
    gemma = _report("google/gemma-2-9b", "0.19.0")
    assert abs(gemma.activation_peak_bytes / (3.64 * GIB) - 1) < 0.05


def test_vllm_011_profile_still_sorts() -> None:
    # llm-d-benchmark's 0.11.0 H100 table: 4.76 GiB of activation peak for Llama-3.1-8B
    llama = _report("meta-llama/Llama-3.1-8B-Instruct", "0.11.0")
    assert abs(llama.activation_peak_bytes / (4.76 * GIB) - 1) < 0.05


def test_mrv2_warmup_keeps_the_sort_cost() -> None:
    # vLLM PR #48601: Qwen3.6-27B-FP8 at TP 4 on H100s with VLLM_USE_V2_MODEL_RUNNER=1 ran out of
    # memory in the sampler warm-up, after the KV cache; MRv1's Triton top-k/top-p does not
    # shrink MRV2's warm-up buffers
    case = _case("vllm-pr48601-4xh100-qwen36-27b-fp8")
    assert case.outcome == "oom"
    assert replay(case).fits is False


def _qwen36_27b_fp8_h100(**options: object):
    from vramest.api import estimate

    return estimate(model="Qwen/Qwen3.6-27B-FP8", dtype="fp8", gpu="h100", num_gpus=1,
                    engine="vllm", engine_options={"gpu_memory_utilization": 0.95, **options},
                    gen=128, profile="none")


def test_hybrid_refuses_more_sequences_than_mamba_blocks() -> None:
    # vLLM recipes PR #551: Qwen3.6-27B-FP8 on one H100 at 0.95, default max_num_seqs 1024:
    # "ValueError: max_num_seqs (1024) exceeds available Mamba cache blocks (856)"; the PR's
    # --max-num-seqs 512 starts
    refused = _qwen36_27b_fp8_h100()
    assert refused.fit is not None and refused.fit.fits is False
    assert "exceeds available Mamba cache blocks" in refused.engine_report.refusal
    assert abs(refused.engine_report.num_gpu_blocks / 856 - 1) < 0.05
    started = _qwen36_27b_fp8_h100(max_num_seqs=512)
    assert started.fit is not None and started.fit.fits is True


def test_no_mamba_block_check_without_graphs_or_before_019() -> None:
    eager = _qwen36_27b_fp8_h100(enforce_eager=True)
    assert "Mamba cache blocks" not in eager.engine_report.refusal
    older = _qwen36_27b_fp8_h100(version="0.18.0")
    assert "Mamba cache blocks" not in older.engine_report.refusal
