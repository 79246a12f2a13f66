"""Models users name in 2026 (issue 18, item 7): the Qwen3.5 / Qwen3.6 gated-DeltaNet hybrids,
GLM-5, MiniMax-M2.5/M2.7 and Nemotron 3 run in the vLLM, llama.cpp and Ollama threads of the year.
Each entry's count equals transformers' meta-device build of its config and the published
figure (or the difference its notes explain); the recurrent state matches a llama.cpp log; the
names users type resolve; the architectures vramest cannot count are refused in one sentence."""

from __future__ import annotations

from typing import Any

import pytest
from meta_build import meta_count

import vramest
from vramest.cli import main
from vramest.errors import InputError
from vramest.model.catalog import default_catalog
from vramest.model.names import catalog_match

CATALOG = default_catalog()
MIB = 2**20

# entry -> the transformers class its checkpoint names (None: AutoModelForCausalLM)
ADDED: dict[str, str | None] = {
    "Qwen/Qwen3.5-27B": "Qwen3_5ForConditionalGeneration",
    "Qwen/Qwen3.5-35B-A3B": "Qwen3_5MoeForConditionalGeneration",
    "Qwen/Qwen3.5-122B-A10B": "Qwen3_5MoeForConditionalGeneration",
    "Qwen/Qwen3.5-397B-A17B": "Qwen3_5MoeForConditionalGeneration",
    "Qwen/Qwen3.6-27B": "Qwen3_5ForConditionalGeneration",
    "Qwen/Qwen3.6-35B-A3B": "Qwen3_5MoeForConditionalGeneration",
    "zai-org/GLM-5": None,
    "zai-org/GLM-5.1": None,
    "MiniMaxAI/MiniMax-M2.5": None,
    "MiniMaxAI/MiniMax-M2.7": None,
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": None,
    "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16": None,
    "zai-org/GLM-4.7-Flash": None,
    "Qwen/Qwen3-VL-2B-Instruct": "Qwen3VLForConditionalGeneration",
    "Qwen/Qwen3-VL-4B-Instruct": "Qwen3VLForConditionalGeneration",
    "Qwen/Qwen3-VL-8B-Instruct": "Qwen3VLForConditionalGeneration",
    "Qwen/Qwen3-VL-32B-Instruct": "Qwen3VLForConditionalGeneration",
    "Qwen/Qwen3-VL-30B-A3B-Instruct": "Qwen3VLMoeForConditionalGeneration",
    "Qwen/Qwen3-VL-235B-A22B-Instruct": "Qwen3VLMoeForConditionalGeneration",
}



@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(ADDED))
def test_the_count_is_what_transformers_builds_on_the_meta_device(model: str) -> None:
    """Vision tower included: Qwen3.5's and Qwen3-VL's ViTs (deepstack mergers too) are counted
    tensor by tensor, not borrowed from a published total."""
    entry = CATALOG.find(model)
    assert entry.shape().param_count() == meta_count(entry.config, ADDED[model])


@pytest.mark.parametrize("model", sorted(ADDED))
def test_every_entry_says_where_it_came_from(model: str) -> None:
    entry = CATALOG.find(model)
    assert entry.source.startswith("https://github.com/") and entry.notes
    said = _raw(model)["params_source"]
    assert entry.published_params or "no exact published count" in said or \
        "not stored as published_params" in said


def _raw(model: str) -> dict[str, Any]:
    import json

    from vramest.data import read_text

    return next(m for m in json.loads(read_text("models.json"))["models"] if m["id"] == model)


# Published figures and why each differs from the count, as the entries' notes say.
def test_qwen35_397b_text_model_is_llama_cpps_figure_and_the_tower_comes_on_top() -> None:
    """llama.cpp's print_info 'model params = 396.35 B' counts the GGUF, which holds the text
    model only (the ViT is a separate mmproj file)."""
    shape = CATALOG.find("Qwen/Qwen3.5-397B-A17B").shape()
    text = shape.param_count() - shape.extra_params
    assert round(text / 1e9, 2) == 396.35
    assert shape.extra_params == 456_010_480


def test_qwen36_35b_published_figure_adds_the_mtp_layer() -> None:
    """llama.cpp's 35.51 B counts the text model and the stored MTP layer (one MoE decoder
    layer of 256 experts, ~0.85B), which transformers does not build."""
    entry = CATALOG.find("Qwen/Qwen3.6-35B-A3B")
    shape = entry.shape()
    text = shape.param_count() - shape.extra_params
    mtp = 35.51e9 - text  # https://github.com/ggml-org/llama.cpp/issues/23679
    expert_block = 256 * 3 * 512 * 2048  # routed experts of one layer
    assert expert_block < mtp < 1.1 * expert_block
    assert "MTP" in entry.notes


@pytest.mark.parametrize("model", ["nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
                                   "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16"])
def test_the_count_is_within_a_thousandth_of_the_published_total(model: str) -> None:
    entry = CATALOG.find(model)
    assert abs(entry.shape().param_count() / entry.published_params - 1) <= 0.001


@pytest.mark.parametrize("model", ["MiniMaxAI/MiniMax-M2.5", "MiniMaxAI/MiniMax-M2.7"])
def test_minimax_count_is_the_230b_label_rounded_as_its_notes_say(model: str) -> None:
    """'230B total (10B active)' is a label: the count is 0.57% below it, which the notes say;
    the label is kept out of published_params."""
    entry = CATALOG.find(model)
    shape = entry.shape()
    assert abs(shape.param_count() / 230e9 - 1) < 0.006 and "0.57%" in entry.notes
    assert round(shape.active_param_count() / 1e9) == 11  # ~10B active + 0.6B embedding


def test_nemotron_3_nano_active_parameters_are_the_published_3_6b() -> None:
    shape = CATALOG.find("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16").shape()
    assert round(shape.active_param_count() / 1e9, 1) == 3.6
    assert shape.num_experts == 128 and shape.experts_per_token == 6


# llama.cpp PR #23792: Qwen3.6-27B, 3 sequences: "llama_memory_recurrent: size = 448.88 MiB
# (3 cells, 65 layers, 3 seqs), R (f32): 16.88 MiB, S (f32): 432.00 MiB"
# (https://github.com/ggml-org/llama.cpp/pull/23792); layer 64 is the MTP layer, skipped.
def test_qwen36_27b_recurrent_state_is_llama_cpps_rs_buffer() -> None:
    shape = CATALOG.find("Qwen/Qwen3.6-27B").shape()
    seqs, f32 = 3, 4
    r = seqs * shape.state_layers * shape.conv_state * f32
    s = seqs * shape.state_layers * shape.ssm_state * f32
    assert round(r / MIB, 2) == 16.88 and s / MIB == 432.0
    est = vramest.estimate(model="Qwen/Qwen3.6-27B", engine="llamacpp", dtype="q4_k_m",
                           ctx=4096, batch=seqs, gpu="4090").to_json()["engine"]
    attention = 16 * est["n_ctx"] * 2 * 4 * 256 * 2  # 16 layers, K and V, 4 heads of 256, f16
    assert est["kv_cache_bytes"] - attention == r + s


def test_qwen35_keeps_its_deltanet_state_in_fp32_and_kv_only_in_attention_layers() -> None:
    """mamba_ssm_dtype float32 in the config; 16 of 64 layers attend (full_attention_interval
    4), so the KV cache is a quarter of a dense model's of the same heads."""
    shape = CATALOG.find("Qwen/Qwen3.5-27B").shape()
    assert shape.ssm_state_bytes == 4.0 and shape.state_layers == 48
    assert shape.kinds().count("full") == 16
    assert shape.ssm_state == 48 * 128 * 128 and shape.conv_state == 3 * (2 * 16 * 128 + 48 * 128)


def test_glm47_flash_caches_the_mla_latent() -> None:
    """47 layers x (512 + 64) values per token: 54,144 bytes in bf16."""
    shape = CATALOG.find("zai-org/GLM-4.7-Flash").shape()
    est = vramest.estimate(model="zai-org/GLM-4.7-Flash", ctx=8192, kv_dtype="bf16")
    assert shape.kv_lora_rank == 512 and est.memory.kv_cache.bytes == 8192 * 47 * 576 * 2


def test_glm5_keeps_the_mla_latent_and_the_indexer_key() -> None:
    shape = CATALOG.find("zai-org/GLM-5").shape()
    assert shape.kv_lora_rank == 512 and shape.qk_rope_head_dim == 64
    assert shape.indexer_head_dim == 128


# name as typed -> (entry, the precision the name says; None: the entry's own)
NAMES = [
    ("Qwen/Qwen3.5-27B", "Qwen/Qwen3.5-27B", None),
    ("Qwen/Qwen3.5-27B-FP8", "Qwen/Qwen3.5-27B", "fp8"),
    ("Qwen/Qwen3.5-27B-GPTQ-Int4", "Qwen/Qwen3.5-27B", "gptq-int4"),
    ("Qwen/Qwen3.5-35B-A3B", "Qwen/Qwen3.5-35B-A3B", None),
    ("Qwen/Qwen3.5-35B-A3B-FP8", "Qwen/Qwen3.5-35B-A3B", "fp8"),
    ("unsloth/Qwen3.5-35B-A3B-GGUF", "Qwen/Qwen3.5-35B-A3B", "q4_k_m"),
    ("Qwen/Qwen3.5-122B-A10B-GPTQ-Int4", "Qwen/Qwen3.5-122B-A10B", "gptq-int4"),
    ("Qwen/Qwen3.5-397B-A17B-FP8", "Qwen/Qwen3.5-397B-A17B", "fp8"),
    ("Qwen/Qwen3.6-27B-FP8", "Qwen/Qwen3.6-27B", "fp8"),
    ("unsloth/Qwen3.6-27B-GGUF", "Qwen/Qwen3.6-27B", "q4_k_m"),
    ("nvidia/Qwen3.6-35B-A3B-NVFP4", "Qwen/Qwen3.6-35B-A3B", "nvfp4"),
    ("zai-org/GLM-5-FP8", "zai-org/GLM-5", "fp8"),
    ("zai-org/GLM-4.7-Flash", "zai-org/GLM-4.7-Flash", None),
    # unsloth's GGUFs of it (https://github.com/ollama/ollama/issues/15855)
    ("unsloth/GLM-4.7-Flash-GGUF", "zai-org/GLM-4.7-Flash", "q4_k_m"),
    ("zai-org/GLM-5.1-FP8", "zai-org/GLM-5.1", "fp8"),
    ("MiniMaxAI/MiniMax-M2.5", "MiniMaxAI/MiniMax-M2.5", None),
    ("nvidia/MiniMax-M2.5-NVFP4", "MiniMaxAI/MiniMax-M2.5", "nvfp4"),
    ("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-FP8", "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
     "fp8"),
    ("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8",
     "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16", "fp8"),
    ("Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-8B-Instruct", None),
    ("Qwen/Qwen3-VL-8B-Instruct-FP8", "Qwen/Qwen3-VL-8B-Instruct", "fp8"),
    ("Qwen/Qwen3-VL-235B-A22B-Instruct-FP8", "Qwen/Qwen3-VL-235B-A22B-Instruct", "fp8"),
    ("Qwen/Qwen3-VL-30B-A3B-Instruct-AWQ", "Qwen/Qwen3-VL-30B-A3B-Instruct", "awq-int4"),
]

# Ollama tags seen in threads (Q4_K_M unless the tag names a format):
# qwen3.5:27b (Q4_K_M, https://github.com/BigBIueWhale/qwen3_5_27b_research solution.md),
# qwen3.5:35b-a3b and qwen3.5:27b-q4_K_M (https://github.com/ollama/ollama/issues/14501),
# qwen3.5:122b-a10b and "qwen3.5-35B" (https://github.com/ollama/ollama/issues/14433),
# nemotron-3-nano (https://github.com/ollama/ollama/issues/13482: ollama.com/library/nemotron-3-nano)
OLLAMA = [
    ("qwen3.5:27b", "Qwen/Qwen3.5-27B", "q4_k_m"),
    ("qwen3.5:27b-q4_K_M", "Qwen/Qwen3.5-27B", "q4_k_m"),
    ("qwen3.5:35b-a3b", "Qwen/Qwen3.5-35B-A3B", "q4_k_m"),
    ("qwen3.5:35b", "Qwen/Qwen3.5-35B-A3B", "q4_k_m"),
    ("qwen3.5:122b-a10b", "Qwen/Qwen3.5-122B-A10B", "q4_k_m"),
    ("qwen3.6:27b", "Qwen/Qwen3.6-27B", "q4_k_m"),
    ("qwen3.6:35b-a3b-q8_0", "Qwen/Qwen3.6-35B-A3B", "q8_0"),
    ("nemotron-3-nano:30b", "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "q4_k_m"),
    # https://github.com/ollama/ollama/issues/12846, /14141, /12865;
    # https://github.com/continuedev/continue/issues/9668
    ("qwen3-vl:30b", "Qwen/Qwen3-VL-30B-A3B-Instruct", "q4_k_m"),
    ("qwen3-vl:30b-a3b-instruct", "Qwen/Qwen3-VL-30B-A3B-Instruct", "q4_k_m"),
    ("qwen3-vl:32b-instruct", "Qwen/Qwen3-VL-32B-Instruct", "q4_k_m"),
    ("qwen3-vl:2b", "Qwen/Qwen3-VL-2B-Instruct", "q4_k_m"),
]


# `user/repo:QUANT` as llama.cpp's -hf flag and Ollama's hf.co/ pull take it
REPO_FILES = [
    ("unsloth/Qwen3.5-35B-A3B-GGUF:Q4_K_M", "Qwen/Qwen3.5-35B-A3B", "q4_k_m"),
    ("hf.co/unsloth/Qwen3.5-35B-A3B-GGUF:Q4_K_M", "Qwen/Qwen3.5-35B-A3B", "q4_k_m"),
    ("unsloth/Qwen3.6-27B-GGUF:IQ4_XS", "Qwen/Qwen3.6-27B", "iq4_xs"),
    ("unsloth/Qwen3.5-35B-A3B-GGUF:BF16", "Qwen/Qwen3.5-35B-A3B", "gguf-bf16"),
    ("unsloth/GLM-4.7-Flash-GGUF:Q8_0", "zai-org/GLM-4.7-Flash", "q8_0"),
    ("ggml-org/gpt-oss-20b-GGUF:MXFP4", "openai/gpt-oss-20b", "mxfp4_moe"),
]


@pytest.mark.parametrize(("name", "entry", "precision"), REPO_FILES,
                         ids=[n for n, _, _ in REPO_FILES])
def test_a_gguf_repository_and_its_file_type_is_that_release(name: str, entry: str,
                                                             precision: str) -> None:
    match = catalog_match(name)
    assert match is not None and (match.entry.id, match.precision) == (entry, precision)


def test_unsloths_own_mixes_are_read_as_dtype_reads_them() -> None:
    """UD-Q4_K_XL is unsloth's per-tensor mix, not a llama.cpp file type: the repository's
    model in the mix --dtype UD-Q4_K_XL counts (its type, within about 15%, said so), where the
    catalog alone has no such entry and names the model of that family and size."""
    match = catalog_match("unsloth/Qwen3.5-35B-A3B-GGUF:UD-Q4_K_XL")
    assert match is not None and match.entry.id == "Qwen/Qwen3.5-35B-A3B"
    assert match.precision == "ud-q4_k_xl"
    with pytest.raises(InputError, match=r"closest catalog model .* is Qwen/Qwen3\.5-35B-A3B "):
        CATALOG.find("unsloth/Qwen3.5-35B-A3B-GGUF:UD-Q4_K_XL")


@pytest.mark.parametrize(("name", "entry", "precision"), NAMES, ids=[n for n, _, _ in NAMES])
def test_a_name_users_type_resolves_to_its_release(name: str, entry: str,
                                                   precision: str | None) -> None:
    match = catalog_match(name)
    assert match is not None and (match.entry.id, match.precision) == (entry, precision)
    assert vramest.estimate(model=name, ctx=4096).model.name == entry


@pytest.mark.parametrize(("tag", "entry", "precision"), OLLAMA, ids=[t for t, _, _ in OLLAMA])
def test_an_ollama_tag_is_the_library_model_in_its_format(tag: str, entry: str,
                                                          precision: str) -> None:
    match = catalog_match(tag)
    assert match is not None and (match.entry.id, match.precision) == (entry, precision)
    assert vramest.estimate(model=tag, ctx=4096).memory.weights.bytes == vramest.estimate(
        model=entry, dtype=precision, ctx=4096).memory.weights.bytes


@pytest.mark.parametrize(("model_type", "said"), [
    ("gemma4", "per-layer embeddings"), ("deepseek_v4", "hyper-connections")])
def test_their_configs_are_refused_too(model_type: str, said: str, tmp_path: Any,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": model_type, "hidden_size": 64,
                                "num_hidden_layers": 2, "num_attention_heads": 4,
                                "vocab_size": 100, "intermediate_size": 128}))
    code = main(["--model", str(path), "--gpu", "4090"])
    err = capsys.readouterr().err
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1


def test_nemotron_h_e_layers_without_their_expert_keys_are_named(
        capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "nemotron_h", "hybrid_override_pattern": "M*E",
                                "hidden_size": 64, "num_hidden_layers": 3,
                                "num_attention_heads": 4, "num_key_value_heads": 2,
                                "mamba_num_heads": 4, "mamba_head_dim": 32,
                                "ssm_state_size": 16, "intermediate_size": 128,
                                "vocab_size": 100}))
    code = main(["--model", str(path), "--gpu", "4090"])
    err = capsys.readouterr().err
    assert code == 2 and "n_routed_experts" in err and len(err.strip().splitlines()) == 1


def test_a_qwen3_vl_picture_costs_its_processor_tokens() -> None:
    """Qwen3-VL's tower is counted, so an image adds its tokens to the context it is sent in."""
    from vramest.model.vision import parse_images

    plain = vramest.estimate(model="Qwen/Qwen3-VL-8B-Instruct", ctx=4096)
    shown = vramest.estimate(model="Qwen/Qwen3-VL-8B-Instruct", ctx=4096,
                             images=parse_images(1, "1024x1024"))
    assert shown.memory.kv_cache.bytes > plain.memory.kv_cache.bytes


def test_a_small_qwen35_hub_id_is_left_to_the_hub() -> None:
    """Its config counts it exactly when the hub is in reach, so the name is not refused."""
    assert catalog_match("Qwen/Qwen3.5-9B") is None


def test_vllm_keeps_qwen35s_ssm_state_in_the_configs_float32_and_conv_in_the_model_dtype() -> None:
    """vLLM PR #34489: Qwen3.5's SSM state follows the HF config's mamba_ssm_dtype (float32),
    its conv state the model dtype."""
    from vramest.inference.engines.vllm_hybrid import vllm_state_bytes

    shape = vramest.estimate(model="Qwen/Qwen3.5-27B", profile="none").model.shape
    assert vllm_state_bytes(shape, 2, 1) == shape.conv_state * 2 + shape.ssm_state * 4
    assert vllm_state_bytes(shape, 2, 1, "bfloat16") == (shape.conv_state + shape.ssm_state) * 2
