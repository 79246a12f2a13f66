"""Scoring against published measurements (`make accuracy`, the HTML report's comparisons).

The measurements ship inside the package, so an installed vramest scores itself the same way
a checkout does: `reference/` (published rows, each with its source), `traces/` (fake-tensor
traces of the real model code), `profiles/` (committed calibration profiles)."""

from __future__ import annotations

import csv
from pathlib import Path

_HERE = Path(__file__).resolve().parent
REFERENCE_DIR = _HERE / "reference"
TRACE_DIR = _HERE / "traces"
PROFILE_DIR = _HERE / "profiles"


def read_rows(path: Path) -> list[dict[str, str]]:
    """A reference CSV's rows, keyed by its header."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
