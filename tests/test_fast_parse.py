"""The command line read without argparse (vramest.commands.fast_parse) against argparse itself:
whatever the fast reader answers must be argparse's namespace, and whatever argparse refuses or
prints help for, the fast reader must leave to it."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vramest.commands import COMMANDS
from vramest.commands.fast_parse import _Record, define, fast_parse
from vramest.commands.parser import build_parser
from vramest.errors import InputError

HEADLINE = ["--params", "70B", "--dtype", "int4", "--ctx", "8192"]


def _argparse(command: str, argv: list[str]) -> dict[str, object] | None:
    """argparse's namespace, or None where it refuses the line or prints help."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return vars(build_parser(only=command).parse_args(argv))
        except (InputError, SystemExit):
            return None


def _record(command: str) -> _Record:
    top = _Record()
    define(top, only=command)
    return top.commands[command]


# values a flag may be given: plain ones, and the ones argparse reads its own way
_VALUES = st.sampled_from(["70B", "8192", "int4", "a", "", "x y", "1", "0.5", "2GiB", "-5", "-",
                           "--", "=", "a=b", "--params", "-h", "0", "nan", "1e309", "vllm",
                           "layer", "llm", "full", "offloaded"])
_JUNK = st.sampled_from(["-h", "--help", "--no-such-flag", "-x=1", "stray", "--", "--params=",
                         "--version", "estimate", "--gpu-mem", "-q=awq", "-tp=2"])


@st.composite
def _command_line(draw: st.DrawFn, command: str) -> list[str]:
    choices_of = {spelling: list(options.get("choices") or ())
                  for spellings, options, _ in _record(command).calls for spelling in spellings}
    spellings = sorted(choices_of)
    argv = [command]
    for _ in range(draw(st.integers(0, 6))):
        spelling = draw(st.sampled_from(spellings)) if spellings else draw(_JUNK)
        choices = choices_of.get(spelling)
        value = draw(st.sampled_from(choices) if choices and draw(st.booleans()) else _VALUES)
        form = draw(st.sampled_from(["pair", "equals", "bare"]))
        argv += {"pair": [spelling, value], "equals": [f"{spelling}={value}"],
                 "bare": [spelling]}[form]
        if draw(st.integers(0, 9)) == 0:
            argv.append(draw(_JUNK))
    return argv


@pytest.mark.parametrize("command", sorted(COMMANDS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_reader_answers_as_argparse_or_not_at_all(command: str, data: st.DataObject,
                                                           ) -> None:
    argv = data.draw(_command_line(command))
    fast = fast_parse(command, argv)
    if fast is not None:
        assert vars(fast) == _argparse(command, argv), argv


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_bare_command_has_argparse_defaults(command: str) -> None:
    fast = fast_parse(command, [command])
    if fast is not None:
        assert vars(fast) == _argparse(command, [command])


@pytest.mark.parametrize("argv", [
    ["estimate", *HEADLINE],
    ["estimate", "--model", "llama-3.1-8b", "--gpu", "rtx 4090", "--engine", "vllm",
     "--gpu-memory-utilization", "0.85", "--max-model-len=32768", "--enforce-eager", "-tp", "2"],
    ["estimate", "--params", "7B", "--engine-option", "num_ctx=8192", "--engine-option",
     "OLLAMA_NUM_PARALLEL=4", "--no-flash-attn", "--attn", "eager"],
    ["train", "--model", "llama-3.1-8b", "--method", "qlora", "--seq", "4096",
     "--grad-checkpointing"],
    ["train", "--model", "llama-3.1-8b", "--grad-checkpointing", "offloaded", "--json"],
    ["serving", "--model", "llama-3.1-8b", "--gpu", "h100", "--concurrency", "16", "--input-len",
     "1024", "--output-len", "256"],
])
def test_common_command_lines_are_read_fast_and_alike(argv: list[str]) -> None:
    """The lines users type most: read without argparse (issue #20's start-up), and the same."""
    fast = fast_parse(argv[0], argv)
    assert fast is not None, "this command line now needs argparse; fast_parse declines it"
    assert vars(fast) == _argparse(argv[0], argv)


@pytest.mark.parametrize("argv", [
    ["estimate", "--params", "7B", "--help"],
    ["estimate", "--params", "7B", "--no-such-flag"],
    ["estimate", "--params", "7B", "--dtype", "int3", "--attn", "nope"],
    ["estimate", "--params"],
    ["estimate", "--params", "--dtype", "int4"],
    ["estimate", "--layers", "-1"],
    ["estimate", "--layers", "0"],
    ["estimate", "--max-ctx=yes"],
    ["estimate", "--gpu-memory-utilization", "1.5"],
    ["estimate", "--params", "7B", "stray"],
    ["serving", "--model", "llama-3.1-8b", "--gpu", "h100", "--concurrency", "16"],
    ["check", "capacity.toml"],
])
def test_what_argparse_refuses_or_explains_is_left_to_it(argv: list[str]) -> None:
    assert fast_parse(argv[0], argv) is None


def test_the_headline_never_loads_argparse() -> None:
    code = ("import sys, io, contextlib; from vramest.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main({HEADLINE!r})\n"
            "assert 'argparse' not in sys.modules, 'the headline imported argparse'")
    subprocess.run([sys.executable, "-c", code], check=True)
