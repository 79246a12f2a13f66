"""Which release of an engine an answer is for, and the accounting rules that release follows.

`--engine-version vllm==0.6.3` (or `engine_options={"version": "0.6.3"}`) picks the row of the
engine's table whose range holds that release. Every row names where its rule comes from: a
file of the engine at a commit, a pull request, or a start-up log with its URL. A new engine
adds its own table to `TABLES` (and its default to `DEFAULTS`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen, replace

if TYPE_CHECKING:
    from typing import Any


@frozen(order=True)
class Release:
    """A release number: vLLM `0.6.3` → (0, 6, 3); llama.cpp build `b4000` → (4000,)."""

    parts: tuple[int, ...]

    def __str__(self) -> str:
        return ".".join(map(str, self.parts))


@frozen
class VLLMRules:
    """How one range of vLLM releases sizes its KV cache at start-up."""

    since: Release
    engine: str  # "v0" (LLMEngine, block manager) or "v1" (EngineCore, KV cache manager)
    # V0 profiles one forward over max(max_model_len, 2048) tokens unless chunked prefill is on
    # (from 0.5.4 by default past 32k tokens, then 512 tokens per step, 2048 from 0.6.5); V1
    # always chunks.
    chunked_prefill: str  # "never", "long-context" (only max_model_len > 32768) or "always"
    batched_tokens: int  # V1 `vllm serve` default max_num_batched_tokens (GPUs under 70 GiB)
    batched_tokens_large_gpu: int  # the same on GPUs of 70 GiB and more, except A100
    max_num_seqs_large_gpu: int  # default max_num_seqs on GPUs of 70 GiB+ other than A100
    # Bytes per sampled logit in the profiling run (max_num_seqs × vocab): V0 keeps the fp32
    # logits and their 16-bit source; V1's dummy sampler run also sorts them for top-k/top-p.
    sampler_bytes_per_logit: float
    cuda_graphs_budgeted: bool  # graph memory taken out of the budget before the KV cache
    hybrid_kv: bool  # full + sliding layers get their own KV groups (window-sized pools)
    sliding_kv: bool  # a model whose every layer slides needs only the window per request
    # added per rank at TP > 1 (NCCL, custom all-reduce buffers); None: the calibratable
    # constant nccl_buffer_bytes
    tp_non_torch_bytes: int | None
    mxfp4_hopper: str  # MoE MXFP4 kernel on sm90 without FlashInfer: "marlin" or "triton"
    source: str
    # the oldest GPU FP8 weights load on: sm90 in 0.4 ("fp8 ... Minimum capability: 90",
    # vLLM issue #4327), sm80 once FP8 Marlin runs them weight-only (PR #5975, July 2024)
    fp8_min_capability: tuple[int, int] = (8, 0)
    # non-torch memory of one GPU; None: the calibratable constant vllm_non_torch_bytes
    non_torch_bytes: int | None = None
    # refuses to start when one max_model_len request does not fit (PR #2163, first in 0.2.7;
    # before, it started and hung on such a request)
    checks_length: bool = True
    # Memory other processes hold on the GPU at start-up (`memory_in_use_bytes`): "outside" —
    # the budget is util × total whatever they hold (only this process's allocations are
    # profiled), so vLLM runs out of memory when budget + theirs > total; "counted" — the
    # profile counts every byte in use on the device as non-torch memory, so theirs comes out
    # of the KV cache; "refused" — start-up stops when free memory < util × total.
    others_memory: str = "outside"
    # PR #2031 measured peak = total - free after the profiling forward while
    # torch.distributed.all_reduce still held every input (recordStream, vLLM issue #2150):
    # 2 all-reduces per layer of max_num_batched_tokens x hidden each, until PR #2151
    allreduce_inputs_held: bool = False
    # V0 captures CUDA graphs after the KV cache, outside the budget; at TP > 1 the graph
    # all-reduce adds buffers per peer (see _V0_GRAPH_PEER)
    graph_peer_bytes: int = 0
    # Llama 4's chunked local layers get their own KV groups (chunk + max_num_batched_tokens
    # per request); when off, the hybrid manager is disabled for the model and every layer is
    # sized as full attention (vllm/config VllmConfig.__post_init__,
    # VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE)
    chunked_local_kv: bool = False
    # --gpu-memory-utilization when the user gives none (CacheConfig.gpu_memory_utilization)
    default_utilization: float = 0.9
    # every AWQ layer runs the fused awq_gemm kernel whatever the batch, so the profiling
    # forward holds its split-k partial outputs (startup.awq_split_k_bytes); from 0.3.0 a
    # batch of 256 tokens or more dequantizes the weight and uses torch.matmul instead
    awq_split_k: bool = True
    # V0's max_num_batched_tokens floor for a multimodal model when the user gives none
    # (config.py SchedulerConfig.__post_init__, _MULTIMODAL_MODEL_MAX_NUM_BATCHED_TOKENS: 4096
    # in the 0.6.0 and 0.6.2 wheels (PR #8028 of 2024-08-30), 5120 in 0.6.3's, 0.6.4's, 0.7.0's
    # and 0.8.3's); 0 before
    mm_batched_tokens: int = 0
    # What loading a 16-bit checkpoint with --quantization fp8 (online quantization) holds at
    # its peak (startup.online_quant_load_peak): "whole" — every weight at its original
    # precision before any is quantized; "both" — each layer quantized as soon as it is loaded,
    # but the 16-bit originals kept to the end of the load loop, so both copies; "streamed" —
    # created on the meta device and materialised a layer at a time (the 8-bit model)
    online_quant_peak: str = "whole"
    # the offline LLM class's defaults (UsageContext.LLM_CLASS in vllm/engine/arg_utils.py):
    # max_num_batched_tokens 8192, 16384 on the large GPUs (get_batch_defaults @v0.11.0;
    # _set_default_args_v1 @v0.8.2)
    batched_tokens_llm: int = 8192
    batched_tokens_llm_large_gpu: int = 16384
    # max_num_seqs on the other GPUs: 256 from get_batch_defaults (PR #17885); 1024 on every
    # GPU in 0.8 (_set_default_args_v1 @v0.8.2: "default_max_num_seqs = 1024")
    max_num_seqs_small_gpu: int = 256
    # 0.8 chose the large defaults by name: '"h100" in device_name or "h200" in device_name'
    # (_set_default_args_v1 @v0.8.2); from 0.9 by memory (70 GiB+, not A100)
    large_gpu_by_name: bool = False
    # the decode kernel keeps one fp32 logit per context position in shared memory, so start-up
    # refuses a max_model_len whose logits exceed the GPU's shared memory per block
    # (startup.shared_memory_refusal; vllm/worker/worker.py _check_if_can_support_max_seq_len in
    # the 0.2.0 and 0.2.1 wheels, absent from 0.1.7's and, with PagedAttention V2, from 0.2.2's)
    max_len_shared_memory: bool = False
    # a model with recurrent (Mamba / gated DeltaNet) layers refuses to start when max_num_seqs
    # exceeds the pool's blocks, one state block per decoding sequence (vllm_hybrid.
    # mamba_blocks_refusal)
    mamba_seqs_check: bool = False


_V0_SCHED = ("V0 profiles max(max_model_len, 2048) tokens in one forward without chunked "
             "prefill (vllm/engine/arg_utils.py)")
_V1_SCHED = ("vllm/engine/arg_utils.py EngineArgs.get_batch_defaults: OPENAI_API_SERVER 2048 "
             "tokens, 8192 on GPUs of 70 GiB+ other than A100 (PR #17885)")
# From 0.7 a rank at TP > 1 logs no more non-torch memory than one GPU does: 0.25 GiB in a 0.7
# TP=2 log, 0.20 GiB per rank in https://github.com/vllm-project/vllm/pull/14447 (Apr 2025,
# RTX 3090s). Before, PR #10511's dev build logged 1.79 → 3.58 GiB going from TP 1 to TP 2.
_TP_EXTRA_07 = 0
# V0 0.7 logs: 0.16 GiB (H100, vLLM PR #12126), 0.25 GiB (2 × RTX 4090, TP 2, issue #13061),
# 0.20 GiB (RTX 3090s, PR #14447): their median.
_NON_TORCH_07 = round(0.20 * 2**30)
# V1's profiling run samples max_num_seqs x vocabulary logits after the forward (startup.py
# takes the larger of the two). llm-d-benchmark's measured 0.11.0 table (H100, 1024 sequences)
# logs activation peaks of 7.38 GiB (gpt-oss-20b and -120b, vocabulary 201,088), 5.56 GiB
# (Qwen3-0.6B) and 5.64 GiB (Qwen3-32B, 151,936), 4.76 GiB (Llama-3.1-8B, 128,256): less the
# 8192 tokens' hidden states, 38.2-38.4 bytes per logit in each. (gpt-oss-120b's logs in vLLM
# issues #23278 and #27508, 7.44 and 7.55 GiB beyond the weights, agree.)
V1_SORT_SAMPLER = 38.3
# From 0.19 the profile's sampler sorts nothing: top-k/top-p run in the Triton kernel of PR
# #33538 ("Triton-based Top-k and Top-p sampler kernels", opened 2026-02-02; the PyTorch sort
# is kept only for batches under 8, as PR #48913 describes it), and the dummy run samples
# max_num_seqs rows. llm-d-planner's v0.19.0 report (accuracy/results/v0.19.0/
# accuracy_report.md @fbd68515, one H100, 1024 sequences, 8192 tokens) logs activation peaks of
# 1.89 GiB (Llama-3.1-8B, vocabulary 128,256), 2.21 (Qwen2.5-7B, 152,064; Qwen3-8B, 151,936),
# 3.62-3.66 (Gemma-2 2B/9B/27B, 256,000), 1.52 (phi-4, 100,352), 2.03 (Mistral-Small-3.1,
# 131,072) and 0.75 (Granite-3.1-2B, 49,155): less the 8192 tokens' hidden states, 14.7-15.6
# bytes per logit, median 14.9, where 0.11.0 took 38.3. 0.19.0 is the first release a log pins
# it to; the releases between 0.12 and 0.19 keep 0.11's figure.
_V1_TRITON_SAMPLER = 14.9
_V1_TRITON_SAMPLER_SINCE = (0, 19)
# V0 CUDA-graph capture at TP > 1: 2464 MiB per GPU on 4 x RTX 4090 (vLLM 0.5.4, nvidia-smi
# with and without --enforce-eager, vLLM issue #7553); less the one GPU's graphs (vllm_graphs.py:
# 35 graphs of Yi-1.5-34B's 60 layers, 480 MiB), 660 MiB for each of the 3 peers. It puts
# 8 x A10G (TP 8, 0.2.7) out of memory during capture and leaves 4 x A10G (TP 4) running (vLLM
# issue #2856).
_V0_GRAPH_PEER = 660 * 2**20
# V1 where its custom all-reduce is off (startup.graph_peer_bytes): NCCL inside the piecewise
# graphs, taken at V0's measured cost per peer. 4 x A10 (PCIe) at TP 4 on 0.8.5 runs out of
# memory with CUDA graphs and starts with --enforce-eager (vLLM issue #17469).
V1_NCCL_GRAPH_PEER = _V0_GRAPH_PEER

def _row(table: Sequence[Any], release: Any) -> Any:
    chosen = table[0]
    for row in table:
        if release >= row.since:
            chosen = row
    return chosen


_VLLM_ROWS: tuple[VLLMRules, ...] = (
    # before PR #2031 the profile took torch.cuda.max_memory_allocated(): memory outside torch
    # (CUDA context, NCCL) was not counted at all (the line PR #2031 replaced)
    VLLMRules(Release((0,)), "v0", "never", 512, 512, 256, 6.0, False, False, False,
              0, "marlin",
              f"peak = torch.cuda.max_memory_allocated() until PR #2031 (Dec 2023): no "
              f"non-torch memory; V0 worker profile_num_available_blocks; "
              f"{_V0_SCHED}; CUDA graphs captured after the KV cache, outside "
              "gpu_memory_utilization (PR #21489 description)", (9, 0),
              non_torch_bytes=0, checks_length=False),
    VLLMRules(Release((0, 2, 7)), "v0", "never", 512, 512, 256, 6.0, False, False, False,
              None, "marlin",
              "max_model_len that does not fit is refused at start-up (PR #2163, Dec 2023)",
              (9, 0)),
    VLLMRules(Release((0, 5, 2)), "v0", "never", 512, 512, 256, 6.0, False, False, False,
              None, "marlin",
              "as above; FP8 weights load on sm80+ through FP8 Marlin (PR #5975, July 2024)"),
    VLLMRules(Release((0, 5, 4)), "v0", "long-context", 512, 512, 256, 6.0, False, False, False,
              None, "marlin",
              "chunked prefill on by default past 32k tokens (PR #6666, merged 2024-07-23, after "
              "0.5.3: the 0.5.3 Llama-3.1 logs profile all 131072 tokens)"),
    VLLMRules(Release((0, 7)), "v0", "long-context", 2048, 2048, 256, 6.0, False, False, False,
              _TP_EXTRA_07, "marlin",
              "V0 still the default in 0.7 (V1 behind VLLM_USE_V1=1); non-torch 0.25 GiB per "
              "rank in a 0.7.2 TP=2 log (vLLM issue #13061)", non_torch_bytes=_NON_TORCH_07),
    VLLMRules(Release((0, 8)), "v1", "always", 2048, 8192, 1024, V1_SORT_SAMPLER, False, False, True,
              _TP_EXTRA_07, "marlin",
              "V1 default from 0.8.0; V1 serve defaults 2048 tokens (8192 on H100/H200 by name) "
              "and 1024 sequences on every GPU (vllm/engine/arg_utils.py _set_default_args_v1 "
              "@v0.8.2) until get_batch_defaults (PR #17885, 0.9); one sliding window for every "
              "layer drops blocks outside it (PR #14097); mixed full + sliding layers are all "
              "sized as full attention (vllm/v1/core/kv_cache_utils.py "
              "unify_hybrid_kv_cache_specs)", max_num_seqs_small_gpu=1024,
              large_gpu_by_name=True),
    VLLMRules(Release((0, 9)), "v1", "always", 2048, 8192, 1024, V1_SORT_SAMPLER, False, False, True,
              _TP_EXTRA_07, "marlin",
              f"{_V1_SCHED}: 8192 tokens and 1024 sequences on GPUs of 70 GiB+ from 0.9"),
    VLLMRules(Release((0, 10)), "v1", "always", 2048, 8192, 1024, V1_SORT_SAMPLER, False, True, True,
              _TP_EXTRA_07, "marlin",
              "hybrid KV cache manager: layers grouped by kind, one shared block pool "
              "(vllm/v1/core/kv_cache_utils.py _get_kv_cache_groups_uniform_page_size, "
              "2025-06); gpt-oss on H100 used Marlin MXFP4 in 0.10.1 (vLLM issue #23278 log)"),
    VLLMRules(Release((0, 12)), "v1", "always", 2048, 8192, 1024, V1_SORT_SAMPLER, False, True, True,
              _TP_EXTRA_07, "triton",
              "MXFP4 MoE on sm90 uses triton_kernels when installed (vllm/model_executor/layers/"
              "quantization/mxfp4.py get_mxfp4_backend @007d5005; 0.14.1 log 'Using Triton "
              "backend', vLLM issue #33155); Marlin through 0.11 (the Oct 2025 log in issue "
              "#27508 fits Marlin's 65.97 GiB)"),
    VLLMRules(Release((0, 21)), "v1", "always", 2048, 8192, 1024, _V1_TRITON_SAMPLER, True, True,
              True,
              _TP_EXTRA_07, "triton",
              "CUDA graph memory profiled and taken from the budget by default since v0.21.0 "
              "(opt-in VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS from PR #30515; 'default since "
              "v0.21.0' in the gpu_worker.py log quoted in gpustack/runner PR #251)"),
)


_CARRIED = ("others_memory", "allreduce_inputs_held", "chunked_local_kv", "awq_split_k",
            "default_utilization", "online_quant_peak", "mm_batched_tokens",
            "max_len_shared_memory", "sampler_bytes_per_logit", "mamba_seqs_check")
# 0.6.4 logs every process's memory beyond torch's as non-torch: 0.35 GiB on one RTX 3090 with
# nothing else on it ("non_torch_memory=0.35GiB", vLLM issue #10517, three runs)
_NON_TORCH_064 = round(0.35 * 2**30)


def _with_changes(rows: tuple[VLLMRules, ...]) -> tuple[VLLMRules, ...]:
    """The rows above plus the releases where only the accounting of all-reduce inputs,
    graph buffers or other processes' memory changed (each row: the previous release's rules
    with that change and its source)."""
    out = [replace(r, graph_peer_bytes=_V0_GRAPH_PEER) if r.engine == "v0" else r for r in rows]
    extra: tuple[tuple[tuple[int, ...], dict[str, Any], str], ...] = (
        ((0, 2, 0), dict(max_len_shared_memory=True),
         "max_model_len checked against shared memory per block at start-up (vllm/worker/"
         "worker.py _check_if_can_support_max_seq_len in the 0.2.0 and 0.2.1 wheels; vLLM issue "
         "#1267: 'cannot currently support max_model_len=65536 ... available shared memory "
         "101376')"),
        ((0, 2, 2), dict(max_len_shared_memory=False),
         "no shared-memory check of max_model_len (absent from the 0.2.2 wheel: PagedAttention "
         "V2 splits long contexts into partitions)"),
        ((0, 2, 5), dict(allreduce_inputs_held=True, others_memory="counted",
                         non_torch_bytes=None, tp_non_torch_bytes=None),
         "peak = total - free after profiling (PR #2031, Dec 2023): all-reduce inputs still "
         "held (vLLM issue #2150) and other processes' memory counted with it"),
        ((0, 2, 6), dict(allreduce_inputs_held=False),
         "all-reduce inputs freed again (PR #2151, merged 2023-12-17)"),
        ((0, 3), dict(awq_split_k=False),
         "AWQ from 256 tokens: awq_dequantize + torch.matmul (vllm/model_executor/layers/"
         "quantization/awq.py apply_weights, FP16_MATMUL_HEURISTIC_CONDITION, in the 0.3.0 "
         "wheel and not in 0.2.7's)"),
        ((0, 6), dict(mm_batched_tokens=4096),
         "V0 multimodal models batch at least 4096 tokens (PR #8028, 'Increase default "
         "max_num_batched_tokens for multimodal models', merged 2024-08-30)"),
        ((0, 6, 3), dict(mm_batched_tokens=5120),
         "V0 multimodal models batch at least 5120 tokens (config.py in the 0.6.3 wheel)"),
        ((0, 3, 1), dict(others_memory="outside"),
         "peak = free at start - free after profiling (PR #2863 'Fix memory profiling when "
         "GPU is used by multiple processes', merged 2024-02-14)"),
        ((0, 6, 4), dict(others_memory="counted", non_torch_bytes=_NON_TORCH_064),
         "non-torch memory = used after profiling - torch allocated, every process counted "
         "(PR #9352, Oct 2024; 'initial_memory_usage' in the 0.6.4.post1 logs of vLLM issues "
         "#10533, #11230)"),
        ((0, 6, 5), dict(others_memory="outside", non_torch_bytes=None, batched_tokens=2048,
                         batched_tokens_large_gpu=2048),
         "memory profiled against a baseline snapshot of this process (PR #10511, 0.6.5); "
         "chunked prefill steps of 2048 tokens instead of 512 (PR #10544, merged 2024-11-21)"),
        ((0, 8), dict(others_memory="counted"),
         "V1 gpu_worker.py determine_available_memory @0012cf69: total_allocated_bytes = "
         "total - free, so other processes' memory is non-torch (vLLM issues #17366, #17979)"),
        ((0, 9, 1), dict(others_memory="refused"),
         "V1 profiles against a baseline and checks free memory first (PR #18974, merged "
         "2025-06): 'Free memory on device ... on startup is less than desired GPU memory "
         "utilization' (vLLM issue #20305 on 0.9.1)"),
        ((0, 10), dict(chunked_local_kv=True),
         "Llama 4's chunked local layers in the hybrid KV manager (PR #19351, June 2025): "
         "ChunkedLocalAttentionSpec, cdiv(min(chunk + max_num_batched_tokens, max_model_len), "
         "block_size) blocks per request (vllm/v1/kv_cache_interface.py)"),
        ((0, 10, 1), dict(chunked_local_kv=False),
         "hybrid KV manager disabled by default with chunked local attention for a latency "
         "regression (PR #21761, merged 2025-07-28, after 0.10.0): "
         "VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE defaults to 0, every Llama 4 layer "
         "sized as full attention (unify_hybrid_kv_cache_specs)"),
        # Online FP8 through 0.12: "we load the model at original precision before quantizing
        # down to 8-bits, so you need enough memory to load the whole model" (docs/features/
        # quantization/fp8.md, quoted in PR #19967). PR #29196 ("online fp8 quant with
        # streaming weight post-processing", opened 2025-11-21) quantizes each layer once
        # loaded but "did not actually reduce peak memory, because the linear|moe weights were
        # created in bf16 and references to them were held for the entire load_weights loop"
        # (PR #31914). The release is the one vLLM issue #31273 measured: Qwen2.5-72B online
        # FP8 on one 139.72 GiB H20 loads on 0.12.0 and runs out of memory loading on 0.13.0.
        ((0, 13), dict(online_quant_peak="both"),
         "online FP8: 16-bit weights held with their quantized copies to the end of loading "
         "(PR #29196, fixed by PR #31914; vLLM issue #31273: OOM loading on 0.13.0, not 0.12.0)"),
        # PR #31914 (merged 2026-01-07) creates the weights on device meta and materialises
        # them just in time; main was already 0.14.0rc1.dev on 2025-12-26 (the version line of
        # vLLM issue #31372), so 0.14.0 is the first release with it
        ((0, 14), dict(online_quant_peak="streamed"),
         "online FP8 weights materialised a layer at a time while loading (PR #31914)"),
        # PR #38284 raised the default from 0.9 (vllm/config/cache.py @002f10e0: Field(default=
        # 0.92)); main had it by 2026-04-24 (eugr/spark-vllm-docker PR #210, quoting
        # vllm/entrypoints/llm.py @21792520), after v0.19 was cut (0.19.1rc1.dev301 on
        # 2026-04-15, vLLM issue #39734), so v0.20.0 is the first release with it
        # PR #38270 added the Mamba-block check; vLLM PR #38632 (2026-03-31) quotes it failing
        # CI on main ("introduced in https://github.com/vllm-project/vllm/pull/38270"), before
        # v0.19 was cut (main was 0.19.1rc1.dev301 on 2026-04-15, vLLM issue #39734)
        (_V1_TRITON_SAMPLER_SINCE, dict(sampler_bytes_per_logit=_V1_TRITON_SAMPLER,
                                        mamba_seqs_check=True),
         "the profile's dummy sampler filters top-k/top-p in a Triton kernel, no full sort "
         "(PR #33538): 14.9 bytes per logit in the v0.19.0 logs of llm-d-planner; hybrid "
         "models refuse max_num_seqs above the pool's blocks: 'max_num_seqs (1024) exceeds "
         "available Mamba cache blocks (600). Each decode sequence requires one Mamba cache "
         "block, so CUDA graph capture cannot proceed.' (PR #38270, quoted in PR #38632)"),
        ((0, 20), dict(default_utilization=0.92),
         "gpu_memory_utilization defaults to 0.92 (PR #38284; 'Desired GPU memory utilization "
         "is (0.92, 72.78 GiB)' without the flag in the log of vLLM PR #48601)"),
        ((0, 23), dict(chunked_local_kv=True),
         "VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE defaults to 1 (PR #29627, the "
         "metadata-build cache, per PR #46553, which names the change between 0.22 and 0.23)"),
    )
    for since, change, source in extra:
        release = Release(since)
        base = _row(out, release)
        row = replace(base, since=release, **change,
                      source=source if base.since != release else f"{base.source}; {source}")
        out = sorted([r for r in out if r.since != release] + [row], key=lambda r: r.since)
        # a change of accounting holds for the later releases too, until a later change of it
        carried = {k: v for k, v in change.items() if k in _CARRIED}
        out = [replace(r, **carried) if r.since > release else r for r in out]
    return tuple(out)


# From 0.9.1 V1 counts as non-torch only what grew since the worker's start-up snapshot, taken
# once the CUDA context exists (PR #18974: init free memory - free after profiling - torch
# allocated; PR #19312: vllm/utils MemorySnapshot, "non-torch forward increase memory"), so the
# context is outside the budget. Before, total - free - torch allocated counted the context
# too: 0.53 GiB for opt-125m on an A100 (566099456 bytes, PR #18858's print on 0.9.0 main).
_NON_TORCH_SNAPSHOT_SINCE = Release((0, 9, 1))
# 0.11.0 on one H100 (llm-d-benchmark's measured table, docs/memory_planning): 0.13 GiB for five
# models, 0.14 GiB for Qwen3-32B and Mistral-Small-3.2-24B.
_NON_TORCH_V1_SNAPSHOT = round(0.13 * 2**30)
# The same table at TP 2 on H100s (NVLink; the custom all-reduce on): 0.55 GiB (Llama-3.3-70B
# FP8) and 0.54 GiB (Qwen3-32B) per rank, 0.41 over one GPU. Where the custom all-reduce is off
# (PCIe, more than two GPUs) a rank at TP 4 logs 0.09 GiB, no more than one H100 at TP 1 (OPT-2.7B
# on 24 GB GPUs, vLLM issue #29070), so nothing is added (startup.tp_non_torch_bytes).
_TP_NON_TORCH_V1_CUSTOM_AR = round(0.41 * 2**30)
# 0.19.0 on H100s (llm-d-planner's accuracy report, accuracy/results/v0.19.0/accuracy_report.md
# @fbd68515, "Actual non-torch"): 0.25 and 0.24 GiB at TP 1 (Llama-3.1-8B, Qwen2.5-7B), 2.07
# and 2.06 at TP 2, 2.13 and 2.13 at TP 4 ("NCCL all-reduce buffers"): 1.85 GiB more per rank.
# 0.19.0 is the first release a log pins it to; the releases between keep 0.11's figures.
_NON_TORCH_V1_019 = round(0.25 * 2**30)
_TP_NON_TORCH_V1_019 = round(1.85 * 2**30)
_NON_TORCH_019_SINCE = Release((0, 19))


# (since, per GPU, more per rank at TP > 1 with the custom all-reduce, where it was measured),
# latest first
_SNAPSHOT_NON_TORCH = (
    (_NON_TORCH_019_SINCE, _NON_TORCH_V1_019, _TP_NON_TORCH_V1_019, "llm-d-planner, 0.19.0"),
    (_NON_TORCH_SNAPSHOT_SINCE, _NON_TORCH_V1_SNAPSHOT, _TP_NON_TORCH_V1_CUSTOM_AR,
     "llm-d-benchmark, 0.11.0"),
)


def _snapshot_non_torch(rows: tuple[VLLMRules, ...]) -> tuple[VLLMRules, ...]:
    """From 0.9.1, non-torch memory as the worker's start-up snapshot counts it (PR #18974),
    at the figures measured for the release."""
    out = []
    for r in rows:
        for since, one, tp_more, where in _SNAPSHOT_NON_TORCH:
            if r.since >= since:
                r = replace(r, non_torch_bytes=one, tp_non_torch_bytes=tp_more,
                            source=f"{r.source}; non-torch memory from the worker's start-up "
                            f"snapshot: {one / 2**30:.2f} GiB per GPU, {tp_more / 2**30:.2f} GiB "
                            "more per rank at TP > 1 with the custom all-reduce "
                            f"({where} on H100s)")
                break
        out.append(r)
    return tuple(out)


VLLM_TABLE: tuple[VLLMRules, ...] = _snapshot_non_torch(_with_changes(_VLLM_ROWS))


@frozen
class LlamaCppRules:
    since: Release
    swa_cache: bool  # sliding layers get their own window-sized cache (llama_kv_cache_iswa)
    flash_attn_default: bool  # -fa auto: on where the backend supports it (CUDA, Metal)
    unified_kv: bool  # one KV stream for all sequences (else one stream per sequence)
    auto_fit: bool  # -fit on: parameters the user left unset are fitted to free memory
    source: str
    # several GPUs split whole layers (-sm layer, each GPU its layers' KV); before, every
    # matrix was split by rows and the KV cache and compute buffer sat on the main GPU
    layer_split: bool = True
    # ggml's graph allocator spreads the compute buffer over several backend buffers no larger
    # than the backend's maximum (ggml-org/llama.cpp PR #15815, "allows eg. the Vulkan backend
    # to process graphs which require >4 GB"); before, the whole buffer was one allocation
    split_compute_buffer: bool = True
    # -cmoe / -ncmoe also match a fused ffn_gate_up_exps tensor; before, the pattern
    # "\\.ffn_(up|down|gate)_(ch|)exps" moved only a fused file's down experts to the host
    cpu_moe_matches_fused: bool = True
    # what a DeepSeek-style (MLA) layer caches per token: "heads" (K and V decompressed per
    # head), "latent" (the latent as K plus its first kv_lora_rank as V), "latent-k" (K only)
    mla_cache: str = "latent-k"


_LLAMACPP_ROWS: tuple[LlamaCppRules, ...] = (
    LlamaCppRules(Release((0,)), False, False, True, False,
                  "before ggml-backend multi-GPU (ggml-org/llama.cpp PR #4766) matrices split "
                  "by rows over the GPUs, the KV cache and compute buffer on the main GPU "
                  "(llama_kv_cache_init offloads k/v to the main device; 'main_gpu: for "
                  "intermediate results and KV' in the server help quoted in ollama PR #2190)",
                  layer_split=False),
    # PR #4766 "llama : ggml-backend integration", merged 2024-01 ("I have made the layer split
    # mode the default"; "the new default split_mode = layer", ollama issue #2191 of
    # 2024-01-25): about build b1840
    LlamaCppRules(Release((1840,)), False, False, True, False,
                  "before the SWA cache every layer keeps n_ctx cells (llama_kv_cache_unified); "
                  "flash attention only with -fa; -sm layer by default (PR #4766)"),
    # The iSWA cache (ggml-org/llama.cpp PR #13194, May 2025, first in build b5288) sizes the
    # sliding layers' cache from n_swa, n_seq_max and n_ubatch (src/llama-kv-cache-iswa.cpp).
    LlamaCppRules(Release((5288,)), True, False, True, False,
                  "src/llama-kv-cache-iswa.cpp @02c28f53: size_swa = GGML_PAD(min(size_base, "
                  "n_swa * (unified ? n_seq_max : 1) + n_ubatch), 256)"),
    # About build b6300 (late Aug 2025): -fa defaults to auto (common/arg.cpp; PR #15746 of
    # 2025-09-02 shows the default) and the server keeps one KV stream per slot unless
    # --kv-unified (llama_context log "kv_unified = false", ollama/ollama issue #16480).
    LlamaCppRules(Release((6300,)), True, True, False, False,
                  "flash attention auto by default; one KV stream per sequence (build about "
                  "b6300, Aug 2025)"),
    # llama_params_fit (ggml-org/llama.cpp PR #16653, merged late 2025; on by default: builds
    # b8763 log "fitting params to device memory ... reproduce them with -fit off", issue
    # #21801): layers the user did not place are fitted to free memory, MoE expert tensors
    # overflowing to the host first ("filling them front-to-back with overflow", PR #22673 log).
    LlamaCppRules(Release((7100,)), True, True, False, True,
                  "-fit on by default: unset -ngl / tensor placement fitted to free memory, "
                  "experts to the host first (PR #16653; build about b7100)"),
)
def _change(rows: Sequence[LlamaCppRules], since: Release, source: str, **after: Any
            ) -> list[LlamaCppRules]:
    """`rows` with the fields in `after` taking effect from `since` (earlier rows keep the
    value the field has on them), and a row at `since` that says why."""
    changed = [r if r.since < since else replace(r, **after) for r in rows]
    if not any(r.since == since for r in rows):
        changed.append(replace(_row(rows, since), since=since, source=source, **after))
    return sorted(changed, key=lambda r: r.since)


# PR #15815 (review until 2025-10-02) is in the llama.cpp that Ollama vendored as "Update GGML
# to b6646" on 2025-10-02 (ollama/ollama PR #12245: its ggml-alloc.c has the vbuffer chunks; the
# sync of 2025-08-14 has not): b6646 is the first build known to split compute buffers.
_SPLIT_COMPUTE_SINCE = Release((6646,))
# common/common.h LLM_FFN_EXPS_REGEX became "\\.ffn_(up|down|gate|gate_up)_(ch|)exps" in
# ggml-org/llama.cpp PR #20416 (2026-03-11, release b8301: "common : fix --n-cpu-moe, --cpu-moe
# for models with fused gate + up", which "Fixes #20431"); GGUFs with fused experts come from
# convert_hf_to_gguf.py --fuse_gate_up_exps (PR #19139, 2026-01).
_FUSED_CPU_MOE_SINCE = Release((8301,))
# DeepSeek V2/V3 in llama.cpp (PR #7519, 2024-05) cached K and V per head, decompressed:
# n_embd_k_gqa = 128 x 192 = 24576, n_embd_v_gqa = 128 x 128 = 16384 a layer for V3 (logged as
# "layer 38: n_embd_k_gqa = 24576, n_embd_v_gqa = 16384" in PR #11397, 2025-02). PR #12801
# "DeepSeek V2/V3 MLA implementation" (merged 2025-04-15; Ollama's vendored copy of 2025-04-16,
# commit 71e90e88, lacks n_embd_head_k_mla, that of 2025-04-25 has it) caches the latent as
# an MQA head: key_length 576, value_length 512. PR #19067 "kv-cache : support V-less cache"
# (2026-01-24) drops the V half ("almost x2 less memory for the KV cache"). Build numbers from
# the merge dates between known builds (b4615 on 2025-02-02, b5288 in May 2025; b7474 on
# 2025-12-18, b8284 on 2026-03-11): about b5140 and b7840. The latent cache also needs a GGUF
# converted after PR #12801; an older file keeps the per-head cache on any build.
_MLA_LATENT_SINCE = Release((5140,))
_MLA_K_ONLY_SINCE = Release((7840,))
_rows = [replace(r, split_compute_buffer=False, cpu_moe_matches_fused=False, mla_cache="heads")
         for r in _LLAMACPP_ROWS]
_rows = _change(_rows, _SPLIT_COMPUTE_SINCE, "compute buffers split over backend buffers no "
                "larger than the backend's maximum allocation (PR #15815, in b6646)",
                split_compute_buffer=True)
_rows = _change(_rows, _MLA_LATENT_SINCE, "DeepSeek's MLA layers cache the latent, K 576 and V "
                "512 a token (PR #12801, 2025-04-15, about b5140)", mla_cache="latent")
_rows = _change(_rows, _MLA_K_ONLY_SINCE, "MLA layers cache K only (V-less cache, PR #19067, "
                "2026-01-24, about b7840)", mla_cache="latent-k")
_rows = _change(_rows, _FUSED_CPU_MOE_SINCE, "-cmoe / -ncmoe match fused ffn_gate_up_exps "
                "tensors too (common/common.h LLM_FFN_EXPS_REGEX, PR #20416, in b8301)",
                cpu_moe_matches_fused=True)
LLAMACPP_TABLE: tuple[LlamaCppRules, ...] = tuple(_rows)


@frozen
class HFRules:
    """How one range of transformers releases holds a model on the device (--engine hf)."""

    since: Release
    # routed experts as fused 3-D parameters, which bitsandbytes (nn.Linear only) leaves in
    # 16 bit; before, each expert was its own nn.Linear modules and was quantized
    fused_experts: bool
    source: str
    # what from_pretrained loads without torch_dtype: torch's default float32 in 4.x (weights
    # "loaded in fp32 by default", transformers issue #36567 on 4.46); None: the checkpoint's
    # own dtype ("auto", the default from 5.0: huggingface/trl PR #5457)
    default_dtype: str | None = None
    # the prefill forward computes the logits of every prompt position and upcasts them
    # ("logits = self.lm_head(hidden_states); logits = logits.float()" in modeling_llama.py and
    # modeling_qwen2.py of the 4.31.0 and 4.44.2 wheels): compute dtype + fp32 per position
    prompt_logits: bool = False


_HF4_EXPERTS = ("transformers 4.x: MixtralSparseMoeBlock.experts is an nn.ModuleList of "
                "MixtralBlockSparseTop2MLP with w1/w2/w3 nn.Linear (models/mixtral/"
                "modeling_mixtral.py), so load_in_4bit quantizes them: Mixtral-8x7B 4-bit in about "
                "30 GB on an A6000 (https://github.com/h2oai/h2ogpt/issues/1274, transformers 4.36)")
HF_TABLE: tuple[HFRules, ...] = (
    HFRules(Release((4,)), False,
            _HF4_EXPERTS + "; before 4.45 the prefill computes every prompt position's logits "
            "and their fp32 copy (Qwen2-7B at 30,720 tokens on 4.38.2: 42.62 GiB, Qwen's speed "
            "benchmark)", "fp32", prompt_logits=True),
    HFRules(Release((4, 45)), False,
            _HF4_EXPERTS + "; from 4.45.0 generate() passes num_logits_to_keep=1 (transformers "
            "PR #31292; generation/utils.py _supports_num_logits_to_keep in the 4.45.2 wheel: "
            "Llama, Mistral, Qwen2, Gemma, Phi-3, Mixtral), so the prefill keeps the last "
            "position's logits", "fp32"),
    HFRules(Release((5,)), True,
            "transformers 5: MixtralExperts holds gate_up_proj/down_proj as 3-D nn.Parameter "
            "(@use_experts_implementation, models/mixtral/modeling_mixtral.py); checked by "
            "loading a Mixtral 4-bit with 5.23"),
)

TABLES: dict[str, tuple[VLLMRules, ...] | tuple[LlamaCppRules, ...] | tuple[HFRules, ...]] = {
    "vllm": VLLM_TABLE, "llamacpp": LLAMACPP_TABLE, "hf": HF_TABLE}
# The release an answer is for when none is named: recent ones whose rules are in the tables.
DEFAULTS: dict[str, str] = {"vllm": "0.21.0", "llamacpp": "b8763", "hf": "5.23.0"}
# what users call an engine in `--engine-version NAME==RELEASE`
_SPELLINGS = {"llamacpp": "llamacpp", "llama.cpp": "llamacpp", "llama-cpp": "llamacpp",
              "transformers": "hf", "hf": "hf", "vllm": "vllm"}
_ACCEPTED = "a release such as vllm==0.6.3, 0.10.1, llamacpp==b4000 or transformers==4.46"


@frozen
class EngineVersion:
    engine: str
    release: Release
    text: str  # as the user wrote it, normalised: "vllm==0.6.3"
    given: bool  # False when the default was used

    def to_json(self) -> str:
        return self.text


def parse_version(engine: str, value: object | None) -> EngineVersion:
    """`vllm==0.6.3`, `0.6.3`, `v0.6.3`, `llamacpp==b4000`, `b4000`; None → the default.

    `v0` / `v1` (the older option) stand for the last V0 release (0.7) and the default."""
    family = "llamacpp" if engine.startswith("llamacpp") else engine
    if family not in TABLES:
        raise InputError(f"--engine-version applies to {', '.join(TABLES)}; {engine} has no "
                         "version table.")
    given = value is not None
    if value is None:
        value = DEFAULTS[family]
    if not isinstance(value, str):
        raise InputError(f"Engine version {value!r} is not understood; give {_ACCEPTED}.")
    text = value.strip().lower()
    if family == "vllm" and text in ("v0", "v1"):
        text = "0.7.3" if text == "v0" else DEFAULTS["vllm"]
    name, sep, number = text.partition("==")
    if sep:
        named = _SPELLINGS.get(name.strip(), name)
        if named != family:
            raise InputError(f"Engine version {value!r} names {name}, but the engine is "
                             f"{family}.")
    else:
        number = text
    release = _release(family, number.strip())
    if release is None:
        raise InputError(f"Engine version {value!r} is not understood; give {_ACCEPTED}.")
    shown = f"b{release}" if family == "llamacpp" else str(release)
    label = "transformers" if family == "hf" else family
    return EngineVersion(family, release, f"{label}=={shown}", given)


def _release(family: str, number: str) -> Release | None:
    if family == "llamacpp":
        match = re.fullmatch(r"b?(\d{1,6})", number)
        return Release((int(match.group(1)),)) if match else None
    match = re.fullmatch(r"v?(\d{1,3})(?:\.(\d{1,3}))?(?:\.(\d{1,3}))?([.+-]?[a-z][\w.+-]{0,40})?", number)
    if not match:
        return None
    return Release(tuple(int(p) for p in match.groups()[:3] if p is not None))  # no suffix


def vllm_rules(version: EngineVersion) -> VLLMRules:
    return _row(VLLM_TABLE, version.release)


def llamacpp_rules(version: EngineVersion) -> LlamaCppRules:
    return _row(LLAMACPP_TABLE, version.release)


def hf_rules(version: EngineVersion) -> HFRules:
    return _row(HF_TABLE, version.release)
