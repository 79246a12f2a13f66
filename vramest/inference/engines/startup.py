"""What a serving engine prints at start-up: vLLM's KV budget and llama.cpp's buffers.

vLLM (worker memory profiling): budget = visible memory × gpu_memory_utilization; from it go
the weights, non-torch memory, the activation peak of a profiling forward over
max_num_batched_tokens tokens and (V1, unless --enforce-eager) CUDA-graph memory; what is
left becomes KV-cache blocks of block_size tokens.

llama.cpp (llama_model_load / llama_kv_cache_init / llama_init_from_model): the token
embeddings stay in host memory; offloaded layers (and the output head when every layer is
offloaded) go to the GPU buffer. Its graph allocator's compute buffer peaks either at the
attention stage or at the output stage (see `_llamacpp_compute`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.hardware.database import Device
from vramest.inference.engines.layouts import (
    capability_refusal,
    compute_capability,
    vllm_refusal,
    vllm_weights,
)
from vramest.inference.engines.versions import (
    V1_NCCL_GRAPH_PEER,
    LlamaCppRules,
    Release,
    VLLMRules,
    hf_rules,
    llamacpp_rules,
    parse_version,
    vllm_rules,
)
from vramest.inference.engines.vllm_graphs import (
    aux_stream_graphs,
    captured_graphs,
    one_gpu_graph_bytes,
)
from vramest.inference.engines.vllm_hybrid import hybrid_kv, mamba_blocks_refusal
from vramest.inference.engines.vllm_multimodal import (
    SKIP_MM_PROFILING_SINCE,
    encoder_profile,
    mllama_v0_profile,
    unmodelled_encoder_note,
    v0_encoder_profile,
)
from vramest.inference.engines.vllm_pipeline import binding_stage, stages
from vramest.inference.engines.vllm_pooling import parse_runner, served_model
from vramest.inference.engines.vllm_rope import rope_cache_bytes
from vramest.inference.engines.vllm_runner import (
    MRV2_WARMUP_BYTES_PER_LOGIT,
    mrv2_profiled_logits,
    parse_model_runner,
    warmup_refusal,
)
from vramest.inference.estimate import Estimate
from vramest.inference.memory import (
    activations_part,
    ffn_width,
    kv_bytes_per_token,
    kv_part,
    kv_widths,
    weight_bytes_by_group,
    weight_bytes_by_role,
)
from vramest.inference.placement import per_gpu_memory
from vramest.inference.serving_extras import vllm_extras
from vramest.model.precisions import (
    BITSANDBYTES_FORMATS,
    EXPERT_ROLES,
    WeightFormat,
    kv_format,
    weight_format,
)
from vramest.model.shapes import LAYER_FULL, LAYER_SLIDING, ModelShape
from vramest.units import GIB, MIB, format_bytes, parse_bytes, parse_positive_int, parse_tokens

if TYPE_CHECKING:
    from vramest.inference.engines.registry import Startup

F32 = 4


@frozen
class VLLMOptions:
    gpu_memory_utilization: float | None = None  # None: the release's default (versions)
    max_model_len: int | None = None  # default: the model's max_position_embeddings
    max_num_batched_tokens: int | None = None  # default: per version, see `_batched_tokens`
    max_num_seqs: int | None = None  # default: per version and GPU, see `_max_num_seqs`
    block_size: int = 16
    enforce_eager: bool = False
    version: str | None = None  # "vllm==0.6.3", "0.10.1"…; None: versions.DEFAULTS["vllm"]
    total_memory_bytes: int | None = None  # as torch reports it, when known
    memory_in_use_bytes: int = 0  # held on each GPU by other processes when vLLM starts
    mamba_ssm_cache_dtype: str = "auto"  # recurrent models: vllm_hybrid.SSM_DTYPE_BYTES
    mamba_cache_mode: str = "none"  # recurrent models: vllm_hybrid.STATE_BLOCKS
    runner: str = "auto"  # --runner / --task: vllm_pooling.RUNNERS
    # --data-parallel-size: the GPUs (tp, counted with --num-gpus) are dp engines of tp / dp
    # ranks each; attention and dense weights split over an engine's ranks only, the experts
    # over all dp x tp (docs.vllm.ai/en/v0.10.1.1/serving/data_parallel_deployment.html: "expert
    # layers form a (DP x TP) sized tensor parallel group", or EP of that size)
    data_parallel_size: int = 1
    # --kv-cache-memory-bytes: the KV cache pinned at this size per GPU; vLLM then skips the
    # memory profile's budget and ignores gpu_memory_utilization (v1/worker/gpu_worker.py
    # determine_available_memory: "reserved ... GiB memory for KV Cache as specified by
    # kv_cache_memory_bytes config and skipped memory profiling. This does not respect the
    # gpu_memory_utilization config"; PR #21489)
    kv_cache_memory_bytes: int | None = None
    # multimodal models (vllm_multimodal.py): --limit-mm-per-prompt as (modality, items)
    # pairs (a modality left out: the release's default; 0 turns it off), and
    # --skip-mm-profiling
    limit_mm_per_prompt: tuple[tuple[str, int], ...] | None = None
    skip_mm_profiling: bool = False
    # the image processor's max_pixels as the deployment has it (--mm-processor-kwargs
    # '{"max_pixels": N}', or an older processor config); None: the checkpoint's own
    mm_max_pixels: int | None = None
    # who builds the engine: "serve" (the OpenAI server, `vllm serve`) or "llm" (the offline
    # LLM class), whose batch defaults differ (versions.VLLMRules.batched_tokens_llm)
    entrypoint: str = "serve"
    # the model runner: "v1" (GPUModelRunner) or "v2" (VLLM_USE_V2_MODEL_RUNNER=1), whose
    # profile leaves the sampler and the CUDA graphs out of the budget (vllm_runner.py)
    model_runner: str = "v1"
    # the MoE MXFP4 kernel on Hopper: "auto" (the release's rule, versions.VLLMRules.mxfp4_hopper),
    # "marlin" or "triton". vLLM picks triton_kernels when that package is installed and Marlin
    # otherwise; the vllm/vllm-openai images ship it and a pip install does not
    mxfp4_kernel: str = "auto"
    # VLLM_ALLOW_LONG_MAX_MODEL_LEN=1: a max_model_len beyond the model's derived length
    allow_long_max_model_len: bool = False


# PR #21489 ("Allow users to specify kv cache memory size", in review 2025-07-24); the first
# release after it is taken as 0.10.1
KV_CACHE_MEMORY_BYTES_SINCE = (0, 10, 1)
MXFP4_KERNELS = ("auto", "marlin", "triton")


@frozen
class VLLMStartup:
    total_bytes: int  # per GPU, as the driver reports it
    budget_bytes: int
    weights_bytes: int
    activation_peak_bytes: int
    non_torch_bytes: int
    cuda_graph_bytes: int
    kv_cache_bytes: int
    kv_bytes_per_token: float  # every KV layer, as vLLM's "GPU KV cache size" counts tokens
    num_gpu_blocks: int
    block_size: int
    max_model_len: int
    max_num_batched_tokens: int
    version: str = ""
    request_bytes: int = 0  # KV one max_model_len request needs (vLLM's start check)
    largest_model_len: int = 0  # the longest max_model_len whose request fits
    notes: tuple[str, ...] = ()
    refusal: str = ""  # a reason vLLM stops before sizing the KV cache
    checks_length: bool = True  # the release refuses a max_model_len its KV cache cannot hold
    memory_in_use_bytes: int = 0  # other processes' memory on each GPU at start-up
    cuda_graph_capture_bytes: int = 0  # graph memory captured after the KV cache, outside it
    # models with recurrent state (vllm_hybrid.py): the pool's KV groups, and the blocks one
    # max_model_len request takes over all of them
    block_groups: int = 1
    blocks_per_request: int = 0
    # V0 with pipeline stages: one scheduler and cache engine per in-flight micro-batch
    # ("virtual engine"), each with num_gpu_blocks // pp of the blocks (vllm/worker/
    # cache_engine.py CacheEngine.__init__; worker.py raise_if_cache_size_invalid checks
    # max_model_len against block_size * (num_gpu_blocks // pipeline_parallel_size))
    virtual_engines: int = 1
    kv_pinned: bool = False  # --kv-cache-memory-bytes: the cache is that size, whatever the budget
    # with pipeline stages: each stage's weights per GPU, first to last (weights_bytes is the
    # binding stage's; a multi-node log's driver line is the first stage's)
    stage_weights_bytes: tuple[int, ...] = ()
    # the longest max_model_len the release accepts on this GPU (shared_memory_max_len); 0: any
    max_len_limit: int = 0
    # how far the KV cache may lie either side of kv_cache_bytes for a reason the estimate
    # cannot place (held_allreduce_inputs); widens the verdict's error band
    kv_spread_bytes: int = 0

    @property
    def logged_weights_bytes(self) -> int:
        """The "Model loading took" line of the driver (rank 0, in the first pipeline stage),
        the one a log shows first and a multi-node log shows alone."""
        return self.stage_weights_bytes[0] if self.stage_weights_bytes else self.weights_bytes

    @property
    def kv_cache_tokens(self) -> int:
        return self.num_gpu_blocks // self.block_groups * self.block_size

    @property
    def request_token_limit(self) -> int:
        """The longest request one scheduler can hold: vLLM's "maximum number of tokens that
        can be stored in KV cache" (all of it, but for V0's pipeline virtual engines)."""
        return self.num_gpu_blocks // self.virtual_engines // self.block_groups * self.block_size

    @property
    def max_concurrency(self) -> float:
        if self.blocks_per_request:
            return self.num_gpu_blocks / self.blocks_per_request
        if self.request_bytes and self.kv_bytes_per_token:
            needed = self.request_bytes / self.kv_bytes_per_token  # tokens-equivalent
            if needed < self.max_model_len:  # sliding layers need less than the whole length
                return self.kv_cache_tokens / needed
        return self.kv_cache_tokens / self.max_model_len

    @property
    def starts(self) -> bool:
        if self.refusal:
            return False
        if not self.checks_length:
            return self.num_gpu_blocks > 0
        if self.request_bytes:
            return self.kv_cache_bytes // self.virtual_engines >= self.request_bytes
        return self.request_token_limit >= self.max_model_len

    def to_json(self) -> dict[str, object]:
        return {"name": "vllm", "version": self.version,
                "total_gpu_memory_bytes": self.total_bytes,
                "budget_bytes": self.budget_bytes, "weights_bytes": self.weights_bytes,
                "activation_peak_bytes": self.activation_peak_bytes,
                "non_torch_bytes": self.non_torch_bytes,
                "cuda_graph_bytes": self.cuda_graph_bytes,
                "kv_cache_bytes": self.kv_cache_bytes, "kv_cache_tokens": self.kv_cache_tokens,
                "num_gpu_blocks": self.num_gpu_blocks,
                "request_token_limit": self.request_token_limit,
                "max_concurrency": round(self.max_concurrency, 2),
                "max_model_len": self.max_model_len, "request_kv_bytes": self.request_bytes,
                "max_num_batched_tokens": self.max_num_batched_tokens, "starts": self.starts,
                "memory_in_use_bytes": self.memory_in_use_bytes,
                "cuda_graph_capture_bytes": self.cuda_graph_capture_bytes,
                "stage_weights_bytes": list(self.stage_weights_bytes),
                "refusal": self.refusal, "notes": list(self.notes)}

    def log_lines(self) -> list[str]:
        gib = 1 / GIB
        lines = [
            f"vLLM {self.version.removeprefix('vllm==')} rules (--engine-version to change)",
            f"Model loading took {self.logged_weights_bytes * gib:.4f} GiB",
            f"Memory profiling: total_gpu_memory={self.total_bytes * gib:.2f}GiB; budget "
            f"{self.budget_bytes * gib:.2f}GiB; weights {self.weights_bytes * gib:.2f}GiB; "
            f"non_torch {self.non_torch_bytes * gib:.2f}GiB; activation peak "
            f"{self.activation_peak_bytes * gib:.2f}GiB; CUDA graphs "
            f"{self.cuda_graph_bytes * gib:.2f}GiB; KV cache {self.kv_cache_bytes * gib:.2f}GiB",
            f"# GPU blocks: {self.num_gpu_blocks}",
            f"GPU KV cache size: {self.kv_cache_tokens:,} tokens",
            f"Maximum concurrency for {self.max_model_len:,} tokens per request: "
            f"{self.max_concurrency:.2f}x",
            *self.notes,
        ]
        if self.virtual_engines > 1:
            lines.append(f"V0 splits the blocks over {self.virtual_engines} pipeline virtual "
                         f"engines: one request holds at most {self.request_token_limit:,} "
                         "tokens.")
        if self.refusal:
            lines.append(self.refusal)
        elif not self.starts:
            lines.append(f"vLLM would refuse to start: one {self.max_model_len}-token request "
                         f"needs {self.request_bytes * gib:.2f} GiB of KV cache, "
                         f"{self.kv_cache_bytes // self.virtual_engines * gib:.2f} GiB is "
                         "available to one request; the largest "
                         f"max_model_len that starts is {self.largest_model_len}.")
        return lines


def engine_dtype(engine: str, native_format: str | None, family: str) -> str | None:
    """The precision an engine runs a checkpoint in when no --dtype is given, where it is not
    the checkpoint's own: vLLM's dtype "auto" runs a float32 checkpoint in float16, Gemma in
    bfloat16 (vllm/config.py _get_and_verify_dtype: "Following the common practice, we use
    float16 for float32 models"; "For Gemma 2 and 3, we downcast float32 to bfloat16")."""
    if engine_family(engine) != "vllm" or native_format != "fp32":
        return None
    return "bf16" if family.startswith("gemma") else "fp16"


def _batched_tokens(options: VLLMOptions, max_model_len: int, rules: VLLMRules,
                    device: Device, multimodal: bool = False) -> int:
    """Tokens of the profiling forward: the scheduler's max_num_batched_tokens."""
    if options.max_num_batched_tokens:
        return options.max_num_batched_tokens
    # V0 keeps multimodal models unchunked (PR #8425, "Disable chunked prefill by default ...
    # for multimodal models", Sept 2024)
    if rules.chunked_prefill == "never" or (rules.chunked_prefill == "long-context" and (
            max_model_len <= 32768 or multimodal)):  # V0: one whole prompt per forward
        return max(max_model_len, 2048, rules.mm_batched_tokens if multimodal else 0)
    if rules.chunked_prefill == "long-context":
        return rules.batched_tokens
    if options.entrypoint == "llm":
        return (rules.batched_tokens_llm_large_gpu if _large_gpu(device, rules)
                else rules.batched_tokens_llm)
    return rules.batched_tokens_large_gpu if _large_gpu(device, rules) else rules.batched_tokens


def _large_gpu(device: Device, rules: VLLMRules | None = None) -> bool:
    """vllm/engine/arg_utils.py get_batch_defaults: larger defaults on 70 GiB+ GPUs but A100;
    before it (0.8), on GPUs whose name says H100 or H200 (rules.large_gpu_by_name)."""
    name = device.name.lower()
    if rules is not None and rules.large_gpu_by_name:
        return "h100" in name or "h200" in name
    return device.memory_bytes >= 70 * GIB and "a100" not in name


# vLLM before 0.3.0 passes AWQ's pack factor (8) as awq_gemm's split_k_iters (model_executor/
# layers/quantization/awq.py apply_weights in the 0.2.7 wheel); the kernel writes that many
# partial outputs and sums them (csrc/quantization/awq/gemm_kernels.cu awq_gemm
# @03d9d8e7: torch::empty({split_k_iters, M, OC}) ... return _out_feats.sum(0))
AWQ_SPLIT_K = 8


def awq_split_k_bytes(shape: ModelShape, tp: int, tokens: int, compute_bytes: float) -> int:
    """The widest AWQ layer's split-k partial outputs in the profiling forward: gate and up
    as one layer (2 x intermediate / tp, llama.py gate_up_proj); a Mixtral expert whole on its
    rank (0.2.x mixtral.py splits the experts over the ranks, not their weights)."""
    widest = (shape.moe_intermediate_size if shape.is_moe
              else 2 * shape.intermediate_size / tp)
    return round(AWQ_SPLIT_K * tokens * widest * compute_bytes)


def awq_profile_resident_bytes(shape: ModelShape, tp: int, tokens: int,
                               compute_bytes: float, weights: int) -> int:
    """What the GPU holds at the MLP of the first layer of the profiling forward on releases
    whose every AWQ layer runs awq_gemm with split-k partials (dense models): torch's caching
    allocator hands the freed QKV partials' segment to the next smaller tensors (the attention
    output, the residual, the normed input: "the smallest cached block that will fit", split),
    so the segment stays in use and cannot be released; the gate/up partials, larger, then need
    a segment of their own (c10/cuda/CUDACachingAllocator.cpp @001074d2, its header: a failed
    cudaMalloc frees only cached blocks "that are not split"). vLLM's own peak
    (max_memory_allocated) counts the live tensors, not the pinned segment, so its KV budget
    allows for it no more than before PR #2031 it allowed for the CUDA context. Before layer 0
    the embedding output and the first norm's output hold segments of their own."""
    qkv = (shape.num_heads + 2 * shape.num_kv_heads) * shape.head_dim / tp
    gate_up = 2 * shape.intermediate_size / tp
    partials = AWQ_SPLIT_K * tokens * (qkv + gate_up) * compute_bytes
    return round(weights + partials + 2 * tokens * shape.hidden_size * compute_bytes)


def vllm_startup(est: Estimate, device: Device, tp: int = 1,
                 options: VLLMOptions | None = None, pp: int = 1) -> VLLMStartup:
    """One GPU's start-up figures; with `pp` pipeline stages each GPU holds 1/pp of the layers,
    their weights and their KV cache (--pipeline-parallel-size), the tensor split inside."""
    options = options or VLLMOptions()
    version = parse_version("vllm", options.version)
    rules = vllm_rules(version)
    c = est.constants
    util = (rules.default_utilization if options.gpu_memory_utilization is None
            else options.gpu_memory_utilization)
    if not 0 < util <= 1:
        raise InputError("--gpu-memory-utilization must be above 0 and at most 1.")
    served = served_model(est.model.shape, options.runner)
    shape = served.shape
    if shape.architecture != "decoder":
        raise InputError(f"--engine vllm does not yet emulate vLLM's start-up for "
                         f"{shape.architecture} models; the estimate without --engine holds.")
    if shape.state_layers and not rules.hybrid_kv:
        raise InputError(f"--engine vllm models recurrent state from vLLM 0.10 on (V1's shared "
                         f"block pool, PR #20016); {version.text} keeps it in a separate Mamba "
                         "cache that is not modelled: give --engine-version vllm==0.10 or later.")
    # vLLM's default max_model_len: the config's length, times a RoPE scaling factor
    max_model_len = (options.max_model_len or shape.scaled_context or shape.max_context
                     or est.settings.ctx)
    tokens = _batched_tokens(options, max_model_len, rules, device, shape.extra_params > 0)
    total = options.total_memory_bytes or device.reported_total_bytes(c.visible_memory_fraction)
    budget = round(total * util)
    os_share = bool(device.os_in_use_bytes and not options.memory_in_use_bytes)
    if os_share:  # unified memory: what the OS holds at start is in use, as others' memory is
        options = replace(options, memory_in_use_bytes=device.os_in_use_bytes)
    if options.memory_in_use_bytes >= total:
        raise InputError(f"--gpu-memory-in-use {format_bytes(options.memory_in_use_bytes)} is all "
                         f"of the GPU's {format_bytes(total)} or more; give what other processes "
                         "hold, less than the GPU's memory.")
    dp = options.data_parallel_size
    if dp < 1 or tp % dp:
        raise InputError(f"--data-parallel-size {dp} does not divide the {tp} GPUs of a pipeline "
                         "stage; give a divisor of --num-gpus / --pp.")
    experts_tp, tp = tp, tp // dp  # the experts over every GPU, the rest over an engine's
    fmt = weight_format(est.settings.dtype)
    groups = weight_bytes_by_group(est.model.shape, fmt)
    scale = est.memory.weights.bytes / (sum(groups.values()) or 1.0)
    per_gpu = per_gpu_memory(est, tp, pp)
    loaded = per_gpu.weights - (groups["lm_head"] * scale / (tp * pp) if served.pooling else 0)
    loaded -= groups["experts"] * scale / pp * (1 / tp - 1 / experts_tp)
    # the vocabulary splits over an engine's ranks; the experts' share is theirs over all
    layout = vllm_weights(shape, fmt.name, device, tp, round(loaded),
                          groups["experts"] * scale / pp * tp / experts_tp,
                          rules.mxfp4_hopper if options.mxfp4_kernel == "auto"
                          else options.mxfp4_kernel,
                          pp)
    compute_bytes = fmt.compute_bytes
    per_token = (c.activation_ffn_factor * ffn_width(shape) / tp
                 + c.vllm_activation_hidden_factor * shape.hidden_size) * compute_bytes
    # the profiling run also samples max_num_seqs sequences over the whole vocabulary; the
    # logits are gathered whole before sampling, so TP does not split them
    seqs = options.max_num_seqs or (rules.max_num_seqs_large_gpu if _large_gpu(device, rules)
                                    else rules.max_num_seqs_small_gpu)
    sampler = 0 if served.pooling else seqs * shape.vocab_size * rules.sampler_bytes_per_logit
    runner_v2 = options.model_runner == "v2"
    if runner_v2 and rules.engine != "v1":
        raise InputError(f"The model runner v2 is a V1-engine runner; {version.text} runs V0. "
                         "Give --engine-version vllm==0.8 or later, or leave the runner out.")
    # MRV2's profile computes the logits (compute dtype) but samples nothing: the sampler's
    # buffers come at the warm-up, after the KV cache (vllm_runner.py), at the sort-based cost
    # per logit whatever the release (its warm-up filters top-k/top-p in FlashInfer, not in
    # MRv1's Triton kernel: vllm_runner.MRV2_WARMUP_BYTES_PER_LOGIT)
    warmup = 0 if served.pooling or not runner_v2 else \
        round(seqs * shape.vocab_size * MRV2_WARMUP_BYTES_PER_LOGIT)
    profiled = mrv2_profiled_logits(seqs, shape.vocab_size, compute_bytes) if runner_v2 \
        else sampler
    activation = round(tokens * per_token + (0 if served.pooling else profiled))
    if rules.engine == "v1" and not runner_v2 and not served.pooling:
        # V1's profile_run samples after the forward has returned: its intermediates are free
        # again and only the hidden states stay (gpu_model_runner.py profile_run @v0.11.0)
        activation = max(round(tokens * per_token),
                         round(tokens * shape.hidden_size * compute_bytes + profiled))
    if options.skip_mm_profiling and version.release < SKIP_MM_PROFILING_SINCE:
        raise InputError(f"--skip-mm-profiling is not in vLLM {version.release}; it came in 0.10.1 "
                         "(use --limit-mm-per-prompt 0 to leave the multimodal profile out).")
    config = _model_config(est)
    encoder = None if options.skip_mm_profiling else encoder_profile(
        config, rules, version.release, text_hidden=shape.hidden_size,
        max_model_len=max_model_len, batched_tokens=tokens, max_num_seqs=seqs, tp=tp,
        act_bytes=compute_bytes, limits=options.limit_mm_per_prompt,
        max_pixels=options.mm_max_pixels, constants=c)
    if encoder is None and not options.skip_mm_profiling:
        encoder = mllama_v0_profile(config, rules, version.release,
                                    text_hidden=shape.hidden_size, max_num_seqs=seqs, tp=tp,
                                    act_bytes=compute_bytes,
                                    limits=options.limit_mm_per_prompt)
    if encoder is None and not options.skip_mm_profiling:
        encoder = v0_encoder_profile(config, rules, version.release,
                                     text_hidden=shape.hidden_size, batched_tokens=tokens,
                                     max_num_seqs=seqs, tp=tp, act_bytes=compute_bytes,
                                     limits=options.limit_mm_per_prompt, constants=c)
        if encoder is not None and not served.pooling:  # V0 samples only those sequences
            sampler = encoder.v0_sequences * shape.vocab_size * rules.sampler_bytes_per_logit
            activation = round(tokens * per_token + sampler)
    if encoder is not None:
        activation = encoder.peak(activation)
    unmodelled = unmodelled_encoder_note(config, rules, options.skip_mm_profiling,
                                         options.limit_mm_per_prompt, encoder)
    if rules.awq_split_k and fmt.name == "awq-int4":
        activation += awq_split_k_bytes(shape, tp, tokens, compute_bytes)
    tp_extra = tp_non_torch_bytes(rules, c.nccl_buffer_bytes, experts_tp, device)
    one_gpu = c.vllm_non_torch_bytes if rules.non_torch_bytes is None else rules.non_torch_bytes
    non_torch = one_gpu + (tp_extra if experts_tp > 1 else 0)
    if rules.others_memory == "counted":
        non_torch += options.memory_in_use_bytes
    # 2 all-reduces per layer, inputs kept until the caching allocator reclaims them
    held_inputs = round(2 * shape.num_layers * tokens * shape.hidden_size * compute_bytes) \
        if rules.allreduce_inputs_held and tp > 1 else 0
    # the graphs of the release's capture sizes over this GPU's layers (vllm_graphs.py); from
    # 0.21 the profiler captures them before sizing the KV cache: their NCCL too
    # chunked local attention has no full graphs (ChunkedLocalAttentionBuilder
    # get_cudagraph_support: NEVER; Llama-4-Scout's 0.19.0 log: "PIECEWISE=51", no FULL)
    piecewise_only = served.pooling or shape.chunked_attention
    shared_expert_layers = sum(shape.is_moe_layer(i) for i in range(shape.num_layers)) \
        if shape.is_moe and shape.shared_experts else 0
    one_gpu_graphs = one_gpu_graph_bytes(
        c, captured_graphs(rules.engine, version.release.parts, seqs, tokens, pp,
                           piecewise_only), shape.num_layers / pp,
        aux_stream_graphs(rules.engine, version.release.parts, seqs, tokens, piecewise_only),
        shared_expert_layers / pp)
    graphs = one_gpu_graphs + graph_peer_bytes(rules, tp, device) \
        if rules.cuda_graphs_budgeted and not options.enforce_eager and not runner_v2 else 0
    lora_tp, draft_kv = vllm_extras(est, tp)  # LoRA slots' TP layout; a proposer's KV
    # V0 builds the RoPE cos/sin caches with the model (vllm_rope.py), whole on every rank
    rope = rope_cache_bytes(config, shape, version.release, compute_bytes) \
        if rules.engine == "v0" else 0
    weights_bytes = layout.weights_bytes + lora_tp + rope
    held, kv_spread, held_note = held_allreduce_inputs(
        held_inputs, total - weights_bytes - non_torch - activation - graphs)
    activation += held
    kv_token = kv_bytes_per_token(shape, kv_format(est.settings.kv_dtype).bytes_per_element)
    kv_token += draft_kv  # the proposer's layers keep their KV in the same blocks
    per_token_gpu = kv_token * _kv_share(shape, tp) / pp
    stage_note, stage_weights = "", (weights_bytes,) * pp
    if pp > 1 and not shape.state_layers:  # each stage its own layers; the fullest binds
        binding = binding_stage(
            stages(est.model.shape, fmt, pp, tp, experts_tp, version.release, scale=scale,
                   pooling=served.pooling, kinds=shape.kinds()), budget=budget,
            weights=weights_bytes, activation=activation,
            sampler=0 if served.pooling else round(profiled), fixed=non_torch + graphs,
            kv_token_gpu=kv_token * _kv_share(shape, tp), block_size=options.block_size)
        weights_bytes, activation = binding.weights_bytes, binding.activation_bytes
        per_token_gpu, stage_weights = binding.kv_bytes_per_token, binding.stage_weights_bytes
        stage_note = binding.note(shape.num_layers)
    kv_bytes = budget - weights_bytes - non_torch - activation - graphs
    pinned = options.kv_cache_memory_bytes
    if pinned is not None:
        if version.release.parts < KV_CACHE_MEMORY_BYTES_SINCE:
            raise InputError(f"--kv-cache-memory-bytes is from vLLM 0.10.1 on (PR #21489); "
                             f"{version.text} sizes the KV cache from --gpu-memory-utilization.")
        # the whole card less what others hold is the limit; the profile's peak still happens
        budget = total - options.memory_in_use_bytes
        kv_bytes = pinned
    block = per_token_gpu * options.block_size
    blocks = max(0, int(kv_bytes // block)) if block else 0
    request = _vllm_request_tokens(shape, rules, options.block_size, tokens)
    layers = _kv_layers(shape)

    def attention_request(length: int) -> int:
        return round(request(length) * per_token_gpu / layers) if layers else 0

    request_bytes: Callable[[int], int] = attention_request
    block_size, kv_groups, per_request = options.block_size, 1, 0
    pool_notes: tuple[str, ...] = ()
    hybrid_attention = 0  # attention layers sharing the pool with recurrent ones
    if shape.state_layers:  # one pool of attention blocks and padded states
        pools = hybrid_kv(shape, compute_bytes, per_token_gpu / max(1, layers), tp,
                          options.block_size, max_model_len, options.mamba_ssm_cache_dtype,
                          options.mamba_cache_mode)
        blocks = pools.num_blocks(max(0, kv_bytes))
        request_bytes = pools.request_bytes
        block_size, kv_groups, pool_notes = pools.block_size, pools.groups, pools.notes()
        per_request = pools.blocks_per_request(max_model_len)
        hybrid_attention = pools.attention_layers
    needed = request_bytes(max_model_len)
    engines = pp if rules.engine == "v0" else 1  # V0 splits the blocks over virtual engines
    largest = _largest_len(request_bytes, max(0, kv_bytes) // engines, max_model_len)
    notes = [n for n in (served.note, encoder.note() if encoder else unmodelled, *pool_notes,
                         layout.note, stage_note, held_note, _vllm_window_note(shape, rules),
                         _others_note(rules, options.memory_in_use_bytes, os_share)) if n]
    capture = _graph_capture_bytes(one_gpu_graphs, rules, options, tp, device)
    if runner_v2:
        notes.append(f"Model runner v2: the sampler's warm-up ({format_bytes(warmup)}) and the "
                     f"CUDA graphs ({format_bytes(capture)}) come after the KV cache, outside "
                     "--gpu-memory-utilization (vLLM PRs #48601, #57926).")
    if pinned is not None:
        notes.append(f"--kv-cache-memory-bytes pins the KV cache at {format_bytes(pinned)} per "
                     "GPU: vLLM skips the memory profile's budget and ignores "
                     "--gpu-memory-utilization, so the weights, the pinned cache and the "
                     "profile's activation peak must fit the whole card (vLLM does not check "
                     "it at start-up; a cache too large runs out of memory under load).")
    loading = online_quant_load_peak(est, rules, layout.weights_bytes)
    if loading:
        notes.append(f"FP8 of a 16-bit checkpoint is quantized while loading (--quantization "
                     f"fp8): {version.text} holds {format_bytes(loading)} of weights per GPU at "
                     "the peak (name the -FP8 checkpoint if it is pre-quantized).")
    refusal = (capability_refusal(fmt.name, device, rules.fp8_min_capability)
               or vllm_refusal(shape, fmt.name, tp)
               or _loading_refusal(loading, one_gpu, total, options.memory_in_use_bytes,
                                   version.text)
               or _memory_refusal(rules, total, budget, options.memory_in_use_bytes,
                                  activation, capture, warmup)
               or _awq_profile_refusal(rules, fmt.name, shape, tp, tokens, compute_bytes,
                                       weights_bytes, c.vllm_non_torch_bytes, total,
                                       options.memory_in_use_bytes)
               or shared_memory_refusal(rules, device, max_model_len, options.block_size,
                                        shape.sliding_window)
               or mamba_blocks_refusal(rules.mamba_seqs_check, hybrid_attention,
                                       options.enforce_eager, seqs, blocks)
               or long_max_model_len_refusal(version.release, max_model_len, shape,
                                             options.allow_long_max_model_len))
    return VLLMStartup(total_bytes=total, budget_bytes=budget, weights_bytes=weights_bytes,
                       activation_peak_bytes=activation, non_torch_bytes=non_torch,
                       cuda_graph_bytes=graphs, kv_cache_bytes=max(0, kv_bytes),
                       kv_bytes_per_token=per_token_gpu, num_gpu_blocks=blocks,
                       block_size=block_size, max_model_len=max_model_len,
                       max_num_batched_tokens=tokens, version=version.text,
                       request_bytes=needed, largest_model_len=largest, notes=tuple(notes),
                       checks_length=rules.checks_length, refusal=refusal,
                       memory_in_use_bytes=options.memory_in_use_bytes,
                       cuda_graph_capture_bytes=capture, block_groups=kv_groups,
                       blocks_per_request=per_request, virtual_engines=engines,
                       kv_pinned=pinned is not None, kv_spread_bytes=kv_spread,
                       max_len_limit=shared_memory_max_len(rules, device, options.block_size),
                       stage_weights_bytes=stage_weights if pp > 1 else ())


def _model_config(est: Estimate) -> dict[str, object]:
    """The catalog config of the model (a multimodal model's vision settings), or its family
    alone where the catalog has none."""
    from vramest.model.catalog import default_catalog

    entry = default_catalog().get(est.model.name)
    config = dict(entry.config) if entry is not None else {}
    if entry is None and est.model.source != "params":  # a config.json, folder or file read
        from vramest.model.vision import model_config

        with contextlib.suppress(InputError, OSError):
            config = dict(model_config(est.model.origin))
    config.setdefault("model_type", est.model.shape.family)
    return config


# checkpoint precisions vLLM quantizes to FP8 as it loads them with --quantization fp8; a
# float32 checkpoint is loaded into 16-bit parameters (dtype "auto", see engine_dtype)
_ONLINE_FP8_SOURCES = ("bf16", "fp16", "fp32")


def online_quant_load_peak(est: Estimate, rules: VLLMRules, loaded: int) -> int:
    """Weight bytes one GPU holds at the peak of loading a 16-bit checkpoint that vLLM
    quantizes to FP8 on the fly (0: not online quantization, or a release that streams it).
    Embeddings and lm_head stay 16-bit; the linear and expert layers are what gets quantized.
    `loaded`: the FP8 weights this GPU ends up with (its share of the parallel layout)."""
    native = est.model.native_format or "bf16"
    if (weight_format(est.settings.dtype).name != "fp8" or native not in _ONLINE_FP8_SOURCES
            or rules.online_quant_peak == "streamed"):
        return 0
    shape = est.model.shape
    quantized = weight_bytes_by_group(shape, weight_format("fp8"))
    peak = sum(weight_bytes_by_group(shape, weight_format("bf16")).values())
    if rules.online_quant_peak == "both":
        peak += quantized["layers"] + quantized["experts"]
    return round(loaded * peak / (sum(quantized.values()) or 1.0))


def _loading_refusal(peak: int, non_torch: int, total: int, in_use: int, version: str) -> str:
    if not peak or peak + non_torch + in_use <= total:
        return ""
    return (f"CUDA out of memory while loading: {version} quantizes the 16-bit checkpoint to FP8 "
            f"as it loads it and holds {format_bytes(peak)} of weights per GPU at the peak, "
            f"more than the GPU's {format_bytes(total - in_use - non_torch)} free; use a "
            "pre-quantized FP8 checkpoint, more GPUs, or vLLM 0.14 or later (PR #31914).")


def _graph_capture_bytes(one_gpu: int, rules: VLLMRules, options: VLLMOptions, tp: int,
                         device: Device) -> int:
    """CUDA-graph memory captured after the KV cache took the budget (releases that do not
    budget graphs, and MRV2): the one-GPU figure, plus the graph all-reduce buffers of each
    peer."""
    if options.enforce_eager or (rules.cuda_graphs_budgeted and options.model_runner != "v2"):
        return 0
    return one_gpu + graph_peer_bytes(rules, tp, device)


# vllm/distributed/device_communicators/custom_all_reduce.py (CustomAllreduce.__init__): the
# custom kernel runs on 2, 4, 6 or 8 ranks, and on more than two only when NVLink connects every
# pair ("Custom allreduce is disabled because it's not supported on more than two PCIe-only
# GPUs"; a consumer card's NVLink bridge joins two); otherwise the all-reduce in each captured
# graph is NCCL's
CUSTOM_ALLREDUCE_WORLD_SIZES = (2, 4, 6, 8)


def custom_allreduce(tp: int, device: Device) -> bool:
    """Whether vLLM's custom all-reduce runs: its world sizes, two GPUs or a full NVLink mesh."""
    link = device.interconnect_name or ""
    full_mesh = "NVLink" in link and "bridge" not in link
    return tp in CUSTOM_ALLREDUCE_WORLD_SIZES and (tp == 2 or full_mesh)


def tp_non_torch_bytes(rules: VLLMRules, nccl_buffer_bytes: int, tp: int, device: Device) -> int:
    """Non-torch memory a rank adds at TP > 1. V1 from the start-up snapshot (0.9.1) adds it
    only with the custom all-reduce (versions._TP_NON_TORCH_V1_CUSTOM_AR); without, a rank
    logs no more than one GPU does."""
    if tp < 2:
        return 0
    if rules.tp_non_torch_bytes is None:
        return nccl_buffer_bytes
    if rules.engine == "v1" and not custom_allreduce(tp, device):
        return 0
    return rules.tp_non_torch_bytes


def graph_peer_bytes(rules: VLLMRules, tp: int, device: Device) -> int:
    """What the graphs' all-reduces add per GPU: V0's measured NCCL buffers per peer at any TP
    (versions._V0_GRAPH_PEER); in V1 the same per peer where the custom all-reduce is off and
    NCCL runs inside the graphs (assumed to cost what V0's NCCL graphs did)."""
    if tp < 2:
        return 0
    if rules.engine == "v0":
        return (tp - 1) * rules.graph_peer_bytes
    return 0 if custom_allreduce(tp, device) else (tp - 1) * V1_NCCL_GRAPH_PEER


# cudaDevAttrMaxSharedMemoryPerBlockOptin by compute capability, what vLLM 0.2.0-0.2.1 read
# (vllm/utils.py get_max_shared_memory_bytes): "Maximum amount of shared memory per thread
# block" in the CUDA C++ Programming Guide's table of technical specifications per compute
# capability (48, 96, 64, 163, 99, 99 and 227 KB); 101376 on sm89 in vLLM issue #1267's log
SHARED_MEMORY_PER_BLOCK = {(6, 0): 49152, (6, 1): 49152, (7, 0): 98304, (7, 5): 65536,
                           (8, 0): 166912, (8, 6): 101376, (8, 9): 101376, (9, 0): 232448}


def shared_memory_max_len(rules: VLLMRules, device: Device, block_size: int) -> int:
    """The longest max_model_len vLLM 0.2.0-0.2.1 accept on this GPU; 0 where no limit holds.
    vllm/worker/worker.py _check_if_can_support_max_seq_len refuses, after sizing the KV cache,
    when '(max_seq_len + block_size - 1) / block_size * block_size' (a float) times 4 bytes (one
    fp32 logit per position) exceeds the GPU's shared memory per block."""
    available = SHARED_MEMORY_PER_BLOCK.get(compute_capability(device)) \
        if rules.max_len_shared_memory else None
    return 0 if available is None else available // 4 - block_size + 1


# The refusal is logged from March 2024 (vLLM issue #3676: "ValueError: User-specified
# max_model_len (131072) is greater than the derived max_model_len (None=8192 in model's
# config.json)"; PR #972, 0.2.0, had only warned); 0.4.0 is the first release taken to have it.
# VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 turns it back into a warning from PR #7080 (Aug 2024).
LONG_MAX_MODEL_LEN_REFUSED_SINCE = Release((0, 4))


def long_max_model_len_refusal(release: Release, max_model_len: int, shape: ModelShape,
                               allowed: bool) -> str:
    """vLLM's refusal of a max_model_len beyond the model's derived length: the config's
    max_position_embeddings, times the RoPE scaling factor where it scales (vllm/config.py
    _get_and_verify_max_len: "User-specified max_model_len (...) is greater than the derived
    max_model_len (...)"), unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 is set."""
    derived = shape.scaled_context or shape.max_context
    if allowed or not derived or max_model_len <= derived or \
            release < LONG_MAX_MODEL_LEN_REFUSED_SINCE:
        return ""
    return (f"vLLM refuses to start: max_model_len {max_model_len} is greater than the model's "
            f"derived max_model_len {derived} (max_position_embeddings"
            + (" times its RoPE scaling factor" if shape.scaled_context else "")
            + f"); give --max-model-len {derived} or less, or set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 "
            "(--allow-long-max-model-len) for a model whose RoPE extends.")


def shared_memory_refusal(rules: VLLMRules, device: Device, max_model_len: int,
                          block_size: int, sliding_window: int | None = None) -> str:
    """vLLM's words for that refusal; a sliding window shorter than max_model_len is what the
    release checks instead."""
    limit = shared_memory_max_len(rules, device, block_size)
    length = min(max_model_len, sliding_window) if sliding_window else max_model_len
    if not limit or length <= limit:
        return ""
    padded = (length + block_size - 1) / block_size * block_size
    return (f"vLLM cannot currently support max_model_len={length} with block_size="
            f"{block_size} on GPU with compute capability {compute_capability(device)} "
            f"(required shared memory {(padded + 512) * 4} > available shared memory "
            f"{SHARED_MEMORY_PER_BLOCK[compute_capability(device)]}): this release keeps one "
            f"fp32 logit per position in shared memory (a RoPE scaling factor multiplies the "
            "config's length).")


def held_allreduce_inputs(full: int, room: int) -> tuple[int, int, str]:
    """What 0.2.5's profile holds of the all-reduce inputs at TP > 1 (vLLM issue #2150: they are
    recorded on NCCL's stream and not reused), as (held, spread, note). Held inputs are cached,
    not allocated: when cudaMalloc fails the caching allocator synchronizes their events and
    frees them before it retries (c10/cuda/CUDACachingAllocator.cpp release_cached_blocks:
    synchronize_and_free_events, then release_blocks), so they never exceed the `room` the GPU
    has beside the weights, non-torch memory and the forward's own peak. Within the room all
    stay reserved when vLLM reads total - free (PR #2031's 20865 blocks at TP 4); beyond it,
    what is left is what accumulated since the last reclaim, anywhere from nothing to the room
    (vLLM issue #2136: 112 blocks, where holding them all leaves none): half the room, with
    half the room of spread either side."""
    if full <= 0 or full <= room or room <= 0:
        return full, 0, ""
    half = room // 2
    return half, half, (f"vLLM 0.2.5 at TP > 1 keeps the profile's all-reduce inputs cached "
                        f"({format_bytes(full)} in all, vLLM issue #2150), more than the GPU has "
                        f"room for ({format_bytes(room)}): the allocator reclaims them when "
                        "cudaMalloc fails, so the KV cache gets what the last reclaim left, "
                        f"within {format_bytes(half)} either side of this figure.")


def _awq_profile_refusal(rules: VLLMRules, fmt_name: str, shape: ModelShape, tp: int,
                         tokens: int, compute_bytes: float, weights: int, context: int,
                         total: int, in_use: int) -> str:
    """The profiling forward itself out of memory: awq_gemm's split-k partials (releases
    before 0.3) with the QKV partials' segment kept by the caching allocator
    (awq_profile_resident_bytes), beside the CUDA context, on a GPU too small for them."""
    if not rules.awq_split_k or fmt_name != "awq-int4" or shape.is_moe:
        return ""
    resident = awq_profile_resident_bytes(shape, tp, tokens, compute_bytes, weights)
    room = total - in_use - context
    if resident <= room:
        return ""
    gib = 1 / GIB
    return (f"CUDA out of memory in the profiling forward: {tokens:,} tokens through awq_gemm "
            f"hold {resident * gib:.2f} GiB with the weights (its split-k partial outputs, "
            f"8 per output, for QKV and gate/up), {room * gib:.2f} GiB is left beside the CUDA "
            "context; give a smaller --max-model-len or --max-num-batched-tokens (vLLM 0.3+ "
            "dequantizes AWQ weights for large batches instead).")


def _memory_refusal(rules: VLLMRules, total: int, budget: int, in_use: int, activation: int,
                    capture: int, warmup: int = 0) -> str:
    """Why vLLM stops for memory outside its budget: other processes' memory (per release),
    CUDA graphs captured after the KV cache, or (MRV2) the sampler's warm-up after them. After
    profiling, the activation peak is free again, so graph capture has what the budget leaves
    plus that."""
    gib = 1 / GIB
    if rules.others_memory == "refused" and total - in_use < budget:
        return (f"vLLM refuses to start: free memory on the GPU ({(total - in_use) * gib:.2f}/"
                f"{total * gib:.2f} GiB) is less than gpu_memory_utilization asks for "
                f"({budget * gib:.2f} GiB); lower --gpu-memory-utilization below "
                f"{(total - in_use) / total:.2f}.")
    if rules.others_memory == "outside" and budget + in_use > total:
        return (f"CUDA out of memory: this release takes its whole budget ({budget * gib:.2f} "
                f"GiB) whatever other processes hold ({in_use * gib:.2f} GiB of "
                f"{total * gib:.2f} GiB); lower --gpu-memory-utilization below "
                f"{(total - in_use) / total:.2f}.")
    room = total - budget - (0 if rules.others_memory == "counted" else in_use) + activation
    if warmup:
        return warmup_refusal(room, capture, warmup)
    if capture > room:
        return (f"CUDA out of memory during CUDA-graph capture: the graphs need about "
                f"{capture * gib:.2f} GiB outside the KV budget, {room * gib:.2f} GiB is left; "
                "use --enforce-eager or a lower --gpu-memory-utilization.")
    return ""


def _others_note(rules: VLLMRules, in_use: int, os_share: bool = False) -> str:
    rule = {"counted": "memory other processes hold on the GPU is counted as non-torch memory "
                       "and comes out of the KV cache",
            "refused": "vLLM refuses to start when the GPU's free memory is below "
                       "gpu_memory_utilization x total",
            "outside": "the budget is gpu_memory_utilization x total whatever other processes "
                       "hold; it runs out of memory when both do not fit"}[rules.others_memory]
    if in_use and os_share:
        return (f"Unified memory: the OS, its services and caches hold about {in_use / GIB:.2f} "
                f"GiB at start (the median of measured start-ups; it varies by machine): in "
                f"this release {rule}. Give --gpu-memory-in-use (total - free in vLLM's "
                "start-up message) for yours.")
    if in_use:
        return f"Other processes hold {in_use / GIB:.2f} GiB per GPU: in this release {rule}."
    if rules.others_memory == "counted":
        return (f"In this release {rule}: give it with --gpu-memory-in-use if the GPU is "
                "shared (assumed empty here).")
    return ""


def _kv_layers(shape: ModelShape) -> int:
    counts = shape.layer_kind_counts
    return counts.get(LAYER_FULL, 0) + counts.get(LAYER_SLIDING, 0)


def _vllm_request_tokens(shape: ModelShape, rules: VLLMRules, block_size: int,
                         batched: int) -> Callable[[int], int]:
    """Layer-tokens of KV one request of `length` tokens needs before vLLM agrees to start.

    Full attention: cdiv(length, block_size) blocks per layer. A sliding layer, where the
    release drops blocks outside the window: cdiv(min(window - 1 + max_num_batched_tokens,
    length), block_size) + 1 blocks (vllm/v1/kv_cache_interface.py SlidingWindowSpec
    max_memory_usage_bytes; kv_cache_utils.py _max_memory_usage_bytes_from_groups @001cabc1).
    Mixed full + sliding layers only from the hybrid KV manager on; before it every layer is
    sized as full attention (unify_hybrid_kv_cache_specs).
    """
    counts = shape.layer_kind_counts
    full, sliding = counts.get(LAYER_FULL, 0), counts.get(LAYER_SLIDING, 0)
    windowed = _windowed_kv(shape, rules)

    def need(length: int) -> int:
        full_blocks = -(-length // block_size)
        if not windowed:
            return (full + sliding) * full_blocks * block_size
        window = shape.sliding_window or length
        if shape.chunked_attention:  # ChunkedLocalAttentionSpec: the chunk + one step's tokens
            window_blocks = -(-min(window + batched, length) // block_size)
        else:  # SlidingWindowSpec: window - 1 keys + one step's tokens, one block of slack
            window_blocks = -(-min(window - 1 + batched, length) // block_size) + 1
        return (full * full_blocks + sliding * window_blocks) * block_size

    return need


def _largest_len(request_bytes: Callable[[int], int], available: int, upper: int) -> int:
    low, high = 0, upper
    while low < high:
        mid = (low + high + 1) // 2
        if request_bytes(mid) <= available:
            low = mid
        else:
            high = mid - 1
    return low


def _vllm_window_note(shape: ModelShape, rules: VLLMRules) -> str:
    counts = shape.layer_kind_counts
    if not counts.get(LAYER_SLIDING) or not shape.sliding_window:
        return ""
    what = "Chunked local-attention" if shape.chunked_attention else "Sliding-window"
    if _windowed_kv(shape, rules):
        span = "chunk" if shape.chunked_attention else "window"
        return (f"{what} layers need only their {shape.sliding_window}-token {span} per "
                "request; the token count above is for all layers, as vLLM prints it.")
    return (f"This release sizes {what.lower()} layers as full attention (no hybrid KV "
            "manager for them): every layer needs max_model_len tokens.")


def _windowed_kv(shape: ModelShape, rules: VLLMRules) -> bool:
    """Whether the release keeps only the window (or chunk) of the sliding layers."""
    counts = shape.layer_kind_counts
    if not counts.get(LAYER_SLIDING) or not shape.sliding_window:
        return False
    if shape.chunked_attention:
        return rules.chunked_local_kv
    return rules.hybrid_kv or (rules.sliding_kv and not counts.get(LAYER_FULL))


def _kv_share(shape: ModelShape, tp: int) -> float:
    if shape.is_mla:
        return 1.0
    if shape.num_kv_heads % tp == 0:
        return 1 / tp
    return 1 / shape.num_kv_heads


# --- llama.cpp ----------------------------------------------------------------------------
@frozen
class LlamaCppOptions:
    n_gpu_layers: int = 999  # llama.cpp's "-ngl 99": everything on the GPU
    n_ctx: int | None = None  # total cells over all sequences; default: --ctx × --batch
    n_ubatch: int = 512
    n_outputs: int = 1  # logits kept per batch: 1 for generation, n_batch for perplexity
    flash_attn: bool | None = None  # default: the build's (-fa auto from about b6300)
    cache_type_k: str | None = None  # default: --kv-dtype, f16 when that is fp32
    cache_type_v: str | None = None
    version: str | None = None  # "llamacpp==b4000"; None: versions.DEFAULTS["llamacpp"]
    n_parallel: int | None = None  # sequences (-np); default: --batch
    n_gpus: int = 1  # GPUs sharing the layers (-sm layer)
    split_mode: str = "layer"  # "layer" (whole layers per GPU), "row", "none" (one GPU)
    tensor_split: tuple[float, ...] | None = None  # -ts ratios; default equal
    n_cpu_moe: int = 0  # expert tensors of the first N layers stay on the host
    backend: str | None = None  # "cuda", "rocm", "metal" or "vulkan"; default: by the GPU
    max_allocation_bytes: int | None = None  # Vulkan: the driver's; default VULKAN_MAX_ALLOCATION
    # the GGUF stores each layer's gate and up experts as one ffn_gate_up_exps tensor
    # (convert_hf_to_gguf.py --fuse_gate_up_exps, ggml-org/llama.cpp PR #19139)
    fused_gate_up_exps: bool = False
    # not an option users give: what ggml's pool holds in older builds on this GPU
    # (engines/llamacpp_device.py pool_bytes), set by the report from the device
    pool_bytes: int = 0


# Vulkan caps each allocation at maxMemoryAllocationSize: 4 GiB on Mesa's RADV (0xFFFFFFFC) and
# NVIDIA, 2 GiB on AMD's Windows driver ("we cannot allocate buffers larger than 4GB (on some
# drivers it can be even lower, like 2GB or 1GB)", ggml-org/llama.cpp issue #15009)
VULKAN_MAX_ALLOCATION = 4 * 1024**3
LLAMACPP_BACKENDS = ("cuda", "rocm", "metal", "vulkan")


@frozen
class DeviceBuffers:
    """One GPU's buffers: CUDA0, CUDA1, … in llama.cpp's log."""

    layers: int
    model_bytes: int
    kv_bytes: int
    compute_bytes: int

    def total(self, context: int) -> int:
        return self.model_bytes + self.kv_bytes + self.compute_bytes + (context if self.layers
                                                                        else 0)


@frozen
class LlamaCppStartup:
    gpu_layers: int
    model_buffer_gpu_bytes: int
    model_buffer_host_bytes: int
    kv_cache_bytes: int
    kv_cache_gpu_bytes: int
    compute_buffer_gpu_bytes: int
    compute_buffer_host_bytes: int
    output_buffer_host_bytes: int
    cuda_context_bytes: int
    devices: tuple[DeviceBuffers, ...] = ()
    version: str = ""
    n_ctx: int = 0
    n_parallel: int = 1
    swa_cells: int = 0  # cells of the sliding-window cache per stream (0: none)
    notes: tuple[str, ...] = ()
    backend: str = "CUDA"  # how the log names a GPU: CUDA0, ROCm0, Metal
    # of model_buffer_host_bytes, what a decode step reads from host memory: every weight of
    # the host layers (and the output head when it stays there) in full, the host's expert
    # tensors (-ncmoe, or whole host layers of an MoE) only for the experts a token routes to
    host_dense_bytes: int = 0
    host_expert_bytes: int = 0
    n_ubatch: int = 512
    layers_total: int = 0  # the model's repeating layers
    host_expert_layers: int = 0  # layers whose expert tensors stay in system memory
    refusal: str = ""  # why llama.cpp stops before it runs (a buffer the backend cannot allocate)
    flash_attn: bool = False  # fused attention; without it the KQ scores are materialised

    @property
    def gpu_total_bytes(self) -> int:
        """The fullest GPU: what each card must hold."""
        if self.devices:
            return max(d.total(self.cuda_context_bytes) for d in self.devices)
        return (self.model_buffer_gpu_bytes + self.kv_cache_gpu_bytes
                + self.compute_buffer_gpu_bytes + (self.cuda_context_bytes if self.gpu_layers
                                                   else 0))

    @property
    def host_total_bytes(self) -> int:
        return (self.model_buffer_host_bytes + self.kv_cache_bytes - self.kv_cache_gpu_bytes
                + self.compute_buffer_host_bytes + self.output_buffer_host_bytes)

    def to_json(self) -> dict[str, object]:
        return {"name": "llamacpp", "version": self.version, "gpu_layers": self.gpu_layers,
                "n_ctx": self.n_ctx, "n_parallel": self.n_parallel, "swa_cells": self.swa_cells,
                "model_buffer_gpu_bytes": self.model_buffer_gpu_bytes,
                "model_buffer_host_bytes": self.model_buffer_host_bytes,
                "kv_cache_bytes": self.kv_cache_bytes, "kv_cache_gpu_bytes": self.kv_cache_gpu_bytes,
                "compute_buffer_gpu_bytes": self.compute_buffer_gpu_bytes,
                "compute_buffer_host_bytes": self.compute_buffer_host_bytes,
                "output_buffer_host_bytes": self.output_buffer_host_bytes,
                "gpu_total_bytes": self.gpu_total_bytes, "host_total_bytes": self.host_total_bytes,
                "devices": [{"name": self._device_name(i), "layers": d.layers,
                             "model_buffer_bytes": d.model_bytes, "kv_cache_bytes": d.kv_bytes,
                             "compute_buffer_bytes": d.compute_bytes}
                            for i, d in enumerate(self.devices)],
                "refusal": self.refusal, "notes": list(self.notes)}

    def _device_name(self, i: int) -> str:
        return "Metal" if self.backend == "Metal" else f"{self.backend}{i}"

    def log_lines(self) -> list[str]:
        mib = 1 / MIB
        lines = [f"llama.cpp {self.version.removeprefix('llamacpp==')} rules "
                 "(--engine-version to change)",
                 f"n_ctx = {self.n_ctx} (total), n_parallel = {self.n_parallel}"
                 + (f", SWA cache {self.swa_cells} cells per sequence" if self.swa_cells else ""),
                 f"offloaded {self.gpu_layers} layers to GPU"]
        for i, d in enumerate(self.devices or (DeviceBuffers(
                self.gpu_layers, self.model_buffer_gpu_bytes, self.kv_cache_gpu_bytes,
                self.compute_buffer_gpu_bytes),)):
            lines.append(f"{self._device_name(i)} model buffer size = {d.model_bytes * mib:.2f} MiB; KV "
                         f"{d.kv_bytes * mib:.2f} MiB; compute {d.compute_bytes * mib:.2f} MiB "
                         f"({d.layers} layers)")
        host = "CPU" if self.backend == "Metal" else f"{self.backend}_Host"
        lines += [
            f"CPU_Mapped model buffer size = {self.model_buffer_host_bytes * mib:.2f} MiB",
            f"KV self size = {self.kv_cache_bytes * mib:.2f} MiB",
            f"{host} output buffer size = {self.output_buffer_host_bytes * mib:.2f} MiB",
            f"{host} compute buffer size = {self.compute_buffer_host_bytes * mib:.2f} MiB",
            *self.notes,
        ]
        if self.refusal:
            lines.append(self.refusal)
        return lines


def llamacpp_cache_type(est: Estimate, given: str | None) -> str:
    """One KV precision for the memory table, the engine block and the fit: the cache type
    given, else --kv-dtype; llama.cpp never keeps an fp32 cache by default (f16)."""
    if given:
        return given
    kv = kv_format(est.settings.kv_dtype)
    return "fp16" if kv.bytes_per_element >= 4 else est.settings.kv_dtype


# Families llama.cpp has no architecture for (src/llama-arch.cpp @3679b65d LLM_ARCH_NAMES: no
# zamba2; RWKV only as rwkv6/rwkv7, not the RWKV-4 of transformers' RwkvForCausalLM)
LLAMACPP_MISSING = {"zamba2": "Zamba2", "rwkv": "RWKV-4"}


def llamacpp_startup(est: Estimate, options: LlamaCppOptions | None = None) -> LlamaCppStartup:
    if est.model.shape.family in LLAMACPP_MISSING:
        raise InputError(f"llama.cpp has no {LLAMACPP_MISSING[est.model.shape.family]} "
                         "architecture, so --engine llamacpp cannot run this model; the estimate "
                         "without --engine holds.")
    options = options or LlamaCppOptions()
    version = parse_version("llamacpp", options.version)
    rules = llamacpp_rules(version)
    shape = est.model.shape
    fmt = weight_format(est.settings.dtype)
    n_seq = options.n_parallel or est.settings.batch
    n_ctx = options.n_ctx or est.settings.ctx * n_seq
    ubatch = min(options.n_ubatch, n_ctx)
    layers = shape.num_layers
    gpu_layers = max(0, min(options.n_gpu_layers, layers))
    output_on_gpu = options.n_gpu_layers > layers  # -ngl counts the output as one more layer
    groups = weight_bytes_by_group(shape, fmt)
    scale = est.memory.weights.bytes / (sum(groups.values()) or 1.0)  # exact bytes from files
    experts = groups["experts"] * scale / layers
    # what -cmoe / -ncmoe move to the host of a layer's experts
    experts_moved = experts * _cpu_moe_share(shape, fmt, options.fused_gate_up_exps, rules)
    block = groups["layers"] * scale / layers + experts
    head = (groups["lm_head"] if not shape.tie_embeddings else 0.0) * scale
    embed = groups["embedding"] * scale
    if shape.tie_embeddings and output_on_gpu:
        head = embed  # a tied output head is the embedding matrix, copied to the GPU
    k_type = kv_format(llamacpp_cache_type(est, options.cache_type_k))
    v_type = kv_format(llamacpp_cache_type(est, options.cache_type_v))
    per_layer_kv, swa_cells = _llamacpp_kv_layers(shape, n_ctx, n_seq, ubatch, rules,
                                                  k_type.bytes_per_element,
                                                  v_type.bytes_per_element)
    kv_total = sum(per_layer_kv)
    flash = rules.flash_attn_default if options.flash_attn is None else options.flash_attn
    vulkan = options.backend == "vulkan"
    compute_gpu, compute_host = _llamacpp_compute(shape, n_ctx, ubatch, flash, vulkan)
    attention_stage, output_stage = compute_gpu
    # llama.cpp offloads the last gpu_layers layers; -ngl past the layers adds the output head
    first_gpu = layers - gpu_layers
    n_dev = 1 if options.split_mode == "none" else max(1, options.n_gpus)
    owner = _split_layers(gpu_layers + (1 if output_on_gpu else 0), n_dev, options.tensor_split)
    cpu_moe = min(options.n_cpu_moe, layers) if shape.is_moe else 0
    devices = []
    for d in range(n_dev):
        mine = [first_gpu + i for i, o in enumerate(owner[:gpu_layers]) if o == d]
        model = sum(block - (experts_moved if il < cpu_moe else 0.0) for il in mine)
        holds_output = output_on_gpu and owner[-1] == d
        model += head if holds_output else 0.0
        kv = sum(per_layer_kv[il] for il in mine)
        compute = max(attention_stage if mine else 0.0, output_stage if holds_output else 0.0)
        if mine and not holds_output and not output_on_gpu and d == n_dev - 1:
            compute = max(attention_stage, output_stage)  # logits computed on the last GPU
        devices.append(DeviceBuffers(len(mine), round(model), round(kv), round(compute)))
    row_split = n_dev > 1 and (options.split_mode == "row" or not rules.layer_split)
    if row_split and gpu_layers:
        devices = _row_split(devices, options.tensor_split)
    gpu_model = sum(d.model_bytes for d in devices)
    total_model = embed + block * layers + (head if not shape.tie_embeddings or output_on_gpu
                                            else 0.0)
    host = total_model - gpu_model
    host_expert_layers = max(first_gpu, cpu_moe)  # the first layers, in both cases
    host_head = 0.0 if output_on_gpu else (embed if shape.tie_embeddings else head)
    output = shape.vocab_size * options.n_outputs * F32
    notes = []
    if row_split:
        notes.append("Row split: each matrix is split by rows over the GPUs; the KV cache and "
                     "the compute buffer stay on the main GPU (CUDA0).")
    refusal = ""
    if vulkan and gpu_layers:
        refusal = _vulkan_refusal(shape, devices, n_ctx, ubatch, flash, rules.split_compute_buffer,
                                  options.max_allocation_bytes or VULKAN_MAX_ALLOCATION)
    return LlamaCppStartup(
        gpu_layers=gpu_layers, model_buffer_gpu_bytes=gpu_model,
        model_buffer_host_bytes=round(host), kv_cache_bytes=round(kv_total),
        kv_cache_gpu_bytes=sum(d.kv_bytes for d in devices),
        compute_buffer_gpu_bytes=max((d.compute_bytes for d in devices), default=0)
        if gpu_layers else 0,
        compute_buffer_host_bytes=round(compute_host), output_buffer_host_bytes=round(output),
        cuda_context_bytes=_runtime_bytes(est, options.backend) + options.pool_bytes,
        devices=tuple(devices) if gpu_layers else (),
        version=version.text, n_ctx=n_ctx, n_parallel=n_seq, swa_cells=swa_cells,
        notes=tuple(notes), host_dense_bytes=round(first_gpu * (block - experts) + host_head),
        host_expert_bytes=round(first_gpu * experts
                                + max(0, cpu_moe - first_gpu) * experts_moved), n_ubatch=ubatch,
        layers_total=layers, host_expert_layers=host_expert_layers if experts else 0,
        refusal=refusal, flash_attn=flash)


def _pool_bytes(est: Estimate, opts: LlamaCppOptions, rules: LlamaCppRules,
                device: Device | None, build: Release) -> int:
    """What ggml's CUDA pool holds in builds that multiplied through cuBLAS in F16."""
    from vramest.inference.engines.llamacpp_device import PoolShape, pool_bytes

    shape = est.model.shape
    n_ctx = opts.n_ctx or est.settings.ctx * (opts.n_parallel or est.settings.batch)
    widest = max(shape.intermediate_size, shape.moe_intermediate_size or 0,
                 shape.num_heads * shape.head_dim)
    k_type = kv_format(llamacpp_cache_type(est, opts.cache_type_k))
    pool = PoolShape(
        n_kv=n_ctx, n_tokens=min(opts.n_ubatch, n_ctx), n_head=shape.num_heads,
        layer_matrix_elements=widest * shape.hidden_size,
        head_matrix_elements=shape.vocab_size * shape.hidden_size
        if opts.n_gpu_layers > shape.num_layers else 0,
        quantized=weight_format(est.settings.dtype).is_quantized,
        flash_attn=rules.flash_attn_default if opts.flash_attn is None else opts.flash_attn,
        k_cache_f16=k_type.bytes_per_element == 2 and "bf" not in k_type.name)
    return pool_bytes(pool, device, _backend(device, opts.backend), build) if opts.n_gpu_layers \
        else 0


def _runtime_bytes(est: Estimate, backend: str | None) -> int:
    """What the backend holds on a GPU beyond the logged buffers (engines/llamacpp_device.py);
    without a backend (Ollama's callers, which set their own), the estimate's overhead."""
    if backend is None:
        return est.memory.overhead.bytes
    from vramest.inference.engines.llamacpp_device import runtime_bytes

    return runtime_bytes(_backend(None, backend))


def _cpu_moe_share(shape: ModelShape, fmt: WeightFormat, fused: bool,
                   rules: LlamaCppRules) -> float:
    """The share of a layer's expert bytes that -cmoe / -ncmoe keep on the host: all of them,
    except that builds before b8301 match only ffn_(up|down|gate)_exps, so a GGUF with fused
    ffn_gate_up_exps keeps its gate and up experts on the GPU (ggml-org/llama.cpp issue #20431:
    -cmoe on a 3090 still asked for 144817 MiB)."""
    if not fused or rules.cpu_moe_matches_fused:
        return 1.0
    roles = weight_bytes_by_role(shape, fmt)
    experts = sum(roles.get(r, 0.0) for r in ("expert_gate", "expert_up", "expert_down"))
    return roles.get("expert_down", 0.0) / experts if experts else 1.0


def _vulkan_refusal(shape: ModelShape, devices: list[DeviceBuffers], n_ctx: int, ubatch: int,
                    flash: bool, split: bool, limit: int) -> str:
    """Vulkan allocates each buffer whole, up to the driver's maximum: before PR #15815 the
    compute buffer was one allocation; after it, the largest tensor (the KQ scores without
    flash attention) still must fit in one. What fails prints "failed to allocate compute pp
    buffers" (llama.cpp issues #11332, #15009)."""
    gib = 1 / GIB
    scores = _kq_scores(shape, n_ctx, ubatch, flash) * F32
    if not split:
        whole = max((d.compute_bytes for d in devices), default=0)
        if whole > limit:
            return (f"Vulkan cannot allocate the {whole * gib:.2f} GiB compute buffer in one "
                    f"piece (the driver's limit is {limit * gib:.2f} GiB; this build allocates it "
                    "whole): a smaller -ub, -fa on, a shorter context, or b6646 or later.")
    elif scores > limit:
        return (f"Vulkan cannot allocate the {scores * gib:.2f} GiB attention scores (heads x "
                f"ubatch x context) in one piece (the driver's limit is {limit * gib:.2f} GiB): "
                "a smaller -ub, -fa on or a shorter context.")
    return ""


def _row_split(layered: list[DeviceBuffers], ratios: tuple[float, ...] | None
               ) -> list[DeviceBuffers]:
    """-sm row (and every multi-GPU build before PR #4766): the offloaded weights split by the
    -ts shares, the whole KV cache and the compute buffer on the main GPU."""
    n_dev = len(layered)
    shares = list(ratios or (1.0,) * n_dev)[:n_dev]
    shares += [0.0] * (n_dev - len(shares))
    total_share = sum(shares) or 1.0
    model = sum(d.model_bytes for d in layered)
    kv = sum(d.kv_bytes for d in layered)
    compute = max(d.compute_bytes for d in layered)
    layers = sum(d.layers for d in layered)
    return [DeviceBuffers(layers, round(model * share / total_share), kv if i == 0 else 0,
                          compute if i == 0 else 0) for i, share in enumerate(shares)]


def _split_layers(count: int, n_dev: int, ratios: tuple[float, ...] | None) -> list[int]:
    """The GPU of each offloaded layer (the output head last): llama.cpp's -sm layer puts
    layer i on the first device whose cumulative -ts share exceeds i / count (src/llama-model.cpp
    load_tensors, splits by std::upper_bound). Default shares: equal (free memory, identical
    cards)."""
    shares = list(ratios or (1.0,) * n_dev)[:n_dev]
    shares += [0.0] * (n_dev - len(shares))
    total = sum(shares) or 1.0
    cumulative, running = [], 0.0
    for share in shares:
        running += share / total
        cumulative.append(running)
    owner = []
    for i in range(count):
        where = i / count if count else 0.0
        owner.append(next((d for d, c in enumerate(cumulative) if where < c), n_dev - 1))
    return owner


def _llamacpp_kv_layers(shape: ModelShape, n_ctx: int, n_seq: int, ubatch: int,
                        rules: LlamaCppRules, k_bytes: float, v_bytes: float
                        ) -> tuple[list[float], int]:
    """KV bytes of each layer, and the SWA cache's cells per stream.

    Sliding layers: src/llama-kv-cache-iswa.cpp @02c28f53: size_swa = GGML_PAD(min(size_base,
    n_swa × (unified ? n_seq_max : 1) + n_ubatch), 256), where size_base is n_ctx for one
    unified stream or n_ctx / n_seq per stream otherwise; the full layers keep n_ctx cells in
    all. Builds before the SWA cache (b5288) keep n_ctx cells in every layer.
    """
    out: list[float] = []
    k_width, v_width = _llamacpp_kv_widths(shape, rules)
    streams = 1 if rules.unified_kv else n_seq
    size_base = max(1, n_ctx // streams)
    swa = 0
    if rules.swa_cache and shape.sliding_window:
        per_stream_window = shape.sliding_window * (n_seq if rules.unified_kv else 1)
        swa = -(-min(size_base, per_stream_window + ubatch) // 256) * 256
    state = _llamacpp_recurrent_state(shape, n_seq)
    for il, kind in enumerate(shape.kinds()):
        # Falcon-H1 (and Zamba2's hybrid layers) keep a KV cache and a recurrent state in the
        # same layer: llama.cpp's hybrid memory filters both caches to every Falcon-H1 layer
        # ("KV buffer ... 24 layers" beside "RS buffer ... 24 layers" for Falcon-H1-1.5B,
        # https://github.com/GeniePod/genie-claw/issues/410)
        layer_state = state if _holds_state(shape, il) else 0.0
        if kind in ("none", "encoder"):
            out.append(layer_state)
            continue
        cells = swa * streams if kind == LAYER_SLIDING and swa else n_ctx
        out.append(cells * (k_width * k_bytes + v_width * v_bytes) + layer_state)
    return out, swa


def _llamacpp_kv_widths(shape: ModelShape, rules: LlamaCppRules) -> tuple[int, int]:
    """(K, V) elements a token keeps in one layer; an MLA layer by the build's cache layout
    (versions.py: decompressed per head, the latent as K and V, or K only)."""
    if not shape.is_mla or rules.mla_cache == "latent-k":
        return kv_widths(shape)
    if rules.mla_cache == "heads":
        return kv_widths(shape, mla_latent=False)
    return kv_widths(shape)[0], shape.kv_lora_rank  # V: the latent's first kv_lora_rank


# llama.cpp keeps a recurrent model's conv (r) and SSM (s) states in f32 whatever the KV cache
# types: src/llama-model.cpp, llama_model::create_memory builds
# llama_memory_recurrent(..., GGML_TYPE_F32, GGML_TYPE_F32, ..., max(1, n_seq_max), ...).
LLAMACPP_STATE_BYTES = 4.0


def _llamacpp_recurrent_state(shape: ModelShape, n_seq: int) -> float:
    """One recurrent layer's RS buffer: a state per sequence (one cell each, at least one)."""
    return max(1, n_seq) * (shape.conv_state + shape.ssm_state) * LLAMACPP_STATE_BYTES


def _holds_state(shape: ModelShape, layer: int) -> bool:
    """A Mamba / DeltaNet layer (hybrids also have attention-only and MLP-only layers)."""
    return shape.state_layers > 0 and any(t.role == "ssm_in" for t in shape.layer_tensors(layer))


def _kq_scores(shape: ModelShape, n_ctx: int, ubatch: int, flash_attn: bool) -> int:
    """Elements of one layer's KQ scores (heads × ubatch × context), which flash attention
    never materialises and a model without attention layers has none of."""
    attends = any(kind in ("full", LAYER_SLIDING) for kind in shape.kinds())
    return 0 if flash_attn or not attends else shape.num_heads * ubatch * n_ctx


def _llamacpp_compute(shape: ModelShape, n_ctx: int, ubatch: int, flash_attn: bool,
                      vulkan: bool = False) -> tuple[tuple[float, float], float]:
    """Peak of ggml's graph allocator, f32 intermediates.

    GPU: the attention stage (the KQ scores, heads × ubatch × ctx, unless flash attention
    fuses them, plus the FFN and two hidden rows) and the output stage (the logits of the
    ubatch, vocab × ubatch, plus one hidden row); a GPU's buffer is the larger of the stages it
    runs. Host: the input embeddings of the ubatch and the f32 KQ mask (ctx × ubatch). Checked
    against the llama.cpp logs in vramest/validation/reference/memory.csv to the 0.01 MiB.
    """
    ffn = shape.moe_intermediate_size * shape.experts_per_token if shape.is_moe else \
        shape.intermediate_size
    scores = _kq_scores(shape, n_ctx, ubatch, flash_attn)
    attention_stage = scores + ubatch * ffn + 2 * ubatch * shape.hidden_size
    if vulkan and scores:  # Vulkan cannot read the host's KQ mask in place: the scheduler copies
        attention_stage += n_ctx * ubatch  # it into the GPU's buffer (issue #15009's log, 0.1%)
    output_stage = shape.vocab_size * ubatch + ubatch * shape.hidden_size
    host = ubatch * shape.hidden_size + n_ctx * ubatch
    return (attention_stage * F32, output_stage * F32), host * F32


def llamacpp_fit_layers(est: Estimate, device: Device, options: LlamaCppOptions,
                        usable_bytes: int) -> int:
    """The most layers that fit on the GPUs: weights, their KV and the compute buffer, plus the
    CUDA context, within `usable_bytes` per GPU (llama.cpp fills layers from the last one down)."""
    for layers in range(est.model.shape.num_layers + 1, -1, -1):
        startup = llamacpp_startup(est, replace(options, n_gpu_layers=layers))
        if startup.gpu_total_bytes <= usable_bytes:
            return layers
    return 0


def llamacpp_advice(est: Estimate, options: LlamaCppOptions, usable_bytes: int) -> tuple[str, ...]:
    """What to keep on the host when everything on the GPUs does not fit, as llama.cpp's own
    fit would: the most layers (-ngl) that fit, and for a MoE the fewest layers whose experts
    stay on the host (--n-cpu-moe) with every layer offloaded."""
    full = llamacpp_startup(est, replace(options, n_gpu_layers=999))
    if full.gpu_total_bytes <= usable_bytes:
        return ()
    layers = est.model.shape.num_layers
    advice = [f"Does not fit with every layer on the GPU ({format_bytes(full.gpu_total_bytes)} "
              f"per GPU of {format_bytes(usable_bytes)}): -ngl "
              f"{llamacpp_fit_layers(est, None, options, usable_bytes)} fits."]  # type: ignore[arg-type]
    if est.model.shape.is_moe:
        for n in range(1, layers + 1):
            trial = llamacpp_startup(est, replace(options, n_gpu_layers=999, n_cpu_moe=n))
            if trial.gpu_total_bytes <= usable_bytes:
                layers_re = "|".join(str(i) for i in range(n))
                advice.append(f"Or keep every layer on the GPU and the experts of the first {n} "
                              f"layers on the host: --n-cpu-moe {n}, or -ot "
                              f"'blk\\.({layers_re})\\.ffn_.*_exps\\.=CPU'.")
                break
    return tuple(advice)


VLLM_OPTION_NAMES = ("gpu_memory_utilization", "max_model_len", "max_num_batched_tokens",
                     "max_num_seqs", "block_size", "enforce_eager", "version",
                     "total_memory_bytes", "memory_in_use_bytes", "runner", "data_parallel_size",
                     "kv_cache_memory_bytes",
                     "limit_mm_per_prompt", "skip_mm_profiling", "mm_max_pixels",
                     "entrypoint", "model_runner", "mxfp4_kernel", "allow_long_max_model_len")
LLAMACPP_OPTION_NAMES = ("n_gpu_layers", "n_ctx", "n_ubatch", "n_outputs", "flash_attn",
                         "cache_type_k", "cache_type_v", "fit", "version", "n_parallel",
                         "n_gpus", "split_mode", "tensor_split", "n_cpu_moe", "backend",
                         "max_allocation_bytes", "fused_gate_up_exps")


def _share(value: object, what: str) -> float:
    number = _number(value, what)
    if not 0 < number <= 1:
        raise InputError(f"{what} {short(value)} is out of range; give a share above 0 and at most 1.")
    return number


def _number(value: object, what: str) -> float:
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{what} {short(value)} is not a number.")
    return number


def _switch(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{what} {short(value)} is not true or false.")
    return value


def _layers(value: object, what: str) -> int:
    try:
        count = int(str(_whole(value, what)).strip())
    except ValueError:
        count = -1
    if not 0 <= count <= 100_000:
        raise InputError(f"{what} {short(value)} is not a layer count; give a whole number from 0 to "
                         "100000.")
    return count


def _positive_bytes(value: object, what: str) -> int:
    size = parse_bytes(_whole(value, what), what=what)
    if size <= 0:
        raise InputError(f"{what} {short(value)} must be a size above 0, such as 4GiB.")
    return size


def _whole(value: object, what: str) -> str | int:
    """Text or an int for the unit parsers; anything else is refused here."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InputError(f"{what} {short(value)} is not a whole number.")
    return value


_CACHE_TYPES = "a cache type such as f16, q8_0 or q4_0"
# Each engine option's parser: what a spec, the API or the CLI gives becomes the typed value.
_MM_MODALITIES = ("image", "video", "audio")


def _mm_limits(value: object, what: str) -> tuple[tuple[str, int], ...]:
    """vLLM's --limit-mm-per-prompt: '{"image": 10, "video": 0}' (JSON), 'image=10,video=0'
    (its older spelling), a mapping, or one count for every modality."""
    import json

    items: object = value
    if isinstance(value, tuple):  # already parsed: (modality, items) pairs
        try:
            items = dict(value)
        except (TypeError, ValueError):
            items = None
    if isinstance(value, str):
        text = value.strip()
        try:
            items = json.loads(text) if text.startswith("{") else (
                int(text) if text.isdigit() else
                dict(part.split("=", 1) for part in text.split(",") if part.strip()))
        except ValueError:
            items = None
    if isinstance(items, int) and not isinstance(items, bool):
        items = dict.fromkeys(_MM_MODALITIES, items)
    if not isinstance(items, dict) or not items:
        raise InputError(f"{what} takes items per prompt by modality, such as "
                         "'{\"image\": 10, \"video\": 0}' or image=10,video=0, or one count; "
                         f"got {value!r}.")
    pairs = []
    for key, count in items.items():
        name = str(key).strip().lower()
        if isinstance(count, dict):  # newer releases: {"count": 1, "num_frames": 32, ...}
            count = count.get("count", -1)
        try:
            number = int(str(count).strip())
        except ValueError:
            number = -1
        if name not in _MM_MODALITIES or not 0 <= number <= 1 << 20:
            raise InputError(f"{what}: {key!r}={count!r} is not a count (0 or more) of image, "
                             "video or audio items.")
        pairs.append((name, number))
    return tuple(sorted(pairs))


def _mm_max_pixels(value: object, what: str) -> int:
    """--mm-processor-kwargs '{"max_pixels": N}' (the processor's largest picture), or N."""
    import json

    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value).get("max_pixels")
        except (ValueError, AttributeError):
            value = None
        if value is None:
            raise InputError(f"{what} is read for its max_pixels only, such as "
                             "'{\"max_pixels\": 1003520}'.")
    return parse_positive_int(_whole(value, what), what=what, maximum=1 << 40)


_OPTION_PARSERS: dict[str, Callable[[object, str], object]] = {
    "gpu_memory_utilization": _share,
    "max_model_len": lambda v, what: parse_tokens(_whole(v, what), what=what),
    "max_num_batched_tokens": lambda v, what: parse_tokens(_whole(v, what), what=what),
    "max_num_seqs": lambda v, what: parse_positive_int(_whole(v, what), what=what),
    "data_parallel_size": lambda v, what: parse_positive_int(_whole(v, what), what=what,
                                                             maximum=1024),
    "block_size": lambda v, what: parse_positive_int(_whole(v, what), what=what, maximum=1024),
    "enforce_eager": _switch,
    "skip_mm_profiling": _switch,
    "allow_long_max_model_len": _switch,
    "mm_max_pixels": _mm_max_pixels,
    "limit_mm_per_prompt": lambda v, what: _mm_limits(v, what),
    "entrypoint": lambda v, what: str(v).lower() if str(v).lower() in ("serve", "llm") else
    _refuse(v, what, "serve (vllm serve, the OpenAI server) or llm (the offline LLM class)"),
    "version": lambda v, what: _release_text(v, what),
    "model_runner": parse_model_runner,
    "mxfp4_kernel": lambda v, what: str(v).lower() if str(v).lower() in MXFP4_KERNELS else
    _refuse(v, what, "auto (the release's rule), marlin (pip install) or triton "
            "(triton_kernels installed, as in the vllm/vllm-openai images)"),
    "total_memory_bytes": lambda v, what: parse_bytes(_whole(v, what), what=what),
    "memory_in_use_bytes": lambda v, what: parse_bytes(_whole(v, what), what=what),
    "kv_cache_memory_bytes": lambda v, what: parse_bytes(_whole(v, what), what=what),
    "n_gpu_layers": _layers,
    "n_ctx": lambda v, what: parse_tokens(_whole(v, what), what=what),
    "n_ubatch": lambda v, what: parse_positive_int(_whole(v, what), what=what, maximum=1 << 20),
    "n_outputs": lambda v, what: parse_positive_int(_whole(v, what), what=what),
    "flash_attn": _switch,
    "cache_type_k": lambda v, what: v if isinstance(v, str) else _refuse(v, what, _CACHE_TYPES),
    "cache_type_v": lambda v, what: v if isinstance(v, str) else _refuse(v, what, _CACHE_TYPES),
    "fit": _switch,
    "n_parallel": lambda v, what: parse_positive_int(_whole(v, what), what=what, maximum=4096),
    "n_gpus": lambda v, what: parse_positive_int(_whole(v, what), what=what, maximum=64),
    "split_mode": lambda v, what: v if v in ("layer", "row", "none") else _refuse(
        v, what, "layer, row or none"),
    "tensor_split": lambda v, what: _ratios(v, what),
    "n_cpu_moe": _layers,
    "backend": lambda v, what: v.lower() if isinstance(v, str) and v.lower() in LLAMACPP_BACKENDS
    else _refuse(v, what, ", ".join(LLAMACPP_BACKENDS)),
    "max_allocation_bytes": lambda v, what: _positive_bytes(v, what),
    "fused_gate_up_exps": _switch,
    "runner": parse_runner,
}


def _release_text(value: object, what: str) -> str:
    """A release either engine's table reads; which engine it must name is checked on use."""
    for family in ("vllm", "llamacpp", "hf"):
        with contextlib.suppress(InputError):
            parse_version(family, value)
            return str(value)
    raise InputError(f"{what} {value!r} is not understood; give a release such as vllm==0.6.3, "
                     "0.10.1, llamacpp==b4000 or transformers==4.46.")


def _ratios(value: object, what: str) -> tuple[float, ...]:
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or not 0 < len(parts) <= 64:
        raise InputError(f"{what} {value!r} is not understood; give shares such as 3,1.")
    shares = tuple(_number(p, what) for p in parts)
    if any(s < 0 for s in shares) or not sum(shares):
        raise InputError(f"{what} {value!r} needs shares of 0 or more, not all 0.")
    return shares


def _refuse(value: object, what: str, accepted: str) -> object:
    raise InputError(f"{what} {short(value)} is not understood; give {accepted}.")


def engine_family(engine: str) -> str:
    """The start-up accounting an engine name uses: llamacpp-cli is llama.cpp's."""
    return "llamacpp" if engine.startswith("llamacpp") else engine


def engine_option_names(engine: str) -> tuple[str, ...]:
    spec = STARTUP_ENGINES.get(engine_family(engine))
    return spec.options if spec else ()


def parse_engine_options(engine: str, options: dict[str, object], *,
                         shown: Callable[[str], str] = str) -> dict[str, object]:
    """The given (not None) options of an engine, each checked and typed by its one parser;
    `shown` names an option in errors as the caller's user wrote it (the CLI: its flag)."""
    given = {k: v for k, v in options.items() if v is not None}
    _reject_unknown(given, engine_option_names(engine), engine_family(engine))
    return {k: _OPTION_PARSERS[k](v, shown(k)) for k, v in given.items()}


def engine_report(est: Estimate, engine: str, options: dict[str, object], device: Device | None,
                  tp: int, usable_bytes: int | None, pp: int = 1, prompt: int | None = None
                  ) -> VLLMStartup | LlamaCppStartup | HFStartup | Startup | None:
    """The engine's own start-up figures (STARTUP_ENGINES, or an engine module in
    vramest.inference.engines.registry), or None for an engine without. `tp` GPUs split each
    layer, `pp` pipeline stages split the layers (vLLM's --pipeline-parallel-size); `prompt`
    is the request's prompt where it is shorter than the context (transformers' prefill)."""
    from vramest.inference.engines import registry

    if engine in registry.NAMES:  # ollama, sglang, ...: their own modules
        return registry.startup(engine, est, options, device, tp, usable_bytes)
    given = {k: v for k, v in options.items() if v is not None}
    spec = STARTUP_ENGINES.get(engine_family(engine))
    if given and not (spec and spec.options):
        takes = ", ".join(name for name, s in STARTUP_ENGINES.items() if s.options)
        raise InputError(f"Engine options ({', '.join(sorted(given))}) apply to --engine "
                         f"{takes} only.")
    if spec is None:
        return None
    return spec.build(est, parse_engine_options(engine, given), device, tp, usable_bytes, pp,
                      prompt)


def _vllm_report(est: Estimate, given: dict[str, object], device: Device | None, tp: int,
                 usable_bytes: int | None, pp: int = 1, _prompt: int | None = None
                 ) -> VLLMStartup:
    if device is None:
        raise InputError("--engine vllm needs --gpu: its KV cache is what is left of the "
                         "GPU's memory.")
    return vllm_startup(est, device, tp, VLLMOptions(**given), pp)  # type: ignore[arg-type]


def _backend(device: Device | None, chosen: str | None = None) -> str:
    """The device name llama.cpp's log gives a GPU's buffers: CUDA0, ROCm0 (HIP), Vulkan0,
    Metal; the backend given, else the one the GPU's vendor builds usually run."""
    if chosen:
        return {"cuda": "CUDA", "rocm": "ROCm", "metal": "Metal", "vulkan": "Vulkan"}[chosen]
    vendor = (device.vendor if device is not None else "").lower()
    return {"apple": "Metal", "amd": "ROCm"}.get(vendor, "CUDA")


def _llamacpp_report(est: Estimate, given: dict[str, object], device: Device | None, tp: int,
                     usable_bytes: int | None, _pp: int = 1, _prompt: int | None = None
                     ) -> LlamaCppStartup:
    fit = bool(given.pop("fit", False))
    given.setdefault("n_gpus", tp)  # --num-gpus: llama.cpp splits layers, not tensors
    opts = LlamaCppOptions(**given)  # type: ignore[arg-type]
    opts = replace(opts, backend=_backend(device, opts.backend).lower())  # what it holds beyond
    version = parse_version("llamacpp", opts.version)
    rules = llamacpp_rules(version)
    opts = replace(opts, pool_bytes=_pool_bytes(est, opts, rules, device, version.release))
    placed = "n_gpu_layers" in given or "n_cpu_moe" in given
    if fit and (device is None or usable_bytes is None):
        raise InputError("--fit needs --gpu to know how many layers fit.")
    notes: tuple[str, ...] = ()
    if usable_bytes is not None and (fit or (rules.auto_fit and not placed)):
        from vramest.inference.engines.llamacpp_device import LLAMACPP_FIT_MARGIN

        # llama_params_fit keeps its margin free of what it reads as free (PR #16653)
        fitted = llamacpp_fitted(est, opts, usable_bytes - LLAMACPP_FIT_MARGIN)
        if fitted != opts:
            layers = est.model.shape.num_layers
            kept = (f"the experts of the first {fitted.n_cpu_moe} layers" if fitted.n_cpu_moe
                    else f"{layers - min(fitted.n_gpu_layers, layers)} layers")
            how = "--fit" if fit else "-fit on, its default"
            notes = (f"llama.cpp's fit ({how}) keeps {kept} on the host: it starts, and the "
                     "speed below reads those weights from system memory.",)
        opts = fitted
    report = llamacpp_startup(est, opts)
    report = replace(report, notes=report.notes + notes, backend=_backend(device, opts.backend))
    if usable_bytes is not None and report.gpu_total_bytes > usable_bytes:
        report = replace(report, notes=report.notes + llamacpp_advice(est, opts, usable_bytes))
    return report


def llamacpp_fitted(est: Estimate, options: LlamaCppOptions, usable_bytes: int
                    ) -> LlamaCppOptions:
    """The placement llama.cpp's fit picks when everything does not fit: a MoE keeps every
    layer on the GPUs and moves the experts of the first layers to the host (the fewest that
    fit); a dense model offloads the most layers that fit."""
    if llamacpp_startup(est, options).gpu_total_bytes <= usable_bytes:
        return options
    if est.model.shape.is_moe:
        for n in range(1, est.model.shape.num_layers + 1):
            trial = replace(options, n_gpu_layers=999, n_cpu_moe=n)
            if llamacpp_startup(est, trial).gpu_total_bytes <= usable_bytes:
                return trial
    return replace(options, n_gpu_layers=llamacpp_fit_layers(est, None, options, usable_bytes),  # type: ignore[arg-type]
                   n_cpu_moe=0)


def _reject_unknown(given: dict[str, object], known: tuple[str, ...], engine: str) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise InputError(f"Unknown {engine} option(s) {', '.join(unknown)}; accepted: "
                         f"{', '.join(known)}.")


# --- transformers (--engine hf) ---------------------------------------------------------------
# The default release (versions.DEFAULTS["hf"]) is the one vramest/validation/traces were made
# with; `--engine-version transformers==4.46` picks the rules of an older one.
@frozen
class HFStartup:
    """transformers from_pretrained + generate() as the device sees it."""

    loading_peak_bytes: int
    prefill_peak_bytes: int
    generate_peak_bytes: int
    kv_growth_bytes: int
    attention: str
    unquantized_experts_bytes: int = 0  # bitsandbytes leaves fused MoE experts in 16 bit
    window_kv_extra_bytes: int = 0  # sliding layers hold the whole last prefill chunk
    # before 4.45: every prompt position's logits and their fp32 copy, beyond the layers' peak
    prompt_logits_bytes: int = 0
    # one layer's keys (or values), copied by the torch.cat that grows the cache each step
    cache_copy_bytes: int = 0
    # a prompt shorter than the context: the prefill runs over the prompt alone (its cache and
    # activations), the decode steps over one token with the whole cache; the generic estimate
    # charges the whole context's cache and a context-long prefill at once
    prompt_phase_saving_bytes: int = 0
    version: str = "transformers==5.23.0"
    rules_source: str = ""

    def to_json(self) -> dict[str, object]:
        return {"name": "hf", "version": self.version,
                "loading_peak_bytes": self.loading_peak_bytes,
                "prefill_peak_bytes": self.prefill_peak_bytes,
                "generate_peak_bytes": self.generate_peak_bytes,
                "kv_growth_bytes": self.kv_growth_bytes, "attention": self.attention,
                "unquantized_experts_bytes": self.unquantized_experts_bytes,
                "window_kv_extra_bytes": self.window_kv_extra_bytes,
                "prompt_logits_bytes": self.prompt_logits_bytes,
                "prompt_phase_saving_bytes": self.prompt_phase_saving_bytes}

    def log_lines(self) -> list[str]:
        return [f"{self.version} rules (--engine-version to change)",
                f"from_pretrained peak: {format_bytes(self.loading_peak_bytes)}",
                f"prefill peak ({self.attention} attention): "
                f"{format_bytes(self.prefill_peak_bytes)}",
                f"generate() peak: {format_bytes(self.generate_peak_bytes)} (the cache grows by "
                f"concatenation: {format_bytes(self.kv_growth_bytes)} more stays reserved)"] + (
                    [f"MoE experts stay 16-bit under bitsandbytes (fused 3-D parameters from "
                     f"transformers 5): {format_bytes(self.unquantized_experts_bytes)} more than "
                     "the quantized weights"] if self.unquantized_experts_bytes else []) + (
                    [f"Sliding-window layers keep the whole last prefill chunk in transformers' "
                     f"cache until the next token: {format_bytes(self.window_kv_extra_bytes)} "
                     "more than the window"] if self.window_kv_extra_bytes else []) + (
                    [f"The prefill computes every prompt position's logits and their fp32 copy "
                     f"(before 4.45's num_logits_to_keep): "
                     f"{format_bytes(self.prompt_logits_bytes)} beyond the layers' peak"]
                    if self.prompt_logits_bytes else []) + (
                    [f"The prompt is prefilled alone and each new token runs against the whole "
                     f"cache: the peak is the larger phase, "
                     f"{format_bytes(self.prompt_phase_saving_bytes)} under a context-long "
                     "prefill"] if self.prompt_phase_saving_bytes else [])


def _generate_phase_saving(est: Estimate, prompt: int | None, logits_all: int) -> int:
    """What the generic estimate over-counts for generate() with a prompt shorter than the
    prefill chunk: it holds the whole context's cache and a context-long prefill's activations
    at once, where generate() runs two phases (transformers generation/utils.py `_sample`: the
    first forward over the prompt's input_ids, then one token per step against the cache,
    `prepare_inputs_for_generation` slicing input_ids to the uncached cache_position; the same
    from v4.38 to v5):
    - the prefill: the prompt's cache + a prompt-long forward's activations (or, before 4.45,
      every prompt position's logits when larger);
    - a decode step: the whole context's cache + a one-token forward's activations.
    The peak is the larger of the two."""
    s = est.settings
    if not prompt or prompt >= s.prefill_chunk or est.model.shape.architecture != "decoder":
        return 0
    shape, constants = est.model.shape, est.constants
    fmt = weight_format(s.dtype)
    kv = kv_format(s.kv_dtype)

    def act(chunk: int, keys: int) -> int:
        return activations_part(shape, fmt, chunk, keys, s.batch, s.attention, constants).bytes

    charged = kv_part(shape, kv, s.ctx, s.batch).bytes + max(act(s.prefill_chunk, s.ctx),
                                                             logits_all)
    prefill = kv_part(shape, kv, prompt, s.batch).bytes + max(act(prompt, prompt), logits_all)
    decode = kv_part(shape, kv, s.ctx, s.batch).bytes + act(1, s.ctx)
    return max(0, charged - max(prefill, decode))


def hf_startup(est: Estimate, version: str | None = None, prompt: int | None = None) -> HFStartup:
    """Loading holds the weights plus, for formats quantized on load (bitsandbytes), one 16-bit
    copy of the largest matrix; generate() concatenates each new token onto the cache, so the
    caching allocator keeps about one more cache's worth reserved (optimum's GPTQ benchmark:
    device memory exceeds weights + KV + activations + context by one KV cache at batch 1-16)."""
    shape = est.model.shape
    fmt = weight_format(est.settings.dtype)
    largest = max((t.rows * t.cols for t in shape.tensors() if t.role not in ("norm", "bias")),
                  default=0)
    bitsandbytes = fmt.name in BITSANDBYTES_FORMATS
    on_load = 2 * largest if bitsandbytes else 0
    # bitsandbytes replaces nn.Linear modules only: experts held as fused 3-D parameters
    # (transformers 5) stay in 16 bit; as their own Linear modules (4.x) they are quantized
    release = parse_version("hf", version)
    rules = hf_rules(release)
    experts = 0
    if bitsandbytes and shape.is_moe and rules.fused_experts:
        elements = sum(t.rows * t.cols * t.count for t in shape.tensors()
                       if t.role in EXPERT_ROLES)
        experts = round(elements * (2 - fmt.linear_bits / 8))
    memory = est.memory
    loading = memory.weights.bytes + experts + on_load + memory.overhead.bytes
    # sliding-window layers: DynamicSlidingWindowLayer keeps a view of the last window - 1
    # tokens, so the whole last prefill chunk's storage stays (transformers 5.23
    # cache_utils.py; vramest/validation/traces/mistralai__Mistral-7B-v0.1.json: 2.00 GiB at 16k)
    from vramest.tracing.inference import transformers_prefill_kv_bytes

    s = est.settings
    held = transformers_prefill_kv_bytes(shape, kv_format(s.kv_dtype).bytes_per_element, s.ctx,
                                         s.prefill_chunk, s.batch)
    window_extra = max(0, held - memory.kv_cache.bytes)
    prefill = memory.total + experts + window_extra
    prompt_logits = 0
    logits_all = 0
    if rules.prompt_logits and shape.architecture == "decoder":
        # after the last layer: every prompt position's logits and their fp32 copy, in place of
        # the layers' own peak when larger (the estimate counts the last position's only)
        act = fmt.compute_bytes
        tokens = min(prompt or s.ctx, s.ctx, s.prefill_chunk) * s.batch
        logits_all = round(tokens * shape.vocab_size * (act + 4))
        prompt_logits = max(0, logits_all - memory.activations.bytes)
        prefill += prompt_logits
    phases = _generate_phase_saving(est, prompt, logits_all) if window_extra == 0 else 0
    prefill -= phases
    return HFStartup(loading_peak_bytes=loading, prefill_peak_bytes=prefill,
                     generate_peak_bytes=prefill + memory.kv_cache.bytes,
                     kv_growth_bytes=memory.kv_cache.bytes, attention=est.settings.attention,
                     unquantized_experts_bytes=experts, window_kv_extra_bytes=window_extra,
                     prompt_logits_bytes=prompt_logits, prompt_phase_saving_bytes=phases,
                     cache_copy_bytes=memory.kv_cache.bytes // max(1, 2 * _kv_layers(shape)),
                     version=release.text, rules_source=rules.source)


# --- the registry ------------------------------------------------------------------------------
@frozen
class StartupEngine:
    """An engine with its own start-up accounting: the options it takes and how its report is
    built from (estimate, parsed options, device, GPUs, usable bytes per GPU, pipeline stages,
    the request's prompt). A new engine adds its options to _OPTION_PARSERS, its rules table to
    versions.TABLES and a row here."""

    options: tuple[str, ...]
    build: Callable[[Estimate, dict[str, object], Device | None, int, int | None, int,
                     int | None], VLLMStartup | LlamaCppStartup | HFStartup]


STARTUP_ENGINES: dict[str, StartupEngine] = {
    "vllm": StartupEngine(VLLM_OPTION_NAMES, _vllm_report),
    "llamacpp": StartupEngine(LLAMACPP_OPTION_NAMES, _llamacpp_report),
    "hf": StartupEngine(("version",), lambda est, given, _device, _tp, _usable, _pp, prompt:
                        hf_startup(est, given.get("version"), prompt)),  # type: ignore[arg-type]
}
