"""The architectures the harness measures: small configs of the catalog's own families, built
with random weights, saved once as safetensors and loaded back with `from_pretrained`.

Configs are the catalog's real ones (`vramest.model.catalog`) with the width, depth and vocabulary
shrunk, so the transformers code that runs is the code the estimate is about. The config
helpers are torch-free; building and loading import torch and transformers.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen

if TYPE_CHECKING:
    from typing import Any

# Keys of a catalog config that describe the released checkpoint, not the architecture.
_DROPPED_KEYS = ("quantization_config", "architectures", "auto_map", "torch_dtype", "dtype",
                 "_name_or_path", "transformers_version")


@frozen
class Architecture:
    """One family: the catalog model whose config it shrinks, and its sizes (name → overrides)."""

    family: str
    catalog_id: str
    sizes: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    note: str = ""

    def size_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.sizes)

    def overrides(self, size: str) -> dict[str, Any]:
        for name, values in self.sizes:
            if name == size:
                return dict(values)
        raise InputError(f"{self.family} has no size {size!r}; sizes: {', '.join(self.size_names())}.")


def _llama_like(hidden: int, layers: int, heads: int, kv_heads: int, ffn: int,
                vocab: int = 32000) -> tuple[tuple[str, Any], ...]:
    return (("hidden_size", hidden), ("num_hidden_layers", layers),
            ("num_attention_heads", heads), ("num_key_value_heads", kv_heads),
            ("intermediate_size", ffn), ("vocab_size", vocab), ("head_dim", hidden // heads),
            ("tie_word_embeddings", False))


ARCHITECTURES: dict[str, Architecture] = {a.family: a for a in (
    Architecture("llama", "meta-llama/Llama-3.1-8B", (
        ("xs", _llama_like(256, 4, 8, 2, 704)),          # ~19M
        ("s", _llama_like(512, 8, 8, 2, 1408)),          # ~60M
        ("m", _llama_like(1024, 12, 16, 4, 2816)),       # ~190M
        ("xl", _llama_like(2048, 16, 16, 4, 5632)),      # ~0.8B
    ), "Llama 3.1: grouped-query attention, llama3 RoPE scaling"),
    Architecture("qwen2", "Qwen/Qwen2.5-7B", (
        ("xs", _llama_like(256, 4, 8, 2, 896, vocab=32768)),
        ("s", _llama_like(512, 8, 8, 2, 1792, vocab=32768)),
        ("m", _llama_like(896, 12, 14, 2, 3072, vocab=32768)),
    ), "Qwen2.5: GQA with q/k/v biases"),
    Architecture("mistral", "mistralai/Mistral-7B-v0.1", (
        ("xs", (*_llama_like(256, 4, 8, 2, 704), ("sliding_window", 64))),
        ("s", (*_llama_like(512, 8, 8, 2, 1408), ("sliding_window", 64))),
        ("m", (*_llama_like(1024, 12, 16, 4, 2816), ("sliding_window", 128))),
    ), "Mistral 7B v0.1: every layer a sliding window (shrunk so prompts exceed it)"),
    Architecture("mixtral", "mistralai/Mixtral-8x7B-v0.1", (
        ("xs", (*_llama_like(256, 4, 8, 2, 512), ("num_local_experts", 4),
                ("num_experts_per_tok", 2))),
        ("s", (*_llama_like(512, 6, 8, 2, 1024), ("num_local_experts", 8),
               ("num_experts_per_tok", 2))),
    ), "Mixtral: sparse mixture of experts, top-2 routing"),
    Architecture("gpt2", "openai-community/gpt2", (
        ("xs", (("n_embd", 256), ("n_layer", 4), ("n_head", 8), ("vocab_size", 50257),
                ("n_positions", 1024))),
        ("s", (("n_embd", 768), ("n_layer", 6), ("n_head", 12), ("vocab_size", 50257),
               ("n_positions", 1024))),
        ("m", (("n_embd", 1024), ("n_layer", 12), ("n_head", 16), ("vocab_size", 50257),
               ("n_positions", 1024))),
    ), "GPT-2: learned positions, LayerNorm, ungated GELU MLP, tied embeddings"),
    Architecture("phi3", "microsoft/Phi-3-mini-4k-instruct", (
        ("xs", _llama_like(256, 4, 8, 8, 704)),
        ("s", _llama_like(512, 8, 16, 16, 1408)),
        ("m", _llama_like(1024, 12, 16, 16, 2816)),
    ), "Phi-3: fused qkv and fused gate_up projections"),
)}


def architecture(family: str) -> Architecture:
    try:
        return ARCHITECTURES[family]
    except KeyError:
        raise InputError(f"Unknown calibration family {family!r}; known: "
                         f"{', '.join(ARCHITECTURES)}.") from None


def model_config(family: str, size: str) -> dict[str, Any]:
    """The catalog config of the family with this size's overrides (a config.json dict)."""
    from vramest.model.catalog import default_catalog

    arch = architecture(family)
    config = {k: v for k, v in default_catalog().find(arch.catalog_id).config.items()
              if k not in _DROPPED_KEYS}
    config.update(arch.overrides(size))
    if "num_hidden_layers" in config and "layer_types" in config:
        config.pop("layer_types")  # recomputed by transformers for the new depth
    if config.get("model_type") == "phi3":
        config.pop("rope_scaling", None)
    config.update(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return config


def config_digest(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "vramest" / "calibration-models"


def saved_model_dir(family: str, size: str, cache_dir: Path) -> Path:
    """The folder holding this model as safetensors; built with random weights the first time."""
    config = model_config(family, size)
    folder = cache_dir / f"{family}-{size}-{config_digest(config)}"
    if (folder / "model.safetensors").exists() or (folder / "model.safetensors.index.json").exists():
        return folder
    import torch
    import transformers

    hf_config = transformers.AutoConfig.for_model(config["model_type"], **{
        k: v for k, v in config.items() if k != "model_type"})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
    model.save_pretrained(partial, safe_serialization=True)
    del model
    os.replace(partial, folder) if not folder.exists() else None
    return folder
