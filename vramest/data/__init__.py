"""The data files shipped inside the package (catalog, GPUs, tiers, API prices)."""

from __future__ import annotations

import os
from functools import cache, lru_cache

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))


def read_text(name: str) -> str:
    """One shipped file's text (importlib.resources would cost more start-up than the read)."""
    with open(os.path.join(_HERE, name), encoding="utf-8") as f:
        return f.read()


@cache
def shipped_text(name: str) -> str:
    """A shipped file's text, read once per process."""
    return read_text(name)


def shipped_object(name: str, key: str, value: str) -> dict[str, Any] | None:
    """The object in shipped file `name` that opens with `"key": "value"`, decoded alone, or
    None where no object opens so. The headline command reads 5 catalog entries and 14 GPU rows
    this way instead of decoding whole files; it uses json's C scanner directly, as importing
    the json package (its decoder, encoder and their regular expressions) cost 5.5M of the
    command's 165M instructions (callgrind)."""
    if not value.isprintable() or not value.isascii() or '"' in value or "\\" in value:
        import json  # a value the file would hold escaped: find it as json writes it

        quoted = json.dumps(value)
    else:
        quoted = f'"{value}"'
    text = shipped_text(name)
    at = text.find(f'"{key}": {quoted}')
    if at < 0:
        return None
    start = text.rfind("{", 0, at)
    try:
        raw, _ = _scanner()(text, start)
    except StopIteration:  # the shipped file is checked by tests; never expected
        raise ValueError(f"vramest/data/{name}: no JSON object at offset {start}") from None
    return raw if isinstance(raw, dict) and raw.get(key) == value else None


class _Strict:
    """What json's C scanner reads off its decoder: json.loads' defaults."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # 'NaN', 'Infinity', '-Infinity', as json.loads reads them


@lru_cache(maxsize=1)
def _scanner() -> Any:
    from _json import make_scanner

    # typeshed asks for a JSONDecoder; the C scanner reads only the attributes _Strict has
    return make_scanner(_Strict())  # type: ignore[arg-type]
