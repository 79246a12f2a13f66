"""Text that reaches a terminal, XML or Markdown: every control character shown as "?".

Its own module because the CLI wraps stdout and stderr with it on every run, and the file I/O
module beside it (vramest/files.py) is ten times its size.
"""

from __future__ import annotations

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, TextIO

class _Controls(dict[int, "int | str"]):
    """str.translate's table, filled as characters are met: C0 and C1 control characters but
    tab and newline (ESC starts a terminal escape sequence; XML 1.0 forbids most of them
    outright), lone surrogates and the XML non-characters become "?", the rest stay. Not a
    regular expression (compiling that class cost 1.5 ms of every start) nor a prebuilt table
    (its 2,200 rows cost 1.1M instructions of every start)."""

    def __init__(self, keep: frozenset[int]) -> None:
        super().__init__()
        self.keep = keep

    def __missing__(self, code: int) -> int | str:
        shown: int | str = "?" if code not in self.keep and (
            code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000
            or code in (0xFFFE, 0xFFFF)) else code
        if len(self) < _MAX_REMEMBERED:  # bounded: a long-lived process may print any text
            self[code] = shown
        return shown


_MAX_REMEMBERED = 4096
_UNPRINTABLE = _Controls(frozenset({0x09, 0x0A}))
_UNPRINTABLE_BUT_CR = _Controls(frozenset({0x09, 0x0A, 0x0D}))


def printable(text: str, *, keep_cr: bool = False) -> str:
    """`text` with every control character (but tab and newline, and with `keep_cr` carriage
    return) shown as "?": a model or GPU name from a file cannot move the cursor, recolour the
    terminal or make XML ill-formed."""
    return text.translate(_UNPRINTABLE_BUT_CR if keep_cr else _UNPRINTABLE)


class PrintableStream:
    """A text stream that writes through `printable` (the CLI's stdout and stderr). Carriage
    returns are kept where `keep_cr` (a progress bar redraws its line with one)."""

    def __init__(self, stream: TextIO, *, keep_cr: bool = False) -> None:
        self.stream = stream
        self.keep_cr = keep_cr

    def write(self, text: str) -> int:
        return self.stream.write(printable(text, keep_cr=self.keep_cr))

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self.stream, name)
