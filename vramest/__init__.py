"""vramest: how much GPU memory an LLM needs and how fast it runs."""

from __future__ import annotations

from typing import Any

from vramest.api import EstimateRequest, ModelQuery, RunSettings, estimate, run
from vramest.errors import InputError
from vramest.inference.deploy import Deployment
from vramest.inference.estimate import Estimate

__all__ = ["CheckReport", "Deployment", "Estimate", "EstimateRequest", "InputError",
           "LoraServing", "ModelQuery", "RunSettings", "Speculation", "check", "estimate",
           "lora_serving", "run", "speculation"]


_LAZY = {"check": "vramest.capacity", "CheckReport": "vramest.capacity",
         "LoraServing": "vramest.inference.lora", "lora_serving": "vramest.inference.lora",
         "Speculation": "vramest.inference.speculative",
         "speculation": "vramest.inference.speculative"}


def __getattr__(name: str) -> Any:
    # loaded on first use, so the common estimate never pays for their imports
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vramest' has no attribute {name!r}")
