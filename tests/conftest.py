from __future__ import annotations

from pathlib import Path

import pytest

from vramest.validation import REFERENCE_DIR


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE_DIR


@pytest.fixture(autouse=True)
def _no_stored_profiles(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Estimates pick up a stored calibration profile of this machine when one exists; tests
    judge the shipped constants, so they look in an empty directory."""
    monkeypatch.setenv("VRAMEST_PROFILE_DIR", str(tmp_path_factory.mktemp("no-profiles")))
