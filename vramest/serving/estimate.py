"""One serving estimate: a model on N GPUs under an engine, at a concurrency or request rate.

Memory under serving is the engine's start-up accounting: SGLang's static split and KV token
pool (`inference.engines.sglang`) for SGLang, vLLM's (`vllm_startup`) for the others: the
activation peak of a forward over the engine's token budget (not batch × prompt), the
non-torch and CUDA-graph memory, and what remains as KV blocks. The largest concurrency
follows from the KV tokens: each running request holds its prompt and its output so far.
"""

from __future__ import annotations

from functools import lru_cache

from vramest.errors import InputError
from vramest.frozen import frozen, replace
from vramest.hardware.database import Device
from vramest.inference.constants import DEFAULTS, Constants
from vramest.inference.engines.startup import VLLMOptions, vllm_startup
from vramest.inference.estimate import Estimate, estimate_for
from vramest.inference.serving_extras import NO_EXTRAS, ServingExtras, apply_memory
from vramest.model.precisions import kv_format
from vramest.model.resolve import ModelInfo
from vramest.model.shapes import LAYER_FULL, LAYER_SLIDING, ModelShape
from vramest.serving.devices import eager_layer_on_device, on_device
from vramest.serving.disagg import Pools
from vramest.serving.engines import ServingEngine
from vramest.serving.lengths import FIXED, LengthDist
from vramest.serving.simulate import SteadyState, at_request_rate, steady_state
from vramest.serving.step import Deployment


@frozen
class Capacity:
    """KV memory of one replica, per GPU, from the engine's start-up accounting."""

    weights_bytes: int
    activation_bytes: int
    kv_cache_bytes: int
    kv_cache_tokens: int  # the replica's KV pool, in tokens
    block_size: int

    def sequences(self, tokens: int) -> int:
        """Whole requests of `tokens` tokens the KV blocks hold at once."""
        blocks = -(-tokens // self.block_size)
        return self.kv_cache_tokens // (blocks * self.block_size) if blocks else 0


@frozen
class ServingEstimate:
    deployment: Deployment
    engine: ServingEngine
    input_len: int
    output_len: int
    state: SteadyState
    capacity: Capacity
    max_concurrency: int
    mode: str  # "concurrency", "request-rate" or "max-throughput"
    request_rate: float | None
    input_dist: LengthDist = FIXED
    output_dist: LengthDist = FIXED
    pools: Pools | None = None  # disaggregated: the prefill and decode pools (else None)

    @property
    def num_gpus(self) -> int:
        return self.pools.num_gpus if self.pools else self.deployment.num_gpus

    @property
    def tokens_per_s_per_gpu(self) -> float:
        return self.state.output_tokens_per_s / self.num_gpus

    @property
    def tokens_per_s_per_user(self) -> float:
        return 1.0 / self.state.tpot.median

    def to_json(self) -> dict[str, object]:
        s = self.state
        return {
            "engine": self.engine.name, "mode": self.mode,
            "input_len": self.input_len, "output_len": self.output_len,
            "input_len_dist": self.input_dist.label(),
            "output_len_dist": self.output_dist.label(),
            "request_rate": self.request_rate,
            "ttft_s": s.ttft.to_json(), "tpot_s": s.tpot.to_json(), "itl_s": s.itl.to_json(),
            "e2e_s": s.e2e.to_json(),
            "output_tokens_per_s": s.output_tokens_per_s,
            "output_tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "output_tokens_per_s_per_user": self.tokens_per_s_per_user,
            "max_concurrency": self.max_concurrency,
            "concurrency": round(s.concurrency, 2),
            "running": round(s.running, 2),
            "num_gpus": self.num_gpus, "tensor_parallel": self.deployment.tp,
            "pipeline_parallel": self.deployment.pp,
            "expert_parallel": self.deployment.ep,
            "disaggregated": self.pools.to_json() if self.pools else None,
            "max_num_batched_tokens": self.engine.max_num_batched_tokens,
            "max_num_seqs": self.engine.max_num_seqs,
            "decode_step_s": s.decode_step_s, "mixed_step_s": s.mixed_step_s,
            "prefill_bound": s.prefill_bound,
            "memory_per_gpu": {
                "weights_bytes": self.capacity.weights_bytes,
                "activation_bytes": self.capacity.activation_bytes,
                "kv_cache_bytes": self.capacity.kv_cache_bytes,
                "kv_cache_tokens": self.capacity.kv_cache_tokens,
            },
        }


@lru_cache(maxsize=512)
def _memory_estimate(info: ModelInfo, dtype: str, kv_dtype: str | None, max_model_len: int,
                     constants: Constants, extras: ServingExtras = NO_EXTRAS) -> Estimate:
    est = estimate_for(info, dtype=dtype, ctx=max_model_len, kv_dtype=kv_dtype,
                       constants=constants)
    return apply_memory(est, extras)  # LoRA slots and a proposer: less left for KV


@lru_cache(maxsize=8192)
def capacity(info: ModelInfo, dtype: str, kv_dtype: str | None, device: Device, gpus: int,
             eng: ServingEngine, max_model_len: int, constants: Constants = DEFAULTS,
             extras: ServingExtras = NO_EXTRAS, pp: int = 1) -> Capacity:
    """What one GPU of `gpus` holds: tensor parallel over gpus / pp inside each of `pp`
    pipeline stages."""
    est = _memory_estimate(info, dtype, kv_dtype, max_model_len, constants, extras)
    if eng.name == "sglang":  # SGLang's own static split and KV token pool
        from vramest.inference.engines import registry, sglang

        pool = sglang.compute(registry.StartupRequest(
            est=est, device=device, tp=gpus // pp, usable_bytes=None,
            options={"chunked_prefill_size": eng.max_num_batched_tokens,
                     "max_running_requests": eng.max_num_seqs,
                     "context_length": max_model_len}))
        return Capacity(weights_bytes=pool.weights_bytes,
                        activation_bytes=pool.activation_peak_bytes,
                        kv_cache_bytes=pool.kv_cache_bytes,
                        kv_cache_tokens=pool.max_total_num_tokens, block_size=1)
    trtllm = eng.name == "trtllm"
    start = vllm_startup(est, device, gpus // pp, pp=pp, options=VLLMOptions(
        gpu_memory_utilization=1.0 if trtllm else eng.memory_utilization,
        max_model_len=max_model_len, max_num_batched_tokens=eng.max_num_batched_tokens,
        max_num_seqs=eng.max_num_seqs, block_size=max(eng.block_size, 1)))
    kv_bytes, kv_tokens = start.kv_cache_bytes, start.kv_cache_tokens
    if trtllm:
        # TensorRT-LLM gives the KV cache a share of the memory still free once the weights
        # and buffers are in (KvCacheConfig.free_gpu_memory_fraction), not of the whole GPU
        kv_bytes = round(start.kv_cache_bytes * eng.memory_utilization)
        block = start.kv_bytes_per_token * eng.block_size
        kv_tokens = int(kv_bytes // block) * eng.block_size if block else 0
    return Capacity(weights_bytes=start.weights_bytes,
                    activation_bytes=start.activation_peak_bytes,
                    kv_cache_bytes=kv_bytes, kv_cache_tokens=kv_tokens,
                    block_size=max(eng.block_size, 1))


def deployment(info: ModelInfo, dtype: str, kv_dtype: str | None, device: Device, tp: int,
               pp: int, eng: ServingEngine, constants: Constants = DEFAULTS,
               ep: int = 1) -> Deployment:
    from vramest.model.precisions import default_kv_format, weight_format

    fmt = weight_format(dtype)
    kv = kv_format(kv_dtype) if kv_dtype else default_kv_format(fmt)
    constants = replace(constants, allreduce_latency_s=eng.allreduce_latency_s)
    return Deployment(shape=_engine_window(info.shape, eng), fmt=fmt, kv=kv, device=device, tp=tp, pp=pp,
                      engine=on_device(eng.speed, device), constants=constants,
                      seq_overhead_s=eng.seq_overhead_s,
                      gemm_half_width=eng.gemm_half_width, moe_efficiency=eng.moe_efficiency,
                      eager_layer_s=eager_layer_on_device(eng.eager_layer_s, device),
                      fp8_gemm_share=eng.fp8_gemm_share,
                      custom_allreduce=eng.custom_allreduce,
                      ep=ep if info.shape.is_moe else 1)


def _engine_window(shape: ModelShape, eng: ServingEngine) -> ModelShape:
    """TensorRT-LLM keeps and attends over the whole context unless told a window
    (tensorrt_llm/llmapi/llm_args.py KvCacheConfig.max_attention_window, default None: the
    max sequence length), so a model whose every layer is sliding (Mistral-7B-v0.1) runs as
    full attention there: its 0.17 perf-overview runs Mistral-7B at 20000/2000 tokens as fast
    as Llama-3.1-8B (1373 against 1401 tokens/s on H100), not 2.2x as fast as the 4096-token
    window would allow."""
    kinds = shape.kinds()
    if eng.name != "trtllm" or not kinds or any(k != LAYER_SLIDING for k in kinds):
        return shape
    return replace(shape, layer_kinds=(LAYER_FULL,) * len(kinds), sliding_window=None)


def serve(d: Deployment, eng: ServingEngine, cap: Capacity, *, input_len: int, output_len: int,
          concurrency: int | None = None, request_rate: float | None = None,
          input_dist: LengthDist = FIXED, output_dist: LengthDist = FIXED) -> ServingEstimate:
    if input_len < 1 or output_len < 1:
        raise InputError("--input-len and --output-len must be at least 1 token.")
    full = cap.sequences(input_len + output_len)
    if cap.kv_cache_bytes <= 0:
        raise InputError(
            f"{d.shape.name} in {d.fmt.name} does not fit on {d.num_gpus}× {d.device.name}: the "
            f"weights ({cap.weights_bytes / 2**30:.1f} GiB per GPU) and the engine's buffers "
            "leave no room for a KV cache; use more GPUs or a smaller --dtype.")
    if full < 1:
        raise InputError(
            f"The KV cache left on {d.device.name} × {d.num_gpus} does not hold one request of "
            f"{input_len + output_len} tokens; use more GPUs, a smaller --dtype or --kv-dtype, "
            "or shorter lengths.")
    # engines that admit by current use (vLLM, SGLang) hold sequences at their mean length
    # and preempt on overflow; TensorRT-LLM reserves every request's full length
    mean_len = input_len + output_len if eng.name == "trtllm" else input_len + output_len // 2
    holds = max(full, cap.sequences(mean_len))
    if request_rate is not None:
        state = at_request_rate(d, eng, input_len=input_len, output_len=output_len,
                                rate=request_rate, capacity=holds, input_dist=input_dist,
                                output_dist=output_dist)
        mode = "request-rate"
    else:
        mode = "concurrency" if concurrency is not None else "max-throughput"
        conc = concurrency if concurrency is not None else min(holds, eng.max_num_seqs)
        state = steady_state(d, eng, input_len=input_len, output_len=output_len,
                             concurrency=conc, capacity=holds, input_dist=input_dist,
                             output_dist=output_dist)
    return ServingEstimate(deployment=d, engine=eng, input_len=input_len, output_len=output_len,
                           state=state, capacity=cap, max_concurrency=full, mode=mode,
                           request_rate=request_rate, input_dist=input_dist,
                           output_dist=output_dist)
