"""What each serving engine's scheduler does, and the few constants fitted per engine.

The policy figures are the engines' defaults (each with its source); the speed constants
(`Engine` in `vramest.inference.engines.speed`: per-step cost, efficiency scales) are fitted
by `vramest/serving/fit.py` to the measurements in vramest/validation/reference/serving_*.csv
and written here.
"""

from __future__ import annotations

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.inference.engines.speed import ENGINES, Engine

_FIT = ("fitted by vramest/serving/fit.py to vramest/validation/reference/serving_"
        "aiconfigurator_silicon.csv (H100/H200, dense models) and serving_max_throughput.csv")


@frozen
class ServingEngine:
    name: str
    speed: Engine  # per-step costs and efficiency scales for the roofline
    max_num_batched_tokens: int  # chunked-prefill token budget per step
    max_num_seqs: int  # most sequences running at once
    block_size: int  # KV tokens per block
    memory_utilization: float  # share of GPU memory the engine takes (weights + KV + rest)
    mixed: bool  # prefill chunks share steps with decodes (else prefill steps run alone)
    launch: str  # the command that starts it
    clump_scale: float  # requests prefilled together ≈ clump_scale × √running (fitted)
    request_overhead_s: float  # per request before its first token: HTTP, tokenizer (fitted)
    allreduce_latency_s: float  # per tensor-parallel all-reduce of a step (fitted)
    seq_overhead_s: float  # per running sequence per step: scheduler, sampler (fitted)
    gemm_half_width: float  # per-GPU matmul width at which GEMMs reach half their rate (fitted)
    moe_efficiency: float  # share of the dense matmul rate fused MoE kernels reach (fitted)
    # seconds per layer of a step carrying prompt tokens, run outside the decode CUDA graphs
    eager_layer_s: float
    # share of the 16-bit GEMMs' share of peak FP8 GEMMs reach (serving/step.py FP8_GEMM_SHARE)
    fp8_gemm_share: float
    source: str
    # all-reduces by the engine's own kernels, timed from their measured table
    # (serving/allreduce.py) where it covers the GPUs; else the ring with the fitted latency
    custom_allreduce: bool = False


def _speed(base: str, name: str, fitted: tuple[float, ...], note: str) -> Engine:
    step_s, mem, comp = fitted[:3]
    engine = replace(ENGINES[base], name=name, step_overhead_s=step_s,
                     memory_efficiency_scale=mem, compute_efficiency_scale=comp,
                     source=f"{_FIT}; {note}")
    if name in LAYER_COST_FITTED:
        engine = replace(engine, layer_overhead_s=fitted[LAYER])
    return engine


# Fitted constants: (per-step seconds, memory efficiency scale, compute efficiency scale,
# clump scale, per-request seconds, seconds per all-reduce, seconds per sequence per step,
# half-rate matmul width per GPU, eager seconds per layer of a step with prompt tokens, the
# share of the 16-bit GEMMs' share of peak FP8 GEMMs reach, from FP8_GEMM_SHARE; seconds per
# layer of every step, for the engines in LAYER_COST_FITTED).
# TensorRT-LLM's decode steps cost a fixed time per layer beyond the weights they stream, at
# every TP: the 1.0.0rc3 campaigns (H100, c8) fall as a / TP + b with b ≈ 2.0 ms for
# Llama-3.1-8B (32 layers) and 4.3 ms for Qwen3-32B (64 layers), about 65 µs a layer, the
# 2026-04-06 one (H200, Llama-3.1-70B, c4) with b ≈ 2.9 ms for 80 layers, once the all-reduces
# (serving/allreduce.py, a few µs each) are taken out: each of the layer's dozen kernels (norms,
# RoPE, activation quantization, the GEMMs, XQA, the all-reduce) takes a few µs however little
# it reads, which the roofline of the weights does not see. The ring's latency (sixth) is not
# fitted for it: its all-reduces come from the measured table; the value kept (its last fit,
# when the ring stood in for the per-layer cost) serves only GPUs the table does not cover.
# The eager cost stays 0 for vLLM: V1 captures mixed prefill/decode batches in piecewise CUDA
# graphs (its default cudagraph mode). SGLang replays CUDA graphs for DECODE, TARGET_VERIFY and
# IDLE batches only (python/sglang/srt/model_executor/forward_batch_info.py,
# ForwardMode.is_cuda_graph; EXTEND and MIXED run eagerly), TensorRT-LLM's PyTorch backend for
# batches without context requests (tensorrt_llm/_torch/pyexecutor/scheduler.py,
# ScheduledRequests.can_run_cuda_graph), so their steps with prompt tokens launch every kernel.
# The FP8 GEMM share starts at serving/step.py FP8_GEMM_SHARE (AIConfigurator's per-op tables);
# SGLang's and TensorRT-LLM's rows fit 0.86 and 0.765. vLLM's rows keep 1 (the peaks' ratio):
# started at 0.765 the fit stays there at a higher loss (held-out TTFT 41% against 19.6%), which
# the tables (vLLM 0.24's FP8 GEMMs 1.40-1.56x bf16) do not explain.
# SGLang's clump scale is used only where it mixes prompts into decode steps
# (--enable-mixed-chunk); by default a clump stays whole (serving/simulate.py).
# Written by `python -m vramest.serving.fit`; see vramest/serving/serving_fit.txt for the
# leave-one-source-out errors.
FITTED: dict[str, tuple[float, ...]] = {
    "vllm": (0.00278, 1.083, 1.453, 0.6616, 0.010372, 1.34e-05, 7.9839e-07, 554.5, 0.0, 1.0,
             0.0),
    "sglang": (0.0020866, 1.173, 1.277, 1.7768, 0.037351, 1.2392e-05, 2.8187e-05, 1.2972,
               0.00018287, 0.86062, 0.0),
    "trtllm": (4.73e-06, 1.1, 1.5593, 1.4028, 0.05989, 2.9531e-05, 1.4805e-06, 486.52,
               4.8661e-05, 0.765, 5.8125e-05),
    # llama.cpp: no serving rows yet; its single-stream constants (scripts/fit_published.py)
    # and neutral scheduler constants
    "llamacpp": (0.0004, 1.0, 1.0, 0.55, 0.0, 1e-05, 2e-06, 1.0, 0.0, 1.0, 0.0),
}

LAYER = 10  # index of the seconds per layer of every step
LAYER_COST_FITTED = {"trtllm"}  # the others keep their base engine's (vllm/sglang: none)

# Fused-MoE kernels (expert FLOPs only): a scan of 1, 0.5, 0.3, 0.2 against the MoE rows in
# vramest/validation/reference/serving_aiconfigurator_silicon_moe.csv (Qwen3-235B-A22B,
# DeepSeek-V3/R1, gpt-oss-120b on H100/H200; median |TPOT error| / |TTFT error| at the value
# kept, with the clump model of 2026-12: vLLM 14% / 14%, SGLang 33% / 50%, TensorRT-LLM 19% / 42%;
# after SGLang's whole clumps, the eager cost and the refit: 13% / 14%, 31% / 37%, 20% / 42%;
# after attention on its own roofline and the refit: 13% / 15%, 30% / 38%, 21% / 41%; the
# scan was not redone; TensorRT-LLM rescanned after its per-layer cost and measured
# all-reduces: 1 → 19% / 37%, 0.5 → 19% / 39%, 0.3 → 18% / 42%, 0.2 → 18% / 42%).
# Attention data parallelism is not modelled, so rows using it are not in that file; expert
# parallelism is (serving/step.py Deployment.ep), and its rows are.
MOE_EFFICIENCY = {"vllm": 0.5, "sglang": 0.5, "trtllm": 0.3, "llamacpp": 1.0}

if TYPE_CHECKING:  # the fields `_scheduler_costs` fills, for the type checker only
    from typing import TypedDict

    class _Costs(TypedDict):
        clump_scale: float
        request_overhead_s: float
        allreduce_latency_s: float
        seq_overhead_s: float
        gemm_half_width: float
        moe_efficiency: float
        eager_layer_s: float
        fp8_gemm_share: float


def _scheduler_costs(name: str) -> _Costs:
    """The fitted constants past the three speed ones, by field name, and the MoE scale."""
    clump, request, allreduce, seq, half_width, eager, fp8_share = FITTED[name][3:10]
    return {"clump_scale": clump, "request_overhead_s": request,
            "allreduce_latency_s": allreduce, "seq_overhead_s": seq,
            "gemm_half_width": half_width, "moe_efficiency": MOE_EFFICIENCY[name],
            "eager_layer_s": eager, "fp8_gemm_share": fp8_share}


SERVING_ENGINES: dict[str, ServingEngine] = {
    "vllm": ServingEngine(
        "vllm", _speed("vllm", "vllm", FITTED["vllm"], "vLLM V1 with CUDA graphs"),
        # vllm/engine/arg_utils.py (v0.10+): on GPUs with >= 70 GiB, the OpenAI server defaults
        # to max_num_batched_tokens 8192 and max_num_seqs 1024
        max_num_batched_tokens=8192, max_num_seqs=1024, block_size=16, memory_utilization=0.9,
        mixed=True, launch="vllm serve", **_scheduler_costs("vllm"),
        source="vLLM V1 scheduler: decodes first, then prompt chunks up to the token budget"),
    "sglang": ServingEngine(
        "sglang", _speed("vllm", "sglang", FITTED["sglang"], "SGLang with CUDA graphs"),
        # sglang/srt/server_args.py: chunked_prefill_size 8192 on >= 80 GB GPUs,
        # mem_fraction_static about 0.88 there, max_running_requests from the KV pool
        max_num_batched_tokens=8192, max_num_seqs=1024, block_size=1, memory_utilization=0.88,
        # SGLang runs prefill batches alone and first (decodes wait) unless
        # --enable-mixed-chunk, so a wave of arrivals is prefilled back to back
        mixed=False, launch="python -m sglang.launch_server",
        **_scheduler_costs("sglang"),
        source="SGLang scheduler: a prefill batch runs before the decode batch resumes"),
    "trtllm": ServingEngine(
        "trtllm", _speed("trtllm", "trtllm", FITTED["trtllm"], "TensorRT-LLM PyTorch backend"),
        # tensorrt_llm/llmapi/llm_args.py: max_num_tokens 8192, max_batch_size 2048;
        # KvCacheConfig.free_gpu_memory_fraction 0.9 of what the weights and buffers leave
        max_num_batched_tokens=8192, max_num_seqs=2048, block_size=32, memory_utilization=0.9,
        mixed=True, launch="trtllm-serve", custom_allreduce=True, **_scheduler_costs("trtllm"),
        source="TensorRT-LLM in-flight batching with chunked context"),
    "llamacpp": ServingEngine(
        "llamacpp", _speed("llamacpp", "llamacpp", FITTED["llamacpp"], "llama.cpp server"),
        # tools/server: --batch-size 2048 logical, --parallel slots share --ctx-size
        max_num_batched_tokens=2048, max_num_seqs=64, block_size=1, memory_utilization=0.95,
        mixed=True, launch="llama-server", **_scheduler_costs("llamacpp"),
        source="llama.cpp server: one batch per step over all slots"),
}


def serving_engine(name: str) -> ServingEngine:
    try:
        return SERVING_ENGINES[name.strip().lower()]
    except KeyError:
        raise InputError(f"Unknown serving engine {name!r}; accepted: "
                         f"{', '.join(SERVING_ENGINES)}.") from None


def with_options(engine: ServingEngine, *, max_num_batched_tokens: int | None = None,
                 max_num_seqs: int | None = None) -> ServingEngine:
    return replace(engine,
                   max_num_batched_tokens=max_num_batched_tokens or engine.max_num_batched_tokens,
                   max_num_seqs=max_num_seqs or engine.max_num_seqs)
