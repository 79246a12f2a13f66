"""Speed with layers left in system memory (llama.cpp -ngl, --n-cpu-moe, Ollama's partial
offload), against published decode rates and the invariants the mechanism must keep."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.api import estimate
from vramest.cli import main


def _decode(host: str | None = None, **options: object) -> float:
    est = estimate(model="meta-llama/Llama-3.1-8B", dtype="q4_k_m", gpu="3060", ctx=4096,
                   engine="llamacpp", engine_options=options, prompt=512, gen=128,
                   profile="none", host_memory=host)
    assert est.throughput is not None
    return est.throughput.decode_tokens_per_s


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 31))
def test_fewer_layers_on_the_gpu_never_decode_faster(layers: int) -> None:
    assert _decode(n_gpu_layers=layers) <= _decode(n_gpu_layers=layers + 1) * 1.001
    assert _decode(n_gpu_layers=layers) < _decode(n_gpu_layers=99)


def test_every_layer_on_the_gpu_reads_nothing_from_system_memory() -> None:
    est = estimate(model="meta-llama/Llama-3.1-8B", dtype="q4_k_m", gpu="3060",
                   engine="llamacpp", profile="none")
    assert est.throughput is not None
    assert not any("system memory" in note for note in est.throughput.notes)


def test_faster_system_memory_decodes_faster() -> None:
    slow = _decode("CPU DDR4-3200 2-channel", n_gpu_layers=16)
    fast = _decode("CPU DDR5-4800 8-channel", n_gpu_layers=16)
    assert fast > 2 * slow


@pytest.mark.parametrize(("model", "dtype", "gpu", "options", "host", "published", "within"), [
    # evshiron/rocm_lab#13: Llama-2-70B-chat Q5_K_M, 7800X3D + RX 7900 XTX, no -ngl: 1.41 tok/s
    ("meta-llama/Llama-2-70b-hf", "q5_k_m", "rx 7900 xtx", {"n_gpu_layers": 0, "n_ctx": 2048},
     "CPU DDR5-5600 2-channel", 1.41, 0.30),
    # AlexsJones/llmfit#755: Qwen3-30B-A3B Q4_K_M, RTX 2080 + quad-channel DDR4, -ngl 99
    # --n-cpu-moe 36: 36.7 tok/s. The estimate is about half again too fast: each of the 36
    # host expert blocks is a GPU-CPU round trip per token that is not counted.
    ("Qwen/Qwen3-30B-A3B", "q4_k_m", "rtx 2080", {"n_gpu_layers": 99, "n_cpu_moe": 36},
     "CPU DDR4-3200 4-channel", 36.7, 0.60),
])
def test_published_decode_rates_with_host_layers(model: str, dtype: str, gpu: str,
                                                 options: dict[str, object], host: str,
                                                 published: float, within: float) -> None:
    est = estimate(model=model, dtype=dtype, gpu=gpu, ctx=2048, engine="llamacpp",
                   engine_options=options, prompt=200, gen=200, profile="none",
                   host_memory=host)
    assert est.throughput is not None
    assert est.throughput.decode_tokens_per_s == pytest.approx(published, rel=within)


def test_ollama_partial_offload_is_slower_than_the_same_model_on_a_larger_card() -> None:
    def decode(gpu: str) -> float:
        est = estimate(model="Qwen/Qwen3-32B", gpu=gpu, engine="ollama", profile="none")
        assert est.throughput is not None and est.engine_report is not None
        return est.throughput.decode_tokens_per_s

    # the 4090's layers left on the host cost more than the A6000's lower bandwidth
    assert decode("4090") < decode("rtx a6000")


def test_host_memory_must_name_system_memory(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--model", "meta-llama/Llama-3.1-8B", "--gpu", "3060", "--engine", "llamacpp",
                 "-ngl", "10", "--host-memory", "4090"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--host-memory takes a system-memory row" in err



def test_the_fit_says_what_stays_in_system_memory() -> None:
    est = estimate(model="meta-llama/Llama-3.1-8B", dtype="q4_k_m", gpu="3060", engine="llamacpp",
                   engine_options={"n_gpu_layers": 20}, profile="none")
    assert est.fit is not None
    assert est.fit.on_host == "12 of 32 layers"
    assert est.fit.to_json()["in_system_memory"] == "12 of 32 layers"
    whole = estimate(model="meta-llama/Llama-3.1-8B", dtype="q4_k_m", gpu="3060",
                     engine="llamacpp", profile="none")
    assert whole.fit is not None and not whole.fit.on_host
    assert "in_system_memory" not in whole.fit.to_json()


@pytest.mark.parametrize("given", ["", "DDR9 99-channel", "x" * 300])
def test_an_unknown_host_memory_is_one_sentence(given: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--model", "meta-llama/Llama-3.1-8B", "--gpu", "3060", "--engine", "llamacpp",
                 "-ngl", "10", "--host-memory", given])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Unknown --host-memory" in err


def test_a_bad_host_memory_is_refused_even_when_nothing_stays_on_the_host() -> None:
    with pytest.raises(Exception, match="Unknown --host-memory"):
        estimate(model="meta-llama/Llama-3.1-8B", gpu="4090", host_memory="bogus",
                 profile="none")
