"""The command line's parser: argparse with one-line errors, built for one subcommand at a time.

`vramest.cli` imports this module only when a command runs, after the program has had its say on
how argparse is loaded (see `vramest.cli.run_as_program`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from vramest.commands import COMMANDS
from vramest.commands.fast_parse import define
from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size reads it, without importing shutil
    (argparse imports it for every parser it builds, and it pulls in bz2 and lzma)."""
    with contextlib.suppress(ValueError):
        return int(os.environ.get("COLUMNS", ""))
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 80
    except (AttributeError, ValueError, OSError):
        return 80


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str, **kwargs: Any) -> None:
        super().__init__(prog, **{"width": max(_columns(), 20) - 2, **kwargs})


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as InputError (one line, exit 2) instead of usage dumps."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # no prefixes: `--gpu-memory` must not silently mean --gpu-memory-utilization
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # `--flag=--` gives the value "--": argparse would drop it as the options terminator
        # and hand the command an empty list
        if arg_strings == ["--"] and action.nargs in (None, argparse.OPTIONAL):
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:  # echo a short prefix
            raise argparse.ArgumentError(action, f"invalid choice: {short(value)} (choose from "
                                         f"{', '.join(map(str, action.choices))})")

    def error(self, message: str) -> None:  # type: ignore[override]
        prefix, _, own = message.partition(": ")
        flags = prefix.removeprefix("argument ").split("/")
        if prefix.startswith("argument ") and own.startswith(tuple(flags)):
            raise InputError(own)  # a flag's own parser already said what is wrong and accepted
        raise InputError(f"{message[0].upper()}{message[1:]}; see `vramest --help`.")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; `only` builds just that subcommand, so others' modules are not imported."""
    parser = _Parser(prog="vramest", description="How much GPU memory an LLM needs, and how "
                     "fast it runs.", epilog="Commands: " + "; ".join(
                         f"{name}: {help_text}" for name, (_, help_text) in COMMANDS.items()))
    define(parser, only, parser_class=_Parser)
    return parser
