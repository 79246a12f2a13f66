"""generate() runs two phases: a prefill over the prompt alone, then one token per step against
the growing cache (transformers GenerationMixin.prepare_inputs_for_generation slices input_ids
to the uncached cache_position). With a prompt shorter than the context the peak is the larger
of the two, not a context-long prefill holding the whole context's cache.

Figures: Qwen's speed benchmark of Qwen2.5-32B-Instruct bf16 on one A100 80GB, transformers
4.46.0, torch.cuda.max_memory_allocated with 2048 generated tokens
(QwenLM/Qwen2.5 docs/source/benchmark/speed_benchmark.rst at 010c37c): 61.58 GiB after a
1-token prompt, 74.47 GiB after a 30,720-token prompt."""

from __future__ import annotations

import pytest

from vramest.api import estimate
from vramest.units import GIB


def _allocated(prompt: int):  # type: ignore[no-untyped-def]
    est = estimate(model="Qwen/Qwen2.5-32B", dtype="bf16", ctx=prompt + 2048, prompt=prompt,
                   gen=2048, gpu="a100-80gb", engine="hf",
                   engine_options={"version": "transformers==4.46.0"})
    report = est.engine_report
    # torch's allocated peak: without the runtime overhead and the reserved growth room
    return est, report, (report.generate_peak_bytes - report.kv_growth_bytes  # type: ignore[union-attr]
                         - est.memory.overhead.bytes) / GIB


@pytest.mark.parametrize(("prompt", "logged_gib"), [(30720, 74.47), (1, 61.58)])
def test_the_peak_is_the_larger_phase(prompt: int, logged_gib: float) -> None:
    _, _, allocated = _allocated(prompt)
    assert allocated == pytest.approx(logged_gib, rel=0.01)


def test_a_long_prompt_peaks_in_its_prefill_a_short_one_in_decode() -> None:
    est, report, _ = _allocated(30720)
    shape = est.model.shape
    per_token = est.memory.kv_cache.bytes / est.settings.ctx
    # the 2,048 tokens of cache the prefill does not hold yet, and 2,048 tokens' MLP transient
    # (3 × ffn + 4 × hidden, bf16) the 30,720-token forward does not run
    mlp = 2048 * (3 * 27648 + 4 * shape.hidden_size) * 2
    assert report.prompt_phase_saving_bytes == pytest.approx(  # type: ignore[union-attr]
        2048 * per_token + mlp, rel=0.01)
    est1, report1, _ = _allocated(1)
    # one prompt token: the decode step with the whole cache binds; only the 2,048-token
    # prefill's transient is dropped
    assert 0 < report1.prompt_phase_saving_bytes < est1.memory.activations.bytes  # type: ignore[union-attr]


def test_without_a_prompt_the_context_long_prefill_stays() -> None:
    est = estimate(model="Qwen/Qwen2.5-32B", dtype="bf16", ctx=32768, gpu="a100-80gb",
                   engine="hf", engine_options={"version": "transformers==4.46.0"})
    assert est.engine_report.prompt_phase_saving_bytes == 0  # type: ignore[union-attr]
