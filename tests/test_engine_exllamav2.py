"""--engine exllamav2: the cache modes as exllamav2/cache.py allocates them (at da07facd) and a
public measurement of the three cache types (tests/data/engines/exllamav2_logs.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vramest
from vramest.errors import InputError

CASE = json.loads((Path(__file__).parent / "data/engines/exllamav2_logs.json").read_text()
                  )["cases"][0]
MIB = 2**20


def exl2(model: str, mode: str, seq: int, dtype: str = "fp16") -> dict[str, object]:
    est = vramest.estimate(model=model, dtype=dtype, engine="exllamav2", gpu="4090",
                           engine_options={"cache_mode": mode, "max_seq_len": seq})
    assert est.engine_report is not None
    return est.engine_report.to_json()


def test_cache_modes_differ_as_measured() -> None:
    """The constant parts cancel: only the cache (and its FP16 working layer) differs."""
    seen = CASE["observed_mib"]
    gpu = {m: int(exl2(CASE["model"], m, CASE["max_seq_len"], CASE["dtype"])["gpu_total_bytes"])
           for m in seen}
    # FP8: half the FP16 cache plus one FP16 layer to convert into: 960 MiB less, as measured
    assert (gpu["fp16"] - gpu["fp8"]) / MIB == seen["fp16"] - seen["fp8"]
    # Q4 (values + an fp16 scale per 32): 1408 MiB less here, 1280 measured with the March
    # 2024 build; within 10% of the difference, 1% of the total
    assert (gpu["fp16"] - gpu["q4"]) / MIB == pytest.approx(seen["fp16"] - seen["q4"], rel=0.11)


@pytest.mark.parametrize(("mode", "bytes_per_element"), [
    ("fp16", 2.0), ("q8", 1 + 1 / 16), ("q6", (1.5 + 2 / 16) / 2), ("q4", 0.5 + 1 / 16)])
def test_bytes_per_cached_element(mode: str, bytes_per_element: float) -> None:
    r = exl2("llama-3.1-8b", mode, 32768, "int4")
    elements = 32 * 32768 * 8 * 128 * 2  # layers x tokens x KV width x (K, V)
    assert int(r["cache_bytes"]) == pytest.approx(elements * bytes_per_element)  # type: ignore[call-overload]


def test_embeddings_stay_on_the_cpu() -> None:
    r = exl2("llama-3.1-8b", "q4", 8192, "int4")
    assert int(r["embedding_host_bytes"]) == 128256 * 4096 * 2  # type: ignore[call-overload]


def test_unknown_cache_mode_is_refused() -> None:
    with pytest.raises(InputError, match="cache_mode"):
        exl2("llama-3.1-8b", "q3", 4096)
