"""GPU names as users paste them, nvidia-smi's among them, find their database row."""

from __future__ import annotations

import pytest

from vramest.errors import InputError
from vramest.hardware.database import default_hardware, device_from_local


# what `nvidia-smi --query-gpu=name` prints on these boards
@pytest.mark.parametrize(("smi", "row"), [
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB"),
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe 80GB"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 SXM4 80GB"),
    ("NVIDIA A100 80GB PCIe", "NVIDIA A100 PCIe 80GB"),
    ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 PCIe 40GB"),
    ("Tesla V100-SXM2-32GB", "NVIDIA Tesla V100 SXM2 32GB"),
    ("Tesla T4", "NVIDIA T4"),
    ("NVIDIA A10G", "NVIDIA A10G"),
    ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
])
def test_nvidia_smi_names(smi: str, row: str) -> None:
    db = default_hardware()
    assert db.find(smi).name == row
    local = device_from_local(smi, db.find(row).memory_bytes, None, db)
    assert local.bandwidth_bytes_s == db.find(row).bandwidth_bytes_s  # the speed model has it


def test_word_order_does_not_matter_but_every_word_does() -> None:
    db = default_hardware()
    assert db.find("80GB A100 PCIe") == db.find("a100 pcie 80gb")
    # a laptop 3060 is not the 12 GB desktop card: it has its own row, and a laptop GPU the
    # database lacks is refused rather than taken for the desktop card of that number
    laptop = db.find("NVIDIA GeForce RTX 3060 Laptop GPU")
    assert laptop.name == "NVIDIA GeForce RTX 3060 Laptop GPU" and laptop.memory_gib == 6
    with pytest.raises(InputError):
        db.find("NVIDIA GeForce RTX 2060 Laptop GPU")


# recommendedMaxWorkingSetSize as llama.cpp logged it (MB as it prints them, MiB in fact)
@pytest.mark.parametrize(("chip", "logged_mib"), [
    ("Apple M1 16GB", 10922.67),  # abetlen/llama-cpp-python#687
    ("Apple M2 Max 32GB", 21845.34),  # ollama/ollama#434
    ("Apple M2 Max 64GB", 49152.00),  # ggml-org/llama.cpp#1870
    ("Apple M2 Max 96GB", 73728.00),  # ggml-org/llama.cpp#3213
])
def test_a_mac_gives_the_gpu_metal_working_set(chip: str, logged_mib: float) -> None:
    device = default_hardware().find(chip)
    assert abs(device.addressable_bytes / 2**20 - logged_mib) < 0.02


def test_a_mac_config_is_its_chip_with_that_memory() -> None:
    db = default_hardware()
    small = db.find("M2 Max 32GB")
    assert small.bandwidth_bytes_s == db.find("Apple M2 Max").bandwidth_bytes_s
    assert small.memory_bytes == 32 * 2**30 and small.name == "Apple M2 Max 32GB"
    with pytest.raises(InputError):  # more memory than the chip is sold with
        db.find("M2 Max 128GB")
    with pytest.raises(InputError):  # no HBM part is sold with another size
        db.find("H100 40GB")
