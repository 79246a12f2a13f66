"""TensorRT-LLM's serving mechanisms behind its held-out errors: its own all-reduce kernels, a
fixed cost per layer of every step, eager steps only in the PyTorch backend, and the whole context
it attends over unless told a window. Each checked against the measured rows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.hardware.database import default_hardware
from vramest.serving.allreduce import SIZES, TRTLLM_NVLINK4_US, covers, trtllm_allreduce_s
from vramest.serving.engines import SERVING_ENGINES
from vramest.serving.reference import Row, max_throughput_rows, predict, silicon_rows


def _silicon(model: str, tp: int, concurrency: int, isl: int, osl: int) -> Row:
    return next(r for r in silicon_rows()
                if r.engine == "trtllm" and r.model == model and r.tp == tp
                and r.concurrency == concurrency and r.input_len == isl and r.output_len == osl)


def test_only_the_017_tensorrt_engines_skip_the_eager_steps() -> None:
    """The 0.17 table's runs used built TensorRT engines (a step with prompt tokens enqueues the
    compiled network); the 1.0 table's used the PyTorch backend, which launches such steps op by
    op, as the serving rows' deployments do."""
    from vramest.serving.reference import trtllm_bench_settings

    eng = SERVING_ENGINES["trtllm"]
    assert eng.eager_layer_s > 0
    for row in max_throughput_rows():
        bench = trtllm_bench_settings(row, eng, 16e9, 1e6, 80e9)
        assert (bench.eager_layer_s == 0.0) == row.engine_version.startswith("0.17")


def test_trtllm_attends_over_the_whole_context_of_a_sliding_window_model() -> None:
    """TensorRT-LLM 0.17 ran Mistral-7B-v0.1 (a 4096-token window on every layer) at 20000 in /
    2000 out at 1373 tokens/s on an H100, as fast as Llama-3.1-8B (1401): it keeps and reads
    the whole context (KvCacheConfig.max_attention_window unset)."""
    row = next(r for r in max_throughput_rows()
               if r.id == "trtllm017-perf-Mistral-7B-h100-tp1-20000-2000")
    p = predict(row)
    assert row.tokens_per_s == pytest.approx(1373, abs=1) and p.tokens_per_s is not None
    assert p.tokens_per_s == pytest.approx(1373, rel=0.1)


def test_decode_steps_fall_as_a_over_tp_plus_a_fixed_part() -> None:
    """Llama-3.1-70B FP8 on H200s, 4 requests of 1024 / 1024 (2026-04-06 campaign): 20.1, 12.0,
    8.0 and 6.3 ms a token on 1, 2, 4 and 8 GPUs. The weights' share halves with each doubling;
    a few ms per step do not (a fixed time per layer, and all-reduces of a few µs)."""
    model = "meta-llama/Llama-3.1-70B"
    measured = {tp: _silicon(model, tp, 4, 1024, 1024) for tp in (1, 2, 4, 8)}
    predicted = {tp: predict(row).tpot_s for tp, row in measured.items()}
    for tp in (2, 4, 8):
        ratio = measured[tp].tpot_s / measured[1].tpot_s  # type: ignore[operator]
        assert predicted[tp] / predicted[1] == pytest.approx(ratio, rel=0.12)  # type: ignore[operator]


def test_allreduce_table_is_the_measured_one() -> None:
    """The table's points come back exactly; NVIDIA GPUs on SXM-class NVLink, 2, 4 or 8 of
    them; a link twice as fast halves a large message's time."""
    for tp, row in TRTLLM_NVLINK4_US.items():
        for size, us in zip(SIZES, row, strict=True):
            assert trtllm_allreduce_s(tp, size) == pytest.approx(us * 1e-6)
    hw = default_hardware()
    assert covers(hw.find("h100"), 8) and covers(hw.find("h200"), 2)
    assert covers(hw.find("b200"), 4) and not covers(hw.find("h100"), 16)
    assert not covers(hw.find("rtx a6000"), 2) and not covers(hw.find("rtx 4090"), 2)
    assert trtllm_allreduce_s(8, 2 ** 26, 1800e9) == pytest.approx(
        trtllm_allreduce_s(8, 2 ** 25))


@settings(max_examples=40, deadline=None)
@given(tp=st.sampled_from([2, 4, 8]), elements=st.floats(1, 2e9), more=st.floats(1.0, 100.0))
def test_allreduce_time_grows_with_the_message(tp: int, elements: float, more: float) -> None:
    assert trtllm_allreduce_s(tp, elements * more) >= trtllm_allreduce_s(tp, elements) > 0
