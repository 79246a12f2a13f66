"""Capacity checks for CI: does each deployment in a spec still fit, with its headroom, and meet
its speed floors (and has it drifted from the accepted baseline)?

>>> report = check("capacity.toml")  # doctest: +SKIP
>>> report.passed, [r.reasons for r in report.failed]  # doctest: +SKIP

Imports only the standard library and vramest itself; estimating happens on first use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from vramest.capacity.baseline import (
    DEFAULT_TOLERANCE,
    Drift,
    baseline_json,
    load_baseline,
    parse_tolerance,
    write_atomically,
)
from vramest.capacity.judge import CheckReport, DeploymentResult, Figures, check, judge, measure
from vramest.capacity.spec import (
    CapacitySpec,
    Deployment,
    Headroom,
    SpecError,
    SpecProblem,
    load_spec,
    parse_spec,
)
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_TOLERANCE", "CapacitySpec", "CheckReport", "Deployment", "DeploymentResult", "Drift",
    "Figures", "Headroom", "SpecError", "SpecProblem", "assert_capacity", "baseline_json", "check",
    "failure_message", "judge", "load_baseline", "load_spec", "measure", "parse_spec", "parse_tolerance",
    "write_baseline",
]


def write_baseline(report: CheckReport, path: str | os.PathLike[str]) -> None:
    """Accept the report's estimates as the new baseline (written atomically)."""
    import json

    text = json.dumps(baseline_json(report.figures_by_name()), indent=2, sort_keys=True) + "\n"
    write_atomically(path, text.encode("utf-8"))


def assert_capacity(spec: str | os.PathLike[str] | Mapping[str, Any] | CapacitySpec, *,
                    baseline: str | os.PathLike[str] | None = None,
                    tolerance: str | float = DEFAULT_TOLERANCE) -> CheckReport:
    """One-line capacity assertion for any test runner: raises AssertionError saying which
    deployments fail and why; returns the report when all pass."""
    report = check(spec, baseline=baseline, tolerance=tolerance)
    if not report.passed:
        raise AssertionError(failure_message(report))
    return report


def failure_message(report: CheckReport) -> str:
    lines = [f"{len(report.failed)} of {len(report.results)} deployments in {report.source} "
             "fail their capacity check:"]
    for result in report.failed:
        lines += [f"  {result.name}: {reason}" for reason in result.reasons]
    return "\n".join(lines)
