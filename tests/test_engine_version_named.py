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
