"""Engine start-up figures against the engines' own logs (vramest/validation/reference/memory.csv)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

import vramest
from vramest.cli import main
from vramest.validation import accuracy


@pytest.fixture(scope="module")
def memory_rows(reference_dir: Path) -> list[dict[str, str]]:
    return accuracy.read_rows(reference_dir / "memory.csv")


def _median(rows: list[accuracy.Comparison]) -> float:
    return statistics.median(abs(c.error) for c in rows)


def test_vllm_weights_within_3_percent(memory_rows: list[dict[str, str]]) -> None:
    assert _median(accuracy.vllm_weights(memory_rows)) < 0.03


def test_vllm_kv_cache_and_concurrency_within_5_percent(memory_rows: list[dict[str, str]]) -> None:
    """'# GPU blocks', 'GPU KV cache size', 'Maximum concurrency' lines of vLLM V0/V1 logs on an
    RTX 3090, RTX A6000 and H100 (Llama 3/3.1 8B, Mistral 7B, OPT-125m, GPTQ/AWQ 7B, phi-2)."""
    rows = accuracy.vllm_engine_rows(memory_rows)
    kv = [c for c in rows if c.quantity in ("kv_cache_size", "gpu_kv_blocks", "kv_cache_tokens")]
    concurrency = [c for c in rows if c.quantity == "max_concurrency"]
    assert len(kv) >= 8 and concurrency
    assert _median(kv + concurrency) < 0.05  # the README states 4.4%, worst 6.5%
    assert max(abs(c.error) for c in kv + concurrency) < 0.08


def test_llamacpp_buffers_match_the_logs(memory_rows: list[dict[str, str]]) -> None:
    """llama.cpp's compute (GPU and host) and output buffers, CUDA and Metal builds."""
    rows = accuracy.llamacpp_engine_rows(memory_rows)
    assert len(rows) >= 30
    assert _median(rows) < 0.005  # the README states 0.1%, worst 2.5%
    assert max(abs(c.error) for c in rows) < 0.03


def test_flash_attention_removes_the_score_matrix() -> None:
    from vramest.inference.engines.startup import LlamaCppOptions, llamacpp_startup

    est = vramest.estimate(model="llama-3.1-8b", dtype="q4_k_m", ctx=32768)
    plain = llamacpp_startup(est, LlamaCppOptions(flash_attn=False))
    fused = llamacpp_startup(est, LlamaCppOptions(flash_attn=True))
    # -fa auto from about b6300: a recent build fuses them by default, an older one does not
    assert llamacpp_startup(est, LlamaCppOptions()).compute_buffer_gpu_bytes == \
        fused.compute_buffer_gpu_bytes
    assert llamacpp_startup(est, LlamaCppOptions(version="b4000")).compute_buffer_gpu_bytes == \
        plain.compute_buffer_gpu_bytes
    assert fused.compute_buffer_gpu_bytes < plain.compute_buffer_gpu_bytes / 4


def test_partial_offload_moves_layers_to_the_host() -> None:
    from vramest.inference.engines.startup import LlamaCppOptions, llamacpp_startup

    est = vramest.estimate(model="llama-3.1-8b", dtype="q4_k_m", ctx=4096)
    full = llamacpp_startup(est, LlamaCppOptions())
    half = llamacpp_startup(est, LlamaCppOptions(n_gpu_layers=16))
    assert half.model_buffer_gpu_bytes < full.model_buffer_gpu_bytes
    total_full = full.model_buffer_gpu_bytes + full.model_buffer_host_bytes
    total_half = half.model_buffer_gpu_bytes + half.model_buffer_host_bytes
    assert total_full == pytest.approx(total_half, rel=1e-6)


def test_llamacpp_fit_offloads_what_fits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "llama-3.1-70b", "--dtype", "q4_k_m", "--engine", "llamacpp",
                 "--gpu", "4090", "--fit", "--ctx", "8k", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert 0 < data["engine"]["gpu_layers"] < 80
    assert data["fit"]["fits"] is True
    for key in ("model_buffer_gpu_bytes", "model_buffer_host_bytes", "kv_cache_bytes",
                "compute_buffer_gpu_bytes", "compute_buffer_host_bytes", "gpu_layers"):
        assert isinstance(data["engine"][key], int)


def test_vllm_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "llama-3.1-8b", "--engine", "vllm", "--gpu", "l40s",
                 "--max-model-len", "32k", "--json"]) == 0
    engine = json.loads(capsys.readouterr().out)["engine"]
    for key in ("weights_bytes", "activation_peak_bytes", "non_torch_bytes", "cuda_graph_bytes",
                "kv_cache_bytes", "kv_cache_tokens", "num_gpu_blocks"):
        assert isinstance(engine[key], int)
    assert isinstance(engine["max_concurrency"], float)


def test_vllm_refusal_names_the_largest_length_that_starts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "llama-3.1-8b", "--engine", "vllm", "--gpu", "3090",
                 "--max-model-len", "128k"]) == 0
    out = capsys.readouterr().out
    assert "would refuse to start" in out and "largest max_model_len" in out


def test_enforce_eager_frees_the_cuda_graph_pool() -> None:
    kw = dict(model="llama-3.1-8b", engine="vllm", gpu="h100")
    graphs = vramest.estimate(**kw).engine_report
    eager = vramest.estimate(**kw, engine_options={"enforce_eager": True}).engine_report
    assert eager.cuda_graph_bytes == 0 and eager.num_gpu_blocks > graphs.num_gpu_blocks


@pytest.mark.parametrize("args", [
    ["--model", "llama-3.1-8b", "--engine", "vllm", "--no-gpus"],
    ["--model", "llama-3.1-8b", "--max-model-len", "8k"],
    ["--model", "llama-3.1-8b", "--engine", "vllm", "--gpu", "h100",
     "--gpu-memory-utilization", "1.5"],
    ["--model", "llama-3.1-8b", "--engine", "llamacpp", "--fit"],
    ["--model", "llama-3.1-8b", "--engine", "llamacpp", "--cache-type-k", "q3"],
])
def test_engine_misuse_exits_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert main(args) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_transformers_generate_peak_matches_the_optimum_benchmark(
        memory_rows: list[dict[str, str]]) -> None:
    """Llama-2-13B fp16 and GPTQ on an A100, batch 1-16: prefill-only and 512-token generation
    peaks of device memory. Generation keeps a second cache's worth reserved."""
    rows = accuracy.hf_engine_rows(memory_rows)
    assert len(rows) == 20
    assert _median(rows) < 0.025  # the README states 2.0%, worst 6.6%
    assert max(abs(c.error) for c in rows) < 0.07


def test_gemma2_runs_eager_in_transformers() -> None:
    est = vramest.estimate(model="gemma-2-9b", ctx=8192)
    assert est.settings.attention == "eager"
    assert any("only eager" in a for a in est.assumptions)


def test_the_engines_with_start_up_accounting_are_listed_once_for_the_fast_path() -> None:
    """deploy.ACCOUNTED_ENGINES lets an answer skip importing the engine modules; it must name
    exactly the engines that have their own accounting."""
    from vramest.inference.deploy import ACCOUNTED_ENGINES
    from vramest.inference.engines import registry
    from vramest.inference.engines.startup import STARTUP_ENGINES

    assert set(ACCOUNTED_ENGINES) == {*STARTUP_ENGINES, "llamacpp-cli", *registry.NAMES}


def test_transformers_on_several_gpus_is_a_layer_split_run_in_turn() -> None:
    # device_map="auto" gives each GPU whole layers; a token passes them one after the other,
    # so a second GPU adds memory, not decode speed (no tensor parallelism in generate())
    def run(n: int) -> vramest.Estimate:
        return vramest.estimate(model="meta-llama/Llama-3.1-8B", engine="hf", gpu="rtx 4090",
                                num_gpus=n)

    one, two = run(1), run(2)
    assert two.fit.tp == 1 and two.fit.pp == 2  # type: ignore[union-attr]
    assert two.throughput.decode_tokens_per_s <= 1.05 * one.throughput.decode_tokens_per_s  # type: ignore[union-attr]
    assert two.fit.per_gpu.total < one.fit.per_gpu.total  # type: ignore[union-attr]


def test_vllm_over_different_gpus_gives_every_rank_the_smallest_cards_blocks() -> None:
    """vLLM applies --gpu-memory-utilization to each rank's own card and unifies the block count
    to the smallest rank's (v1 kv_cache_utils.unify_kv_cache_configs; vllm#49816: a partly
    occupied GPU "lowers the vram that can be used on the other card too")."""
    kw = dict(model="llama-3.1-8b", engine="vllm", engine_options={"max_model_len": 8192})
    mixed = vramest.estimate(gpu="rtx 4090,rtx 3060 12gb", **kw)
    small = vramest.estimate(gpu="rtx 3060 12gb", num_gpus=2, **kw)
    large = vramest.estimate(gpu="rtx 4090", num_gpus=2, **kw)
    assert mixed.engine_report.num_gpu_blocks == small.engine_report.num_gpu_blocks
    assert mixed.engine_report.num_gpu_blocks < large.engine_report.num_gpu_blocks
    assert mixed.fit is not None and mixed.fit.fits == small.fit.fits
    assert not any(a.startswith("--num-gpus") for a in mixed.fit.advice)
    same = vramest.estimate(gpu="rtx 4090,rtx 4090", **kw)
    assert same.engine_report.num_gpu_blocks == large.engine_report.num_gpu_blocks
