"""Models users name in OOM and "will it fit" threads that the catalog lacked (issue 18, item 7):
Ministral 8B, Phi-3-small, Falcon3, Yi-1.5, Granite 3.1, Aya Expanse 8B, SmolLM2, Codestral.
Each config gives the published total (where one is published) and the count transformers builds
on the meta device; Phi-3-small, whose remote code transformers cannot build, is checked against
its published total through its own family rule."""

from __future__ import annotations

import pytest
from meta_build import meta_count

import vramest
from vramest.model.catalog import default_catalog
from vramest.model.names import catalog_match

CATALOG = default_catalog()

ADDED = ["mistralai/Ministral-8B-Instruct-2410", "microsoft/Phi-3-small-8k-instruct",
         "tiiuae/Falcon3-7B-Instruct", "tiiuae/Falcon3-3B-Instruct", "01-ai/Yi-1.5-9B-Chat",
         "01-ai/Yi-1.5-6B-Chat", "ibm-granite/granite-3.1-8b-instruct",
         "ibm-granite/granite-3.1-2b-instruct", "CohereForAI/aya-expanse-8b",
         "HuggingFaceTB/SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct",
         "mistralai/Codestral-22B-v0.1"]
REMOTE_CODE = {"microsoft/Phi-3-small-8k-instruct"}  # no transformers class to build

# name as typed -> (catalog entry, the precision the name says; None: the entry's own)
NAMES = [
    ("mistralai/Ministral-8B-Instruct-2410", "mistralai/Ministral-8B-Instruct-2410", None),
    ("ministral-8b", "mistralai/Ministral-8B-Instruct-2410", None),
    ("mistralai/Ministral-8B-Instruct-2410-GGUF", "mistralai/Ministral-8B-Instruct-2410", None),
    ("microsoft/Phi-3-small-8k-instruct", "microsoft/Phi-3-small-8k-instruct", None),
    ("phi-3-small", "microsoft/Phi-3-small-8k-instruct", None),
    ("tiiuae/Falcon3-7B-Instruct-AWQ", "tiiuae/Falcon3-7B-Instruct", "awq-int4"),
    ("01-ai/Yi-1.5-9B-Chat", "01-ai/Yi-1.5-9B-Chat", None),
    ("ibm-granite/granite-3.1-8b-instruct", "ibm-granite/granite-3.1-8b-instruct", None),
    ("CohereLabs/aya-expanse-8b", "CohereForAI/aya-expanse-8b", None),
    ("HuggingFaceTB/SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", None),
    ("mistralai/Codestral-22B-v0.1", "mistralai/Codestral-22B-v0.1", None),
]
# Ollama library tags (Q4_K_M unless the tag names a format)
OLLAMA = [
    ("falcon3:7b", "tiiuae/Falcon3-7B-Instruct", "q4_k_m"),
    ("falcon3:3b", "tiiuae/Falcon3-3B-Instruct", "q4_k_m"),
    ("granite3.1-dense:8b", "ibm-granite/granite-3.1-8b-instruct", "q4_k_m"),
    ("granite3.1-dense:2b", "ibm-granite/granite-3.1-2b-instruct", "q4_k_m"),
    ("aya-expanse:8b", "CohereForAI/aya-expanse-8b", "q4_k_m"),
    ("smollm2:360m", "HuggingFaceTB/SmolLM2-360M-Instruct", "q4_k_m"),
    ("smollm2:135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "q4_k_m"),
    ("codestral:22b", "mistralai/Codestral-22B-v0.1", "q4_k_m"),
    ("codestral:22b-v0.1-q8_0", "mistralai/Codestral-22B-v0.1", "q8_0"),
]


@pytest.mark.parametrize("model", ADDED)
def test_each_entry_is_sourced_and_gives_its_published_count(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.source.startswith("https://") and entry.notes
    if entry.published_params:  # the tolerance test_catalog.py uses for published totals
        assert abs(entry.shape().param_count() / entry.published_params - 1) < 0.005


@pytest.mark.parametrize("model", [m for m in ADDED if m not in REMOTE_CODE])
def test_the_count_is_what_transformers_builds_on_the_meta_device(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.shape().param_count() == meta_count(entry.config)


def test_phi3_small_rule_gives_the_published_total_and_a_full_kv_cache() -> None:
    """Phi-3-small's safetensors hold 7,392,274,432 values; the family rule (fused qkv and dense
    with bias, GeGELU up_proj of 2 x 14336 with bias, LayerNorms with bias, tied head) counts
    within 2,048 of it. Without the rule the standard keys read a 16384-wide gated MLP without
    biases and an untied head: 1.21B too many, read as a Llama."""
    entry = CATALOG.find("microsoft/Phi-3-small-8k-instruct")
    shape = entry.shape()
    published = entry.published_params
    assert published == 7_392_274_432
    assert 0 <= published - shape.param_count() <= 2048
    assert shape.intermediate_size == 14336 and shape.tie_embeddings
    # block-sparse layers still keep their keys and values: 32 full layers of 8 KV heads
    assert shape.kinds() == ("full",) * 32 and shape.num_kv_heads == 8
    est = vramest.estimate(model="microsoft/Phi-3-small-8k-instruct", ctx=8192, kv_dtype="fp16")
    assert est.memory.kv_cache.bytes == 2 * 32 * 8 * 128 * 8192 * 2


def test_phi3_small_128k_is_not_guessed_from_the_8k_entry() -> None:
    """The 128k release's config (LongRoPE factors, vocabulary) was not found whole: it is no
    release of the 8k entry, so the name suggests rather than silently matches."""
    match = catalog_match("microsoft/Phi-3-small-128k-instruct")
    assert match is None or match.entry.shape().max_context == 131072


@pytest.mark.parametrize(("name", "entry", "precision"), NAMES, ids=[n for n, _, _ in NAMES])
def test_a_name_users_type_resolves_to_its_release(name: str, entry: str,
                                                   precision: str | None) -> None:
    match = catalog_match(name)
    assert match is not None and (match.entry.id, match.precision) == (entry, precision)


@pytest.mark.parametrize(("tag", "entry", "precision"), OLLAMA, ids=[t for t, _, _ in OLLAMA])
def test_an_ollama_tag_is_the_library_model_in_its_format(tag: str, entry: str,
                                                          precision: str) -> None:
    match = catalog_match(tag)
    assert match is not None and (match.entry.id, match.precision) == (entry, precision)
