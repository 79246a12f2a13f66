"""Disaggregated serving: a pool of prefill replicas hands each request's KV cache to a pool of
decode replicas (vLLM with a KV connector, SGLang's --disaggregation-mode, TensorRT-LLM's
`trtllm-serve disaggregated`).

The decode replicas then run decode-only steps: TPOT is one decode step of the batch each holds,
never slowed by another request's prompt. The prefill replicas run prompt-only steps of up to
the token budget; a request waits for the step in progress and for those queued before it, as
in a queue with deterministic service (M/D/1: mean wait ρ / (2(1 − ρ)) steps at utilisation ρ).
The first token comes from the prefill replica; the KV cache of the prompt then crosses the
GPU link before the second. The system serves the lesser of what the prefill pool and the
decode pool sustain.
"""

from __future__ import annotations

import math
from functools import lru_cache

from vramest.frozen import frozen
from vramest.serving.engines import ServingEngine
from vramest.serving.simulate import EXP, SteadyState, Z, _spread
from vramest.serving.step import Deployment, Step, kv_bytes_per_sequence, step_seconds

MAX_PREFILL_UTILIZATION = 0.9  # past this the prefill queue's wait grows without bound
_step = lru_cache(maxsize=65536)(step_seconds)  # a search asks for the same steps again


@frozen
class Pools:
    """`prefill_replicas` × the prefill deployment, `decode_replicas` × the decode one."""

    prefill: Deployment
    decode: Deployment
    prefill_replicas: int
    decode_replicas: int

    @property
    def num_gpus(self) -> int:
        return self.prefill_replicas * self.prefill.num_gpus + \
            self.decode_replicas * self.decode.num_gpus

    def to_json(self) -> dict[str, object]:
        return {"prefill": {"replicas": self.prefill_replicas,
                            "tensor_parallel": self.prefill.tp},
                "decode": {"replicas": self.decode_replicas, "tensor_parallel": self.decode.tp}}


def kv_transfer_seconds(pools: Pools, input_len: int) -> float:
    """The prompt's KV cache over one GPU's link (NVLink within a node, else PCIe)."""
    device = pools.decode.device
    link = device.interconnect_bytes_s or device.pcie_bytes_s or 32e9
    return kv_bytes_per_sequence(pools.decode, input_len) / (link / 2)


def disaggregated_state(pools: Pools, eng: ServingEngine, *, input_len: int, output_len: int,
                        decode_batch: float) -> SteadyState:
    """Both pools at their steady state, each decode replica holding `decode_batch` requests."""
    gen = max(1, output_len - 1)
    ctx = input_len + output_len / 2
    decode = _step(pools.decode, Step(decodes=max(1.0, decode_batch),
                                             decode_context=ctx, prefill_tokens=0,
                                             prefill_context=0))
    decode_rate = pools.decode_replicas * decode_batch / (gen * decode)  # requests/s
    budget = eng.max_num_batched_tokens
    per_step = min(input_len, budget)
    alone = math.ceil(input_len / budget) * _step(pools.prefill, Step(
        decodes=0, decode_context=0, prefill_tokens=per_step, prefill_context=input_len / 2,
        prefill_seqs=1))
    full_step = _step(pools.prefill, Step(
        decodes=0, decode_context=0, prefill_tokens=budget, prefill_context=input_len / 2,
        prefill_seqs=max(1.0, budget / input_len)))
    prefill_rate = pools.prefill_replicas * budget / input_len / full_step  # requests/s
    rate = min(decode_rate, MAX_PREFILL_UTILIZATION * prefill_rate)
    rho = rate / prefill_rate
    wait = rho / (2 * (1 - rho)) * full_step  # mean M/D/1 wait, in the prefill step's units
    base = alone + eng.request_overhead_s
    ttft = _spread(*(base + wait * EXP[k] for k in Z))  # the wait taken as exponential
    transfer = kv_transfer_seconds(pools, input_len)
    tpot_value = decode + transfer / gen
    tpot = _spread(tpot_value, tpot_value, tpot_value)
    itl = _spread(decode, decode, decode + transfer)
    e2e = _spread(*(getattr(ttft, k) + gen * tpot_value for k in Z))
    mean_e2e = base + wait + gen * tpot_value
    return SteadyState(ttft=ttft, tpot=tpot, itl=itl, e2e=e2e,
                       output_tokens_per_s=rate * output_len,
                       running=pools.decode_replicas * decode_batch,
                       concurrency=rate * mean_e2e, decode_step_s=decode,
                       mixed_step_s=full_step, clump=1.0,
                       prefill_bound=rate < decode_rate, mean_e2e_s=mean_e2e)
