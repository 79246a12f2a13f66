"""Fit named constants to measurements: a robust loss on log errors, minimised by Nelder-Mead.

Pure Python (no numpy), so it runs wherever the estimator runs. Parameters are searched in
log space inside their bounds, so constants of very different scales fit together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from vramest.frozen import frozen


@frozen
class Parameter:
    name: str
    initial: float
    lower: float
    upper: float


@frozen
class FitResult:
    values: dict[str, float]
    loss_before: float
    loss_after: float
    evaluations: int


def mean_abs_log_error(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean |log(predicted / measured)|: minimising it tracks the median relative error."""
    return sum(abs(math.log(max(p, 1e-30) / m)) for p, m in zip(predicted, measured, strict=True)
               ) / max(1, len(predicted))


def median_abs_log_error(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Median |log(predicted / measured)|: the figure the accuracy reports and tests hold."""
    errors = sorted(abs(math.log(max(p, 1e-30) / m)) for p, m in zip(predicted, measured,
                                                                      strict=True))
    if not errors:
        return 0.0
    mid = len(errors) // 2
    return errors[mid] if len(errors) % 2 else (errors[mid - 1] + errors[mid]) / 2


def fit(parameters: Sequence[Parameter], loss: Callable[[dict[str, float]], float],
        max_evaluations: int = 600, tolerance: float = 1e-6) -> FitResult:
    names = [p.name for p in parameters]
    lows = [math.log(p.lower) for p in parameters]
    highs = [math.log(p.upper) for p in parameters]

    def values_of(x: Sequence[float]) -> dict[str, float]:
        return {n: math.exp(min(max(v, lo), hi)) for n, v, lo, hi in zip(names, x, lows, highs,
                                                                         strict=True)}

    evaluations = 0

    def f(x: Sequence[float]) -> float:
        nonlocal evaluations
        evaluations += 1
        return loss(values_of(x))

    start = [math.log(p.initial) for p in parameters]
    simplex = [start] + [[v + (0.3 if i == j else 0.0) for j, v in enumerate(start)]
                         for i in range(len(start))]
    scores = [f(x) for x in simplex]
    before = scores[0]
    while evaluations < max_evaluations:
        order = sorted(range(len(simplex)), key=lambda i: scores[i])
        simplex, scores = [simplex[i] for i in order], [scores[i] for i in order]
        if abs(scores[-1] - scores[0]) < tolerance:
            break
        centroid = [sum(col) / (len(simplex) - 1) for col in zip(*simplex[:-1], strict=True)]
        worst = simplex[-1]
        reflected = [c + (c - w) for c, w in zip(centroid, worst, strict=True)]
        r_score = f(reflected)
        if r_score < scores[0]:
            expanded = [c + 2 * (c - w) for c, w in zip(centroid, worst, strict=True)]
            e_score = f(expanded)
            simplex[-1], scores[-1] = (expanded, e_score) if e_score < r_score else \
                (reflected, r_score)
        elif r_score < scores[-2]:
            simplex[-1], scores[-1] = reflected, r_score
        else:
            contracted = [c + 0.5 * (w - c) for c, w in zip(centroid, worst, strict=True)]
            c_score = f(contracted)
            if c_score < scores[-1]:
                simplex[-1], scores[-1] = contracted, c_score
            else:
                best = simplex[0]
                simplex = [best] + [[b + 0.5 * (v - b) for b, v in zip(best, x, strict=True)]
                                    for x in simplex[1:]]
                scores = [scores[0]] + [f(x) for x in simplex[1:]]
    best_score, best_point = min(zip(scores, simplex, strict=True), key=lambda pair: pair[0])
    return FitResult(values_of(best_point), before, best_score, evaluations)
