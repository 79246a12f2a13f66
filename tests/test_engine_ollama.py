"""--engine ollama: Ollama's defaults by release (ollama/ollama source at each tag) and the
decisions real Ollama logs show (tests/data/engines/ollama_logs.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vramest
from vramest.cli import main
from vramest.errors import InputError

CASES = json.loads((Path(__file__).parent / "data/engines/ollama_logs.json").read_text())["cases"]


def ollama(model: str, gpu: str | None = "4090", dtype: str = "q4_k_m", **options: object
           ) -> dict[str, object]:
    est = vramest.estimate(model=model, dtype=dtype, gpu=gpu, engine="ollama",
                           engine_options=options)
    assert est.engine_report is not None
    return est.engine_report.to_json()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["url"].rsplit("/", 1)[-1])
def test_the_decisions_real_logs_show(case: dict[str, object]) -> None:
    report = ollama(str(case["model"]), str(case["gpu"]), str(case["dtype"]),
                    version=case["version"], **case["settings"])  # type: ignore[arg-type]
    for key, value in case["observed"].items():  # type: ignore[union-attr]
        key = {"n_ubatch": "num_batch"}.get(key, key)
        assert report[key] == value, key


@pytest.mark.parametrize(("version", "num_ctx"), [
    ("0.1.48", 2048), ("0.6.6", 2048), ("0.6.7", 4096), ("0.15.4", 4096)])
def test_default_context_by_release(version: str, num_ctx: int) -> None:
    assert ollama("llama-3.1-8b", version=version)["num_ctx"] == num_ctx


@pytest.mark.parametrize(("gpu", "num_ctx"), [("3060", 4096), ("4090", 32768), ("a6000", 262144),
                                             ("t4", 4096)])
def test_vram_tier_default_from_0_15_5(gpu: str, num_ctx: int) -> None:
    """server/routes.go: >= 47 GiB 256k, >= 23 GiB 32k, else 4k (a T4 shows 15 GiB)."""
    assert ollama("qwen3-8b", gpu, version="0.15.5")["num_ctx"] == min(num_ctx, 40960)
    assert ollama("llama-4-scout", gpu, version="0.20.0")["num_ctx"] == num_ctx


def test_parallel_multiplies_the_context_and_the_kv_cache() -> None:
    one = ollama("llama-3.1-8b", num_ctx=8192)
    four = ollama("llama-3.1-8b", num_ctx=8192, OLLAMA_NUM_PARALLEL=4)
    assert four["context_tokens"] == 4 * 8192
    assert four["kv_cache_bytes"] == 4 * one["kv_cache_bytes"]


def test_auto_parallel_falls_back_to_one_when_it_does_not_fit_whole() -> None:
    # 0.6.x tried 4 parallel contexts first (server/sched.go defaultParallel), then 1
    assert ollama("llama-3.1-8b", "4090", version="0.5.12")["num_parallel"] == 4
    assert ollama("qwen2.5-32b", "4090", version="0.5.12", num_ctx=8192)["num_parallel"] == 1


def test_quantized_kv_needs_flash_attention() -> None:
    off = ollama("llama-3.1-8b", version="0.9.0", OLLAMA_KV_CACHE_TYPE="q8_0")
    on = ollama("llama-3.1-8b", version="0.9.0", OLLAMA_KV_CACHE_TYPE="q8_0",
                OLLAMA_FLASH_ATTENTION="1")
    assert off["kv_cache_type"] == "f16" and on["kv_cache_type"] == "q8_0"
    assert on["kv_cache_bytes"] < 0.6 * off["kv_cache_bytes"]
    pascal = ollama("llama-3.1-8b", "p40", OLLAMA_KV_CACHE_TYPE="q8_0")
    assert pascal["flash_attention"] is False and pascal["kv_cache_type"] == "f16"


def test_flash_attention_defaults_by_release_and_family() -> None:
    assert ollama("qwen3-8b", version="0.12.3")["flash_attention"] is False
    assert ollama("qwen3-8b", version="0.12.4")["flash_attention"] is True
    assert ollama("llama-3.1-8b", version="0.12.4")["flash_attention"] is False
    assert ollama("llama-3.1-8b")["flash_attention"] is True  # llama-server: auto


def test_a_model_too_big_is_split_with_the_cpu() -> None:
    report = ollama("llama-3.1-70b", "4090", num_ctx=4096)
    assert 0 < int(report["layers_offloaded"]) < int(report["layers_total"])  # type: ignore[arg-type]
    assert report["fully_offloaded"] is False
    # partial offload runs, but the model does not fit the card: the verdict says so
    est = vramest.estimate(model="llama-3.1-70b", dtype="q4_k_m", gpu="4090", engine="ollama",
                           engine_options={"num_ctx": 4096})
    assert est.fit is not None and not est.fit.fits
    four = vramest.estimate(model="llama-3.1-70b", dtype="q4_k_m", gpu="4090", num_gpus=4,
                            engine="ollama", engine_options={"num_ctx": 4096})
    assert four.fit is not None and four.fit.fits  # layers split over four cards
    assert four.engine_report is not None
    assert four.engine_report.to_json()["fully_offloaded"] is True


def test_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="Unknown ollama option"):
        ollama("llama-3.1-8b", num_kontext=4)
    with pytest.raises(InputError, match="version"):
        ollama("llama-3.1-8b", version="latest")
    assert main(["--model", "llama-3.1-8b", "--engine", "ollama", "--engine-option", "x"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_cli_prints_and_json_names_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "llama-3.1-8b", "--dtype", "q4_k_m", "--gpu", "3060", "--engine",
                 "ollama", "--engine-option", "OLLAMA_NUM_PARALLEL=2", "--json"]) == 0
    engine = json.loads(capsys.readouterr().out)["engine"]
    assert engine["name"] == "ollama" and engine["version"] == "0.32.15"
    assert engine["num_parallel"] == 2 and engine["context_tokens"] == 2 * engine["num_ctx"]


def test_what_to_change_names_ollamas_own_knobs_and_following_it_fits() -> None:
    """--ctx does not move num_ctx (Ollama picks it by the GPU's memory), so the advice names
    num_ctx itself; the num_ctx it gives then fits whole, the band to spare."""
    import re

    from vramest.api import estimate

    def fit(**options: object) -> tuple[str, tuple[str, ...]]:
        est = estimate(model="Qwen/Qwen3-32B", gpu="4090", engine="ollama", profile="none",
                       engine_options=options or None)
        assert est.fit is not None
        return est.fit.verdict, est.fit.advice

    verdict, advice = fit()
    assert verdict == "does-not-fit"
    assert not any(line.startswith("--ctx") for line in advice)
    advised = next(int(m[1]) for line in advice if (m := re.match(r"num_ctx (\d+) ", line)))
    assert fit(num_ctx=advised)[0] == "fits"
    assert fit(num_ctx=advised + 512)[0] != "fits"


def test_ollama_judges_the_busiest_gpu_with_the_output_layer_on_top() -> None:
    """Ollama's estimator (before 0.12.11) deals the blocks out in turn and adds the output
    layer, with a vision model's graph, to one GPU: that GPU needs more than the average."""
    from vramest.api import estimate

    est = estimate(model="google/gemma-3-27b-it", dtype="f16", gpu="5090", num_gpus=2,
                   engine="ollama", engine_options={"version": "0.9.2"}, profile="none")
    assert est.fit is not None and est.engine_report is not None
    startup = est.engine_report
    busiest = 0
    for report in (startup.full, startup.estimated_full):  # type: ignore[attr-defined]
        # 62 blocks dealt out evenly; the output layer on top of one
        assert [d.layers for d in report.devices] == [31, 31]
        busiest = max(busiest, *(d.total(report.cuda_context_bytes) for d in report.devices))
    assert est.fit.per_gpu.total == busiest  # the estimator's view or llama.cpp's, the larger
    assert any("vision graph" in rule for rule in est.engine_report.rules)  # type: ignore[attr-defined]


def test_num_gpu_given_is_judged_as_given() -> None:
    from vramest.api import estimate

    def verdict(**options: object) -> str:
        est = estimate(model="meta-llama/Llama-3.1-70B", dtype="q4_k_m", gpu="4090",
                       engine="ollama", engine_options=options, profile="none")
        assert est.fit is not None
        return est.fit.verdict

    assert verdict() == "does-not-fit"  # the whole model on one 4090
    assert verdict(num_gpu=20) == "fits"  # the 20 layers asked for


def test_num_gpu_runs_as_llama_cpp_with_its_runtime_and_the_drivers_total() -> None:
    """ollama/ollama#8244 (0.5.4): qwen2.5:7b-instruct-q8_0 on an RTX 2060 SUPER 8GB ran split
    with the CPU by default and all on the GPU with `PARAMETER num_gpu 999`. With num_gpu given
    Ollama passes it to its llama.cpp runner as --n-gpu-layers (llm/server.go): llama.cpp's
    buffers and hold, against the driver's total, decide, as for --engine llamacpp."""
    from vramest.api import estimate
    from vramest.inference.engines.llamacpp_device import RUNTIME_BYTES

    def fit(**options: object):  # type: ignore[no-untyped-def]
        est = estimate(model="Qwen/Qwen2.5-7B-Instruct", dtype="q8_0", gpu="rtx 2060 super",
                       engine="ollama", engine_options={"version": "0.5.4", **options},
                       profile="none")
        assert est.fit is not None
        return est.fit

    forced = fit(num_gpu=999)
    assert forced.fits  # it ran
    assert forced.per_gpu.overhead == RUNTIME_BYTES  # llama.cpp's hold, not the generic 1 GiB
    assert not fit().fits  # Ollama's own placement kept layers on the CPU


def test_ollama_09_keeps_gemma3_27b_fp16s_output_layer_off_two_5090s() -> None:
    """ollama/ollama#11162 (0.9.2): gemma3:27b-it-fp16 on two RTX 5090s logged
    layers.model=63 layers.offload=62 layers.split=31,31: the estimator's partial-offload graph,
    its one-layer buffer and the vision graph leave no room for the output layer."""
    from vramest.api import estimate

    est = estimate(model="google/gemma-3-27b-it", dtype="f16", gpu="5090", num_gpus=2,
                   engine="ollama", engine_options={"version": "0.9.2"}, profile="none")
    report = est.engine_report
    assert report is not None
    assert (report.offloaded, report.layers_total) == (62, 63)  # type: ignore[attr-defined]
    assert [d.layers for d in report.buffers.devices] == [31, 31]  # type: ignore[attr-defined]


def test_the_gpt_oss_graph_ollama_reserves_halved_in_0_11_3() -> None:
    """fs/ggml/ggml.go GraphSize, gpt-oss: partialOffload = 2 x fullOffload in v0.11.2,
    = fullOffload in v0.11.3 (ollama/ollama#11744: the same gpt-oss-120b setup ran on 0.11.2
    and ran out of memory on 0.11.3, its graph now underestimated)."""
    from vramest.api import estimate
    from vramest.inference.engines.ollama import _estimator_graph

    shape = estimate(model="openai/gpt-oss-120b", profile="none").model.shape

    def graph(version: tuple[int, ...]) -> int | None:
        return _estimator_graph(shape, 32768, 512, 1, "f16", 1, version=version)

    before, after = graph((0, 11, 2)), graph((0, 11, 3))
    assert before is not None and after is not None
    assert before == 2 * after


@pytest.mark.parametrize(("num_ctx", "logged_gib"), [(2048, 11.0), (8192, 11.4)])
def test_the_estimator_counts_gemma3s_vision_tower_16_bit(num_ctx: int, logged_gib: float) -> None:
    """ollama/ollama#11819 and #12000 (0.11.x, gemma3:12b Q4_K_M, one RTX 3060, parallel 1)
    logged memory.required.full="11.0 GiB" at --ctx-size 2048 and "11.4 GiB" at 8192, with
    projector.weights="795.9 MiB": the tower is F16 in Ollama's file, whatever the text
    layers' quantization, and stands beside the blocks, not inside them."""
    from vramest.api import estimate
    from vramest.inference.engines.ollama import per_gpu_need

    est = estimate(model="google/gemma-3-12b-it", dtype="q4_k_m", gpu="3060", engine="ollama",
                   engine_options={"version": "0.11.4", "num_ctx": num_ctx, "num_parallel": 1},
                   profile="none")
    report = est.engine_report
    assert report is not None and report.estimated_full is not None  # type: ignore[attr-defined]
    need = per_gpu_need(report.estimated_full) / 2**30  # type: ignore[attr-defined]
    assert abs(need - logged_gib) < 0.05  # the log prints one decimal


def test_gemma3_12b_qat_is_split_with_the_cpu_on_a_3060() -> None:
    """ollama/ollama#10341 (0.6.6, gemma3:12b-it-qat, RTX 3060 12 GB, num_ctx 2048): "ollama
    only runs part of the gemma3:12b-it-qat in vram": the F16 token table counts as the output
    layer, 1.1 GiB more than Q4_K_M's Q6_K one, and the estimate leaves the output layer out."""
    from vramest.api import estimate

    est = estimate(model="google/gemma-3-12b-it", dtype="q4_0-qat", gpu="3060", engine="ollama",
                   engine_options={"version": "0.6.6", "num_ctx": 2048}, profile="none")
    report = est.engine_report
    assert est.fit is not None and report is not None
    assert report.offloaded < report.layers_total  # type: ignore[attr-defined]
    assert est.fit.verdict == "does-not-fit"


def test_the_gpt_oss_graph_counts_every_layer_at_the_whole_context() -> None:
    """ollama/ollama#11982 (0.11.5, gpt-oss:120b, KvSize 75000) logged
    memory.graph.full="13.7 GiB" beside memory.required.kv="2.7 GiB": GraphSize sums its
    kvTotal before the even layers are cut to their window, so the graph is 2 x GQA / 6 of
    all 36 layers at 75000 tokens, not of the windowed 2.7 GiB."""
    from vramest.api import estimate
    from vramest.inference.engines.ollama import _estimator_graph, _estimator_kv

    shape = estimate(model="openai/gpt-oss-120b", profile="none").model.shape
    graph = _estimator_graph(shape, 75000, 512, 1, "f16", 3, version=(0, 11, 5))
    assert graph is not None and abs(graph / 2**30 - 13.7) < 0.05
    assert abs(sum(_estimator_kv(shape, 75000, 512, 1, "f16")) / 2**30 - 2.7) < 0.05


def test_mllama_projector_is_reserved_on_the_first_gpu_before_the_layers() -> None:
    # ollama/ollama#7439: x/llama3.2-vision (Q4_K_M) on an 8 GB RTX 4060 Laptop GPU, Ollama
    # 0.4.0-rc6, n_ctx 2048: "offloaded 17/41 layers to GPU". The projector file's weights and its
    # 4-tile vision graph go on GPU0 before any layer (llm/memory.go gpuZeroOverhead); without
    # them every layer would be placed.
    report = ollama("llama-3.2-11b-vision", "rtx 4060 laptop gpu", version="0.4.0-rc6",
                    num_ctx=2048)
    assert abs(int(report["layers_offloaded"]) - 17) <= 1  # type: ignore[arg-type]
    assert int(report["layers_total"]) == 41  # type: ignore[arg-type]
    # v0.7.0 runs mllama on Ollama's own engine (OllamaEngineRequired): no projector file
    later = ollama("llama-3.2-11b-vision", "rtx 4060 laptop gpu", version="0.7.0", num_ctx=2048)
    assert not any("projector" in str(r) for r in later["rules"])  # type: ignore[union-attr]


def test_the_layer_buffer_is_the_first_blocks_size() -> None:
    # ollama/ollama#8597: deepseek-r1:671b (Q4_K_M) on 10x RTX 3090, Ollama about 0.5.7, num_ctx
    # 2048: "layers.offload=33". The estimator keeps blk.0's size free on each GPU (llm/memory.go
    # "add one layer worth of memory as a buffer"); DeepSeek's blk.0 is a dense layer, a tenth of
    # an MoE one. An average block as the buffer placed 19.
    est = vramest.estimate(model="deepseek-r1", dtype="q4_k_m", gpu="rtx 3090", num_gpus=10,
                           engine="ollama", engine_options={"version": "0.5.7", "num_ctx": 2048})
    assert est.engine_report is not None
    report = est.engine_report.to_json()
    assert int(report["layers_total"]) == 62  # type: ignore[call-overload]
    assert abs(int(report["layers_offloaded"]) - 33) <= 0.15 * 33  # type: ignore[call-overload]


def test_ollama_057_deals_deepseek_r1_from_layer_0_as_its_log_shows() -> None:
    """ollama/ollama#8597 (0.5.7): deepseek-r1:671b on ten RTX 3090s logged
    layers.offload=33 layers.split=4,4,4,3,3,3,3,3,3,3 memory.required.kv=9.5 GiB. EstimateGPULayers
    deals the blocks from layer 0 up, each at its own size: the first three GPUs take one of
    R1's three small dense blocks besides three MoE blocks, the others three MoE blocks."""
    from vramest.inference.engines.ollama import _estimator_kv

    est = vramest.estimate(model="deepseek-ai/DeepSeek-R1", dtype="q4_k_m", gpu="rtx 3090",
                           num_gpus=10, engine="ollama", profile="none",
                           engine_options={"version": "0.5.7", "num_ctx": 2048})
    report = est.engine_report.to_json()  # type: ignore[union-attr]
    assert report["layers_offloaded"] == 33
    assert report["tensor_split"] == [4, 4, 4, 3, 3, 3, 3, 3, 3, 3]
    # GraphSize's KV: every one of the 128 heads its K (192) and V (128) at 2048 tokens, f16
    kv = sum(_estimator_kv(est.model.shape, 2048, 512, 1, "f16"))
    assert round(kv / 2**30, 1) == 9.5


def test_ollama_068_keeps_mistral_small31s_vision_on_the_first_gpu() -> None:
    """ollama/ollama#10615 (0.6.8): mistral-small3.1:24b at num_ctx 65536 on two 24 GB cards
    (23.3 GiB free each) logged layers.offload=37 layers.split=10,27: before 0.7.0 the vision
    weights and graph (projector.graph 8.8 GiB) sit on the first GPU (gpuZeroOverhead), and
    GraphSize has no "mistral3" branch, so its graph is the default GQA x KV / 6."""
    est = vramest.estimate(model="mistralai/Mistral-Small-3.1-24B-Instruct-2503",
                           dtype="q4_k_m", gpu="rtx 3090", num_gpus=2, engine="ollama",
                           profile="none", engine_options={"version": "0.6.8", "num_ctx": 65536})
    report = est.engine_report.to_json()  # type: ignore[union-attr]
    first, second = report["tensor_split"]  # type: ignore[misc]
    assert second == 27
    assert abs(first + second - 37) <= 1  # vramest's 3090 budget: 22.8 GiB, not the 23.3 free
