"""Which model is meant: its shape and parameters from its files, the catalog, or a count."""

from __future__ import annotations

import os
import re
from functools import lru_cache

from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.model.catalog import default_catalog, shape_for_params
from vramest.model.precisions import weight_format
from vramest.model.shapes import ModelShape, with_overrides
from vramest.units import format_count, parse_params

if TYPE_CHECKING:
    from typing import Any

    from vramest.model.names import NameMatch

_NATIVE_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "bf16": "bf16",
                  "fp16": "fp16", "fp32": "fp32"}
SHAPE_OVERRIDES = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                   "intermediate_size", "vocab_size")


@frozen
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
    # native_format is what Ollama's library ships for a tag that names no quantization, not
    # the checkpoint's own: an engine that loads the Hugging Face release loads the latter
    library_default: bool = False

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



def resolve_model(*, params: str | int | None = None, model: str | None = None,
                  family: str = "llama", active_params: str | int | None = None,
                  overrides: dict[str, int | None] | None = None) -> ModelInfo:
    """Find the model's shape: from its files, the catalog, or a parameter count."""
    if params is None and model is None:
        raise InputError("Give --params (such as 7B or 70B) or --model (a catalog name, "
                         "a config.json, a model folder or a .gguf file).")
    plain = (str, int, type(None))
    # files can change between calls; a catalog name or a count always means the same shape
    cacheable = all(isinstance(v, plain) for v in (params, model, family, active_params)) and (
        model is None or catalog_name(model) is not None)
    info = (_resolve_cached if cacheable else _resolve)(params, model, family, active_params)
    if overrides and any(v is not None for v in overrides.values()):
        shape = with_overrides(info.shape, **overrides)
        info = ModelInfo(name=shape.name, source=info.source, origin=info.origin, shape=shape,
                         params=shape.param_count(), active_params=shape.active_param_count(),
                         borrowed_from=info.borrowed_from)
    return info


def _resolve(params: str | int | None, model: str | None, family: str,
             active_params: str | int | None) -> ModelInfo:
    if active_params is None and isinstance(params, str):  # "30B-A3B", as Qwen names its MoEs
        total, sep, active_text = params.strip().lower().partition("-a")
        if sep and total and active_text:
            params, active_params = total, active_text
    active = parse_params(active_params, what="--active-params") if active_params else None
    if model is not None:
        return _model_from_name_or_path(model)
    assert params is not None
    count = parse_params(params)
    if active is not None and active > count:
        raise InputError(f"--active-params {format_count(active)} is larger than --params "
                         f"{format_count(count)}; active parameters are a subset.")
    borrowed = shape_for_params(count, family, active)
    shape = borrowed.shape
    return ModelInfo(name=shape.name, source="params", origin=borrowed.explanation,
                     shape=shape, params=shape.param_count(),
                     active_params=active or shape.active_param_count(),
                     borrowed_from=borrowed.borrowed_from)


_resolve_cached = lru_cache(maxsize=512)(_resolve)


def _looks_like_path(text: str) -> bool:
    return (os.sep in text and os.path.exists(text)) or text.endswith(
        (".json", ".gguf", ".safetensors")) or os.path.isdir(text) or text.startswith(".")


def catalog_name(model: str) -> NameMatch | None:
    """The catalog entry `--model` names: its id or an alias, or (when it is not a path) a
    fine-tune, quantized release or Ollama tag of it (vramest.model.names)."""
    from vramest.model.names import NameMatch, catalog_match

    entry = default_catalog().get(model)
    if entry is not None:
        return NameMatch(entry, None, "")
    return None if _looks_like_path(model) else catalog_match(model)


def _from_catalog(match: NameMatch, why: str) -> ModelInfo:
    """The catalog entry a name means, in the precision the name says (else its own)."""
    entry, shape = match.entry, match.entry.shape()
    own = match.precision is None
    return ModelInfo(name=entry.id, source="catalog", origin=entry.source + (
                         f"; {why}" if why else ""), shape=shape,
                     params=shape.param_count(), active_params=shape.active_param_count(),
                     published_params=entry.published_params,
                     native_format=_native_format(entry.config) if own else match.precision,
                     native_unquantized=_ignore_list(entry.config) if own else (),
                     library_default=match.library_default)


def _model_from_name_or_path(model: str) -> ModelInfo:
    catalog = default_catalog()
    if _HUB_FILE.match(model):  # a download link's query (?download=true) is no part of the name
        model = model.partition("?")[0]
    match = catalog_name(model)
    if match is not None:
        return _from_catalog(match, match.reason)
    folder = _named_folder(model)
    if folder is not None:
        return folder
    if _looks_like_path(model):
        return _model_from_path(model)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        return _model_from_hub(model, catalog.suggest(model))
    raise InputError(f"Unknown model {short(model)}; {catalog.suggest(model)}")


def _model_from_hub(repo_id: str, suggestion: str) -> ModelInfo:
    """A hub id outside the catalog: its config and safetensors headers, fetched and cached."""
    from vramest.readers.hub import fetch_hub_model

    try:
        folder = fetch_hub_model(repo_id)
    except InputError as exc:
        raise InputError(f"{exc} ({suggestion})") from None
    info = _model_from_path(str(folder))
    return replace(info, name=repo_id, source="hub", origin=f"https://huggingface.co/{repo_id}")


def _named_folder(path: str) -> ModelInfo | None:
    """A model folder's path with no such folder here, pasted from someone else's launch line
    (`--model-path /models/Qwen2.5-7B-Instruct-AWQ/`): the release its last part names, as
    the Hub's download tools name the folder, saying no folder was read. A hub id (one slash)
    and a file's name are not folders."""
    bare = path.rstrip("/\\")
    if os.path.exists(path) or bare.lower().endswith((".json", ".gguf", ".safetensors")):
        return None
    if not (bare.startswith(("/", ".", "~")) or bare.count("/") >= 2 or "\\" in bare):
        return None
    name = re.split(r"[/\\]", bare)[-1]
    match = catalog_name(name) if name not in ("", ".", "..") else None
    if match is None:
        return None
    return _from_catalog(match, f"no folder {path} here: read as the release its last part "
                         "names" + (f" ({match.reason})" if match.reason else ""))


def _named_file(name: str) -> ModelInfo | None:
    """A GGUF file's name with no such file here ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"):
    the release and quantization its name says, as for a hub name, saying no file was read."""
    from vramest.model.names import catalog_match, quantization_suffix

    stem = name[:-len(".gguf")]
    head, dot, tail = stem.rpartition(".")  # TheBloke's files: llama-2-70b.Q4_K_M.gguf
    if dot and "-" not in tail and quantization_suffix(tail):
        stem = f"{head}-{tail}"
    parts = stem.rsplit("-", 3)  # a split file: ...-00001-of-00003
    if len(parts) == 4 and parts[1].isdigit() and parts[2] == "of" and parts[3].isdigit():
        stem = parts[0]
    match = catalog_match(stem)
    if match is None:
        return None
    return _from_catalog(match, f"no file {name} here: read as the release its name says"
                         + (f" ({match.reason})" if match.reason else ""))


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


# a file's address on the Hub, as its page or download link gives it
_HUB_FILE = re.compile(r"(?:https?://)?(?:www\.)?(?:huggingface\.co|hf\.co)/[\w.-]+/[\w.-]+/"
                       r"(?:blob|resolve)/[^/]+/(?:[^/]+/)*")


def _model_from_path(path: str) -> ModelInfo:
    if not os.path.exists(path) and path.lower().endswith(".gguf"):
        link = _HUB_FILE.match(path)
        name = path[link.end():] if link else path
        # a file name pasted from a thread or a Hub link, or a path on someone else's
        # machine: not a file here, read by its name
        named = _named_file(re.split(r"[/\\]", name)[-1])
        if named is not None:
            return named
    if not os.path.exists(path):
        raise InputError(f"No such file or folder: {path}; --model takes a catalog name, a "
                         "config.json, a model folder or a .gguf file.")
    from vramest.readers.inspect import inspect_path

    found = inspect_path(path)
    shape = _shape_of_files(found.config, os.path.basename(os.path.abspath(path)), path,
                            files_counted=found.params is not None)
    return ModelInfo(
        name=shape.name, source=found.kind, origin=os.path.abspath(path), shape=shape,
        params=found.params or shape.param_count(), active_params=shape.active_param_count(),
        exact_weights_bytes=found.weights_bytes, stored_format=_stored_format(found),
        native_format=_native_format(found.config),
        native_unquantized=_ignore_list(found.config),
    )


def _shape_of_files(config: dict[str, Any], name: str, origin: str,
                    files_counted: bool) -> ModelShape:
    """The shape of a config; an architecture the parser does not know is counted on the meta
    device when transformers is installed, and refused otherwise. With the tensors read from
    the files (exact parameters), a plain decoder is read from its standard keys instead."""
    from vramest.model.shapes import UnknownArchitecture, shape_from_config

    try:
        return shape_from_config(config, name, origin=origin, generic_decoder=files_counted)
    except UnknownArchitecture as refusal:
        from vramest.model.meta_count import meta_shape

        return meta_shape(config, name, origin, refusal)


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


