"""Command line: a thin layer over the public API. Estimating is the default command."""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import sys
from collections.abc import Sequence

from vramest.commands import COMMANDS
from vramest.errors import MAX_TEXT_CHARS, InputError, short
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
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).add_parser(sub, help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; everything printed passes through `printable`, so names read
    from files cannot send terminal escape sequences."""
    from vramest.printable import PrintableStream

    # A command's objects mostly live until it exits: the default threshold (700) ran ten
    # collections in the headline command, 3% of its instructions (mypy's main raises it too).
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 20, 20)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = PrintableStream(stdout)
    sys.stderr = PrintableStream(stderr, keep_cr=True)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        gc.set_threshold(*thresholds)


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in COMMANDS and args_list[0] not in
                         ("-h", "--help", "--version")):
        args_list.insert(0, "estimate")
    command = args_list[0] if args_list[0] in COMMANDS else None
    try:
        for arg in args_list:
            check_argument(arg)
        if command not in _WITH_POSITIONALS:
            _check_unquoted_gpu(args_list)
        args = build_parser(only=command).parse_args(args_list)
        if args.version:
            from importlib.metadata import version

            print(version("vramest"))
            return 0
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args))
    except InputError as exc:
        print(f"vramest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vramest: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


_WITH_POSITIONALS = ("check", "inspect")  # commands that take a file after their flags


def _check_unquoted_gpu(args: list[str]) -> None:
    """`--gpu rtx 4090` unquoted leaves "4090" over as a stray argument: say how to write it."""
    for i, arg in enumerate(args[:-2]):
        if arg == "--gpu" and not args[i + 1].startswith("-") and not args[i + 2].startswith("-"):
            words = args[i + 1:i + 6]
            name = " ".join(words[:next((k for k, w in enumerate(words) if w.startswith("-")),
                                        len(words))])[:80]
            raise InputError(f"--gpu takes one name: put a name with spaces in quotes, "
                             f"--gpu \"{name}\" (or write it without spaces).")


def check_argument(arg: object) -> None:
    """Every argument is bounded text: nothing a flag takes is longer than a path."""
    if not isinstance(arg, str):
        raise InputError(f"Arguments must be text, not {type(arg).__name__}.")
    if len(arg) > MAX_TEXT_CHARS or "\x00" in arg:
        raise InputError(f"The argument {short(arg)} is over {MAX_TEXT_CHARS} characters or "
                         "holds a NUL; no flag takes such a value.")


def run_as_program() -> None:
    """The `vramest` program: main(), then exit. Python's shutdown runs a full collection that
    visits every object the command made (7% of the headline command's instructions), only to
    free memory the operating system takes back anyway: gc.freeze() leaves them out of it.
    Atexit handlers and stream flushing still run."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run_as_program()
