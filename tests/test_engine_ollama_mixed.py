"""--engine ollama over different GPUs of one machine: Ollama's choice of GPUs and layers per
GPU (engines/ollama_mixed.py), checked against logged splits and against its own invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import vramest
from vramest.errors import InputError
from vramest.inference.engines.ollama_mixed import Sizes, estimator_counts, layout_counts
from vramest.units import GIB, MIB


def test_the_estimator_deals_101_layers_26_25_25_25_over_four_cards() -> None:
    """ollama/ollama#12010 (0.11.4, 4x 22 GB, llama3.2-vision:90b, 101 layers): "layer-split
    (with 0.11.4): 26,25,25,25": the 100 blocks dealt in turn, the output layer to the first."""
    sizes = Sizes(block=550 * MIB, output=2 * GIB, graph=2 * GIB, reserve=1100 * MIB)
    assert estimator_counts([22 * GIB] * 4, 100, sizes) == (26, 25, 25, 25)


def test_gemma3_fp16s_output_layer_stays_off_two_5090s_named_one_by_one() -> None:
    """ollama/ollama#11162 (0.9.2): gemma3:27b-it-fp16 on two RTX 5090s logged
    layers.offload=62 of 63, layers.split=31,31; the same two cards named in --gpu as a list
    go through this placement and must give the logged split."""
    est = vramest.estimate(model="google/gemma-3-27b-it", dtype="f16", gpu="5090,5090",
                           engine="ollama", engine_options={"version": "0.9.2"}, profile="none")
    report = est.engine_report
    assert (report.offloaded, report.layers_total) == (62, 63)  # type: ignore[union-attr]
    assert [d.layers for d in report.buffers.devices] == [31, 31]  # type: ignore[union-attr]



def test_the_last_layer_weighs_the_output_the_tower_and_its_graph_once() -> None:
    """ollama/ollama#11819 (0.11.x, gemma3:12b Q4_K_M, num_ctx 2048) logged
    memory.weights.nonrepeating="787.5 MiB" projector.weights="795.9 MiB"
    projector.graph="1.0 GiB": llm/memory.go memoryLastLayer is their sum, the tower once."""
    from vramest.inference.engines import ollama
    from vramest.inference.engines.ollama_mixed import _sizes
    from vramest.inference.engines.registry import StartupRequest

    est = vramest.estimate(model="google/gemma-3-12b-it", dtype="q4_k_m", profile="none")
    version = (0, 11, 4)
    s = ollama.compute(StartupRequest(est, {"version": version, "num_ctx": 2048,
                                            "num_parallel": 1}, None, 1, None))
    logged = (787.5 + 795.9 + 1.0 * 1024) * MIB
    assert _sizes(est, s, version, multi=True).output == pytest.approx(logged, rel=0.02)


@pytest.mark.parametrize(("version", "verdict", "layers"), [
    ("0.11.2", "fits", [11, 10, 4]), ("0.11.3", "does-not-fit", [13, 12])])
def test_gpt_oss_120b_num_gpu_25_over_two_4090s_and_a_4070(version: str, verdict: str,
                                                           layers: list[int]) -> None:
    """ollama/ollama#11744 (gpt-oss:120b, 2x RTX 4090 + RTX 4070, num_ctx 32678, num_gpu 25,
    num_batch 256): "0.11.3 RC - running out of memory", "the same config and same settings on
    0.11.2 runs flawlessly". In 0.11.2 the estimate's partial graph (2 x 12 GiB) leaves no GPU
    room for a layer, so the runner splits the 25 layers over all three cards by free memory;
    0.11.3 halved the graph, the estimate then fits five layers on each 4090 and none on the
    4070, and the 25 layers go to the two 4090s in that ratio."""
    est = vramest.estimate(model="openai/gpt-oss-120b", gpu="rtx 4090,rtx 4090,rtx 4070",
                           engine="ollama", engine_options={"version": version, "num_ctx": 32678,
                                                            "num_gpu": 25, "num_batch": 256},
                           profile="none")
    report = est.engine_report
    assert est.fit is not None and report is not None
    assert [d.layers for d in report.buffers.devices] == layers  # type: ignore[attr-defined]
    assert est.fit.verdict == verdict

budgets = st.lists(st.integers(1 * GIB, 80 * GIB), min_size=1, max_size=4)
size_st = st.builds(Sizes, block=st.integers(50 * MIB, 2 * GIB), output=st.integers(1 * MIB, 3 * GIB),
                    graph=st.integers(0, 4 * GIB), reserve=st.integers(457 * MIB, 3 * GIB))


@given(budgets, st.integers(1, 120), size_st)
def test_no_gpu_is_given_more_than_its_free_memory(free: list[int], blocks: int,
                                                   sizes: Sizes) -> None:
    for counts in (estimator_counts(free, blocks, sizes), layout_counts(free, blocks, sizes)):
        assert len(counts) == len(free) and sum(counts) <= blocks + 1
        for n, budget in zip(counts, free, strict=True):
            if n:  # the blocks it holds (the output layer at most one of them, and no larger)
                held = (n - 1) * sizes.block + min(sizes.block, sizes.output)
                assert sizes.reserve + sizes.graph + held <= budget


@given(budgets, st.integers(1, 120), size_st, st.integers(0, 130))
def test_num_gpu_caps_the_layers_placed(free: list[int], blocks: int, sizes: Sizes,
                                        limit: int) -> None:
    assert sum(estimator_counts(free, blocks, sizes, limit)) <= limit
    assert sum(layout_counts(free, blocks, sizes, limit)) <= limit


@given(st.lists(st.integers(20 * GIB, 80 * GIB), min_size=2, max_size=4), size_st)
def test_the_newer_layout_uses_one_gpu_when_the_largest_holds_every_layer(
        free: list[int], sizes: Sizes) -> None:
    free = sorted(free, reverse=True)
    blocks = 10
    whole = sizes.reserve + sizes.graph + blocks * sizes.block + sizes.output
    counts = layout_counts(free, blocks, sizes)
    if whole <= free[0]:
        assert counts[0] == blocks + 1 and not any(counts[1:])


def _mixed(model: str, gpu: str, **options: object) -> vramest.Estimate:
    return vramest.estimate(model=model, gpu=gpu, engine="ollama", engine_options=options,
                            profile="none")


def test_a_model_that_fits_one_card_uses_only_the_largest() -> None:
    # server/sched.go pickBestFullFitByLibrary (0.11.3): the most free memory first, alone
    est = _mixed("llama-3.1-8b", "rtx 3060 12gb,rtx 3090", version="0.11.3")
    assert est.fit is not None and est.fit.fits
    assert "RTX 3090" in est.fit.device.name
    assert any("Not used by Ollama: NVIDIA GeForce RTX 3060 12GB" in a for a in est.assumptions)


@pytest.mark.parametrize("version", ["0.11.3", "0.13.0", "0.32.15"])
def test_a_70b_over_3090_and_3060_gives_the_3090_more_layers_and_the_rest_to_the_cpu(
        version: str) -> None:
    est = _mixed("llama-3.1-70b", "rtx 3090,rtx 3060 12gb", version=version)
    report = est.engine_report
    assert report is not None and est.fit is not None
    big, small = (d.layers for d in report.buffers.devices)  # type: ignore[attr-defined]
    assert big > small > 0
    assert not est.fit.fits and est.fit.on_host.endswith("of 81 layers")
    lines = [a for a in est.assumptions if a.startswith("CUDA")]
    assert len(lines) == 2 and "headroom" in lines[0]
    assert "ollama/ollama@v" in report.rules[-1]  # type: ignore[attr-defined]


def test_num_ctx_follows_the_gpus_summed_memory() -> None:
    # server/routes.go (0.15.5+): 12 GiB + 12 GiB reach the 23 GiB tier (32k); one 12 GiB card not
    est = _mixed("llama-3.1-8b", "rtx 3060 12gb,rtx 4070")
    assert est.engine_report.num_ctx == 32768  # type: ignore[union-attr]
    one = vramest.estimate(model="llama-3.1-8b", gpu="rtx 3060 12gb", engine="ollama",
                           profile="none")
    assert one.engine_report.num_ctx == 4096  # type: ignore[union-attr]


def test_num_gpu_is_split_in_the_ratio_of_the_estimate() -> None:
    """llm/server.go (0.11.3): num_gpu goes to --n-gpu-layers as given and the estimate's
    counts to --tensor-split (ollama/ollama#11744: 25 layers of gpt-oss-120b on 2x RTX 4090 +
    RTX 4070)."""
    est = _mixed("openai/gpt-oss-120b", "rtx 4090,rtx 4090,rtx 4070", version="0.11.3",
                 num_ctx=32678, num_gpu=25, num_batch=256)
    report = est.engine_report
    assert report.offloaded == 25  # type: ignore[union-attr]
    assert sum(d.layers for d in report.buffers.devices) == 25  # type: ignore[union-attr]


def test_the_advice_is_checked_on_the_same_gpus() -> None:
    est = _mixed("llama-3.1-70b", "rtx 3090,rtx 3090,rtx 3060 12gb", version="0.13.0",
                 num_ctx=32768)
    assert est.fit is not None and not est.fit.fits
    ctx = next(a for a in est.fit.advice if a.startswith("num_ctx "))
    shorter = int(ctx.split()[1])
    again = _mixed("llama-3.1-70b", "rtx 3090,rtx 3090,rtx 3060 12gb", version="0.13.0",
                   num_ctx=shorter)
    assert again.fit is not None and again.fit.fits


def test_an_engine_without_a_mixed_model_still_says_which_do() -> None:
    with pytest.raises(InputError, match="ollama"):
        _mixed_engine("tgi")


def _mixed_engine(engine: str) -> None:
    vramest.estimate(model="llama-3.1-8b", gpu="rtx 3090,rtx 3060 12gb", engine=engine,
                     profile="none")
