"""llama.cpp's fit judged as the device sees it: the buffers, plus what the backend holds beyond
them, against the total the driver reports (Metal: its working set), checked against logs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramest import estimate
from vramest.inference.engines.llamacpp_device import RUNTIME_BYTES, runtime_bytes
from vramest.units import GIB, MIB

# XiongjieDai/GPU-Benchmarks-on-LLM-Inference, LLaMA 3/Gaming GPUs/4080_v3.ipynb (build 2824):
# llama-bench F16 8B on an RTX 4080, -fa off; pp 4096 and tg 4096 ran, pp 8192 failed
# allocating its 560 MiB compute buffer.
RTX4080 = {"model": "meta-llama/Meta-Llama-3-8B", "dtype": "f16", "gpu": "rtx 4080",
           "engine": "llamacpp"}
# the same set, Mac/M1_8GB.ipynb (build 2797): recommendedMaxWorkingSetSize = 5726.63 MB; main
# at n_ctx 512 and pp 4096 ran, pp 8192 did not
M1 = {"model": "meta-llama/Meta-Llama-3-8B", "dtype": "q4_k_m", "gpu": "apple m1 8gb",
      "engine": "llamacpp"}


def _fit(setup: dict[str, str], ctx: int, **options: object):
    opts = {"n_gpu_layers": 99, "flash_attn": False, "version": "b2824", **options}
    est = estimate(**setup, ctx=ctx, engine_options=opts, profile="none")
    assert est.fit is not None
    return est.fit


@pytest.mark.parametrize(("ctx", "ran"), [(4096, True), (4608, True), (8192, False)])
def test_rtx4080_f16_runs_where_the_log_ran(ctx, ran):
    assert _fit(RTX4080, ctx).fits is ran


@pytest.mark.parametrize(("ctx", "ran"), [(512, True), (4096, True), (8192, False)])
def test_metal_counts_the_buffers_against_the_working_set(ctx, ran):
    fit = _fit(M1, ctx, version="b2797")
    assert fit.fits is ran
    assert fit.per_gpu.overhead == 0  # no CUDA context on Metal
    assert fit.usable_bytes == pytest.approx(5726.63e6, rel=1e-4)  # the logged working set


def test_runtime_hold_matches_the_unaccounted_memory_llama_cpp_prints():
    # ggml-org/llama.cpp PR #15860: "CUDA0 (RTX 4090): 24080 = 9436 + (14193 = 13169 + 38 +
    # 985) + 451" (total = free + self + unaccounted), on 3 GPUs 451, 456, 456 MiB
    for self_mib, unaccounted_mib, free_mib in ((14193, 451, 9436), (13756, 456, 9868)):
        used = (24080 - free_mib) * MIB
        assert self_mib * MIB + runtime_bytes("CUDA") == pytest.approx(used, abs=6 * MIB)
        assert abs(RUNTIME_BYTES - unaccounted_mib * MIB) <= 5 * MIB
    assert runtime_bytes("Metal") == 0


def test_the_band_says_the_runtime_is_uncertain():
    fit = _fit(RTX4080, 4096)
    assert fit.verdict == "tight"  # 0.5 GiB of headroom: within the runtime's spread
    band = fit.to_json()["error_band"]
    assert band["bytes"] >= RUNTIME_BYTES  # type: ignore[index,operator]
    far = _fit({**RTX4080, "dtype": "q4_k_m"}, 4096)
    assert far.verdict == "fits"


def test_a_reserve_the_user_gives_is_kept_free():
    plain = _fit(RTX4080, 4096)
    est = estimate(**RTX4080, ctx=4096, reserve="2GiB", profile="none",
                   engine_options={"n_gpu_layers": 99, "flash_attn": False, "version": "b2824"})
    assert est.fit is not None
    assert plain.usable_bytes - est.fit.usable_bytes == 2 * GIB
    assert not est.fit.fits


# llama.cpp issue #8766 (build 3488, ROCm, 3x RX 7900 XTX): Qwen2-72B Q4_K_M at -c 32000 started
# and ran out of memory "when the real context is larger than 10k": the buffers are sized for the
# whole context at start; what grew was the F16 attention scores in ggml's pool (PR #10015 moved
# them to F32 in the compute buffer).
QWEN2_72B_3X7900 = {"model": "Qwen/Qwen2-72B", "dtype": "q4_k_m", "gpu": "rx 7900 xtx",
                    "num_gpus": 3, "engine": "llamacpp", "ctx": 32000, "profile": "none"}


def test_rocm_run_outgrows_the_pool_before_pr_10015():
    est = estimate(**QWEN2_72B_3X7900, engine_options={"n_gpu_layers": 99, "version": "b3488"})
    assert est.fit is not None and not est.fit.fits
    later = estimate(**QWEN2_72B_3X7900, engine_options={"n_gpu_layers": 99, "version": "b4000",
                                                         "flash_attn": False})
    assert later.fit is not None
    buffers = est.fit.per_gpu.total - est.fit.per_gpu.overhead
    assert buffers == later.fit.per_gpu.total - later.fit.per_gpu.overhead
    # the scores: 32000 cells x 512 tokens x 64 heads in F16, beyond what a later build holds
    scores = 32000 * 512 * 64 * 2
    assert est.fit.per_gpu.overhead - later.fit.per_gpu.overhead >= scores - 512 * MIB


@pytest.mark.parametrize("gpu", ["tesla p40", "apple m2 max 64gb"])
def test_no_f16_pool_where_llama_cpp_never_takes_that_path(gpu):
    # Pascal stays on MMQ and the slow-F16 paths; Metal has no cuBLAS
    est = estimate(model="meta-llama/Llama-2-13b-hf", dtype="q4_k_m", gpu=gpu, ctx=8192,
                   engine="llamacpp", profile="none",
                   engine_options={"n_gpu_layers": 99, "version": "b2824"})
    assert est.fit is not None
    assert est.fit.per_gpu.overhead in (0, RUNTIME_BYTES)


@given(st.integers(1, 1 << 20), st.integers(1, 4096), st.integers(2000, 9000),
       st.booleans(), st.booleans())
def test_pool_grows_with_the_context_and_ends_with_pr_10015(n_kv, n_tokens, build, fa, quant):
    from vramest.hardware.database import default_hardware
    from vramest.inference.engines.llamacpp_device import PoolShape, pool_bytes
    from vramest.inference.engines.versions import Release

    gpu = default_hardware().find("rtx 3090")
    shape = PoolShape(n_kv, n_tokens, 32, 14336 * 4096, 0, quant, fa, True)
    more = PoolShape(n_kv * 2, n_tokens, 32, 14336 * 4096, 0, quant, fa, True)
    here = pool_bytes(shape, gpu, "CUDA", Release((build,)))
    assert 0 <= here <= pool_bytes(more, gpu, "CUDA", Release((build,)))
    if build >= 3970:  # F32 scores (PR #10015) and MMQ (PR #8075) on an RTX 3090: nothing extra
        assert here == 0
    assert pool_bytes(shape, gpu, "Vulkan", Release((build,))) == 0


@pytest.mark.parametrize(("build", "held"), [("b1430", True), ("b1727", True), ("b1728", False)])
def test_pascal_held_the_f16_scores_until_pr_4682(build, held):
    # ggml-cuda.cu @2f9ec7e (b1430, issue #3780's 3x P40 build) sent every F16 x F32 multi-batch
    # product to batched cuBLAS whatever the GPU; PR #4682 (b1728) gated it on fast F16
    est = estimate(model="meta-llama/Llama-2-13b-hf", dtype="q4_k_m", gpu="tesla p40", ctx=8192,
                   engine="llamacpp", profile="none",
                   engine_options={"n_gpu_layers": 99, "version": build})
    assert est.fit is not None
    scores = 8192 * 512 * 40 * 2  # n_kv x n_ubatch x n_head in F16
    assert est.fit.per_gpu.overhead - RUNTIME_BYTES == (scores if held else 0)
