"""--ctx, --batch and --kv-dtype as each engine's own launch setting, where that setting is
not given: one flag means one thing everywhere (issue #18). `--ctx 32768 --engine vllm` is
vLLM's --max-model-len 32768, not the model's 131072 that vLLM would refuse on a 24 GB card;
`--ctx 16384 --engine ollama` is num_ctx 16384, not Ollama's default it would otherwise pick.
"""

from __future__ import annotations

# engine → its option for (the context per sequence, the parallel sequences, the KV precision)
_OPTIONS = {"vllm": ("max_model_len", None, None),
            "sglang": ("context_length", None, None),
            "ollama": ("num_ctx", "num_parallel", "kv_cache_type")}
# --kv-dtype in Ollama's words (OLLAMA_KV_CACHE_TYPE takes f16, q8_0, q4_0)
_OLLAMA_KV = {"fp16": "f16", "f16": "f16", "bf16": "f16", "q8_0": "q8_0", "q4_0": "q4_0"}


def with_run_settings(engine: str, options: tuple[tuple[str, object], ...],
                      ctx: str | int | None, batch: str | int,
                      kv_dtype: str | None) -> tuple[tuple[str, object], ...]:
    """The engine options with the run's context, parallel sequences and KV precision added
    where the engine has a setting for them and the options do not set it (in any of the
    spellings the engine's module takes)."""
    from vramest.inference.engines import registry
    from vramest.inference.engines.aliases import resolve_engine

    name = resolve_engine(engine)[0]
    if name not in _OPTIONS:
        return options
    given = {registry.option_name(name, k) for k, _ in options}
    values = (ctx, None if str(batch) == "1" else batch,
              _OLLAMA_KV.get(str(kv_dtype).strip().lower()))
    added = tuple((option, value) for option, value in zip(_OPTIONS[name], values, strict=True)
                  if option is not None and value is not None and option not in given)
    return (*options, *added)
