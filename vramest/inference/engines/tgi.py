"""Text Generation Inference (`--engine tgi`): the KV blocks its warm-up leaves room for.

TGI's warm-up (server/text_generation_server/models/flash_causal_lm.py `warmup`) allocates
the KV blocks of one max_batch_prefill_tokens prefill, runs it, and measures the free memory
without emptying the allocator's cache, so the prefill's activation peak stays counted as used.
The blocks that fit in what is left (less a wiggle room), plus the warm-up batch's own, become
max_batch_total_tokens. The rule changed across releases (huggingface/text-generation-inference
at each tag):
  v2.0-v2.4: blocks = floor(W x (free - (1 - CUDA_MEMORY_FRACTION) x total) / block) + warm-up,
             W = 0.95 (TGI_WIGGLE_ROOM from v2.3; 0.90 in v2.4)
  v3.0+:     blocks = floor((free - (1 - CUDA_MEMORY_FRACTION x W) x total) / block) + warm-up,
             W = 0.95 (v3.0), 0.93 (v3.1-v3.2), 0.90 (v3.3+)
Blocks hold as many tokens as the attention kernel's pages (models/globals.py BLOCK_SIZE from
v2.3.0: flashinfer 1, flashdecoding 256, paged 16; 16 before). The launcher picks the kernel
(launcher/src/main.rs resolve_attention): flashinfer by default from v2.3.0; a model whose head
size flashinfer lacks (not 64, 128 or 256) or whose family it cannot serve (Falcon, DeepSeek-V2,
and Gemma 2 in v2.3.x) falls back to flashdecoding, or from v2.3.1 to paged on a GPU older than
compute capability 8.0. The warm-up's blocks are those of its requests at their full length:
each asks for max_total_tokens - its input new tokens (router warm-up), so holds max_total_tokens
- 1 slots (flash_causal_lm.py from_pb); Mistral-like models capped them at the sliding window in
v1.1-v2.0 (flash_mistral.py). A warm-up that runs out of memory refuses to start: "Not enough
memory to handle N prefill tokens. You need to decrease `--max-batch-prefill-tokens`" (before
v1.1.1 any warm-up error read so, a GPTQ kernel's among them: the report says so where the
memory fits).

From v3 the router's warm-up sends an image with its first request (backends/v3/src/client/
grpc_client.rs warmup, WARMUP_IMAGE_BASE64), split into requests of max_input_tokens each.
Gemma 3's vision-language model in v3.2.x then builds a dense [batch, 1, S, S] attention mask
(torch.where on a bool mask: float32) and runs every layer's prefill through
F.scaled_dot_product_attention with that mask and enable_gqa, which takes PyTorch's math path:
the scores q·kᵀ and their softmax, [batch, heads per rank, S, S] in the compute dtype
(custom_modeling/flash_gemma3_modeling.py at v3.2.1: get_attention_mask and
FlashGemma3Attention.forward). v3.3.0 prefills Gemma 3 through flashinfer (PR #3167).
"""

from __future__ import annotations

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.inference.engines import registry
from vramest.inference.engines.startup import _kv_share, awq_split_k_bytes
from vramest.inference.memory import ffn_width, kv_bytes_per_token
from vramest.inference.placement import per_gpu_memory
from vramest.model.precisions import kv_format, weight_format
from vramest.units import format_bytes

if TYPE_CHECKING:
    from vramest.inference.estimate import Estimate
    from vramest.inference.placement import FitPlan

Version = tuple[int, ...]
LATEST: Version = (3, 3, 7)  # newest release tag read (commit dfb3fbe7)
SRC = "huggingface/text-generation-inference@v{}:{}"
# models/globals.py TGI_WIGGLE_ROOM (flash_causal_lm.py before); v0.9.4-v1.4 apply the v2
# rule with no wiggle factor (flash_causal_lm.py warmup at v0.9.4 and v1.4.0: free -
# (1 - MEMORY_FRACTION) x total); the automatic size arrived in v0.9.4
WIGGLE = (((0, 9, 4), 1.0), ((2, 0, 0), 0.95), ((2, 4, 0), 0.90), ((3, 0, 0), 0.95),
          ((3, 1, 0), 0.93), ((3, 3, 0), 0.90))
WIGGLE_ON_TOTAL_FROM: Version = (3, 0, 0)  # get_free_memory(device, MEMORY_FRACTION * W)
# models/globals.py BLOCK_SIZE by ATTENTION (v2.3.0 on; 16 before, FLASH_DECODING unset)
BLOCK_SIZES = {"flashinfer": 1, "flashdecoding": 256, "paged": 16}
PAGED_BLOCK = BLOCK_SIZES["paged"]
# launcher/src/main.rs resolve_attention at v2.3.0 (commit e415b690): ATTENTION defaults to
# flashinfer; head sizes flashinfer serves; families forced to the fallback, by the first release
# that no longer forces them (Gemma 2 left the list in v2.4.0)
FLASHINFER_FROM: Version = (2, 3, 0)
FLASHINFER_HEAD_DIMS = (64, 128, 256)
FORCED_FALLBACK: dict[str, Version] = {"falcon": (99,), "deepseek_v2": (99,), "gemma2": (2, 4, 0)}
PAGED_FALLBACK_FROM: Version = (2, 3, 1)  # fallback "paged" below compute capability 8.0
NO_CAPABILITY_PAGED_FROM: Version = (3, 1, 0)  # compute_capability.is_none() -> paged
TEXT_CONFIG_HEAD_DIM_FROM: Version = (3, 3, 0)  # Config::get_head_dim reads text_config
DEFAULT_PREFILL = 4096  # launcher/src/main.rs max_batch_prefill_tokens without a compute figure
# launcher/src/main.rs defaults before v2.0.0: max_input_length 1024, max_total_tokens 2048;
# v2.x: min(max_position_embeddings, 4096) - 1 and min(max_position_embeddings, 4096), and
# max_batch_prefill_tokens max_input_tokens + 50; v3 leaves both unset unless given
V1_MAX_INPUT, V1_MAX_TOTAL, V2_MAX_DEFAULT, V2_PREFILL_EDGE = 1024, 2048, 4096, 50
V2_DEFAULTS_FROM: Version = (2, 0, 0)
# v2.4.1 (PR #2673): the launcher leaves max_input_tokens and max_total_tokens unset unless
# given (max_batch_prefill_tokens min(4096, max_position_embeddings)), and the router's warm-up
# takes them as Option<u32> (backends/v3/src/client/grpc_client.rs warmup at v2.4.1)
OPTIONAL_LIMITS_FROM: Version = (2, 4, 1)
# flash_mistral.py (v1.1.0-v2.0.x) needed_blocks = min(needed_blocks, SLIDING_WINDOW_BLOCKS) for
# the models on FlashMistralBatch; v2.1.0 moved batching to flash_causal_lm.py without the cap
WINDOW_CAPPED: tuple[Version, Version] = ((1, 1, 0), (2, 1, 0))
WINDOW_CAPPED_FAMILIES = ("mistral", "mixtral", "qwen2", "starcoder2")
F32 = 4
# model_type -> the releases whose VLM warm-up takes the dense-mask attention path
DENSE_MASK_WARMUP: dict[str, tuple[Version, Version]] = {"gemma3": ((3, 2, 0), (3, 3, 0))}
SCORE_COPIES = 2  # the math path holds q·kᵀ and its softmax at once
# AWQ layers through WQLinear, whose forward calls awq_inference_engine.gemm_forward_cuda(x,
# qweight, scales, qzeros, 8): llm-awq's kernel writes 8 split-k partial outputs and sums them
# (server/text_generation_server/utils/awq/quantize/qmodule.py at v1.1.0-v2.0.0, layers/awq/
# quantize/qmodule.py at v2.1.0); from v2.2.0 AWQ is repacked for the GPTQ-Marlin kernels where
# they run (layers/gptq/__init__.py can_use_gptq_marlin). Dense models: the merged gate_up.
AWQ_WQLINEAR: tuple[Version, Version] = ((1, 1, 0), (2, 2, 0))
# flash_causal_lm.py warmup turned any exception into "Not enough memory to handle N prefill
# tokens" (`except Exception`) until commit 96a982ad "fix: better warmup error" (v1.1.1) caught
# torch.cuda.OutOfMemoryError alone
ANY_ERROR_READS_AS_OOM_UNTIL: Version = (1, 1, 1)


@frozen
class TGIStartup:
    version: Version
    total_bytes: int
    weights_bytes: int
    warmup_tokens: int  # max_batch_prefill_tokens
    warmup_activation_bytes: int
    kv_bytes_per_token: float
    block_size: int
    wiggle_room: float
    max_batch_total_tokens: int
    kv_cache_bytes: int
    context_bytes: int
    starts: bool
    rules: tuple[str, ...]
    warmup_kv_bytes: int = 0  # the KV blocks the warm-up's own requests take
    memory_fraction: float = 1.0  # cuda_memory_fraction

    def to_json(self) -> dict[str, object]:
        return {"name": "tgi", "version": ".".join(map(str, self.version)), "starts": self.starts,
                "total_bytes": self.total_bytes, "weights_bytes": self.weights_bytes,
                "max_batch_prefill_tokens": self.warmup_tokens,
                "warmup_activation_bytes": self.warmup_activation_bytes,
                "kv_bytes_per_token": self.kv_bytes_per_token, "block_size": self.block_size,
                "wiggle_room": self.wiggle_room,
                "max_batch_total_tokens": self.max_batch_total_tokens,
                "kv_cache_bytes": self.kv_cache_bytes, "rules": list(self.rules)}

    def log_lines(self) -> list[str]:
        if not self.starts:
            return [f"RuntimeError: Not enough memory to handle {self.warmup_tokens} prefill "
                    "tokens. You need to decrease `--max-batch-prefill-tokens`", *self.rules]
        blocks = self.max_batch_total_tokens // self.block_size
        return [f"Load weights: {format_bytes(self.weights_bytes)}; warm-up prefill of "
                f"{self.warmup_tokens} tokens peaks at {format_bytes(self.warmup_activation_bytes)}",
                f"KV-cache blocks: {blocks}, size: {self.block_size}",
                f"Setting max batch total tokens to {self.max_batch_total_tokens}", *self.rules]

    def engine_fit(self, plan: FitPlan) -> FitPlan:
        """TGI fills what its warm-up leaves with KV blocks (max_batch_total_tokens above), so
        a started server always shows a full GPU; whether it starts is whether the warm-up
        fits in its share (cuda_memory_fraction) of the GPU. The fit counts what the warm-up
        holds, so the headroom is what becomes the KV pool and 'tight' means the warm-up
        itself is within the error, not every start."""
        from vramest.inference.placement import PerGPU

        per_gpu = PerGPU(self.weights_bytes, self.warmup_kv_bytes, self.warmup_activation_bytes,
                         self.context_bytes)
        return replace(plan, per_gpu=per_gpu,
                       usable_bytes=round(self.total_bytes * self.memory_fraction))


def compute(req: registry.StartupRequest) -> TGIStartup:
    o, est, device, tp = req.options, req.est, req.device, max(req.tp, 1)
    if device is None:
        raise InputError("--engine tgi needs --gpu: its KV cache is what its warm-up leaves.")
    version: Version = o.get("version", LATEST)  # type: ignore[assignment]
    if version < WIGGLE[0][0]:
        raise InputError(f"TGI {'.'.join(map(str, version))} took max_batch_total_tokens as given; "
                         "its automatic KV sizing is modelled from v0.9.4 on.")
    c, shape = est.constants, est.model.shape
    if shape.state_layers:  # TGI sizes blocks by KV per token; its recurrent state is not modelled
        raise InputError("--engine tgi does not model a recurrent state (Mamba, hybrid and RWKV "
                         "layers), only KV blocks; the estimate without --engine holds.")
    rules: list[str] = []
    # TGI's warm-up reads the free memory (torch.cuda.mem_get_info): on unified memory what the
    # OS holds is not free
    total = device.reported_total_bytes(c.visible_memory_fraction) - device.os_in_use_bytes
    context = c.vllm_non_torch_bytes + (c.nccl_buffer_bytes if tp > 1 else 0)
    weights = per_gpu_memory(est, tp).weights
    prefill = o.get("max_batch_prefill_tokens")
    if not isinstance(prefill, int):
        prefill = min(DEFAULT_PREFILL, shape.max_context or DEFAULT_PREFILL)
        if V2_DEFAULTS_FROM <= version < OPTIONAL_LIMITS_FROM:
            max_input = o.get("max_input_tokens")
            prefill = (max_input if isinstance(max_input, int)
                       else _v2_max_position(est) - 1) + V2_PREFILL_EDGE
        rules.append(f"max_batch_prefill_tokens {prefill} by default (launcher/src/main.rs; "
                     "from v3 a GPU the launcher knows may raise it by its FLOPs)")
    kv_dtype = str(o.get("kv_cache_dtype") or est.settings.kv_dtype)
    per_token = kv_bytes_per_token(shape, kv_format(kv_dtype).bytes_per_element) \
        * _kv_share(shape, tp)
    compute_bytes = weight_format(est.settings.dtype).compute_bytes
    # the router's warm-up requests ask for prefill_logprobs (backends/v3/src/client/
    # grpc_client.rs warmup; router/client/src/client.rs in v2): logits for every prefill
    # token, in the compute dtype and again in fp32 for the log-softmax
    logits = prefill * shape.vocab_size * (compute_bytes + F32)
    activation = round(prefill * (c.activation_ffn_factor * ffn_width(shape) / tp
                                  + c.vllm_activation_hidden_factor * shape.hidden_size)
                       * compute_bytes + logits)
    if (weight_format(est.settings.dtype).name == "awq-int4" and not shape.is_moe
            and AWQ_WQLINEAR[0] <= version < AWQ_WQLINEAR[1]):
        split_k = awq_split_k_bytes(shape, tp, prefill, compute_bytes)
        activation += split_k
        rules.append(f"AWQ's split-k outputs in the warm-up: {format_bytes(split_k)} "
                     f"({SRC.format('1.3.0', 'server/text_generation_server/utils/awq/quantize/qmodule.py')}"
                     " WQLinear.forward)")
    masked = _dense_mask_warmup(est, version, prefill, o.get("max_input_tokens"), tp,
                                compute_bytes)
    if masked:
        body = round(prefill * (c.activation_ffn_factor * ffn_width(shape) / tp
                                + c.vllm_activation_hidden_factor * shape.hidden_size)
                     * compute_bytes)
        activation = max(activation, body + masked)
        where = "server/text_generation_server/models/custom_modeling/flash_gemma3_modeling.py"
        rules.append(f"warm-up with an image: dense mask and masked attention scores "
                     f"{format_bytes(masked)} ({SRC.format('3.2.1', where)} "
                     "get_attention_mask, scaled_dot_product_attention with attn_mask)")
    attention, why = _attention(est, version, device, o.get("attention"))
    block = BLOCK_SIZES[attention]
    rules.append(f"attention {attention}, KV blocks of {block} token{'s' * (block > 1)}: {why}")
    warm_blocks, how = _warmup_blocks(est, version, prefill, block, o.get("max_input_tokens"),
                                      o.get("max_total_tokens"))
    if how:
        rules.append(how)
    warm_kv = warm_blocks * block * per_token
    fraction = float(o.get("cuda_memory_fraction", 1.0))  # type: ignore[arg-type]
    wiggle = float(o.get("wiggle_room") or next(  # type: ignore[arg-type]
        w for since, w in reversed(WIGGLE) if version >= since))
    free = total - context - weights - warm_kv - activation
    starts = free > 0 and weights + warm_kv + activation + context <= total * fraction
    if version >= WIGGLE_ON_TOTAL_FROM:
        usable = free - (1 - fraction * wiggle) * total
        where = "3.0.0"
    else:
        usable = wiggle * (free - (1 - fraction) * total)
        where = "2.0.0" if version >= (2, 0, 0) else "1.4.0"
    rules.append(f"KV blocks: what the warm-up leaves free, with wiggle room {wiggle} "
                 f"({SRC.format(where, 'server/text_generation_server/models/flash_causal_lm.py')}"
                 " warmup)")
    blocks = max(0, int(usable // (block * per_token))) + warm_blocks if starts else 0
    if starts and version < ANY_ERROR_READS_AS_OOM_UNTIL:
        source = SRC.format("1.1.0", "server/text_generation_server/models/flash_causal_lm.py")
        rules.append("before v1.1.1 the warm-up reports any error as \"Not enough memory to "
                     f"handle N prefill tokens\" ({source} warmup, except "
                     "Exception): a GPTQ kernel failure (exllama, Triton's compile) reads as "
                     "that refusal with memory to spare")
    tokens = blocks * block
    return TGIStartup(version=version, total_bytes=total, weights_bytes=weights,
                      warmup_tokens=prefill, warmup_activation_bytes=activation,
                      kv_bytes_per_token=per_token, block_size=block, wiggle_room=wiggle,
                      max_batch_total_tokens=tokens, kv_cache_bytes=round(tokens * per_token),
                      context_bytes=context, starts=starts, rules=tuple(rules),
                      warmup_kv_bytes=round(warm_kv), memory_fraction=fraction)


def _v2_max_position(est: Estimate) -> int:
    """launcher/src/main.rs (v2.x): max_position_embeddings, capped at 4096 by default."""
    ctx = est.model.shape.max_context
    return min(ctx, V2_MAX_DEFAULT) if ctx else V2_MAX_DEFAULT


def _launcher_head_dim(est: Estimate, version: Version) -> int | None:
    """The head size the launcher reads from config.json (RawConfig -> Config): head_dim, else
    hidden_size (or n_embd) / num_attention_heads; from v3.3.0 text_config.head_dim, and 256 for
    Gemma 3's vision-language config (Config::get_head_dim)."""
    cfg = registry.catalog_config(est)
    if not cfg:
        return est.model.shape.head_dim
    head = cfg.get("head_dim")
    hidden, heads = cfg.get("hidden_size") or cfg.get("n_embd"), cfg.get("num_attention_heads")
    if not isinstance(head, int) and isinstance(hidden, int) and isinstance(heads, int) \
            and heads and hidden % heads == 0:
        head = hidden // heads
    if not isinstance(head, int) and version >= TEXT_CONFIG_HEAD_DIM_FROM:
        text = cfg.get("text_config")
        head = text.get("head_dim") if isinstance(text, dict) else None
        if not isinstance(head, int) and cfg.get("model_type") == "gemma3":
            head = 256
    return head if isinstance(head, int) else None


def _attention(est: Estimate, version: Version, device: object,
               given: object) -> tuple[str, str]:
    """The attention kernel TGI's launcher sets (ATTENTION), and why."""
    from vramest.inference.engines.layouts import compute_capability

    where = SRC.format("2.3.1", "launcher/src/main.rs") + " resolve_attention"
    if isinstance(given, str) and given in BLOCK_SIZES:
        return given, "ATTENTION as given"
    if version < FLASHINFER_FROM:
        return "paged", SRC.format("2.2.0", "server/text_generation_server/models/globals.py")
    model_type = str(registry.catalog_config(est).get("model_type") or est.model.shape.family)
    head = _launcher_head_dim(est, version)
    cc = compute_capability(device)  # type: ignore[arg-type]
    unknown = cc == (0, 0)  # not CUDA: gpu::get_cuda_capability() is None
    fallback = "flashdecoding"
    if (version >= PAGED_FALLBACK_FROM and (0, 0) < cc < (8, 0)) \
            or (unknown and version >= NO_CAPABILITY_PAGED_FROM):
        fallback = "paged"
    if head not in FLASHINFER_HEAD_DIMS:
        return fallback, f"head size {head} is not one flashinfer serves ({where})"
    if version < FORCED_FALLBACK.get(model_type, (0,)):
        return fallback, f"model {model_type} is forced off flashinfer ({where})"
    return "flashinfer", f"the default from v2.3.0 ({where})"


def _warmup_blocks(est: Estimate, version: Version, prefill: int, block: int,
                   max_input: object, max_total: object) -> tuple[int, str]:
    """The KV blocks of the router's warm-up batch (requests of max_input_tokens filling
    max_batch_prefill_tokens, each asking for max_total_tokens - its input new tokens), and the
    rule that says so."""
    shape = est.model.shape
    if version >= OPTIONAL_LIMITS_FROM:
        limit = max_input if isinstance(max_input, int) else None
        total = max_total if isinstance(max_total, int) else None
    elif version >= V2_DEFAULTS_FROM:
        limit = max_input if isinstance(max_input, int) else _v2_max_position(est) - 1
        total = max_total if isinstance(max_total, int) else _v2_max_position(est)
    else:
        limit = max_input if isinstance(max_input, int) else V1_MAX_INPUT
        total = max_total if isinstance(max_total, int) else V1_MAX_TOTAL
    cap = None
    if (WINDOW_CAPPED[0] <= version < WINDOW_CAPPED[1] and shape.sliding_window
            and shape.family in WINDOW_CAPPED_FAMILIES):
        cap = -(-shape.sliding_window // block)
    blocks, sent, slots = 0, 0, 0
    while sent < prefill:
        truncate = prefill - sent if limit is None else min(limit, prefill - sent)
        # a v3 request without max_total_tokens asks for one new token
        tokens = truncate if total is None else max(total - 1, truncate)
        need = -(-tokens // block)
        blocks += min(need, cap) if cap else need
        slots += tokens
        sent += truncate if version >= OPTIONAL_LIMITS_FROM or limit is None else limit
    if slots == prefill:
        return blocks, ""
    where = SRC.format("3.0.0", "backends/v3/src/client/grpc_client.rs") \
        if version >= OPTIONAL_LIMITS_FROM else SRC.format("2.0.0", "router/client/src/client.rs")
    capped = f", capped at the {shape.sliding_window}-token window" if cap else ""
    return blocks, (f"warm-up KV blocks: its requests at max_total_tokens {total}{capped}, "
                    f"{blocks * block} tokens ({where} warmup; "
                    "server/text_generation_server/models/flash_causal_lm.py from_pb)")


def _dense_mask_warmup(est: Estimate, version: Version, prefill: int, max_input: object,
                       tp: int, compute_bytes: float) -> int:
    """The bytes the warm-up's dense mask and one layer's masked-attention scores hold, for a
    vision-language model whose TGI release runs that path (0 otherwise)."""
    model_type = str(registry.catalog_config(est).get("model_type") or "")
    span = DENSE_MASK_WARMUP.get(model_type)
    if span is None or not span[0] <= version < span[1]:
        return 0
    longest = min(max_input, prefill) if isinstance(max_input, int) else prefill
    batch = -(-prefill // longest)  # the warm-up's requests, padded to the longest
    heads = -(-est.model.shape.num_heads // tp)
    square = batch * longest * longest
    return round(square * F32 + SCORE_COPIES * square * heads * compute_bytes)


ENGINE = registry.StartupEngine(
    name="tgi",
    parsers={"version": registry.version,
             "max_batch_prefill_tokens": lambda v, w: registry.whole(v, w, 1 << 22),
             "max_input_tokens": registry.tokens,
             "max_total_tokens": registry.tokens,
             "cuda_memory_fraction": registry.share, "wiggle_room": registry.share,
             "kv_cache_dtype": registry.text, "attention": registry.text},
    compute=compute,
    spellings={"tgi_wiggle_room": "wiggle_room", "max_batch_prefill": "max_batch_prefill_tokens",
               "max_input_length": "max_input_tokens",
               "engine_version": "version"},
)
