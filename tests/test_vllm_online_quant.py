"""vLLM quantizing a 16-bit checkpoint to FP8 while it loads it (--quantization fp8): what the
load holds at its peak, per release, against vLLM issue #31273 (Qwen2.5-72B on one H20 whose
torch total is 139.72 GiB: loads on 0.12.0, out of memory loading on 0.13.0 with 139.21 GiB
allocated by PyTorch when it failed)."""

from __future__ import annotations

import pytest

from vramest.api import estimate
from vramest.inference.engines.startup import online_quant_load_peak
from vramest.inference.engines.versions import parse_version, vllm_rules
from vramest.units import GIB

H20_TOTAL = round(139.72 * GIB)  # "GPU 0 has a total capacity of 139.72 GiB"
ALLOCATED_AT_OOM = 139.21 * GIB  # "139.21 GiB is allocated by PyTorch" on 0.13.0


def _run(version: str, model: str = "Qwen/Qwen2.5-72B-Instruct"):
    return estimate(model=model, dtype="fp8", gpu="h200", engine="vllm",
                    engine_options={"version": version, "total_memory_bytes": H20_TOTAL},
                    profile="none")


def _peak(version: str, model: str = "Qwen/Qwen2.5-72B-Instruct") -> int:
    est = _run(version, model)
    rules = vllm_rules(parse_version("vllm", version))
    return online_quant_load_peak(est, rules, est.engine_report.weights_bytes)


def test_whole_16bit_model_fits_the_h20_on_0_12():
    report = _run("0.12.0").engine_report
    assert report.starts and not report.refusal
    # the 16-bit checkpoint whole (72.7B parameters in bf16), inside the 139.72 GiB
    assert 134 * GIB < _peak("0.12.0") < H20_TOTAL


def test_0_13_runs_out_of_memory_while_loading():
    est = _run("0.13.0")
    assert not est.engine_report.starts and est.fit.fits is False
    assert "while loading" in est.engine_report.refusal
    # the load had 139.21 GiB when it failed, still short of what it would have held
    assert _peak("0.13.0") > max(ALLOCATED_AT_OOM, H20_TOTAL)


@pytest.mark.parametrize("version", ["0.14.0", "0.21.0"])
def test_streamed_loading_holds_no_16bit_model(version):
    assert _peak(version) == 0 and _run(version).engine_report.starts


@pytest.mark.parametrize("version", ["0.10.1", "0.12.0", "0.13.0"])
def test_a_prequantized_fp8_checkpoint_is_not_quantized_while_loading(version):
    assert _peak(version, "Qwen/Qwen3-30B-A3B-FP8") == 0


def test_the_0_13_peak_adds_the_quantized_layers_to_the_whole_model():
    whole, both = _peak("0.12.0"), _peak("0.13.0")
    final = _run("0.13.0").engine_report.weights_bytes  # the FP8 model vLLM ends up with
    # both copies: the 16-bit model plus the quantized layers, less than two whole models
    assert whole < both < whole + final
