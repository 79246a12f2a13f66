"""One replica's memory: weights, KV cache, activations and overhead of a resolved model."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING, field, frozen, replace
from vramest.inference.constants import DEFAULTS, Constants
from vramest.inference.memory import (
    ATTENTION_KINDS,
    EAGER_ONLY_FAMILIES,
    MemoryBreakdown,
    activations_part,
    kv_part,
    overhead_part,
    weights_part,
)
from vramest.model.precisions import (
    KVFormat,
    WeightFormat,
    default_kv_format,
    kv_format,
    unquantized_modules,
    weight_format,
)
from vramest.model.resolve import ModelInfo
from vramest.model.shapes import LAYER_SLIDING
from vramest.units import format_count, parse_positive_int, parse_tokens

if TYPE_CHECKING:  # placement and throughput import Estimate; these names type its fields only
    from typing import Any, Protocol

    from vramest.inference.placement import DeviceOption, FitPlan
    from vramest.inference.throughput import Throughput

    class EngineReport(Protocol):
        """What an engine's start-up accounting gives (vLLM, llama.cpp, transformers, …)."""

        def to_json(self) -> dict[str, object]: ...

        def log_lines(self) -> list[str]: ...

DEFAULT_CTX = 4096


@frozen
class Settings:
    dtype: str
    kv_dtype: str
    ctx: int
    batch: int
    prefill_chunk: int
    attention: str

    @property
    def explicit_chunk(self) -> int | None:
        """The prefill chunk the user asked for, when it is shorter than the context."""
        return self.prefill_chunk if self.prefill_chunk < self.ctx else None

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "kv_dtype": self.kv_dtype, "ctx": self.ctx,
                "batch": self.batch, "prefill_chunk": self.prefill_chunk,
                "attention": self.attention}


@frozen
class Estimate:
    model: ModelInfo
    settings: Settings
    memory: MemoryBreakdown
    assumptions: tuple[str, ...]
    constants: Constants
    constants_source: str = "defaults"
    fit: FitPlan | None = None  # when a GPU was named
    throughput: Throughput | None = None  # when a GPU was named
    gpu_options: tuple[DeviceOption, ...] = ()  # the fewest cards of each common GPU, otherwise
    speeds: tuple[Throughput | None, ...] = ()  # per option (None where it does not fit)
    engine_report: EngineReport | None = None  # the engine's own start-up figures
    extras: Mapping[str, Any] = field(default_factory=dict)  # read-only once returned

    @property
    def total_bytes(self) -> int:
        return self.memory.total

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model.to_json(),
            "settings": self.settings.to_json(),
            "memory": self.memory.to_json(),
            "formulas": {p.name: p.formula for p in self.memory.parts()},
            "constants": {"source": self.constants_source, **self.constants.as_dict()},
            "assumptions": list(self.assumptions),
        }
        if self.fit is not None:
            out["fit"] = self.fit.to_json()
        if self.throughput is not None:
            out["throughput"] = self.throughput.to_json()
        if self.engine_report is not None:
            out["engine"] = self.engine_report.to_json()
        if self.gpu_options:
            out["gpus"] = [_option_json(o, t) for o, t in
                           zip(self.gpu_options, self.speeds, strict=True)]
        if self.extras:
            import copy  # only here: the module and its weakref cost every start-up 0.6 ms

            out.update(copy.deepcopy(dict(self.extras)))  # the answer may be shared: copy
        return out


def _option_json(option: DeviceOption, speed: Throughput | None) -> dict[str, Any]:
    out: dict[str, Any] = {"gpu": option.device.name, "fits": option.plan is not None}
    if option.plan is not None:
        out.update(num_gpus=option.plan.num_gpus, per_gpu_bytes=option.plan.per_gpu.total,
                   usable_bytes=option.plan.usable_bytes,
                   headroom_bytes=option.plan.headroom_bytes, verdict=option.plan.verdict)
    else:
        out.update(verdict="does-not-fit", reason=option.reason)
    if speed is not None:
        out["decode_tokens_per_s"] = speed.decode_tokens_per_s
        out["prefill_tokens_per_s"] = speed.prefill_tokens_per_s
    return out


def estimate_for(info: ModelInfo, *, dtype: str | None = None, ctx: str | int | None = None,
                 batch: str | int = 1, kv_dtype: str | None = None, attention: str = "sdpa",
                 prefill_chunk: str | int | None = None, constants: Constants | None = None,
                 constants_source: str = "defaults") -> Estimate:
    """The memory estimate for an already-resolved model (reused by sweeps and fit planning)."""
    args = (info, dtype, ctx, batch, kv_dtype, attention, prefill_chunk, constants,
            constants_source)
    try:
        hash(args)
    except TypeError:  # junk from the API: the uncached path says what is wrong
        return _estimate_for(*args)
    return _estimate_for_cached(*args)


def _estimate_for(info: ModelInfo, dtype: str | None, ctx: str | int | None, batch: str | int,
                  kv_dtype: str | None, attention: str, prefill_chunk: str | int | None,
                  constants: Constants | None, constants_source: str) -> Estimate:
    constants = constants or DEFAULTS
    shape = info.shape
    fmt_name = dtype or info.native_format or info.stored_format or "bf16"
    fmt = weight_format(fmt_name)
    if dtype is None and info.native_unquantized and fmt.gguf_rule is None:
        fmt = replace(fmt, name=fmt.name, description=f"{fmt.description}; as the checkpoint "
                      f"leaves {', '.join(info.native_unquantized[:6])}"
                      f"{' …' if len(info.native_unquantized) > 6 else ''} unquantized",
                      unquantized=unquantized_modules(list(info.native_unquantized)))
    kv = kv_format(kv_dtype) if kv_dtype else default_kv_format(fmt)
    ctx_tokens = parse_tokens(ctx) if ctx is not None else min(
        DEFAULT_CTX, shape.max_context or DEFAULT_CTX)
    batch_n = parse_positive_int(batch, what="--batch")
    chunk = parse_tokens(prefill_chunk, what="--prefill-chunk") if prefill_chunk else ctx_tokens
    chunk = min(chunk, ctx_tokens)
    if attention not in ATTENTION_KINDS:
        raise InputError(f"Unknown --attn {short(attention)}; accepted: {', '.join(ATTENTION_KINDS)}.")
    eager_only = shape.family in EAGER_ONLY_FAMILIES and attention != "eager"
    if eager_only:
        attention = "eager"
    exact = _exact_weights(info, fmt, dtype)
    memory = MemoryBreakdown(
        weights=weights_part(shape, fmt, exact),
        kv_cache=kv_part(shape, kv, ctx_tokens, batch_n),
        activations=activations_part(shape, fmt, chunk, ctx_tokens, batch_n, attention,
                                     constants),
        overhead=overhead_part(constants, constants_source),
    )
    settings = Settings(dtype=fmt.name, kv_dtype=kv.name, ctx=ctx_tokens, batch=batch_n,
                        prefill_chunk=chunk, attention=attention)
    assumptions = _assumptions(info, fmt, kv, settings, dtype is None, ctx is None,
                               exact is not None, constants_source)
    if eager_only:
        assumptions = (*assumptions, f"transformers implements only eager attention for "
                       f"{shape.family}: the scores are materialised.")
    return Estimate(model=info, settings=settings, memory=memory, assumptions=assumptions,
                    constants=constants, constants_source=constants_source)


_estimate_for_cached = lru_cache(maxsize=4096)(_estimate_for)  # searches ask for a point again


def estimate_at(est: Estimate, *, ctx: int | None = None, batch: int | None = None) -> Estimate:
    """The same model and settings at another context length or batch."""
    s = est.settings
    new_ctx = ctx or s.ctx
    chunk = s.explicit_chunk
    return estimate_for(est.model, dtype=s.dtype, ctx=new_ctx, batch=batch or s.batch,
                        kv_dtype=s.kv_dtype, attention=s.attention,
                        prefill_chunk=min(chunk, new_ctx) if chunk else None,
                        constants=est.constants, constants_source=est.constants_source)


def _exact_weights(info: ModelInfo, fmt: WeightFormat, dtype_given: str | None) -> int | None:
    """Stored tensor bytes count as the weights when the model runs as stored."""
    if info.exact_weights_bytes is None:
        return None
    if dtype_given is None or (info.stored_format and weight_format(
            info.stored_format).name == fmt.name):
        return info.exact_weights_bytes
    return None


def _assumptions(info: ModelInfo, fmt: WeightFormat, kv: KVFormat, s: Settings,
                 dtype_defaulted: bool, ctx_defaulted: bool, exact: bool,
                 constants_source: str) -> tuple[str, ...]:
    shape = info.shape
    out = []
    if info.source == "params":
        out.append(f"Model shape: {info.origin}.")
    elif info.source == "catalog":
        out.append(f"Model shape from the catalog entry {info.name} ({info.origin}).")
    else:
        out.append(f"Model shape read from {info.origin}.")
    out += [f"Model shape: {note}." for note in shape.notes]
    if shape.architecture == "encoder":
        out.append("Encoder: one forward over batch × ctx input tokens (an embedding or rerank "
                   "batch); no KV cache and no vocabulary logits.")
    elif shape.architecture == "encoder-decoder":
        out.append("Encoder-decoder: the encoder reads the input once; each decoder layer "
                   "keeps self-attention KV for the generated tokens (ctx) and cross-attention "
                   "KV for the encoder's tokens"
                   + (f" ({shape.encoder_context}, fixed)." if shape.encoder_context else
                      " (taken as ctx as well)."))
    if exact:
        out.append("Weights are the exact stored tensor bytes of the model files.")
    out.append(f"Weights: {fmt.description}.")
    if dtype_defaulted:
        out.append(f"No --dtype given: using the model's own precision, {fmt.name}.")
    out.append(f"KV cache in {kv.name}" + (" (the compute dtype; --kv-dtype changes it)."
                                           if kv.name in ("fp16", "bf16", "fp32") else "."))
    if shape.is_mla:
        out.append("MLA KV cache stored as the compressed latent plus the rope key, as vLLM, "
                   "SGLang and llama.cpp do; transformers stores full keys and values instead.")
    if shape.sliding_window and shape.kinds().count("sliding"):
        out.append(f"Sliding-window layers keep at most {shape.sliding_window} tokens.")
    if ctx_defaulted:
        out.append(f"No --ctx given: {s.ctx} tokens.")
    if shape.max_context and s.ctx > shape.max_context:
        out.append(f"--ctx {s.ctx} is beyond the model's trained context of {shape.max_context}.")
    out.append(f"Activations: one prefill forward over {s.prefill_chunk} tokens × batch "
               f"{s.batch} with {s.attention} attention, logits kept for the last position.")
    if shape.is_moe:
        out.append(f"Mixture of experts: all {shape.num_experts} experts are held in memory; "
                   f"{shape.experts_per_token} run per token "
                   f"({format_count(info.active_params)} active parameters).")
    out.append(f"Runtime overhead (CUDA context, workspaces) from {constants_source}; a "
               "calibration profile replaces it with a measured value.")
    if LAYER_SLIDING in shape.kinds():
        out.append("The memory table is as serving engines hold it, sliding layers keeping "
                   "their window; transformers keeps the whole last prefill chunk there until "
                   "the next token (--engine hf counts it). An --engine (vllm, llamacpp, ollama, "
                   "sglang, tgi, ...) adds its own start-up accounting, which its fit uses.")
    else:
        out.append("The memory table is as transformers holds it; an --engine (vllm, llamacpp, "
                   "ollama, sglang, tgi, ...) adds its own start-up accounting, which its fit "
                   "uses.")
    return tuple(out)
