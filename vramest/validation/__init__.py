"""Scoring against published measurements (`make accuracy`, the HTML report's comparisons).

The measurements ship inside the package, so an installed vramest scores itself the same way
a checkout does: `reference/` (published rows, each with its source), `traces/` (fake-tensor
traces of the real model code), `profiles/` (committed calibration profiles)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
REFERENCE_DIR = _HERE / "reference"
TRACE_DIR = _HERE / "traces"
PROFILE_DIR = _HERE / "profiles"
