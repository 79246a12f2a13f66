"""The serving model carried off the H100/H200 class it was fitted on by the chips' measured
kernels (serving/devices.py) and TensorRT-LLM's all-reduce measured on each NVLink generation
(serving/allreduce.py), checked against rows the fit never saw."""

from __future__ import annotations

import statistics

import pytest

from vramest.hardware.database import default_hardware
from vramest.serving.allreduce import (
    MEASURED_US,
    SIZES,
    TRTLLM_B200_US,
    device_allreduce_s,
    trtllm_allreduce_s,
)
from vramest.serving.devices import RATIOS, on_device
from vramest.serving.engines import SERVING_ENGINES
from vramest.serving.reference import b200_rows, errors, predict, public_rows


def test_the_fitted_class_keeps_its_constants() -> None:
    """H100 and H200 are the class the constants were fitted on: nothing moves there."""
    hw = default_hardware()
    for name in ("h100", "h200"):
        for eng in SERVING_ENGINES.values():
            assert on_device(eng.speed, hw.find(name)) == eng.speed


def test_each_measured_chip_is_in_the_database() -> None:
    hw = default_hardware()
    for name in (*RATIOS, *MEASURED_US):
        assert hw.find(name).name == name


def test_a100_and_b200_stream_weights_at_a_smaller_share_than_hopper() -> None:
    """AIConfigurator's decode GEMMs: A100 0.747 and B200 0.785 of the datasheet bandwidth,
    H100/H200 0.858; A100's small kernels take 1.2x Hopper's, B200's 0.77x."""
    a100, b200 = RATIOS["NVIDIA A100 SXM4 80GB"], RATIOS["NVIDIA B200"]
    assert a100.memory == pytest.approx(0.87, abs=0.01) and b200.memory == pytest.approx(
        0.915, abs=0.01)
    assert a100.latency == pytest.approx(1.2, abs=0.01) and b200.latency == pytest.approx(
        0.765, abs=0.01)


def test_b200_allreduce_is_its_measured_table_not_h100_scaled_by_the_link() -> None:
    """A small message takes 5-6 µs on B200's NVLink 5, where H100's scaled table says 3-4."""
    b200 = default_hardware().find("b200")
    for tp, row in TRTLLM_B200_US.items():
        for size, us in zip(SIZES, row, strict=True):
            assert device_allreduce_s(b200, tp, size) == pytest.approx(us * 1e-6)
    assert device_allreduce_s(b200, 8, 4096) > 1.4 * trtllm_allreduce_s(8, 4096, 1800e9)


def test_unmeasured_nvlink_devices_keep_the_scaled_table() -> None:
    b300 = default_hardware().find("b300")
    link = b300.interconnect_bytes_s or 0.0
    assert device_allreduce_s(b300, 8, 2 ** 20) == trtllm_allreduce_s(8, 2 ** 20, link)


def test_a100_cookbook_decode_within_25_percent() -> None:
    """sgl-cookbook, Llama-3.1-70B bf16 on 8 A100 (SGLang 0.5.6): median |TPOT error| was 27%
    with Hopper's kernels, 20.5% with A100's."""
    preds = [predict(r) for r in public_rows() if r.gpu == "a100-80gb"]
    e = errors(preds)["tpot"]
    assert len(e) == 6 and statistics.median(abs(x) for x in e) < 0.25


def test_b200_vllm_decode_within_9_percent() -> None:
    """vLLM on B200 (never fitted): median |TPOT error| 10.6% with Hopper's kernels, 8.1%."""
    preds = [predict(r) for r in b200_rows() if r.engine == "vllm"]
    e = errors(preds)["tpot"]
    assert statistics.median(abs(x) for x in e) < 0.09
