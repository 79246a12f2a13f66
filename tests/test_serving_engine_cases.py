"""Serving-engine rules the public cases of issue #18 exposed (TGI, SGLang, Ollama, vLLM),
each checked against what the case's log shows."""

from __future__ import annotations

from vramest.api import estimate
from vramest.validation.real_cases import load_cases, replay


def _ollama(version: str, gpu: str, **options: object):
    return estimate(model="openai/gpt-oss-20b", gpu=gpu, engine="ollama", profile="none",
                    engine_options={"version": version, **options})


def test_ollama_raises_gpt_oss_context_to_8192():
    """ollama#11711 (0.11.2, RTX 4060 Ti 16 GB): a Modelfile's num_ctx 4096 "loads as 8192",
    flash attention and the q4_0 cache are refused for gpt-oss ("not supported by model"), and
    23 of 25 layers go to the GPU (memory.required.full 16.9 GiB of 15.6 GiB available)."""
    asked = {"num_ctx": 4096, "flash_attention": True, "kv_cache_type": "q4_0"}
    est = _ollama("0.11.2", "rtx 4060 ti 16gb", **asked)
    report = est.engine_report
    assert report.num_ctx == 8192
    assert not report.flash_attention and report.kv_cache_type == "f16"
    assert not report.fully_offloaded and est.fit.fits is False
    # from v0.11.4 the floor is skipped under 20 GiB of GPU memory (lowVRAMThreshold) ...
    assert _ollama("0.11.4", "rtx 4060 ti 16gb", num_ctx=4096).engine_report.num_ctx == 4096
    # ... kept above it, and gone from v0.15.5 (the VRAM tiers replaced it)
    assert _ollama("0.12.3", "rtx 4090", num_ctx=4096).engine_report.num_ctx == 8192
    assert _ollama("0.15.5", "rtx 4090", num_ctx=4096).engine_report.num_ctx == 4096
    case = next(c for c in load_cases() if c.id == "ollama-11711-4060ti16-gptoss20b-num-ctx-4096")
    assert replay(case).agrees


def test_ollama_runs_gpt_oss_on_a_4090_whole():
    """ollama#12674: with 0.12.3 gpt-oss:20b put all 25 layers on an RTX 4090."""
    report = _ollama("0.12.3", "rtx 4090").engine_report
    assert report.fully_offloaded and report.num_ctx == 8192


def test_vllm_data_parallel_ranks_keep_every_kv_head():
    """vLLM 0.10.1 with -dp 8 --enable-expert-parallel on 8 H20 (recipes PR #12): each rank is
    an engine of TP 1, so one 262144-token request of Qwen3-Coder-480B needs all 8 KV heads,
    "62.00 GiB KV cache is needed", more than the 48.66 GiB available at 0.9 utilisation."""
    from vramest.units import GIB

    def report(dp: int):
        options = {"version": "0.10.1", "max_model_len": 262144, "data_parallel_size": dp,
                   "total_memory_bytes": round(139.8 * GIB)}
        return estimate(model="Qwen/Qwen3-Coder-480B-A35B-Instruct", dtype="fp8", gpu="h20",
                        num_gpus=8, engine="vllm", profile="none",
                        engine_options=options).engine_report

    dp8, tp8 = report(8), report(1)
    assert abs(dp8.request_bytes / GIB - 62.00) < 0.01
    assert not dp8.starts and tp8.starts  # TP 8 would need an eighth of it
    assert abs(dp8.kv_cache_bytes / (48.66 * GIB) - 1) < 0.1
    # attention and embeddings whole on every rank, the experts an eighth each
    assert dp8.weights_bytes > tp8.weights_bytes
    for case in load_cases():
        if case.id.startswith("vllm-recipes12-"):
            assert replay(case).agrees, case.id
