"""Models users name in OOM and "will it fit" threads that the catalog lacked (issue 18, item 7):
Ministral 8B, Phi-3-small and -mini 128k, Falcon3, Yi-1.5, Granite 3.1, Aya Expanse 8B, Command
R7B, SmolLM2, Codestral, StarCoder2, OLMo 2 32B, Qwen3-1.7B, Qwen2-VL, Qwen2.5-VL 3B.
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
         "mistralai/Codestral-22B-v0.1", "bigcode/starcoder2-15b", "bigcode/starcoder2-7b",
         "bigcode/starcoder2-3b", "microsoft/Phi-3-small-128k-instruct",
         "microsoft/Phi-3-mini-128k-instruct", "CohereForAI/c4ai-command-r7b-12-2024",
         "allenai/OLMo-2-0325-32B-Instruct", "tiiuae/Falcon3-1B-Instruct", "Qwen/Qwen3-1.7B"]
REMOTE_CODE = {"microsoft/Phi-3-small-8k-instruct", "microsoft/Phi-3-small-128k-instruct"}
# Vision-language entries: their tower is the published total minus the text model, so their
# check is the text model's meta-device count
VISION = ["Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-72B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct"]

# name as typed -> (catalog entry, the precision the name says; None: the entry's own)
NAMES = [
    ("mistralai/Ministral-8B-Instruct-2410", "mistralai/Ministral-8B-Instruct-2410", None),
    ("ministral-8b", "mistralai/Ministral-8B-Instruct-2410", None),
    ("mistralai/Ministral-8B-Instruct-2410-GGUF", "mistralai/Ministral-8B-Instruct-2410", "q4_k_m"),
    ("microsoft/Phi-3-small-8k-instruct", "microsoft/Phi-3-small-8k-instruct", None),
    ("phi-3-small", "microsoft/Phi-3-small-8k-instruct", None),
    ("tiiuae/Falcon3-7B-Instruct-AWQ", "tiiuae/Falcon3-7B-Instruct", "awq-int4"),
    ("01-ai/Yi-1.5-9B-Chat", "01-ai/Yi-1.5-9B-Chat", None),
    ("ibm-granite/granite-3.1-8b-instruct", "ibm-granite/granite-3.1-8b-instruct", None),
    ("CohereLabs/aya-expanse-8b", "CohereForAI/aya-expanse-8b", None),
    ("HuggingFaceTB/SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", None),
    ("mistralai/Codestral-22B-v0.1", "mistralai/Codestral-22B-v0.1", None),
    ("microsoft/Phi-3-small-128k-instruct", "microsoft/Phi-3-small-128k-instruct", None),
    ("microsoft/Phi-3-mini-128k-instruct", "microsoft/Phi-3-mini-128k-instruct", None),
    ("Qwen/Qwen2-VL-7B-Instruct-AWQ", "Qwen/Qwen2-VL-7B-Instruct", "awq-int4"),
    ("unsloth/Qwen2-VL-7B-Instruct-bnb-4bit", "Qwen/Qwen2-VL-7B-Instruct", "bnb-nf4-dq"),
    ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct", None),
    ("CohereLabs/c4ai-command-r7b-12-2024", "CohereForAI/c4ai-command-r7b-12-2024", None),
    ("bigcode/starcoder2-15b", "bigcode/starcoder2-15b", None),
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
    ("starcoder2:3b", "bigcode/starcoder2-3b", "q4_k_m"),
    ("starcoder2:15b", "bigcode/starcoder2-15b", "q4_k_m"),
    ("qwen2.5vl:3b", "Qwen/Qwen2.5-VL-3B-Instruct", "q4_k_m"),
    ("command-r7b:7b", "CohereForAI/c4ai-command-r7b-12-2024", "q4_k_m"),
    ("falcon3:1b", "tiiuae/Falcon3-1B-Instruct", "q4_k_m"),
    ("llama3.2-vision:11b", "meta-llama/Llama-3.2-11B-Vision", "q4_k_m"),
    ("phi3:mini-128k", "microsoft/Phi-3-mini-128k-instruct", "q4_k_m"),
    ("qwen3:1.7b", "Qwen/Qwen3-1.7B", "q4_k_m"),
]


@pytest.mark.parametrize("model", ADDED + VISION)
def test_each_entry_is_sourced_and_gives_its_published_count(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.source.startswith("https://") and entry.notes
    if entry.published_params:  # the tolerance test_catalog.py uses for published totals
        assert abs(entry.shape().param_count() / entry.published_params - 1) < 0.005


@pytest.mark.parametrize("model", [m for m in ADDED if m not in REMOTE_CODE])
def test_the_count_is_what_transformers_builds_on_the_meta_device(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.shape().param_count() == meta_count(entry.config)


@pytest.mark.parametrize("model", VISION)
def test_a_vision_entry_adds_its_tower_to_the_text_model_transformers_builds(model: str) -> None:
    shape = CATALOG.find(model).shape()
    text = dict(CATALOG.find(model).config["text_config"], architectures=["Qwen2ForCausalLM"])
    assert shape.param_count() - shape.extra_params == meta_count(text)
    assert 0 < shape.extra_params < 0.25 * shape.param_count()  # a tower, not a second model


def test_starcoder2_without_the_key_ties_its_head_as_its_checkpoints_do() -> None:
    """StarCoder2 3B and 7B configs leave tie_word_embeddings out; Starcoder2Config's default
    (True) gives their published totals, 3,030,371,328 and 7,173,923,840. The 15B sets false."""
    for model, tied in (("bigcode/starcoder2-3b", True), ("bigcode/starcoder2-7b", True),
                        ("bigcode/starcoder2-15b", False)):
        entry = CATALOG.find(model)
        assert entry.shape().tie_embeddings is tied
        if entry.published_params:
            assert entry.shape().param_count() == entry.published_params


def test_cohere2_pattern_alone_gives_transformers_layer_types() -> None:
    """Command R7B's config gives sliding_window_pattern 4 and no layer_types: transformers'
    Cohere2Config makes every fourth layer global, so 8 of 32 layers hold the whole context."""
    transformers = pytest.importorskip("transformers")
    entry = CATALOG.find("CohereForAI/c4ai-command-r7b-12-2024")
    values = {k: v for k, v in entry.config.items() if k not in ("model_type", "architectures")}
    expected = ["sliding" if "sliding" in t else "full"
                for t in transformers.Cohere2Config(**values).layer_types]
    assert list(entry.shape().kinds()) == expected
    assert entry.shape().layer_kind_counts == {"sliding": 24, "full": 8}


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


def test_the_128k_releases_keep_their_own_context() -> None:
    """Phi-3-small and -mini 128k hold the 8k / 4k releases' tensors but 131072 positions: the
    weights must match and the context must not."""
    for long, short in (("microsoft/Phi-3-small-128k-instruct", "microsoft/Phi-3-small-8k-instruct"),
                        ("microsoft/Phi-3-mini-128k-instruct", "microsoft/Phi-3-mini-4k-instruct")):
        match = catalog_match(long)
        assert match is not None and match.entry.shape().max_context == 131072
        assert CATALOG.find(short).shape().max_context < 131072
        assert match.entry.shape().param_count() == CATALOG.find(short).shape().param_count()


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
