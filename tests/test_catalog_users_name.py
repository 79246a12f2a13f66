"""Models users name that the offline catalog did not know (issue 18): each resolves offline to
an entry whose config gives the checkpoint's parameter total where one is published (Hugging
Face safetensors totals); a release with an existing entry's exact tensors is a name of that
entry; an architecture vramest cannot count is refused in one sentence that says why and what
to pass instead."""

from __future__ import annotations

import pytest

import vramest
from vramest.cli import main
from vramest.model.catalog import default_catalog
from vramest.model.names import catalog_match

CATALOG = default_catalog()

# name as typed -> the entry it resolves to
NAMES = [
    ("Qwen/Qwen-7B-Chat", "Qwen/Qwen-7B"),
    ("Qwen/Qwen-14B-Chat", "Qwen/Qwen-14B"),
    ("THUDM/chatglm2-6b", "THUDM/chatglm2-6b"),
    ("Qwen/Qwen2.5-Math-7B-Instruct", "Qwen/Qwen2.5-Math-7B-Instruct"),
    ("deepseek-ai/deepseek-llm-7b-chat", "deepseek-ai/deepseek-llm-7b-base"),
    ("deepseek-ai/deepseek-llm-67b-chat", "deepseek-ai/deepseek-llm-67b-base"),
    ("google/gemma-3-270m", "google/gemma-3-270m"),
    ("llava-hf/llava-v1.6-mistral-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf"),
    ("internlm/internlm2_5-7b-chat", "internlm/internlm2_5-7b-chat"),
    ("bigscience/bloom-7b1", "bigscience/bloom-7b1"),
    # a release with an existing entry's tensors: a name of that entry
    ("meta-llama/Llama-Guard-3-8B", "meta-llama/Llama-3.1-8B"),
    ("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct", "deepseek-ai/DeepSeek-V2-Lite"),
    ("ai21labs/AI21-Jamba-1.5-Mini", "ai21labs/Jamba-v0.1"),
    ("mistralai/Pixtral-12B-2409", "mistral-community/pixtral-12b"),
    ("01-ai/Yi-6B", "01-ai/Yi-1.5-6B-Chat"),
]

# Hugging Face safetensors totals of the release named (llmfit's scrape of each repository,
# github.com/AlexsJones/llmfit llmfit-core/data/hf_models.json at 5bdc9df), and the totals
# calflops counted on the models built from their configs (ChatGLM2-6B, BLOOM-7b1;
# github.com/MrYxJ/calculate-flops.pytorch README at 29ca584). The aliases are checked against
# the total of the release itself, not the entry's own figure: equal to the parameter, they
# show the tensors are the same.
MEASURED = [
    ("THUDM/chatglm2-6b", 6_243_584_000),
    ("bigscience/bloom-7b1", 7_069_016_064),
    ("Qwen/Qwen-7B-Chat", 7_721_324_544),
    ("Qwen/Qwen2.5-Math-7B-Instruct", 7_615_616_512),
    ("google/gemma-3-270m", 268_098_176),
    ("llava-hf/llava-v1.6-mistral-7b-hf", 7_566_747_648),
    ("internlm/internlm2_5-7b-chat", 7_737_708_544),
    ("meta-llama/Llama-Guard-3-8B", 8_030_261_248),
    ("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct", 15_706_484_224),
    ("ai21labs/AI21-Jamba-1.5-Mini", 51_570_323_328),  # listed as ai21labs/AI21-Jamba-Mini-1.5
    ("mistralai/Pixtral-12B-2409", 12_682_739_712),  # its mistral-experimental/pixtral-12b copy
    ("01-ai/Yi-6B", 6_061_035_520),
]
# An entry whose own checkpoint total is not published in a source read here, checked against
# the published total of a release with the same tensor list: Qwen-14B against Qwen1.5-14B
# (fused c_attn with bias = q/k/v with bias; w1/w2 of 13696).
SAME_TENSORS = [
    ("Qwen/Qwen-14B", "Qwen/Qwen1.5-14B"),
]

REFUSED = [
    ("openbmb/MiniCPM-V-2_6", "perceiver resampler"),
    ("microsoft/Phi-4-multimodal-instruct", "speech encoders"),
    ("Snowflake/snowflake-arctic-instruct", "dense-MoE hybrid"),
    ("databricks/dbrx-instruct", "ffn_config"),
    ("xai-org/grok-1", "JAX checkpoint"),
    ("tencent/Hunyuan-A13B-Instruct", "hunyuan_v1_moe"),
    ("MiniMaxAI/MiniMax-M1-80k", "lightning (linear) attention"),
    ("stepfun-ai/step3", "Multi-Matrix Factorization Attention"),
    ("inclusionAI/Ling-lite", "bailing_moe"),
    ("LiquidAI/LFM2-1.2B", "short convolutions"),
    ("Qwen/Qwen2.5-Omni-7B", "Talker"),
]


@pytest.mark.parametrize(("name", "entry"), NAMES, ids=[n for n, _ in NAMES])
def test_a_name_users_type_resolves_offline(name: str, entry: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    match = catalog_match(name)
    assert match is not None and match.entry.id == entry and match.precision is None
    assert vramest.estimate(model=name, gpu="h100", ctx=4096).model.name == entry


@pytest.mark.parametrize(("name", "total"), MEASURED, ids=[n for n, _ in MEASURED])
def test_the_count_is_the_checkpoints_published_total(name: str, total: int) -> None:
    shape = CATALOG.find(name).shape()
    assert abs(shape.param_count() - total) <= 0.005 * total
    assert shape.param_count() == total  # to the parameter: the config is the checkpoint's


@pytest.mark.parametrize(("model", "twin"), SAME_TENSORS)
def test_the_count_is_the_published_total_of_the_same_tensors(model: str, twin: str) -> None:
    published = CATALOG.find(twin).published_params
    assert published and CATALOG.find(model).shape().param_count() == published


def test_releases_keep_their_own_context() -> None:
    """Qwen2.5-Math is Qwen2.5-7B's tensors with 4096 positions, ChatGLM2 ChatGLM3's with
    32768, Qwen-14B trained at 2048: their own entries, not names of the base."""
    assert CATALOG.find("Qwen/Qwen2.5-Math-7B-Instruct").shape().max_context == 4096
    assert CATALOG.find("Qwen/Qwen2.5-7B").shape().max_context == 131072
    assert CATALOG.find("THUDM/chatglm2-6b").shape().max_context == 32768
    assert CATALOG.find("THUDM/chatglm3-6b").shape().max_context == 8192
    assert CATALOG.find("Qwen/Qwen-14B").shape().max_context == 2048


def test_layouts_the_configs_say() -> None:
    chatglm2 = CATALOG.find("chatglm2-6b").shape()
    assert chatglm2.num_kv_heads == 2 and not chatglm2.tie_embeddings
    qwen7 = CATALOG.find("qwen-7b").shape()
    assert qwen7.fused_qkv and qwen7.intermediate_size == 11008 and qwen7.num_kv_heads == 32
    ds67 = CATALOG.find("deepseek-llm-67b").shape()
    assert (ds67.num_layers, ds67.num_heads, ds67.num_kv_heads) == (95, 64, 8)
    internlm = CATALOG.find("internlm2_5-7b-chat").shape()  # 32768 x dynamic NTK 2.0
    assert internlm.num_kv_heads == 8 and internlm.scaled_context == 65536
    gemma = CATALOG.find("gemma-3-270m").shape()
    assert gemma.tie_embeddings and gemma.kinds()[:6] == ("sliding",) * 5 + ("full",)
    assert gemma.sliding_window == 512


def test_llava_next_counts_its_image_newline() -> None:
    """LLaVA-NeXT's count is LLaVA-1.5's CLIP tower and projector on its text model plus the
    one image_newline vector of the text width."""
    shape = CATALOG.find("llava-v1.6-mistral-7b").shape()
    text = 7_241_732_096 + 64 * 4096 * 2  # Mistral-7B-v0.1's published total + 64 vocab rows
    assert shape.extra_params == 303_507_456 + 20_979_712 + 4096
    assert shape.param_count() == text + shape.extra_params


@pytest.mark.parametrize(("name", "said"), REFUSED, ids=[n for n, _ in REFUSED])
def test_an_architecture_vramest_cannot_count_is_refused_in_one_sentence(
        name: str, said: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["--model", name, "--gpu", "h100"])
    err = capsys.readouterr().err
    assert code == 2 and said in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert "--params" in err or "--model" in err


@pytest.mark.parametrize("name", ["Snowflake/snowflake-arctic-embed-l", "stepfun-ai/step-audio",
                                  "LiquidAI/LFM-40B"])
def test_a_refusal_is_not_a_neighbour_of_its_name(name: str) -> None:
    assert catalog_match(name) is None  # not refused: another architecture, online or not


@pytest.mark.parametrize(("tag", "entry"), [
    ("qwen:7b", "Qwen/Qwen1.5-7B"), ("qwen:14b", "Qwen/Qwen1.5-14B"),
    ("qwen:72b", "Qwen/Qwen1.5-72B"), ("llama-guard3:8b", "meta-llama/Llama-3.1-8B"),
    ("gemma3:270m", "google/gemma-3-270m"), ("deepseek-llm:67b", "deepseek-ai/deepseek-llm-67b-base"),
    ("deepseek-coder-v2:16b", "deepseek-ai/DeepSeek-V2-Lite"),
])
def test_an_ollama_tag_reaches_the_release_its_library_ships(tag: str, entry: str) -> None:
    """Ollama's qwen library is Qwen1.5 (https://ollama.com/library/qwen), not the Qwen v1
    entries the name qwen-7b now also spells; the others are their releases' own names."""
    match = catalog_match(tag)
    assert match is not None and (match.entry.id, match.precision) == (entry, "q4_k_m")
