"""Engine rules by release, checked against the start-up logs in tests/data/engines/logs.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import vramest
from vramest.errors import InputError
from vramest.hardware.database import default_hardware
from vramest.inference.engines.startup import (
    LlamaCppOptions,
    VLLMOptions,
    llamacpp_startup,
    vllm_startup,
)
from vramest.inference.engines.versions import DEFAULTS, parse_version, vllm_rules

GIB, MIB = 2**30, 2**20
LOGS = Path(__file__).parent / "data" / "engines" / "logs.csv"


def _log(record: str, metric: str) -> float:
    with LOGS.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["record_id"] == record and row["metric"] == metric:
                assert row["source"].startswith("https://")
                return float(row["value"])
    raise KeyError((record, metric))


H100_TOTAL = int(79.19 * GIB)  # what torch reports for an 80 GB H100 (vLLM logs: 79.19-79.22)


def _gpt_oss(version: str, **options: object):  # type: ignore[no-untyped-def]
    est = vramest.estimate(model="openai/gpt-oss-120b")
    opts = VLLMOptions(version=version, total_memory_bytes=H100_TOTAL, **options)  # type: ignore[arg-type]
    return vllm_startup(est, default_hardware().find("h100"), 1, opts)


def _available(report) -> float:  # type: ignore[no-untyped-def]
    return (report.budget_bytes - report.weights_bytes - report.non_torch_bytes
            - report.activation_peak_bytes - report.cuda_graph_bytes) / GIB


def test_gpt_oss_weights_as_the_mxfp4_kernel_holds_them() -> None:
    # Marlin pads experts to 2944 x 3072 (0.10.1 on H100); triton_kernels pads the planes
    marlin = _gpt_oss("0.10.1").weights_bytes / GIB
    triton = _gpt_oss("0.14.1").weights_bytes / GIB
    assert marlin == pytest.approx(_log("vllm-23278-gptoss120b-h100", "weights_loaded"), rel=0.005)
    assert triton == pytest.approx(_log("vllm-33155-gptoss120b-h100", "weights_loaded"), rel=0.01)
    stored = vramest.estimate(model="openai/gpt-oss-120b").memory.weights.bytes / GIB
    assert stored < triton < marlin  # the checkpoint's own bytes are 4-5 GiB below both


def test_gpt_oss_on_one_h100_is_refused_as_vllm_refused() -> None:
    old = _gpt_oss("0.10.1")
    assert _available(old) == pytest.approx(_log("vllm-23278-gptoss120b-h100",
                                                 "available_kv_cache"), abs=0.6)
    assert not old.starts
    tight = _gpt_oss("0.11.0", gpu_memory_utilization=0.95, max_num_batched_tokens=1024)
    assert _available(tight) == pytest.approx(_log("vllm-27508-gptoss120b-h100",
                                                   "available_kv_cache"), abs=0.6)
    assert tight.starts == bool(_log("vllm-27508-gptoss120b-h100", "starts"))
    assert 0 < tight.largest_model_len < 131072  # a shorter max_model_len would start


def test_hybrid_kv_needs_the_window_only_for_sliding_layers() -> None:
    est = vramest.estimate(model="openai/gpt-oss-120b")
    h200 = default_hardware().find("h200")
    hybrid = vllm_startup(est, h200, 1, VLLMOptions(version="0.10.1"))
    before = vllm_startup(est, h200, 1, VLLMOptions(version="0.9.2"))
    # 18 full + 18 sliding layers (window 128): a 131,072-token request needs 8192 blocks in
    # each full layer, cdiv(127 + 8192 batched tokens, 16) + 1 = 521 in each sliding one
    assert hybrid.max_num_batched_tokens == 8192
    assert hybrid.request_bytes / before.request_bytes == pytest.approx((8192 + 521) / 16384)
    # the token count vLLM prints divides the pool by every layer in both
    assert hybrid.kv_bytes_per_token == before.kv_bytes_per_token


def test_tp_non_torch_memory_by_release() -> None:
    """0.7 at TP 2 (two RTX 4090s): 0.25 GiB non-torch per rank, where the dev build of PR
    #10511 logged 3.58; the whole 0.7.2 start-up of vLLM issue #13061."""
    est = vramest.estimate(model="Qwen/Qwen2.5-14B")  # R1-Distill-Qwen-14B's shape
    # the log's budget: 23.08 GiB per GPU = 0.98 × 23.55 GiB
    report = vllm_startup(est, default_hardware().find("4090"), 2,
                          VLLMOptions(version="0.7.2", gpu_memory_utilization=0.98,
                                      total_memory_bytes=int(23.55 * GIB)))
    record = "vllm-13061-r1-qwen14b-2x4090"
    assert report.non_torch_bytes / GIB == pytest.approx(_log(record, "non_torch_memory"),
                                                         abs=0.06)
    # 0.7.2 profiles chunks of 2048 tokens (PR #10544); the 0.19 GiB logged is below the
    # sampler's 6 B per logit over 256 x 152,064 alone, so the rank that logged it is not
    # known to sample: the activation figure is held loosely, the KV it leaves tightly
    assert report.max_num_batched_tokens == 2048
    assert report.activation_peak_bytes / GIB == pytest.approx(
        _log(record, "activation_peak"), abs=0.15)
    assert report.weights_bytes / GIB == pytest.approx(_log(record, "weights_loaded"), rel=0.02)
    assert report.kv_cache_bytes / GIB == pytest.approx(_log(record, "kv_cache_size"), rel=0.015)
    assert report.starts == bool(_log(record, "starts"))
    old = vllm_startup(est, default_hardware().find("4090"), 2, VLLMOptions(version="0.6.4"))
    assert old.non_torch_bytes - report.non_torch_bytes > GIB


def test_cuda_graphs_budgeted_only_from_0_21() -> None:
    est = vramest.estimate(model="meta-llama/Llama-3.1-8B")
    h100 = default_hardware().find("h100")
    assert vllm_startup(est, h100, 1, VLLMOptions(version="0.20.0")).cuda_graph_bytes == 0
    assert vllm_startup(est, h100, 1, VLLMOptions(version="0.21.0")).cuda_graph_bytes > 0
    assert vllm_startup(est, h100, 1, VLLMOptions(version="0.21.0", enforce_eager=True)
                        ).cuda_graph_bytes == 0


def test_v0_profiles_the_whole_prompt_v1_chunks() -> None:
    est = vramest.estimate(model="meta-llama/Llama-3.1-8B")
    l40s = default_hardware().find("l40s")
    v0 = vllm_startup(est, l40s, 1, VLLMOptions(version="0.5.4", max_model_len=20000))
    v1 = vllm_startup(est, l40s, 1, VLLMOptions(version="0.10.1", max_model_len=20000))
    assert (v0.max_num_batched_tokens, v1.max_num_batched_tokens) == (20000, 2048)
    long = vllm_startup(est, l40s, 1, VLLMOptions(version="0.6.3", max_model_len=65536))
    assert long.max_num_batched_tokens == 512  # V0 chunks past 32k tokens


def test_llamacpp_swa_cache_cells_from_its_code() -> None:
    est = vramest.estimate(model="openai/gpt-oss-120b", ctx=131072, batch=2)
    report = llamacpp_startup(est, LlamaCppOptions(n_ubatch=1024, cache_type_k="f16",
                                                   cache_type_v="f16", version="b6500"))
    record = "ollama-16480-gptoss120b-kv"
    assert report.n_ctx == 262144 and report.swa_cells == _log(record, "swa_cells")
    expected = _log(record, "kv_full_layers") + _log(record, "kv_swa_layers")
    assert report.kv_cache_bytes / MIB == pytest.approx(expected, abs=0.01)
    before = llamacpp_startup(est, LlamaCppOptions(n_ubatch=1024, version="b5000"))
    assert before.kv_cache_bytes == 2 * _log(record, "kv_full_layers") * MIB  # no SWA cache


def test_llamacpp_splits_layers_over_gpus() -> None:
    est = vramest.estimate(model="Qwen/Qwen2.5-72B", dtype="q3_k_m", ctx=32768,
                           num_kv_heads=64, intermediate_size=24576)  # Qwen1.5-72B's shape
    report = llamacpp_startup(est, LlamaCppOptions(n_gpus=2, version="b2600"))
    record = "xinference-1202-qwen1.5-72b-2gpu"
    assert report.model_buffer_host_bytes / MIB == pytest.approx(
        _log(record, "model_buffer_host"), abs=0.01)
    cuda0, cuda1 = report.devices
    measured = _log(record, "model_buffer_cuda0") / (
        _log(record, "model_buffer_cuda0") + _log(record, "model_buffer_cuda1"))
    assert cuda0.model_bytes / (cuda0.model_bytes + cuda1.model_bytes) == pytest.approx(
        measured, abs=0.005)
    assert cuda0.kv_bytes / MIB == _log(record, "kv_cuda0")  # 41 layers x 1024 MiB


def test_two_3090ti_hold_qwen25_32b_q8_0_by_layers() -> None:
    est = vramest.estimate(model="qwen2.5-32b", dtype="q8_0", ctx=8192, gpu="rtx 3090 ti",
                           num_gpus=2, engine="llamacpp")
    assert est.fit is not None and est.fit.fits
    assert sum(d.layers for d in est.engine_report.devices) == 64  # type: ignore[union-attr]
    assert est.fit.per_gpu.weights < est.memory.weights.bytes * 0.55


def test_one_kv_precision_everywhere() -> None:
    est = vramest.estimate(model="qwen2.5-32b", dtype="q8_0", ctx=16384, kv_dtype="q8_0",
                           gpu="rtx 3090 ti", num_gpus=2, engine="llamacpp")
    report = est.engine_report
    assert report.kv_cache_bytes == est.memory.kv_cache.bytes  # type: ignore[union-attr]
    assert est.fit.per_gpu.kv_cache == max(d.kv_bytes for d in report.devices)  # type: ignore


def test_batch_is_n_parallel_with_n_ctx_the_total() -> None:
    est = vramest.estimate(model="qwen2.5-7b", dtype="q4_k_m", ctx=4096, batch=4)
    report = llamacpp_startup(est)
    assert (report.n_parallel, report.n_ctx) == (4, 16384)
    assert report.kv_cache_bytes == est.memory.kv_cache.bytes


def test_advice_when_a_moe_does_not_fit() -> None:
    est = vramest.estimate(model="openai/gpt-oss-120b", ctx=8192, gpu="4090", engine="llamacpp",
                           engine_options={"version": "b6500"})
    notes = " ".join(est.engine_report.notes)  # type: ignore[union-attr]
    assert "-ngl" in notes and "--n-cpu-moe" in notes
    assert est.fit is not None and not est.fit.fits


def test_recent_llamacpp_fits_itself_experts_first() -> None:
    """-fit on (default from about b7100): the experts overflow to the host and it starts.
    The gpt-oss-120b run of llama.cpp issue #15253 (b6132) kept 33 of 36 layers' experts on a
    12 GB RTX 3080 Ti at 32k tokens with --n-cpu-moe 33."""
    est = vramest.estimate(model="openai/gpt-oss-120b", ctx=32000, gpu="rtx 3080 ti",
                           engine="llamacpp", engine_options={"n_ubatch": 1024})
    report = est.engine_report
    assert est.fit is not None and est.fit.fits
    assert report.gpu_layers == 36  # type: ignore[union-attr]
    assert "experts of the first" in " ".join(report.notes)  # type: ignore[union-attr]
    cpu_moe = int(report.notes[0].split("first ")[1].split(" ")[0])  # type: ignore[union-attr]
    assert 30 <= cpu_moe <= 33  # the fewest that fit: at most the 33 that ran


def test_hf_counts_the_whole_prompt_of_sliding_layers() -> None:
    import json

    trace = json.loads((Path(__file__).parents[1] / "vramest" / "validation" / "traces" /
                        "mistralai__Mistral-7B-v0.1.json").read_text())
    row = next(t for t in trace["traces"] if t["settings"]["ctx"] == 16384 and
               t["settings"]["batch"] == 1 and t["settings"]["prefill_chunk"] == 16384)
    est = vramest.estimate(model="mistralai/Mistral-7B-v0.1", ctx=16384, engine="hf",
                           gpu="h100")
    report = est.engine_report
    held = est.memory.kv_cache.bytes + report.window_kv_extra_bytes  # type: ignore[union-attr]
    assert held == pytest.approx(row["phases"]["prefill"]["kv_cache_bytes"], rel=0.001)
    assert any("whole last prefill chunk" in a for a in est.assumptions)


def test_json_names_the_engine_version() -> None:
    est = vramest.estimate(model="qwen2.5-7b", gpu="h100", engine="vllm",
                           engine_options={"version": "vllm==0.6.3"})
    assert est.to_json()["engine"]["version"] == "vllm==0.6.3"
    default = vramest.estimate(model="qwen2.5-7b", gpu="h100", engine="vllm")
    assert default.to_json()["engine"]["version"] == f"vllm=={DEFAULTS['vllm']}"


@pytest.mark.parametrize(("text", "shown"), [("0.6.3.post1", "vllm==0.6.3"),
                                             ("v0.10.1", "vllm==0.10.1"),
                                             ("vllm==0.10.1rc1", "vllm==0.10.1"),
                                             ("0.10.1.dev680+g1234", "vllm==0.10.1")])
def test_release_spellings(text: str, shown: str) -> None:
    assert parse_version("vllm", text).text == shown
    assert parse_version("llamacpp", "llama.cpp==b5300").text == "llamacpp==b5300"


@pytest.mark.parametrize("bad", ["vllm==x", "sglang==0.4", "llamacpp==b12x", 3])
def test_bad_versions_get_one_sentence(bad: object) -> None:
    with pytest.raises(InputError):
        parse_version("vllm", bad)


@given(st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)))
def test_every_release_has_exactly_one_rule_row(parts: tuple[int, int, int]) -> None:
    version = parse_version("vllm", ".".join(map(str, parts)))
    rules = vllm_rules(version)
    assert rules.since <= version.release


def test_kv_tokens_per_gib_at_tp4_with_4_kv_heads() -> None:
    """Qwen3-235B: 4 KV heads over 4 ranks, one head per rank: the tokens a GiB of KV holds."""
    est = vramest.estimate(model="Qwen/Qwen3-235B-A22B", dtype="fp8")
    report = vllm_startup(est, default_hardware().find("h100"), 4,
                          VLLMOptions(version="0.10.0", total_memory_bytes=H100_TOTAL))
    record = "vllm-21348-qwen3-235b-fp8-tp4"
    measured = _log(record, "kv_cache_tokens") / _log(record, "available_kv_cache")
    assert GIB / report.kv_bytes_per_token == pytest.approx(measured, rel=0.02)


def test_awq_refused_when_tp_splits_a_group() -> None:
    """An intermediate of 29568 (Qwen2.5-72B) over 2 or 4 ranks cuts 128-weight groups."""
    h100 = default_hardware().find("h100")
    assert not _log("vllm-13980-qwen25vl-72b-awq", "starts")
    for width, tp, starts in ((29568, 4, False), (29568, 2, False), (29696, 4, True)):
        est = vramest.estimate(model="Qwen/Qwen2.5-72B", dtype="awq-int4",
                               intermediate_size=width)
        report = vllm_startup(est, h100, tp, VLLMOptions(max_model_len=4096))
        assert (report.refusal == "") == starts
    placed = vramest.estimate(model="Qwen/Qwen2.5-72B", dtype="awq-int4", gpu="h100",
                              num_gpus=4, engine="vllm",
                              engine_options={"max_model_len": 4096})
    assert placed.fit is not None and not placed.fit.fits
    assert "not a whole number" in placed.to_json()["fit"]["refused"]


def test_a_group_refusal_says_what_loads_instead() -> None:
    """vLLM refused Qwen2.5-VL-72B AWQ at TP 4 (vllm#13980, logged above): the ways out are
    pipeline stages and Qwen's own AWQ release, whose MLP is padded to 29696 for TP; another
    doubling of TP (8) cuts the groups as well, so it is not offered."""
    placed = vramest.estimate(model="Qwen/Qwen2.5-72B", dtype="awq-int4", gpu="h100",
                              num_gpus=4, engine="vllm", engine_options={"max_model_len": 4096})
    assert placed.fit is not None
    advice = " | ".join(placed.fit.advice)
    assert "--pp 4" in advice and "Qwen/Qwen2.5-72B-Instruct-AWQ" in advice
    assert "--num-gpus 8" not in advice
    padded = vramest.estimate(model="Qwen/Qwen2.5-72B-Instruct-AWQ", gpu="h100", num_gpus=4,
                              engine="vllm", engine_options={"max_model_len": 4096})
    assert padded.fit is not None and not padded.to_json()["fit"].get("refused")


def test_qwens_own_72b_gptq_release_splits_four_ways() -> None:
    """Qwen's GPTQ releases of Qwen2-72B-Instruct pad the MLP with zeros to 29696 "so that its
    size is divisible by 128 * 8" (QwenLM/Qwen3 #578): Qwen2-72B-Instruct-GPTQ-Int4 started at
    TP 4 on 4x A100 40GB (QwenLM/Qwen3 #603, real case vllm-qwen603-4xa100-40g-qwen2-72b-gptq-tp4),
    while a GPTQ made from the 29568-wide model did not start on 4x RTX 4090 (QwenLM/Qwen3 #774)."""
    own = vramest.estimate(model="Qwen/Qwen2-72B-Instruct-GPTQ-Int4", gpu="a100 sxm4 40gb",
                           num_gpus=4, engine="vllm",
                           engine_options={"max_model_len": 32768, "enforce_eager": True})
    assert own.fit is not None and own.fit.fits
    assert not own.to_json()["fit"].get("refused")
    self_made = vramest.estimate(model="Qwen/Qwen2-72B-Instruct", dtype="gptq-int4",
                                 gpu="rtx 4090", num_gpus=4, engine="vllm")
    assert "not a whole number" in self_made.to_json()["fit"]["refused"]


def test_qwens_own_72b_vl_awq_release_splits_two_ways() -> None:
    """Qwen padded its AWQ release of Qwen2-VL-72B-Instruct's MLP to 29696 'to make sure quantized
    model can use 8 tensor-parallel in vllm' (commit 688e28d): vLLM 0.7.2 started it at TP 2 on
    2x A800 (vLLM #13640, real case vllm-13640-2xa800-qwen2-vl-72b-awq-tp2), while in the same
    thread the 29568-wide Qwen2.5-VL-72B-Instruct-AWQ was refused at TP 2 ('input_size_per_partition
    = 14784 is not divisible by min_thread_k = 128')."""
    options = {"version": "0.7.2", "gpu_memory_utilization": 0.9, "max_model_len": 32768}
    own = vramest.estimate(model="Qwen/Qwen2-VL-72B-Instruct-AWQ", gpu="a800 sxm4 80gb",
                           num_gpus=2, engine="vllm", engine_options=options)
    assert own.fit is not None and own.fit.fits
    assert not own.to_json()["fit"].get("refused")
    unpadded = vramest.estimate(model="Qwen/Qwen2.5-VL-72B-Instruct", dtype="awq-int4",
                                gpu="a800 sxm4 80gb", num_gpus=2, engine="vllm",
                                engine_options=options)
    assert "not a whole number" in unpadded.to_json()["fit"]["refused"]


def test_cache_type_flags_are_the_kv_dtype(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from vramest.cli import main

    assert main(["--model", "qwen2.5-7b", "--dtype", "q4_k_m", "--engine", "llamacpp",
                 "-ctk", "q8_0", "-ctv", "q8_0", "--gpu", "4090", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["memory"]["kv_cache"] == data["engine"]["kv_cache_bytes"] == \
        data["fit"]["per_gpu"]["kv_cache"]
    assert data["engine"]["version"].startswith("llamacpp==b")


def test_quantization_needs_a_capable_gpu() -> None:
    db = default_hardware()
    oss = vramest.estimate(model="openai/gpt-oss-20b")
    t4 = vllm_startup(oss, db.find("t4"), 1, VLLMOptions(max_model_len=4096))
    assert not t4.starts and not _log("vllm-22288-gptoss-sm75", "starts")
    assert "7.5" in t4.refusal
    assert vllm_startup(oss, db.find("rtx 3090"), 1, VLLMOptions(max_model_len=4096)).refusal == ""
    fp8 = vramest.estimate(model="meta-llama/Llama-3.1-8B", dtype="fp8")
    old = vllm_startup(fp8, db.find("rtx 3090"), 1, VLLMOptions(version="0.4.1",
                                                               max_model_len=4096))
    assert not old.starts and not _log("vllm-4327-fp8-sm86", "starts")
    new = vllm_startup(fp8, db.find("rtx 3090"), 1, VLLMOptions(version="0.6.3",
                                                               max_model_len=4096))
    assert new.refusal == ""


def test_no_length_check_before_0_2_7() -> None:
    """CodeLlama-13B AWQ on an L4: 16k tokens need more KV than is left, yet 0.2.1 started
    (it checked nothing until PR #2163); 0.2.7 refuses the same setup."""
    est = vramest.estimate(model="TheBloke/CodeLlama-13B-AWQ")
    l4 = default_hardware().find("l4")
    old = vllm_startup(est, l4, 1, VLLMOptions(version="0.2.1"))
    assert old.starts == bool(_log("vllm-1472-l4-codellama13b-awq", "starts"))
    assert old.kv_cache_tokens < old.max_model_len
    assert not vllm_startup(est, l4, 1, VLLMOptions(version="0.2.7")).starts


def test_llamacpp_kv_follows_the_layer_split() -> None:
    """A 40-layer model (8 KV heads × 128) over two GPUs at 150,272 cells: 21 and 19 layers'
    KV (the output head counts as a 41st slot of the split)."""
    est = vramest.estimate(model="qwen3-14b", dtype="q4_k_m", ctx=150272)
    report = llamacpp_startup(est, LlamaCppOptions(n_gpus=2, version="b6900"))
    record = "llamacpp-16748-2gpu-kv-split"
    assert [d.kv_bytes / MIB for d in report.devices] == [_log(record, "kv_cuda0"),
                                                         _log(record, "kv_cuda1")]


def test_transformers_4_quantizes_mixtral_experts_and_5_keeps_them_16_bit() -> None:
    # h2ogpt#1274 (transformers 4.36): Mixtral-8x7B with load_in_4bit "using about 30GB VRAM"
    # on an A6000, read off nvidia-smi once loaded
    def loaded(version: str | None) -> int:
        est = vramest.estimate(model="mistralai/Mixtral-8x7B-Instruct-v0.1", dtype="nf4",
                               engine="hf", gpu="rtx a6000",
                               engine_options=None if version is None else {"version": version})
        report = est.engine_report.to_json()  # type: ignore[union-attr]
        assert report["version"] == ("transformers==5.23.0" if version is None else
                                     f"transformers=={version}")
        return int(report["loading_peak_bytes"])

    old = loaded("4.36")
    assert abs(old / 30e9 - 1) < 0.15
    assert loaded(None) > 2 * old  # experts fused into 3-D parameters stay bf16 from 5.0


def test_a_transformers_release_for_another_engine_is_refused() -> None:
    assert parse_version("hf", "transformers==4.46").text == "transformers==4.46"
    with pytest.raises(InputError, match="names transformers, but the engine is vllm"):
        parse_version("vllm", "transformers==4.46")


def test_transformers_4_loads_float32_unless_told_and_5_the_checkpoint_dtype() -> None:
    def weights(**kwargs: object) -> int:
        est = vramest.estimate(model="meta-llama/Llama-3.1-8B", engine="hf", **kwargs)  # type: ignore[arg-type]
        return est.memory.weights.bytes

    v4 = {"engine_options": {"version": "transformers==4.46"}}
    assert weights(**v4) == 2 * weights()  # fp32 in 4.x; the checkpoint's bf16 from 5.0
    assert weights(dtype="bf16", **v4) == weights()  # torch_dtype given: as asked
    gptq = vramest.estimate(model="TheBloke/Llama-2-7B-GPTQ", engine="hf", **v4)  # type: ignore[arg-type]
    assert gptq.settings.dtype.startswith("gptq")  # a quantized checkpoint keeps its format


def test_v0_pipeline_stages_split_the_blocks_between_virtual_engines() -> None:
    """vLLM issue #14452 (V0, QwQ-32B bnb-4bit, PP 2 on two RTX 5090s, utilization 0.85):
    "max seq len (60000) is larger than the maximum number of tokens that can be stored in KV
    cache (58384)" - V0 checks block_size x (num_gpu_blocks // pp); V1 gives one request all."""
    est = vramest.estimate(model="Qwen/Qwen2.5-32B", dtype="bnb-nf4-dq")
    gpu = default_hardware().find("rtx 5090")
    options = dict(gpu_memory_utilization=0.85, max_model_len=60000)
    v0 = vllm_startup(est, gpu, 1, VLLMOptions(version="v0", **options), pp=2)
    v1 = vllm_startup(est, gpu, 1, VLLMOptions(version="0.9.2", **options), pp=2)
    assert v0.virtual_engines == 2 and v1.virtual_engines == 1
    assert v0.request_token_limit == v0.num_gpu_blocks // 2 * v0.block_size
    assert v1.request_token_limit == v1.kv_cache_tokens
    # without the split the prediction was 2.4x the message's figure; with it within 20%
    assert v0.request_token_limit == pytest.approx(58384, rel=0.2)
    assert v0.largest_model_len <= v0.request_token_limit


def test_dgx_spark_start_up_check_counts_what_the_os_holds() -> None:
    """GB10's unified memory: vLLM reads 121.69 GiB in all ("Free memory on device cuda:0
    (104.46/121.69 GiB) on startup is less than desired GPU memory utilization (0.87, 105.87
    GiB)", public setup notes); vLLM's Nemotron-3-Super recipe needs 0.85 where the default
    0.92 fails at start-up (vllm-project/recipes PR #632)."""
    est = vramest.estimate(model="nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16", dtype="nvfp4")
    spark = default_hardware().find("dgx spark")
    at = {u: vllm_startup(est, spark, 1, VLLMOptions(version="0.21.0", gpu_memory_utilization=u,
                                                      max_model_len=131072, max_num_seqs=4))
          for u in (0.87, 0.85, 0.92)}
    assert at[0.87].budget_bytes / GIB == pytest.approx(105.87, abs=0.01)
    assert not at[0.92].starts and "free memory" in at[0.92].refusal
    assert at[0.85].starts
    # a machine whose OS holds less passes the same check when the user says so
    quiet = vllm_startup(est, spark, 1, VLLMOptions(version="0.21.0", max_model_len=131072,
                                                     max_num_seqs=4, memory_in_use_bytes=7 * GIB))
    assert quiet.starts


def _vulkan(model: str, dtype: str, n_ctx: int, version: str, **extra: object):
    return vramest.estimate(model=model, dtype=dtype, gpu=extra.pop("gpu", "mi60"),
                            engine="llamacpp", profile="none",
                            engine_options={"n_ctx": n_ctx, "version": version,
                                            "backend": "vulkan", **extra})


def test_vulkan_allocates_the_compute_buffer_whole_before_b6646() -> None:
    """llama.cpp issue #11598 (b4615, RADV on an MI60, 32 GB): Qwen2.5-7B Q8_0 starts at
    -c 71000 and fails at 72000 with 16 GB free: the compute buffer (KQ scores plus the mask
    Vulkan copies from the host) crosses the driver's 4 GiB allocation between the two."""
    ok = _vulkan("Qwen/Qwen2.5-7B", "q8_0", 71000, "b4615")
    over = _vulkan("Qwen/Qwen2.5-7B", "q8_0", 72000, "b4615")
    limit = 4 * GIB
    assert ok.engine_report.compute_buffer_gpu_bytes < limit < \
        over.engine_report.compute_buffer_gpu_bytes
    assert ok.fit.fits and not over.fit.fits and "Vulkan" in over.fit.refused
    # ROCm reads the host's mask in place: the same run fits there at 72000
    rocm = vramest.estimate(model="Qwen/Qwen2.5-7B", dtype="q8_0", gpu="mi60", engine="llamacpp",
                            profile="none", engine_options={"n_ctx": 72000, "version": "b4615"})
    assert rocm.fit.fits
    assert over.engine_report.compute_buffer_gpu_bytes - \
        rocm.engine_report.compute_buffer_gpu_bytes == 72000 * 512 * 4
    # from b6646 the allocator splits the buffer; the largest tensor (3.85 GiB of scores) fits
    assert _vulkan("Qwen/Qwen2.5-7B", "q8_0", 72000, "b6646", flash_attn=False).fit.fits


def test_vulkan_compute_buffer_matches_a_strix_halo_log() -> None:
    """llama.cpp issue #15009: Qwen3-30B-A3B at 70000 tokens on Strix Halo under Vulkan,
    "Device memory allocation of size 4757131264 failed"."""
    est = _vulkan("Qwen/Qwen3-30B-A3B", "q8_0", 70000, "b6050", gpu="strix halo")
    assert est.engine_report.compute_buffer_gpu_bytes == pytest.approx(4757131264, rel=0.002)
    assert not est.fit.fits
    # a driver with a 2 GiB cap (AMD's on Windows) refuses smaller contexts too
    small = _vulkan("Qwen/Qwen3-30B-A3B", "q8_0", 35000, "b6050", gpu="strix halo")
    capped = _vulkan("Qwen/Qwen3-30B-A3B", "q8_0", 35000, "b6050", gpu="strix halo",
                     max_allocation_bytes="2GiB")
    assert small.fit.fits and not capped.fit.fits


@pytest.mark.parametrize("bad", ["0", "-1GiB", "lots", True, 1.5])
def test_a_vulkan_allocation_cap_must_be_a_positive_size(bad: object) -> None:
    with pytest.raises(InputError):
        _vulkan("Qwen/Qwen2.5-7B", "q8_0", 4096, "b4615", max_allocation_bytes=bad)


def test_v0_pipeline_verdict_follows_the_one_engine_limit() -> None:
    """The fit verdict and vLLM's own start check agree under V0's virtual engines."""
    for length in (50000, 72000):
        est = vramest.estimate(model="Qwen/Qwen2.5-32B", dtype="bnb-nf4-dq", gpu="rtx 5090",
                               num_gpus=2, pp=2, engine="vllm", profile="none",
                               engine_options={"gpu_memory_utilization": 0.85,
                                               "max_model_len": length, "version": "v0"})
        # issue #14452 ran at 50000 (and was refused at 60000, 58,384 tokens)
        assert est.fit.fits == est.engine_report.starts == (length == 50000)


def test_a_pinned_kv_cache_ignores_the_utilization_and_must_fit_the_card() -> None:
    """--kv-cache-memory-bytes: vLLM logs "reserved ... GiB memory for KV Cache as specified by
    kv_cache_memory_bytes config and skipped memory profiling. This does not respect the
    gpu_memory_utilization config" (v1 gpu_worker.py, PR #21489)."""
    def placed(**options: object) -> vramest.Estimate:
        return vramest.estimate(model="qwen3-8b", gpu="rtx 4090", engine="vllm",
                                engine_options={"max_model_len": 8192, **options})

    low, high = placed(kv_cache_memory_bytes="4GiB", gpu_memory_utilization=0.5), \
        placed(kv_cache_memory_bytes="4GiB", gpu_memory_utilization=0.9)
    assert low.engine_report.num_gpu_blocks == high.engine_report.num_gpu_blocks
    assert low.engine_report.kv_cache_bytes == 4 * 2**30 and low.fit.fits
    too_big = placed(kv_cache_memory_bytes="12GiB")  # 15.3 GiB of weights on a 24 GB card
    assert too_big.fit is not None and not too_big.fit.fits and not too_big.fit.refused
    assert any(a.startswith("--kv-cache-memory-bytes") for a in too_big.fit.advice)
    short = placed(kv_cache_memory_bytes="256MiB")  # under one 8192-token request (1.1 GiB)
    assert short.fit is not None and "pinned cache holds" in short.fit.refused
    with pytest.raises(InputError, match=r"0\.10\.1"):
        placed(kv_cache_memory_bytes="4GiB", version="0.9.2")
