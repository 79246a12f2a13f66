"""vramest: how much GPU memory an LLM needs and how fast it runs."""

from __future__ import annotations

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from vramest.api import EstimateRequest, ModelQuery, RunSettings, estimate, run
    from vramest.capacity import CheckReport, check
    from vramest.inference.deploy import Deployment
    from vramest.inference.estimate import Estimate
    from vramest.inference.lora import LoraServing, lora_serving
    from vramest.inference.speculative import Speculation, speculation

__all__ = ["CheckReport", "Deployment", "Estimate", "EstimateRequest", "InputError",
           "LoraServing", "ModelQuery", "RunSettings", "Speculation", "check", "estimate",
           "lora_serving", "run", "speculation"]


_LAZY = {"estimate": "vramest.api", "run": "vramest.api", "EstimateRequest": "vramest.api",
         "ModelQuery": "vramest.api", "RunSettings": "vramest.api",
         "Deployment": "vramest.inference.deploy", "Estimate": "vramest.inference.estimate",
         "check": "vramest.capacity", "CheckReport": "vramest.capacity",
         "LoraServing": "vramest.inference.lora", "lora_serving": "vramest.inference.lora",
         "Speculation": "vramest.inference.speculative",
         "speculation": "vramest.inference.speculative"}


def __getattr__(name: str) -> Any:
    # loaded on first use: a command imports only the layers it runs (`vramest train` never
    # needs the inference placement stack), and `import vramest` stays instant
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vramest' has no attribute {name!r}")
