"""The public estimate: resolve the model, then add up its memory. The CLI is a thin layer on this."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from vramest.errors import InputError, require_text
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
from vramest.model.catalog import default_catalog, shape_for_params
from vramest.model.precisions import (
    KVFormat,
    WeightFormat,
    default_kv_format,
    kv_format,
    unquantized_modules,
    weight_format,
)
from vramest.model.shapes import ModelShape, with_overrides
from vramest.units import (
    MAX_SHAPE_SIZE,
    format_count,
    parse_params,
    parse_positive_int,
    parse_tokens,
)

DEFAULT_CTX = 4096
_NATIVE_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "bf16": "bf16",
                  "fp16": "fp16", "fp32": "fp32"}
SHAPE_OVERRIDES = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                   "intermediate_size", "vocab_size")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # "catalog", "params", "config", "safetensors", "gguf"
    origin: str  # where the shape came from: a URL, a path, or how it was derived
    shape: ModelShape
    params: int
    active_params: int
    published_params: int | None = None
    borrowed_from: tuple[str, ...] = ()
    exact_weights_bytes: int | None = None  # bytes of the stored tensors, when files were read
    stored_format: str | None = None  # the format the files store the weights in
    native_format: str | None = None  # the model's own precision/quantization (config/catalog)
    native_unquantized: tuple[str, ...] = ()  # its ignore list: modules left in 16 bit

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "origin": self.origin,
            "params": self.params,
            "active_params": self.active_params,
            "shape": self.shape.summary(),
        }
        if self.published_params:
            out["published_params"] = self.published_params
        if self.borrowed_from:
            out["borrowed_from"] = list(self.borrowed_from)
        if self.exact_weights_bytes is not None:
            out["stored_weights_bytes"] = self.exact_weights_bytes
        return out


@dataclass(frozen=True)
class Settings:
    dtype: str
    kv_dtype: str
    ctx: int
    batch: int
    prefill_chunk: int
    attention: str

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "kv_dtype": self.kv_dtype, "ctx": self.ctx,
                "batch": self.batch, "prefill_chunk": self.prefill_chunk,
                "attention": self.attention}


@dataclass(frozen=True)
class Estimate:
    model: ModelInfo
    settings: Settings
    memory: MemoryBreakdown
    assumptions: tuple[str, ...]
    constants: Constants
    constants_source: str = "defaults"
    fit: Any = None  # vramest.inference.placement.FitPlan when a GPU was named
    throughput: Any = None  # vramest.inference.throughput.Throughput when a GPU was named
    gpu_options: tuple[Any, ...] = ()  # vramest.inference.placement.DeviceOption per common GPU, otherwise
    speeds: tuple[Any, ...] = ()  # Throughput per option (None where it does not fit)
    engine_report: Any = None  # vLLM / llama.cpp start-up figures (vramest.inference.engines.startup)
    extras: dict[str, Any] = field(default_factory=dict)

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
        out.update(self.extras)
        return out


def _option_json(option: Any, speed: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"gpu": option.device.name, "fits": option.plan is not None}
    if option.plan is not None:
        out.update(num_gpus=option.plan.num_gpus, per_gpu_bytes=option.plan.per_gpu.total,
                   usable_bytes=option.plan.usable_bytes,
                   headroom_bytes=option.plan.headroom_bytes)
    else:
        out["reason"] = option.reason
    if speed is not None:
        out["decode_tokens_per_s"] = speed.decode_tokens_per_s
        out["prefill_tokens_per_s"] = speed.prefill_tokens_per_s
    return out


def resolve_model(*, params: str | int | None = None, model: str | None = None,
                  family: str = "llama", active_params: str | int | None = None,
                  overrides: dict[str, int | None] | None = None) -> ModelInfo:
    """Find the model's shape: from its files, the catalog, or a parameter count."""
    if params is None and model is None:
        raise InputError("Give --params (such as 7B or 70B) or --model (a catalog name, "
                         "a config.json, a model folder or a .gguf file).")
    active = parse_params(active_params, what="--active-params") if active_params else None
    if model is not None:
        info = _model_from_name_or_path(model)
    else:
        assert params is not None
        count = parse_params(params)
        if active is not None and active > count:
            raise InputError(f"--active-params {format_count(active)} is larger than --params "
                             f"{format_count(count)}; active parameters are a subset.")
        borrowed = shape_for_params(count, family, active)
        shape = borrowed.shape
        info = ModelInfo(name=shape.name, source="params", origin=borrowed.explanation,
                         shape=shape, params=shape.param_count(),
                         active_params=active or shape.active_param_count(),
                         borrowed_from=borrowed.borrowed_from)
    if overrides and any(v is not None for v in overrides.values()):
        shape = with_overrides(info.shape, **overrides)
        info = ModelInfo(name=shape.name, source=info.source, origin=info.origin, shape=shape,
                         params=shape.param_count(), active_params=shape.active_param_count(),
                         borrowed_from=info.borrowed_from)
    return info


def _looks_like_path(text: str) -> bool:
    return (os.sep in text and os.path.exists(text)) or text.endswith(
        (".json", ".gguf", ".safetensors")) or os.path.isdir(text) or text.startswith(".")


def _model_from_name_or_path(model: str) -> ModelInfo:
    catalog = default_catalog()
    entry = catalog.get(model)
    if entry is not None:
        shape = entry.shape()
        return ModelInfo(name=entry.id, source="catalog", origin=entry.source, shape=shape,
                         params=shape.param_count(), active_params=shape.active_param_count(),
                         published_params=entry.published_params,
                         native_format=_native_format(entry.config),
                         native_unquantized=_ignore_list(entry.config))
    if _looks_like_path(model):
        return _model_from_path(model)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        return _model_from_hub(model, catalog.suggest(model))
    raise InputError(f"Unknown model {model!r}; {catalog.suggest(model)}")


def _model_from_hub(repo_id: str, suggestion: str) -> ModelInfo:
    """A hub id outside the catalog: its config and safetensors headers, fetched and cached."""
    from vramest.readers.hub import fetch_hub_model

    try:
        folder = fetch_hub_model(repo_id)
    except InputError as exc:
        raise InputError(f"{exc} ({suggestion})") from None
    info = _model_from_path(str(folder))
    return replace(info, name=repo_id, source="hub", origin=f"https://huggingface.co/{repo_id}")


def _ignore_list(config: dict[str, Any]) -> tuple[str, ...]:
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return ()
    patterns: list[Any] = []
    for key in ("modules_to_not_convert", "ignore", "llm_int8_skip_modules"):
        value = quant.get(key)
        if isinstance(value, list):
            patterns += value
    return tuple(str(p) for p in patterns if isinstance(p, str))


def _model_from_path(path: str) -> ModelInfo:
    if not os.path.exists(path):
        raise InputError(f"No such file or folder: {path}; --model takes a catalog name, a "
                         "config.json, a model folder or a .gguf file.")
    from vramest.model.shapes import shape_from_config
    from vramest.readers.inspect import inspect_path

    found = inspect_path(path)
    shape = shape_from_config(found.config, os.path.basename(os.path.abspath(path)), origin=path)
    return ModelInfo(
        name=shape.name, source=found.kind, origin=os.path.abspath(path), shape=shape,
        params=found.params or shape.param_count(), active_params=shape.active_param_count(),
        exact_weights_bytes=found.weights_bytes, stored_format=_stored_format(found),
        native_format=_native_format(found.config),
        native_unquantized=_ignore_list(found.config),
    )


_STORED_LABELS = {"bf16": "bf16", "f16": "fp16", "f32": "fp32", "f8_e4m3": "fp8",
                  "f8_e5m2": "fp8", "gptq-int4": "gptq-int4", "awq-int4": "awq-int4",
                  "bnb-nf4": "nf4", "bnb-fp4": "nf4", "bnb-int8": "int8", "i8": "int8",
                  "mxfp4": "mxfp4-experts", "compressed-int4": "int4", "compressed-int8": "int8",
                  "mostly_f16": "gguf-f16", "mostly_bf16": "gguf-bf16", "all_f32": "gguf-f32",
                  "mostly_mxfp4_moe": "mxfp4_moe"}


def _stored_format(found: Any) -> str | None:
    """The --dtype name of the format the files store most weights in."""
    quant = found.quantization or {}
    if found.kind == "gguf":
        label = str(quant.get("file_type") or "").lower()
        name = _STORED_LABELS.get(label, label.removeprefix("mostly_"))
    else:
        dtypes = found.params_by_dtype or {}
        if not dtypes:
            return None
        label = str(max(dtypes, key=lambda k: dtypes[k])).lower()
        name = _STORED_LABELS.get(label, label)
    try:
        return weight_format(name).name
    except InputError:
        return None


def _compressed_tensors_format(quant: dict[str, Any]) -> str | None:
    """compressed-tensors: the weights' num_bits and type of its first config group."""
    groups = quant.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        return None
    first = next(iter(groups.values()))
    weights = first.get("weights") if isinstance(first, dict) else None
    if not isinstance(weights, dict):
        return None
    bits, kind = weights.get("num_bits"), str(weights.get("type", "")).lower()
    if bits == 8:
        return "fp8" if kind == "float" else "int8"
    if bits == 4:
        return "int4"
    return None


def _native_format(config: dict[str, Any]) -> str | None:
    quant = config.get("quantization_config")
    if isinstance(quant, dict):
        method = str(quant.get("quant_method", "")).lower()
        if method == "mxfp4":
            return "mxfp4-experts"
        if method in ("gptq", "awq") and quant.get("bits", 4) == 4:
            group = quant.get("group_size", 128)
            if group == -1 or not isinstance(group, int):  # one scale per output channel
                group = 1024
            group = min((32, 64, 128, 256, 512, 1024), key=lambda g: abs(g - group))
            return f"{method}-int4" if group == 128 else f"{method}-int4-g{group}"
        if method in ("fp8", "fbgemm_fp8"):
            return "fp8"
        if method == "compressed-tensors":
            return _compressed_tensors_format(quant)
        if method == "bitsandbytes":
            if not quant.get("load_in_4bit"):
                return "int8"
            return "bnb-nf4-dq" if quant.get("bnb_4bit_use_double_quant") else "nf4"
    text = config.get("text_config")
    dtype = config.get("torch_dtype") or config.get("dtype") or (
        text.get("torch_dtype") if isinstance(text, dict) else None)
    return _NATIVE_DTYPES.get(str(dtype).lower()) if dtype else None


def estimate(*, params: str | int | None = None, model: str | None = None,
             dtype: str | None = None, ctx: str | int | None = None, batch: str | int = 1,
             kv_dtype: str | None = None, active_params: str | int | None = None,
             family: str = "llama", attention: str = "sdpa",
             prefill_chunk: str | int | None = None, constants: Constants | None = None,
             constants_source: str = "defaults", gpu: str | None = None,
             num_gpus: int | str = 1, pp: int | str = 1, reserve: str | float | None = None,
             max_ctx: bool = False, max_batch: bool = False, prompt: str | int | None = None,
             gen: str | int = 128, engine: str = "generic", hardware_file: str | None = None,
             compare_gpus: bool = False, engine_options: dict[str, Any] | None = None,
             profile: str | None = None, **shape_overrides: int | None) -> Estimate:
    """Estimate the memory a model needs for inference, and with `gpu` whether and how fast it
    runs there (or, with `compare_gpus`, the fewest cards of each common GPU). `profile`, a
    calibration profile (`vramest calibrate`), replaces the constants it fitted; with
    `gpu="local"` (or its device's name) speed uses the device figures it measured.

    >>> estimate(params="70B", dtype="int4", ctx=8192).memory.total  # doctest: +SKIP
    """
    require_text(model=model, dtype=dtype, kv_dtype=kv_dtype, family=family, attention=attention,
                 gpu=gpu, engine=engine, hardware_file=hardware_file, profile=profile)
    engine = engine or "generic"
    unknown = set(shape_overrides) - set(SHAPE_OVERRIDES)
    if unknown:
        raise InputError(f"Unknown shape override(s) {', '.join(sorted(unknown))}; accepted: "
                         f"{', '.join(SHAPE_OVERRIDES)}.")
    shape_overrides = {name: None if value is None else parse_positive_int(
        value, what=name, maximum=MAX_SHAPE_SIZE) for name, value in shape_overrides.items()}
    info = resolve_model(params=params, model=model, family=family, active_params=active_params,
                         overrides=shape_overrides)
    calibration = None
    engine_costs: dict[str, dict[str, float]] = {}
    if profile is not None:
        from vramest.calibration.profile import load_profile

        loaded = load_profile(profile)
        precision = dtype or info.native_format or info.stored_format
        constants, constants_source = loaded.apply(constants or DEFAULTS, precision), loaded.source
        calibration = loaded.calibration_json(precision)
        gpu, hardware_file = loaded.placement(gpu, hardware_file)
        engine_costs = loaded.engine_for(precision)
    result = estimate_for(info, dtype=dtype, ctx=ctx, batch=batch, kv_dtype=kv_dtype,
                          attention=attention, prefill_chunk=prefill_chunk,
                          constants=constants, constants_source=constants_source)
    if calibration is not None:
        result = replace(result, extras={**result.extras, "calibration": calibration})
    options = {k: v for k, v in (engine_options or {}).items() if v is not None}
    if gpu is None and not compare_gpus and not options and engine not in (
            "llamacpp", "llamacpp-cli", "vllm"):
        return result
    from vramest.inference.deploy import place

    return place(result, gpu=gpu, num_gpus=num_gpus, pp=pp, reserve=reserve, max_ctx=max_ctx,
                 max_batch=max_batch, prompt=prompt, gen=gen, engine=engine,
                 hardware_file=hardware_file, engine_options=options, engine_costs=engine_costs,
                 compare_gpus=compare_gpus)


def estimate_for(info: ModelInfo, *, dtype: str | None = None, ctx: str | int | None = None,
                 batch: str | int = 1, kv_dtype: str | None = None, attention: str = "sdpa",
                 prefill_chunk: str | int | None = None, constants: Constants | None = None,
                 constants_source: str = "defaults") -> Estimate:
    """The memory estimate for an already-resolved model (reused by sweeps and fit planning)."""
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
        raise InputError(f"Unknown --attn {attention!r}; accepted: {', '.join(ATTENTION_KINDS)}.")
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
    out.append("Memory as transformers holds it; --engine vllm or llamacpp shows that engine's "
               "own start-up accounting.")
    return tuple(out)
