"""SGLang (`--engine sglang`): its static memory split and the KV token pool it profiles.

SGLang measures the GPU's free memory after start-up (total_gpu_memory), loads the weights,
and keeps total_gpu_memory x (1 - mem_fraction_static) for activations, CUDA graphs and the
request pool; what is left of the weights' side becomes the KV token pool:
    max_total_num_tokens = (free after weights - total x (1 - mem_fraction_static)) // cell
with cell = KV bytes of one token over all layers on one rank (MLA: the latent and the rope
key). Zero or less and it refuses: "Not enough memory. Please try to increase
--mem-fraction-static." Sources: sgl-project/sglang python/sglang/srt/model_executor/
model_runner.py (profile_max_num_token, init_memory_pool) and python/sglang/srt/server_args.py
(_handle_gpu_memory_settings) at commit 469c63e5.

Speculative decoding (`speculative_algorithm` and its options) is in sglang_spec.py: the draft's
weights and KV pool, outside the static share until 0.5.13 and inside it from 0.5.14.
"""

from __future__ import annotations

import re

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, field, frozen, replace
from vramest.inference.engines import registry, sglang_multimodal, sglang_spec
from vramest.inference.engines.startup import _kv_share
from vramest.inference.memory import ffn_width, kv_bytes_per_token
from vramest.inference.placement import per_gpu_memory
from vramest.model.precisions import kv_format, weight_format
from vramest.units import MIB, format_bytes

if TYPE_CHECKING:
    from vramest.inference.placement import FitPlan
    from vramest.model.shapes import ModelShape

SRC = "sgl-project/sglang@469c63e5:python/sglang/srt/"
READ_AT = "sglang@469c63e5"  # the default rules: the commit they were read at
# server_args.py _handle_gpu_memory_settings: (GPU memory below, MiB) -> (chunked prefill
# tokens, cuda_graph_max_bs at TP < 4, at TP >= 4)
BUCKETS = ((20 * 1024, 2048, 8, 8), (35 * 1024, 2048, 24, 80), (60 * 1024, 4096, 32, 160),
           (90 * 1024, 8192, 256, 512), (160 * 1024, 8192, 256, 512))
LARGEST_BUCKET = (16384, 512, 512)  # B200, MI300X
# reserved = 512 MiB metadata + 1.5 MiB per chunked-prefill token (at least 2048) + 2 MiB per
# CUDA-graph batch size + tp x pp / 8 GiB; at least 10 GiB on GPUs above 60 GiB
RESERVED_BASE_MIB = 512
RESERVED_PER_PREFILL_TOKEN_MIB = 1.5
RESERVED_PER_GRAPH_BS_MIB = 2
RESERVED_FLOOR_ABOVE_60G_MIB = 10 * 1024
# before sgl-project/sglang PR #10975 (Oct 2025, "General heuristics for
# --mem-fraction-static"): a share by TP size, chunked prefill 2048 below 25 GB else 8192
LEGACY_UNTIL = (0, 5, 4)  # the first release after the PR's merge, approximately
LEGACY_FRACTIONS = ((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87), (1, 0.88))
# v0.4.8 to v0.5.3 (server_args.py __post_init__ at v0.4.8.post1 and v0.4.9.post6, "GPU memory
# capacity = model weights + KV cache pool + activations + cuda graph buffers"): reserved GiB
# by the GPU's memory, then mem_fraction_static = (gpu_mem - reserved) / gpu_mem; chunked prefill
# 2048 below 35 GiB, 8192 below 160 GiB, else 16384. (GPU memory below, MiB) -> (base GiB,
# GiB per TP x PP rank)
BUCKETS_UNTIL = (0, 4, 8)  # the first release with the reserved-memory buckets
RESERVED_BUCKETS_048 = ((35 * 1024, 2.8, 0.1), (90 * 1024, 9.5, 0.5), (160 * 1024, 12.0, 0.5))
RESERVED_LARGEST_048_GIB = 32.0  # B200, MI300
# AMD GPUs: the aiter attention backend (the default on ROCm for MHA models, and for MLA models
# with 16 or 128 heads per rank) scales mem_fraction_static by 0.85 when the context is longer
# than 8192 tokens: model_runner.py model_specific_adjustment from v0.4.7 (v0.4.8.post1 line
# 436), server_args.py from v0.5.5, arg_groups/attention_hook.py in v0.5.23
AITER_SINCE = (0, 4, 7)
AITER_FACTOR = 0.85
AITER_CONTEXT_ABOVE = 8192
AITER_MLA_HEADS = (16, 128)
INT32 = 4


@frozen
class SGLangStartup:
    total_bytes: int  # free GPU memory after start-up (SGLang's total_gpu_memory), per GPU
    context_bytes: int  # the CUDA context (and NCCL buffers at TP > 1) taken before that
    mem_fraction_static: float
    weights_bytes: int
    reserved_bytes: int  # total x (1 - mem_fraction_static)
    kv_cache_bytes: int
    kv_bytes_per_token: float
    max_total_num_tokens: int
    context_len: int
    chunked_prefill_size: int
    cuda_graph_max_bs: int
    max_running_requests: int
    req_to_token_pool_bytes: int
    activation_peak_bytes: int  # one chunked-prefill forward, vramest's estimate
    cuda_graph_bytes: int
    rules: tuple[str, ...]
    request_tokens: int = 0  # the estimate's context x batch, what the pool must hold
    draft_kv_bytes_per_token: float = 0.0  # speculative decoding: the draft's pool, per token
    draft_reserve_bytes: int = 0  # what the draft takes from the reserved share (< v0.5.14)
    draft_transient_bytes: int = 0  # its placeholder embedding / head while its pool is made
    gpu0_extra_bytes: int = 0  # other processes' contexts and pictures on GPU 0 (multimodal)
    speculative: dict[str, object] = field(default_factory=dict)
    version: str = READ_AT  # the release the rules are for: as given, else the commit read

    @property
    def starts(self) -> bool:
        return self.max_total_num_tokens > 0

    @property
    def runtime_headroom_bytes(self) -> int:
        """What the reserved share has left once the request pool, a prefill chunk and the
        CUDA graphs are in it (negative: an out-of-memory error at run time, not start-up)."""
        # before v0.5.14 the draft's placeholder tables are freed before the graphs are captured
        later = self.activation_peak_bytes + self.cuda_graph_bytes
        return self.reserved_bytes - self.req_to_token_pool_bytes - self.draft_reserve_bytes \
            - max(later, self.draft_transient_bytes) - self.gpu0_extra_bytes

    def to_json(self) -> dict[str, object]:
        return {"name": "sglang", "version": self.version, "starts": self.starts,
                "total_bytes": self.total_bytes,
                "mem_fraction_static": self.mem_fraction_static,
                "weights_bytes": self.weights_bytes, "reserved_bytes": self.reserved_bytes,
                "kv_cache_bytes": self.kv_cache_bytes,
                "kv_bytes_per_token": self.kv_bytes_per_token,
                "max_total_num_tokens": self.max_total_num_tokens,
                "context_len": self.context_len, "chunked_prefill_size": self.chunked_prefill_size,
                "cuda_graph_max_bs": self.cuda_graph_max_bs,
                "max_running_requests": self.max_running_requests,
                "req_to_token_pool_bytes": self.req_to_token_pool_bytes,
                "activation_peak_bytes": self.activation_peak_bytes,
                "cuda_graph_bytes": self.cuda_graph_bytes,
                "runtime_headroom_bytes": self.runtime_headroom_bytes,
                "gpu0_extra_bytes": self.gpu0_extra_bytes,
                **({"speculative": dict(self.speculative)} if self.speculative else {}),
                "rules": list(self.rules)}

    def log_lines(self) -> list[str]:
        half = format_bytes(self.kv_cache_bytes / 2)
        lines = [f"{self.version} rules (--engine-option version=0.4.6 for a release)",
                 f"mem_fraction_static={self.mem_fraction_static}: "
                 f"{format_bytes(self.reserved_bytes)} of {format_bytes(self.total_bytes)} kept "
                 "for activations, CUDA graphs and the request pool",
                 f"Load weight end. mem usage={format_bytes(self.weights_bytes)}"]
        if self.starts:
            lines.append(f"KV Cache is allocated. #tokens: {self.max_total_num_tokens}, "
                         f"K size: {half}, V size: {half}")
            lines.append(f"max_total_num_tokens={self.max_total_num_tokens}, chunked_prefill_size="
                         f"{self.chunked_prefill_size}, max_running_requests="
                         f"{self.max_running_requests}, context_len={self.context_len}")
        else:
            lines.append("RuntimeError: Not enough memory. Please try to increase "
                         "--mem-fraction-static.")
        if self.starts and self.runtime_headroom_bytes < 0:
            lines.append(f"the reserved share is {format_bytes(-self.runtime_headroom_bytes)} "
                         "short of a prefill chunk + CUDA graphs + request pool"
                         + (" + the pictures' processes on GPU 0" if self.gpu0_extra_bytes
                            else "") + ": expect an "
                         "out-of-memory error under load (lower --mem-fraction-static or "
                         "--chunked-prefill-size)")
        return lines + list(self.rules)

    def engine_fit(self, plan: FitPlan) -> FitPlan:
        """SGLang fills the GPU by design: it starts when its pool holds a token, that is when
        the weights and the reserved share fit in what it measured as free, and it serves the
        request when the pool holds its context x batch tokens. The fit counts the KV the
        request needs, so the headroom is the pool's remainder, not the zero a full GPU always
        shows. Where the reserved share falls short under load the pool cannot give way (its
        buffers are allocated whole at start), so the whole pool and the shortfall count."""
        from vramest.inference.placement import PerGPU

        if not self.starts:
            kv, reserved = round(self.kv_bytes_per_token), self.reserved_bytes
        else:
            kv = round(max(self.request_tokens, 1) * (self.kv_bytes_per_token
                                                      + self.draft_kv_bytes_per_token))
            short = max(0, -self.runtime_headroom_bytes)
            if short:  # the pool's buffers are allocated whole at start (init_memory_pool):
                kv = max(kv, self.kv_cache_bytes)  # what the share lacks cannot come from it
            reserved = self.reserved_bytes + short
        per_gpu = PerGPU(self.weights_bytes, kv, reserved, self.context_bytes)
        return replace(plan, per_gpu=per_gpu, usable_bytes=self.total_bytes + self.context_bytes)


def compute(req: registry.StartupRequest) -> SGLangStartup:
    o, est, device, tp = req.options, req.est, req.device, max(req.tp, 1)
    if device is None:
        raise InputError("--engine sglang needs --gpu: its KV pool is what is left of the GPU's "
                         "memory.")
    c, shape = est.constants, est.model.shape
    if shape.state_layers:  # SGLang's Mamba/linear-attention state pool is not modelled
        raise InputError("--engine sglang does not model a recurrent state (Mamba, hybrid and "
                         "RWKV layers; SGLang keeps them in a pool of its own): use --engine "
                         "vllm or llamacpp for this model.")
    rules: list[str] = []
    gpu_mib = device.addressable_bytes / MIB  # get_device_memory_capacity: nvidia-smi's total
    given = o.get("version")
    version = given if isinstance(given, tuple) else None
    legacy = version is not None and version < LEGACY_UNTIL
    config = registry.catalog_config(est)
    spec = sglang_spec.spec_options(sglang_spec.with_flags(o, est.extras.get("speculative")),
                                    config)
    chunk, graph_bs = _defaults(gpu_mib, tp, legacy, version)
    chunk = int(o.get("chunked_prefill_size", chunk))  # type: ignore[call-overload]
    graph_bs = int(o.get("cuda_graph_max_bs", graph_bs))  # type: ignore[call-overload]
    fraction = o.get("mem_fraction_static")
    spec_reserve = sglang_spec.reserve_mib(spec, version)
    if not isinstance(fraction, float):
        if version is not None and version < BUCKETS_UNTIL:
            fraction, how = _legacy_fraction(tp), "before v0.4.8: by TP size"
        elif legacy:
            fraction = _bucket_fraction(gpu_mib, tp, spec_reserve)
            how = "v0.4.8-v0.5.3: reserved memory by the GPU's size"
        else:
            fraction = _fraction(gpu_mib, chunk, graph_bs, tp, spec_reserve)
            how = (f"_handle_gpu_memory_settings: {gpu_mib / 1024:.0f} GiB GPU, chunked prefill "
                   f"{chunk}, CUDA graphs up to batch {graph_bs}")
        rules.append(f"mem_fraction_static {fraction} by default ({SRC}server_args.py, {how}"
                     + (f"; {spec_reserve / 1024:g} GiB more for the draft" if spec_reserve
                        else "") + ")")
    # sglang/srt/hf_transformers_utils.py get_context_length: the config's length times a
    # RoPE scaling factor (llama3, longrope and su excepted), as vLLM derives it
    context_len = int(o.get("context_length") or shape.scaled_context or shape.max_context  # type: ignore[call-overload]
                      or est.settings.ctx)
    vision = sglang_multimodal.vision_rules(
        config, version, fraction, isinstance(o.get("mem_fraction_static"), float), tp,
        est.settings.batch, c.vllm_non_torch_bytes,
        fast_processor=not o.get("disable_fast_image_processor"))
    if vision is not None:
        fraction = vision.share
        rules.extend(vision.notes)
    if _aiter(device.vendor, shape, tp, spec, version) and context_len > AITER_CONTEXT_ABOVE:
        fraction = round(fraction * AITER_FACTOR, 4)
        rules.append(f"mem_fraction_static x {AITER_FACTOR} = {fraction}: the aiter attention "
                     f"backend (AMD) with a context above {AITER_CONTEXT_ABOVE} (model_runner.py "
                     "model_specific_adjustment, v0.4.7+)")
    context = c.vllm_non_torch_bytes + (c.nccl_buffer_bytes if tp > 1 else 0)
    # SGLang sizes from the free memory at start (get_available_gpu_memory): on unified memory
    # what the OS holds is not free
    total = device.reported_total_bytes(c.visible_memory_fraction) - context \
        - device.os_in_use_bytes
    weights = per_gpu_memory(est, tp).weights
    reserved = round(total * (1 - fraction))
    kv_dtype = str(o.get("kv_cache_dtype") or est.settings.kv_dtype)
    kv_element = kv_format(kv_dtype).bytes_per_element
    cell = kv_bytes_per_token(shape, kv_element) * _kv_share(shape, tp)
    asked = o.get("max_running_requests")
    spec_reqs = asked if isinstance(asked, int) else sglang_spec.MAX_RUNNING_REQUESTS
    draft = sglang_spec.draft_memory(spec, est, tp, kv_element, spec_reqs, version) \
        if spec else None
    if draft is not None and "speculative" in est.extras:  # --speculative put it in weights
        weights -= draft.weights_bytes
    rest = total - weights - reserved
    pool_cell = cell
    if draft is not None and draft.budgeted:  # v0.5.14+: both weights before the profile
        rest -= draft.weights_bytes + draft.placeholder_bytes
        pool_cell = cell + draft.kv_bytes_per_token
    profiled = max(0, int(rest // pool_cell)) if pool_cell else 0
    tokens = profiled + (draft.extra_tokens if draft is not None and profiled else 0)
    max_total = o.get("max_total_tokens")
    if isinstance(max_total, int) and tokens > max_total:
        tokens = max_total
    estimated = max(min(int(tokens / context_len * 512), 4096), 2048)
    max_reqs = min(estimated, tokens // 2)
    if isinstance(asked, int) or spec is not None:
        max_reqs = min(spec_reqs, tokens // 2)
    pool = (max_reqs + 1) * (context_len + 4) * INT32
    compute_bytes = weight_format(est.settings.dtype).compute_bytes
    prefill = chunk
    if vision is not None and vision.unchunked:  # the request's prompt in one forward
        prefill, chunk = max(est.settings.ctx * est.settings.batch, 1), -1
    activation = round(prefill * (c.activation_ffn_factor * ffn_width(shape) / tp
                                + c.vllm_activation_hidden_factor * shape.hidden_size)
                       * compute_bytes)
    # the draft's own graphs (EAGLEWorker.init_cuda_graphs: the draft and draft-extend
    # runners) counted like the target's
    graphs = 0 if o.get("disable_cuda_graph") else c.vllm_cuda_graph_bytes * (2 if spec else 1)
    draft_json: dict[str, object] = {}
    draft_reserve = 0
    if spec is not None and draft is not None:
        target_tokens = max(0, tokens - draft.extra_tokens) if not draft.budgeted else tokens
        draft_reserve = draft.out_of_reserve(target_tokens, cell) if tokens else 0
        draft_json = {"algorithm": spec.algorithm, "proposer": draft.method,
                      "num_steps": spec.steps, "eagle_topk": spec.topk,
                      "num_draft_tokens": spec.draft_tokens, "draft_model": spec.draft_model,
                      "draft_weights_bytes": draft.weights_bytes,
                      "draft_placeholder_bytes": draft.placeholder_bytes,
                      "draft_kv_bytes_per_token": draft.kv_bytes_per_token,
                      "draft_kv_cache_bytes": round(tokens * draft.kv_bytes_per_token),
                      "in_static_share": draft.budgeted,
                      "from_reserved_bytes": draft_reserve}
        rules.append(
            f"speculative {spec.algorithm} ({draft.method} proposer, steps {spec.steps}, topk "
            f"{spec.topk}, {spec.draft_tokens} draft tokens): draft weights "
            f"{format_bytes(draft.weights_bytes)} (+ {format_bytes(draft.placeholder_bytes)} of "
            "bf16 embedding / head placeholders until it shares the target's) and a draft KV "
            "pool of the same tokens at "
            f"{draft.kv_bytes_per_token:,.0f} B each "
            + ("inside mem_fraction_static (PR #23862, v0.5.14+)" if draft.budgeted else
               f"taken from the reserved share ({format_bytes(draft_reserve)}; "
               "sgl-project/sglang issue #6875, model_runner.py init_memory_pool "
               "draft_runner_cache_size)"))
    return SGLangStartup(total_bytes=total, context_bytes=context, mem_fraction_static=fraction,
                         weights_bytes=weights + (draft.weights_bytes if draft is not None
                                                  and draft.budgeted else 0),
                         reserved_bytes=reserved, kv_cache_bytes=round(tokens * cell),
                         kv_bytes_per_token=cell, max_total_num_tokens=tokens,
                         context_len=context_len, chunked_prefill_size=chunk,
                         cuda_graph_max_bs=graph_bs, max_running_requests=max(0, max_reqs),
                         req_to_token_pool_bytes=pool if tokens else 0,
                         activation_peak_bytes=activation, cuda_graph_bytes=graphs,
                         rules=tuple(rules), version="sglang==" + version_text(version)
                         if version is not None else READ_AT,
                         request_tokens=est.settings.ctx * est.settings.batch,
                         # before v0.5.14 the draft's pool is in draft_reserve_bytes already
                         draft_kv_bytes_per_token=draft.kv_bytes_per_token
                         if draft is not None and draft.budgeted else 0.0,
                         draft_reserve_bytes=draft_reserve,
                         draft_transient_bytes=draft.placeholder_bytes
                         if draft is not None and not draft.budgeted else 0,
                         speculative=draft_json,
                         gpu0_extra_bytes=vision.gpu0_bytes if vision is not None else 0)


def _aiter(vendor: str, shape: ModelShape, tp: int, spec: object,
           version: tuple[int, ...] | None) -> bool:
    """Whether SGLang picks the aiter attention backend on this GPU (model_runner.py
    model_specific_adjustment at v0.4.8.post1; server_args.py from v0.5.5)."""
    if vendor != "amd" or (version is not None and version < AITER_SINCE):
        return False
    if not shape.is_mla:
        return True
    per_rank = shape.num_kv_heads // tp if shape.num_kv_heads % tp == 0 else 0
    # v0.4.x also asked for no speculative decoding (spec_algorithm.is_none())
    return per_rank in AITER_MLA_HEADS and (spec is None or (
        version is not None and version >= LEGACY_UNTIL))


def _defaults(gpu_mib: float, tp: int, legacy: bool,
              version: tuple[int, ...] | None = None) -> tuple[int, int]:
    if legacy:
        if version is not None and version >= BUCKETS_UNTIL:
            chunk = 2048 if gpu_mib < 35 * 1024 else 8192 if gpu_mib < 160 * 1024 else 16384
        else:
            chunk = 2048 if gpu_mib < 25_000 else 8192
        return chunk, (8 if gpu_mib < 25_000 else 160)
    for below, chunk, small_tp, large_tp in BUCKETS:
        if gpu_mib < below:
            return chunk, small_tp if tp < 4 else large_tp
    return LARGEST_BUCKET[0], LARGEST_BUCKET[1]


def _fraction(gpu_mib: float, chunk: int, graph_bs: int, tp: int, extra_mib: float = 0.0) -> float:
    reserved = RESERVED_BASE_MIB + max(chunk, 2048) * RESERVED_PER_PREFILL_TOKEN_MIB \
        + graph_bs * RESERVED_PER_GRAPH_BS_MIB + tp / 8 * 1024
    if gpu_mib > 60 * 1024:
        reserved = max(reserved, RESERVED_FLOOR_ABOVE_60G_MIB)
    return round((gpu_mib - reserved - extra_mib) / gpu_mib, 3)


def _bucket_fraction(gpu_mib: float, tp: int, extra_mib: float = 0.0) -> float:
    base, per_rank = RESERVED_LARGEST_048_GIB, 0.0
    for below, gib, rank_gib in RESERVED_BUCKETS_048:
        if gpu_mib < below:
            base, per_rank = gib, rank_gib
            break
    reserved = (base + tp * per_rank) * 1024 + extra_mib
    return round((gpu_mib - reserved) / gpu_mib, 3)


# a post release: "0.4.6.post1", whose rules differ from "0.4.6.post3"
_POST = re.compile(r"(.*\d)\.?post(\d+)")


def version(value: object, what: str) -> tuple[int, ...]:
    """registry.version with a post release as a fourth number: '0.4.6.post1' -> (0, 4, 6, 1)."""
    post = _POST.fullmatch(value.strip().lower()) if isinstance(value, str) else None
    if post is None:
        return registry.version(value, what)
    return (*registry.version(post[1], what), int(post[2]))


def version_text(parts: tuple[int, ...]) -> str:
    """(0, 4, 6, 1) -> '0.4.6.post1'."""
    return ".".join(map(str, parts[:3])) + (f".post{parts[3]}" if len(parts) > 3 else "")


def _legacy_fraction(tp: int) -> float:
    return next(f for at_least, f in LEGACY_FRACTIONS if tp >= at_least)


ENGINE = registry.StartupEngine(
    name="sglang",
    parsers={"version": version, "mem_fraction_static": registry.share,
             "chunked_prefill_size": lambda v, w: registry.whole(v, w, 1 << 20),
             "cuda_graph_max_bs": lambda v, w: registry.whole(v, w, 4096),
             "context_length": registry.tokens, "max_total_tokens": registry.tokens,
             "max_running_requests": lambda v, w: registry.whole(v, w, 1 << 20),
             "kv_cache_dtype": registry.text, "disable_cuda_graph": registry.switch,
             "disable_fast_image_processor": registry.switch,
             **sglang_spec.PARSERS},
    compute=compute,
    spellings={"mem_frac": "mem_fraction_static", "context_len": "context_length",
               "engine_version": "version"},
)
