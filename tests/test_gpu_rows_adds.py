"""GPUs users name in public threads that the database lacked (issue 18, item 6): GTX 16 cards,
laptop GPUs under the driver's names, older data-centre and workstation cards, Orin Nano, AMD
RX 6700 XT / 7700 XT. Each is found offline by its name and the spellings users type, with the
memory and bandwidth its sources state."""

from __future__ import annotations

import pytest

from vramest.hardware.database import COMMON_DEVICES, common_devices, default_hardware
from vramest.inference.constants import Constants
from vramest.inference.engines.speed import ENGINES
from vramest.inference.throughput import engine_peak

DB = default_hardware()
GIB = 2**30

# row -> (GiB, GB/s) as the row's sources state them
DATASHEET = {
    # GTX 16: guru3d's GTX 16 table (bus x data rate), pcpartdb (1650 GDDR6)
    "NVIDIA GeForce GTX 1650": (4, 128),  # 128-bit x 8 Gbps
    "NVIDIA GeForce GTX 1650 GDDR6": (4, 192),  # 128-bit x 12 Gbps
    "NVIDIA GeForce GTX 1660": (6, 192),  # 192-bit x 8 Gbps
    "NVIDIA GeForce GTX 1660 SUPER": (6, 336),  # 192-bit x 14 Gbps
    "NVIDIA GeForce GTX 1660 Ti": (6, 288),  # 192-bit x 12 Gbps
    # laptops: memory size and bus from NVIDIA / the OEM table, 14 Gbps on non-Max-Q Ampere
    "NVIDIA GeForce RTX 3060 Laptop GPU": (6, 336),
    "NVIDIA GeForce RTX 3070 Laptop GPU": (8, 448),
    "NVIDIA GeForce RTX 3070 Ti Laptop GPU": (8, 448),
    "NVIDIA GeForce RTX 3080 Laptop GPU 16GB": (16, 448),
    "NVIDIA GeForce RTX 3080 Laptop GPU 8GB": (8, 448),
    "NVIDIA GeForce RTX 3080 Ti Laptop GPU": (16, 512),  # 256-bit x 16 Gbps
    "NVIDIA GeForce RTX 4050 Laptop GPU": (6, 192),  # 96-bit x 16 Gbps
    "NVIDIA GeForce RTX 4060 Laptop GPU": (8, 256),  # 128-bit x 16 Gbps
    "NVIDIA GeForce RTX 4070 Laptop GPU": (8, 256),
    "NVIDIA GeForce RTX 4080 Laptop GPU": (12, 432),  # 192-bit x 18 Gbps
    "NVIDIA GeForce RTX 4090 Laptop GPU": (16, 576),  # 256-bit x 18 Gbps
    # data centre, workstation, older
    "NVIDIA TITAN V": (12, 652.8),  # 3072-bit HBM2 x 1.7 Gbps
    "NVIDIA Tesla K80 (per GPU)": (12, 240),  # one of the board's two GK210s
    "NVIDIA Tesla M40 24GB": (24, 288),
    "NVIDIA GeForce GTX 980 Ti": (6, 336.5),  # 384-bit x 7.01 Gbps
    "NVIDIA Quadro RTX 6000": (24, 672),
    "NVIDIA RTX 2000 Ada Generation": (16, 224),
    "NVIDIA GeForce RTX 4090 D": (24, 1008),  # 384-bit x 21 Gbps
    "NVIDIA Jetson Orin Nano 8GB": (8, 68),
    "NVIDIA Jetson Orin Nano Super 8GB": (8, 102),
    "AMD Radeon RX 6700 XT": (12, 384),  # 192-bit x 16 Gbps
    "AMD Radeon RX 7700 XT": (12, 432),  # 192-bit x 18 Gbps
}

# what users and drivers type -> the row it must find
TYPED = {
    "NVIDIA GeForce RTX 4060 Laptop GPU": "NVIDIA GeForce RTX 4060 Laptop GPU",  # nvidia-smi
    "rtx 4060 laptop": "NVIDIA GeForce RTX 4060 Laptop GPU",
    "4060 mobile": "NVIDIA GeForce RTX 4060 Laptop GPU",
    "4060m": "NVIDIA GeForce RTX 4060 Laptop GPU",
    "RTX 4090 Laptop GPU": "NVIDIA GeForce RTX 4090 Laptop GPU",
    "3070 ti mobile": "NVIDIA GeForce RTX 3070 Ti Laptop GPU",
    "NVIDIA GeForce RTX 3080 Laptop GPU": "NVIDIA GeForce RTX 3080 Laptop GPU 16GB",
    "rtx 3080 laptop 8gb": "NVIDIA GeForce RTX 3080 Laptop GPU 8GB",
    "3080m": "NVIDIA GeForce RTX 3080 Laptop GPU 16GB",
    "NVIDIA GeForce RTX 3060 Laptop GPU": "NVIDIA GeForce RTX 3060 Laptop GPU",
    "gtx 1650": "NVIDIA GeForce GTX 1650",
    "1650 gddr6": "NVIDIA GeForce GTX 1650 GDDR6",
    "1660 super": "NVIDIA GeForce GTX 1660 SUPER",
    "1660ti": "NVIDIA GeForce GTX 1660 Ti",
    "Tesla K80": "NVIDIA Tesla K80 (per GPU)",  # nvidia-smi, one line per GPU
    "Tesla M40 24GB": "NVIDIA Tesla M40 24GB",  # nvidia-smi
    "titan v": "NVIDIA TITAN V",
    "980 ti": "NVIDIA GeForce GTX 980 Ti",
    "quadro rtx 6000": "NVIDIA Quadro RTX 6000",
    "rtx 2000 ada": "NVIDIA RTX 2000 Ada Generation",
    "rtx 4090 d": "NVIDIA GeForce RTX 4090 D",
    "orin nano": "NVIDIA Jetson Orin Nano 8GB",
    "orin nano super": "NVIDIA Jetson Orin Nano Super 8GB",
    "rx 6700 xt": "AMD Radeon RX 6700 XT",
    "7700xt": "AMD Radeon RX 7700 XT",
}


@pytest.mark.parametrize("name", DATASHEET)
def test_each_row_and_all_its_aliases_find_it(name: str) -> None:
    device = DB.find(name)
    assert device.name == name
    for alias in device.aliases:  # no alias is shadowed by an older row
        assert DB.find(alias).name == name, alias
    assert all(part.strip().startswith("http") for part in device.source.split(" ; "))


@pytest.mark.parametrize(("typed", "name"), TYPED.items())
def test_typed_names_find_the_row(typed: str, name: str) -> None:
    assert DB.find(typed).name == name


@pytest.mark.parametrize(("name", "figures"), DATASHEET.items())
def test_memory_and_bandwidth_match_the_sources(name: str, figures: tuple[float, float]) -> None:
    gib, gbs = figures
    device = DB.find(name)
    assert device.memory_bytes == gib * GIB
    assert device.bandwidth_bytes_s == pytest.approx(gbs * 1e9)


# NVIDIA's laptop comparison page: CUDA cores and the top of the boost-clock range
@pytest.mark.parametrize(("name", "cores", "mhz"), [
    ("NVIDIA GeForce RTX 4050 Laptop GPU", 2560, 2370),
    ("NVIDIA GeForce RTX 4060 Laptop GPU", 3072, 2370),
    ("NVIDIA GeForce RTX 4070 Laptop GPU", 4608, 2175),
    ("NVIDIA GeForce RTX 4080 Laptop GPU", 7424, 2280),
    ("NVIDIA GeForce RTX 4090 Laptop GPU", 9728, 2040),
])
def test_laptop_fp32_is_at_the_top_of_the_boost_range(name: str, cores: int, mhz: int) -> None:
    assert dict(DB.find(name).dense_tflops)["fp32"] == pytest.approx(cores * 2 * mhz / 1e6,
                                                                     abs=0.01)


@pytest.mark.parametrize("name", ["NVIDIA GeForce GTX 1650", "NVIDIA GeForce GTX 1660 Ti",
                                  "NVIDIA GeForce GTX 980 Ti", "NVIDIA Tesla M40 24GB",
                                  "NVIDIA Tesla K80 (per GPU)"])
def test_cards_without_tensor_cores_get_no_tensor_doubling(name: str) -> None:
    """GTX 16, Maxwell and Kepler have no tensor cores: 16-bit matmuls run at the fp32 rate,
    and llama.cpp's fp16-accumulate doubling must not apply (as for Pascal)."""
    card = DB.find(name)
    fp32 = dict(card.dense_tflops)["fp32"] * 1e12
    assert card.flops("fp16")[0] == pytest.approx(fp32)
    assert engine_peak(card, "fp16", ENGINES["llamacpp"]) == pytest.approx(fp32)


def test_k80_keeps_ecc_in_band_as_nvidia_smi_shows() -> None:
    """nvidia-smi shows 11441 MiB per K80 GPU with ECC on (rcgsheffield/sheffield_hpc#1030,
    openmm/openmm#2386); without in-band ECC the model would give 12104 MiB."""
    k80 = DB.find("Tesla K80")
    total_mib = k80.reported_total_bytes(Constants().visible_memory_fraction) / 2**20
    assert total_mib == pytest.approx(11441, rel=0.01)


def test_orin_nano_offers_less_than_the_module_holds() -> None:
    """Unified memory: the Orin Nano 8 GB shows 7.2 GB to Linux before any model loads."""
    for name in ("orin nano", "orin nano super"):
        nano = DB.find(name)
        assert nano.addressable_bytes < 7.2e9 < nano.memory_bytes


def test_the_gpu_table_is_unchanged() -> None:
    assert [d.name for d in common_devices()] == list(COMMON_DEVICES)
    assert not set(DATASHEET) & set(COMMON_DEVICES)
