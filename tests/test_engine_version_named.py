"""Issue 18: the JSON names the engine release an answer is for, for every engine with its own
start-up accounting."""

from __future__ import annotations

import pytest

from vramest.api import estimate
from vramest.inference.deploy import ACCOUNTED_ENGINES


@pytest.mark.parametrize("engine", ACCOUNTED_ENGINES)
def test_every_accounted_engine_names_its_release(engine: str) -> None:
    est = estimate(model="meta-llama/Llama-3.1-8B", gpu="h100", engine=engine, profile="none")
    assert est.engine_report is not None
    named = est.engine_report.to_json().get("version")
    assert isinstance(named, str) and named


def test_a_release_given_is_the_release_named() -> None:
    est = estimate(model="meta-llama/Llama-3.1-8B", gpu="h100", engine="sglang",
                   engine_options={"version": "0.4.0"}, profile="none")
    assert est.engine_report is not None
    assert est.engine_report.to_json()["version"] == "sglang==0.4.0"


@pytest.mark.parametrize(("engine", "release", "named"), [
    ("tgi", "1.1.0", "1.1.0"), ("sglang", "0.4.0", "sglang==0.4.0"), ("ollama", "0.6.6", "0.6.6")])
def test_engine_version_reaches_every_engine(engine: str, release: str, named: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--engine-version is the one flag for a release: TGI, SGLang and Ollama read it as they
    read --engine-option version=..., and the JSON names it (it was dropped for them)."""
    import json

    from vramest.cli import main

    argv = ["--model", "meta-llama/Llama-3.1-8B", "--gpu", "l4", "--engine", engine, "--json"]
    assert main([*argv, "--engine-version", release]) == 0
    by_flag = json.loads(capsys.readouterr().out)["engine"]
    assert main([*argv, "--engine-option", f"version={release}"]) == 0
    by_option = json.loads(capsys.readouterr().out)["engine"]
    assert by_flag == by_option and by_flag["version"] == named
    assert main([*argv, "--engine-version", release, "--engine-option", "version=9.9.9"]) == 2
    assert "disagree" in capsys.readouterr().err
