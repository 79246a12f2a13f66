"""Text that reaches a terminal, XML or Markdown: every control character shown as "?".

Its own module because the CLI wraps stdout and stderr with it on every run, and the file I/O
module beside it (vramest/files.py) is ten times its size.
"""

from __future__ import annotations

from itertools import chain

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, TextIO

# C0 and C1 control characters but tab and newline (ESC starts a terminal escape sequence;
# XML 1.0 forbids most of them outright), lone surrogates, and the XML non-characters. A
# translation table, not a regular expression: compiling that class cost 1.5 ms of every start.
_UNPRINTABLE = dict.fromkeys(chain(range(0x00, 0x09), range(0x0B, 0x20), range(0x7F, 0xA0),
                                   range(0xD800, 0xE000), (0xFFFE, 0xFFFF)), "?")
_UNPRINTABLE_BUT_CR = dict(_UNPRINTABLE)
del _UNPRINTABLE_BUT_CR[0x0D]


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
