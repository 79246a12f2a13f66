"""pytest plugin: assert a capacity spec in one line.

    def test_capacity(vramest_capacity):
        vramest_capacity("capacity.toml")

Installed with vramest (the `pytest11` entry point), or enable it with `-p vramest.pytest_plugin`.
A relative spec or baseline path is looked up beside the test file first, then in the current
folder. A failing deployment fails the test with its reasons; an invalid spec fails it with every
problem found.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from vramest.capacity import CapacitySpec, CheckReport

CapacityCheck = Callable[..., "CheckReport"]


def _beside(test_dir: Path, path: str | os.PathLike[str]) -> Path:
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate
    local = test_dir / candidate
    return local if local.exists() else candidate


@pytest.fixture
def vramest_capacity(request: pytest.FixtureRequest) -> CapacityCheck:
    """A function: vramest_capacity(spec, baseline=None, tolerance="5%") -> CheckReport that
    fails the test unless every deployment passes."""
    test_dir = Path(str(request.node.path)).parent

    def check_capacity(spec: str | os.PathLike[str] | Mapping[str, Any] | CapacitySpec, *,
                       baseline: str | os.PathLike[str] | None = None,
                       tolerance: str | float = "5%") -> CheckReport:
        from vramest.capacity import check, failure_message
        from vramest.errors import InputError

        if isinstance(spec, (str, os.PathLike)):
            spec = _beside(test_dir, spec)
        if baseline is not None:
            baseline = _beside(test_dir, baseline)
        try:
            report = check(spec, baseline=baseline, tolerance=tolerance)
        except InputError as exc:
            pytest.fail(f"capacity spec cannot be checked:\n{exc}", pytrace=False)
        if not report.passed:
            pytest.fail(failure_message(report), pytrace=False)
        return report

    return check_capacity
