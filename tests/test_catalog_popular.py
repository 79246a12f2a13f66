"""Models users name (issue 18, item 7), tried as a user would type them: each resolves to an
entry whose config gives the published parameter count and the count transformers builds on the
meta device; dated releases keep their own context; Ollama tags, renamed organisations and
quantized releases reach the right entry in the right format; architectures vramest cannot count
are refused in one sentence; a miss suggests a model of the size the name states."""

from __future__ import annotations

import pytest
from meta_build import meta_count

import vramest
from vramest.cli import main
from vramest.errors import InputError
from vramest.model.catalog import SUGGEST_SIZE_FACTOR, default_catalog
from vramest.model.names import catalog_match

CATALOG = default_catalog()

# name as typed -> (catalog entry, the precision the name says; None: the entry's own)
NAMES = [
    ("Qwen/Qwen2.5-Coder-32B-Instruct", "Qwen/Qwen2.5-Coder-32B-Instruct", None),
    ("Qwen/Qwen2.5-Coder-14B-Instruct", "Qwen/Qwen2.5-Coder-14B-Instruct", None),
    ("Qwen/Qwen2.5-Coder-32B-Instruct-AWQ", "Qwen/Qwen2.5-Coder-32B-Instruct", "awq-int4"),
    ("Qwen/Qwen2.5-Coder-14B-Instruct-AWQ", "Qwen/Qwen2.5-Coder-14B-Instruct", "awq-int4"),
    ("Qwen/Qwen2.5-Coder-32B-Instruct-GPTQ-Int4", "Qwen/Qwen2.5-Coder-32B-Instruct", "gptq-int4"),
    ("Qwen/QwQ-32B", "Qwen/QwQ-32B", None),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507", "Qwen/Qwen3-235B-A22B-Instruct-2507", None),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", "Qwen/Qwen3-235B-A22B-Instruct-2507", "fp8"),
    ("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-30B-A3B-Instruct-2507", None),
    ("Qwen/Qwen3-4B-Instruct-2507", "Qwen/Qwen3-4B-Instruct-2507", None),
    ("Qwen/Qwen3-Coder-480B-A35B-Instruct", "Qwen/Qwen3-Coder-480B-A35B-Instruct", None),
    ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "Qwen/Qwen3-Coder-30B-A3B-Instruct", None),
    ("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct", None),
    ("Qwen/Qwen2.5-VL-32B-Instruct", "Qwen/Qwen2.5-VL-32B-Instruct", None),
    ("mistralai/Mistral-Small-3.1-24B-Instruct-2503",
     "mistralai/Mistral-Small-3.1-24B-Instruct-2503", None),
    ("mistralai/Mistral-Small-3.2-24B-Instruct-2506",
     "mistralai/Mistral-Small-3.2-24B-Instruct-2506", None),
    ("mistralai/Mistral-Large-Instruct-2411", "mistralai/Mistral-Large-Instruct-2411", None),
    ("mistralai/Devstral-Small-2505", "mistralai/Devstral-Small-2505", None),
    ("deepseek-ai/DeepSeek-R1-0528", "deepseek-ai/DeepSeek-R1-0528", None),
    ("deepseek-ai/DeepSeek-V3-0324", "deepseek-ai/DeepSeek-V3-0324", None),
    ("deepseek-ai/DeepSeek-V3.1", "deepseek-ai/DeepSeek-V3.1", None),
    ("microsoft/Phi-4-mini-instruct", "microsoft/Phi-4-mini-instruct", None),
    ("microsoft/Phi-3.5-mini-instruct", "microsoft/Phi-3.5-mini-instruct", None),
    ("microsoft/phi-4-reasoning", "microsoft/phi-4-reasoning", None),
    ("zai-org/GLM-4.6", "zai-org/GLM-4.6", None),
    ("CohereLabs/c4ai-command-r-08-2024", "CohereForAI/c4ai-command-r-08-2024", None),
    ("CohereLabs/aya-expanse-32b", "CohereForAI/aya-expanse-32b", None),
    ("CohereForAI/aya-expanse-32b", "CohereForAI/aya-expanse-32b", None),
    ("ibm-granite/granite-3.3-8b-instruct", "ibm-granite/granite-3.3-8b-instruct", None),
    ("HuggingFaceTB/SmolLM2-1.7B-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct", None),
    ("allenai/OLMo-2-1124-7B-Instruct", "allenai/OLMo-2-1124-7B-Instruct", None),
    ("01-ai/Yi-1.5-34B-Chat", "01-ai/Yi-1.5-34B-Chat", None),
    ("tiiuae/Falcon3-10B-Instruct", "tiiuae/Falcon3-10B-Instruct", None),
]

# Ollama library names and tags (Q4_K_M unless the tag names a format)
OLLAMA = [
    ("qwen3:30b", "Qwen/Qwen3-30B-A3B", "q4_k_m"),
    ("qwen3:235b", "Qwen/Qwen3-235B-A22B", "q4_k_m"),
    ("qwen3:30b-a3b-instruct-2507-q8_0", "Qwen/Qwen3-30B-A3B-Instruct-2507", "q8_0"),
    ("qwen3-coder:30b", "Qwen/Qwen3-Coder-30B-A3B-Instruct", "q4_k_m"),
    ("qwen3-coder:480b", "Qwen/Qwen3-Coder-480B-A35B-Instruct", "q4_k_m"),
    ("qwen3-coder", "Qwen/Qwen3-Coder-30B-A3B-Instruct", "q4_k_m"),
    ("mistral-small3.1", "mistralai/Mistral-Small-3.1-24B-Instruct-2503", "q4_k_m"),
    ("mistral-small3.1:24b", "mistralai/Mistral-Small-3.1-24B-Instruct-2503", "q4_k_m"),
    ("mistral-small3.2:24b-instruct-2506-q8_0", "mistralai/Mistral-Small-3.2-24B-Instruct-2506",
     "q8_0"),
    ("phi4:14b", "microsoft/phi-4", "q4_k_m"),
    ("phi4-mini", "microsoft/Phi-4-mini-instruct", "q4_k_m"),
    ("phi4-reasoning:14b", "microsoft/phi-4-reasoning", "q4_k_m"),
    ("qwq", "Qwen/QwQ-32B", "q4_k_m"),
    ("qwq:32b-q8_0", "Qwen/QwQ-32B", "q8_0"),
    ("qwen2.5-coder:32b", "Qwen/Qwen2.5-Coder-32B-Instruct", "q4_k_m"),
    ("qwen2.5-coder:14b-instruct-fp16", "Qwen/Qwen2.5-Coder-14B-Instruct", "gguf-f16"),
    ("devstral", "mistralai/Devstral-Small-2505", "q4_k_m"),
    ("qwen2.5vl:7b", "Qwen/Qwen2.5-VL-7B-Instruct", "q4_k_m"),
    ("granite3.3:8b", "ibm-granite/granite-3.3-8b-instruct", "q4_k_m"),
    ("smollm2:1.7b", "HuggingFaceTB/SmolLM2-1.7B-Instruct", "q4_k_m"),
    ("olmo2:7b", "allenai/OLMo-2-1124-7B-Instruct", "q4_k_m"),
    ("falcon3:10b", "tiiuae/Falcon3-10B-Instruct", "q4_k_m"),
    ("aya-expanse:32b", "CohereForAI/aya-expanse-32b", "q4_k_m"),
]

ADDED = sorted({entry for _, entry, _ in NAMES if entry != "CohereForAI/c4ai-command-r-08-2024"
                and entry != "Qwen/Qwen3-Coder-30B-A3B-Instruct"})
# Published totals that hold more than the running model, explained in each entry's notes:
# DeepSeek's checkpoints store a multi-token-prediction layer and FP8 block scales, GLM-4.6 its
# MTP layer; each is within this fraction of the total.
PUBLISHED_HOLDS_MORE = {"deepseek-ai/DeepSeek-R1-0528": 0.02, "deepseek-ai/DeepSeek-V3-0324": 0.02,
                        "deepseek-ai/DeepSeek-V3.1": 0.02, "zai-org/GLM-4.6": 0.012}
# Vision-language entries whose tower is the published total minus the text model: their count
# equals the published total by construction, so their check is the text model's meta count.
VISION = {"Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-32B-Instruct",
          "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
          "mistralai/Mistral-Small-3.2-24B-Instruct-2506"}


@pytest.mark.parametrize(("name", "entry", "precision"), NAMES, ids=[n for n, _, _ in NAMES])
def test_a_name_users_type_resolves_to_its_release(name: str, entry: str,
                                                   precision: str | None) -> None:
    match = catalog_match(name)
    assert match is not None and match.entry.id == entry
    assert match.precision == precision
    est = vramest.estimate(model=name, gpu="4090", ctx=4096)
    assert est.model.name == entry


@pytest.mark.parametrize(("tag", "entry", "precision"), OLLAMA, ids=[t for t, _, _ in OLLAMA])
def test_an_ollama_name_is_the_library_model_in_its_format(tag: str, entry: str,
                                                           precision: str) -> None:
    match = catalog_match(tag)
    assert match is not None and (match.entry.id, match.precision) == (entry, precision)
    assert vramest.estimate(model=tag, ctx=4096).memory.weights.bytes == vramest.estimate(
        model=entry, dtype=precision, ctx=4096).memory.weights.bytes


@pytest.mark.parametrize("model", ADDED)
def test_the_config_gives_the_published_count(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.source and entry.notes and entry.published_params
    computed = entry.shape().param_count()
    tolerance = PUBLISHED_HOLDS_MORE.get(model, 0.001)
    assert abs(computed / entry.published_params - 1) <= tolerance
    if model in PUBLISHED_HOLDS_MORE:
        assert computed < entry.published_params and "MTP" in entry.notes + entry.source



@pytest.mark.parametrize("model", [m for m in ADDED if m not in VISION])
def test_the_count_is_what_transformers_builds_on_the_meta_device(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.shape().param_count() == meta_count(entry.config)


@pytest.mark.parametrize("model", sorted(VISION))
def test_a_vision_entry_adds_its_tower_to_the_text_model_transformers_builds(model: str) -> None:
    entry = CATALOG.find(model)
    text = dict(entry.config["text_config"], tie_word_embeddings=False)
    shape = entry.shape()
    assert shape.param_count() - shape.extra_params == meta_count(text)
    assert 0 < shape.extra_params < 0.1 * shape.param_count()  # a tower, not a second model


def test_mistral_small_3_1_published_total_is_the_text_model_plus_pixtral() -> None:
    """transformers' Mistral3ForConditionalGeneration built from the entry's config, with the
    checkpoint's separate lm_head, counts the 24,011,361,280 the repository publishes."""
    entry = CATALOG.find("mistralai/Mistral-Small-3.1-24B-Instruct-2503")
    config = dict(entry.config, tie_word_embeddings=False)
    assert meta_count(config, "Mistral3ForConditionalGeneration") == entry.published_params


@pytest.mark.parametrize(("dated", "base"), [
    ("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-30B-A3B"),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507", "Qwen/Qwen3-235B-A22B"),
    ("Qwen/Qwen3-4B-Instruct-2507", "Qwen/Qwen3-4B"),
])
def test_a_dated_release_keeps_its_own_context(dated: str, base: str) -> None:
    """The 2507 releases hold 262144 positions where their bases hold 40960: the longest
    context that fits must differ, the weights must not."""
    assert CATALOG.find(dated).shape().max_context == 262144
    assert CATALOG.find(base).shape().max_context == 40960
    one, other = (vramest.estimate(model=m, ctx=32768) for m in (dated, base))
    assert one.memory.weights.bytes == other.memory.weights.bytes


@pytest.mark.parametrize("name", [
    "qwen3:4b-thinking-2507", "qwen3:235b-a22b-thinking-2507", "Qwen3-4B-Thinking-2507",
    "qwen3-30b-a3b-thinking-2507", "mistral-large:123b-instruct-2502",
])
def test_a_date_suffix_never_falls_back_to_an_entry_of_another_release(name: str) -> None:
    match = catalog_match(name)
    assert match is None or set(_dates_of(name)) <= set(_dates_of(match.entry.id))


def _dates_of(name: str) -> list[str]:
    return [w for w in name.lower().replace(":", "-").replace("/", "-").split("-")
            if len(w) == 4 and w.isdigit()]


@pytest.mark.parametrize(("name", "said"), [
    ("nvidia/Llama-3.3-Nemotron-Super-49B-v1", "DeciLM"),
    ("nvidia/Llama-3_3-Nemotron-Super-49B-v1", "DeciLM"),
    ("google/gemma-3n-E4B-it", "KV cache"),
    ("gemma3n", "KV cache"),
    ("gemma3n:e2b", "KV cache"),
    ("mistralai/Magistral-Small-2506", "Devstral-Small-2505"),
    ("magistral", "Devstral-Small-2505"),
    # 2026 releases (tests/test_catalog_2026.py)
    ("google/gemma-4-31B-it", "512-wide keys"),
    ("google/gemma-4-26B-A4B-it", "512-wide keys"),
    ("gemma4:31b", "512-wide keys"),
    ("gemma4:e4b", "per-layer embeddings"),
    ("unsloth/gemma-4-26B-A4B-it-GGUF", "512-wide keys"),
    ("deepseek-ai/DeepSeek-V4-Flash", "hyper-connections"),
    ("deepseek-ai/DeepSeek-V4-Pro", "compressed"),
    ("moonshotai/Kimi-K2.5", "MoonViT"),
    ("qwen3.5:9b", "config.json"),
    ("qwen3.5:0.8b", "config.json"),
    ("Qwen3.5-4B", "config.json"),
])
def test_an_architecture_vramest_cannot_count_is_refused_in_one_sentence(
        name: str, said: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--model", name, "--gpu", "4090"])
    err = capsys.readouterr().err
    assert code == 2 and said in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("asked", "closest"), [
    ("Qwen/Qwen2.5-Coder-72B-Instruct-AWQ", "Qwen/Qwen2.5-72B"),  # Coder's 32B is over 2x off
    ("Qwen/Qwen2.5-Coder-3B-Instruct", "Qwen/Qwen2.5-3B"),  # Coder's 7B is over 2x off
    ("Qwen/Qwen2.5-Coder-30B-Instruct", "Qwen/Qwen2.5-Coder-32B-Instruct"),
    ("Qwen/Qwen3-30B-A3B-Thinking-2507", "Qwen/Qwen3-30B-A3B-Instruct-2507"),
    # a release after the catalog's: another version of its line before a first generation
    ("Qwen/Qwen3.8-27B", "Qwen/Qwen3.6-27B"),  # not Qwen v1's 14B
    ("meta-llama/Llama-3.4-8B", "meta-llama/Llama-3.1-8B"),  # the size first, then the version
])
def test_a_miss_suggests_a_model_of_the_size_the_name_states(asked: str, closest: str) -> None:
    with pytest.raises(InputError, match=f"closest catalog model .* is {closest} "):
        CATALOG.find(asked)


@pytest.mark.parametrize("asked", ["qwen2.5-coder-900b", "qwen2.5-coder-0.1b"])
def test_no_family_suggestion_when_no_size_is_near(asked: str) -> None:
    found = CATALOG.closest_same_family(asked)
    assert found is None, found


def test_every_suggestion_is_within_the_size_factor_of_the_name() -> None:
    """Invariant over the whole catalog's names with a stated size: whatever is suggested for
    that name at 1/3, 1, 3 times its size states a size within SUGGEST_SIZE_FACTOR."""
    from vramest.model.catalog import _family_and_size

    for entry in CATALOG.entries:
        parsed = _family_and_size(entry.id)
        if parsed is None:
            continue
        for factor in (1 / 3, 1.0, 3.0):
            size = parsed[1] * factor
            label = f"{size / 1e9:.1f}b" if size >= 1e9 else f"{size / 1e6:.0f}m"
            name = f"{parsed[0]}-{label}"  # qwen2.5coder-10.7b
            found = CATALOG.closest_same_family(name)
            if found is None:
                continue
            asked = _family_and_size(name)
            stated = [s for c in (found[0].id, *found[0].aliases)
                      if (p := _family_and_size(c)) and (s := p[1])]
            assert asked and any(1 / SUGGEST_SIZE_FACTOR - 1e-6 <= s / asked[1]
                                 <= SUGGEST_SIZE_FACTOR + 1e-6 for s in stated), (name, found)


def test_olmo2_norms_whole_projections_and_granite_adds_no_weights() -> None:
    """OLMo 2's q_norm and k_norm span all heads (4096 + 4096 per layer for the 7B), not one
    head; Granite's multipliers hold no weights, so it counts as the Llama of the same keys."""
    olmo = CATALOG.find("allenai/OLMo-2-1124-7B-Instruct").shape()
    qk = [t for t in olmo.global_tensors() if t.role == "norm" and t.count == olmo.num_layers]
    assert [(t.cols, t.count) for t in qk] == [(8192, 32)] and not olmo.qk_norm
    granite = CATALOG.find("ibm-granite/granite-3.3-8b-instruct")
    as_llama = dict(granite.config, model_type="llama", architectures=["LlamaForCausalLM"])
    from vramest.model.shapes import shape_from_config

    assert granite.shape().param_count() == shape_from_config(as_llama, "x").param_count()


def test_a_renamed_organisation_says_so() -> None:
    est = vramest.estimate(model="CohereLabs/c4ai-command-r-08-2024", ctx=1024)
    assert est.model.name == "CohereForAI/c4ai-command-r-08-2024"
    assert any("organisation was renamed" in a for a in est.assumptions)
