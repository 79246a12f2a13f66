"""Capacity specs: the deployments a CI run checks, read from TOML, JSON or YAML.

Every problem in a spec is collected (unknown keys with the nearest accepted name, wrong
types, values the estimator would reject, missing files, unknown GPUs), so one run shows them
all; each names the file, the deployment and the key.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from difflib import get_close_matches
from pathlib import Path

from vramest.errors import MAX_TEXT_CHARS, InputError, short
from vramest.frozen import TYPE_CHECKING, fields, frozen
from vramest.units import (
    format_bytes,
    parse_bytes,
    parse_params,
    parse_positive_int,
    parse_share,
    parse_tokens,
)

if TYPE_CHECKING:
    from typing import Any

MAX_SPEC_BYTES = 4 * 1024**2
MAX_GPUS = 4096
MAX_GEN_TOKENS = 10**7
MAX_FLOOR = 1e9  # tokens/s or seconds: anything larger is a typo
MAX_HEADROOM_BYTES = 1024**6
# what `vramest train` takes, as keys of a deployment's train table (num_gpus stays outside)
TRAIN_KEYS = ("method", "precision", "optimizer", "seq", "micro_batch", "grad_accumulation",
              "grad_checkpointing", "attention", "lora_rank", "lora_targets", "lora_dropout",
              "base_dtype", "upcast_unquantized", "trainable_layers", "zero", "fsdp", "offload",
              "moe_experts", "sequence_parallel")
# keys that describe serving, which a training deployment does not take
SERVING_KEYS = ("active_params", "dtype", "kv_dtype", "ctx", "batch", "prompt", "gen",
                "prefill_chunk", "attention", "engine", "engine_options", "pp",
                "min_decode_tokens_per_s", "max_time_to_first_token_s")

Scalar = str | int | float | bool


@frozen
class SpecProblem:
    """One thing wrong with a spec: where it is and what is accepted."""

    file: str
    where: str  # "deployment \"chat\"", "deployment 2", "defaults" or "" for the whole file
    key: str | None
    message: str

    def __str__(self) -> str:
        parts = [self.file] + [p for p in (self.where, self.key) if p]
        return ": ".join(parts) + ": " + self.message


class SpecError(InputError):
    """A spec that cannot be checked; `problems` lists every problem found."""

    def __init__(self, problems: tuple[SpecProblem, ...]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@frozen
class Headroom:
    """Memory that must stay free on each GPU beyond the estimate: a share of the usable memory
    or a size."""

    fraction: float = 0.0
    bytes: int = 0

    def required_bytes(self, usable_bytes: int) -> int:
        return round(usable_bytes * self.fraction) + self.bytes

    def describe(self) -> str:
        if self.bytes:
            return format_bytes(self.bytes)
        return f"{self.fraction * 100:g}% of usable"


@frozen
class Deployment:
    """One deployment to check, with its values parsed and paths made absolute."""

    name: str
    gpu: str
    model: str | None = None  # a catalog name or an absolute path
    params: int | None = None
    family: str | None = None
    active_params: int | None = None
    dtype: str | None = None
    kv_dtype: str | None = None
    ctx: int | None = None
    batch: int = 1
    prompt: int | None = None
    gen: int = 128
    prefill_chunk: int | None = None
    attention: str = "sdpa"
    engine: str = "generic"
    engine_options: tuple[tuple[str, str | int | float | bool], ...] = ()
    num_gpus: int = 1
    pp: int = 1
    reserve: str | None = None
    headroom: Headroom = Headroom()
    min_decode_tokens_per_s: float | None = None
    max_time_to_first_token_s: float | None = None
    profile: str | None = None
    hardware_file: str | None = None
    host_memory: str | None = None  # system memory of layers left on the host, as --host-memory
    # a fine-tuning job instead of a server: vramest.estimate_training()'s settings
    train: tuple[tuple[str, Scalar], ...] = ()
    min_train_tokens_per_s: float | None = None

    @property
    def is_training(self) -> bool:
        return bool(self.train)

    def training_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `vramest.estimate_training()` for a training deployment."""
        kwargs: dict[str, Any] = {
            "model": self.model, "params": self.params, "gpu": self.gpu,
            "num_gpus": self.num_gpus, "reserve": self.reserve,
            "hardware_file": self.hardware_file, "profile": self.profile, **dict(self.train),
        }
        if self.family is not None:
            kwargs["family"] = self.family
        return kwargs

    def estimate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `vramest.estimate()` for this deployment; the one place its
        engine options are forwarded."""
        kwargs: dict[str, Any] = {
            "model": self.model, "params": self.params, "active_params": self.active_params,
            "dtype": self.dtype, "kv_dtype": self.kv_dtype, "ctx": self.ctx, "batch": self.batch,
            "prefill_chunk": self.prefill_chunk, "attention": self.attention, "gpu": self.gpu,
            "num_gpus": self.num_gpus, "pp": self.pp, "reserve": self.reserve,
            "prompt": self.prompt, "gen": self.gen, "engine": self.engine,
            "hardware_file": self.hardware_file, "host_memory": self.host_memory,
        }
        if self.family is not None:
            kwargs["family"] = self.family
        kwargs["engine_options"] = self.engine_options_for_estimate()
        return kwargs

    def engine_options_for_estimate(self) -> dict[str, str | int | float | bool]:
        """The engine options as given; vLLM's max_model_len defaults to the deployment's ctx,
        the way `vllm serve --max-model-len` sets the context it serves."""
        options = dict(self.engine_options)
        if self.engine == "vllm" and self.ctx is not None:
            options.setdefault("max_model_len", self.ctx)
        return options

    def settings_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if self.is_training and f.name in SERVING_KEYS:
                continue
            value = getattr(self, f.name)
            if f.name == "headroom":
                value = {"fraction": value.fraction, "bytes": value.bytes}
            elif f.name in ("engine_options", "train"):
                value = dict(value) or None
            if value is not None and f.name != "name":
                out[f.name] = value
        return out


@frozen
class CapacitySpec:
    source: str  # the file name shown in messages, or "<spec>" for a mapping
    deployments: tuple[Deployment, ...]


# --- reading files -----------------------------------------------------------------------------


def load_spec(path: str | os.PathLike[str]) -> CapacitySpec:
    """Read and validate a spec file (.toml, .json, .yaml/.yml)."""
    file = Path(path)
    data = read_spec_data(file)
    return parse_spec(data, source=str(path), base_dir=file.parent)


def read_spec_data(file: Path) -> object:
    from vramest.files import read_text

    shown = str(file)
    try:
        text = read_text(file, what="Spec", limit=MAX_SPEC_BYTES)
    except InputError as exc:
        raise _file_error(shown, str(exc).removeprefix(f"Spec {shown} ")) from None
    suffix = file.suffix.lower()
    if suffix == ".json":
        return _parse_json(text, shown)
    if suffix in (".yaml", ".yml"):
        return _parse_yaml(text, shown)
    if suffix == ".toml":
        return _parse_toml(text, shown)
    raise _file_error(shown, "has an unknown extension; use .toml, .json, .yaml or .yml.")


def _file_error(shown: str, message: str) -> SpecError:
    return SpecError((SpecProblem(shown, "", None, message),))


def _parse_json(text: str, shown: str) -> object:
    from vramest.files import parse_json

    try:
        return parse_json(text, what="it")
    except InputError as exc:
        raise _file_error(shown, str(exc).removeprefix("it ")) from None


def _parse_toml(text: str, shown: str) -> object:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise _file_error(shown, "is TOML, which needs Python 3.11 or the tomli package on "
                              "Python 3.10 (pip install tomli); or write the spec as JSON.") from None
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, or an integer too long
        raise _file_error(shown, f"is not valid TOML ({exc}).") from None


def _parse_yaml(text: str, shown: str) -> object:
    try:
        import yaml
    except ModuleNotFoundError:
        raise _file_error(shown, "is YAML, which needs PyYAML (pip install pyyaml); or write "
                          "the spec as TOML or JSON.") from None
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:  # ValueError: a 5000-digit int
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _file_error(shown, f"is not valid YAML ({first_line}).") from None


# --- values ------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """An int (not a bool) or a finite float."""
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _show(value: object) -> str:
    """repr() for messages, short even for huge or long values."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "a very large integer"
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "null"
    return {"str": "a string", "int": "an integer", "float": "a number"}.get(
        type(value).__name__, type(value).__name__)


def _text(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"must be a non-empty string, got {_kind(value)}.")
    if "\x00" in value:
        raise InputError("must not contain a NUL character.")
    if len(value) > MAX_TEXT_CHARS:
        raise InputError(f"is {len(value)} characters long; no name or path is over "
                         f"{MAX_TEXT_CHARS}.")
    return value.strip()


def _gpu(key: str, value: object) -> str:
    """A GPU name; `gpu: 4090` in YAML or TOML is an integer, meant as the name "4090"."""
    return _text(key, str(value) if _is_int(value) else value)


def _token_count(key: str, value: object) -> int:
    if not (_is_int(value) or isinstance(value, str)):
        raise InputError(f"must be a token count (8192, or a string such as \"8k\"), got {_kind(value)}.")
    return parse_tokens(value, what=key)  # type: ignore[arg-type]


def _whole(maximum: int) -> Callable[[str, object], int]:
    def parse(key: str, value: object) -> int:
        if not (_is_int(value) or (isinstance(value, str) and value.strip().isdigit())):
            raise InputError(f"must be a whole number from 1 to {maximum}, got {_kind(value)}.")
        return parse_positive_int(value, what=key, maximum=maximum)  # type: ignore[arg-type]
    return parse


def _param_count(key: str, value: object) -> int:
    if not (_is_int(value) or isinstance(value, str)):
        raise InputError(f"must be a parameter count (\"70B\" or an integer), got {_kind(value)}.")
    return parse_params(value, what=key)  # type: ignore[arg-type]


def _positive_number(key: str, value: object) -> float:
    if not _is_number(value) or not 0 < value <= MAX_FLOOR:  # type: ignore[operator]
        raise InputError(f"must be a positive number (at most {MAX_FLOOR:g}), got {_show(value)}.")
    return float(value)  # type: ignore[arg-type]


def _dtype(key: str, value: object) -> str:
    from vramest.model.precisions import weight_format

    text = _text(key, value)
    weight_format(text)
    return text


def _kv_dtype(key: str, value: object) -> str:
    from vramest.model.precisions import kv_format

    text = _text(key, value)
    kv_format(text)
    return text


def _family(key: str, value: object) -> str:
    from vramest.model.catalog import FAMILIES

    text = _text(key, value).lower()
    if text not in FAMILIES:
        raise InputError(f"unknown family {short(text)}; accepted: {', '.join(FAMILIES)}.")
    return text


def _attention(key: str, value: object) -> str:
    from vramest.inference.memory import ATTENTION_KINDS

    text = _text(key, value).lower()
    if text not in ATTENTION_KINDS:
        raise InputError(f"unknown attention {short(text)}; accepted: {', '.join(ATTENTION_KINDS)}.")
    return text


def _engine(key: str, value: object) -> str:
    from vramest.inference.engines.speed import engine

    return engine(_text(key, value)).name


def _engine_options(key: str, value: object) -> tuple[tuple[str, Scalar], ...]:
    if not isinstance(value, Mapping):
        raise InputError(f"must be a table of option = value, got {_kind(value)}.")
    out = []
    for name, option in value.items():
        if not isinstance(name, str) or not name:
            raise InputError(f"option names must be strings, got {_show(name)}.")
        if isinstance(option, float) and not math.isfinite(option):
            raise InputError(f"option {name} must be a finite number, got {option}.")
        if not isinstance(option, (str, int, float, bool)):
            raise InputError(f"option {name} must be a string, number or boolean, got {_kind(option)}.")
        out.append((name, option))
    return tuple(sorted(out))


def _train(key: str, value: object) -> tuple[tuple[str, Scalar], ...]:
    if not isinstance(value, Mapping):
        raise InputError(f"must be a table of training settings ({', '.join(TRAIN_KEYS)}), "
                         f"got {_kind(value)}.")
    out = []
    for name, setting in value.items():
        if not isinstance(name, str) or name not in TRAIN_KEYS:
            raise InputError(f"unknown setting {_show(name)}; {_nearest(str(name), TRAIN_KEYS)}")
        if name == "lora_targets" and isinstance(setting, (list, tuple)) and setting and all(
                isinstance(item, str) for item in setting):
            setting = ",".join(setting)  # ["q_proj", "v_proj"] as the flag's "q_proj,v_proj"
        if not isinstance(setting, (str, int, float, bool)) or (
                isinstance(setting, float) and not math.isfinite(setting)):
            accepted = "a string or a list of strings" if name == "lora_targets" else \
                "a string, number or boolean"
            raise InputError(f"{name} must be {accepted}, got {_kind(setting)}.")
        out.append((name, setting))
    return tuple(sorted(out))


def _reserve(key: str, value: object) -> str:
    from vramest.inference.placement import parse_reserve

    if not (_is_number(value) or isinstance(value, str)):
        raise InputError(f"must be \"10%\", a fraction (0.1) or a size (\"2GiB\"), got {_kind(value)}.")
    if _is_int(value) and value > MAX_HEADROOM_BYTES:  # type: ignore[operator]
        raise InputError(f"{_show(value)} is out of range; give at most 1 EiB.")
    text = str(value)
    parse_reserve(text)
    return text


def parse_headroom(value: object, *, what: str = "headroom") -> Headroom:
    """'10%' or 0.1 (a share of the usable memory), '2GiB' or an integer number of bytes."""
    if isinstance(value, str) and value.strip().endswith("%"):
        fraction = parse_share(value, what=what, accepted="give a percentage from 0% to below "
                               "100%")
        if not 0 <= fraction < 1:
            raise InputError(f"{what} {_show(value)} must be a percentage from 0% to below 100%.")
        return Headroom(fraction=fraction)
    if isinstance(value, float):
        if not 0 <= value < 1:
            raise InputError(f"{what} {_show(value)}: a number with a point is a fraction of the usable "
                             "memory and must be from 0 to below 1; write bytes as \"2GiB\".")
        return Headroom(fraction=value)
    if _is_int(value) and not 0 <= value <= MAX_HEADROOM_BYTES:  # type: ignore[operator]
        raise InputError(f"{what} {_show(value)} is out of range; give from 0 to 1 EiB.")
    if _is_int(value) or isinstance(value, str):
        return Headroom(bytes=parse_bytes(value, what=what))  # type: ignore[arg-type]
    raise InputError(f"must be a percentage (\"10%\"), a fraction (0.1) or a size (\"2GiB\"), "
                     f"got {_kind(value)}.")


def _headroom(key: str, value: object) -> Headroom:
    return parse_headroom(value, what=key)


@frozen
class _Context:
    base_dir: Path  # relative paths in the spec are relative to its folder


def _existing_path(base_dir: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base_dir / path


# Each key: how to parse its value. Path-like keys are resolved against the spec's folder.
_PARSERS: dict[str, Callable[[str, object], object]] = {
    "name": _text,
    "model": _text,
    "params": _param_count,
    "family": _family,
    "active_params": _param_count,
    "dtype": _dtype,
    "kv_dtype": _kv_dtype,
    "ctx": _token_count,
    "batch": _whole(1_000_000),
    "prompt": _token_count,
    "gen": _whole(MAX_GEN_TOKENS),
    "prefill_chunk": _token_count,
    "attention": _attention,
    "engine": _engine,
    "engine_options": _engine_options,
    "gpu": _gpu,
    "num_gpus": _whole(MAX_GPUS),
    "pp": _whole(MAX_GPUS),
    "reserve": _reserve,
    "headroom": _headroom,
    "min_decode_tokens_per_s": _positive_number,
    "max_time_to_first_token_s": _positive_number,
    "profile": _text,
    "hardware_file": _text,
    "host_memory": _text,
    "train": _train,
    "min_train_tokens_per_s": _positive_number,
}
DEPLOYMENT_KEYS = tuple(_PARSERS)
DEFAULT_KEYS = tuple(k for k in DEPLOYMENT_KEYS if k != "name")
TOP_LEVEL_KEYS = ("defaults", "deployments")
_MODEL_KEYS = ("model", "params", "family", "active_params")


def _nearest(key: str, accepted: tuple[str, ...]) -> str:
    close = get_close_matches(key.lower().replace("-", "_"), accepted, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"{hint}accepted: {', '.join(accepted)}."


class _Collector:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[SpecProblem] = []
        self.calls = 0  # problems found, repeats included

    def add(self, where: str, key: str | None, message: str) -> None:
        self.calls += 1
        problem = SpecProblem(self.source, where, key, message)
        if problem not in self.problems:  # a default's problem is reported once
            self.problems.append(problem)


def _parse_table(table: Mapping[Any, Any], accepted: tuple[str, ...], where: str,
                 problems: _Collector) -> tuple[dict[str, object], set[str]]:
    """The values of one table that parse, and the keys that were given but are wrong."""
    values: dict[str, object] = {}
    invalid: set[str] = set()
    for key, value in table.items():
        if not isinstance(key, str):
            problems.add(where, str(key), f"keys must be strings; {_nearest(str(key), accepted)}")
            continue
        if key not in accepted:
            why = "belongs to each deployment, not the defaults; " if key == "name" else ""
            problems.add(where, key, f"unknown key; {why}{_nearest(key, accepted)}")
            continue
        try:
            values[key] = _PARSERS[key](key, value)
        except (ValueError, OverflowError) as exc:  # InputError, or a number no parser can hold
            problems.add(where, key, _sentence(exc))
            invalid.add(key)
    return values, invalid


def _sentence(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def parse_spec(data: object, *, source: str = "<spec>",
               base_dir: str | os.PathLike[str] = ".") -> CapacitySpec:
    """Validate a spec's data (the parsed TOML/JSON/YAML); raise SpecError listing every problem."""
    problems = _Collector(source)
    ctx = _Context(Path(base_dir))
    if not isinstance(data, Mapping):
        problems.add("", None, f"must be a table with a deployments list, got {_kind(data)}.")
        raise SpecError(tuple(problems.problems))
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.add("", str(key), f"unknown top-level key; {_nearest(str(key), TOP_LEVEL_KEYS)}")
    defaults: dict[str, object] = {}
    default_invalid: set[str] = set()
    raw_defaults = data.get("defaults", {})
    if isinstance(raw_defaults, Mapping):
        defaults, default_invalid = _parse_table(raw_defaults, DEFAULT_KEYS, "defaults", problems)
    else:
        problems.add("defaults", None, f"must be a table of default values, got {_kind(raw_defaults)}.")
    raw_deployments = data.get("deployments")
    deployments: list[Deployment] = []
    if not isinstance(raw_deployments, list) or not raw_deployments:
        problems.add("", "deployments", "needs a non-empty list of deployments ([[deployments]] "
                     f"tables in TOML), got {_kind(raw_deployments)}.")
        raw_deployments = []
    names: dict[str, int] = {}
    for index, raw in enumerate(raw_deployments, start=1):
        where = _where(raw, index)
        if not isinstance(raw, Mapping):
            problems.add(where, None, f"must be a table of settings, got {_kind(raw)}.")
            continue
        own, own_invalid = _parse_table(raw, DEPLOYMENT_KEYS, where, problems)
        name = own.get("name")
        if isinstance(name, str):
            if name in names:
                problems.add(where, "name", f"repeats the name of deployment {names[name]}; names "
                             "must be unique (they key the baseline and the test report).")
            names.setdefault(name, index)
        merged = _merge(defaults, own)
        invalid = own_invalid | (default_invalid - set(own))
        inherited = frozenset(merged) - frozenset(own)
        deployment = _complete(merged, invalid, _Place(where, inherited), ctx, problems)
        if deployment is not None:
            deployments.append(deployment)
    if problems.problems:
        raise SpecError(tuple(problems.problems))
    return CapacitySpec(source=source, deployments=tuple(deployments))


def _where(raw: object, index: int) -> str:
    if isinstance(raw, Mapping):
        name = raw.get("name")
        if isinstance(name, str) and name.strip() and "\x00" not in name:
            return f"deployment {short(name.strip())}"
    return f"deployment {index}"


def _merge(defaults: dict[str, object], own: dict[str, object]) -> dict[str, object]:
    """A deployment's values over the defaults; a deployment naming its own model (or params)
    replaces the default model entirely."""
    if any(k in own for k in ("model", "params")):
        defaults = {k: v for k, v in defaults.items() if k not in _MODEL_KEYS}
    merged = {**defaults, **own}
    if "train" in defaults and "train" in own:  # a deployment's settings over the default ones
        train = {**dict(defaults["train"]), **dict(own["train"])}  # type: ignore[call-overload]
        merged["train"] = tuple(sorted(train.items()))
    return merged


@frozen
class _Place:
    """Where a deployment's value came from: its own table, or the defaults."""

    deployment: str
    inherited: frozenset[str]

    def of(self, key: str) -> str:
        return "defaults" if key in self.inherited else self.deployment


def _complete(values: dict[str, object], invalid: set[str], place: _Place, ctx: _Context,
              problems: _Collector) -> Deployment | None:
    """Cross-key checks and file look-ups; the deployment when all of it is valid."""
    before = problems.calls
    where = place.deployment
    if "name" not in values and "name" not in invalid:
        problems.add(where, "name", "is required; every deployment needs a unique name.")
    _check_model(values, invalid, place.of("model"), ctx, problems)
    hardware_file = _resolve_file(values, "hardware_file", place.of("hardware_file"), ctx, problems)
    if hardware_file is not None:
        values["hardware_file"] = hardware_file
        _check_hardware_file(hardware_file, place.of("hardware_file"), problems)
    if "gpu" in values:
        _check_gpu(values, place.of("gpu") if "hardware_file" not in values or
                   "hardware_file" in place.inherited else where, problems)
    elif "gpu" not in invalid:
        problems.add(where, "gpu", "is required: the GPU to fit on (h100, a100-80gb, 4090, ...; "
                     "`vramest gpus` lists them).")
    num_gpus, pp = values.get("num_gpus", 1), values.get("pp", 1)
    if isinstance(num_gpus, int) and isinstance(pp, int) and num_gpus % pp:
        problems.add(where, "num_gpus", f"{num_gpus} is not a multiple of pp {pp}; each pipeline "
                     "stage needs the same number of GPUs.")
    _check_engine_options(values, where, problems)
    _check_training(values, invalid, place, problems)
    profile = _resolve_file(values, "profile", place.of("profile"), ctx, problems)
    if profile is not None:
        values["profile"] = profile
        _check_profile(profile, place.of("profile"), problems)
    if problems.calls > before or invalid:
        return None
    return Deployment(**values)  # type: ignore[arg-type]


def _check_training(values: dict[str, object], invalid: set[str], place: _Place,
                    problems: _Collector) -> None:
    """A train table makes a training deployment: serving keys of its own are errors, inherited
    ones are dropped, and the settings must be what `vramest train` accepts."""
    where = place.deployment
    if "train" not in values:
        if "min_train_tokens_per_s" in values and "train" not in invalid:
            problems.add(place.of("min_train_tokens_per_s"), "min_train_tokens_per_s",
                         "only applies to a training deployment (one with a train table).")
        return
    for key in SERVING_KEYS:
        if key in values and key not in place.inherited:
            problems.add(where, key, "describes serving; a training deployment (one with a "
                         f"train table) takes {', '.join(TRAIN_KEYS)} inside train.")
        values.pop(key, None)
    from vramest.training import make_settings

    num_gpus = values.get("num_gpus", 1)
    try:
        make_settings(**dict(values["train"]), num_gpus=num_gpus)  # type: ignore[call-overload, arg-type]
    except InputError as exc:
        problems.add(place.of("train"), "train", _sentence(exc).replace("--", ""))


def _check_model(values: dict[str, object], invalid: set[str], where: str, ctx: _Context,
                 problems: _Collector) -> None:
    if "model" in values and "params" in values:
        problems.add(where, "model", "give model or params, not both.")
        return
    if "model" not in values and "params" not in values:
        if not invalid & {"model", "params"}:
            problems.add(where, "model", "is required: a catalog name, a config.json, a model "
                         "folder or a .gguf file (or give params and family).")
        return
    if "model" in values:
        for key in ("family", "active_params"):
            if key in values:
                problems.add(where, key, "only applies with params; a model brings its own shape.")
        resolved = _resolve_model(str(values["model"]), ctx.base_dir)
        if isinstance(resolved, SpecProblem):
            problems.add(where, "model", resolved.message)
        else:
            values["model"] = resolved


def _resolve_model(name: str, base_dir: Path) -> str | SpecProblem:
    """A catalog name as given, or a path made absolute against the spec's folder."""
    from vramest.model.catalog import default_catalog

    catalog = default_catalog()
    if catalog.get(name) is not None:
        return name
    path = _existing_path(base_dir, name)
    try:
        exists = path.exists()
    except (OSError, ValueError):
        exists = False
    if exists:
        return str(path.resolve())
    looks_like_path = "/" in name or os.sep in name or name.startswith((".", "~")) or \
        name.lower().endswith((".json", ".gguf", ".safetensors"))
    if looks_like_path:
        return SpecProblem("", "", None, f"no such file or folder: {path} (paths are relative to "
                           "the spec's folder); and not a catalog name either.")
    return SpecProblem("", "", None, f"unknown model {short(name)}; {catalog.suggest(name)}")


def _resolve_file(values: dict[str, object], key: str, where: str, ctx: _Context,
                  problems: _Collector) -> str | None:
    text = values.get(key)
    if not isinstance(text, str):
        return None
    path = _existing_path(ctx.base_dir, text)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):
        is_file = False
    if not is_file:
        problems.add(where, key, f"no such file: {path} (paths are relative to the spec's folder).")
        return None
    return str(path.resolve())


def _check_hardware_file(path: str, where: str, problems: _Collector) -> None:
    from vramest.hardware.database import load_hardware

    try:
        load_hardware(path)
    except InputError as exc:
        problems.add(where, "hardware_file", _sentence(exc))


def _check_gpu(values: dict[str, object], where: str, problems: _Collector) -> None:
    from vramest.hardware.database import load_hardware

    gpu = str(values["gpu"])
    if gpu.lower() == "local":
        return
    hardware_file = values.get("hardware_file")
    try:
        load_hardware(hardware_file if isinstance(hardware_file, str) else None).find(gpu)
    except InputError as exc:
        problems.add(where, "gpu", _sentence(exc))


def engine_option_names(engine: str) -> tuple[str, ...]:
    """The options an engine's memory accounting takes (vramest.inference.engines.startup); none for the
    engines without it."""
    from vramest.inference.engines.startup import engine_option_names as names

    return names(engine)


def _check_engine_options(values: dict[str, object], where: str, problems: _Collector) -> None:
    options = values.get("engine_options")
    if not isinstance(options, tuple) or not options:
        return
    engine = str(values.get("engine", "generic"))
    accepted = engine_option_names(engine)
    if not accepted:
        problems.add(where, "engine_options", f"engine {engine} takes no options; they apply to "
                     "engine vllm or llamacpp.")
        return
    from vramest.inference.engines.startup import parse_engine_options

    for name, value in options:
        if name not in accepted:
            problems.add(where, f"engine_options.{name}",
                         f"unknown option for engine {engine}; {_nearest(name, accepted)}")
            continue
        try:
            parse_engine_options(engine, {name: value})
        except InputError as exc:
            problems.add(where, "engine_options", _sentence(exc))


def _check_profile(path: str, where: str, problems: _Collector) -> None:
    """A calibration profile must load (torch-free) before anything is judged."""
    from vramest.calibration.profile import load_profile

    try:
        load_profile(path)
    except InputError as exc:
        problems.add(where, "profile", str(exc))
