"""Names users give a catalog model under another spelling: a chat or instruct fine-tune of a
catalog model (a fine-tune keeps its base's config), a quantized release named by its suffix
(`-AWQ`, `-GPTQ-Int4`, `-FP8`, `-bnb-4bit`, `-Q4_K_M-GGUF`), an Ollama library tag
(`llama3.1:8b`, `qwen2.5:32b-instruct-q8_0`). Only an exact match once those words are taken
off: never a guess by size, which `Catalog.suggest` offers instead. A date-style release suffix
(`-2507`, `-0528`) is never dropped to reach an entry of another release: the dated entry, or
no match. Architectures the estimator cannot count are refused by name in one sentence."""

from __future__ import annotations

import re
from functools import lru_cache

from vramest.errors import InputError
from vramest.frozen import frozen
from vramest.model.catalog import Catalog, CatalogEntry, default_catalog

# words a fine-tune or a packaging adds to its base's name without changing its config
_TUNE_WORDS = frozenset({"instruct", "chat", "it", "hf", "base", "qat"})
# Google's quantization-aware-trained Gemma 3 releases keep the base's config; their GGUF (and
# Ollama's *-it-qat tags built from it) is Q4_0 with F16 embeddings (precisions "q4_0-qat")
_QAT_WORD, _QAT_PRECISION = "qat", "q4_0-qat"
# quantization suffixes of public releases -> the --dtype they store (AutoAWQ and GPTQ are
# 4-bit with group 128 unless named otherwise; unsloth's "bnb-4bit" are NF4 double-quantized,
# as unsloth/Meta-Llama-3.1-8B-bnb-4bit's quantization_config in the catalog shows)
_QUANT_WORDS: tuple[tuple[tuple[str, ...], str | None], ...] = (
    (("unsloth", "bnb", "4bit"), "bnb-nf4-dq"), (("bnb", "4bit"), "bnb-nf4-dq"),
    (("gptq", "int4"), "gptq-int4"), (("gptq", "4bit"), "gptq-int4"), (("gptq",), "gptq-int4"),
    (("awq", "int4"), "awq-int4"), (("awq",), "awq-int4"),
    (("fp8", "dynamic"), "fp8"), (("fp8", "static"), "fp8"), (("fp8",), "fp8"),
    (("w4a16",), "int4"), (("w8a8",), "int8"), (("w8a16",), "int8"),
    (("int4",), "int4"), (("int8",), "int8"), (("nvfp4",), "nvfp4"), (("mxfp4",), "mxfp4"),
    (("gguf",), None),
)
_QUANT_NAMED = dict(_QUANT_WORDS)  # longest suffixes first, as listed
# Ollama's library ships Q4_K_M when a tag names no quantization
# (https://llmbestpractices.com/ai-agents/ollama-quantization: "The default Q4_K_M")
OLLAMA_LIBRARY_PRECISION = "q4_k_m"
_OLLAMA_PRECISIONS = {"fp16": "gguf-f16", "bf16": "gguf-bf16", "f16": "gguf-f16",
                      "fp32": "gguf-f32", "f32": "gguf-f32"}
# Ollama names whose tags are other models (https://ollama.com/library/deepseek-r1/tags)
_OLLAMA_RENAMES = {
    ("deepseek-r1", "1.5b"): "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    ("deepseek-r1", "7b"): "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    ("deepseek-r1", "14b"): "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
    ("deepseek-r1", "32b"): "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    ("deepseek-r1", "70b"): "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    ("deepseek-r1", "671b"): "deepseek-ai/DeepSeek-R1",
    # https://ollama.com/library/qwen3/tags: the 30b and 235b tags are the MoE releases
    # (qwen3:30b-a3b, qwen3:235b-a22b)
    ("qwen3", "30b"): "Qwen/Qwen3-30B-A3B",
    ("qwen3", "235b"): "Qwen/Qwen3-235B-A22B",
    # https://ollama.com/library/qwen3-coder/tags: 30b is 30B-A3B, 480b is 480B-A35B
    ("qwen3-coder", "30b"): "Qwen/Qwen3-Coder-30B-A3B-Instruct",
    ("qwen3-coder", "480b"): "Qwen/Qwen3-Coder-480B-A35B-Instruct",
    # https://ollama.com/library/phi3/tags: 3.8b is Phi-3-mini, 14b Phi-3-medium (4k and 128k
    # windows alike in size); https://ollama.com/library/phi3.5: 3.8b is Phi-3.5-mini
    ("phi3", "3.8b"): "microsoft/Phi-3-mini-4k-instruct",
    ("phi3", "14b"): "microsoft/Phi-3-medium-4k-instruct",
    ("phi3.5", "3.8b"): "microsoft/Phi-3.5-mini-instruct",
    # https://ollama.com/library/qwen: "Qwen 1.5 is a series of large language models"; its
    # tags are Qwen1.5, not the Qwen (v1) releases the name qwen-7b also spells
    ("qwen", "7b"): "Qwen/Qwen1.5-7B",
    ("qwen", "14b"): "Qwen/Qwen1.5-14B",
    ("qwen", "32b"): "Qwen/Qwen1.5-32B",
    ("qwen", "72b"): "Qwen/Qwen1.5-72B",
    ("qwen", "110b"): "Qwen/Qwen1.5-110B",
}
# The size a bare library name (its `latest` tag) pulls, from each library page's tag list:
# https://ollama.com/library/qwq (32b), /devstral (24b), /mistral-small3.1 (24b),
# /mistral-small3.2 (24b), /phi4 (14b), /phi4-mini (3.8b), /phi4-reasoning (14b),
# /qwen3-coder (30b), /qwen2.5-coder (7b), /mistral (7b), /mixtral (8x7b), /mistral-nemo (12b),
# /llama2 (7b), /llama3 (8b), /llama3.1 (8b), /llama3.2 (3b), /llama3.3 (70b), /codellama (7b),
# /gemma (7b), /gemma2 (9b), /gemma3 (4b), /phi3 (3.8b), /phi3.5 (3.8b), /qwen2 (7b),
# /qwen2.5 (7b), /qwen3 (8b), /gpt-oss (20b), /tinyllama (1.1b)
_OLLAMA_DEFAULT_SIZE = {"qwq": "32b", "devstral": "24b", "mistral-small3.1": "24b",
                        "mistral-small3.2": "24b", "phi4": "14b", "phi4-mini": "3.8b",
                        "phi4-reasoning": "14b", "qwen3-coder": "30b", "qwen2.5-coder": "7b",
                        "mistral": "7b", "mixtral": "8x7b", "mistral-nemo": "12b",
                        "llama2": "7b", "llama3": "8b", "llama3.1": "8b", "llama3.2": "3b",
                        "llama3.3": "70b", "codellama": "7b", "gemma": "7b", "gemma2": "9b",
                        "gemma3": "4b", "phi3": "3.8b", "phi3.5": "3.8b", "qwen2": "7b",
                        "qwen2.5": "7b", "qwen3": "8b", "gpt-oss": "20b", "tinyllama": "1.1b"}
# An Ollama library name alone stands for a catalog model when the tag's size is that model's
# to the rounding of a size label (phi4:14b is the 14.7B phi-4)
_SIZE_LABEL_ROUNDING = 0.1
# Hub organisations renamed, old repositories redirecting to the new name: Cohere For AI is
# Cohere Labs since April 2025 (https://huggingface.co/CohereLabs)
_ORG_RENAMES = {"coherelabs": "CohereForAI"}
# date-style release suffixes: 2507, 0528, 2411 (YYMM or MMDD)
_DATE_WORD = re.compile(r"\d{4}")
# Architectures whose tensors or cache the estimator cannot count, refused by name (the hub is
# out of reach offline, and their configs are refused too)
_NOT_COUNTED = (
    (re.compile(r"nemotron-(super|ultra)|nemotron-51b"),
     "its DeciLM blocks differ layer by layer (attention skipped or replaced by a linear map, "
     "FFN widths set per block) and transformers builds them only with trust_remote_code, so "
     "vramest cannot count its weights or KV cache exactly (--params 49B gives a rough, "
     "Llama-shaped estimate)"),
    # Magistral Small 1.0 builds on Mistral Small 3.1 (model card,
    # https://huggingface.co/mistralai/Magistral-Small-2506); its config's context length could
    # not be read from a copy, and the card recommends 40k of its 128k
    (re.compile(r"^magistral(-small|:|$)"),
     "no copy of its config.json could be checked for its context length; it has Mistral "
     "Small 3.1's 40-layer text model, so --model mistralai/Devstral-Small-2505 with --ctx "
     "40960 (the length Mistral recommends) estimates it"),
    # Gemma 4 (transformers Gemma4TextConfig; google/gemma-4-26B-A4B and nvidia/Gemma-4-31B-IT-NVFP4
    # configs in ai-dynamo/aiconfigurator@0b077da5 aic-core/.../model_configs): global layers of
    # global_head_dim 512 with num_global_key_value_heads 2 or 4 and attention_k_eq_v, beside
    # sliding layers of head_dim 256 with 8 or 16 KV heads; E2B/E4B add per-layer inputs
    (re.compile(r"gemma-?4"),
     "its global-attention layers keep 512-wide keys for fewer KV heads (the keys reused as "
     "values) while its sliding-window layers keep 256-wide keys and values for more heads, and "
     "its E2B/E4B models add per-layer embeddings; vramest's KV cache has one head width per "
     "model and no per-layer embeddings, so an estimate would be a guess"),
    # DeepSeek-V4 (deepseek-ai/DeepSeek-V4-Flash and -Pro configs, same aiconfigurator commit):
    # compress_ratios 0/4/128 per layer beside sliding_window 128, hc_mult 4, num_hash_layers
    (re.compile(r"deepseek-v4"),
     "its attention keeps a KV cache compressed by a different ratio per layer (4x or 128x, "
     "beside a 128-token window) and its layers are joined by 4-way hyper-connections, neither "
     "of which vramest models, so an estimate would be a guess"),
    # Kimi K2.5 / K2.6 (moonshotai/Kimi-K2.5, nvidia/Kimi-K2.6-NVFP4 configs, same commit):
    # model_type kimi_k25, Kimi K2's text model with a MoonViT tower, INT4 experts
    (re.compile(r"kimi-k2-[56]"),
     "its MoonViT vision tower is not counted by vramest and its experts ship as INT4 "
     "compressed-tensors (group 32), so an estimate would be a guess; its text model is Kimi "
     "K2's, so --model moonshotai/Kimi-K2-Instruct gives the text model in its FP8 release"),
    (re.compile(r"gemma-?3n"),
     "its later layers reuse earlier layers' KV cache, its per-layer embeddings (about 2B "
     "parameters) are meant to stay off the GPU and its MatFormer blocks nest sub-models, none "
     "of which vramest models, so an estimate would be a guess"),
    # Models users name whose architecture no counted family covers (issue 18). Totals and
    # active counts are the publishers': DBRX 132B/36B
    # (https://www.databricks.com/blog/introducing-dbrx-new-state-art-open-llm)
    (re.compile(r"(^|-)dbrx(-|:|$)"),
     "its 16-expert MoE stores the experts fused under DBRX's own ffn_config keys, a layout "
     "vramest does not count tensor by tensor, so an estimate would be a guess (--params 132B "
     "--active-params 36B gives a rough MoE estimate)"),
    # Snowflake Arctic: a dense MLP residual beside a 128-expert MoE in every layer, 480B total,
    # 17B active (https://huggingface.co/Snowflake/snowflake-arctic-instruct model card)
    (re.compile(r"^snowflake-arctic-(instruct|base)"),
     "each of its layers runs a dense MLP beside a 128-expert MoE (a dense-MoE hybrid), which "
     "vramest's layer model does not have, so an estimate would be a guess (--params 480B "
     "--active-params 17B gives a rough MoE estimate)"),
    # Grok-1: released as a JAX checkpoint, 314B parameters (https://github.com/xai-org/grok-1)
    (re.compile(r"^grok-?1(?![0-9.])"),
     "xAI released it as a JAX checkpoint without a Hugging Face config.json, so its layers "
     "cannot be read (--params 314B gives a rough estimate)"),
    # Hunyuan-A13B: model_type hunyuan_v1_moe, 80B total, 13B active (model card,
    # https://huggingface.co/tencent/Hunyuan-A13B-Instruct)
    (re.compile(r"hunyuan-a13b"),
     "its hunyuan_v1_moe architecture is not one vramest counts tensor by tensor, so an "
     "estimate would be a guess (--params 80B --active-params 13B gives a rough MoE estimate)"),
    # MiniMax-01 / M1: lightning (linear) attention in 7 of every 8 layers, softmax attention in
    # the 8th; 456B total, 45.9B active (https://huggingface.co/MiniMaxAI/MiniMax-M1-80k)
    (re.compile(r"minimax-(m1|text-01|vl-01)(?![0-9])"),
     "seven of every eight layers use lightning (linear) attention, whose fixed-size state "
     "replaces a KV cache and which vramest does not model, so an estimate would be a guess "
     "(--params 456B --active-params 45.9B gives a rough MoE estimate)"),
    # Step3: Multi-Matrix Factorization Attention + MoE + vision tower, 321B total, 38B active
    # (https://huggingface.co/stepfun-ai/step3 model card)
    (re.compile(r"^step-?3(?![0-9.])"),
     "its Multi-Matrix Factorization Attention and its vision tower are not counted by "
     "vramest, so an estimate would be a guess (--params 321B --active-params 38B gives a rough "
     "MoE estimate)"),
    # Ling: model_type bailing_moe (remote code); Ling-lite 16.8B total, 2.75B active
    # (https://huggingface.co/inclusionAI/Ling-lite model card)
    (re.compile(r"^ling-(lite|plus)(?![a-z])"),
     "its bailing_moe architecture (remote code) is not one vramest counts tensor by tensor, "
     "so an estimate would be a guess (--params with the model's total and --active-params "
     "give a rough MoE estimate)"),
    # LFM2: gated short-convolution layers beside a few attention layers (model_type lfm2,
    # https://huggingface.co/LiquidAI/LFM2-1.2B model card); shapes.py refuses its config too
    (re.compile(r"^lfm2(?![0-9])"),
     "most of its layers are gated short convolutions whose per-sequence state vramest does "
     "not model, so an estimate would be a guess (--params 1.2B gives a rough dense estimate)"),
    # Qwen2.5-Omni: a Thinker (text model) with audio and vision encoders and a Talker that
    # generates speech tokens (https://huggingface.co/Qwen/Qwen2.5-Omni-7B model card)
    (re.compile(r"qwen(2-5|3)-omni"),
     "besides its text model it carries audio and vision encoders and a speech-generating "
     "Talker, which vramest does not count, so an estimate would be a guess (--params with the "
     "checkpoint's total gives a rough dense estimate)"),
    # Phi-4-multimodal: Phi-4-mini's text model with vision and speech encoders and a LoRA
    # adapter per modality (https://huggingface.co/microsoft/Phi-4-multimodal-instruct)
    (re.compile(r"phi-?4-multimodal"),
     "its vision and speech encoders and the LoRA adapters it applies per modality are not "
     "counted by vramest, so an estimate would be a guess (--model microsoft/Phi-4-mini-instruct "
     "gives its text model alone)"),
    # MiniCPM-V 2.6: SigLIP-400M + a perceiver resampler + Qwen2-7B (model_type minicpmv,
    # remote code; https://huggingface.co/openbmb/MiniCPM-V-2_6 model card)
    (re.compile(r"^minicpm-v(-2-6|:|$)"),
     "its SigLIP vision tower and perceiver resampler (remote code) are not counted by "
     "vramest, so an estimate would be a guess (--model Qwen/Qwen2-7B gives its Qwen2-7B text "
     "model alone)"),
)
# Releases whose config no copy could be checked of: refused by a name the hub cannot be
# asked about (an Ollama tag, a bare name); a hub id goes to the hub when it is in reach.
# Qwen3.5's small releases are run in the threads (qwen3.5:9b,
# https://github.com/ollama/ollama/issues/14557; Qwen3.5-0.8B/2B/4B/9B,
# https://github.com/vllm-project/vllm-ascend/issues/10385)
_NOT_CHECKED = (
    (re.compile(r"qwen3-5[-:](0-8b|2b|4b|9b)(?![0-9])"),
     "no copy of its config.json could be checked, so its widths, DeltaNet heads and vision "
     "tower would be a guess (the 27B and 35B-A3B are in the catalog); give its config.json "
     "(--model path/to/config.json) or its hub id when online, and vramest counts it exactly"),
)
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_OLLAMA_TAG = re.compile(r"([a-z0-9][a-z0-9._-]*):([a-z0-9][a-z0-9._-]*)")
# `user/repo:QUANT`, as llama.cpp's -hf flag takes a GGUF repository and a quantization
# (`llama-server -hf unsloth/Qwen3.5-35B-A3B-GGUF:Q4_K_M`, llama.cpp README) and Ollama pulls
# one (`ollama run hf.co/unsloth/Qwen3-Coder-30B-A3B-Instruct-GGUF:Q4_K_M`,
# https://github.com/ollama/ollama/issues/11511); unsloth's own mixes (UD-Q4_K_XL, UD-IQ1_S)
# are read as precisions.py counts them
_HF_REPO_TAG = re.compile(r"(?:hf\.co/)?([\w.-]+/[\w.-]+):([A-Za-z0-9_-]+)")


@frozen
class NameMatch:
    entry: CatalogEntry
    precision: str | None  # what the name says the weights are stored in; None: the entry's own
    reason: str  # one clause for the assumptions: why this name means that entry
    library_default: bool = False  # precision is Ollama's library default: the tag names none


def _words(name: str) -> list[str]:
    return [w for w in name.strip().lower().replace("_", "-").split("-") if w]


def _strip_quant(words: list[str]) -> tuple[list[str], str | None, bool]:
    """(the words without trailing quantization suffixes, the precision they name, whether
    any was taken off)."""
    ggml = _ggml_words()
    precision: str | None = None
    stripped = False
    while words:
        n = next((len(ws) for ws in _QUANT_NAMED if tuple(words[-len(ws):]) == ws), 0)
        if n:
            named = _QUANT_NAMED[tuple(words[-n:])]
        else:  # Unsloth's mixes (...-UD-Q4_K_XL, ...-UD-IQ1_S), else a ggml type spelled in
            n, named = _unsloth_mix(words)  # the name: Q4_K_M, IQ4_XS, Q8_0
            if not n:
                n = next((k for k in (3, 2, 1) if len(words) >= k and
                          "-".join(words[-k:]) in ggml), 0)
                named = "_".join(words[-n:]) if n else None
        if not n:
            break
        precision, words, stripped = precision or named, words[:-n], True
    return words, precision, stripped


def quantization_suffix(text: str) -> bool:
    """Whether the text is only a quantization's name as release names end in one (Q4_K_M,
    AWQ, fp8, UD-Q4_K_XL)."""
    words, _, stripped = _strip_quant(_words(text))
    return stripped and not words


def _unsloth_mix(words: list[str]) -> tuple[int, str | None]:
    """(how many trailing words name an Unsloth dynamic mix, its format), or (0, None)."""
    for k in (4, 3):
        if len(words) > k and words[-k] == "ud":
            from vramest.errors import InputError
            from vramest.model.precisions import weight_format

            try:
                return k, weight_format("ud-" + "_".join(words[-k + 1:])).name
            except InputError:
                continue
    return 0, None


@lru_cache(maxsize=1)
def _ggml_words() -> frozenset[str]:
    from vramest.model.precisions import weight_format_names

    return frozenset(n.replace("_", "-") for n in weight_format_names()
                     if n[:1] in "qi" or n[:2] == "tq")


def _stem(name: str) -> tuple[str, str | None, bool]:
    """(the name without its organisation, fine-tune words and quantization suffixes, the
    precision the suffix names, whether anything was taken off)."""
    words, precision, stripped = _strip_quant(_words(name.split("/")[-1]))
    kept = [w for w in words if w not in _TUNE_WORDS]
    if kept[:1] == ["meta"] and len(kept) > 1:  # Meta-Llama-3.1-8B is Llama-3.1-8B
        kept = kept[1:]
    return "-".join(kept), precision, stripped or kept != words


@lru_cache(maxsize=4)
def _stems(catalog: Catalog) -> dict[str, CatalogEntry]:
    """Each entry under the stems of its id and aliases; a plain (unquantized) entry wins over
    a quantized release of the same model, the first listed over later ones."""
    index: dict[str, CatalogEntry] = {}
    for plain_first in (True, False):
        for entry in catalog.entries:
            if _quantized(entry) == plain_first:
                continue
            for name in (entry.id, *entry.aliases):
                index.setdefault(_stem(name)[0], entry)
    return index


def _quantized(entry: CatalogEntry) -> bool:
    return isinstance(entry.config.get("quantization_config"), dict)


def _ollama(name: str) -> tuple[tuple[str, ...], str | None] | None:
    """(the names an Ollama tag may stand for, most specific first; the precision it names, or
    None) for `family:size[-words][-quant]`: `qwen3:30b-a3b` is qwen3-30b-a3b,
    `llama3.1:8b-instruct-fp16` llama3.1-8b in 16 bit."""
    match = _OLLAMA_TAG.fullmatch(name.strip().lower())
    if match is None:
        return None
    family, tag = match.groups()
    words, precision, _ = _strip_quant(_words(tag))
    precision = _OLLAMA_PRECISIONS.get(words[-1], precision) if words else precision
    core = [w for w in words if w not in (*_TUNE_WORDS, "text") and w not in _OLLAMA_PRECISIONS]
    if not core:
        return None
    if precision is None and _QAT_WORD in words:
        precision = _QAT_PRECISION  # gemma3:27b-it-qat is Google's QAT Q4_0 file
    precision = _OLLAMA_PRECISIONS.get(precision or "", precision)
    # a size-only tag may be renamed; a tag naming more (qwen3:30b-a3b-instruct-2507) is looked
    # up by its words, longest first, a dated release kept by `_dates_kept`
    renamed = _OLLAMA_RENAMES.get((family, core[0])) if not any(
        _DATE_WORD.fullmatch(w) for w in core) else None
    names = (renamed,) if renamed else tuple(
        f"{family}-{'-'.join(core[:n])}" for n in range(len(core), 0, -1))
    return names, precision


def _refuse_uncounted(name: str) -> None:
    base = name.strip().lower().rsplit("/", 1)[-1].replace("_", "-").replace(".", "-")
    unchecked = () if _HUB_ID.fullmatch(name.strip()) else _NOT_CHECKED
    for pattern, why in (*_NOT_COUNTED, *unchecked):
        if pattern.search(base):
            raise InputError(f"{name.strip()} is not in the catalog: {why}.")


def _renamed_org(name: str) -> str | None:
    org, sep, rest = name.strip().partition("/")
    new = _ORG_RENAMES.get(org.lower()) if sep else None
    return f"{new}/{rest}" if new else None


def _dates_kept(asked: list[str], entry: CatalogEntry) -> bool:
    """Whether every date-style word of the asked name is in the entry's id: a dated release
    never stands for its base (Qwen3-30B-A3B-Instruct-2507 has 262144 positions, the base
    40960)."""
    own = _words(entry.id.split("/")[-1])
    return all(w in own for w in asked if _DATE_WORD.fullmatch(w))


def _ollama_entry(catalog: Catalog, tag: str, names: tuple[str, ...]) -> CatalogEntry | None:
    family, _, size_tag = tag.partition(":")
    asked = _words(size_tag)
    for name in names:
        entry = catalog.get(name) or _stems(catalog).get(_stem(name)[0])
        if entry is not None and _dates_kept(asked, entry):
            return entry
    entry = catalog.get(family)  # the library name alone, when the tag's size is its size
    size = _size_label(asked[0]) if asked else None
    if entry is None or size is None or not _dates_kept(asked, entry):
        return None
    params = entry.published_params or entry.shape().param_count()
    return entry if abs(params / size - 1) <= _SIZE_LABEL_ROUNDING else None


def _size_label(word: str) -> int | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([bm])", word)
    if match is None:
        return None
    return int(float(match.group(1)) * (1e9 if match.group(2) == "b" else 1e6))


@lru_cache(maxsize=1024)
def catalog_match(name: str) -> NameMatch | None:
    """The catalog entry a name means, exactly or through the spellings above; None when none.
    Raises InputError for an architecture the estimator cannot count."""
    catalog = default_catalog()
    entry = catalog.get(name)
    if entry is not None:
        return NameMatch(entry, None, "")
    _refuse_uncounted(name)
    renamed = _renamed_org(name)
    if renamed is not None:
        match = catalog_match(renamed)
        return match and NameMatch(match.entry, match.precision, (
            f"{name} is {renamed} (the organisation was renamed)"
            + (f"; {match.reason}" if match.reason else "")))
    repo_tag = _HF_REPO_TAG.fullmatch(name.strip())
    if repo_tag is not None:  # a GGUF repository and one of its files' quantizations
        return _repo_file(name.strip(), *repo_tag.groups())
    bare = name.strip().lower()
    if bare in _OLLAMA_DEFAULT_SIZE:
        name = f"{bare}:{_OLLAMA_DEFAULT_SIZE[bare]}"
    tag = _ollama(name)
    if tag is not None:
        models, precision_named = tag
        found = _ollama_entry(catalog, name.strip().lower(), models)
        if found is None:
            return None
        precision: str | None = precision_named or OLLAMA_LIBRARY_PRECISION
        if _quantized(found):  # gpt-oss ships MXFP4 in Ollama too: its own format
            precision = None
        return NameMatch(found, precision, f"the Ollama tag {name} is {found.id}"
                         + (f" stored as {precision}" if precision else ""),
                         library_default=precision is not None and precision_named is None)
    org, _, base = name.strip().rpartition("/")
    if _words(base)[-1:] == ["unquantized"]:  # gemma-3-27b-it-qat-q4_0-unquantized: 16-bit
        kept, _, _ = _strip_quant(_words(base)[:-1])  # weights, whatever quantization they name
        name = f"{org}/{'-'.join(kept)}" if org else "-".join(kept)
    stem, precision, changed = _stem(name)
    # the release itself first (Qwen2.5-7B-Instruct-AWQ is Qwen2.5-7B-Instruct, whose config
    # differs from the base's in its positions), then the model it was tuned from
    words, _, stripped = _strip_quant(_words(name.split("/")[-1]))
    unquantized = "-".join(words)
    found = (catalog.get(unquantized) if stripped and words else None) or (
        _stems(catalog).get(stem) if changed else None)
    if found is None:
        return None
    gguf = "gguf" in _words(name)
    if precision == "q4_0" and _QAT_WORD in _words(name):
        precision = _QAT_PRECISION  # google/gemma-3-27b-it-qat-q4_0-gguf
    if precision is None and _quantized(found):
        # the name asks for the unquantized model; a GGUF repository of an MXFP4 release
        # (gpt-oss) holds llama.cpp's MXFP4_MOE file: experts in MXFP4, as ggml-org's 11.27 GiB
        # gpt-oss-20b (llama.cpp benches/dgx-spark.md)
        method = found.config["quantization_config"].get("quant_method")
        precision = ("mxfp4_moe" if method == "mxfp4" else None) if gguf else "bf16"
    library = precision is None and gguf
    if library:  # a GGUF repository holds several files: the one users pull most by default
        precision = OLLAMA_LIBRARY_PRECISION
    what = (f"{name} is a release of {found.id}" + (f" stored as {precision}" if precision else "")
            + " (a fine-tune or quantization keeps its base's config)")
    if library:
        what += (f"; a GGUF repository holds several quantizations: {precision}, the one "
                 "Ollama's library ships by default, is assumed, and --dtype names yours")
    return NameMatch(found, precision, what)


def _repo_file(name: str, repo: str, quant: str) -> NameMatch | None:
    """`user/repo:QUANT`: the release the repository holds, in the file type named."""
    if quant.lower().startswith("ud-") or quant.lower().endswith("_k_xl"):  # Unsloth's mixes
        from vramest.model.precisions import weight_format

        base = catalog_match(repo)
        if base is None:
            return None
        mix = weight_format(quant).name
        return NameMatch(base.entry, mix, f"{name} is the {quant} file of {repo}, a release "
                         f"of {base.entry.id} stored as Unsloth's {mix} mix")
    full = _OLLAMA_PRECISIONS.get(quant.lower())  # BF16, F16, F32 files
    match = catalog_match(repo if full else f"{repo}-{quant}")
    if match is None:
        return None
    precision = full or match.precision
    own = match.entry.config.get("quantization_config", {}).get("quant_method", "") \
        if _quantized(match.entry) else ""
    if own and quant.lower() == own:  # gpt-oss's own MXFP4 file is llama.cpp's MXFP4_MOE
        precision = (catalog_match(repo) or match).precision
    return NameMatch(match.entry, precision, f"{name} is the {quant} file of {repo}, a "
                     f"release of {match.entry.id} stored as {precision}")
