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
def shipped_bytes(name: str) -> bytes:
    """A shipped file's bytes, read once per process."""
    with open(os.path.join(_HERE, name), "rb") as f:
        return f.read()


def shipped_text(name: str) -> str:
    """A shipped file's text (its bytes are read once per process)."""
    return shipped_bytes(name).decode("utf-8")


def shipped_object(name: str, key: str, value: str) -> dict[str, Any] | None:
    """The object in shipped file `name` that opens with `"key": "value"`, decoded alone, or
    None where no object opens so. The headline command reads 3 catalog entries and 14 GPU rows
    this way instead of decoding whole files: it searches the bytes and decodes only a window
    around the object (the 560 KB of text were half a millisecond of every start, most of it
    the first touch of fresh memory), and it uses json's C scanner directly, as importing the
    json package (its decoder, encoder and their regular expressions) cost 5.5M of the
    command's 165M instructions (callgrind)."""
    if not value.isprintable() or not value.isascii() or '"' in value or "\\" in value:
        import json  # a value the file would hold escaped: find it as json writes it

        quoted = json.dumps(value)
    else:
        quoted = f'"{value}"'
    data = shipped_bytes(name)
    at = data.find(f'"{key}": {quoted}'.encode())
    if at < 0:
        return None
    start = data.rfind(b"{", 0, at)
    window = 8192
    while True:
        end = min(len(data), start + window)
        while end < len(data) and data[end] & 0xC0 == 0x80:  # not inside a UTF-8 sequence
            end -= 1
        try:
            raw, _ = _scanner()(data[start:end].decode("utf-8"), 0)
            break
        except (StopIteration, ValueError):  # the object runs past the window (a string
            # cut short raises json's JSONDecodeError, a ValueError)
            if end == len(data):  # the shipped file is checked by tests; never expected
                raise ValueError(f"vramest/data/{name}: no JSON object at byte {start}") from None
            window *= 4
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
