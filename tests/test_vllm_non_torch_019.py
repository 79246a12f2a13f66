"""vLLM's non-torch memory per GPU by release, against logged figures: llm-d-benchmark's 0.11.0
table and llm-d-planner's 0.19.0 report (H100s, Llama-3.1-8B-Instruct)."""

from __future__ import annotations

import pytest

import vramest

GIB = 2**30


def _non_torch(release: str, tp: int) -> float:
    est = vramest.estimate(model="meta-llama/Llama-3.1-8B-Instruct", gpu="h100", num_gpus=tp,
                           engine="vllm", engine_options={"version": release,
                                                          "gpu_memory_utilization": 0.95,
                                                          "max_model_len": 8192})
    return est.to_json()["engine"]["non_torch_bytes"] / GIB


@pytest.mark.parametrize(("tp", "logged"), [(1, 0.25), (2, 2.07), (4, 2.13)])
def test_019_holds_the_all_reduce_buffers_llm_d_planner_logs(tp: int, logged: float) -> None:
    """accuracy/results/v0.19.0/accuracy_report.md @fbd68515: 'Actual non-torch (GiB)'."""
    assert _non_torch("0.19.0", tp) == pytest.approx(logged, abs=0.1)


def test_011_keeps_its_own_figures() -> None:
    """llm-d-benchmark's 0.11.0 table: 0.13 GiB on one H100, 0.54 per rank at TP 2."""
    assert _non_torch("0.11.0", 1) == pytest.approx(0.13, abs=0.02)
    assert _non_torch("0.11.0", 2) == pytest.approx(0.54, abs=0.02)
