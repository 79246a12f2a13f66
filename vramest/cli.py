"""Command line: a thin layer over the public API. Estimating is the default command."""

from __future__ import annotations

import gc
import importlib
import sys

from vramest.commands import COMMANDS
from vramest.errors import MAX_TEXT_CHARS, InputError, short
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; everything printed passes through `printable`, so names read
    from files cannot send terminal escape sequences."""
    return _guarded(argv, english_argparse=False)


def _guarded(argv: Sequence[str] | None, english_argparse: bool) -> int:
    from vramest.printable import PrintableStream

    # A command's objects mostly live until it exits: the default threshold (700) ran ten
    # collections in the headline command, 3% of its instructions (mypy's main raises it too).
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 20, 20)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = PrintableStream(stdout)
    sys.stderr = PrintableStream(stderr, keep_cr=True)
    try:
        return _main(argv, english_argparse)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        gc.set_threshold(*thresholds)


def _main(argv: Sequence[str] | None, english_argparse: bool) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    pasted = bool(args_list) and args_list[0] not in COMMANDS and args_list[0][:1] != "-"
    try:
        args_list = _with_command(args_list)
        command = args_list[0] if args_list[0] in COMMANDS else None
        for arg in args_list:
            check_argument(arg)
        if command not in _WITH_POSITIONALS:
            _check_unquoted_gpu(args_list)
        from vramest.commands.fast_parse import fast_parse

        args = fast_parse(command, args_list)
        if args is None and command == "estimate":  # a pasted launch command: its server and
            from vramest.commands.inert_flags import without_inert  # sampler flags left out

            args_list, inert = without_inert(args_list)
            if inert:
                print(f"vramest: note: {', '.join(inert)} change no memory; left out.",
                      file=sys.stderr)
                args = fast_parse(command, args_list)
        if args is None:  # argparse reads it, and says what is wrong where anything is
            if english_argparse:
                _argparse_in_english()
            from vramest.commands.parser import build_parser

            try:
                args = build_parser(only=command).parse_args(args_list)
            except InputError as exc:
                if not pasted or command != "estimate":
                    raise
                from vramest.commands.launch_line import unread_flags

                raise InputError(unread_flags(str(exc), args_list)) from None
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
# commands whose first bare word is the model (`vramest train Qwen/Qwen2.5-7B ...`)
_MODEL_FIRST = ("estimate", "train", "plot", "report", "recommend", "cost", "serving", "plan",
                "trace")


def _with_command(args: list[str]) -> list[str]:
    """The arguments with their command first: estimating is the default, and a pasted launch
    line (`vllm serve MODEL ...`) or a model named first is read as its estimate."""
    if not args:
        return ["estimate"]
    first = args[0]
    if first == "train" or first in ("llamafactory-cli", "lmf") or "=" in first:
        from vramest.commands.train_config import launch_line as training_line

        pasted = training_line(args[1:] if first == "train" else args)
        if pasted is not None:  # LLaMA-Factory's own command, pasted as it ran
            return pasted
    if first in COMMANDS:
        if first == "train" and any(a.partition("=")[0] == "--config" for a in args):
            from vramest.commands.train_config import expand

            args = expand(args)
        if first in _MODEL_FIRST and len(args) > 1 and args[1][:1] != "-":
            from vramest.commands import launch_line

            if first == "estimate":
                return launch_line.estimate_args(args[1:])
            return [first, *launch_line.model_first(args[1:])]
        return args
    if first[:1] == "-":
        return args if first in ("-h", "--help", "--version") else ["estimate", *args]
    from vramest.commands.launch_line import estimate_args

    return estimate_args(args)


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
    code = _guarded(None, english_argparse=True)
    gc.freeze()
    sys.exit(code)


def _argparse_in_english() -> None:
    """Load argparse with its own English strings, as the program prints everything else in
    English. argparse asks gettext for each string it shows, and gettext's lookup imports
    locale and searches the locale folders every time: 9M of the headline command's 180M
    instructions (callgrind). Only where neither module is loaded yet, so an embedder's
    argparse is never touched; `main()` alone leaves argparse as it finds it. The program calls
    it only where argparse parses: a plain command line is read without it (`fast_parse`)."""
    if "argparse" in sys.modules or "gettext" in sys.modules:
        return
    english = type(sys)("gettext")
    english.gettext = lambda message: message  # type: ignore[attr-defined]
    english.ngettext = lambda one, many, n: one if n == 1 else many  # type: ignore[attr-defined]
    sys.modules["gettext"] = english
    try:
        import argparse  # noqa: F401  (bound to the English gettext above)
    finally:
        del sys.modules["gettext"]


if __name__ == "__main__":
    run_as_program()
