"""A tiny calibration end to end on real CPU tensors (seconds): measure, fit, write the profile,
resume after an interruption, and survive a simulated out-of-memory."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from vramest.calibration import measure
from vramest.calibration.device import Backend, oom_error_type
from vramest.calibration.grid import GridPoint, TrainPoint
from vramest.calibration.harness import RunOptions, run_calibration
from vramest.calibration.profile import load_profile
from vramest.calibration.store import measurements_path, read_records

pytestmark = pytest.mark.slow

POINTS = [GridPoint("llama", "xs", "fp32", 16, 1, 3), GridPoint("llama", "xs", "fp32", 32, 2, 3),
          GridPoint("gpt2", "xs", "fp32", 16, 1, 3), GridPoint("gpt2", "xs", "fp32", 24, 1, 3)]
TRAIN = [TrainPoint("llama", "xs", "bf16", "full", 16, 1, False),
         TrainPoint("qwen2", "xs", "bf16", "full", 16, 1, True),
         *([TrainPoint("llama", "xs", "bf16", "lora", 16, 1, True),
            TrainPoint("qwen2", "xs", "bf16", "lora", 16, 1, False)]
           if importlib.util.find_spec("peft") else
           [TrainPoint("llama", "xs", "fp32", "full", 16, 1, False)])]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def options(tmp_path: Path, cache: Path) -> RunOptions:
    return RunOptions(profile_path=tmp_path / "cpu.json", cache_dir=cache,
                      grid=lambda floats, quants: list(POINTS), grid_name="test", quantized=False,
                      train_grid=lambda qlora: list(TRAIN),
                      fit_evaluations=60, timed_repeats=1, timing_budget_s=0.0, roof_seconds=0.02)


def point_records(path: Path) -> list[dict[str, Any]]:
    return [r for r in read_records(measurements_path(path)) if r.get("kind") == "point"]


def test_interrupted_run_resumes_and_an_oom_is_skipped(
        tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    opts = options(tmp_path, model_cache)
    real = measure.measure_point
    calls: list[str] = []

    def interrupted(point: GridPoint, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if point == POINTS[2]:
            raise KeyboardInterrupt  # the user stops the run at the third point
        calls.append(point.key)
        return real(point, *args, **kwargs)

    monkeypatch.setattr(measure, "measure_point", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_calibration(Backend("cpu"), opts)
    assert [r["key"] for r in point_records(opts.profile_path)] == [p.key for p in POINTS[:2]]
    assert not opts.profile_path.exists()

    def out_of_memory_once(point: GridPoint, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(point.key)
        if point == POINTS[3]:
            raise oom_error_type()("simulated: tried to allocate 80.00 GiB")
        return real(point, *args, **kwargs)

    monkeypatch.setattr(measure, "measure_point", out_of_memory_once)
    profile = run_calibration(Backend("cpu"), opts)
    # the resumed run measured only what was missing
    assert calls == [POINTS[0].key, POINTS[1].key, POINTS[2].key, POINTS[3].key]
    records = {r["key"]: r for r in point_records(opts.profile_path)}
    assert records[POINTS[3].key]["status"] == "oom"
    assert "80.00 GiB" in records[POINTS[3].key]["reason"]
    assert profile["points_ok"] == 3 and profile["points_failed"] == 1
    assert "[" in capsys.readouterr().err  # the progress bar

    loaded = load_profile(opts.profile_path)
    for metric in ("memory", "decode", "prefill"):
        assert set(loaded.heldout_error[metric]) >= {"before", "after"}
    assert loaded.device["kind"] == "cpu" and loaded.device["threads"] >= 1
    assert loaded.raw["measurements"] == measurements_path(opts.profile_path).name
    assert "fp32" in loaded.precision_constants
    # the training grid: measured after the inference points, fitted under its own key
    training = loaded.raw["training"]
    assert training["points_ok"] == len(TRAIN) and training["qlora_support"].startswith("not tried")
    assert set(training["heldout_error"]) == {"memory", "speed"}
    assert "bf16" in training["precision_constants"]
    step = records[TRAIN[-1].key]
    assert step["trainable_parameters"] > 0 and step["memory"]["peak_bytes"] > 0
    assert step["speed"]["tokens_per_s"] > 0 and step["point"]["task"] == "train"

    ok = records[POINTS[0].key]
    assert ok["generated_tokens"] == POINTS[0].gen  # no early stop at EOS
    memory = ok["memory"]
    assert memory["prefill"]["kv_cache_bytes"] > 0 and memory["prefill"]["params_bytes"] > 0
    assert memory["prefill"]["peak_bytes"] >= memory["prefill"]["params_bytes"]
    assert memory["decode"]["rss"] > memory["decode"]["peak_bytes"]  # RSS cross-check recorded
    # the tracked parameter bytes are the model's own (+ the rotary embedding's buffer)
    assert 0 <= memory["load"]["params_bytes"] - 4 * ok["parameters"] < 4096


def test_tracker_counts_nf4_quantization_state(model_cache: Path) -> None:
    pytest.importorskip("bitsandbytes")
    backend = Backend("cpu")
    point = GridPoint("llama", "xs", "nf4", 8, 1, 2)
    try:
        loaded = measure.load_model(point, backend, model_cache)
    except Exception as exc:  # bitsandbytes without CPU support: nothing to check here
        pytest.skip(f"nf4 does not load on this CPU: {exc}")
    absmax = 0
    for param in loaded.model.parameters():
        state = getattr(param, "quant_state", None)
        if state is not None:
            absmax += state.absmax.numel() * state.absmax.element_size()
    assert absmax > 0
    params_only = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    assert loaded.load["params_bytes"] >= params_only + absmax
