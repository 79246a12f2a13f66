from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from vramest.validation import REFERENCE_DIR

# Property tests draw the same examples on every run and machine, so a CI run checks what the
# last local run checked (two serving properties once failed in CI on fresh random draws).
# HYPOTHESIS_PROFILE=explore draws new ones; `make fuzz` runs the input fuzzers at length.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE_DIR


@pytest.fixture(autouse=True)
def _no_stored_profiles(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Estimates pick up a stored calibration profile of this machine when one exists; tests
    judge the shipped constants, so they look in an empty directory."""
    monkeypatch.setenv("VRAMEST_PROFILE_DIR", str(tmp_path_factory.mktemp("no-profiles")))
