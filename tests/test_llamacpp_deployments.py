"""llama.cpp rules found from public deployments (issue #18), each against its logged figure."""

from __future__ import annotations

import pytest

import vramest
from vramest.errors import InputError

MIB = 2**20


def _qwen35_cmoe(version: str, fused: bool):  # type: ignore[no-untyped-def]
    """ggml-org/llama.cpp issue #20431: Qwen3.5-397B-A17B Q4_K_S, -cmoe -ngl 99, 262144 cells,
    -ub 1024, -fa on, on one RTX 3090."""
    return vramest.estimate(
        model="Qwen/Qwen3.5-397B-A17B", dtype="q4_k_s", gpu="rtx 3090", engine="llamacpp",
        profile="none", engine_options={
            "n_gpu_layers": 99, "n_ctx": 262144, "n_ubatch": 1024, "flash_attn": True,
            "n_cpu_moe": 60, "version": version, "fused_gate_up_exps": fused})


def test_cpu_moe_left_fused_gate_up_experts_on_the_gpu_before_b8301() -> None:
    """b8284 logged "allocating 144817.04 MiB on device 0" while loading the model: its -cmoe
    pattern matched ffn_down_exps but not the file's fused ffn_gate_up_exps (PR #20416)."""
    before = _qwen35_cmoe("b8284", fused=True)
    assert before.engine_report.model_buffer_gpu_bytes == pytest.approx(144817.04 * MIB, rel=0.01)
    assert not before.fit.fits
    # the same file from b8301 on, or a file with separate gate and up experts, keeps every
    # expert on the host: a few GiB of attention and shared-expert weights on the GPU
    for after in (_qwen35_cmoe("b8301", fused=True), _qwen35_cmoe("b8284", fused=False)):
        assert after.engine_report.model_buffer_gpu_bytes < 8 * 1024 * MIB
        assert after.engine_report.model_buffer_host_bytes > \
            before.engine_report.model_buffer_host_bytes * 2


def test_fused_experts_do_not_matter_without_cpu_moe() -> None:
    est = vramest.estimate(model="Qwen/Qwen3-30B-A3B", dtype="q4_k_m", gpu="rtx 4090",
                           engine="llamacpp", profile="none",
                           engine_options={"version": "b8284", "fused_gate_up_exps": True,
                                           "n_gpu_layers": 99})
    plain = vramest.estimate(model="Qwen/Qwen3-30B-A3B", dtype="q4_k_m", gpu="rtx 4090",
                             engine="llamacpp", profile="none",
                             engine_options={"version": "b8284", "n_gpu_layers": 99})
    assert est.engine_report.model_buffer_gpu_bytes == plain.engine_report.model_buffer_gpu_bytes


def test_fused_flag_must_be_a_switch() -> None:
    with pytest.raises(InputError):
        vramest.estimate(model="Qwen/Qwen3-30B-A3B", dtype="q4_k_m", gpu="rtx 4090",
                         engine="llamacpp", engine_options={"fused_gate_up_exps": "maybe"})


def _tinyllama_pp4096(flash: bool):  # type: ignore[no-untyped-def]
    return vramest.estimate(
        model="TinyLlama/TinyLlama-1.1B-Chat-v1.0", dtype="q4_k_m", gpu="rtx 4090",
        engine="llamacpp", profile="none", prompt=4096, gen=128, ctx=4224,
        engine_options={"n_gpu_layers": 99, "n_ctx": 4224, "backend": "vulkan",
                        "version": "b7340", "flash_attn": flash})


def test_prefill_without_flash_attention_moves_the_scores_through_memory() -> None:
    """geerlingguy/ai-benchmarks issue #43: llama-bench (-fa off by default) pp4096 of
    TinyLlama Q4_K_M on an RTX 4090 ran at 18709.17 tokens/s, a quarter of what its matmuls
    alone allow: 22 layers x 32 heads of f32 scores over 8 micro-batches of 512."""
    off, on = _tinyllama_pp4096(False), _tinyllama_pp4096(True)
    assert off.throughput.prefill_tokens_per_s == pytest.approx(18709.17, rel=0.2)
    assert on.throughput.prefill_tokens_per_s > 2.5 * off.throughput.prefill_tokens_per_s
    assert on.throughput.decode_tokens_per_s == off.throughput.decode_tokens_per_s


def test_score_bytes_grow_with_the_cells_each_micro_batch_sees() -> None:
    from vramest.inference.llamacpp_prefill import SCORE_BYTES_MOVED, score_bytes

    shape = vramest.estimate(model="TinyLlama/TinyLlama-1.1B-Chat-v1.0").model.shape
    one = score_bytes(shape, 512, 512)
    assert one == 22 * 32 * 512 * 512 * SCORE_BYTES_MOVED
    # 4096 tokens in 8 micro-batches see 512, 1024, ... 4096 cells: 36 times one micro-batch
    assert score_bytes(shape, 4096, 512) == 36 * one
