"""The data files shipped inside the package (catalog, GPUs, tiers, API prices)."""

from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def read_text(name: str) -> str:
    """One shipped file's text (importlib.resources would cost more start-up than the read)."""
    with open(os.path.join(_HERE, name), encoding="utf-8") as f:
        return f.read()
