"""Fit the training model's constants to the training grid, and score the fit on held-out
families. Torch-free: it reads records and runs `vramest.training.estimate_training`.

- memory: the steady-state step's peak of live tensor bytes (parameters, gradients, AdamW
  states, activations, logits and loss buffers; no CUDA context on a CPU) against the
  estimate's peak moment. Fitted, only where the shipped constants miss by more than
  `MEMORY_FIT_THRESHOLD`: the loss buffers per logit and the backward copies of the FFN width
  (the two per-token factors that have a physical meaning).
- speed: tokens/s of the timed steps against `flops_utilization` × the device's measured
  matmul FLOP/s (per precision) ÷ the estimate's FLOPs per token; the utilization is fitted
  per precision as the median ratio (the least-absolute-log-error fit of a scale).
QLoRA points count in memory only: their dequantising kernels are not matmul FLOPs.
Cross-validation leaves one model family out at a time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from vramest.calibration.fit import MALFORMED_RECORD, heldout_json, is_training, record_model
from vramest.calibration.least_squares import Parameter, fit, mean_abs_log_error, median_abs_log_error
from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.training.constants import TRAINING_DEFAULTS, TrainingConstants

if TYPE_CHECKING:
    from typing import Any

TRAIN_METRICS = ("memory", "speed")
MEMORY_CONSTANTS = ("loss_fp32_buffers", "backward_ffn_copies")
MEMORY_BOUNDS = {"loss_fp32_buffers": (0.5, 8.0), "backward_ffn_copies": (0.25, 8.0)}
MEMORY_FIT_THRESHOLD = 0.03  # median |error| of the shipped constants that warrants a fit
SPEED_METHODS = ("full", "lora")


@frozen
class TrainCase:
    key: str
    family: str
    dtype: str
    method: str
    measured: dict[str, float]  # memory bytes, tokens/s
    info: Any  # vramest.inference.estimate.ModelInfo
    settings: dict[str, Any]  # estimate_training keywords
    roof_flops: float  # measured matmul FLOP/s of the compute precision


def make_train_cases(records: Sequence[dict[str, Any]], roofs: dict[str, Any]) -> list[TrainCase]:
    from vramest.tracing.training import analytic_settings

    flops = roofs.get("matmul_flops", {})
    cases = []
    for record in records:
        if record.get("status") != "ok" or not is_training(record):
            continue
        try:
            p = record["point"]
            info = record_model(record)
            cases.append(TrainCase(
                key=record["key"], family=p["family"], dtype=p["dtype"], method=p["method"],
                measured={"memory": float(record["memory"]["peak_bytes"]),
                          "speed": float(record["speed"]["tokens_per_s"])},
                info=info, settings=analytic_settings(p["dtype"], p["method"], p["seq"],
                                                      p["micro_batch"], "sdpa",
                                                      p["checkpointing"]),
                roof_flops=float(flops.get("fp32" if p["dtype"] == "fp32" else "bf16", 0.0))))
        except MALFORMED_RECORD:
            continue  # a step whose figures do not read is left out of the fit
    return cases


def predict_train(case: TrainCase, constants: TrainingConstants) -> dict[str, float]:
    """Peak tensor bytes of the step and tokens/s at the measured roof."""
    from vramest.training import estimate_training

    est = estimate_training(info=case.info, constants=constants, **case.settings)
    speed = constants.flops_utilization * case.roof_flops / est.throughput.flops_per_token
    return {"memory": float(est.peak.total), "speed": speed}


def has_speed(case: TrainCase) -> bool:
    return case.method in SPEED_METHODS and case.roof_flops > 0 and case.measured["speed"] > 0


def precision_group(dtype: str) -> str:
    return "fp32" if dtype == "fp32" else "bf16"


@frozen
class TrainFit:
    memory: TrainingConstants  # memory constants (shipped where no fit was warranted)
    utilization: dict[str, float]  # precision group → flops_utilization
    memory_fitted: bool

    def for_dtype(self, dtype: str) -> TrainingConstants:
        group = precision_group(dtype)
        if group not in self.utilization:
            return self.memory
        return replace(self.memory, flops_utilization=self.utilization[group])


def _memory_loss(cases: Sequence[TrainCase],
                 base: TrainingConstants) -> Callable[[dict[str, Any]], float]:
    measured = [c.measured["memory"] for c in cases]

    def loss(values: dict[str, Any]) -> float:
        constants = replace(base, **values)
        predicted = [predict_train(c, constants)["memory"] for c in cases]
        return median_abs_log_error(predicted, measured) + 0.5 * mean_abs_log_error(predicted, measured)
    return loss


def fit_training(cases: Sequence[TrainCase], base: TrainingConstants = TRAINING_DEFAULTS,
                 max_evaluations: int = 200) -> TrainFit:
    """Memory constants where the shipped ones miss by more than the threshold; the speed
    utilization per precision as the median of measured / predicted-at-utilization-1."""
    memory = base
    fitted = False
    errors = [abs(predict_train(c, base)["memory"] / c.measured["memory"] - 1) for c in cases]
    if errors and statistics.median(errors) > MEMORY_FIT_THRESHOLD:
        start = [Parameter(n, getattr(base, n), *MEMORY_BOUNDS[n]) for n in MEMORY_CONSTANTS]
        result = fit(start, _memory_loss(cases, base), max_evaluations=max_evaluations)
        memory, fitted = replace(base, **dict[str, Any](result.values)), True
    unit = replace(memory, flops_utilization=1.0)
    utilization: dict[str, float] = {}
    for group in sorted({precision_group(c.dtype) for c in cases if has_speed(c)}):
        ratios = [math.log(c.measured["speed"] / predict_train(c, unit)["speed"])
                  for c in cases if has_speed(c) and precision_group(c.dtype) == group]
        utilization[group] = math.exp(statistics.median(ratios))
    return TrainFit(memory, utilization, fitted)


def _median_abs(errors: Sequence[float]) -> float:
    return statistics.median(abs(e) for e in errors) if errors else math.nan


@frozen
class TrainOutcome:
    fitted: TrainFit
    heldout_error: dict[str, dict[str, float]]  # metric → {before, after, points}
    heldout_scheme: str
    residuals: list[dict[str, Any]]


def calibrate_training(cases: Sequence[TrainCase], max_evaluations: int = 200) -> TrainOutcome:
    """Fit on everything; held-out errors from leave-one-family-out folds."""
    families = sorted({c.family for c in cases})
    held: list[tuple[TrainCase, dict[str, float]]] = []
    for family in families if len(families) >= 2 else []:
        fold = fit_training([c for c in cases if c.family != family],
                            max_evaluations=max_evaluations)
        held.extend((c, predict_train(c, fold.for_dtype(c.dtype)))
                    for c in cases if c.family == family)
    heldout: dict[str, dict[str, float]] = {}
    for metric in TRAIN_METRICS:
        rows = [(c, p) for c, p in held if metric == "memory" or has_speed(c)]
        before = [predict_train(c, TRAINING_DEFAULTS)[metric] / c.measured[metric] - 1
                  for c, _ in rows]
        after = [p[metric] / c.measured[metric] - 1 for c, p in rows]
        heldout[metric] = {"before": _median_abs(before), "after": _median_abs(after),
                           "points": len(rows)}
    fitted = fit_training(cases, max_evaluations=max_evaluations)
    residuals = []
    for case in cases:
        p = predict_train(case, fitted.for_dtype(case.dtype))
        residuals.append({"key": case.key, **{m: round(p[m] / case.measured[m] - 1, 5)
                                              for m in TRAIN_METRICS
                                              if m == "memory" or has_speed(case)}})
    return TrainOutcome(fitted, heldout, "leave one model family out", residuals)


def training_profile_section(records: Sequence[dict[str, Any]], roofs: dict[str, Any],
                             qlora: str, max_evaluations: int = 200) -> dict[str, Any] | None:
    """The profile's `training` object, or None where no training point was measured."""
    cases = make_train_cases(records, roofs)
    if len(cases) < 3:
        return None
    outcome = calibrate_training(cases, max_evaluations)
    fitted = outcome.fitted
    names = (*MEMORY_CONSTANTS, "flops_utilization")
    points = [r for r in records if r.get("kind") == "point" and is_training(r)]
    return {
        "constants": {n: round(float(getattr(fitted.memory, n)), 6) for n in MEMORY_CONSTANTS},
        "memory_fitted": fitted.memory_fitted,
        "precision_constants": {g: {"flops_utilization": round(u, 6)}
                                for g, u in fitted.utilization.items()},
        "constants_before": {n: getattr(TRAINING_DEFAULTS, n) for n in names},
        "points_ok": len(cases), "points_failed": len(points) - len(cases),
        "qlora_support": qlora,
        **heldout_json(outcome),
        "notes": [
            "memory: the steady-state (second) step's peak of live tensor bytes on real CPU "
            "tensors (vramest.tracing.training), against estimate_training's peak moment without "
            "the CUDA context; LoRA over a 16-bit base is the estimate's mixed precision "
            "(PEFT keeps the adapters in fp32)",
            f"memory constants are fitted only where the shipped ones miss by more than "
            f"{100 * MEMORY_FIT_THRESHOLD:g}% (median); memory_fitted says whether they were",
            "speed: median of timed steps after two traced ones; flops_utilization is "
            "relative to this device's measured matmul roof, per precision; QLoRA points "
            "count in memory only",
        ],
    }
