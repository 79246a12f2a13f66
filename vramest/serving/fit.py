"""Fit the serving constants per engine and report leave-one-source-out errors.

    python -m vramest.serving.fit > vramest/serving/serving_fit.txt
    python -m vramest.serving.fit --engines >> vramest/serving/serving_fit.txt
    python -m vramest.serving.fit trtllm  # one engine's section only

Eleven constants per engine (per-step seconds, memory and compute efficiency scales, clump
scale, seconds per request before its first token, seconds per all-reduce, seconds per sequence
per step, the per-GPU matmul width at half rate, eager seconds per layer of a step with prompt
tokens, the share of the 16-bit GEMMs' share of peak FP8 GEMMs reach, and seconds per layer of
every step; `_fixed` says which an engine holds at 0, and an engine timing its all-reduces from
a measured table does not fit their latency), fitted by coordinate descent on the log errors
of TPOT, TTFT and offline throughput in vramest/validation/reference/serving_*.csv.
Held-out errors leave one measurement campaign (one engine version on one GPU for one model, or
one published throughput table) out of the fit at a time.
"""

from __future__ import annotations

import math
import statistics
import sys

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, replace
from vramest.serving.engines import (
    FITTED,
    LAYER,
    LAYER_COST_FITTED,
    SERVING_ENGINES,
    ServingEngine,
)
from vramest.serving.reference import (
    Prediction,
    Row,
    engine_with,
    errors,
    median_abs,
    predict,
    rows_for,
)

if TYPE_CHECKING:
    from typing import TextIO

# efficiency scales stay where the efficiency itself stays below 1 (0.78 × 1.25, 0.48 × 2.05)
STEPS = ((0.0, 0.02), (0.3, 1.25), (0.3, 2.05), (0.2, 8.0), (0.0, 0.5), (1e-6, 1e-4),
         (1e-7, 5e-5), (1.0, 2048.0), (0.0, 1e-3), (0.5, 1.0), (0.0, 2e-4))
EAGER = 8  # index of the eager per-layer seconds
GRAPHED_MIXED_STEPS = {"vllm", "llamacpp"}  # no eager cost: fixed at 0, never fitted
ALLREDUCE = 5  # index of the seconds per all-reduce (the ring's latency)


def _fixed(name: str) -> set[int]:
    """Indices of the constants held at 0 for an engine."""
    return ({EAGER} if name in GRAPHED_MIXED_STEPS else set()) | \
        (set() if name in LAYER_COST_FITTED else {LAYER})


def _constants(name: str, params: tuple[float, ...]) -> tuple[float, ...]:
    """`params` with the costs an engine rules out (the eager cost its CUDA graphs cover, a
    server cost its rows do not show) set to 0."""
    return tuple(0.0 if i in _fixed(name) else p for i, p in enumerate(params))


def _loss(preds: list[Prediction]) -> float:
    e = errors(preds)

    def med(v: list[float]) -> float:
        return statistics.median(abs(math.log1p(x)) for x in v) if v else 0.0

    return 2 * med(e["tpot"]) + med(e["ttft"]) + 2 * med(e["max_throughput"])


def _predict_all(rows: list[Row], eng: ServingEngine,
                 own_policy: bool = False) -> list[Prediction]:
    """Each row under `eng`'s constants, with its own engine's scheduler policy and memory
    accounting when `own_policy`; rows whose deployment does not fit are left out."""
    out = []
    for r in rows:
        use = eng
        if own_policy:
            use = replace(SERVING_ENGINES[r.engine], speed=replace(
                SERVING_ENGINES[r.engine].speed, step_overhead_s=eng.speed.step_overhead_s,
                memory_efficiency_scale=eng.speed.memory_efficiency_scale,
                compute_efficiency_scale=eng.speed.compute_efficiency_scale),
                clump_scale=eng.clump_scale, request_overhead_s=eng.request_overhead_s,
                allreduce_latency_s=eng.allreduce_latency_s, seq_overhead_s=eng.seq_overhead_s,
                gemm_half_width=eng.gemm_half_width,
                eager_layer_s=0.0 if r.engine in GRAPHED_MIXED_STEPS else eng.eager_layer_s,
                fp8_gemm_share=eng.fp8_gemm_share)
            if r.engine in LAYER_COST_FITTED:
                use = replace(use, speed=replace(use.speed,
                                                 layer_overhead_s=eng.speed.layer_overhead_s))
        try:
            out.append(predict(r, use))
        except InputError:
            continue
    return out


def fit(rows: list[Row], eng: ServingEngine, start: tuple[float, ...],
        rounds: int = 4, own_policy: bool = False) -> tuple[float, ...]:
    best = list(_constants(eng.name, start) if not own_policy else start)
    best_loss = _loss(_predict_all(rows, engine_with(eng, *best), own_policy))
    scale = 0.75
    for _ in range(rounds):
        for i, (lo, hi) in enumerate(STEPS):
            if i in _fixed(eng.name) and not own_policy:
                continue
            if i == ALLREDUCE and eng.custom_allreduce:  # timed from the measured table
                continue
            for factor in (1 - scale, 1 / (1 - scale), 1 - scale / 3, 1 / (1 - scale / 3)):
                trial = list(best)
                base = trial[i] if trial[i] > 0 else 0.001
                trial[i] = min(hi, max(lo, base * factor))
                loss = _loss(_predict_all(rows, engine_with(eng, *trial), own_policy))
                if loss < best_loss:
                    best, best_loss = trial, loss
        scale /= 2
    return tuple(best)


def _report(label: str, preds: list[Prediction]) -> str:
    e = errors(preds)
    parts = [f"{k} {median_abs(v) * 100:.1f}% (n={len(v)})" for k, v in e.items() if v]
    return f"{label}: " + ", ".join(parts)


def leave_one_engine_out(out: TextIO) -> None:
    """Constants fitted on the other engines' rows (each under its own scheduler policy and
    memory accounting), scored on the held-out engine: how the model transfers to a new one."""
    names = ("vllm", "sglang", "trtllm")
    for name in names:
        eng = SERVING_ENGINES[name]
        train = [r for other in names if other != name for r in rows_for(other)]
        start = tuple(statistics.median(FITTED[o][i] for o in names if o != name)
                      for i in range(len(STEPS)))
        params = fit(train, eng, start, rounds=3, own_policy=True)
        out.write(_report(f"  {name} held out (fitted on the others)",
                          _predict_all(rows_for(name), engine_with(
                              eng, *_constants(name, params)))) + "\n")
        out.flush()


def main() -> int:
    out = sys.stdout
    if sys.argv[1:] == ["--engines"]:
        out.write("== leave-one-engine-out\n")
        leave_one_engine_out(out)
        return 0
    for name in sys.argv[1:] or ("vllm", "sglang", "trtllm"):
        eng = SERVING_ENGINES[name]
        rows = rows_for(name)
        start = FITTED[name]
        out.write(f"== {name}: {len(rows)} rows\n")
        out.write(_report("  shipped constants", _predict_all(rows, eng)) + "\n")
        fitted = fit(rows, eng, start, rounds=6)
        out.write(f"  fitted on all rows: ({', '.join(f'{x:.5g}' for x in fitted)})\n")
        out.write(_report("  in-sample", _predict_all(rows, engine_with(eng, *fitted))) + "\n")
        held: list[Prediction] = []
        for group in sorted({r.group for r in rows}):
            train = [r for r in rows if r.group != group]
            test = [r for r in rows if r.group == group]
            if not train:
                continue
            params = fit(train, eng, fitted, rounds=3)
            held += _predict_all(test, engine_with(eng, *params))
        out.write(_report("  leave-one-source-out", held) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
