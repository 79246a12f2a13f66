"""--engine sglang: its static memory split (sgl-project/sglang server_args.py and
model_runner.py at 469c63e5) and the KV pool a real SGLang log printed
(tests/data/engines/sglang_logs.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vramest
from vramest.errors import InputError

CASES = json.loads((Path(__file__).parent / "data/engines/sglang_logs.json").read_text())["cases"]


def sglang(model: str, gpu: str, dtype: str = "bf16", num_gpus: int = 1, **options: object
           ) -> dict[str, object]:
    est = vramest.estimate(model=model, dtype=dtype, gpu=gpu, num_gpus=num_gpus,
                           engine="sglang", engine_options=options)
    assert est.engine_report is not None
    return est.engine_report.to_json()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["url"].rsplit("/", 1)[-1])
def test_kv_pool_matches_the_log(case: dict[str, object]) -> None:
    report = sglang(str(case["model"]), str(case["gpu"]), str(case["dtype"]),
                    int(case["num_gpus"]), **case["settings"])  # type: ignore[arg-type, call-overload]
    observed = case["observed"]["max_total_num_tokens"]  # type: ignore[index]
    assert report["max_total_num_tokens"] == pytest.approx(observed, rel=0.03)
    k_or_v = case["observed"]["kv_cache_bytes_one_of_k_or_v"]  # type: ignore[index]
    assert int(report["kv_cache_bytes"]) / 2 == pytest.approx(k_or_v, rel=0.03)  # type: ignore[call-overload]


def test_the_pool_is_what_mem_fraction_static_leaves_after_the_weights() -> None:
    r = sglang("llama-3.1-8b", "h100", mem_fraction_static=0.8)
    pool = int(r["total_bytes"]) * 0.8 - int(r["weights_bytes"])  # type: ignore[call-overload]
    assert int(r["kv_cache_bytes"]) == pytest.approx(pool, rel=0.001)  # type: ignore[call-overload]
    # Llama 3.1 8B: 32 layers x 8 KV heads x 128 x (K, V) x 2 bytes per token
    assert r["kv_bytes_per_token"] == 32 * 8 * 128 * 2 * 2


@pytest.mark.parametrize(("gpu", "fraction", "chunk", "graph_bs"), [
    # server_args.py _handle_gpu_memory_settings, TP 1: reserved MiB = 512 + 1.5 x chunk
    # + 2 x graph_bs + 128, at least 10 GiB above 60 GiB
    ("4090", round(1 - (512 + 1.5 * 2048 + 2 * 24 + 128) / (24 * 1024), 3), 2048, 24),
    ("l40s", round(1 - (512 + 1.5 * 4096 + 2 * 32 + 128) / (45 * 1024), 3), 4096, 32),
    ("h100", round(1 - (512 + 1.5 * 8192 + 2 * 256 + 128) / (80 * 1024), 3), 8192, 256),
])
def test_default_fraction_follows_the_gpu(gpu: str, fraction: float, chunk: int,
                                          graph_bs: int) -> None:
    r = sglang("llama-3.2-1b", gpu)
    assert (r["mem_fraction_static"], r["chunked_prefill_size"], r["cuda_graph_max_bs"]) == \
        (fraction, chunk, graph_bs)


def test_before_pr_10975_the_fraction_followed_the_tp_size() -> None:
    assert sglang("llama-3.1-8b", "h100", version="0.4.6")["mem_fraction_static"] == 0.88
    assert sglang("llama-3.1-70b", "h100", num_gpus=4, version="0.4.6")[
        "mem_fraction_static"] == 0.85


def test_weights_beyond_the_static_share_refuse_to_start() -> None:
    est = vramest.estimate(model="llama-3.1-70b", dtype="bf16", gpu="h100", engine="sglang")
    report = est.engine_report
    assert report is not None and report.to_json()["starts"] is False
    assert any("increase --mem-fraction-static" in line for line in report.log_lines())
    assert est.fit is not None and not est.fit.fits
    # two H100s hold the weights (66 GiB each) but not inside the default static share
    # (0.834 of 76 GiB); four do
    started = vramest.estimate(model="llama-3.1-70b", dtype="bf16", gpu="h100", num_gpus=4,
                               engine="sglang")
    assert started.fit is not None and started.fit.fits


def test_mla_pool_counts_the_latent_once_per_rank() -> None:
    r = sglang("deepseek-v2-lite", "h100", num_gpus=2)
    # 27 layers x (kv_lora_rank 512 + rope 64) x 2 bytes, not split by TP
    assert r["kv_bytes_per_token"] == 27 * (512 + 64) * 2


def test_fp8_cache_doubles_the_tokens() -> None:
    bf16 = sglang("llama-3.1-8b", "h100")
    fp8 = sglang("llama-3.1-8b", "h100", kv_cache_dtype="fp8")
    assert int(fp8["max_total_num_tokens"]) == pytest.approx(  # type: ignore[call-overload]
        2 * int(bf16["max_total_num_tokens"]), rel=0.001)  # type: ignore[call-overload]


def test_needs_a_gpu_and_known_options() -> None:
    with pytest.raises(InputError, match="needs --gpu"):
        vramest.estimate(model="llama-3.1-8b", engine="sglang")
    with pytest.raises(InputError, match="mem_fraction_static"):
        sglang("llama-3.1-8b", "h100", mem_fraction_static=1.5)


def test_the_fit_counts_the_request_in_the_pool_not_the_full_gpu() -> None:
    # SGLang fills the GPU whenever it starts; the verdict is whether the pool holds ctx x batch
    est = vramest.estimate(model="meta-llama/Llama-3.1-8B", engine="sglang", gpu="h100",
                           ctx=4096)
    report = est.engine_report.to_json()  # type: ignore[union-attr]
    need = 4096 * report["kv_bytes_per_token"]
    assert est.fit.verdict == "fits"  # type: ignore[union-attr]
    left = est.fit.headroom_bytes - (report["kv_cache_bytes"] - need)  # type: ignore[union-attr]
    assert 0 <= left < report["kv_bytes_per_token"]  # the pool is whole tokens
    long = vramest.estimate(model="meta-llama/Llama-3.1-8B", engine="sglang", gpu="rtx 4090",
                            ctx="128k", batch=4)
    assert long.engine_report.to_json()["starts"]  # type: ignore[union-attr]
    assert long.fit.verdict == "does-not-fit"  # type: ignore[union-attr]


def test_sglang_refuses_tensor_parallel_over_unbalanced_gpus() -> None:
    """SGLang checks every rank's free memory against 0.9 × its own (model_runner.py
    init_torch_distributed): an A4000 16GB + RTX 3090 24GB refuses, as users of both
    reported (sglang#1533), where two cards within 10% of each other start."""
    kw = dict(model="qwen2.5-7b", engine="sglang")
    unbalanced = vramest.estimate(gpu="rtx a4000,rtx 3090", **kw)
    assert unbalanced.fit is not None and not unbalanced.fit.fits
    assert "unbalanced" in unbalanced.fit.refused
    assert "--engine vllm" in unbalanced.fit.advice[0]
    close = vramest.estimate(gpu="rtx 3090,rtx 3090 ti", **kw)
    assert close.fit is not None and close.fit.fits and not close.fit.refused
    old = vramest.estimate(gpu="rtx a4000,rtx 3090", engine_options={"version": "0.2.13"}, **kw)
    assert old.fit is not None and not old.fit.refused
