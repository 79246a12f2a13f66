"""transformers' generate() peak by release: before 4.45 the prefill holds every prompt
position's logits and their fp32 copy; from 4.45 (num_logits_to_keep=1) the last one's only.
Figures: Qwen's published speed benchmark of Qwen2-7B on one A100 80GB, transformers 4.38.2,
torch max_memory_allocated (https://qwen.readthedocs.io/en/v2.0/benchmark/speed_benchmark.html)."""

from __future__ import annotations

import pytest

from vramest.api import estimate
from vramest.units import GIB


def _report(version: str, prompt: int, dtype: str = "bf16"):  # type: ignore[no-untyped-def]
    from vramest.inference.engines.startup import hf_startup

    return hf_startup(estimate(model="Qwen/Qwen2-7B", dtype=dtype, ctx=prompt + 2048),
                      f"transformers=={version}", prompt)


@pytest.mark.parametrize(("dtype", "logged_gib"), [("bf16", 42.62), ("awq-int4", 33.63)])
def test_a_long_prompt_on_4_38_holds_its_logits(dtype: str, logged_gib: float) -> None:
    report = _report("4.38.2", 30720, dtype)
    # torch's allocated peak: without the runtime overhead and the cache growth it keeps
    # reserved, as the replay reads these rows
    allocated = (report.generate_peak_bytes - report.kv_growth_bytes
                 - estimate(model="Qwen/Qwen2-7B", dtype=dtype).memory.overhead.bytes) / GIB
    assert allocated == pytest.approx(logged_gib, rel=0.05)
    assert report.prompt_logits_bytes > 20 * GIB


def test_from_4_45_and_for_a_short_prompt_no_prompt_logits_are_held() -> None:
    assert _report("4.45.0", 30720).prompt_logits_bytes == 0
    assert _report("4.38.2", 1).prompt_logits_bytes == 0
    assert _report("5.23.0", 30720).prompt_logits_bytes == 0


def test_the_verdict_counts_one_layer_s_copy_of_the_growing_cache() -> None:
    """Qwen2.5-32B bf16 with a 30,720-token prompt and 2,048 new tokens ran on one A100 80GB at
    74.47 GiB allocated (Qwen's speed benchmark, transformers 4.46.0): the fit counts the cache
    once plus the layer torch.cat copies, not the second cache the allocator keeps reserved
    (which it frees before raising out-of-memory)."""
    est = estimate(model="Qwen/Qwen2.5-32B", dtype="bf16", ctx=32768, prompt=30720, gen=2048,
                   gpu="a100-80gb", engine="hf",
                   engine_options={"version": "transformers==4.46.0"})
    memory = est.memory
    copy = est.engine_report.cache_copy_bytes  # type: ignore[union-attr]
    assert copy == memory.kv_cache.bytes // (2 * 64)
    assert est.fit.per_gpu.kv_cache == memory.kv_cache.bytes + copy
    assert est.fit.per_gpu.total / GIB == pytest.approx(74.47 + 1.0, rel=0.03)  # + the context
    assert est.fit.verdict != "does-not-fit"
