"""GPU names as users write a machine: a count before the name ("2x RTX 4090", "8xH100") and
the card's memory size after it ("RTX 4090 24GB")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vramest
from vramest.errors import InputError
from vramest.hardware.database import counted, load_hardware
from vramest.units import GIB

DB = load_hardware()
NAMES = sorted({name for d in DB.devices for name in (d.name, *d.aliases)})


@pytest.mark.parametrize(("text", "expected"), [
    ("2x RTX 4090", (2, "RTX 4090")), ("8xH100", (8, "H100")), ("4 × A100 80GB", (4, "A100 80GB")),
    ("2*3090", (2, "3090")), ("16 X MI300X", (16, "MI300X")),
    ("7900 XTX", None), ("3090", None), ("x2 4090", None), ("2x", None), ("0x H100", None),
    ("5000x H100", None), ("RTX 4090", None),
])
def test_a_count_is_read_off_the_front(text: str, expected: tuple[int, str] | None) -> None:
    assert counted(text) == expected


def test_no_name_the_database_knows_is_read_as_a_count() -> None:
    """"7900 XTX" is a card, not 7,900 of "TX": a name found whole is never split."""
    for name in NAMES:
        assert DB.find_counted(name) == (DB.find(name), 1), name


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4096), st.sampled_from(NAMES), st.sampled_from(["x ", "x", " x ", "× ", "*"]))
def test_any_count_of_any_known_name(count: int, name: str, sign: str) -> None:
    assert DB.find_counted(f"{count}{sign}{name}") == (DB.find(name), count)


def test_a_counted_gpu_is_the_same_deployment_as_num_gpus() -> None:
    counted_ = vramest.estimate(params="70B", dtype="int4", gpu="2x RTX 4090").to_json()["fit"]
    flagged = vramest.estimate(params="70B", dtype="int4", gpu="RTX 4090",
                               num_gpus=2).to_json()["fit"]
    assert counted_ == {**flagged, "gpu": counted_["gpu"]} and counted_["num_gpus"] == 2
    vllm = [vramest.estimate(model="Qwen/Qwen3-30B-A3B", dtype="fp8", engine="vllm", **where)
            .to_json()["engine"] for where in ({"gpu": "2x RTX 4090"},
                                               {"gpu": "RTX 4090", "num_gpus": 2})]
    assert vllm[0] == vllm[1]


def test_a_count_and_num_gpus_that_disagree_are_one_sentence() -> None:
    with pytest.raises(InputError, match=r"counts 4 GPUs and --num-gpus says 2") as err:
        vramest.estimate(params="70B", gpu="4x A100", num_gpus=2)
    assert "\n" not in str(err.value)
    assert vramest.estimate(params="70B", gpu="4x A100", num_gpus=4).fit.num_gpus == 4


def test_a_counted_machine_of_different_gpus() -> None:
    counted_ = vramest.estimate(params="70B", dtype="q4_k_m", engine="llamacpp",
                                gpu="2x 3090 + 3060").to_json()["fit"]
    listed = vramest.estimate(params="70B", dtype="q4_k_m", engine="llamacpp",
                              gpu="3090,3090,3060").to_json()["fit"]
    assert {**counted_, "gpu": None} == {**listed, "gpu": None}


def test_training_reads_the_count_too() -> None:
    from vramest.training.estimate import estimate_training

    a = estimate_training(model="llama-3.1-8b", method="full", zero=3, gpu="4x A100 80GB")
    b = estimate_training(model="llama-3.1-8b", method="full", zero=3, gpu="A100 80GB",
                          num_gpus=4)
    assert a.settings.num_gpus == 4 and a.to_json()["memory"] == b.to_json()["memory"]
    with pytest.raises(InputError, match="counts 4 GPUs"):
        estimate_training(model="llama-3.1-8b", gpu="4x A100 80GB", num_gpus=2)


@pytest.mark.parametrize(("text", "name"), [
    ("RTX 4090 24GB", "NVIDIA GeForce RTX 4090"), ("RTX A6000 48 GB", "NVIDIA RTX A6000"),
    ("H100 SXM 80G", "NVIDIA H100 SXM5 80GB"), ("rtx-3090 24gb", "NVIDIA GeForce RTX 3090"),
    ("T4 16GB", "NVIDIA T4"), ("RTX 4090 24GiB", "NVIDIA GeForce RTX 4090"),
    ("RTX 4090 24 GiB", "NVIDIA GeForce RTX 4090"),
])
def test_a_name_with_its_own_memory_size(text: str, name: str) -> None:
    assert DB.find(text).name == name


@pytest.mark.parametrize("text", ["RTX 3090 12GB", "H100 40GB", "H100 96GB", "RTX 4090 200GB"])
def test_another_memory_size_is_another_card(text: str) -> None:
    """No board is sold with less memory than its card, nor an HBM part with more."""
    with pytest.raises(InputError, match="Unknown GPU"):
        DB.find(text)


@pytest.mark.parametrize(("text", "card", "gib"), [
    ("RTX 2080 Ti 22GB", "NVIDIA GeForce RTX 2080 Ti", 22),  # vLLM #2140's card
    ("RTX 4090 48GB", "NVIDIA GeForce RTX 4090", 48),
    ("2080ti 22G", "NVIDIA GeForce RTX 2080 Ti", 22),
])
def test_a_rebuilt_board_has_the_memory_it_is_sold_with(text: str, card: str, gib: int) -> None:
    device = DB.find(text)
    base = DB.find(card)
    assert device.memory_bytes == gib * GIB and device.name.startswith(card)
    assert "rebuilt" in device.name and device.bandwidth_bytes_s == base.bandwidth_bytes_s


def test_every_card_with_its_size_after_it() -> None:
    for device in DB.devices:
        if device.vendor.lower() == "apple":  # a chip's size picks its memory configuration
            continue
        assert DB.find(f"{device.name} {round(device.memory_gib)}GB") is device, device.name


@pytest.mark.parametrize(("text", "name"), [
    ("MacBook Pro M1 16GB", "Apple M1 16GB"), ("Mac mini M4 16GB", "Apple M4 16GB"),
    ("Mac Studio M2 Ultra", "Apple M2 Ultra"), ("MacBook Pro M3 Max 64GB", "Apple M3 Max 64GB"),
    ("MacBook Pro M1 Pro 32GB", "Apple M1 Pro 32GB"), ("iMac M3", "Apple M3"),
])
def test_a_mac_named_with_its_chip(text: str, name: str) -> None:
    """"MacBook Pro M1" is the M1 chip in a MacBook Pro, not the M1 Pro."""
    assert DB.find(text).name == name


def test_a_mac_word_before_no_apple_chip_is_unknown() -> None:
    with pytest.raises(InputError, match="Unknown GPU"):
        DB.find("Mac RTX 4090")


def test_every_cloud_instance_names_a_shipped_gpu() -> None:
    from vramest.hardware.instances import INSTANCES

    for name, (gpu, count) in INSTANCES.items():
        assert DB.find_counted(name) == (DB.find(gpu), count), name


@pytest.mark.parametrize(("instance", "gpu", "count"), [
    ("g5.2xlarge", "NVIDIA A10G", 1), ("g5.12xlarge", "NVIDIA A10G", 4),
    ("p4d.24xlarge", "NVIDIA A100 SXM4 40GB", 8), ("a2-ultragpu-2g", "NVIDIA A100 SXM4 80GB", 2),
    ("Standard_NC24ads_A100_v4", "NVIDIA A100 PCIe 80GB", 1), ("g4dn.xlarge", "NVIDIA T4", 1),
])
def test_a_cloud_instance_is_its_gpus(instance: str, gpu: str, count: int) -> None:
    named = vramest.estimate(params="70B", dtype="int4", gpu=instance).to_json()["fit"]
    flagged = vramest.estimate(params="70B", dtype="int4", gpu=gpu,
                               num_gpus=count).to_json()["fit"]
    assert {**named, "gpu": None} == {**flagged, "gpu": None}


def test_an_instance_of_several_gpus_where_one_is_asked_for() -> None:
    assert DB.find("g5.xlarge").name == "NVIDIA A10G"
    with pytest.raises(InputError, match=r"p4d\.24xlarge has 8 .* GPUs"):
        DB.find("p4d.24xlarge")
