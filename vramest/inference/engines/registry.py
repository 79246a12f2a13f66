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

    def parse(self, options: Mapping[str, object]) -> dict[str, object]:
        out: dict[str, object] = {}
        for raw_key, value in options.items():
            if value is None:
                continue
            key = self.spellings.get(raw_key.lower().lstrip("-").replace("-", "_"),
                                     raw_key.lower().lstrip("-").replace("-", "_"))
            if key not in self.parsers:
                raise InputError(f"Unknown {self.name} option {short(raw_key)}; accepted: "
                                 f"{', '.join(self.parsers)}.")
            out[key] = self.parsers[key](value, raw_key)
        return out


NAMES = ("ollama", "sglang", "tgi", "exllamav2")  # the modules below, by engine name


def _engines() -> dict[str, StartupEngine]:
    from vramest.inference.engines import exllamav2, ollama, sglang, tgi

    return {e.name: e for e in (ollama.ENGINE, sglang.ENGINE, tgi.ENGINE, exllamav2.ENGINE)}


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


# --- engines users name that are another engine's accounting ---------------------------------
@frozen
class EngineAlias:
    """An engine counted with another's start-up accounting, and the assumption that makes."""

    engine: str
    note: str
    version: str | None = None  # the release of `engine` whose rules apply, unless one is given
    # a fork whose own releases map to llama.cpp builds (engines/llamacpp_forks.py)
    fork: str | None = None


ALIASES: dict[str, EngineAlias] = {
    # ExLlama v1 (turboderp/exllama) preallocates its fp16 ExLlamaCache of max_seq_len × batch
    # at load, as ExLlamaV2 does; its own kernels are not modelled apart.
    "exllama": EngineAlias("exllamav2", "ExLlama v1 is counted with ExLlamaV2's accounting "
                           "(fp16 cache of max_seq_len × batch allocated at load; speed as "
                           "ExLlamaV2's) — assumed, not measured for v1"),
    "exllamav1": EngineAlias("exllamav2", "ExLlama v1 is counted with ExLlamaV2's accounting "
                             "(fp16 cache allocated at load) — assumed, not measured for v1"),
    # Aphrodite is a vLLM fork; its V1 engine came in April 2025 (dphnAI/sonar PR #1334,
    # "Based on the vLLM v1 design. Not yet ready for prod use"), so releases users ran before
    # size the KV cache the V0 way: one profiling forward, no chunked prefill (vLLM 0.3.x).
    "aphrodite": EngineAlias("vllm", "Aphrodite (a vLLM fork) is counted with vLLM's V0 "
                             "accounting of vLLM 0.3.3, the release line it forked from in "
                             "early 2024 (--engine-version vllm==X to change)", "0.3.3"),
    "aphrodite-engine": EngineAlias("vllm", "Aphrodite (a vLLM fork) is counted with vLLM's V0 "
                                    "accounting of vLLM 0.3.3 (--engine-version to change)",
                                    "0.3.3"),
    # llamafile and ik_llama.cpp run llama.cpp's loader, KV cache and graph allocator
    "llamafile": EngineAlias("llamacpp", "llamafile bundles llama.cpp: counted as llama.cpp's "
                             "server (same buffers: model, KV, compute)", fork="llamafile"),
    "ik_llama.cpp": EngineAlias("llamacpp", "ik_llama.cpp is a llama.cpp fork: counted as "
                                "llama.cpp (same buffers: model, KV, compute)"),
    "ik-llama.cpp": EngineAlias("llamacpp", "ik_llama.cpp is a llama.cpp fork: counted as "
                                "llama.cpp (same buffers: model, KV, compute)"),
    # LM Studio, KoboldCpp and Jan load GGUF files with llama.cpp's runtime (LM Studio's
    # "llama.cpp" engines; KoboldCpp is a llama.cpp fork; Jan's llamacpp extension)
    "lmstudio": EngineAlias("llamacpp", "LM Studio runs GGUF models on llama.cpp: counted as "
                            "llama.cpp (same buffers; its MLX engine on a Mac is not modelled)"),
    "lm-studio": EngineAlias("llamacpp", "LM Studio runs GGUF models on llama.cpp: counted as "
                             "llama.cpp (same buffers)"),
    "koboldcpp": EngineAlias("llamacpp", "KoboldCpp is a llama.cpp fork: counted as llama.cpp "
                             "(same buffers: model, KV, compute)", fork="koboldcpp"),
    "jan": EngineAlias("llamacpp", "Jan runs GGUF models on llama.cpp: counted as llama.cpp"),
    # TabbyAPI serves ExLlamaV2 models with ExLlamaV2's cache
    "tabbyapi": EngineAlias("exllamav2", "TabbyAPI serves ExLlamaV2: counted as ExLlamaV2"),
    "llama.cpp": EngineAlias("llamacpp", "llama.cpp server"),
    "llama-server": EngineAlias("llamacpp", "llama.cpp server"),
    "transformers": EngineAlias("hf", "transformers generate()"),
    "text-generation-inference": EngineAlias("tgi", "Text Generation Inference"),
}
# engines users name whose memory is not modelled: the sentence says why and what to use
REFUSED: dict[str, str] = {
    "vllm-metal": "vllm-metal (vLLM on Apple silicon through MLX) is not modelled: MLX keeps "
                  "weights and cache in unified memory without vLLM's CUDA accounting; use "
                  "--engine generic with --gpu (e.g. m4) for the memory and speed estimate.",
    "mlx": "MLX (mlx-lm) is not modelled as an engine; use --engine generic with an Apple --gpu "
           "(e.g. m4-max) for the memory and speed estimate.",
}


def resolve_engine(name: str) -> tuple[str, EngineAlias | None]:
    """The engine whose accounting a name gets, and the alias (with its assumption) if any."""
    key = name.strip().lower()
    if key in REFUSED:
        raise InputError(REFUSED[key])
    alias = ALIASES.get(key) or ALIASES.get(key.replace("_", "-"))
    return (alias.engine, alias) if alias else (key, None)
