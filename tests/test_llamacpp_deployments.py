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


def _deepseek_v3(version: str):  # type: ignore[no-untyped-def]
    return vramest.estimate(
        model="deepseek-ai/DeepSeek-V3", dtype="q2_k", gpu="a100 sxm4 80gb", num_gpus=4,
        engine="llamacpp", profile="none",
        engine_options={"n_gpu_layers": 999, "n_ctx": 163840, "version": version})


def test_deepseek_kv_cache_by_build() -> None:
    """abetlen/llama-cpp-python issue #1944 (2025-02): DeepSeek-V3 on 4x A100 80GB at the
    model's 163840 tokens, "allocating 204800.00 MiB on device 0 ... failed to allocate buffer
    for kv cache": 16 layers of per-head K (128 x 192) and V (128 x 128) in f16. From PR #12801
    the latent is cached (K 576, V 512), from PR #19067 K alone."""
    old = _deepseek_v3("b4700")
    assert old.engine_report.devices[0].kv_bytes == 204800 * MIB
    assert not old.fit.fits
    latent = _deepseek_v3("b6000").engine_report.devices[0].kv_bytes
    k_only = _deepseek_v3("b8763").engine_report.devices[0].kv_bytes
    assert latent == 16 * 163840 * (576 + 512) * 2
    assert k_only == 16 * 163840 * 576 * 2


# --- ExLlamaV2's EXL2 weights (--dtype exl2-<bits>bpw[-h6|-h8]) ------------------------------
def test_exl2_weights_and_cache_against_turboderps_measurement() -> None:
    """turboderp-org/exllamav2 issue #3: CodeLlama-13B at 2.65 bits, "with the context at 2048
    tokens I'm measuring 7968 MiB all in all, with all the overhead from Torch and CUDA"; at the
    config's 16k the FP16 cache (no GQA) takes it to 19 GB."""
    def total(seq: int) -> float:
        est = vramest.estimate(model="codellama/CodeLlama-13b-hf", dtype="exl2-2.65bpw",
                               gpu="rtx 4090", engine="exllamav2", profile="none",
                               engine_options={"max_seq_len": seq})
        return est.engine_report.gpu_total_bytes / MIB
    assert total(2048) == pytest.approx(7968, rel=0.15)
    assert total(16384) == pytest.approx(19e9 / MIB, rel=0.1)


def test_exl2_on_a_46_gb_card_needs_a_shorter_cache() -> None:
    """turboderp-org/exllamav2 issue #677: Llama-3.1-70B at 2.4 bits on an L40S ran out of
    memory making the config's 131072-token FP16 cache; the weights alone fit."""
    def fits(seq: int) -> bool:
        return vramest.estimate(model="meta-llama/Llama-3.1-70B", dtype="exl2-2.4bpw-h6",
                                gpu="l40s", engine="exllamav2", profile="none",
                                engine_options={"max_seq_len": seq}).fit.fits
    assert not fits(131072) and fits(8192)


@pytest.mark.parametrize("bad", ["exl2-1.0bpw", "exl2-9bpw", "exl2-4.0bpw-h7", "exl2-4.0bpw-h6-x"])
def test_exl2_names_out_of_range_are_refused(bad: str) -> None:
    with pytest.raises(InputError):
        vramest.estimate(model="meta-llama/Llama-3.1-8B", dtype=bad)
