"""The time of one serving step: the decode tokens of the running batch plus a prefill chunk.

A continuous-batching engine runs one forward per step over every token scheduled in it. The
work of that forward is assembled here from the roofline parts in `vramest.inference`: the
weights are read once per step (only the experts the step's tokens touch, for a mixture of
experts), each decoding sequence reads its own KV cache, each token costs the matmul FLOPs and
its attention over its context. The matmuls are timed by `time_phase`, which adds the
engine's per-step and per-layer costs and the tensor-parallel all-reduces (TensorRT-LLM's from
its kernels' measured times, `serving/allreduce.py`); the attention kernels run between
them, one after another, so their own roofline (the KV read against the attention FLOPs) adds
to the step rather than hiding under the matmuls' (`attention_seconds`). The step time is thus
a closed form of the batch composition, so a scheduler can evaluate many steps cheaply.
"""

from __future__ import annotations

import math
from functools import lru_cache

from vramest.frozen import frozen, replace
from vramest.hardware.database import Device
from vramest.inference.constants import Constants
from vramest.inference.engines.speed import Engine
from vramest.inference.memory import (
    kv_elements_per_token,
    kv_layout_bytes,
    weight_bytes_by_group,
)
from vramest.inference.serving_extras import ServingExtras
from vramest.inference.throughput import (
    Phase,
    PhaseWork,
    _attention_flops_per_token,
    _params,
    compute_precision,
    engine_efficiencies,
    engine_peak,
    time_phase,
)
from vramest.model.precisions import KVFormat, WeightFormat
from vramest.model.shapes import ModelShape
from vramest.serving.allreduce import covers, device_allreduce_s

# An FP8 GEMM runs 1.53x as fast as the same bf16 GEMM on Hopper, not the 2x of their peaks:
# the median over 210 large GEMMs (M 2048-8192; N, K of Llama-3.1-8B/70B and Qwen3-32B layers)
# of AIConfigurator 0.12's per-op tables, aiconfigurator_core/systems/data/{h100_sxm,h200_sxm}/
# gemm/{sglang/0.5.6.post2, sglang/0.5.14, trtllm/1.3.0rc20, vllm/0.24.0}/gemm_perf.parquet
# (per engine 1.40-1.64; block-scaled fp8 runs as fast as per-tensor there): FP8 matmuls
# reach this share of the 16-bit GEMMs' share of peak. Each serving engine fits its own share
# starting here (serving/engines.py FITTED), bounded by 1 (the peaks' ratio).
FP8_GEMM_SHARE = 1.53 / 2


@frozen
class Deployment:
    """One replica: a model in a precision on `tp` × `pp` GPUs of one kind, under an engine."""

    shape: ModelShape
    fmt: WeightFormat
    kv: KVFormat
    device: Device
    tp: int
    pp: int
    engine: Engine
    constants: Constants
    seq_overhead_s: float = 0.0  # per sequence per step: scheduling, sampling, detokenizing
    # a matmul's share of its large-GEMM rate falls as tensor parallelism narrows its output
    # columns on each GPU: hidden/tp / (hidden/tp + this), fitted per engine
    gemm_half_width: float = 0.0
    # share of the dense matmul rate the fused MoE kernels reach on expert FLOPs (fitted)
    moe_efficiency: float = 1.0
    extras: ServingExtras | None = None  # LoRA slots, speculative decoding (serving/extras.py)
    # expert parallel: the experts are split over `ep` groups of the tp GPUs (each expert's
    # matmuls over the tp // ep GPUs of its group). The weights and FLOPs per GPU are those of
    # tensor parallelism; what changes is that a step waits for the most loaded group
    # (`_ep_imbalance`: more tokens, and more experts touched, than the mean), and that an
    # expert's matmuls keep its group's width (hidden / (tp // ep) per GPU), not tensor
    # parallelism's narrower slices (`_narrow`). The collectives stay tensor parallelism's:
    # without attention data parallelism TensorRT-LLM's fused MoE reduces its output with the
    # all-reduce (tensorrt_llm/_torch/modules/fused_moe/, enable_alltoall needs
    # enable_attention_dp), so no all-to-all dispatch or combine is added
    ep: int = 1
    # per layer of a step that carries prompt tokens: the engine's CUDA graphs cover decode-only
    # batches, so such a step runs eagerly and pays its kernel launches (fitted per engine)
    eager_layer_s: float = 0.0
    # share of the 16-bit GEMMs' share of peak that FP8 GEMMs reach (FP8_GEMM_SHARE; fitted)
    fp8_gemm_share: float = 1.0
    # the engine's own all-reduce kernels, timed from their measured table where it covers the
    # GPUs (serving/allreduce.py); else the ring formula with the fitted latency
    custom_allreduce: bool = False

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp


@frozen
class Step:
    """The composition of one step, averaged where a run of steps is aggregated."""

    decodes: float  # sequences producing one token each
    decode_context: float  # mean tokens each decoding sequence attends to
    prefill_tokens: float  # prompt tokens of the chunk(s) scheduled in this step
    prefill_context: float  # mean position of those prompt tokens
    prefill_seqs: float = 0.0  # sequences those prompt tokens belong to


@lru_cache(maxsize=4096)
def _kv_bytes(shape: ModelShape, bytes_per_element: float, tokens: int) -> float:
    """One sequence's KV at `tokens`, as memory.kv_part counts it (DeepSeek-V3.2's indexer
    keys and the sparse FP8 latent layout included)."""
    return (kv_elements_per_token(shape, tokens) * bytes_per_element
            + kv_layout_bytes(shape, tokens, bytes_per_element))


@lru_cache(maxsize=8192)
def _attention(shape: ModelShape, position: int) -> float:
    return _attention_flops_per_token(shape, range(position, position + 1))


@lru_cache(maxsize=256)
def _static(shape: ModelShape, fmt: WeightFormat) -> tuple[float, float, float, float, float]:
    """(dense matmul params, one expert per layer summed, head params, dense bytes, expert bytes)
    — the bytes are the stored weights a step reads: layers + head, and all experts."""
    dense, expert = _params(shape)
    groups = weight_bytes_by_group(shape, fmt)
    head = groups["lm_head"] if not shape.tie_embeddings else groups["embedding"]
    return dense, expert, float(shape.vocab_size * shape.hidden_size), \
        groups["layers"] + head, groups["experts"]


def step_work(d: Deployment, s: Step) -> PhaseWork:
    """The matmuls of a step: weights (and the experts touched) read once, every token's GEMM
    FLOPs, the all-reduces. Attention is `attention_seconds`."""
    shape = d.shape
    dense, expert, head, dense_bytes, expert_bytes = _static(shape, d.fmt)
    gpus = d.num_gpus
    tokens = s.decodes + s.prefill_tokens
    k = shape.experts_per_token if shape.is_moe else 0
    busiest = 1.0
    if shape.is_moe:
        busiest = _ep_imbalance(tokens * k, d.ep)
        # experts hit by at least one of the step's tokens, routing assumed uniform; under
        # expert parallelism the GPUs of the most loaded group set the pace
        touched = 1 - (1 - k / shape.num_experts) ** max(1.0, tokens * busiest)
        expert_read = expert_bytes * touched
        expert_rows = max(1.0, tokens * busiest * k / (shape.num_experts * touched))
    else:
        expert_read, expert_rows = 0.0, 0.0
    logits_rows = s.decodes + s.prefill_seqs  # only a sequence's last position is sampled
    narrow = _narrow(d, d.tp)
    # the dense GEMMs' FP8 rate; the fused MoE kernels keep their own share (moe_efficiency,
    # scanned against the MoE rows)
    fp8 = 1 / d.fp8_gemm_share if _precision(d.fmt, d.device) == "fp8" else 1.0
    return PhaseWork(
        dense_flops=(2 * tokens * (dense - head) + 2 * logits_rows * head) / gpus * narrow * fp8,
        expert_flops=2 * tokens * busiest * expert * k / gpus * _narrow(d, d.tp // d.ep)
        / d.moe_efficiency,
        dense_rows=max(1.0, tokens), expert_rows=expert_rows,
        bytes_moved=(dense_bytes + expert_read) / gpus,
        forwards=1, allreduce_bytes=tokens * shape.hidden_size * d.fmt.compute_bytes,
        layers=shape.num_layers, tp=d.tp, pp=d.pp, is_prefill=s.prefill_tokens > 0)


def _narrow(d: Deployment, split: int) -> float:
    """1 / the share of the GEMM rate a matmul split over `split` GPUs reaches."""
    width = d.shape.hidden_size / max(1, split)
    return (width + d.gemm_half_width) / width


def attention_seconds(d: Deployment, s: Step, decode_queries: float = 1.0) -> float:
    """The attention kernels of a step: each decoding sequence streams its KV cache (and a
    prompt chunk its cached prefix) and every query position attends over its context. They
    run between the matmuls, so they are timed on their own roofline, in 16-bit arithmetic
    (FlashAttention/FlashInfer and TensorRT-LLM's FMHA compute QK^T and PV in fp16/bf16, an
    FP8 KV cache being dequantized on load). `decode_queries`: positions each decoding
    sequence verifies (speculative decoding), reading its KV once."""
    shape = d.shape
    flops = s.decodes * decode_queries * _attention(shape, round(s.decode_context)) + \
        s.prefill_tokens * _attention(shape, round(s.prefill_context))
    kv_read = s.decodes * _kv_bytes(shape, d.kv.bytes_per_element, round(s.decode_context))
    if s.prefill_tokens:  # a chunk reads the cached prefix of its sequence once
        kv_read += s.prefill_seqs * _kv_bytes(shape, d.kv.bytes_per_element,
                                              round(s.prefill_context))
    flops_s, bytes_s = _attention_rates(d.device, d.constants, d.engine, d.fmt)
    gpus = d.num_gpus
    compute = flops / gpus / flops_s if flops_s else 0.0
    memory = kv_read / gpus / bytes_s if bytes_s else 0.0
    return max(compute, memory) * d.pp  # pipeline stages run in turn


@lru_cache(maxsize=256)
def _attention_rates(device: Device, constants: Constants, engine: Engine,
                     fmt: WeightFormat) -> tuple[float, float]:
    """(FLOP/s, bytes/s) one GPU's attention kernels reach."""
    mem_eff, comp_eff = engine_efficiencies(device, constants, engine)
    peak = engine_peak(device, _attention_precision(fmt, device), engine)
    return (peak or 0.0) * comp_eff, (device.bandwidth_bytes_s or 0.0) * mem_eff


def step_seconds(d: Deployment, s: Step) -> float:
    """Wall time of one step on the replica (pipeline stages run in turn)."""
    if d.extras:
        from vramest.serving.extras import extras_step_seconds

        return extras_step_seconds(d, s, d.extras)
    return phase_seconds(d, step_work(d, s)) + attention_seconds(d, s) + eager_seconds(d, s) + \
        d.seq_overhead_s * (s.decodes + s.prefill_seqs)


def phase_seconds(d: Deployment, work: PhaseWork) -> float:
    """The matmuls, weight reads, per-step costs and all-reduces of a step's work."""
    if d.custom_allreduce and covers(d.device, d.tp):
        phase = _phase(d, replace(work, tp=1))  # all-reduces from the measured table instead
        elements = work.allreduce_bytes / d.fmt.compute_bytes
        return phase.seconds + 2 * work.layers * device_allreduce_s(d.device, d.tp, elements)
    return _phase(d, work).seconds


def _phase(d: Deployment, work: PhaseWork) -> Phase:
    return time_phase(work, d.device, _precision(d.fmt, d.device), d.constants, d.engine)


def eager_seconds(d: Deployment, s: Step) -> float:
    """Kernel launches of a step with prompt tokens where the engine's graphs miss it."""
    return d.eager_layer_s * d.shape.num_layers if s.prefill_tokens else 0.0


@lru_cache(maxsize=4096)
def _ep_imbalance(routed: float, ep: int) -> float:
    """The most loaded of `ep` expert groups over the mean, for `routed` token-expert pairs
    spread uniformly: the expected maximum of `ep` binomial counts, mean + √(2 ln ep)·σ (the
    Gaussian extreme-value approximation), at most every pair on one group."""
    if ep <= 1 or routed <= 0:
        return 1.0
    mean = routed / ep
    sigma = math.sqrt(mean * (1 - 1 / ep))
    return min(float(ep), (mean + math.sqrt(2 * math.log(ep)) * sigma) / mean)


@lru_cache(maxsize=256)
def _precision(fmt: WeightFormat, device: Device) -> str:
    return compute_precision(fmt, device)


@lru_cache(maxsize=256)
def _attention_precision(fmt: WeightFormat, device: Device) -> str:
    """Attention runs in 16 bit where the matmuls run in FP8 or FP4."""
    precision = compute_precision(fmt, device)
    return "fp16" if precision in ("fp8", "fp4") else precision


def kv_bytes_per_sequence(d: Deployment, tokens: int) -> float:
    """KV bytes one sequence of `tokens` tokens holds, summed over the replica's GPUs."""
    return _kv_bytes(d.shape, d.kv.bytes_per_element, tokens)
