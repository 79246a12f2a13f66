"""The command line read without argparse, where nothing about it is unusual.

argparse was a third of the headline command's start-up: importing it 8.9M instructions,
building the estimate command's 77 flags 5.0M and parsing 1.6M, of 141M (callgrind). Here each
command's flags are recorded from the same `add_parser` functions argparse is built from
(`define`), and a command line made only of those flags with plain values is read off the
record. Anything else answers None and argparse parses it, so it says what it always said:
help, a flag unknown or refused, a value that starts with "-", a flag's own parser refusing its
value, a positional, an action this reader does not know. tests/test_fast_parse.py holds the two
to the same namespace for every command, on generated command lines.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

from vramest.commands import COMMANDS
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

_SUPPRESS = "==SUPPRESS=="  # argparse.SUPPRESS: such a default leaves the attribute unset
_KNOWN = frozenset({"dest", "default", "help", "choices", "type", "action", "metavar", "nargs",
                    "const", "required"})
# (action, nargs) → how a flag takes its value; any other pair is left to argparse
_KINDS = {("store", None): "store", ("store", "?"): "optional", ("append", None): "append",
          ("store_true", None): "true", ("store_false", None): "false",
          ("store_const", None): "const"}


def define(parser: Any, only: str | None, **subparsers: Any) -> None:
    """The program's flags on `parser` (an argparse parser or a `_Record`): --version and one
    subparser per command, or only the command `only`, so others' modules are not imported."""
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command", **subparsers)
    for name, (module, help_text) in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).add_parser(sub, help_text)


class _Decline(Exception):
    """This command line is argparse's to read."""


class _Flag:
    __slots__ = ("choices", "const", "default", "dest", "kind", "required", "type")

    def __init__(self, kind: str, dest: str, default: Any, options: dict[str, Any]) -> None:
        self.kind, self.dest, self.default = kind, dest, default
        self.const = options.get("const")
        self.type: Callable[[str], Any] | None = options.get("type")
        self.choices = options.get("choices")
        self.required = options.get("required", False)


class _Record:
    """The part of argparse's parser API the commands use: it notes each call, and `flags()`
    reads them once a command line needs them."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], dict[str, Any], list[_Flag] | None]] = []
        self.exclusive: list[list[_Flag]] = []
        self.commands: dict[str, _Record] = {}
        self.command_dest: str | None = None
        self.plain = True  # False: something only argparse reads is defined

    def add_argument(self, *flags: str, **options: Any) -> None:
        self.calls.append((flags, options, None))

    def add_argument_group(self, *_: Any, **__: Any) -> _Record | _Group:
        return self

    def add_mutually_exclusive_group(self, required: bool = False) -> _Group:
        self.plain = self.plain and not required
        self.exclusive.append([])
        return _Group(self, self.exclusive[-1])

    def set_defaults(self, **_: Any) -> None:
        self.plain = False  # no command sets parser-level defaults; argparse reads them

    def add_subparsers(self, dest: str | None = None, **_: Any) -> _Record:
        self.command_dest = dest
        return self

    def add_parser(self, name: str, **_: Any) -> _Record:
        self.commands[name] = _Record()
        return self.commands[name]

    def flags(self) -> tuple[dict[str, _Flag], list[_Flag]] | None:
        """Each spelling's flag and the flags in the order added, or None where a definition
        is one only argparse reads: a positional, an action or nargs of its own, a hidden
        default, a type named by text, or a spelling given twice (argparse refuses that)."""
        if not self.plain:
            return None
        by_spelling: dict[str, _Flag] = {}
        flags: list[_Flag] = []
        for spellings, options, members in self.calls:
            kind = _KINDS.get((options.get("action", "store"), options.get("nargs")))
            if kind is None or not spellings or not _KNOWN.issuperset(options) or \
                    options.get("default") == _SUPPRESS or isinstance(options.get("type"), str):
                return None
            dest = options.get("dest")
            if not dest:  # argparse's: the first --long spelling, else the first, undashed
                long = [f for f in spellings if f[1:2] == "-"]
                dest = (long or spellings)[0].lstrip("-").replace("-", "_")
            default = options.get("default", {"true": False, "false": True}.get(kind))
            flag = _Flag(kind, dest, default, options)
            for spelling in spellings:
                if spelling[:1] != "-" or len(spelling) < 2 or spelling in by_spelling:
                    return None
                by_spelling[spelling] = flag
            flags.append(flag)
            if members is not None:
                members.append(flag)
        return by_spelling, flags


class _Group:
    """A mutually exclusive group: its flags are the parser's, and it lists them."""

    def __init__(self, parser: _Record, members: list[_Flag]) -> None:
        self._parser, self._members = parser, members

    def add_argument(self, *flags: str, **options: Any) -> None:
        self._parser.calls.append((flags, options, self._members))


def fast_parse(command: str | None, argv: Sequence[str]) -> argparse.Namespace | None:
    """The namespace argparse would give for `argv` (the command first), or None where argparse
    should read it."""
    if command is None or not argv or argv[0] != command or command not in COMMANDS:
        return None
    top = _Record()
    define(top, only=command)
    record = top.commands.get(command)
    top_flags = top.flags()
    own = record.flags() if record is not None else None
    if own is None or top_flags is None or top.command_dest is None:
        return None
    values = _defaults(top_flags[1])
    values[top.command_dest] = command
    try:
        values.update(_read(own[0], own[1], record.exclusive if record else [], argv[1:]))
    except _Decline:
        return None
    # the commands read attributes (and vars()) only, which a SimpleNamespace has as argparse's
    return SimpleNamespace(**values)  # type: ignore[return-value]


def spellings(command: str) -> frozenset[str]:
    """Every flag spelling the command defines (for a pasted line: which flags are vramest's)."""
    top = _Record()
    define(top, only=command)
    record = top.commands[command]
    return frozenset(s for spellings, _, _ in record.calls for s in spellings)


def _defaults(flags: list[_Flag]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for flag in flags:  # the first flag of a dest sets it, as in argparse
        if flag.dest not in values:
            values[flag.dest] = flag.default
    return values


def _convert(flag: _Flag, text: str, check: bool = True) -> Any:
    try:
        value = text if flag.type is None else flag.type(text)
    except Exception:  # the flag's parser refuses it: argparse says so in its words
        raise _Decline from None
    if check and flag.choices is not None and value not in flag.choices:
        raise _Decline
    return value


def _read(by_spelling: dict[str, _Flag], flags: list[_Flag], exclusive: list[list[_Flag]],
          tokens: Sequence[str]) -> dict[str, Any]:
    values = _defaults(flags)
    seen: set[_Flag] = set()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        explicit: str | None = None
        flag = by_spelling.get(token)
        if flag is None and token[:1] == "-" and "=" in token:
            spelling, _, explicit = token.partition("=")
            flag = by_spelling.get(spelling)
        if flag is None or explicit == "" or explicit == "--":
            raise _Decline  # a stray value, an unknown flag, help, an empty `--flag=`
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if flag.kind in ("true", "false", "const"):
            if explicit is not None:
                raise _Decline
            value = {"true": True, "false": False}.get(flag.kind, flag.const)
        elif explicit is not None:
            value = _convert(flag, explicit)
        elif following is not None and following[:1] != "-":
            value = _convert(flag, following)
            i += 1
        elif flag.kind == "optional" and (following is None or following in by_spelling):
            value = _convert(flag, flag.const) if isinstance(flag.const, str) else flag.const
        else:
            raise _Decline  # no value, or one that starts with "-"
        if flag.kind == "append":
            value = [*(values[flag.dest] or ()), value]
        values[flag.dest] = value
        seen.add(flag)
        i += 1
    if any(len(seen.intersection(members)) > 1 for members in exclusive):
        raise _Decline
    for flag in flags:
        if flag in seen:
            continue
        if flag.required:
            raise _Decline
        # argparse puts an unused flag's text default through the flag's parser (no choices)
        default = flag.default
        if values.get(flag.dest) is default and isinstance(default, str):
            values[flag.dest] = _convert(flag, default, check=False)
    return values
