"""Models users name (issue 18, item 7): official configs give the published parameter
counts, the MoE layouts give the model cards' active counts, and a name outside the catalog
gets the closest model of its family and size."""

from __future__ import annotations

import pytest

import vramest
from vramest.errors import InputError
from vramest.model.catalog import default_catalog

CATALOG = default_catalog()
ADDED = [
    "Qwen/Qwen1.5-7B", "Qwen/Qwen1.5-14B", "Qwen/Qwen1.5-32B", "Qwen/Qwen1.5-72B",
    "Qwen/Qwen1.5-110B", "Qwen/Qwen2-7B", "Qwen/Qwen2-7B-Instruct", "Qwen/Qwen2-72B",
    "Qwen/Qwen2-72B-Instruct", "Qwen/Qwen2-57B-A14B", "Qwen/Qwen-72B",
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "upstage/SOLAR-10.7B-v1.0", "huggyllama/llama-7b",
    "huggyllama/llama-13b", "huggyllama/llama-30b", "huggyllama/llama-65b",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    "deepseek-ai/deepseek-coder-6.7b-base", "deepseek-ai/deepseek-coder-33b-base",
    "mistralai/Mistral-Nemo-Base-2407", "mistralai/Mistral-Small-24B-Base-2501",
    "mistralai/Mistral-Large-Instruct-2407", "CohereForAI/c4ai-command-r-v01",
    "CohereForAI/c4ai-command-r-08-2024", "CohereForAI/c4ai-command-r-plus",
    "microsoft/Phi-3.5-MoE-instruct",
]
# Published as a rounded figure (model card or the Hugging Face page's "57.4B"): checked to
# half a unit of its last digit.
ROUNDED = {"Qwen/Qwen2-57B-A14B": 0.05e9, "deepseek-ai/deepseek-coder-33b-base": 0.05e9}


@pytest.mark.parametrize("model", ADDED)
def test_config_gives_the_published_count_within_a_tenth_of_a_percent(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.source.startswith("https://huggingface.co/") and entry.published_params
    computed = entry.shape().param_count()
    tolerance = ROUNDED.get(model, 0.001 * entry.published_params)
    assert abs(computed - entry.published_params) <= tolerance


# Model cards' active counts: Phi-3.5-MoE 6.6B, Qwen2-57B-A14B 14B, Llama 4 17B, GLM-4.5 32B,
# GLM-4.5-Air 12B, Kimi K2 32B. Cards differ on whether the embedding table and the output
# head count (Llama 4 leaves out the table, GLM both), so the card's figure must lie between
# the active count without both and with both.
@pytest.mark.parametrize(("model", "active_b"), [
    ("microsoft/Phi-3.5-MoE-instruct", 6.6), ("Qwen/Qwen2-57B-A14B", 14),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", 17),
    ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", 17), ("zai-org/GLM-4.5", 32),
    ("zai-org/GLM-4.5-Air", 12), ("moonshotai/Kimi-K2-Instruct", 32),
])
def test_moe_layouts_give_the_cards_active_count(model: str, active_b: float) -> None:
    shape = CATALOG.find(model).shape()
    active = shape.active_param_count()
    table = shape.vocab_size * shape.hidden_size
    lowest = active - table * (1 if shape.tie_embeddings else 2)
    assert 0.96 * lowest <= active_b * 1e9 <= 1.04 * active  # cards round to 2 digits


@pytest.mark.parametrize(("model", "total_b"), [
    ("zai-org/GLM-4.5", 355), ("zai-org/GLM-4.5-Air", 106), ("moonshotai/Kimi-K2-Instruct", 1000),
])
def test_card_totals_agree_to_their_rounding(model: str, total_b: float) -> None:
    """The cards round (GLM-4.5's also holds part of its stored MTP layer): within 3%."""
    assert CATALOG.find(model).shape().param_count() / 1e9 == pytest.approx(total_b, rel=0.03)


def test_llama4_interleaves_moe_and_chunks_attention() -> None:
    scout = CATALOG.find("llama-4-scout").shape()
    maverick = CATALOG.find("llama-4-maverick").shape()
    assert sum(scout.moe_layers) == 48 and sum(maverick.moe_layers) == 24
    assert maverick.moe_layers[:4] == (False, True, False, True)  # layers 1, 3, 5 ... are MoE
    assert maverick.intermediate_size == 16384 and maverick.moe_intermediate_size == 8192
    assert scout.shared_experts == 1
    # three of four layers attend within 8192-token chunks, every fourth is global
    assert scout.kinds()[:4] == ("sliding", "sliding", "sliding", "full")
    assert scout.sliding_window == 8192
    short = vramest.estimate(model="llama-4-scout", ctx=8192, dtype="bf16").memory.kv_cache.bytes
    long = vramest.estimate(model="llama-4-scout", ctx=65536, dtype="bf16").memory.kv_cache.bytes
    assert long / short == pytest.approx((12 * 8 + 36) / 48, rel=0.01)


def test_qwen_v1_and_command_r_layouts() -> None:
    qwen = CATALOG.find("qwen-72b").shape()
    assert qwen.fused_qkv and qwen.intermediate_size == 24576  # w1, w2 are half of 49152
    command_r = CATALOG.find("command-r").shape()
    assert command_r.tie_embeddings and command_r.norms_per_layer == 1
    assert command_r.num_kv_heads == 64  # v01 has no GQA: a large cache per token
    assert CATALOG.find("command-r-08-2024").shape().num_kv_heads == 8


@pytest.mark.parametrize("alias", ["tinyllama", "solar-10.7b", "llama-33b", "llama-65b",
                                   "deepseek-r1-distill-qwen-32b", "deepseek-coder-6.7b",
                                   "mistral-nemo", "mistral-small-3", "mistral-large-2",
                                   "command-r+", "phi-3.5-moe", "kimi-k2", "glm-4.5-air",
                                   "qwen1.5-72b-chat-awq", "qwen2-7b-instruct-gptq-int4"])
def test_names_users_type_resolve(alias: str) -> None:
    assert CATALOG.get(alias) is not None


def test_official_awq_release_counts_its_quantized_weights() -> None:
    awq = vramest.estimate(model="Qwen/Qwen1.5-72B-Chat-AWQ").memory.weights.bytes
    full = vramest.estimate(model="Qwen/Qwen1.5-72B", dtype="bf16").memory.weights.bytes
    assert 0.25 < awq / full < 0.35  # 4-bit linears, 16-bit embeddings and head


@pytest.mark.parametrize(("asked", "closest"), [
    ("Qwen/Qwen2.5-13B-Instruct", "Qwen/Qwen2.5-14B"),
    ("llama-4-scout-17b-8e", "meta-llama/Llama-4-Scout-17B-16E-Instruct"),
    ("deepseek-r1-distill-qwen-3b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"),
    ("qwen3-9b", "Qwen/Qwen3-8B"),
    ("mixtral-8x5b", "mistralai/Mixtral-8x7B-v0.1"),
])
def test_unknown_name_suggests_the_closest_of_its_family_and_size(asked: str,
                                                                  closest: str) -> None:
    with pytest.raises(InputError, match=f"closest catalog model .* is {closest} "):
        CATALOG.find(asked)


def test_a_name_without_family_or_size_still_gets_spellings() -> None:
    with pytest.raises(InputError, match="did you mean"):
        CATALOG.find("lama-3.1-8b")
