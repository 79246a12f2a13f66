"""Models users name that the catalog lacked (issue 18, item 7): Gemma 1, OLMo 2 13B, Falcon 40B,
Command A and DeepSeek-R1-0528-Qwen3-8B as entries; Llama-3.1-Nemotron-70B, Vicuna v1.5, MiniMax-M2/M2.1
and the OLMo 2 base releases as names of the entry whose shape they have. Each entry's count
equals transformers' meta-device build of its config and the published total where one exists;
each name a user types resolves."""

from __future__ import annotations

import json
from typing import Any

import pytest
from meta_build import meta_count

import vramest
from vramest.data import read_text
from vramest.model.catalog import default_catalog
from vramest.model.names import catalog_match

CATALOG = default_catalog()

ADDED = ["deepseek-ai/DeepSeek-R1-0528-Qwen3-8B", "google/gemma-7b", "google/gemma-2b",
         "allenai/OLMo-2-1124-13B-Instruct", "tiiuae/falcon-40b",
         "CohereForAI/c4ai-command-a-03-2025"]



def _raw(model: str) -> dict[str, Any]:
    return next(m for m in json.loads(read_text("models.json"))["models"] if m["id"] == model)


@pytest.mark.slow
@pytest.mark.parametrize("model", ADDED)
def test_the_count_is_what_transformers_builds_on_the_meta_device(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.shape().param_count() == meta_count(entry.config)


@pytest.mark.parametrize("model", ADDED)
def test_every_entry_says_where_it_came_from(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.source.startswith("https://github.com/") and entry.notes
    said = _raw(model)["params_source"]
    assert entry.published_params or "no exact published count" in said or \
        "not stored as published_params" in said


@pytest.mark.parametrize(("model", "count"), [
    ("deepseek-ai/DeepSeek-R1-0528-Qwen3-8B", 8_190_735_360),
    ("google/gemma-2b", 2_506_172_416),  # and KerasHub's gemma_2b_en preset
    ("google/gemma-7b", 8_537_680_896),  # KerasHub's gemma_7b_en preset
    ("allenai/OLMo-2-1124-13B-Instruct", 13_716_198_400),
])
def test_the_count_is_the_published_total(model: str, count: int) -> None:
    entry = CATALOG.find(model)
    assert entry.published_params == count == entry.shape().param_count()


def test_falcon_40b_published_total_counts_the_tied_head_twice() -> None:
    """The checkpoint stores lm_head beside the embedding it is tied to, so its safetensors
    total (41,835,970,560, kept out of published_params) is one vocab x width matrix more."""
    entry = CATALOG.find("tiiuae/falcon-40b")
    shape = entry.shape()
    assert "41,835,970,560" in _raw("tiiuae/falcon-40b")["params_source"]
    assert 41_835_970_560 - shape.param_count() == 65024 * 8192
    assert shape.num_kv_heads == 8 and shape.num_heads == 128


def test_gemma_7b_heads_are_wider_than_the_model() -> None:
    """16 heads of 256: the attention is 4096 wide in a 3072-wide model, so its KV cache is
    28 layers x 2 x 4096 values per token."""
    est = vramest.estimate(model="google/gemma-7b", ctx=4096, kv_dtype="bf16")
    assert est.memory.kv_cache.bytes == 4096 * 28 * 2 * 16 * 256 * 2


def test_r1_0528_qwen3_8b_is_qwen3_8b_with_more_positions() -> None:
    distilled = CATALOG.find("deepseek-ai/DeepSeek-R1-0528-Qwen3-8B").shape()
    base = CATALOG.find("Qwen/Qwen3-8B").shape()
    assert distilled.param_count() == base.param_count()
    assert (distilled.max_context, base.max_context) == (131072, 40960)


def test_command_a_keeps_the_whole_context_in_one_layer_of_four() -> None:
    """sliding_window_pattern 4: three 4096-token sliding layers to each global one, as
    transformers' Cohere2Config lays them out; the card's '111 billion parameters' is the
    count rounded."""
    shape = CATALOG.find("CohereForAI/c4ai-command-a-03-2025").shape()
    assert shape.kinds().count("full") == 16 and shape.sliding_window == 4096
    assert shape.kinds()[:4] == ("sliding", "sliding", "sliding", "full")
    assert round(shape.param_count() / 1e9) == 111


# name as typed -> the entry whose shape it has (the fine-tune's published total is that entry's)
NAMES = [
    ("nvidia/Llama-3.1-Nemotron-70B-Instruct-HF", "meta-llama/Llama-3.1-70B"),
    ("llama-3.1-nemotron-70b-instruct", "meta-llama/Llama-3.1-70B"),
    ("lmsys/vicuna-13b-v1.5", "meta-llama/Llama-2-13b-hf"),
    ("lmsys/vicuna-7b-v1.5", "meta-llama/Llama-2-7b-hf"),
    ("vicuna-13b-v1.5", "meta-llama/Llama-2-13b-hf"),
    ("deepseek-ai/DeepSeek-R1-0528-Qwen3-8B", "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B"),
    ("google/gemma-7b", "google/gemma-7b"),
    ("google/gemma-2b-it", "google/gemma-2b"),
    ("allenai/OLMo-2-1124-7B", "allenai/OLMo-2-1124-7B-Instruct"),
    ("allenai/OLMo-2-1124-13B", "allenai/OLMo-2-1124-13B-Instruct"),
    ("allenai/OLMo-2-1124-13B-Instruct", "allenai/OLMo-2-1124-13B-Instruct"),
    ("tiiuae/falcon-40b", "tiiuae/falcon-40b"),
    ("MiniMaxAI/MiniMax-M2", "MiniMaxAI/MiniMax-M2.5"),
    ("CohereLabs/c4ai-command-a-03-2025", "CohereForAI/c4ai-command-a-03-2025"),
    ("CohereForAI/c4ai-command-a-03-2025", "CohereForAI/c4ai-command-a-03-2025"),
    ("cohere/command-a", "CohereForAI/c4ai-command-a-03-2025"),
    ("command-a", "CohereForAI/c4ai-command-a-03-2025"),
    ("MiniMaxAI/MiniMax-M2.1", "MiniMaxAI/MiniMax-M2.5"),
]


@pytest.mark.parametrize(("name", "entry"), NAMES, ids=[n for n, _ in NAMES])
def test_a_name_users_type_resolves_to_its_shape(name: str, entry: str) -> None:
    match = catalog_match(name)
    assert match is not None and (match.entry.id, match.precision) == (entry, None)


@pytest.mark.parametrize(("name", "entry", "precision"), [
    ("lmsys/vicuna-13b-v1.5-AWQ", "meta-llama/Llama-2-13b-hf", "awq-int4"),
    ("google/gemma-7b-it-GGUF", "google/gemma-7b", "q4_k_m"),
])
def test_their_quantized_releases_resolve(name: str, entry: str, precision: str | None) -> None:
    match = catalog_match(name)
    assert match is not None and (match.entry.id, match.precision) == (entry, precision)


# Ollama tags seen in threads (Q4_K_M unless the tag names a format): gemma:7b is Gemma 1
# (https://github.com/ollama/ollama/issues/4033, April 2024, before Gemma 2);
# nemotron is Llama-3.1-Nemotron-70B (https://github.com/ollama/ollama/issues/7228)
OLLAMA = [
    ("gemma:7b", "google/gemma-7b", "q4_k_m"),
    ("gemma:2b", "google/gemma-2b", "q4_k_m"),
    ("nemotron:70b", "meta-llama/Llama-3.1-70B", "q4_k_m"),
]


@pytest.mark.parametrize(("tag", "entry", "precision"), OLLAMA, ids=[t for t, _, _ in OLLAMA])
def test_an_ollama_tag_is_the_library_model_in_its_format(tag: str, entry: str,
                                                          precision: str) -> None:
    match = catalog_match(tag)
    assert match is not None and (match.entry.id, match.precision) == (entry, precision)


def test_a_fine_tune_under_its_base_says_so_in_the_notes() -> None:
    """An alias carries no source field of its own: the base entry's notes name the fine-tune
    and where its shape was checked."""
    for entry, tune in [("meta-llama/Llama-3.1-70B", "Nemotron-70B"),
                        ("meta-llama/Llama-2-13b-hf", "vicuna-13b-v1.5"),
                        ("meta-llama/Llama-2-7b-hf", "vicuna-7b-v1.5"),
                        ("MiniMaxAI/MiniMax-M2.5", "MiniMax-M2 and M2.1")]:
        notes = CATALOG.find(entry).notes
        assert tune in notes and "llmfit" in notes
