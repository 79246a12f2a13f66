"""vLLM V1's non-torch memory and activation peak against the figures its logs print.

llm-d-benchmark's measured vLLM 0.11.0 table (H100, VLLM_LOGGING_LEVEL=DEBUG: "non-torch forward
increase memory", "torch peak memory increase") is quoted in the real cases; vLLM issue #29070
logs a TP 4 rank on 24 GB PCIe GPUs; PR #18858 printed the pre-snapshot accounting on 0.9.0.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from vramest.api import estimate
from vramest.validation.real_cases import _engine_options, load_cases

GIB = 2**30
LOGS = Path(__file__).parent / "data" / "engines" / "logs.csv"


def _logged(record: str) -> float:
    with LOGS.open(newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["record_id"] == record)
    assert row["metric"] == "non_torch_memory" and row["source"].startswith("https://")
    return float(row["value"])
_ROW = re.compile(r"\|\s*[^|]+\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|")


def _llmd_rows():
    for case in load_cases():
        match = _ROW.search(case.quote) if "llmd" in case.id else None
        if match:
            yield pytest.param(case, *map(float, match.groups()), id=case.id)


def _report(case):
    options = _engine_options(case)
    options.pop("host_memory", None)
    return estimate(model=case.model, dtype=case.dtype, ctx=case.ctx, gpu=case.gpu,
                    num_gpus=case.num_gpus, engine="vllm", engine_options=options,
                    profile="none").engine_report


@pytest.mark.parametrize(("case", "weights", "activation", "non_torch"), list(_llmd_rows()))
def test_llmd_non_torch_and_activation(case, weights, activation, non_torch):
    report = _report(case)
    assert abs(report.non_torch_bytes / GIB - non_torch) <= 0.02
    if "mistral" in case.id:  # Mistral3's vision tower profile (2.12 GiB logged) differs
        return
    assert abs(report.activation_peak_bytes / GIB - activation) <= 0.05


def test_tp4_rank_without_custom_allreduce_adds_nothing():
    # vLLM issue #29070 (Nov 2025): OPT-2.7B at TP 4 on 24 GB GPUs, "non-torch forward increase
    # memory: 0.09GiB" on a rank; the custom all-reduce is off past two PCIe GPUs
    # (the non-torch share does not depend on the model: opt-125m is in the catalog)
    est = estimate(model="facebook/opt-125m", gpu="rtx 4090", num_gpus=4, engine="vllm",
                   engine_options={"version": "0.11.0", "gpu_memory_utilization": 0.8},
                   profile="none")
    logged = _logged("vllm-29070-opt27b-tp4")
    assert abs(est.engine_report.non_torch_bytes / GIB - logged) <= 0.05


def test_the_snapshot_release_drops_the_cuda_context():
    # before 0.9.1 the CUDA context counted: 0.53 GiB for opt-125m on an A100 (PR #18858); from
    # 0.9.1 only what grew since the worker's snapshot (0.13 GiB on an H100 at 0.11.0)
    def non_torch(version: str) -> float:
        est = estimate(model="facebook/opt-125m", gpu="a100 sxm4 80gb", engine="vllm",
                       engine_options={"version": version}, profile="none")
        return est.engine_report.non_torch_bytes / GIB

    assert abs(non_torch("0.9.0") - _logged("vllm-18858-opt125m-a100")) <= 0.1
    assert non_torch("0.9.1") == non_torch("0.11.0") < 0.15


@pytest.mark.parametrize(("model", "kernel", "logged"), [
    ("openai/gpt-oss-120b", "triton", 64.38), ("openai/gpt-oss-20b", "triton", 13.47),
    ("openai/gpt-oss-120b", "marlin", 65.9651)])
def test_hopper_mxfp4_weights_follow_the_installed_kernel(model, kernel, logged):
    # llm-d-benchmark's vllm/vllm-openai:v0.11.0 image (triton_kernels installed) and vLLM issue
    # #23278's pip install of 0.10.1 ("leveraging the Marlin kernel"), both on one H100
    est = estimate(model=model, gpu="h100", engine="vllm", profile="none",
                   engine_options={"version": "0.11.0", "mxfp4_kernel": kernel,
                                   "max_model_len": 16000})
    assert est.engine_report.weights_bytes / GIB == pytest.approx(logged, rel=0.01)


def test_an_unknown_mxfp4_kernel_is_refused():
    from vramest.errors import InputError

    with pytest.raises(InputError, match="marlin"):
        estimate(model="openai/gpt-oss-20b", gpu="h100", engine="vllm", profile="none",
                 engine_options={"mxfp4_kernel": "cutlass"})
