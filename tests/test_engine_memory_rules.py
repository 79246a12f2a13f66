"""Start-up rules for memory outside vLLM's own accounting, and llama.cpp's old row split,
each checked against the outcome or figure a public log reports."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vramest
from vramest.errors import InputError
from vramest.inference.engines.startup import parse_engine_options

GIB = 2**30


def _vllm(model: str, gpu: str, num_gpus: int = 1, dtype: str | None = None, **options: object):  # type: ignore[no-untyped-def]
    return vramest.estimate(model=model, dtype=dtype, gpu=gpu, num_gpus=num_gpus, engine="vllm",
                            engine_options=options, profile="none")


def test_held_all_reduce_inputs_explain_pr2031_blocks_at_tp4():
    """PR #2031 (0.2.5): Llama-2-70B, TP 4 on A100-80GB, '# GPU blocks: 20865'."""
    est = _vllm("meta-llama/Llama-2-70b-hf", "a100 sxm4 80gb", 4, gpu_memory_utilization=0.9,
                version="0.2.5")
    assert est.engine_report.num_gpu_blocks == pytest.approx(20865, rel=0.10)
    fixed = _vllm("meta-llama/Llama-2-70b-hf", "a100 sxm4 80gb", 4, gpu_memory_utilization=0.9,
                  version="0.2.6")  # PR #2151 frees them again
    assert fixed.engine_report.num_gpu_blocks > 1.3 * est.engine_report.num_gpu_blocks


def test_held_all_reduce_inputs_beyond_the_room_are_reclaimed_in_025():
    """vLLM issue #2136 (0.2.5): CodeLlama-13B fp16 at TP 2 on two RTX 4090s, max_model_len
    16384, max_num_seqs 16, utilization 0.95: it starts with '# GPU blocks: 112'. Holding all 80
    all-reduce inputs of the 16384-token profile (12.5 GiB) would leave no block; the caching
    allocator frees them when cudaMalloc fails, so the cache gets what the last reclaim left."""
    est = _vllm("meta-llama/Llama-2-13b-hf", "rtx 4090", 2, "fp16", version="0.2.5",
                gpu_memory_utilization=0.95, max_model_len=16384, max_num_seqs=16)
    report = est.engine_report
    logged = 112 * report.block_size * report.kv_bytes_per_token
    assert report.kv_spread_bytes > 0
    assert abs(report.kv_cache_bytes - logged) <= report.kv_spread_bytes
    assert est.fit.fits  # it started
    assert any("reclaims them" in note for note in report.notes)
    assert any("vllm==0.2.6" in line for line in est.fit.advice)


@pytest.mark.parametrize(("tp", "starts"), [(4, True), (8, False)])
def test_v0_graph_capture_at_tp8_runs_out_on_a10g(tp, starts):
    """vLLM issue #2856 (0.2.7): Llama-2-70B AWQ runs at TP 4 on A10Gs, OOM capturing CUDA
    graphs at TP 8."""
    est = _vllm("meta-llama/Llama-2-70b-hf", "a10g", tp, "awq-int4", version="0.2.7")
    assert est.fit.fits is starts
    if not starts:
        assert "CUDA-graph capture" in est.engine_report.refusal
    eager = _vllm("meta-llama/Llama-2-70b-hf", "a10g", tp, "awq-int4", version="0.2.7",
                  enforce_eager=True)
    assert eager.fit.fits  # no graphs, nothing outside the budget


def test_a100_with_68_gib_in_use_refuses_a_second_instance_in_064():
    """vLLM issue #10533 (0.6.4.post1): Qwen2.5-14B GPTQ at utilization 0.2 on an A100-80GB
    that another vLLM already fills to 68.01 GiB: 'No available memory for the cache blocks'."""
    alone = _vllm("Qwen/Qwen2.5-14B", "a100 sxm4 80gb", 1, "gptq-int4",
                  gpu_memory_utilization=0.2, max_model_len=16384, enforce_eager=True,
                  version="0.6.4")
    shared = _vllm("Qwen/Qwen2.5-14B", "a100 sxm4 80gb", 1, "gptq-int4",
                   gpu_memory_utilization=0.2, max_model_len=16384, enforce_eager=True,
                   version="0.6.4", memory_in_use_bytes=int(68.01 * GIB))
    assert alone.fit.fits and not shared.fit.fits
    assert shared.engine_report.kv_cache_bytes == 0


@pytest.mark.parametrize(("version", "rule"), [("0.7.3", "out of memory"), ("0.8.5", "counted"),
                                                ("0.9.2", "refuses")])
def test_each_release_treats_other_processes_memory_its_own_way(version, rule):
    """Qwen3-8B at utilization 0.4 on an A800 shared with 50 GiB of other work (the setup of
    vLLM issue #17431): V0 keeps util x total and does not fit beside it; V1 0.8 counts it
    as non-torch memory (no KV left); 0.9.1+ refuses before loading."""
    est = _vllm("Qwen/Qwen3-8B", "a800 80gb", gpu_memory_utilization=0.4, version=version,
                memory_in_use_bytes=50 * GIB)
    report = est.engine_report
    assert not est.fit.fits
    if rule == "counted":
        assert report.kv_cache_bytes == 0 and report.non_torch_bytes > 50 * GIB
    else:
        assert rule in report.refusal
    assert any("Other processes hold 50.00 GiB" in note for note in report.notes)


@settings(max_examples=25, deadline=None)
@given(st.floats(0, 70))
def test_more_memory_in_use_never_adds_kv(in_use_gib):
    def kv(gib: float) -> int:
        return _vllm("Qwen/Qwen3-8B", "a800 80gb", gpu_memory_utilization=0.4, version="0.8.5",
                     memory_in_use_bytes=int(gib * GIB)).engine_report.kv_cache_bytes
    assert kv(in_use_gib) <= kv(0)


def test_memory_in_use_must_be_a_size():
    with pytest.raises(InputError, match="not a size"):
        parse_engine_options("vllm", {"memory_in_use_bytes": "lots"})


def test_old_llamacpp_keeps_the_kv_cache_on_the_main_gpu():
    """llama.cpp issue #3780 (b1428): Llama-2-70B Q6_K, -ngl 83 -c 8192 on 3 x Tesla P40 ran
    out of memory: the matrices split by rows, the 2.5 GiB KV cache and the compute buffer
    all on device 0."""
    est = vramest.estimate(model="meta-llama/Llama-2-70b-hf", dtype="q6_k", ctx=8192,
                           gpu="tesla p40", num_gpus=3, engine="llamacpp", profile="none",
                           engine_options={"n_ctx": 8192, "n_gpu_layers": 83,
                                           "version": "b1428"})
    devices = est.engine_report.devices
    assert devices[0].kv_bytes == est.engine_report.kv_cache_bytes == 2560 * 2**20
    assert devices[1].kv_bytes == devices[2].kv_bytes == 0
    # device 0 holds 0.6 GiB less than the driver reports once the measured runtime hold is
    # charged (engines/llamacpp_device.py): inside the band, not a confident "fits"
    assert est.fit.verdict != "fits"
    layered = vramest.estimate(model="meta-llama/Llama-2-70b-hf", dtype="q6_k", ctx=8192,
                               gpu="tesla p40", num_gpus=3, engine="llamacpp", profile="none",
                               engine_options={"n_ctx": 8192, "n_gpu_layers": 83,
                                               "version": "b2000"})
    assert max(d.kv_bytes for d in layered.engine_report.devices) < 1000 * 2**20


@pytest.mark.parametrize(("model", "gpu", "tp", "options", "blocks"), [
    # PR #2031 "Current main: # GPU blocks: 31615" (Llama-2-70B, TP 4, A100-80GB, before it)
    ("meta-llama/Llama-2-70b-hf", "a100 sxm4 80gb", 4, {}, 31615),
    # vLLM issue #2136, 0.2.4: "# GPU blocks: 1464" (CodeLlama-13B fp16 on 2 x RTX 4090)
    ("meta-llama/Llama-2-13b-hf", "rtx 4090", 2,
     {"gpu_memory_utilization": 0.95, "max_model_len": 16384, "max_num_seqs": 16}, 1464),
])
def test_before_pr2031_the_profile_counts_torch_alone(model, gpu, tp, options, blocks):
    est = _vllm(model, gpu, tp, "fp16", version="0.2.4", **options)
    assert est.engine_report.non_torch_bytes == 0
    assert est.engine_report.num_gpu_blocks == pytest.approx(blocks, rel=0.06)


def test_vllm_runs_a_float32_checkpoint_in_16_bit():
    """vLLM issue #7593: Gemma-2-9b (a float32 checkpoint) on 8 x L4 'Loading model weights took
    2.3463 GB' per GPU and '# GPU blocks: 22982': bfloat16 weights and KV, not float32."""
    est = _vllm("google/gemma-2-9b", "l4", 8, version="0.5.4")
    report = est.engine_report
    assert report.weights_bytes == pytest.approx(2.3463 * GIB, rel=0.10)
    assert report.num_gpu_blocks == pytest.approx(22982, rel=0.05)
    assert any("float32 checkpoint in bf16" in note for note in est.assumptions)
    # ... and out of memory capturing CUDA graphs at TP 8, as it was
    assert not est.fit.fits and "CUDA-graph capture" in report.refusal


def test_memory_in_use_beyond_the_gpu_is_refused_in_one_sentence():
    with pytest.raises(InputError, match="less than the GPU's memory"):
        _vllm("Qwen/Qwen3-8B", "rtx 4090", memory_in_use_bytes=30 * GIB)


@pytest.mark.parametrize(("model", "gpu", "version", "blocks"), [
    # vLLM issue #5248: deepseek-coder-6.7b on 2 x T4, '# GPU blocks: 507', then refused
    ("deepseek-ai/deepseek-coder-6.7b-instruct", "t4", "0.4.0", 507),
    # vLLM issue #4429: deepseek-coder-33b on 2 x L40 (48 GB), refused
    ("deepseek-ai/deepseek-coder-33b-instruct", "l40", "0.4.1", None),
])
def test_linear_rope_scaling_multiplies_the_default_max_model_len(model, gpu, version, blocks):
    """16384 positions x linear RoPE factor 4: vLLM profiles and checks 65536 tokens."""
    est = _vllm(model, gpu, 2, "fp16", version=version)
    report = est.engine_report
    assert report.max_model_len == 65536 and not est.fit.fits
    if blocks:
        assert report.num_gpu_blocks == pytest.approx(blocks, rel=0.10)


def test_rope_scaled_context_follows_vllms_rule():
    from vramest.model.shapes import rope_scaled_context

    assert rope_scaled_context({"rope_scaling": {"type": "linear", "factor": 4.0}}, 16384) == 65536
    assert rope_scaled_context({"rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                 "original_max_position_embeddings": 32768}},
                               131072) == 131072
    assert rope_scaled_context({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}},
                               131072) is None
    assert rope_scaled_context({}, 4096) is None


def test_sglang_takes_the_rope_scaled_context_too():
    est = vramest.estimate(model="deepseek-ai/deepseek-coder-6.7b-instruct", gpu="a100 sxm4 80gb",
                           engine="sglang", profile="none")
    assert est.engine_report.context_len == 65536
