"""The commands the README and docs show still run: each `vramest ...` line of their shell code
blocks (and each `$ vramest ...` of a transcript) exits 0. Calibration, which needs torch, and
spec files, which the capacity tests run from examples/, are left out."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vramest.cli import main

ROOT = Path(__file__).resolve().parent.parent
SHELL_FENCES = ("```sh", "```bash", "```console", "```shell")
_PLACEHOLDER = re.compile(r"\b[A-Z]{4,}\b")  # PATH, FILE, PROFILE: the reader fills these in
_OUTPUT_FLAGS = ("--out", "--html", "--junit-xml")


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        fence, pending = "", ""  # the open fence: "```sh", "```" (a transcript), ...
        for line in doc.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = "" if fence else stripped
                continue
            transcript = fence == "```" and stripped.startswith("$ ")
            if fence not in SHELL_FENCES and not transcript and not pending:
                continue
            text = pending + stripped.removeprefix("$ ")
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            if text.startswith("vramest "):
                found.append((doc.name, text))
    return found


def _runnable(command: str) -> bool:
    words = shlex.split(command.split(" #")[0].split(">>")[0])
    # calibrate needs torch, check runs spec files, web serves until stopped
    return words[1] not in ("calibrate", "check", "web") and not _PLACEHOLDER.search(command)


COMMANDS = [c for c in documented_commands() if _runnable(c[1])]


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 8
    assert {doc for doc, _ in COMMANDS} >= {"README.md", "tiers-and-cost.md"}


@pytest.mark.parametrize(("doc", "command"), COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_documented_command_runs(doc: str, command: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    words = shlex.split(command.split(" #")[0].split(">>")[0])[1:]
    for i, word in enumerate(words[:-1]):
        if word in _OUTPUT_FLAGS:
            words[i + 1] = str(tmp_path / Path(words[i + 1]).name)
    code = main(words)
    err = capsys.readouterr().err
    assert code == 0, f"{doc}: `{command}` exited {code}: {err}"
