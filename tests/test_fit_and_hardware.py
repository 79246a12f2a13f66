"""Hardware lookup, fit planning across GPUs, and their error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vramest
from vramest.cli import main
from vramest.errors import InputError
from vramest.hardware.database import default_hardware, load_hardware
from vramest.inference.placement import per_gpu_memory, valid_tp_degrees

DB = default_hardware()
REQUIRED = ["RTX 3060", "RTX 3090", "RTX 4090", "RTX 5090", "RTX A6000", "RTX 6000 Ada",
            "RTX PRO 6000", "T4", "A10", "A10G", "A40", "L4", "L40", "L40S", "A100 SXM4 40GB",
            "A100 PCIe 80GB", "H100 SXM5", "H100 PCIe", "H100 NVL", "H20", "H200", "B200", "GB10",
            "V100", "MI50", "MI300X", "MI325X", "Ascend 910B", "M1", "M2 Ultra", "M3 Max",
            "M4 Pro", "DDR5-4800 2-channel"]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_devices_are_listed(name: str) -> None:
    assert DB.find(name).memory_bytes > 0


@pytest.mark.parametrize("spelling", ["rtx4090", "RTX 4090", "4090", "Rtx-4090", "geforce rtx 4090"])
def test_names_match_ignoring_case_spaces_and_dashes(spelling: str) -> None:
    assert DB.find(spelling).name == "NVIDIA GeForce RTX 4090"


def test_every_device_names_its_source() -> None:
    assert all(d.source for d in DB.devices)


def test_unknown_gpu_suggests_the_nearest() -> None:
    with pytest.raises(InputError, match="did you mean"):
        DB.find("rtx 4900")


def test_hardware_file_adds_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "hw.json"
    path.write_text(json.dumps({"devices": [
        {"name": "Lab Card 48G", "memory_gib": 48, "memory_bandwidth_gbs": 900,
         "dense_tflops": {"fp16": 150}, "source": "our lab"},
        {"name": "NVIDIA GeForce RTX 4090", "memory_gib": 48, "memory_bandwidth_gbs": 1008,
         "source": "modded card"}]}))
    db = load_hardware(path)
    assert db.find("lab card 48g").memory_gib == 48
    assert db.find("4090").memory_gib == 48


@pytest.mark.parametrize("content", ["[]", "{\"devices\": [{\"name\": \"x\"}]}", "{not json",
                                     "{\"devices\": [{\"name\": \"x\", \"memory_gib\": -1}]}",
                                     "{\"devices\": [{\"name\": \"x\", \"memory_gib\": NaN}]}",
                                     "{\"devices\": [{\"name\": \"x\", \"memory_gib\": Infinity}]}",
                                     "{\"devices\": [{\"name\": \"x\", \"memory_gib\": 1e300}]}"])
def test_bad_hardware_file_is_an_input_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "hw.json"
    path.write_text(content)
    with pytest.raises(InputError):
        load_hardware(path)


def test_tensor_parallel_splits_weights_and_kv() -> None:
    est = vramest.estimate(model="meta-llama/Llama-3.1-70B", dtype="bf16", ctx=8192)
    one, four = per_gpu_memory(est, 1), per_gpu_memory(est, 4)
    assert four.weights == pytest.approx(one.weights / 4, rel=0.01)
    assert four.kv_cache == pytest.approx(one.kv_cache / 4, rel=0.01)
    assert four.overhead == one.overhead  # every GPU has its own context


def test_kv_heads_fewer_than_ranks_are_replicated() -> None:
    """GPT-BigCode (StarCoder) has one KV head: every rank keeps it whole."""
    est = vramest.estimate(model="bigcode/starcoder", dtype="bf16", ctx=8192)
    assert per_gpu_memory(est, 4).kv_cache == est.memory.kv_cache.bytes


def test_valid_tp_degrees_divide_the_heads() -> None:
    shape = vramest.estimate(model="meta-llama/Llama-3.1-70B").model.shape
    assert valid_tp_degrees(shape, 16) == [1, 2, 4, 8, 16]


@pytest.mark.parametrize("args", [
    ["--model", "llama-3.1-70b", "--gpu", "h100", "--num-gpus", "3"],
    ["--model", "llama-3.1-70b", "--gpu", "h100", "--num-gpus", "0"],
    ["--model", "llama-3.1-70b", "--gpu", "h100", "--num-gpus", "4", "--pp", "3"],
    ["--model", "llama-3.1-70b", "--gpu", "no-such-gpu"],
    ["--model", "llama-3.1-70b", "--gpu", "h100", "--reserve", "120%"],
    ["--model", "llama-3.1-70b", "--gpu", "h100", "--engine", "warp"],
    ["--model", "llama-3.1-70b", "--gpu", "local"],
])
def test_bad_hardware_requests_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_invalid_tp_message_lists_the_valid_degrees(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--model", "llama-3.1-70b", "--gpu", "h100", "--num-gpus", "3"])
    assert "1, 2, 4, 8" in capsys.readouterr().err


def test_a_model_too_big_for_everything_is_a_plain_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", "100T", "--dtype", "bf16", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["gpus"]
    assert rows and all(not r["fits"] and "does not fit" in r["reason"] for r in rows)


def test_fit_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--model", "llama-3.1-8b", "--gpu", "4090", "--max-ctx", "--max-batch", "--json"])
    data = json.loads(capsys.readouterr().out)
    fit, speed = data["fit"], data["throughput"]
    assert isinstance(fit["fits"], bool)
    for key in ("per_gpu_bytes", "usable_bytes", "headroom_bytes", "max_ctx", "max_batch"):
        assert isinstance(fit[key], int)
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s", "time_to_first_token_s"):
        assert speed[key] > 0
    assert speed["gpu"] == "NVIDIA GeForce RTX 4090" and speed["num_gpus"] == 1


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["llama-3.1-8b", "mistral-7b-v0.1", "gemma-2-9b", "qwen2.5-14b"]),
       st.sampled_from(["4090", "a100-80gb", "l4"]), st.sampled_from(["bf16", "q4_k_m", "fp8"]))
def test_max_ctx_is_the_boundary(model: str, gpu: str, dtype: str) -> None:
    """The longest context fits and one more token does not (unless the search cap was hit)."""
    result = vramest.estimate(model=model, dtype=dtype, gpu=gpu, max_ctx=True)
    longest = result.fit.max_ctx
    if longest == 0:
        return
    at = vramest.estimate(model=model, dtype=dtype, gpu=gpu, ctx=longest)
    assert at.fit.fits
    if longest < 16 * 1024**2:
        beyond = vramest.estimate(model=model, dtype=dtype, gpu=gpu, ctx=longest + 1)
        assert not beyond.fit.fits


def test_hw_command_never_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hw", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu_cores"] >= 1


def test_gpus_command_lists_the_database(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpus", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["devices"]) >= 80


# nvidia-smi's memory.total on cards with ECC on (published logs): T4 "15360MiB", L4
# "23034 MiB", A40 and L40S "46068MiB"; the driver keeps a few MiB of its own.
@pytest.mark.parametrize(("name", "smi_total_mib"),
                         [("T4", 15360), ("L4", 23034), ("A40", 46068), ("L40S", 46068)])
def test_in_band_ecc_cards_offer_what_nvidia_smi_shows(name: str, smi_total_mib: int) -> None:
    device = default_hardware().find(name)
    assert device.ecc_in_band
    assert abs(device.addressable_bytes / 2**20 - smi_total_mib) <= 16


def test_hbm_and_consumer_cards_keep_their_nominal_memory() -> None:
    for name in ("A100 80GB", "H100", "RTX 4090"):
        device = default_hardware().find(name)
        assert device.addressable_bytes == device.memory_bytes


def test_fit_uses_the_addressable_memory() -> None:
    from vramest.inference.placement import Reserve

    t4 = default_hardware().find("T4")
    assert Reserve().usable(t4) == int(15 * 2**30 * 0.95)


def test_hardware_file_ecc_flag_must_be_boolean(tmp_path: Path, capsys) -> None:
    path = tmp_path / "gpus.json"
    path.write_text(json.dumps({"devices": [{"name": "Lab card", "memory_gib": 16,
                                             "memory_bandwidth_gbs": 300,
                                             "ecc_in_band": "yes"}]}))
    code = main(["--params", "7B", "--gpu", "Lab card", "--hardware-file", str(path)])
    assert code == 2
    assert "ecc_in_band must be true or false" in capsys.readouterr().err


def test_a_shipped_device_decoded_alone_is_the_database_s_row() -> None:
    """shipped_device finds a row by its "name" key and decodes that object alone: every
    object in gpus.json opens with "name", each one so decoded equals the full parse, and the
    GPU table's names are exact names."""
    import json

    from vramest.data import read_text
    from vramest.hardware.database import (
        COMMON_DEVICES,
        common_devices,
        default_hardware,
        shipped_device,
    )

    assert all(next(iter(raw)) == "name" for raw in json.loads(read_text("gpus.json"))["devices"])
    for device in default_hardware().devices:
        assert shipped_device(device.name) == device
    assert [d.name for d in common_devices()] == list(COMMON_DEVICES)
    assert common_devices() == default_hardware().common()


@pytest.mark.parametrize(("gpu", "logged_gib"), [
    ("h100", 79.11), ("h100", 79.18), ("h100", 79.22),  # vLLM PR #48601, llm-d, vLLM logs
    ("h200", 139.72),  # vLLM issue #31273
    ("v100-32gb", 31.75),  # LlamaFactory issue #1221
    ("a100-40gb", 39.39),  # vLLM issue #2363: the common share holds where no total is logged
])
def test_the_total_cuda_reports_is_the_logged_one(gpu: str, logged_gib: float) -> None:
    from vramest.inference.constants import DEFAULTS
    from vramest.units import GIB

    device = load_hardware().find(gpu)
    reported = device.reported_total_bytes(DEFAULTS.visible_memory_fraction) / GIB
    assert abs(reported - logged_gib) <= 0.08


def test_a_cuda_total_above_the_memory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gpus.json"
    path.write_text('{"devices": [{"name": "Mine", "memory_gib": 24, "cuda_total_gib": 25}]}')
    with pytest.raises(InputError, match="cuda_total_gib"):
        load_hardware(path)
