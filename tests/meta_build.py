"""transformers' own parameter count of a config: the model built on the meta device (no
memory, no weights), which every catalog and architecture test compares vramest's count with."""

from __future__ import annotations

from typing import Any

import pytest

_NOT_CONFIG_KEYS = ("model_type", "architectures", "quantization_config", "auto_map")


def meta_count(config: dict[str, Any], architecture: str | None = None) -> int:
    """Parameters of `architecture` (a transformers class name; default AutoModelForCausalLM)
    built from `config`; skips the test where torch or transformers is missing."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    values = {k: v for k, v in config.items() if k not in _NOT_CONFIG_KEYS}
    hf_config = transformers.AutoConfig.for_model(config["model_type"], **values)
    with torch.device("meta"):
        model = (getattr(transformers, architecture)(hf_config) if architecture
                 else transformers.AutoModelForCausalLM.from_config(hf_config))
    return sum(p.numel() for p in model.parameters())
