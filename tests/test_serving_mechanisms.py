"""The engine rules behind the serving model's held-out errors: SGLang's prefill-first clumps,
the deployment AIConfigurator's generator gave its later SGLang campaigns and its TensorRT-LLM
campaigns, TensorRT-LLM's FP8 KV cache in AIConfigurator's FP8 runs, the eager cost of steps
outside the decode CUDA graphs, attention kernels timed on their own roofline, and FP8 GEMMs
below twice the 16-bit rate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.frozen import replace
from vramest.serving import serving
from vramest.serving.engines import SERVING_ENGINES
from vramest.serving.reference import (
    Row,
    deployed,
    max_throughput_rows,
    predict,
    rows_for,
    silicon_rows,
)


@settings(max_examples=25, deadline=None)
@given(concurrency=st.integers(1, 512), lengths=st.tuples(st.integers(64, 8192),
                                                          st.integers(16, 2048)))
def test_sglang_prefill_first_keeps_the_running_batch_one_clump(
        concurrency: int, lengths: tuple[int, int]) -> None:
    """Decodes wait for every waiting prompt, so requests prefilled together finish together:
    with fixed lengths the whole running batch travels as one clump. Mixing prompts into
    decode steps (--enable-mixed-chunk) lets clumps split."""
    kwargs = dict(model="meta-llama/Llama-3.1-8B", dtype="fp8", gpu="h100", engine="sglang",
                  input_len=lengths[0], output_len=lengths[1], concurrency=concurrency)
    state = serving(**kwargs).state
    assert state.clump == pytest.approx(state.running)


def _row(version: str) -> Row:
    return next(r for r in silicon_rows() if r.engine == "sglang" and r.engine_version == version)


def test_generator_flags_apply_to_the_campaigns_it_deployed() -> None:
    """SGLang 0.5.6.post2 and later AIConfigurator campaigns: --enable-mixed-chunk,
    --max-prefill-tokens ISL + 1500, --max-running-requests the concurrency; the 0.5.1.post1
    campaign keeps SGLang's defaults."""
    eng = SERVING_ENGINES["sglang"]
    late = _row("0.5.6.post2")
    d = deployed(late, eng)
    assert d.mixed and not eng.mixed
    assert d.max_num_batched_tokens == min(eng.max_num_batched_tokens, late.input_len + 1500)
    assert d.max_num_seqs == late.concurrency
    assert deployed(_row("0.5.1.post1"), eng) == eng
    assert deployed(replace(late, concurrency=None), eng) == eng


def test_trtllm_fp8_runs_hold_what_an_fp8_kv_cache_holds() -> None:
    """Llama-3.1-70B in FP8 on one H200, 1024 in / 8192 out: 32 requests ran at once (TTFT
    0.45 s), 64 queued (TTFT 80 s). Only an FP8 KV cache holds 32 full-length requests."""
    rows = {r.concurrency: r for r in rows_for("trtllm")
            if r.model == "meta-llama/Llama-3.1-70B" and r.gpu == "h200" and r.tp == 1
            and (r.input_len, r.output_len) == (1024, 8192)}
    assert rows[32].kv_dtype == "fp8"
    qwen = [r for r in rows_for("trtllm") if "1.0.0rc3/Qwen" in r.group]
    assert qwen and all(r.kv_dtype is None for r in qwen)  # its pool is bf16-sized
    ran, queued = predict(rows[32]), predict(rows[64])
    assert ran.ttft_s is not None and queued.ttft_s is not None
    assert ran.ttft_s < 4 * rows[32].ttft_s  # type: ignore[operator]
    assert queued.ttft_s > 20.0 and rows[64].ttft_s > 20.0  # type: ignore[operator]


def test_eager_cost_only_where_cuda_graphs_miss_prompt_steps() -> None:
    """vLLM V1 captures mixed steps in piecewise CUDA graphs; SGLang (extend and mixed batches)
    and TensorRT-LLM (batches with context requests) run them eagerly."""
    assert SERVING_ENGINES["vllm"].eager_layer_s == 0.0
    assert SERVING_ENGINES["sglang"].eager_layer_s > 0.0
    assert SERVING_ENGINES["trtllm"].eager_layer_s > 0.0


def test_aiconfigurator_trtllm_campaigns_schedule_whole_prompts() -> None:
    """AIConfigurator's TensorRT-LLM worker: max_batch_size the batch, max_num_tokens batch +
    ISL + 1500, no chunked prefill, so a step takes the whole prompts that fit in ISL + 1500
    tokens; rows of other sources keep TensorRT-LLM's defaults."""
    eng = SERVING_ENGINES["trtllm"]
    rows = [r for r in rows_for("trtllm") if r.concurrency is not None]
    for isl, whole in ((1024, 2), (2048, 1), (4096, 1), (8192, 1)):
        row = next(r for r in rows if r.input_len == isl)
        d = deployed(row, eng)
        assert d.max_num_batched_tokens == whole * isl
        assert d.max_num_seqs == row.concurrency
    offline = next(r for r in rows_for("trtllm") if r.concurrency is None)
    assert deployed(offline, eng) == eng


def _offline(row_id: str) -> float:
    row = next(r for r in max_throughput_rows() if r.id == row_id)
    p = predict(row)
    assert p.tokens_per_s is not None and row.tokens_per_s is not None
    return p.tokens_per_s


def test_attention_adds_to_the_matmuls_at_large_batches() -> None:
    """H200 and H100 share the GH100 die; the H200's 1.43x bandwidth shows in the large-batch
    throughput only where a step streams memory. TensorRT-LLM 1.0 measured Llama-3.1-8B FP8 at
    128 in / 2048 out at 26,221 tokens/s on an H200 and 22,714 on an H100 (1.15x): the
    attention kernels' KV read adds to the compute-bound matmuls instead of hiding under them
    (a step timed as one roofline gave 1.43x)."""
    h200 = _offline("trtllm-perf-Llama-3.1-8B-Instruct-FP8-h200-tp1-128-2048")
    h100 = _offline("trtllm-perf-Llama-3.1-8B-Instruct-FP8-h100-tp1-128-2048")
    assert h200 / h100 == pytest.approx(26221 / 22714, rel=0.12)


def test_trtllm_017_table_rows() -> None:
    """The 0.17 throughput table: FP8 engines with an FP8 KV cache, one campaign per model and
    GPU, each with its page at a commit."""
    rows = [r for r in max_throughput_rows() if r.engine_version.startswith("0.17")]
    assert len(rows) == 115
    assert all(r.kv_dtype == "fp8" and "258c7540c03517def55d9a5aadfa9288af474e1b" in r.source
               for r in rows)
    assert len({r.group for r in rows}) == 7


def test_trtllm_bench_sizes_the_engine_for_its_dataset() -> None:
    """trtllm-bench's tuning (tensorrt_llm/bench/build/tuning.py): max_batch_size the requests
    the KV cache holds at ISL + OSL, capped at 4096; max_num_tokens that batch times 1 + ISL /
    OSL, at least 2048. A small token budget leaves Llama-3.1-70B FP8 room for a KV cache on one
    H100, where TensorRT-LLM 0.17 measured 3,378 tokens/s at 128 in / 128 out."""
    from vramest.serving.reference import trtllm_bench_settings

    row = next(r for r in max_throughput_rows()
               if r.id == "trtllm017-perf-Llama-3.1-70B-h100-tp1-128-128")
    eng = SERVING_ENGINES["trtllm"]
    gib = 2**30
    roomy = trtllm_bench_settings(row, eng, 8 * gib, 256 * 2**10, 141 * gib)
    assert (roomy.max_num_seqs, roomy.max_num_batched_tokens) == (4096, 8192)
    tight = trtllm_bench_settings(row, eng, 70 * gib, 2 * 256 * 160 * 2**10, 80 * gib)
    assert tight.max_num_batched_tokens == 2048 and 64 <= tight.max_num_seqs <= 256
    p = predict(row)  # not refused
    assert p.tokens_per_s is not None and row.tokens_per_s is not None
    assert 0.3 < p.tokens_per_s / row.tokens_per_s < 1.5


@pytest.mark.parametrize("engine", ["sglang", "trtllm"])
def test_fp8_prefill_is_not_twice_bf16(engine: str) -> None:
    """AIConfigurator's per-op GEMM tables (H100/H200; SGLang, TensorRT-LLM, vLLM) time a large
    FP8 GEMM 1.40-1.64x as fast as the bf16 one, not the 2x of the peaks. A compute-bound
    8192-token prompt step of Llama-3.1-8B on one H100 keeps that ratio (SGLang's fitted share
    sits a little above the tables). vLLM's measured rows keep the peaks' ratio (its fitted
    share is 1), which the tables do not explain."""
    from vramest.hardware.database import default_hardware
    from vramest.serving.estimate import deployment
    from vramest.serving.reference import _model
    from vramest.serving.step import Step, step_seconds

    info, device = _model("meta-llama/Llama-3.1-8B"), default_hardware().find("h100")
    step = Step(decodes=0, decode_context=0, prefill_tokens=8192, prefill_context=512,
                prefill_seqs=8)
    eng = SERVING_ENGINES[engine]
    bf16 = step_seconds(deployment(info, "bf16", None, device, 1, 1, eng), step)
    fp8 = step_seconds(deployment(info, "fp8", None, device, 1, 1, eng), step)
    assert 1.4 <= bf16 / fp8 <= 1.75
