"""Parsing counts and sizes people type, and printing bytes the way people read them."""

from __future__ import annotations

import math
import re

from vramest.errors import InputError, short

GIB = 1024**3
MIB = 1024**2
KIB = 1024
GB = 10**9

# A decimal with an optional exponent: 7, 1.5, .5, 1e9, 2.5E10. Matched against text already
# stripped and at most MAX_NUMBER_CHARS long, with one `\s*` between number and unit and none
# at the ends: two adjacent `\s*` around an optional unit backtracked quadratically ("1", then
# 130,000 spaces, then "x" took 65 s).
_NUMBER = r"((?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)"
MAX_NUMBER_CHARS = 64
_COUNT_SCALE = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}
# Context lengths: "8k" means 8192 tokens, the way model cards and engines use it.
_TOKEN_SCALE = {"": 1, "k": 1024, "m": 1024**2}
_BYTES = rf"(?i){_NUMBER}\s*([kmgt]?i?b?)"
_BYTE_SCALE = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "ki": KIB, "kib": KIB,
    "m": 10**6, "mb": 10**6, "mi": MIB, "mib": MIB,
    "g": 10**9, "gb": 10**9, "gi": GIB, "gib": GIB,
    "t": 10**12, "tb": 10**12, "ti": 1024**4, "tib": 1024**4,
}

MAX_PARAMS = 100 * 10**12
MAX_TOKENS = 100 * 1024**2
MAX_BATCH = 1_000_000
MAX_SHAPE_SIZE = 10**7  # a model dimension or layer count (hidden size, heads, vocab ...)


def parse_params(text: str | int | float, *, what: str = "--params") -> int:
    """'7B', '70b', '1.5B', '560M', '1.2T', '7e9' or a plain integer, as a parameter count."""
    value = _parse_scaled(text, _COUNT_SCALE, what, "a count such as 7B, 1.5B, 560M, 1.2T or 7000000000")
    if not 1 <= value <= MAX_PARAMS:
        raise InputError(f"{what} {short(text)} is out of range: give between 1 and 100T parameters.")
    return value


def parse_tokens(text: str | int | float, *, what: str = "--ctx") -> int:
    """'8192', '8k', '128K' as a token count (k = 1024)."""
    value = _parse_scaled(text, _TOKEN_SCALE, what, "a token count such as 8192, 8k or 128K")
    if not 1 <= value <= MAX_TOKENS:
        raise InputError(f"{what} {short(text)} is out of range: give between 1 and 100M tokens.")
    return value


def parse_positive_int(text: str | int, *, what: str, maximum: int = MAX_BATCH) -> int:
    try:
        value = int(number_text(text))
    except ValueError:
        raise InputError(f"{what} {short(text)} is not a whole number; give one from 1 to "
                         f"{maximum}.") from None
    if not 1 <= value <= maximum:
        raise InputError(f"{what} {short(text)} is out of range; give a whole number from 1 to "
                         f"{maximum}.")
    return value


def parse_bytes(text: str | int | float, *, what: str) -> int:
    """'24GiB', '80GB', '512MiB', '1e9' or plain bytes."""
    if isinstance(text, bool):
        raise InputError(f"{what} must be a size such as 24GiB, 80GB or 512MiB.")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = re.fullmatch(_BYTES, number_text(text))
        if not match or match.group(2).lower() not in _BYTE_SCALE:
            raise InputError(f"{what} {short(text)} is not a size; give one such as 24GiB, 80GB "
                             "or 512MiB.")
        value = float(match.group(1)) * _BYTE_SCALE[match.group(2).lower()]
    if not math.isfinite(value) or value < 0 or value > 1024**6:
        raise InputError(f"{what} {short(text)} is out of range; give a size from 0 to 1 EiB.")
    return int(value)


def _parse_scaled(text: str | int | float, scales: dict[str, int], what: str, accepted: str) -> int:
    if isinstance(text, bool):
        raise InputError(f"{what} must be {accepted}.")
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        if not math.isfinite(text):
            raise InputError(f"{what} must be {accepted}.")
        return round(text)
    parts = _count_parts(number_text(text))
    if parts is None or parts[1].lower() not in scales:
        raise InputError(f"{what} {short(text)} is not understood; give {accepted}.")
    value = float(parts[0]) * scales[parts[1].lower()]
    if not math.isfinite(value):
        raise InputError(f"{what} {short(text)} is out of range; give {accepted}.")
    return round(value)


def _count_parts(text: str) -> tuple[str, str] | None:
    """`text` as a decimal (_NUMBER) and one unit letter k, m, b or t in any case, with white
    space between them allowed, or None: what `(?i)_NUMBER\\s*([kmbt]?)` fullmatches, read
    without compiling that pattern (1.1M instructions of every start)."""
    unit = ""
    if text and text[-1].lower() in ("k", "m", "b", "t"):
        text, unit = text[:-1].rstrip(), text[-1]
    cut = min((i for i in (text.find("e"), text.find("E")) if i >= 0), default=len(text))
    mantissa, exponent = text[:cut], text[cut + 1:]
    whole, _, fraction = mantissa.partition(".")
    if not (whole or fraction) or not all(p.isdecimal() for p in (whole, fraction) if p):
        return None
    if cut < len(text):
        digits = exponent[1:] if exponent[:1] in ("+", "-") else exponent
        if not digits.isdecimal():
            return None
    return text, unit


def parse_share(text: str | float, *, what: str, accepted: str) -> float:
    """'10%' -> 0.1, and '0.1' or 0.1 -> 0.1: a share as a fraction. The caller checks its range;
    `accepted` ends the sentence for anything that is not a finite number."""
    raw = "" if isinstance(text, bool) else number_text(text)
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{what} {short(text)} is not understood; {accepted}.")
    return value


def number_text(text: object) -> str:
    """The text of a number, stripped; longer than any number is "" (which nothing matches),
    so no parser of people's numbers backtracks over, or echoes, a long value."""
    try:
        stripped = str(text).strip()
    except ValueError:  # an int (or a list holding one) of more digits than str() converts
        return ""
    if len(stripped) > MAX_NUMBER_CHARS:
        return ""
    if "," in stripped:  # "32,768" as logs print it: thousands groups, never a decimal comma
        groups = stripped.split(",")
        if 1 <= len(groups[0]) <= 3 and groups[0].isdigit() and all(
                len(g) == 3 and g.isdigit() for g in groups[1:]):
            return "".join(groups)
    return stripped


def format_bytes(n: int | float) -> str:
    """Binary units, as nvidia-smi and torch report them."""
    n = float(n)
    for unit, scale in (("TiB", 1024**4), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def format_count(n: int | float) -> str:
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def format_tokens(n: int) -> str:
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return str(n)
