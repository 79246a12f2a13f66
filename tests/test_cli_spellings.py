"""A launch command pasted as it is: the engines' own flag spellings mean what they mean there."""

from __future__ import annotations

import json

import pytest

from vramest.cli import main


def answer(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


BASE = ("--model", "meta-llama/Llama-3.1-8B", "--gpu", "a10g", "--engine", "vllm")


@pytest.mark.parametrize(("engine_spelling", "ours"), [
    (("--tensor-parallel-size", "2"), ("--num-gpus", "2")),
    (("-tp", "2", "--pipeline-parallel-size", "2"), ("--num-gpus", "4", "--pp", "2")),
    (("--quantization", "awq", "--dtype", "half"), ("--dtype", "awq-int4")),
    (("--quantization", "fp8"), ("--dtype", "fp8")),
    (("--dtype", "auto"), ()),
    (("--kv-cache-dtype", "fp8"), ("--kv-dtype", "fp8")),
])
def test_vllm_spellings(capsys: pytest.CaptureFixture[str], engine_spelling: tuple[str, ...],
                        ours: tuple[str, ...]) -> None:
    assert answer(capsys, *BASE, *engine_spelling) == answer(capsys, *BASE, *ours)


def test_llamacpp_c_is_the_total_context_over_np(capsys: pytest.CaptureFixture[str]) -> None:
    # llama-server -c 8192 -np 2: two slots of 4096 tokens in one 8192-cell cache
    out = answer(capsys, "--model", "meta-llama/Llama-3.1-8B", "--dtype", "q4_k_m", "--gpu",
                 "rtx 3060", "--engine", "llamacpp", "-c", "8192", "-np", "2")
    engine = out["engine"]
    assert isinstance(engine, dict) and engine["n_ctx"] == 8192 and engine["n_parallel"] == 2
    assert out["settings"]["ctx"] == 4096  # type: ignore[index]


@pytest.mark.parametrize("argv", [
    ("-tp", "2", "--num-gpus", "4"),
    ("--quantization", "int3"),
])
def test_disagreeing_or_unknown_spellings_are_refused(capsys: pytest.CaptureFixture[str],
                                                      argv: tuple[str, ...]) -> None:
    assert main([*BASE, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vramest: ") and err.count("\n") == 1
