"""The cards users own (issue 18, item 6): found by the names users type, with the datasheet
figures their sources give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vramest
from vramest.cli import main
from vramest.hardware.database import default_hardware
from vramest.inference.engines.speed import ENGINES
from vramest.inference.throughput import engine_peak

DB = default_hardware()
GIB = 2**30

# what users type -> the row it must find
ALIASES = {
    "p40": "NVIDIA Tesla P40", "tesla p4": "NVIDIA Tesla P4", "p100": "NVIDIA Tesla P100 PCIe 16GB",
    "p100-12gb": "NVIDIA Tesla P100 PCIe 12GB", "p100-sxm2": "NVIDIA Tesla P100 SXM2 16GB",
    "1080ti": "NVIDIA GeForce GTX 1080 Ti", "gtx 1080": "NVIDIA GeForce GTX 1080",
    "1070 ti": "NVIDIA GeForce GTX 1070 Ti", "1070": "NVIDIA GeForce GTX 1070",
    "1060": "NVIDIA GeForce GTX 1060 6GB", "1060 3gb": "NVIDIA GeForce GTX 1060 3GB",
    "1050ti": "NVIDIA GeForce GTX 1050 Ti", "2060": "NVIDIA GeForce RTX 2060",
    "2060 super": "NVIDIA GeForce RTX 2060 SUPER", "2070": "NVIDIA GeForce RTX 2070",
    "2070s": "NVIDIA GeForce RTX 2070 SUPER", "rtx 2080": "NVIDIA GeForce RTX 2080",
    "2080 super": "NVIDIA GeForce RTX 2080 SUPER", "2080ti": "NVIDIA GeForce RTX 2080 Ti",
    "titan rtx": "NVIDIA TITAN RTX", "p4000": "NVIDIA Quadro P4000",
    "quadro p5000": "NVIDIA Quadro P5000", "p6000": "NVIDIA Quadro P6000",
    "a800": "NVIDIA A800 SXM4 80GB", "a800-pcie": "NVIDIA A800 PCIe 80GB",
    "h800": "NVIDIA H800 SXM5 80GB", "h800 pcie": "NVIDIA H800 PCIe 80GB", "h20": "NVIDIA H20",
    "l20": "NVIDIA L20", "7900xtx": "AMD Radeon RX 7900 XTX", "rx 7900 xt": "AMD Radeon RX 7900 XT",
    "9070xt": "AMD Radeon RX 9070 XT", "w7900": "AMD Radeon PRO W7900",
    "orin-agx-64": "NVIDIA Jetson AGX Orin 64GB", "orin-agx-32": "NVIDIA Jetson AGX Orin 32GB",
    "orin nx": "NVIDIA Jetson Orin NX 16GB", "orin-nx-8": "NVIDIA Jetson Orin NX 8GB",
    "a770": "Intel Arc A770 16GB", "arc b580": "Intel Arc B580", "b300": "NVIDIA B300",
    "gb200": "NVIDIA GB200 (per GPU)", "gb300": "NVIDIA GB300 (per GPU)",
    "rtx pro 6000 server": "NVIDIA RTX PRO 6000 Blackwell Server Edition",
    "mi355x": "AMD Instinct MI355X",
}


@pytest.mark.parametrize(("alias", "name"), ALIASES.items())
def test_users_names_find_the_card(alias: str, name: str) -> None:
    device = DB.find(alias)
    assert device.name == name
    assert all(part.strip().startswith("http") for part in device.source.split(" ; "))


@pytest.mark.parametrize("alias", ["p40", "1080ti", "7900xtx", "orin-agx-64"])
def test_gpu_flag_takes_the_alias(alias: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", "7B", "--dtype", "q4_k_m", "--gpu", alias, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["throughput"]["gpu"] == ALIASES[alias]


# (alias, GiB, GB/s, {precision: dense TFLOPS}) as the row's source states them
DATASHEET = [
    ("p40", 24, 346, {"fp32": 12.0, "int8": 47}),  # Tesla P40 datasheet
    ("p4", 8, 192, {"fp32": 5.5, "int8": 22}),  # Tesla P4 datasheet
    ("p100", 16, 732, {"fp32": 9.3, "fp16": 18.7}),  # Tesla P100 PCIe datasheet
    # Turing whitepaper, appendix A (reference clocks): 2080 Ti 13.4 TFLOPS FP32, 107.6 FP16
    # tensor with FP16 accumulate (half with FP32 accumulate), 215.2 INT8 TOPS
    ("2080ti", 11, 616, {"fp32": 13.4, "fp16": 53.8, "int8": 215.2}),
    ("1080ti", 11, 484, {"fp32": 11.3}),
    ("7900xtx", 24, 960, {"fp32": 61.4}),
    ("orin-agx-64", 64, 204.8, {"int8": 85}),  # 170 sparse GPU INT8 TOPS, halved
    ("mi355x", 288, 8000, {"fp16": 2516.6, "fp8": 5033.2}),
    ("h800", 80, 3350, {"bf16": 989.4}),
]


@pytest.mark.parametrize(("alias", "gib", "gbs", "tflops"), DATASHEET)
def test_figures_match_the_datasheets(alias: str, gib: float, gbs: float,
                                      tflops: dict[str, float]) -> None:
    device = DB.find(alias)
    assert device.memory_bytes == gib * GIB
    assert device.bandwidth_bytes_s == pytest.approx(gbs * 1e9)
    table = dict(device.dense_tflops)
    for precision, figure in tflops.items():
        assert table[precision] == pytest.approx(figure, rel=0.01)


def test_tesla_gddr5_cards_keep_ecc_in_band_and_hbm_does_not() -> None:
    assert DB.find("p40").addressable_bytes == 24 * GIB * 15 // 16
    assert DB.find("p100").addressable_bytes == 16 * GIB


def test_unified_memory_offers_less_than_the_module_holds() -> None:
    orin = DB.find("orin-agx-64")
    assert 58 * GIB < orin.addressable_bytes < orin.memory_bytes
    est = vramest.estimate(params="7B", dtype="q4_k_m", gpu="orin-agx-64")
    assert any("shares its" in line for line in est.assumptions)
    assert est.fit.usable_bytes < 0.96 * orin.addressable_bytes


def test_addressable_beyond_the_memory_is_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gpus.json"
    path.write_text(json.dumps({"devices": [{"name": "Board", "memory_gib": 16,
                                             "memory_bandwidth_gbs": 100,
                                             "addressable_gib": 20}]}))
    assert main(["--params", "7B", "--gpu", "Board", "--hardware-file", str(path)]) == 2
    assert "addressable_gib" in capsys.readouterr().err


def test_pascal_geforce_is_not_given_tensor_core_rates() -> None:
    """GP102 has no tensor cores: llama.cpp's fp16-accumulate doubling must not apply."""
    card = DB.find("1080ti")
    peak = engine_peak(card, "fp16", ENGINES["llamacpp"])
    assert peak == pytest.approx(dict(card.dense_tflops)["fp32"] * 1e12)
    turing = DB.find("2080ti")
    assert engine_peak(turing, "fp16", ENGINES["llamacpp"]) == pytest.approx(107.6e12, rel=0.01)
