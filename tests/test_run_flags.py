"""--ctx, --batch and --kv-dtype mean one thing everywhere: each engine's own launch setting
where the engine's flag is not given."""

from __future__ import annotations

import vramest


def _engine(**kw: object) -> dict[str, object]:
    return vramest.estimate(model="llama-3.1-8b", gpu="rtx 4090", **kw).to_json()["engine"]


def test_ctx_is_vllms_max_model_len_unless_that_is_given() -> None:
    """vLLM's default max_model_len is the model's 131072, which it refuses on a 24 GB card;
    a user who says 32k serves 32k."""
    by_ctx = vramest.estimate(model="llama-3.1-8b", gpu="rtx 4090", engine="vllm", ctx=32768)
    by_flag = vramest.estimate(model="llama-3.1-8b", gpu="rtx 4090", engine="vllm", ctx=32768,
                               engine_options={"max_model_len": 32768})
    assert by_ctx.to_json()["engine"] == by_flag.to_json()["engine"]
    assert by_ctx.fit.fits
    both = vramest.estimate(model="llama-3.1-8b", gpu="rtx 4090", engine="vllm", ctx=32768,
                            engine_options={"max_model_len": 131072})
    assert not both.fit.fits  # the engine's own flag wins
    assert not vramest.estimate(model="llama-3.1-8b", gpu="rtx 4090", engine="vllm").fit.fits


def test_ctx_batch_and_kv_dtype_are_ollamas_settings() -> None:
    by_run = _engine(engine="ollama", ctx=16384, batch=2, kv_dtype="q8_0")
    by_env = _engine(engine="ollama", ctx=16384, batch=2, kv_dtype="q8_0", engine_options={
        "OLLAMA_CONTEXT_LENGTH": 16384, "OLLAMA_NUM_PARALLEL": 2, "OLLAMA_KV_CACHE_TYPE": "q8_0"})
    assert by_run == by_env
    assert (by_run["num_ctx"], by_run["num_parallel"], by_run["kv_cache_type"]) == (16384, 2,
                                                                                   "q8_0")
    default = _engine(engine="ollama")
    assert default["num_ctx"] != 16384  # nothing said: Ollama's own default


def test_ctx_is_sglangs_context_length() -> None:
    by_ctx = _engine(engine="sglang", ctx=32768)
    assert by_ctx == _engine(engine="sglang", ctx=32768, engine_options={"context_length": 32768})
