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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramest.errors import InputError
from vramest.frozen import frozen, replace
from vramest.inference.engines import registry
from vramest.inference.engines.startup import _kv_share
from vramest.inference.memory import ffn_width, kv_bytes_per_token
from vramest.inference.placement import per_gpu_memory
from vramest.model.precisions import kv_format, weight_format
from vramest.units import MIB, format_bytes

if TYPE_CHECKING:
    from vramest.inference.placement import FitPlan

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
    version: str = READ_AT  # the release the rules are for: as given, else the commit read

    @property
    def starts(self) -> bool:
        return self.max_total_num_tokens > 0

    @property
    def runtime_headroom_bytes(self) -> int:
        """What the reserved share has left once the request pool, a prefill chunk and the
        CUDA graphs are in it (negative: an out-of-memory error at run time, not start-up)."""
        return self.reserved_bytes - self.req_to_token_pool_bytes - \
            self.activation_peak_bytes - self.cuda_graph_bytes

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
                "runtime_headroom_bytes": self.runtime_headroom_bytes, "rules": list(self.rules)}

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
                         "short of a prefill chunk + CUDA graphs + request pool: expect an "
                         "out-of-memory error under load (lower --mem-fraction-static or "
                         "--chunked-prefill-size)")
        return lines + list(self.rules)

    def engine_fit(self, plan: FitPlan) -> FitPlan:
        """SGLang fills the GPU by design: it starts when its pool holds a token, that is when
        the weights and the reserved share fit in what it measured as free, and it serves the
        request when the pool holds its context x batch tokens. The fit counts the KV the
        request needs, so the headroom is the pool's remainder (less any shortfall of the
        reserved share under load), not the zero a full GPU always shows."""
        from vramest.inference.placement import PerGPU

        if not self.starts:
            kv, reserved = round(self.kv_bytes_per_token), self.reserved_bytes
        else:
            kv = round(max(self.request_tokens, 1) * self.kv_bytes_per_token)
            reserved = self.reserved_bytes + max(0, -self.runtime_headroom_bytes)
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
    version = o.get("version")
    legacy = isinstance(version, tuple) and version < LEGACY_UNTIL
    chunk, graph_bs = _defaults(gpu_mib, tp, legacy)
    chunk = int(o.get("chunked_prefill_size", chunk))  # type: ignore[call-overload]
    graph_bs = int(o.get("cuda_graph_max_bs", graph_bs))  # type: ignore[call-overload]
    fraction = o.get("mem_fraction_static")
    if not isinstance(fraction, float):
        fraction = _legacy_fraction(tp) if legacy else _fraction(gpu_mib, chunk, graph_bs, tp)
        rules.append(f"mem_fraction_static {fraction} by default ({SRC}server_args.py "
                     + ("before PR #10975: by TP size)" if legacy else
                        f"_handle_gpu_memory_settings: {gpu_mib / 1024:.0f} GiB GPU, chunked "
                        f"prefill {chunk}, CUDA graphs up to batch {graph_bs})"))
    context = c.vllm_non_torch_bytes + (c.nccl_buffer_bytes if tp > 1 else 0)
    # SGLang sizes from the free memory at start (get_available_gpu_memory): on unified memory
    # what the OS holds is not free
    total = device.reported_total_bytes(c.visible_memory_fraction) - context \
        - device.os_in_use_bytes
    weights = per_gpu_memory(est, tp).weights
    reserved = round(total * (1 - fraction))
    kv_dtype = str(o.get("kv_cache_dtype") or est.settings.kv_dtype)
    cell = kv_bytes_per_token(shape, kv_format(kv_dtype).bytes_per_element) * _kv_share(shape, tp)
    rest = total - weights - reserved
    tokens = max(0, int(rest // cell)) if cell else 0
    max_total = o.get("max_total_tokens")
    if isinstance(max_total, int) and tokens > max_total:
        tokens = max_total
    # sglang/srt/hf_transformers_utils.py get_context_length: the config's length times a
    # RoPE scaling factor (llama3, longrope and su excepted), as vLLM derives it
    context_len = int(o.get("context_length") or shape.scaled_context or shape.max_context  # type: ignore[call-overload]
                      or est.settings.ctx)
    estimated = max(min(int(tokens / context_len * 512), 4096), 2048)
    max_reqs = min(estimated, tokens // 2)
    asked = o.get("max_running_requests")
    if isinstance(asked, int):
        max_reqs = min(asked, tokens // 2)
    pool = (max_reqs + 1) * (context_len + 4) * INT32
    compute_bytes = weight_format(est.settings.dtype).compute_bytes
    activation = round(chunk * (c.activation_ffn_factor * ffn_width(shape) / tp
                                + c.vllm_activation_hidden_factor * shape.hidden_size)
                       * compute_bytes)
    graphs = 0 if o.get("disable_cuda_graph") else c.vllm_cuda_graph_bytes
    return SGLangStartup(total_bytes=total, context_bytes=context, mem_fraction_static=fraction,
                         weights_bytes=weights,
                         reserved_bytes=reserved, kv_cache_bytes=round(tokens * cell),
                         kv_bytes_per_token=cell, max_total_num_tokens=tokens,
                         context_len=context_len, chunked_prefill_size=chunk,
                         cuda_graph_max_bs=graph_bs, max_running_requests=max(0, max_reqs),
                         req_to_token_pool_bytes=pool if tokens else 0,
                         activation_peak_bytes=activation, cuda_graph_bytes=graphs,
                         rules=tuple(rules), version=READ_AT if not isinstance(version, tuple)
                         else "sglang==" + ".".join(map(str, version)),
                         request_tokens=est.settings.ctx * est.settings.batch)


def _defaults(gpu_mib: float, tp: int, legacy: bool) -> tuple[int, int]:
    if legacy:
        return (2048 if gpu_mib < 25_000 else 8192), (8 if gpu_mib < 25_000 else 160)
    for below, chunk, small_tp, large_tp in BUCKETS:
        if gpu_mib < below:
            return chunk, small_tp if tp < 4 else large_tp
    return LARGEST_BUCKET[0], LARGEST_BUCKET[1]


def _fraction(gpu_mib: float, chunk: int, graph_bs: int, tp: int) -> float:
    reserved = RESERVED_BASE_MIB + max(chunk, 2048) * RESERVED_PER_PREFILL_TOKEN_MIB \
        + graph_bs * RESERVED_PER_GRAPH_BS_MIB + tp / 8 * 1024
    if gpu_mib > 60 * 1024:
        reserved = max(reserved, RESERVED_FLOOR_ABOVE_60G_MIB)
    return round((gpu_mib - reserved) / gpu_mib, 3)


def _legacy_fraction(tp: int) -> float:
    return next(f for at_least, f in LEGACY_FRACTIONS if tp >= at_least)


ENGINE = registry.StartupEngine(
    name="sglang",
    parsers={"version": registry.version, "mem_fraction_static": registry.share,
             "chunked_prefill_size": lambda v, w: registry.whole(v, w, 1 << 20),
             "cuda_graph_max_bs": lambda v, w: registry.whole(v, w, 4096),
             "context_length": registry.tokens, "max_total_tokens": registry.tokens,
             "max_running_requests": lambda v, w: registry.whole(v, w, 1 << 20),
             "kv_cache_dtype": registry.text, "disable_cuda_graph": registry.switch},
    compute=compute,
    spellings={"mem_frac": "mem_fraction_static", "context_len": "context_length",
               "engine_version": "version"},
)
