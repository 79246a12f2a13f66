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
from dataclasses import dataclass

from vramest.errors import InputError
from vramest.hardware.database import Device
from vramest.inference.engines.registry import Startup
from vramest.inference.estimate import Estimate
from vramest.inference.memory import ffn_width, kv_elements_per_token, weight_bytes_by_group
from vramest.inference.placement import per_gpu_memory
from vramest.model.precisions import BITSANDBYTES_FORMATS, EXPERT_ROLES, kv_format, weight_format
from vramest.model.shapes import LAYER_SLIDING, ModelShape
from vramest.units import GIB, MIB, format_bytes, parse_bytes, parse_positive_int, parse_tokens

F32 = 4


@dataclass(frozen=True)
class VLLMOptions:
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None  # default: the model's max_position_embeddings
    max_num_batched_tokens: int | None = None  # default: per version, see `_batched_tokens`
    max_num_seqs: int = 256
    block_size: int = 16
    enforce_eager: bool = False
    version: str = "v1"  # "v0" for vLLM ≤ 0.6 logs (no chunked prefill, no CUDA graph term)
    total_memory_bytes: int | None = None  # as torch reports it, when known


@dataclass(frozen=True)
class VLLMStartup:
    total_bytes: int  # per GPU, as the driver reports it
    budget_bytes: int
    weights_bytes: int
    activation_peak_bytes: int
    non_torch_bytes: int
    cuda_graph_bytes: int
    kv_cache_bytes: int
    kv_bytes_per_token: float
    num_gpu_blocks: int
    block_size: int
    max_model_len: int
    max_num_batched_tokens: int

    @property
    def kv_cache_tokens(self) -> int:
        return self.num_gpu_blocks * self.block_size

    @property
    def max_concurrency(self) -> float:
        return self.kv_cache_tokens / self.max_model_len

    @property
    def starts(self) -> bool:
        return self.kv_cache_tokens >= self.max_model_len

    def to_json(self) -> dict[str, object]:
        return {"name": "vllm", "total_gpu_memory_bytes": self.total_bytes,
                "budget_bytes": self.budget_bytes, "weights_bytes": self.weights_bytes,
                "activation_peak_bytes": self.activation_peak_bytes,
                "non_torch_bytes": self.non_torch_bytes,
                "cuda_graph_bytes": self.cuda_graph_bytes,
                "kv_cache_bytes": self.kv_cache_bytes, "kv_cache_tokens": self.kv_cache_tokens,
                "num_gpu_blocks": self.num_gpu_blocks,
                "max_concurrency": round(self.max_concurrency, 2),
                "max_model_len": self.max_model_len,
                "max_num_batched_tokens": self.max_num_batched_tokens, "starts": self.starts}

    def log_lines(self) -> list[str]:
        gib = 1 / GIB
        lines = [
            f"Model loading took {self.weights_bytes * gib:.4f} GiB",
            f"Memory profiling: total_gpu_memory={self.total_bytes * gib:.2f}GiB; budget "
            f"{self.budget_bytes * gib:.2f}GiB; weights {self.weights_bytes * gib:.2f}GiB; "
            f"non_torch {self.non_torch_bytes * gib:.2f}GiB; activation peak "
            f"{self.activation_peak_bytes * gib:.2f}GiB; CUDA graphs "
            f"{self.cuda_graph_bytes * gib:.2f}GiB; KV cache {self.kv_cache_bytes * gib:.2f}GiB",
            f"# GPU blocks: {self.num_gpu_blocks}",
            f"GPU KV cache size: {self.kv_cache_tokens:,} tokens",
            f"Maximum concurrency for {self.max_model_len:,} tokens per request: "
            f"{self.max_concurrency:.2f}x",
        ]
        if not self.starts:
            lines.append(f"vLLM would refuse to start: max_model_len {self.max_model_len} needs "
                         f"more KV cache than the {self.kv_cache_tokens} tokens available; the "
                         f"largest max_model_len that starts is {self.kv_cache_tokens}.")
        return lines


def _batched_tokens(options: VLLMOptions, max_model_len: int) -> int:
    if options.max_num_batched_tokens:
        return options.max_num_batched_tokens
    if options.version == "v0":  # no chunked prefill: one whole prompt per forward
        return max(max_model_len, 2048)
    return min(8192, max_model_len) if max_model_len > 8192 else max(max_model_len, 2048)


def vllm_startup(est: Estimate, device: Device, tp: int = 1,
                 options: VLLMOptions | None = None) -> VLLMStartup:
    options = options or VLLMOptions()
    c = est.constants
    if not 0 < options.gpu_memory_utilization <= 1:
        raise InputError("--gpu-memory-utilization must be above 0 and at most 1.")
    shape = est.model.shape
    max_model_len = options.max_model_len or shape.max_context or est.settings.ctx
    tokens = _batched_tokens(options, max_model_len)
    total = options.total_memory_bytes or round(device.addressable_bytes * c.visible_memory_fraction)
    budget = round(total * options.gpu_memory_utilization)
    per_gpu = per_gpu_memory(est, tp)
    compute_bytes = weight_format(est.settings.dtype).compute_bytes
    per_token = (c.activation_ffn_factor * ffn_width(shape) / tp
                 + c.vllm_activation_hidden_factor * shape.hidden_size) * compute_bytes
    # the profiling forward also samples max_num_seqs sequences: their logits in fp32
    sampler = options.max_num_seqs * shape.vocab_size * (F32 + compute_bytes) / tp
    activation = round(tokens * per_token + sampler)
    non_torch = c.vllm_non_torch_bytes + (c.nccl_buffer_bytes if tp > 1 else 0)
    graphs = 0 if options.enforce_eager or options.version == "v0" else c.vllm_cuda_graph_bytes
    kv_bytes = budget - per_gpu.weights - non_torch - activation - graphs
    kv_token = kv_elements_per_token(shape, 1) * kv_format(est.settings.kv_dtype).bytes_per_element
    per_token_gpu = kv_token * _kv_share(shape, tp)
    block = per_token_gpu * options.block_size
    blocks = max(0, int(kv_bytes // block)) if block else 0
    return VLLMStartup(total_bytes=total, budget_bytes=budget, weights_bytes=per_gpu.weights,
                       activation_peak_bytes=activation, non_torch_bytes=non_torch,
                       cuda_graph_bytes=graphs, kv_cache_bytes=max(0, kv_bytes),
                       kv_bytes_per_token=per_token_gpu, num_gpu_blocks=blocks,
                       block_size=options.block_size, max_model_len=max_model_len,
                       max_num_batched_tokens=tokens)


def _kv_share(shape: ModelShape, tp: int) -> float:
    if shape.is_mla:
        return 1.0
    if shape.num_kv_heads % tp == 0:
        return 1 / tp
    return 1 / shape.num_kv_heads


# --- llama.cpp ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LlamaCppOptions:
    n_gpu_layers: int = 999  # llama.cpp's "-ngl 99": everything on the GPU
    n_ctx: int | None = None  # default: the estimate's context
    n_ubatch: int = 512
    n_outputs: int = 1  # logits kept per batch: 1 for generation, n_batch for perplexity
    flash_attn: bool = False
    cache_type_k: str | None = None  # default f16
    cache_type_v: str | None = None


@dataclass(frozen=True)
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

    @property
    def gpu_total_bytes(self) -> int:
        return (self.model_buffer_gpu_bytes + self.kv_cache_gpu_bytes
                + self.compute_buffer_gpu_bytes + (self.cuda_context_bytes if self.gpu_layers
                                                   else 0))

    @property
    def host_total_bytes(self) -> int:
        return (self.model_buffer_host_bytes + self.kv_cache_bytes - self.kv_cache_gpu_bytes
                + self.compute_buffer_host_bytes + self.output_buffer_host_bytes)

    def to_json(self) -> dict[str, object]:
        return {"name": "llamacpp", "gpu_layers": self.gpu_layers,
                "model_buffer_gpu_bytes": self.model_buffer_gpu_bytes,
                "model_buffer_host_bytes": self.model_buffer_host_bytes,
                "kv_cache_bytes": self.kv_cache_bytes, "kv_cache_gpu_bytes": self.kv_cache_gpu_bytes,
                "compute_buffer_gpu_bytes": self.compute_buffer_gpu_bytes,
                "compute_buffer_host_bytes": self.compute_buffer_host_bytes,
                "output_buffer_host_bytes": self.output_buffer_host_bytes,
                "gpu_total_bytes": self.gpu_total_bytes, "host_total_bytes": self.host_total_bytes}

    def log_lines(self) -> list[str]:
        mib = 1 / MIB
        return [
            f"offloaded {self.gpu_layers} layers to GPU",
            f"CUDA0 model buffer size = {self.model_buffer_gpu_bytes * mib:.2f} MiB",
            f"CPU_Mapped model buffer size = {self.model_buffer_host_bytes * mib:.2f} MiB",
            f"KV self size = {self.kv_cache_bytes * mib:.2f} MiB",
            f"CUDA_Host output buffer size = {self.output_buffer_host_bytes * mib:.2f} MiB",
            f"CUDA0 compute buffer size = {self.compute_buffer_gpu_bytes * mib:.2f} MiB",
            f"CUDA_Host compute buffer size = {self.compute_buffer_host_bytes * mib:.2f} MiB",
        ]


def llamacpp_startup(est: Estimate, options: LlamaCppOptions | None = None) -> LlamaCppStartup:
    options = options or LlamaCppOptions()
    shape = est.model.shape
    fmt = weight_format(est.settings.dtype)
    n_ctx = options.n_ctx or est.settings.ctx
    ubatch = min(options.n_ubatch, n_ctx)
    layers = shape.num_layers
    gpu_layers = max(0, min(options.n_gpu_layers, layers))
    output_on_gpu = options.n_gpu_layers > layers  # -ngl counts the output as one more layer
    groups = weight_bytes_by_group(shape, fmt)
    scale = est.memory.weights.bytes / (sum(groups.values()) or 1.0)  # exact bytes from files
    block = (groups["layers"] + groups["experts"]) * scale / layers
    head = (groups["lm_head"] if not shape.tie_embeddings else 0.0) * scale
    embed = groups["embedding"] * scale
    gpu = block * gpu_layers + (head if output_on_gpu else 0.0)
    host = embed + block * (layers - gpu_layers) + (0.0 if output_on_gpu else head)
    if shape.tie_embeddings and output_on_gpu:
        gpu += embed  # a tied output head is the embedding matrix, copied to the GPU
    k_type = kv_format(options.cache_type_k or "fp16")
    v_type = kv_format(options.cache_type_v or "fp16")
    kv_total = _llamacpp_kv(shape, n_ctx, k_type.bytes_per_element, v_type.bytes_per_element)
    kv_gpu = kv_total * gpu_layers / layers
    compute_gpu, compute_host = _llamacpp_compute(shape, n_ctx, ubatch, options.flash_attn)
    output = shape.vocab_size * options.n_outputs * F32
    return LlamaCppStartup(gpu_layers=gpu_layers, model_buffer_gpu_bytes=round(gpu),
                           model_buffer_host_bytes=round(host), kv_cache_bytes=round(kv_total),
                           kv_cache_gpu_bytes=round(kv_gpu),
                           compute_buffer_gpu_bytes=round(compute_gpu) if gpu_layers else 0,
                           compute_buffer_host_bytes=round(compute_host),
                           output_buffer_host_bytes=round(output),
                           cuda_context_bytes=est.memory.overhead.bytes)


def _llamacpp_kv(shape: ModelShape, n_ctx: int, k_bytes: float, v_bytes: float) -> float:
    """K and V per layer at their own cache types; sliding-window layers keep the window."""
    total = 0.0
    for kind in shape.kinds():
        if kind == "none":
            continue
        tokens = min(n_ctx, shape.sliding_window or n_ctx) if kind == LAYER_SLIDING else n_ctx
        if shape.is_mla:
            total += tokens * (shape.kv_lora_rank + shape.qk_rope_head_dim) * k_bytes
        else:
            width = shape.num_kv_heads * shape.head_dim
            total += tokens * width * (k_bytes + v_bytes)
    return total


def _llamacpp_compute(shape: ModelShape, n_ctx: int, ubatch: int,
                      flash_attn: bool) -> tuple[float, float]:
    """Peak of ggml's graph allocator, f32 intermediates.

    GPU: the larger of the attention stage (the KQ scores, heads × ubatch × ctx, unless flash
    attention fuses them, plus the FFN and two hidden rows) and the output stage (the logits of
    the ubatch, vocab × ubatch, plus one hidden row). Host: the input embeddings of the ubatch
    and the f32 KQ mask (ctx × ubatch). Checked against the llama.cpp logs in
    vramest/validation/reference/memory.csv to the 0.01 MiB.
    """
    ffn = shape.moe_intermediate_size * shape.experts_per_token if shape.is_moe else \
        shape.intermediate_size
    scores = 0 if flash_attn else shape.num_heads * ubatch * n_ctx
    attention_stage = scores + ubatch * ffn + 2 * ubatch * shape.hidden_size
    output_stage = shape.vocab_size * ubatch + ubatch * shape.hidden_size
    host = ubatch * shape.hidden_size + n_ctx * ubatch
    return max(attention_stage, output_stage) * F32, host * F32


def llamacpp_fit_layers(est: Estimate, device: Device, options: LlamaCppOptions,
                        usable_bytes: int) -> int:
    """The most layers that fit on the GPU: weights, their KV and the compute buffer, plus the
    CUDA context, within `usable_bytes` (llama.cpp fills layers from the last one down)."""
    from dataclasses import replace

    best = 0
    for layers in range(est.model.shape.num_layers + 1, -1, -1):
        startup = llamacpp_startup(est, replace(options, n_gpu_layers=layers))
        if startup.gpu_total_bytes <= usable_bytes:
            best = layers
            break
    return best



VLLM_OPTION_NAMES = ("gpu_memory_utilization", "max_model_len", "max_num_batched_tokens",
                     "max_num_seqs", "block_size", "enforce_eager", "version",
                     "total_memory_bytes")
LLAMACPP_OPTION_NAMES = ("n_gpu_layers", "n_ctx", "n_ubatch", "n_outputs", "flash_attn",
                         "cache_type_k", "cache_type_v", "fit")


def _share(value: object, what: str) -> float:
    number = _number(value, what)
    if not 0 < number <= 1:
        raise InputError(f"{what} {value!r} is out of range; give a share above 0 and at most 1.")
    return number


def _number(value: object, what: str) -> float:
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{what} {value!r} is not a number.")
    return number


def _switch(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{what} {value!r} is not true or false.")
    return value


def _layers(value: object, what: str) -> int:
    try:
        count = int(str(_whole(value, what)).strip())
    except ValueError:
        count = -1
    if not 0 <= count <= 100_000:
        raise InputError(f"{what} {value!r} is not a layer count; give a whole number from 0 to "
                         "100000.")
    return count


def _whole(value: object, what: str) -> str | int:
    """Text or an int for the unit parsers; anything else is refused here."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InputError(f"{what} {value!r} is not a whole number.")
    return value


_CACHE_TYPES = "a cache type such as f16, q8_0 or q4_0"
# Each engine option's parser: what a spec, the API or the CLI gives becomes the typed value.
_OPTION_PARSERS: dict[str, Callable[[object, str], object]] = {
    "gpu_memory_utilization": _share,
    "max_model_len": lambda v, what: parse_tokens(_whole(v, what), what=what),
    "max_num_batched_tokens": lambda v, what: parse_tokens(_whole(v, what), what=what),
    "max_num_seqs": lambda v, what: parse_positive_int(_whole(v, what), what=what),
    "block_size": lambda v, what: parse_positive_int(_whole(v, what), what=what, maximum=1024),
    "enforce_eager": _switch,
    "version": lambda v, what: v if v in ("v0", "v1") else _refuse(v, what, "v0 or v1"),
    "total_memory_bytes": lambda v, what: parse_bytes(_whole(v, what), what=what),
    "n_gpu_layers": _layers,
    "n_ctx": lambda v, what: parse_tokens(_whole(v, what), what=what),
    "n_ubatch": lambda v, what: parse_positive_int(_whole(v, what), what=what, maximum=1 << 20),
    "n_outputs": lambda v, what: parse_positive_int(_whole(v, what), what=what),
    "flash_attn": _switch,
    "cache_type_k": lambda v, what: v if isinstance(v, str) else _refuse(v, what, _CACHE_TYPES),
    "cache_type_v": lambda v, what: v if isinstance(v, str) else _refuse(v, what, _CACHE_TYPES),
    "fit": _switch,
}


def _refuse(value: object, what: str, accepted: str) -> object:
    raise InputError(f"{what} {value!r} is not understood; give {accepted}.")


def parse_engine_options(engine: str, options: dict[str, object]) -> dict[str, object]:
    """The given (not None) options of an engine, each checked and typed."""
    given = {k: v for k, v in options.items() if v is not None}
    known = VLLM_OPTION_NAMES if engine == "vllm" else LLAMACPP_OPTION_NAMES
    _reject_unknown(given, known, "llamacpp" if engine.startswith("llamacpp") else engine)
    return {k: _OPTION_PARSERS[k](v, k) for k, v in given.items()}


def engine_report(est: Estimate, engine: str, options: dict[str, object], device: Device | None,
                  tp: int, usable_bytes: int | None
                  ) -> VLLMStartup | LlamaCppStartup | HFStartup | Startup | None:
    """The engine's own start-up figures for --engine vllm / llamacpp, else None."""
    from vramest.inference.engines import registry

    if engine in registry.NAMES:  # ollama, sglang, ...: their own modules
        return registry.startup(engine, est, options, device, tp, usable_bytes)
    given = {k: v for k, v in options.items() if v is not None}
    if engine == "vllm" or engine.startswith("llamacpp"):
        given = parse_engine_options(engine, given)
    if engine == "vllm":
        if device is None:
            raise InputError("--engine vllm needs --gpu: its KV cache is what is left of the "
                             "GPU's memory.")
        return vllm_startup(est, device, tp, VLLMOptions(**given))  # type: ignore[arg-type]
    if engine.startswith("llamacpp"):
        fit = bool(given.pop("fit", False))
        opts = LlamaCppOptions(**given)  # type: ignore[arg-type]
        if fit:
            if device is None or usable_bytes is None:
                raise InputError("--fit needs --gpu to know how many layers fit.")
            from dataclasses import replace

            opts = replace(opts, n_gpu_layers=llamacpp_fit_layers(est, device, opts, usable_bytes))
        return llamacpp_startup(est, opts)
    if engine == "hf":
        if given:
            raise InputError(f"Engine options ({', '.join(sorted(given))}) apply to --engine "
                             "vllm or llamacpp only.")
        return hf_startup(est)
    if given:
        raise InputError(f"Engine options ({', '.join(sorted(given))}) apply to --engine vllm or "
                         "llamacpp only.")
    return None


def _reject_unknown(given: dict[str, object], known: tuple[str, ...], engine: str) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise InputError(f"Unknown {engine} option(s) {', '.join(unknown)}; accepted: "
                         f"{', '.join(known)}.")


# --- transformers (--engine hf) ---------------------------------------------------------------
@dataclass(frozen=True)
class HFStartup:
    """transformers from_pretrained + generate() as the device sees it."""

    loading_peak_bytes: int
    prefill_peak_bytes: int
    generate_peak_bytes: int
    kv_growth_bytes: int
    attention: str
    unquantized_experts_bytes: int = 0  # bitsandbytes leaves fused MoE experts in 16 bit

    def to_json(self) -> dict[str, object]:
        return {"name": "hf", "loading_peak_bytes": self.loading_peak_bytes,
                "prefill_peak_bytes": self.prefill_peak_bytes,
                "generate_peak_bytes": self.generate_peak_bytes,
                "kv_growth_bytes": self.kv_growth_bytes, "attention": self.attention,
                "unquantized_experts_bytes": self.unquantized_experts_bytes}

    def log_lines(self) -> list[str]:
        return [f"from_pretrained peak: {format_bytes(self.loading_peak_bytes)}",
                f"prefill peak ({self.attention} attention): "
                f"{format_bytes(self.prefill_peak_bytes)}",
                f"generate() peak: {format_bytes(self.generate_peak_bytes)} (the cache grows by "
                f"concatenation: {format_bytes(self.kv_growth_bytes)} more stays reserved)"] + (
                    [f"MoE experts stay 16-bit under bitsandbytes (fused 3-D parameters in "
                     f"transformers 5): {format_bytes(self.unquantized_experts_bytes)} more than "
                     "the quantized weights"] if self.unquantized_experts_bytes else [])


def hf_startup(est: Estimate) -> HFStartup:
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
    # bitsandbytes replaces nn.Linear modules only; transformers 5 holds routed experts as
    # fused 3-D parameters, which it leaves in 16 bit (checked by loading a Mixtral 4-bit)
    experts = 0
    if bitsandbytes and shape.is_moe:
        elements = sum(t.rows * t.cols * t.count for t in shape.tensors()
                       if t.role in EXPERT_ROLES)
        experts = round(elements * (2 - fmt.linear_bits / 8))
    memory = est.memory
    loading = memory.weights.bytes + experts + on_load + memory.overhead.bytes
    return HFStartup(loading_peak_bytes=loading, prefill_peak_bytes=memory.total + experts,
                     generate_peak_bytes=memory.total + experts + memory.kv_cache.bytes,
                     kv_growth_bytes=memory.kv_cache.bytes, attention=est.settings.attention,
                     unquantized_experts_bytes=experts)
