"""vLLM's second model runner (MRV2, `VLLM_USE_V2_MODEL_RUNNER=1`) and what its start-up
leaves out of the memory profile.

MRV2's `profile_run` builds its dummy batch with no sampling parameters, so the sampler takes
its early exit and neither the fp32 upcast of the logits nor the top-k/top-p buffers enter the
profiled peak; `warmup_kernels` then samples max_num_seqs sequences with
`SamplingParams.for_sampler_warmup()` after the KV cache holds the budget, "the one moment when
nothing can be given back" (vLLM PR #57926, open 2026-09-21, quoting the `NOTE(woosuk)` in
`_dummy_sampler_run`; PR #48601, 2026-07-14: "OOM at kernel warmup", Qwen3.6-27B-FP8 at TP 4 on
H100s). The warm-up's transient buffers are the ones MRv1's profile counted (PR #48601 "adds the
necessary stats mirrored to MRv1"), so they are sized with MRv1's sort-based bytes per logit
(MRV2_WARMUP_BYTES_PER_LOGIT).

The same log shows MRV2 sizing the KV cache without its CUDA graphs: "Actual usage is 7.39 GiB
for weight, 1.54 GiB for peak activation, 0.6 GiB for non-torch memory, and 2.04 GiB for
CUDAGraph memory ... Current kv cache memory in use is 63.25 GiB" of a 72.78 GiB budget
(72.78 - 7.39 - 1.54 - 0.6 = 63.25): the graphs are captured after it, outside the budget.
"""

from __future__ import annotations

from vramest.errors import InputError
from vramest.inference.engines.versions import V1_SORT_SAMPLER
from vramest.units import GIB

MODEL_RUNNERS = ("v1", "v2")
# The warm-up's logits-sized buffers per logit: the sort-based figure of 0.11.0's MRv1 profile
# (versions.V1_SORT_SAMPLER). MRv1's profile sorts nothing from 0.19 (versions.
# _V1_TRITON_SAMPLER: its top-k/top-p run in the Triton kernel of PR #33538), but MRV2's warm-up
# filters top-k/top-p in FlashInfer ("[MRV2] Profile flashinfer top-k/top-p sampler to fix
# warmup OOM", PR #48601), whose transient buffers that kernel does not replace.
MRV2_WARMUP_BYTES_PER_LOGIT = V1_SORT_SAMPLER


def parse_model_runner(value: object, what: str) -> str:
    """`v1` (GPUModelRunner, the default) or `v2` (VLLM_USE_V2_MODEL_RUNNER=1); the variable's
    own 1/0 are taken too."""
    text = str(value).strip().lower()
    text = {"1": "v2", "0": "v1", "true": "v2", "false": "v1"}.get(text, text)
    if text not in MODEL_RUNNERS:
        raise InputError(f"{what} {value!r} is not a vLLM model runner; give v1 (the default) or "
                         "v2 (VLLM_USE_V2_MODEL_RUNNER=1).")
    return text


def mrv2_profiled_logits(seqs: int, vocab: int, compute_bytes: float) -> int:
    """What MRV2's profile holds of the sampling step: the logits of max_num_seqs sequences in
    the compute dtype; "the fp32 logits upcast ... never enters the profiled peak" (PR #57926)."""
    return round(seqs * vocab * compute_bytes)


def warmup_refusal(room: int, capture: int, sampler: int) -> str:
    """Why MRV2 runs out of memory after sizing its KV cache: `room` is what the device has
    once the cache holds the budget (the profile's activations given back), `capture` the CUDA
    graphs captured next, `sampler` the warm-up's logits-sized buffers."""
    if capture + sampler <= room:
        return ""
    gib = 1 / GIB
    return (f"CUDA out of memory in the sampler warm-up: the model runner v2 leaves the "
            f"sampler's buffers ({sampler * gib:.2f} GiB for max_num_seqs x vocabulary) and its "
            f"CUDA graphs ({capture * gib:.2f} GiB) out of the KV budget, and {room * gib:.2f} "
            "GiB is left; lower --gpu-memory-utilization or --max-num-seqs, or use the default "
            "runner (VLLM_USE_V2_MODEL_RUNNER=0).")
