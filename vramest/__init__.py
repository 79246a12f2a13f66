"""vramest: how much GPU memory an LLM needs and how fast it runs."""

from __future__ import annotations

from typing import Any

from vramest.api import EstimateRequest, ModelQuery, RunSettings, estimate, run
from vramest.errors import InputError
from vramest.inference.deploy import Deployment
from vramest.inference.estimate import Estimate
from vramest.inference.lora import LoraServing, lora_serving
from vramest.inference.speculative import Speculation, speculation

__all__ = ["CheckReport", "Deployment", "Estimate", "EstimateRequest", "InputError",
           "LoraServing", "ModelQuery", "RunSettings", "Speculation", "check", "estimate",
           "lora_serving", "run", "speculation"]


def __getattr__(name: str) -> Any:
    # capacity checks are loaded on first use, so estimating never pays for their imports
    if name in ("check", "CheckReport"):
        from vramest import capacity

        return getattr(capacity, name)
    raise AttributeError(f"module 'vramest' has no attribute {name!r}")
