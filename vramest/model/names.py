"""Names users give a catalog model under another spelling: a chat or instruct fine-tune of a
catalog model (a fine-tune keeps its base's config), a quantized release named by its suffix
(`-AWQ`, `-GPTQ-Int4`, `-FP8`, `-bnb-4bit`, `-Q4_K_M-GGUF`), an Ollama library tag
(`llama3.1:8b`, `qwen2.5:32b-instruct-q8_0`). Only an exact match once those words are taken
off: never a guess by size, which `Catalog.suggest` offers instead."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from vramest.model.catalog import Catalog, CatalogEntry, default_catalog

# words a fine-tune or a packaging adds to its base's name without changing its config
_TUNE_WORDS = frozenset({"instruct", "chat", "it", "hf", "base"})
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
}
_OLLAMA_TAG = re.compile(r"([a-z0-9][a-z0-9._-]*):([a-z0-9][a-z0-9._-]*)")


@dataclass(frozen=True)
class NameMatch:
    entry: CatalogEntry
    precision: str | None  # what the name says the weights are stored in; None: the entry's own
    reason: str  # one clause for the assumptions: why this name means that entry


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
        else:  # a ggml type spelled in the name: Q4_K_M, IQ4_XS, Q8_0
            n = next((k for k in (3, 2, 1) if len(words) >= k and
                      "-".join(words[-k:]) in ggml), 0)
            named = "_".join(words[-n:]) if n else None
        if not n:
            break
        precision, words, stripped = precision or named, words[:-n], True
    return words, precision, stripped


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


def _ollama(name: str) -> tuple[tuple[str, ...], str] | None:
    """(the names an Ollama tag may stand for, most specific first; its precision) for
    `family:size[-words][-quant]`: `qwen3:30b-a3b` is qwen3-30b-a3b, `llama3.1:8b-instruct-fp16`
    llama3.1-8b in 16 bit."""
    match = _OLLAMA_TAG.fullmatch(name.strip().lower())
    if match is None:
        return None
    family, tag = match.groups()
    words, precision, _ = _strip_quant(_words(tag))
    precision = _OLLAMA_PRECISIONS.get(words[-1], precision) if words else precision
    core = [w for w in words if w not in (*_TUNE_WORDS, "text") and w not in _OLLAMA_PRECISIONS]
    if not core:
        return None
    precision = _OLLAMA_PRECISIONS.get(precision or "", precision) or OLLAMA_LIBRARY_PRECISION
    renamed = _OLLAMA_RENAMES.get((family, core[0]))
    names = (renamed,) if renamed else tuple(
        f"{family}-{'-'.join(core[:n])}" for n in range(len(core), 0, -1))  # a3b-2507 → a3b
    return names, precision


@lru_cache(maxsize=1024)
def catalog_match(name: str) -> NameMatch | None:
    """The catalog entry a name means, exactly or through the spellings above; None when none."""
    catalog = default_catalog()
    entry = catalog.get(name)
    if entry is not None:
        return NameMatch(entry, None, "")
    tag = _ollama(name)
    if tag is not None:
        models, precision_named = tag
        found = next((e for m in models if (e := catalog.get(m) or _stems(catalog).get(
            _stem(m)[0])) is not None), None)
        if found is None:
            return None
        precision: str | None = precision_named
        if _quantized(found):  # gpt-oss ships MXFP4 in Ollama too: its own format
            precision = None
        return NameMatch(found, precision, f"the Ollama tag {name} is {found.id}"
                         + (f" stored as {precision}" if precision else ""))
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
    if precision is None and _quantized(found):
        # the name asks for the unquantized model; a GGUF repository of an MXFP4 release
        # (gpt-oss) holds llama.cpp's MXFP4_MOE file: experts in MXFP4, as ggml-org's 11.27 GiB
        # gpt-oss-20b (llama.cpp benches/dgx-spark.md)
        method = found.config["quantization_config"].get("quant_method")
        precision = ("mxfp4_moe" if method == "mxfp4" else None) if gguf else "bf16"
    what = (f"{name} is a release of {found.id}" + (f" stored as {precision}" if precision else "")
            + " (a fine-tune or quantization keeps its base's config)")
    if precision is None and gguf:
        what += "; a GGUF repository holds several quantizations: --dtype names yours"
    return NameMatch(found, precision, what)
