"""Derive the default throughput constants from the published rows (vramest/validation/reference).

Fits the device-class efficiencies, the small-GEMM law and each engine's fixed costs, a few
constants in all, never one per row; prints the values to copy into vramest/inference/constants.py and
vramest/inference/engines/speed.py, with leave-one-source-out errors so over-fitting would show.

Run: .venv/bin/python scripts/fit_published.py
"""

from __future__ import annotations

import statistics

from vramest.calibration.least_squares import Parameter, fit, mean_abs_log_error, median_abs_log_error
from vramest.frozen import replace
from vramest.inference.constants import DEFAULTS, Constants
from vramest.inference.engines.speed import ENGINES, Engine
from vramest.validation.accuracy import SpeedRow, predict_speed, speed_rows

PARAMETERS = [
    # Efficiencies are capped at 0.95: even a plain copy kernel does not reach datasheet peak.
    Parameter("memory_efficiency_gpu", DEFAULTS.memory_efficiency_gpu, 0.3, 0.95),
    Parameter("compute_efficiency_gpu", DEFAULTS.compute_efficiency_gpu, 0.1, 0.95),
    Parameter("memory_efficiency_apple", DEFAULTS.memory_efficiency_apple, 0.3, 0.95),
    Parameter("gemm_half_efficiency_rows", DEFAULTS.gemm_half_efficiency_rows, 1.0, 2000.0),
    Parameter("hf.step_overhead_s", ENGINES["hf"].step_overhead_s, 1e-5, 0.05),
    Parameter("hf.layer_overhead_s", ENGINES["hf"].layer_overhead_s, 1e-6, 0.005),
    Parameter("llamacpp.step_overhead_s", ENGINES["llamacpp"].step_overhead_s, 1e-5, 0.05),
    Parameter("llamacpp.layer_overhead_s", ENGINES["llamacpp"].layer_overhead_s, 1e-7, 0.005),
    Parameter("llamacpp-cli.step_overhead_s", ENGINES["llamacpp-cli"].step_overhead_s, 1e-5,
              0.05),
    Parameter("trtllm.step_overhead_s", ENGINES["trtllm"].step_overhead_s, 1e-5, 0.05),
]


def apply(values: dict[str, float]) -> tuple[Constants, dict[str, Engine]]:
    constants = DEFAULTS.with_values({k: v for k, v in values.items() if "." not in k})
    engines = dict(ENGINES)
    for key, value in values.items():
        if "." in key:
            name, field = key.split(".")
            engines[name] = replace(engines[name], **{field: value})
            if name == "llamacpp":  # the CLI and the bench run the same kernels
                engines["llamacpp-cli"] = replace(engines["llamacpp-cli"], **{field: value}) \
                    if field != "step_overhead_s" else engines["llamacpp-cli"]
    return constants, engines


def loss_on(rows: list[SpeedRow]):  # type: ignore[no-untyped-def]
    """Prefill and decode weigh the same, however many rows each has."""
    by_phase = {phase: [r for r in rows if _phase(r) == phase] for phase in ("prefill", "decode")}

    def loss(values: dict[str, float]) -> float:
        constants, engines = apply(values)
        total = 0.0
        for phase_rows in by_phase.values():
            predicted = [predict_speed(r.case, r.metric, constants, engines) or 1e-9
                         for r in phase_rows]
            measured = [r.measured for r in phase_rows]
            # the median is what the tests hold; the mean keeps the rest from drifting
            total += median_abs_log_error(predicted, measured) + \
                0.25 * mean_abs_log_error(predicted, measured)
        return total / len(by_phase)
    return loss


def median_error(rows: list[SpeedRow], values: dict[str, float], phase: str) -> float:
    constants, engines = apply(values)
    errors = [abs((predict_speed(r.case, r.metric, constants, engines) or 0) / r.measured - 1)
              for r in rows if _phase(r) == phase]
    return statistics.median(errors) if errors else float("nan")


def _phase(row: SpeedRow) -> str:
    return "prefill" if row.metric in ("prefill_tps", "prefill_tps_aggregate",
                                       "prefill_latency", "ttft") else "decode"


def main() -> None:
    rows, _ = speed_rows()
    result = fit(PARAMETERS, loss_on(rows), max_evaluations=1500)
    print(f"loss {result.loss_before:.4f} -> {result.loss_after:.4f} "
          f"({result.evaluations} evaluations, {len(rows)} rows)")
    for name, value in result.values.items():
        print(f"  {name} = {value:.6g}")
    initial = {p.name: p.initial for p in PARAMETERS}
    for phase in ("prefill", "decode"):
        print(f"median |error| {phase}: before {median_error(rows, initial, phase):.1%}, "
              f"after {median_error(rows, result.values, phase):.1%}")
    print("leave one source out (fit without it, score it):")
    for source in sorted({r.source for r in rows}):
        train = [r for r in rows if r.source != source]
        held = [r for r in rows if r.source == source]
        values = fit(PARAMETERS, loss_on(train), max_evaluations=600).values
        print(f"  {source:40} prefill {median_error(held, values, 'prefill'):7.1%}  "
              f"decode {median_error(held, values, 'decode'):7.1%}  ({len(held)} rows)")


if __name__ == "__main__":
    main()
