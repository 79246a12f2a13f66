"""Ollama library names as users type them, and what each engine loads for one."""

from __future__ import annotations

import pytest

import vramest


@pytest.mark.parametrize(("name", "model"), [
    ("mistral", "mistralai/Mistral-7B-v0.1"), ("llama3", "meta-llama/Meta-Llama-3-8B"),
    ("llama3.1", "meta-llama/Llama-3.1-8B"), ("llama3.2", "meta-llama/Llama-3.2-3B"),
    ("gemma2", "google/gemma-2-9b"), ("gemma3", "google/gemma-3-4b-it"),
    ("phi3", "microsoft/Phi-3-mini-4k-instruct"), ("phi3:14b", "microsoft/Phi-3-medium-4k-instruct"),
    ("phi3.5", "microsoft/Phi-3.5-mini-instruct"), ("qwen2.5", "Qwen/Qwen2.5-7B"),
    ("qwen3", "Qwen/Qwen3-8B"), ("mixtral", "mistralai/Mixtral-8x7B-v0.1"),
    ("gpt-oss", "openai/gpt-oss-20b"), ("tinyllama", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"),
])
def test_a_bare_library_name_is_its_latest_tag(name: str, model: str) -> None:
    """`ollama run mistral` pulls mistral:latest, the library page's default size."""
    assert vramest.estimate(model=name).model.name == model


@pytest.mark.parametrize("engine", ["ollama", "llamacpp", "koboldcpp", "generic"])
def test_engines_that_run_ollamas_file_load_its_quantization(engine: str) -> None:
    est = vramest.estimate(model="qwq", engine=engine, gpu="h100")
    assert est.settings.dtype == "q4_k_m"


@pytest.mark.parametrize("engine", ["vllm", "sglang", "hf", "tgi"])
def test_engines_that_load_the_checkpoint_load_its_own_precision(engine: str) -> None:
    """`--model qwq --engine vllm` serves Qwen/QwQ-32B's bf16 release: Ollama's Q4_K_M file is
    not what vLLM loads, and the output says so."""
    est = vramest.estimate(model="qwq", engine=engine, gpu="h100")
    assert est.settings.dtype == vramest.estimate(model="Qwen/QwQ-32B", engine=engine,
                                                       gpu="h100").settings.dtype
    assert est.settings.dtype != "q4_k_m"
    assert any("not Ollama's q4_k_m file" in a for a in est.assumptions) or engine == "hf"


def test_a_tag_that_names_its_quantization_keeps_it_everywhere() -> None:
    for engine in ("ollama", "vllm"):
        est = vramest.estimate(model="llama3.1:8b-instruct-q8_0", engine=engine, gpu="4090")
        assert est.settings.dtype == "q8_0"
