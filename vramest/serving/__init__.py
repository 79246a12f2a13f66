"""Serving under load: latency and throughput of continuous batching, and the SLA planner.

`serving(model=..., dtype=..., gpu=..., num_gpus=..., engine=..., input_len=..., output_len=...,
concurrency=...)` gives one `ServingEstimate`; `vramest.serving.plan.plan` searches deployments.
"""

from __future__ import annotations

from vramest.serving.api import serving

__all__ = ["serving"]
