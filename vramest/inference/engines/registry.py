"""Engines with their own start-up accounting beyond vLLM, llama.cpp and transformers.

Each engine module registers a `StartupEngine`: its option names (with the environment
variables or flags users know them by), a parser per option, and the function that computes
its start-up figures. `vramest.inference.engines.startup.engine_report` dispatches here first.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping

from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING, field, frozen
from vramest.inference.engines.aliases import OWN_ACCOUNTING
from vramest.units import number_text, parse_bytes, parse_positive_int, parse_tokens

if TYPE_CHECKING:
    from typing import Protocol

    from vramest.hardware.database import Device
    from vramest.inference.estimate import Estimate
    from vramest.inference.placement import FitPlan

    class Startup(Protocol):  # what an engine's start-up accounting gives; for the type checker
        def to_json(self) -> dict[str, object]: ...

        def log_lines(self) -> list[str]: ...

        def engine_fit(self, plan: FitPlan) -> FitPlan: ...


@frozen
class StartupRequest:
    est: Estimate
    options: Mapping[str, object]  # parsed, only those given
    device: Device | None
    tp: int
    usable_bytes: int | None


@frozen
class StartupEngine:
    name: str
    parsers: Mapping[str, Callable[[object, str], object]]
    compute: Callable[[StartupRequest], Startup]
    # what users type for an option (an environment variable, a CLI flag) -> its name here
    spellings: Mapping[str, str] = field(default_factory=dict)

    def option_name(self, raw_key: str) -> str:
        """An option as users spell it (OLLAMA_CONTEXT_LENGTH, --context-len) by its name here."""
        key = option_key(raw_key)
        return self.spellings.get(key, key)

    def parse(self, options: Mapping[str, object]) -> dict[str, object]:
        out: dict[str, object] = {}
        for raw_key, value in options.items():
            if value is None:
                continue
            key = self.option_name(raw_key)
            if key not in self.parsers:
                raise InputError(f"Unknown {self.name} option {short(raw_key)}; accepted: "
                                 f"{', '.join(self.parsers)}.")
            out[key] = self.parsers[key](value, raw_key)
        return out


def option_key(raw_key: str) -> str:
    """An option's key without case, leading dashes or dashes between words."""
    return raw_key.lower().lstrip("-").replace("-", "_")


NAMES = OWN_ACCOUNTING  # the modules below, by engine name


def catalog_config(est: Estimate) -> dict[str, object]:
    """The catalog's config.json of the estimate's model (architectures, head size, MTP layers,
    a model_type's own keys), as the engine's launcher reads it; empty where the catalog does
    not hold the model."""
    from vramest.model.resolve import catalog_name

    match = catalog_name(est.model.name)
    return dict(match.entry.config) if match else {}


def _engines() -> dict[str, StartupEngine]:
    from vramest.inference.engines import exllamav2, ollama, sglang, tgi

    return {e.name: e for e in (ollama.ENGINE, sglang.ENGINE, tgi.ENGINE, exllamav2.ENGINE)}


def option_name(engine: str, raw_key: str) -> str:
    """An engine option as users spell it, by the name the engine's module reads it under."""
    spec = _engines().get(engine) if engine in NAMES else None
    return spec.option_name(raw_key) if spec else option_key(raw_key)


def accepts(engine: str, raw_key: str) -> bool:
    """Whether an engine with its own accounting reads this option (as users spell it)."""
    spec = _engines().get(engine) if engine in NAMES else None
    return spec is not None and spec.option_name(raw_key) in spec.parsers


def settings(engine: str) -> tuple[str, ...]:
    """The options an engine with its own accounting reads, by their names here; () for one
    without (vLLM's and llama.cpp's are vramest flags)."""
    spec = _engines().get(engine) if engine in NAMES else None
    return tuple(spec.parsers) if spec is not None else ()


def startup(engine: str, est: Estimate, options: Mapping[str, object], device: Device | None,
            tp: int, usable_bytes: int | None) -> Startup:
    spec = _engines()[engine]
    return spec.compute(StartupRequest(est, spec.parse(options), device, tp, usable_bytes))


def parse_pairs(pairs: list[str] | None) -> dict[str, object]:
    """--engine-option KEY=VALUE (repeatable): values stay text; each engine parses its own."""
    out: dict[str, object] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--engine-option {short(pair)} is not KEY=VALUE (e.g. num_ctx=8192 or "
                             "OLLAMA_NUM_PARALLEL=4).")
        out[key.strip()] = value.strip()
    return out


# --- option parsers (text from the CLI, typed values from the API or a capacity spec) -------
def whole(value: object, what: str, maximum: int = 1 << 30) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InputError(f"{what} {short(value)} is not a whole number.")
    return parse_positive_int(value, what=what, maximum=maximum)


def tokens(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InputError(f"{what} {short(value)} is not a token count.")
    return parse_tokens(value, what=what)


def count_or_zero(value: object, what: str) -> int:
    if number_text(value) == "0":
        return 0
    return whole(value, what, maximum=100_000)


def switch(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = number_text(value).lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise InputError(f"{what} {short(value)} is not true or false (1/0, on/off).")


def share(value: object, what: str) -> float:
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            number = float(value)
    if not 0 < number <= 1:
        raise InputError(f"{what} {short(value)} is not a share above 0 and at most 1.")
    return number


def size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InputError(f"{what} {short(value)} is not a size.")
    return 0 if number_text(value) == "0" else parse_bytes(value, what=what)


def text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what} {short(value)} is not text.")
    return value.strip().lower()


def version(value: object, what: str) -> tuple[int, ...]:
    """'0.6.2', 'v0.6.2' or 'ollama==0.6.2' -> (0, 6, 2)."""
    raw = number_text(value).lower().split("==")[-1].lstrip("v")
    try:
        parts = tuple(int(p) for p in raw.split("-")[0].split("."))
    except ValueError:
        parts = ()
    if not 1 <= len(parts) <= 3:
        raise InputError(f"{what} {short(value)} is not a version such as 0.6.2.")
    return parts + (0,) * (3 - len(parts))
