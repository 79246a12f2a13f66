"""The engine names users type, and whose accounting each gets: forks and wrappers counted as
the engine they run (with the assumption that makes), names refused with what to use instead,
and the engines with a start-up module of their own in registry.py. Names only, so that
parsing --engine never loads the start-up machinery (2.1M instructions of every start)."""

from __future__ import annotations

from vramest.errors import InputError
from vramest.frozen import frozen

OWN_ACCOUNTING = ("ollama", "sglang", "tgi", "exllamav2")  # registry.py's engine modules


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


def split_release(name: str) -> tuple[str, str | None]:
    """An engine named with its release, as pip pins it or users write it ("vllm==0.6.3",
    "ollama@0.5.7"): the name and the release; a name without one comes back alone."""
    for sign in ("==", "@"):
        engine, found, release = name.partition(sign)
        if found and engine.strip() and release.strip():
            return engine.strip(), release.strip()
    return name, None


def named_release(engine: str, options: tuple[tuple[str, object], ...],
                  ) -> tuple[str, tuple[tuple[str, object], ...]]:
    """(the engine, its options with the release) for an --engine that names its release;
    a disagreeing --engine-version is one sentence."""
    base, release = split_release(engine)
    if release is None:
        return engine, options
    given = dict(options).get("version")
    if given is not None and str(given).split("==")[-1].strip() != release:
        raise InputError(f"--engine {engine} names release {release} and --engine-version says "
                         f"{given}; give one, or make them agree.")
    return base, options if given is not None else (*options, ("version", release))


def resolve_engine(name: str) -> tuple[str, EngineAlias | None]:
    """The engine whose accounting a name gets, and the alias (with its assumption) if any;
    a release after the name ("vllm==0.6.3") is `named_release`'s."""
    key = split_release(name)[0].strip().lower()
    if key in REFUSED:
        raise InputError(REFUSED[key])
    alias = ALIASES.get(key) or ALIASES.get(key.replace("_", "-"))
    return (alias.engine, alias) if alias else (key, None)
