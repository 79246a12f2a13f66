"""vLLM 0.2.0-0.2.1 refuse a max_model_len whose fp32 decode logits exceed the GPU's shared
memory per block (vllm/worker/worker.py _check_if_can_support_max_seq_len), checked against
the logs and outcomes public threads report."""

from __future__ import annotations

import vramest


def _vllm(model: str, gpu: str, num_gpus: int = 1, dtype: str | None = None, **options: object):  # type: ignore[no-untyped-def]
    return vramest.estimate(model=model, dtype=dtype, gpu=gpu, num_gpus=num_gpus, engine="vllm",
                            engine_options=options, profile="none")


def test_issue_1267_log_on_an_rtx_6000_ada():
    """vLLM issue #1267 (2023-10-05, 0.2.0): LlongOrca-7B-16k (Llama-2-7B, linear RoPE) on one
    RTX 6000 Ada logged "# GPU blocks: 3028" and then "RuntimeError: vLLM cannot currently
    support max_model_len=65536 with block_size=16 on GPU with compute capability (8, 9)
    (required shared memory 264252.0 > available shared memory 101376)"."""
    est = _vllm("meta-llama/Llama-2-7b-hf", "rtx 6000 ada", version="0.2.0",
                max_model_len=65536)
    report = est.engine_report
    assert report.num_gpu_blocks > 0  # the KV cache was sized before the check
    assert ("max_model_len=65536 with block_size=16 on GPU with compute capability (8, 9) "
            "(required shared memory 264252.0 > available shared memory 101376)"
            in report.refusal)
    assert est.fit.fits is False


def test_issue_1573_deepseek_coder_rope_factor_on_a100s():
    """vLLM issue #1573 (2023-11, 0.2.1): deepseek-coder-33B-instruct-AWQ "can not run" on two
    A100 40GB at TP 2; the maintainer: "the issue is the derived_max_model_len. DeepSeek has a
    RoPE scaling factor" (linear x4: 16384 x 4 = 65536 positions). 65536 fp32 logits are
    256 KiB, more than the A100's 163 KiB per block."""
    est = _vllm("deepseek-ai/deepseek-coder-33b-instruct", "a100 sxm4 40gb", 2, "awq-int4",
                version="0.2.1", gpu_memory_utilization=0.9)
    report = est.engine_report
    assert report.max_model_len == 65536
    assert "compute capability (8, 0)" in report.refusal
    assert "available shared memory 166912" in report.refusal
    assert est.fit.fits is False
    # the config's own length, the maintainer's way out, passes the check
    shorter = _vllm("deepseek-ai/deepseek-coder-33b-instruct", "a100 sxm4 40gb", 2, "awq-int4",
                    version="0.2.1", gpu_memory_utilization=0.9, max_model_len=16384)
    assert "shared memory" not in shorter.engine_report.refusal


def test_the_check_is_gone_from_022():
    """The 0.2.2 wheel has no such check (PagedAttention V2 partitions long contexts), nor has
    0.1.7's."""
    for version in ("0.1.7", "0.2.2"):
        est = _vllm("deepseek-ai/deepseek-coder-33b-instruct", "a100 sxm4 80gb", 2,
                    version=version)  # its derived 65536
        assert "shared memory" not in est.engine_report.refusal


def test_the_advice_names_the_longest_length_the_check_passes():
    """(max_model_len + 15) x 4 bytes against the A100's 166912: 41713 passes, 41714 does not;
    memory-side advice (fp8 KV, utilization, more GPUs) cannot lift the limit."""
    est = _vllm("deepseek-ai/deepseek-coder-33b-instruct", "a100 sxm4 40gb", 2, "awq-int4",
                version="0.2.1")
    assert est.fit.advice[0].startswith("--max-model-len 41713 or less")
    assert not any("fp8" in line for line in est.fit.advice)
    for length, refused in ((41713, False), (41714, True)):
        at = _vllm("deepseek-ai/deepseek-coder-33b-instruct", "a100 sxm4 40gb", 2, "awq-int4",
                   version="0.2.1", max_model_len=length)  # under its derived 65536
        assert ("shared memory" in at.engine_report.refusal) is refused
