"""Calibration profiles without torch: validation, applying them to estimates, the store's
JSONL/atomic writes/lock, the automatic look-up and the accuracy report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vramest.api import estimate
from vramest.calibration import store
from vramest.calibration.profile import (
    PROFILE_FORMAT,
    PROFILE_VERSION,
    calibration_accuracy_report,
    find_matching_profile,
    fingerprint_matches,
    load_profile,
    resolve_profile_option,
)
from vramest.calibration.report import render_report
from vramest.errors import InputError
from vramest.inference.constants import DEFAULTS
from vramest.validation import PROFILE_DIR

REPO_PROFILES = PROFILE_DIR


def profile_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format": PROFILE_FORMAT, "version": PROFILE_VERSION, "created": "2025-01-01T00:00:00+00:00",
        "device": {"kind": "cpu", "name": "Test CPU (2 threads)", "cpu_model": "Test CPU",
                   "cpu_count": 2, "memory_bytes": 16 * 1024**3, "threads": 2},
        "devices": [{"name": "Test CPU (2 threads) (calibrated)", "kind": "cpu", "class": "cpu",
                     "memory_gib": 16, "memory_bandwidth_gbs": 20.0,
                     "dense_tflops": {"fp32": 0.05, "bf16": 0.2, "fp16": 0.2}}],
        "constants": {"activation_ffn_factor": 2.5, "activation_hidden_factor": 4.5,
                      "runtime_overhead_bytes": 500 * 1024**2, "memory_efficiency_cpu": 0.7},
        "precision_constants": {
            "fp32": {"memory_efficiency_cpu": 0.4, "compute_efficiency_cpu": 0.8,
                     "hf.step_overhead_s": 0.002, "hf.layer_overhead_s": 0.0004},
            "bf16": {"memory_efficiency_cpu": 0.7, "compute_efficiency_cpu": 0.6,
                     "hf.step_overhead_s": 0.001, "hf.layer_overhead_s": 0.0003}},
        "engine": {"hf": {"step_overhead_s": 0.001, "layer_overhead_s": 0.0003}},
        "measurements": "test.measurements.jsonl",
        "heldout_error": {m: {"before": 0.3, "after": 0.05, "points": 10}
                          for m in ("memory", "decode", "prefill")},
    }
    data.update(changes)
    return data


def write_profile(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "test.json"
    path.write_text(json.dumps(profile_data(**changes)), encoding="utf-8")
    return path


def test_profile_loads_and_applies_per_precision(tmp_path: Path) -> None:
    profile = load_profile(write_profile(tmp_path))
    fp32 = profile.apply(DEFAULTS, "fp32")
    bf16 = profile.apply(DEFAULTS, "bf16")
    assert fp32.memory_efficiency_cpu == 0.4 and bf16.memory_efficiency_cpu == 0.7
    assert fp32.activation_ffn_factor == bf16.activation_ffn_factor == 2.5
    assert profile.apply(DEFAULTS, "nf4").compute_efficiency_cpu == 0.6  # 16-bit compute
    assert fp32.compute_efficiency_gpu == DEFAULTS.compute_efficiency_gpu  # untouched


@pytest.mark.parametrize("change, message", [
    ({"format": "other"}, "not a vramest calibration profile"),
    ({"version": 99}, "version"),
    ({"constants": {"no_such_constant": 1.0}}, "Unknown constant"),
    ({"constants": {"activation_ffn_factor": -1}}, "from 0 to"),
    # NaN is not JSON: the loader refuses it before the validator would
    ({"constants": {"activation_ffn_factor": float("nan")}}, "not valid JSON"),
    ({"constants": {"runtime_overhead_bytes": 1e300}}, "from 0 to"),
    ({"constants": {"memory_efficiency_cpu": 0}}, "above 0"),
    ({"heldout_error": {"memory": {"before": 0.1}}}, "heldout_error"),
    ({"heldout_error": {m: {"before": "x", "after": 0} for m in ("memory", "decode", "prefill")}},
     "heldout_error"),
    ({"device": "cpu"}, "device"),
    ({"devices": [{"name": "x", "memory_gib": float("nan")}]}, "not valid JSON"),
    ({"devices": [{"memory_gib": 16}]}, "name"),
    ({"roofs": {"bandwidth_bytes_s": "fast", "matmul_flops": {}}}, "roofs"),
    ({"residuals": [{"memory": 0.1}]}, "residuals"),
    ({"training": []}, "training must be an object"),
    ({"training": {"constants": {"loss_fp32_buffers": "3"}}}, "training.constants"),
    ({"training": {"precision_constants": {"bf16": {"flops_utilization": 0}}}}, "above 0"),
    ({"training": {"constants": {"no_such": 1.0}}}, "unknown constant"),
    ({"training": {"heldout_error": {"speed": {"after": 0.1}}}}, "heldout_error.speed"),
])
def test_bad_profiles_are_rejected(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_profile(write_profile(tmp_path, **change))


def test_a_valid_profile_with_falsy_sections_still_reports(tmp_path: Path) -> None:
    profile = load_profile(write_profile(tmp_path, constants_before=None, residuals=[],
                                         training={"constants": None, "residuals": None}))
    assert any("held-out" in line for line in render_report(profile))


def test_missing_or_broken_profile(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_profile(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        load_profile(broken)


def test_estimate_with_profile_carries_calibration(tmp_path: Path) -> None:
    path = write_profile(tmp_path)
    plain = estimate(params="1B", dtype="bf16", ctx=1024)
    calibrated = estimate(params="1B", dtype="bf16", ctx=1024, profile=str(path))
    out = calibrated.to_json()
    assert out["calibration"]["path"] == str(path)
    assert out["calibration"]["device"] == "Test CPU (2 threads)"
    assert "activation_ffn_factor" in out["calibration"]["constants"]
    assert out["constants"]["source"] == f"profile {path}"
    assert calibrated.memory.overhead.bytes == 500 * 1024**2
    assert calibrated.memory.activations.bytes != plain.memory.activations.bytes
    assert "calibration" not in plain.to_json()


def test_profile_device_is_used_for_local_speed(tmp_path: Path) -> None:
    path = write_profile(tmp_path)
    result = estimate(params="125M", dtype="fp32", ctx=256, gpu="local", profile=str(path),
                      engine="hf", prompt=64, gen=16)
    assert result.throughput is not None
    assert result.throughput.gpu == "Test CPU (2 threads) (calibrated)"
    assert result.to_json()["calibration"]["precision"] == "fp32"


def test_report_lists_constants_and_heldout(tmp_path: Path) -> None:
    lines = render_report(load_profile(write_profile(tmp_path, constants_before={
        "activation_ffn_factor": 3.0})))
    text = "\n".join(lines)
    assert "activation_ffn_factor" in text and "held-out" in text and "fp32" in text


def test_accuracy_report_reads_a_profile_dir(tmp_path: Path) -> None:
    write_profile(tmp_path)
    lines = calibration_accuracy_report(tmp_path)
    assert any("decode tokens/s" in line and "5.0%" in line for line in lines)


def test_committed_profile_is_valid_and_meets_the_issue() -> None:
    paths = sorted(REPO_PROFILES.glob("*.json"))
    if not paths:
        pytest.skip("no committed profile")
    for path in paths:
        profile = load_profile(path)
        assert profile.heldout_error["memory"]["after"] <= 0.05
        assert profile.heldout_error["decode"]["after"] <= 0.15
        assert (path.parent / profile.raw["measurements"]).exists()
    assert any("before" in line for line in calibration_accuracy_report(REPO_PROFILES))


def test_fingerprint_matching() -> None:
    device = profile_data()["device"]
    local = {"kind": "cpu", "cpu_model": "Test CPU", "cpu_count": 2, "memory_bytes": 16 * 1024**3}
    assert fingerprint_matches(device, local)
    assert not fingerprint_matches(device, {**local, "cpu_count": 8})
    assert not fingerprint_matches(device, {**local, "memory_bytes": 64 * 1024**3})
    assert not fingerprint_matches(device, {**local, "kind": "cuda", "name": "x"})


def test_automatic_profile_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vramest.calibration import profile as profile_module

    monkeypatch.setenv("VRAMEST_PROFILE_DIR", str(tmp_path / "absent"))
    assert resolve_profile_option(None) is None  # no directory: nothing is detected
    monkeypatch.setenv("VRAMEST_PROFILE_DIR", str(tmp_path))
    path = write_profile(tmp_path)
    local = {"kind": "cpu", "cpu_model": "Test CPU", "cpu_count": 2, "memory_bytes": 16 * 1024**3}
    monkeypatch.setattr(profile_module, "local_fingerprint", lambda: local)
    assert find_matching_profile() == path
    assert resolve_profile_option(None) == str(path)
    assert resolve_profile_option("none") is None
    monkeypatch.setattr(profile_module, "local_fingerprint", lambda: {**local, "cpu_count": 64})
    assert resolve_profile_option(None) is None


def test_cli_and_api_choose_the_stored_profile_alike_and_say_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """One behaviour: the API, like the CLI, uses this machine's stored profile unless told
    "none", and both answers name the profile they used."""
    from vramest.calibration import profile as profile_module
    from vramest.cli import main

    monkeypatch.setenv("VRAMEST_PROFILE_DIR", str(tmp_path))
    path = write_profile(tmp_path)
    local = {"kind": "cpu", "cpu_model": "Test CPU", "cpu_count": 2, "memory_bytes": 16 * 1024**3}
    monkeypatch.setattr(profile_module, "local_fingerprint", lambda: local)
    api = estimate(params="7B", dtype="fp16").to_json()
    assert main(["--params", "7B", "--dtype", "fp16", "--no-gpus", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert api["profile"] == cli["profile"] == {"path": str(path), "chosen": "stored"}
    assert api["constants"] == cli["constants"] != estimate(params="7B", dtype="fp16",
                                                           profile="none").to_json()["constants"]
    assert any(str(path) in line for line in api["assumptions"])
    shipped = estimate(params="7B", dtype="fp16", profile="none").to_json()
    assert shipped["profile"] == {"path": None, "chosen": "none"}


def test_store_appends_resumes_and_ignores_a_torn_line(tmp_path: Path) -> None:
    jsonl = store.measurements_path(tmp_path / "cpu.json")
    assert jsonl.name == "cpu.measurements.jsonl"
    store.append_record(jsonl, {"kind": "point", "key": "a", "status": "ok", "point": {}})
    store.append_record(jsonl, {"kind": "point", "key": "b", "status": "oom"})
    with open(jsonl, "a", encoding="utf-8") as f:
        f.write('{"kind": "point", "key": "c", "sta')  # interrupted mid-write
    records = store.read_records(jsonl)
    assert [r["key"] for r in records] == ["a", "b"]
    assert store.done_keys(records) == {"a", "b"}


def test_store_drops_malformed_lines_so_they_are_measured_again(tmp_path: Path) -> None:
    jsonl = tmp_path / "x.measurements.jsonl"
    lines = [{"kind": "device", "fingerprint": "cpu"},  # no fingerprint object
             {"kind": "roofs", "bandwidth_bytes_s": float("nan"), "matmul_flops": {}},
             {"kind": "quantization_support", "formats": ["nf4"]},
             {"kind": "point", "key": 3, "status": "ok", "point": {}},
             {"kind": "point", "key": "d", "status": "ok"},  # measured, but no settings
             {"kind": "point", "key": "e", "status": "done"}, [1, 2],
             {"kind": "roofs", "bandwidth_bytes_s": 1e10, "matmul_flops": {"bf16": 1e12}}]
    jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert store.read_records(jsonl) == [lines[-1]]


def test_a_point_whose_figures_do_not_read_is_left_out_of_the_fit() -> None:
    from vramest.calibration.fit import make_cases, roofs_device

    device = roofs_device("cpu", "cpu", 16 * 1024**3,
                          {"bandwidth_bytes_s": 2e10, "matmul_flops": {"bf16": 2e11}})
    broken = {"kind": "point", "key": "k", "status": "ok",
              "point": {"family": "llama", "dtype": "bf16", "batch": "two"}}
    assert make_cases([broken], device) == []


def test_atomic_write_and_lock(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    store.write_json_atomic(path, {"x": 1})
    store.write_json_atomic(path, {"x": 2})
    assert json.loads(path.read_text(encoding="utf-8")) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]
    with store.profile_lock(path), pytest.raises(InputError, match="Another calibration"), \
            store.profile_lock(path):
        pass
    with store.profile_lock(path):  # released after the first run
        pass


def test_cli_flag_passes_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vramest.cli import main

    path = write_profile(tmp_path)
    assert main(["--params", "1B", "--dtype", "bf16", "--json", "--no-gpus", "--profile",
                 str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["calibration"]["path"] == str(path)


def test_report_plot_draws_before_and_after(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`vramest calibrate --report PROFILE --plot OUT.svg`: one chart per metric, no matplotlib."""
    import xml.etree.ElementTree as ET

    from vramest.cli import main

    profile = PROFILE_DIR / \
        "cpu-amd-epyc-1-thread.json"
    assert main(["calibrate", "--report", str(profile), "--plot", str(tmp_path / "fit.svg")]) == 0
    assert "median" in capsys.readouterr().out
    for metric in ("memory", "decode", "prefill"):
        root = ET.parse(tmp_path / f"fit-{metric}.svg").getroot()
        assert sum(1 for _ in root.iter()) > 100  # points, axes, labels were drawn


def test_plot_needs_a_profile(capsys: pytest.CaptureFixture[str]) -> None:
    from vramest.cli import main

    assert main(["calibrate", "--plot", "x.png"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


TRAINING = {
    "constants": {"loss_fp32_buffers": 3.0, "backward_ffn_copies": 3.0}, "memory_fitted": False,
    "precision_constants": {"fp32": {"flops_utilization": 0.47}, "bf16": {"flops_utilization": 0.24}},
    "constants_before": {"loss_fp32_buffers": 3.0, "backward_ffn_copies": 3.0,
                         "flops_utilization": 0.5},
    "points_ok": 20, "points_failed": 0, "qlora_support": "ok",
    "heldout_scheme": "leave one model family out",
    "heldout_error": {"memory": {"before": 0.015, "after": 0.015, "points": 20},
                      "speed": {"before": 0.84, "after": 0.131, "points": 16}},
    "residuals": [{"key": "train/llama/xs/bf16/lora/s128/b1/nockpt", "memory": -0.023}],
}


def test_report_and_accuracy_print_the_training_fit(tmp_path: Path) -> None:
    path = write_profile(tmp_path, training=TRAINING)
    text = "\n".join(render_report(load_profile(path)))
    assert "flops_utilization (bf16)" in text and "not fitted" in text
    assert "speed    before   84.0%   after   13.1%" in text
    lines = calibration_accuracy_report(tmp_path)
    assert any("training tokens/s" in line and "13.1%" in line for line in lines)
    assert any("training step memory" in line for line in lines)


def test_committed_profile_has_a_training_fit() -> None:
    profiles = [load_profile(p) for p in sorted(REPO_PROFILES.glob("*.json"))]
    profiles = [p for p in profiles if "training" in p.raw]  # a distributed profile has none
    if not profiles:
        pytest.skip("no committed profile")
    training = profiles[0].raw["training"]
    assert training["heldout_error"]["memory"]["after"] <= 0.05
    assert training["heldout_error"]["speed"]["after"] < training["heldout_error"]["speed"]["before"]


def test_train_uses_the_fitted_utilisation_only_on_the_profiles_device() -> None:
    """The training FLOP utilisation is relative to the profile device's measured matmul roof:
    applied with --gpu local, not to another GPU's datasheet."""
    from vramest.training import estimate_training

    profile = str(PROFILE_DIR /
                  "cpu-amd-epyc-1-thread.json")
    kw = dict(model="qwen2.5-0.5b", method="full", precision="bf16", seq=256)
    local = estimate_training(gpu="local", profile=profile, **kw)
    fitted = json.loads(Path(profile).read_text())["training"]["precision_constants"]["bf16"]
    assert local.throughput.source.startswith(f"{fitted['flops_utilization']:g}")
    elsewhere = estimate_training(gpu="h100", profile=profile, **kw)
    shipped = estimate_training(gpu="h100", **kw)
    assert elsewhere.throughput.tokens_per_s_per_gpu == shipped.throughput.tokens_per_s_per_gpu
