"""--ctx, --batch and --kv-dtype as each engine's own launch setting, where that setting is
not given: one flag means one thing everywhere (issue #18). `--ctx 32768 --engine vllm` is
vLLM's --max-model-len 32768, not the model's 131072 that vLLM would refuse on a 24 GB card;
`--ctx 16384 --engine ollama` is num_ctx 16384, not Ollama's default it would otherwise pick.
"""

from __future__ import annotations

# engine → (the run setting, the engine's option, the spellings that already set it)
_CONTEXT = {"vllm": ("max_model_len", ("max_model_len",)),
            "sglang": ("context_length", ("context_length", "context_len")),
            "ollama": ("num_ctx", ("num_ctx", "ollama_context_length"))}
_PARALLEL = {"ollama": ("num_parallel", ("num_parallel", "ollama_num_parallel"))}
_KV = {"ollama": ("kv_cache_type", ("kv_cache_type", "ollama_kv_cache_type"))}
# --kv-dtype in Ollama's words (OLLAMA_KV_CACHE_TYPE takes f16, q8_0, q4_0)
_OLLAMA_KV = {"fp16": "f16", "f16": "f16", "bf16": "f16", "q8_0": "q8_0", "q4_0": "q4_0"}


def _key(raw: str) -> str:
    return raw.lower().lstrip("-").replace("-", "_")


def with_run_settings(engine: str, options: tuple[tuple[str, object], ...],
                      ctx: str | int | None, batch: str | int,
                      kv_dtype: str | None) -> tuple[tuple[str, object], ...]:
    """The engine options with the run's context, parallel sequences and KV precision added
    where the engine has a setting for them and the options do not set it."""
    from vramest.inference.engines.aliases import resolve_engine

    name = resolve_engine(engine)[0]
    given = {_key(k) for k, _ in options}
    added: list[tuple[str, object]] = []
    for table, value in ((_CONTEXT, ctx), (_PARALLEL, None if str(batch) == "1" else batch),
                         (_KV, _OLLAMA_KV.get(str(kv_dtype).strip().lower()))):
        if value is None or name not in table:
            continue
        option, spellings = table[name]
        if not given & set(spellings):
            added.append((option, value))
    return (*options, *added) if added else options
