from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.errors import InputError
from vramest.units import format_bytes, parse_bytes, parse_params, parse_tokens


@pytest.mark.parametrize(("text", "expected"), [
    ("7B", 7_000_000_000), ("70b", 70_000_000_000), ("1.5B", 1_500_000_000),
    ("405B", 405_000_000_000), ("560M", 560_000_000), ("1.2T", 1_200_000_000_000),
    ("7000000000", 7_000_000_000), (" 13B ", 13_000_000_000), (8_000_000_000, 8_000_000_000),
    ("7e9", 7_000_000_000), ("2.5E10", 25_000_000_000), ("1e3M", 1_000_000_000),
])
def test_parse_params(text: str, expected: int) -> None:
    assert parse_params(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("8192", 8192), ("8k", 8192), ("128K", 131072), ("1m", 1048576), (4096, 4096),
])
def test_parse_tokens(text: str, expected: int) -> None:
    assert parse_tokens(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-7B", "7X", "B", "1e400", "nan", "101T", "7 B B"])
def test_bad_params_are_input_errors(text: str) -> None:
    with pytest.raises(InputError):
        parse_params(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("24GiB", 24 * 1024**3), ("80GB", 80 * 10**9), ("512MiB", 512 * 1024**2), ("1024", 1024),
    ("1e9", 10**9), ("1.5e3MiB", 1500 * 1024**2),
])
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text, what="--reserve") == expected


def test_format_bytes_uses_binary_units() -> None:
    assert format_bytes(1024**3) == "1.00 GiB"
    assert format_bytes(1536 * 1024**2) == "1.50 GiB"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.integers(), st.floats(allow_nan=True),
                 st.from_regex(r"\A[0-9.]{1,5}[eE][+-]?[0-9]{1,5}[kmbtKMBTiIB]{0,3}\Z")))
def test_parsers_never_crash_on_junk(junk: object) -> None:
    for parse in (parse_params, parse_tokens):
        with contextlib.suppress(InputError):
            parse(junk)  # type: ignore[arg-type]
    with contextlib.suppress(InputError):
        parse_bytes(junk, what="x")  # type: ignore[arg-type]


@settings(max_examples=3000)
@given(st.text(alphabet=st.sampled_from([*"0123456789.eE+- kKmMbBtTx_", "\u212a", "\u0663",
                                         "\u2003", "\u00a0", "\u0130"]), max_size=8))
def test_a_count_is_read_as_its_pattern_reads_it(text: str) -> None:
    """_count_parts reads a count without compiling a regular expression: what it accepts,
    and how it splits number and unit, is what `(?i)NUMBER\\s*([kmbt]?)` fullmatches (the
    pattern it replaced), Unicode digits, spaces and the Kelvin sign included."""
    import re

    from vramest.units import _NUMBER, _count_parts

    text = text.strip()
    match = re.fullmatch(rf"(?i){_NUMBER}\s*([kmbt]?)", text)
    assert _count_parts(text) == (match.groups() if match else None)
