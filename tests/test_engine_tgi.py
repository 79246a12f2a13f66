"""--engine tgi: the KV blocks TGI's warm-up leaves (huggingface/text-generation-inference at
each tag), against a real TGI log (tests/data/engines/tgi_logs.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vramest

CASES = json.loads((Path(__file__).parent / "data/engines/tgi_logs.json").read_text())["cases"]


def tgi(model: str, gpu: str, dtype: str = "bf16", num_gpus: int = 1, **options: object
        ) -> dict[str, object]:
    est = vramest.estimate(model=model, dtype=dtype, gpu=gpu, num_gpus=num_gpus, engine="tgi",
                           engine_options=options)
    assert est.engine_report is not None
    return est.engine_report.to_json()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["url"].rsplit("/", 1)[-1])
def test_max_batch_total_tokens_matches_the_log(case: dict[str, object]) -> None:
    report = tgi(str(case["model"]), str(case["gpu"]), str(case["dtype"]),
                 version=case["version"], **case["settings"])  # type: ignore[arg-type]
    observed = case["observed"]["max_batch_total_tokens"]  # type: ignore[index]
    assert report["max_batch_total_tokens"] == pytest.approx(observed, rel=0.05)


def test_warmup_logits_count_against_the_cache() -> None:
    """The warm-up asks for prefill logprobs: a larger prefill leaves fewer KV tokens."""
    small = tgi("llama-3.1-8b", "h100", max_batch_prefill_tokens=4096)
    large = tgi("llama-3.1-8b", "h100", max_batch_prefill_tokens=32768)
    lost = (int(small["max_batch_total_tokens"]) - int(large["max_batch_total_tokens"])) * \
        float(large["kv_bytes_per_token"])  # type: ignore[arg-type]
    logits = (32768 - 4096) * 128256 * (2 + 4)  # bf16 logits + fp32 log-softmax
    assert lost > logits


def test_wiggle_room_by_release() -> None:
    assert tgi("llama-3.1-8b", "h100", version="2.0.0")["wiggle_room"] == 0.95
    assert tgi("llama-3.1-8b", "h100", version="3.1.0")["wiggle_room"] == 0.93
    assert tgi("llama-3.1-8b", "h100")["wiggle_room"] == 0.90
    assert tgi("llama-3.1-8b", "h100", version="2.2.0")["block_size"] == 16
    # flashinfer's one-token blocks from v2.3.0 (issue #2748's 2.4.0 log: "size: 1")
    assert tgi("llama-3.1-8b", "h100", version="2.4.1")["block_size"] == 1
    assert tgi("llama-3.1-8b", "h100")["block_size"] == 1


def test_a_warmup_that_does_not_fit_refuses() -> None:
    est = vramest.estimate(model="llama-3.1-70b", dtype="bf16", gpu="h100", engine="tgi")
    assert est.engine_report is not None and est.engine_report.to_json()["starts"] is False
    assert any("decrease `--max-batch-prefill-tokens`" in line
               for line in est.engine_report.log_lines())
    assert est.fit is not None and not est.fit.fits


def test_tgi_awq_warm_up_holds_the_split_k_outputs_until_marlin():
    """TGI's WQLinear calls llm-awq's gemm_forward_cuda with split_k_iters 8 (v1.1.0-v2.1.x):
    the warm-up prefill holds 8 partial outputs of the merged gate_up; v2.2.0 repacks AWQ for
    GPTQ-Marlin on the GPUs that run it."""
    from vramest.api import estimate
    from vramest.inference.engines.tgi import AWQ_WQLINEAR

    def warmup(version: str) -> int:
        report = estimate(model="mistralai/Mistral-7B-v0.1", dtype="awq-int4", gpu="rtx a6000",
                          engine="tgi", profile="none",
                          engine_options={"version": version,
                                          "max_batch_prefill_tokens": 17000}).engine_report
        return report.warmup_activation_bytes

    assert AWQ_WQLINEAR == ((1, 1, 0), (2, 2, 0))
    # Mistral-7B: gate_up is 2 x 14336 wide; 8 partial outputs of 17,000 rows in fp16
    assert warmup("1.3.0") - warmup("2.2.0") == 8 * 17000 * 2 * 14336 * 2


def test_before_1_1_1_a_gptq_kernel_error_reads_as_not_enough_memory() -> None:
    """TGI issue #1085 (1.1.0, TheBloke/Llama-2-7b-Chat-GPTQ, one L4): the image starts the model
    under Docker on an L4, and the same image and model on a Kubernetes L4 refuse with "Not
    enough memory to handle 4096 prefill tokens", raised from Triton's GPTQ kernel. The warm-up
    fits; 1.1.0 turns any warm-up error into that message, v1.1.1 only an out-of-memory one."""
    def report(version: str) -> dict[str, object]:
        return tgi("meta-llama/Llama-2-7b-hf", "l4", "gptq-int4", version=version,
                   max_batch_prefill_tokens=4096)

    old, new = report("1.1.0"), report("1.1.1")
    assert old["starts"] is True and new["starts"] is True
    assert any("reports any error" in str(r) for r in old["rules"])  # type: ignore[attr-defined]
    assert not any("reports any error" in str(r) for r in new["rules"])  # type: ignore[attr-defined]


def test_a_started_server_is_not_tight_because_its_pool_fills_the_gpu() -> None:
    """TGI fills what the warm-up leaves with KV blocks, so every started server shows a full
    GPU; the verdict judges the warm-up. TGI 1.1.0 started Llama-2-7B in 16 bit on an L4
    (huggingface/text-generation-inference#940): a plain 'fits', its headroom the pool."""
    est = vramest.estimate(model="meta-llama/Llama-2-7b-hf", gpu="l4", engine="tgi",
                           engine_options={"version": "1.1.0", "max_batch_prefill_tokens": 4096})
    assert est.fit is not None and est.fit.verdict == "fits"
    report = est.engine_report
    assert report is not None and report.starts
    # the headroom is what the warm-up leaves, which the pool takes (wiggle room 1.0 in 1.1.0)
    assert est.fit.headroom_bytes == pytest.approx(report.kv_cache_bytes
                                                   - report.warmup_kv_bytes, rel=0.01)


def test_a_warm_up_that_does_not_fit_still_does_not_fit() -> None:
    # 2.2.0 refused a 131,122-token warm-up prefill of Llama-3.1-70B on 4x H100 (#2301)
    est = vramest.estimate(model="meta-llama/Llama-3.1-70B", gpu="h100", num_gpus=4,
                           engine="tgi", engine_options={
                               "version": "2.2.0", "max_input_tokens": 131072,
                               "max_total_tokens": 139264, "max_batch_prefill_tokens": 131122})
    assert est.fit is not None and not est.fit.fits
