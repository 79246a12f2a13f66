"""Baselines: the last accepted estimates per deployment, so drift is caught while it still fits.

A baseline is a JSON file: {"vramest_capacity_baseline": 1, "deployments": {name: {figure:
value}}}. Memory and time to first token may not grow, and decode speed may not drop, by more
than the tolerance.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from vramest.errors import InputError, short
from vramest.frozen import frozen
from vramest.units import format_bytes, parse_share

FORMAT_KEY = "vramest_capacity_baseline"
FORMAT_VERSION = 1
DEFAULT_TOLERANCE = 0.05
# figure → +1 where growth is worse, −1 where a drop is worse
COMPARED_FIGURES: dict[str, int] = {
    "per_gpu_bytes": +1,
    "decode_tokens_per_s": -1,
    "time_to_first_token_s": +1,
    "max_concurrency": -1,  # vLLM: full-context sequences its KV cache holds
}
_LABELS = {"per_gpu_bytes": "memory per GPU", "decode_tokens_per_s": "decode speed",
           "time_to_first_token_s": "time to first token",
           "max_concurrency": "vLLM's full-context concurrency"}
_DIRECTION_WORDS = {("per_gpu_bytes", True): "grew", ("per_gpu_bytes", False): "shrank",
                    ("decode_tokens_per_s", True): "rose",
                    ("decode_tokens_per_s", False): "dropped",
                    ("time_to_first_token_s", True): "grew",
                    ("time_to_first_token_s", False): "shrank",
                    ("max_concurrency", True): "rose", ("max_concurrency", False): "dropped"}

Baseline = Mapping[str, Mapping[str, float]]


@frozen
class Drift:
    """How one figure moved from the baseline."""

    figure: str
    baseline: float
    current: float
    tolerance: float

    @property
    def change(self) -> float:
        """Relative change, positive where the figure grew."""
        return (self.current - self.baseline) / self.baseline if self.baseline else 0.0

    @property
    def exceeded(self) -> bool:
        """Worse than the baseline by more than the tolerance."""
        return self.change * COMPARED_FIGURES[self.figure] > self.tolerance + 1e-12

    def describe(self) -> str:
        word = _DIRECTION_WORDS[(self.figure, self.current >= self.baseline)]
        limit = "beyond" if self.exceeded else "within"
        return (f"{_LABELS[self.figure]} {word} {abs(self.change) * 100:.1f}% "
                f"({_show(self.figure, self.baseline)} → {_show(self.figure, self.current)}), "
                f"{limit} the {self.tolerance * 100:g}% tolerance")

    def to_json(self) -> dict[str, object]:
        return {"figure": self.figure, "baseline": self.baseline, "current": self.current,
                "change": self.change, "exceeded": self.exceeded}


def _show(figure: str, value: float) -> str:
    if figure == "per_gpu_bytes":
        return format_bytes(value)
    if figure == "time_to_first_token_s":
        return f"{value:.3g} s"
    if figure == "max_concurrency":
        return f"{value:.2f}×"
    return f"{value:.1f} tok/s"


def parse_tolerance(value: str | float | int) -> float:
    """'5%', '0.05' or 0.05 as a fraction."""
    if isinstance(value, bool):
        raise InputError("--tolerance must be a percentage such as 5% or a fraction such as 0.05.")
    tolerance = parse_share(value, what="--tolerance", accepted="give a percentage such as 5% or "
                            "a fraction such as 0.05")
    if not 0 <= tolerance <= 10:
        raise InputError(f"--tolerance {short(value)} is out of range; give 0% to 1000%.")
    return tolerance


def compare(current: Mapping[str, float | None], accepted: Mapping[str, float],
            tolerance: float) -> tuple[Drift, ...]:
    """The drift of every compared figure present (and positive) in both."""
    out = []
    for figure in COMPARED_FIGURES:
        now, then = current.get(figure), accepted.get(figure)
        if isinstance(now, (int, float)) and isinstance(then, (int, float)) and then > 0:
            out.append(Drift(figure, float(then), float(now), tolerance))
    return tuple(out)


def baseline_json(figures_by_name: Mapping[str, Mapping[str, float | None]]) -> dict[str, object]:
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "deployments": {name: {k: figures[k] for k in COMPARED_FIGURES if figures.get(k) is not None}
                        for name, figures in figures_by_name.items()},
    }


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    from vramest.files import read_json

    shown = str(path)
    data = read_json(path, what="Baseline", missing="; create it with --update-baseline (or "
                     "leave out --baseline)")
    deployments = data.get("deployments") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get(FORMAT_KEY) != FORMAT_VERSION or \
            not isinstance(deployments, dict):
        raise InputError(f"Baseline {shown} is not a vramest capacity baseline (version "
                         f"{FORMAT_VERSION}); write it with --update-baseline.")
    out: dict[str, dict[str, float]] = {}
    for name, figures in deployments.items():
        if not isinstance(figures, dict):
            raise InputError(f"Baseline {shown}: deployment {short(name)} must be an object of figures.")
        out[name] = {k: float(v) for k, v in figures.items() if k in COMPARED_FIGURES
                     and isinstance(v, (int, float)) and not isinstance(v, bool)
                     and math.isfinite(v)}
    return out


def write_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it over: never half-written."""
    from vramest.files import write_atomic

    write_atomic(path, data)
