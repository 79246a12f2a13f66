"""Models users name (issue 18, item 7), added to the catalog: each name resolves offline to its
entry, whose config gives the published parameter count (or, where only part of the checkpoint
is listed, exactly that part) and the count transformers builds on the meta device; releases of
a catalog model's shape reach that entry; Kimi K2 Thinking keeps its own INT4 format; a regex in
a quantized checkpoint's ignore list is read as compressed-tensors reads it."""

from __future__ import annotations

import pytest
from meta_build import meta_count

import vramest
from vramest.model.catalog import default_catalog
from vramest.model.names import catalog_match

CATALOG = default_catalog()

# name as typed -> the entry it is
NAMES = [
    ("moonshotai/Kimi-K2-Thinking", "moonshotai/Kimi-K2-Thinking"),
    ("kimi-k2-thinking", "moonshotai/Kimi-K2-Thinking"),
    ("zai-org/GLM-4.7", "zai-org/GLM-4.6"),
    ("glm-4.7", "zai-org/GLM-4.6"),
    ("NousResearch/Hermes-3-Llama-3.1-8B", "meta-llama/Llama-3.1-8B"),
    ("HuggingFaceTB/SmolLM3-3B", "HuggingFaceTB/SmolLM3-3B"),
    ("HuggingFaceTB/SmolLM3-3B-Base", "HuggingFaceTB/SmolLM3-3B"),
    ("ByteDance-Seed/Seed-OSS-36B-Instruct", "ByteDance-Seed/Seed-OSS-36B-Instruct"),
    ("baidu/ERNIE-4.5-21B-A3B-PT", "baidu/ERNIE-4.5-21B-A3B-PT"),
    ("baidu/ERNIE-4.5-21B-A3B-Thinking", "baidu/ERNIE-4.5-21B-A3B-PT"),
    ("facebook/opt-6.7b", "facebook/opt-6.7b"),
    ("facebook/opt-13b", "facebook/opt-13b"),
    ("facebook/opt-30b", "facebook/opt-30b"),
    ("EleutherAI/gpt-neox-20b", "EleutherAI/gpt-neox-20b"),
    ("EleutherAI/gpt-j-6b", "EleutherAI/gpt-j-6b"),  # was already there
]

# Hugging Face safetensors totals, as llmfit's scrape lists them (github.com/AlexsJones/llmfit,
# llmfit-core/data/hf_models.json at 5bdc9df): SmolLM3-3B; the lmstudio-community MLX
# conversions of Seed-OSS-36B-Instruct; ERNIE-4.5-21B-A3B-Thinking (the -PT release's tensors)
PUBLISHED = {
    "HuggingFaceTB/SmolLM3-3B": 3_075_098_624,
    "ByteDance-Seed/Seed-OSS-36B-Instruct": 36_151_104_512,
    "baidu/ERNIE-4.5-21B-A3B-PT": 21_825_437_888,
}
# Where llmfit lists only a checkpoint's largest dtype group (its fallback when the hub gives
# no total): that figure, and the tensor roles it is made of
PARTIAL = {
    "facebook/opt-6.7b": 6_648_365_056,
    "facebook/opt-13b": 12_840_304_640,
    "facebook/opt-30b": 29_955_358_720,
    "EleutherAI/gpt-neox-20b": 20_241_186_816,
}
ADDED = sorted({entry for _, entry in NAMES} - {"zai-org/GLM-4.6", "meta-llama/Llama-3.1-8B",
                                               "EleutherAI/gpt-j-6b"})


@pytest.mark.parametrize(("name", "entry"), NAMES, ids=[n for n, _ in NAMES])
def test_the_name_resolves_offline_to_its_entry(name: str, entry: str) -> None:
    match = catalog_match(name)
    assert match is not None and match.entry.id == entry and match.precision is None
    est = vramest.estimate(model=name, ctx=2048)
    assert est.model.name == entry and est.memory.weights.bytes > 0


@pytest.mark.parametrize("model", ADDED)
def test_each_added_entry_says_where_its_values_come_from(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.source.startswith("https://huggingface.co/") and entry.notes
    assert entry.published_params or model in PARTIAL or model == "moonshotai/Kimi-K2-Thinking"


@pytest.mark.parametrize(("model", "published"), sorted(PUBLISHED.items()))
def test_the_config_gives_the_published_total_exactly(model: str, published: int) -> None:
    entry = CATALOG.find(model)
    assert entry.published_params == published
    assert entry.shape().param_count() == published


@pytest.mark.parametrize("model", sorted({*PUBLISHED, *PARTIAL}))
def test_the_count_is_what_transformers_builds_on_the_meta_device(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.shape().param_count() == meta_count(entry.config)


@pytest.mark.parametrize(("model", "listed"), sorted(PARTIAL.items()))
def test_a_listed_dtype_group_is_exactly_the_matrices_it_names(model: str, listed: int) -> None:
    """OPT: the table and the layer matrices, without learned positions, biases and
    LayerNorms; GPT-NeoX-20B: the layer matrices and the output head, without the input
    table, biases and LayerNorms."""
    shape = CATALOG.find(model).shape()
    left_out = {"bias", "norm", "position_embedding"}
    if shape.family == "gpt_neox":
        left_out.add("embedding")
    part = sum(times * t.elements for t, times in shape.counted_tensors()
               if t.role not in left_out)
    assert part == listed
    assert CATALOG.find(model).published_params is None  # not a whole total


def test_glm_4_7_is_glm_4_6_with_its_mtp_layer_s_own_table_and_head() -> None:
    """GLM-4.7's safetensors total (358,337,791,296, llmfit at 5bdc9df) is GLM-4.6's plus one
    vocabulary x width table and one head: its stored MTP layer keeps its own."""
    glm = CATALOG.find("glm-4.7")
    shape = glm.shape()
    assert glm.id == "zai-org/GLM-4.6" and shape.max_context == 202752
    assert glm.published_params is not None
    assert glm.published_params + 2 * shape.vocab_size * shape.hidden_size == 358_337_791_296


def test_hermes_3_8b_is_llama_3_1_8b_s_total() -> None:
    """llmfit lists NousResearch/Hermes-3-Llama-3.1-8B at 8,030,261,248, Llama 3.1 8B's."""
    assert CATALOG.find("NousResearch/Hermes-3-Llama-3.1-8B").shape().param_count() == \
        8_030_261_248


def test_kimi_k2_thinking_keeps_its_int4_experts_and_16_bit_rest() -> None:
    """The release's compressed-tensors ignore list (lm_head, self_attn, shared_experts and
    the dense layer's mlp.*_proj, matched with re.match as compressed-tensors does) leaves only
    the routed experts in INT4; the expert pattern `.*mlp\\.(gate|up|gate_up|down)_proj.*`
    must not take the experts under mlp.experts.N as well (read as the fragment "mlp" it did,
    and the weights came out at 16 bit: 2,053 GB)."""
    from vramest.model.precisions import weight_format
    from vramest.model.resolve import resolve_model

    info = resolve_model(model="moonshotai/Kimi-K2-Thinking")
    assert info.native_format == "int4"
    shape = info.shape
    assert shape.param_count() == CATALOG.find("kimi-k2").shape().param_count()
    experts = sum(times * t.elements for t, times in shape.counted_tensors()
                  if t.role in ("expert_gate", "expert_up", "expert_down"))
    assert experts == 60 * 384 * 3 * 7168 * 2048
    bits = weight_format("int4").linear_bits
    expected = experts * bits / 8 + (shape.param_count() - experts) * 2
    weights = vramest.estimate(model="moonshotai/Kimi-K2-Thinking", ctx=1024).memory.weights
    assert weights.bytes == pytest.approx(expected, rel=1e-6)
    assert shape.max_context == 262144


@pytest.mark.parametrize(("pattern", "experts_kept_16_bit"), [
    ("re:.*mlp\\.(gate|up|gate_up|down)_proj.*", False),  # the dense MLP alone
    ("re:.*mlp.*", True),  # every MLP, experts included
    ("re:.*shared_experts.*", False),
])
def test_a_regex_ignore_pattern_is_matched_as_compressed_tensors_matches_it(
        pattern: str, experts_kept_16_bit: bool) -> None:
    from vramest.model.precisions import unquantized_modules

    roles = {r for group, _ in unquantized_modules([pattern]) for r in group}
    assert ("expert_gate" in roles) is experts_kept_16_bit
    assert "ffn_gate" in roles or pattern == "re:.*shared_experts.*"


def test_ernie_moe_layout_gives_the_card_s_active_count() -> None:
    """ERNIE-4.5-21B-A3B: layer 0 dense, 27 MoE layers of 64 experts (6 active) and 2 shared;
    the card's 3B active lies between the active count without the tied table and with it."""
    shape = CATALOG.find("baidu/ERNIE-4.5-21B-A3B-PT").shape()
    assert sum(shape.moe_layers) == 27 and not shape.moe_layers[0]
    assert (shape.num_experts, shape.experts_per_token, shape.shared_experts) == (64, 6, 2)
    active = shape.active_param_count()
    table = shape.vocab_size * shape.hidden_size
    assert 0.96 * (active - table) <= 3e9 <= 1.04 * active


def test_seed_oss_biases_q_k_v_but_not_o() -> None:
    shape = CATALOG.find("ByteDance-Seed/Seed-OSS-36B-Instruct").shape()
    assert shape.attention_bias and not shape.attention_out_bias
    assert shape.num_heads * shape.head_dim == 2 * shape.hidden_size


@pytest.mark.parametrize(("name", "said"), [
    ("mistralai/Magistral-Small-2506", "Devstral-Small-2505"),  # still no config copy
    ("google/gemma-3n-E4B-it", "KV cache"),  # KV shared across layers: refused on purpose
])
def test_names_left_out_are_still_refused_in_one_sentence(name: str, said: str) -> None:
    from vramest.errors import InputError

    with pytest.raises(InputError, match=said):
        catalog_match(name)
