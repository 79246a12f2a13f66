"""Fit the estimator's named constants to the measurements, and score the fit on held-out points.

Torch-free: it needs only the records (JSON) and the device's measured roofs. Predictions run
the estimator's own code — `estimate_for` for memory, `workload` + `time_workload` for speed —
so a fitted constant means in an estimate exactly what it meant here.

- memory: the peak of live tensor bytes over the prefill and the decode, predicted as weights
  + KV cache (as transformers holds it) + activations; fitted: the activation factors.
- speed: prefill and decode tokens/s of transformers `generate()` (the "hf" engine); fitted:
  the CPU/GPU memory and compute efficiencies relative to the *measured* roofs, the small-GEMM
  half-efficiency rows, and the hf engine's per-step and per-layer costs.
- runtime overhead: the median of (device or process memory − tracked tensor bytes).
Cross-validation leaves one model family out at a time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from vramest.calibration.least_squares import Parameter, fit, mean_abs_log_error, median_abs_log_error
from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.hardware.database import Device
from vramest.inference.constants import DEFAULTS, Constants
from vramest.inference.engines.speed import ENGINES, Engine

if TYPE_CHECKING:
    from typing import Any

METRICS = ("memory", "decode", "prefill")
SPEED_DTYPES = ("fp32", "bf16", "fp16")  # bitsandbytes points count in memory only
DTYPE_FORMATS = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "int8": "int8", "nf4": "nf4"}
MEMORY_PARAMETERS = ("activation_ffn_factor", "activation_hidden_factor",
                     "activation_fused_ffn_factor")
ENGINE_PARAMETERS = ("hf.step_overhead_s", "hf.layer_overhead_s")


def speed_parameter_names(kind: str) -> tuple[str, ...]:
    cls = "cpu" if kind == "cpu" else "gpu"
    return (f"memory_efficiency_{cls}", f"compute_efficiency_{cls}", "gemm_half_efficiency_rows",
            *ENGINE_PARAMETERS)


@frozen
class Calibrated:
    """Constants and the hf engine as a profile sets them."""

    constants: Constants
    engine: Engine

    def values(self, names: Sequence[str]) -> dict[str, float]:
        return {name: _get(self, name) for name in names}


def _get(c: Calibrated, name: str) -> float:
    if name.startswith("hf."):
        return float(getattr(c.engine, name[3:]))
    return float(getattr(c.constants, name))


def with_values(base: Calibrated, values: dict[str, float]) -> Calibrated:
    plain = {k: v for k, v in values.items() if not k.startswith("hf.")}
    engine_values: dict[str, Any] = {k[3:]: v for k, v in values.items() if k.startswith("hf.")}
    return Calibrated(base.constants.with_values(plain) if plain else base.constants,
                      replace(base.engine, **engine_values) if engine_values else base.engine)


SHIPPED = Calibrated(DEFAULTS, ENGINES["hf"])


def roofs_device(name: str, kind: str, memory_bytes: int, roofs: dict[str, Any]) -> Device:
    """The device as its measured roofs describe it. Every 16-bit format computes at the
    measured bf16 rate unless fp16 was measured too (the throughput model files all 16-bit
    matmuls under "fp16")."""
    flops = {k: float(v) / 1e12 for k, v in roofs["matmul_flops"].items()}
    if "fp16" not in flops and "bf16" in flops:
        flops["fp16"] = flops["bf16"]
    return Device(name=name, aliases=(), vendor="", kind="cpu" if kind == "cpu" else "gpu",
                  device_class="cpu" if kind == "cpu" else "measured", memory_bytes=memory_bytes,
                  bandwidth_bytes_s=float(roofs["bandwidth_bytes_s"]),
                  dense_tflops=tuple(sorted(flops.items())),
                  source="measured by vramest calibrate (torch matmul and copy)")


# --- predictions -------------------------------------------------------------------------------
@frozen
class Case:
    """One measured point, with everything constant-free about its prediction precomputed."""

    key: str
    family: str
    dtype: str
    parameters: int
    measured: dict[str, float]  # metric → measured value
    info: Any  # vramest.inference.estimate.ModelInfo
    prompt: int
    batch: int
    gen: int
    workload: Any  # vramest.inference.throughput.Workload


def measured_memory(record: dict[str, Any]) -> float:
    memory = record["memory"]
    return float(max(memory["prefill"]["peak_bytes"], memory["decode"]["peak_bytes"]))


def is_training(record: dict[str, Any]) -> bool:
    """A training-grid record (vramest.calibration.train_fit fits those)."""
    return (record.get("point") or {}).get("task") == "train"


def record_model(record: dict[str, Any]) -> Any:
    """The vramest.inference.estimate.ModelInfo of the small model a measured record was run on."""
    from vramest.model.resolve import ModelInfo
    from vramest.model.shapes import shape_from_config

    point = record["point"]
    shape = shape_from_config(record["config"], f"{point['family']}-{point['size']}",
                              origin="calibration")
    return ModelInfo(name=shape.name, source="config", origin="calibration", shape=shape,
                     params=shape.param_count(), active_params=shape.active_param_count())


def make_cases(records: Sequence[dict[str, Any]], device: Device) -> list[Case]:
    from vramest.inference.throughput import workload
    from vramest.model.precisions import default_kv_format, weight_format

    cases = []
    for record in records:
        if record.get("status") != "ok" or is_training(record):
            continue
        try:
            point = record["point"]
            info = record_model(record)
            shape = info.shape
            fmt = weight_format(DTYPE_FORMATS[point["dtype"]])
            load = workload(shape, fmt, default_kv_format(fmt), device, batch=point["batch"],
                            prompt_tokens=point["prompt"], gen_tokens=point["gen"])
            speed = record["speed"]
            cases.append(Case(
                key=record["key"], family=point["family"], dtype=point["dtype"],
                parameters=int(record.get("parameters") or shape.param_count()),
                measured={"memory": measured_memory(record),
                          "decode": float(speed["decode_tokens_per_s"]),
                          "prefill": float(speed["prefill_tokens_per_s"])},
                info=info, prompt=point["prompt"], batch=point["batch"], gen=point["gen"],
                workload=load))
        except MALFORMED_RECORD:
            continue  # a point whose figures do not read is left out of the fit
    return cases


# what a record with missing or mistyped figures raises while it is turned into a case
MALFORMED_RECORD = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, IndexError)


def predict_memory(case: Case, constants: Constants) -> float:
    """Peak tensor bytes: the larger of the prefill (weights + KV of the prompt as transformers
    holds it + one forward's activations) and the last decode step (weights + KV of the whole
    sequence + one token's activations)."""
    from vramest.inference.estimate import estimate_for
    from vramest.inference.memory import kv_part
    from vramest.model.precisions import kv_format
    from vramest.tracing.inference import transformers_prefill_kv_bytes

    dtype = DTYPE_FORMATS[case.dtype]
    prefill = estimate_for(case.info, dtype=dtype, ctx=case.prompt, batch=case.batch,
                           prefill_chunk=case.prompt, constants=constants)
    kv = kv_format(prefill.settings.kv_dtype)
    shape = case.info.shape
    prefill_bytes = (prefill.memory.weights.bytes + prefill.memory.activations.bytes
                     + transformers_prefill_kv_bytes(shape, kv.bytes_per_element, case.prompt,
                                                     case.prompt, case.batch))
    total = case.prompt + case.gen - 1
    step = estimate_for(case.info, dtype=dtype, ctx=total, batch=case.batch, prefill_chunk=1,
                        constants=constants)
    decode_bytes = (step.memory.weights.bytes + step.memory.activations.bytes
                    + kv_part(shape, kv, total, case.batch).bytes)
    return float(max(prefill_bytes, decode_bytes))


def predict_speed(case: Case, device: Device, calibrated: Calibrated) -> tuple[float, float]:
    """(decode tokens/s per sequence, prefill tokens/s) of generate() at this point."""
    from vramest.inference.throughput import time_workload

    speed = time_workload(case.workload, device, calibrated.constants, calibrated.engine)
    return speed.decode_tokens_per_s, speed.prefill_tokens_per_s or 0.0


def predict(case: Case, device: Device, calibrated: Calibrated) -> dict[str, float]:
    decode, prefill = predict_speed(case, device, calibrated)
    return {"memory": predict_memory(case, calibrated.constants), "decode": decode,
            "prefill": prefill}


# --- fitting -----------------------------------------------------------------------------------
def _bounded(name: str, value: float, low: float, high: float) -> Parameter:
    return Parameter(name, min(max(value, low * 1.01), high * 0.99), low, high)


def memory_parameters(start: Calibrated) -> list[Parameter]:
    c = start.constants
    return [_bounded("activation_ffn_factor", c.activation_ffn_factor, 0.25, 12.0),
            _bounded("activation_hidden_factor", c.activation_hidden_factor, 0.25, 16.0),
            _bounded("activation_fused_ffn_factor", c.activation_fused_ffn_factor, 0.25, 12.0)]


def speed_parameters(start: Calibrated, kind: str) -> list[Parameter]:
    names = speed_parameter_names(kind)
    bounds = {names[0]: (0.05, 1.5), names[1]: (0.02, 1.5),
              "gemm_half_efficiency_rows": (0.5, 4000.0),
              "hf.step_overhead_s": (1e-5, 0.2), "hf.layer_overhead_s": (1e-6, 0.02)}
    return [_bounded(n, _get(start, n), *bounds[n]) for n in names]


def _loss(cases: Sequence[Case], metrics: Sequence[str], device: Device, base: Calibrated
          ) -> Callable[[dict[str, float]], float]:
    def loss(values: dict[str, float]) -> float:
        calibrated = with_values(base, values)
        total = 0.0
        for metric in metrics:
            predicted, measured = [], []
            for case in cases:
                if metric == "memory":
                    predicted.append(predict_memory(case, calibrated.constants))
                else:
                    decode, prefill = predict_speed(case, device, calibrated)
                    predicted.append(decode if metric == "decode" else prefill)
                measured.append(case.measured[metric])
            # the median is what is reported; the mean keeps the tails from drifting
            total += median_abs_log_error(predicted, measured) + \
                0.5 * mean_abs_log_error(predicted, measured)
        return total / len(metrics)
    return loss


def precision_group(dtype: str) -> str:
    """Speed constants are fitted per compute precision: fp32, or the 16-bit formats (bf16;
    fp16 on devices that run it; bitsandbytes formats compute in bf16)."""
    return dtype if dtype in ("fp32", "fp16") else "bf16"


def fit_constants(cases: Sequence[Case], device: Device, kind: str,
                  base: Calibrated = SHIPPED, max_evaluations: int = 500
                  ) -> tuple[Calibrated, dict[str, Calibrated]]:
    """Memory constants fitted on every point's memory; speed constants (efficiencies, GEMM
    rows, hf step and layer costs) on prefill and decode speed, separately per precision.
    Returns the memory-fitted constants and, per precision group, the fully fitted ones."""
    memory_fit = fit(memory_parameters(base), _loss(cases, ("memory",), device, base),
                     max_evaluations=max_evaluations // 2)
    fitted = with_values(base, memory_fit.values)
    by_precision: dict[str, Calibrated] = {}
    for group in sorted({c.dtype for c in cases if c.dtype in SPEED_DTYPES}):
        speed_cases = [c for c in cases if c.dtype == group]
        speed_fit = fit(speed_parameters(fitted, kind),
                        _loss(speed_cases, ("decode", "prefill"), device, fitted),
                        max_evaluations=max_evaluations)
        by_precision[group] = with_values(fitted, speed_fit.values)
    return fitted, by_precision


def for_dtype(memory_fitted: Calibrated, by_precision: dict[str, Calibrated],
              dtype: str) -> Calibrated:
    return by_precision.get(precision_group(dtype), memory_fitted)


def runtime_overhead_bytes(records: Sequence[dict[str, Any]], kind: str) -> int | None:
    """Memory the process or device holds beyond the tensors: on CUDA, NVML's used memory minus
    the allocator's reserved peak; on CPU, the RSS minus the live tensor bytes. The median over
    points is its least-absolute-deviation fit."""
    gaps = []
    for record in records:
        if record.get("status") != "ok" or is_training(record):
            continue
        decode = record["memory"]["decode"]
        if kind == "cuda":
            used, reserved = record["memory"].get("device_used_after"), decode.get(
                "allocator_max_reserved")
            if used and reserved:
                gaps.append(used - reserved)
        elif decode.get("rss"):
            gaps.append(decode["rss"] - decode["peak_bytes"])
    return int(statistics.median(gaps)) if gaps else None


# --- scoring -----------------------------------------------------------------------------------
def relative_errors(cases: Sequence[Case], predictions: Sequence[dict[str, float]],
                    metric: str) -> list[float]:
    return [p[metric] / c.measured[metric] - 1 for c, p in zip(cases, predictions, strict=True)
            if c.measured[metric] > 0]


def median_abs(errors: Sequence[float]) -> float:
    return statistics.median(abs(e) for e in errors) if errors else math.nan


@frozen
class FitOutcome:
    fitted: Calibrated  # memory constants
    by_precision: dict[str, Calibrated]  # + speed constants, per precision group
    heldout_error: dict[str, dict[str, float]]  # metric → {before, after}
    heldout_scheme: str
    residuals: list[dict[str, Any]]  # per point: prediction error after the final fit


def heldout_json(outcome: FitOutcome | Any) -> dict[str, Any]:
    """A fit's held-out scheme, errors (rounded) and residuals, as a profile stores them (the
    inference fit and the training fit alike)."""
    return {"heldout_scheme": outcome.heldout_scheme,
            # null where nothing could be held out (one model measured): JSON has no NaN
            "heldout_error": {m: {k: round(v, 5) if math.isfinite(v) else None
                                  for k, v in e.items()}
                              for m, e in outcome.heldout_error.items()},
            "residuals": outcome.residuals}


def calibrate(cases: Sequence[Case], device: Device, kind: str,
              max_evaluations: int = 500) -> FitOutcome:
    """Fit on everything; held-out errors from leave-one-family-out folds (with a single
    family, leave-one-size-out)."""
    groups = sorted({c.family for c in cases})
    scheme = "leave one model family out"
    group_of: Callable[[Case], str] = lambda c: c.family  # noqa: E731
    if len(groups) < 2:
        groups = sorted({c.key.split("/")[1] for c in cases})
        scheme = "leave one model size out"
        group_of = lambda c: c.key.split("/")[1]  # noqa: E731
    held_cases: list[Case] = []
    held_after: list[dict[str, float]] = []
    for group in groups if len(groups) >= 2 else []:
        train = [c for c in cases if group_of(c) != group]
        test = [c for c in cases if group_of(c) == group]
        fold, fold_speed = fit_constants(train, device, kind, max_evaluations=max_evaluations)
        held_cases.extend(test)
        held_after.extend(predict(c, device, for_dtype(fold, fold_speed, c.dtype)) for c in test)
    before = [predict(c, device, SHIPPED) for c in held_cases]
    heldout: dict[str, dict[str, float]] = {}
    for metric in METRICS:
        cases_m = [c for c in held_cases if metric == "memory" or c.dtype in SPEED_DTYPES]
        index = [i for i, c in enumerate(held_cases) if c in cases_m]
        heldout[metric] = {
            "before": median_abs(relative_errors(cases_m, [before[i] for i in index], metric)),
            "after": median_abs(relative_errors(cases_m, [held_after[i] for i in index], metric)),
            "points": len(cases_m)}
    fitted, by_precision = fit_constants(cases, device, kind, max_evaluations=max_evaluations)
    residuals = []
    for case in cases:
        p = predict(case, device, for_dtype(fitted, by_precision, case.dtype))
        residuals.append({"key": case.key, **{
            m: round(p[m] / case.measured[m] - 1, 5) for m in METRICS if case.measured[m] > 0}})
    return FitOutcome(fitted, by_precision, heldout, scheme, residuals)
