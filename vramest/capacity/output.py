"""Capacity reports for people and CI: a terminal table, Markdown for a pull request, JSON, and
JUnit XML (one test case per deployment)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

from vramest.capacity.judge import CheckReport, DeploymentResult
from vramest.capacity.spec import SpecProblem
from vramest.printable import printable
from vramest.units import format_bytes

_COLUMNS = ("result", "deployment", "GPUs", "per GPU / usable", "headroom (need)",
            "decode tok/s (floor)", "TTFT s (ceiling)")
_CONCURRENCY_COLUMN = "vLLM seqs (batch)"
_TRAIN_COLUMN = "train tok/s per GPU (floor)"


def _columns(report: CheckReport) -> tuple[str, ...]:
    columns: tuple[str, ...] = _COLUMNS
    if any(r.figures.max_concurrency is not None for r in report.results):
        columns = (*columns, _CONCURRENCY_COLUMN)
    if any(r.deployment.is_training for r in report.results):
        columns = (*columns, _TRAIN_COLUMN)
    return columns


def _row(r: DeploymentResult, columns: tuple[str, ...], *,
         marks: tuple[str, str] = ("pass", "FAIL")) -> tuple[str, ...]:
    f, d = r.figures, r.deployment
    layout = f"{f.num_gpus}× {f.gpu}"
    if f.pipeline_parallel > 1:
        layout += f" (PP {f.pipeline_parallel})"
    need = f" ({format_bytes(f.required_headroom_bytes)})" if f.required_headroom_bytes else ""
    decode = "?" if f.decode_tokens_per_s is None else f"{f.decode_tokens_per_s:,.1f}"
    if d.min_decode_tokens_per_s is not None:
        decode += f" (≥ {d.min_decode_tokens_per_s:g})"
    ttft = "?" if f.time_to_first_token_s is None else f"{f.time_to_first_token_s:.3g}"
    if d.max_time_to_first_token_s is not None:
        ttft += f" (≤ {d.max_time_to_first_token_s:g})"
    if d.is_training:  # a training step has no decode or first token
        decode = ttft = "-"
    cells: tuple[str, ...] = (marks[0] if r.passed else marks[1], r.name, layout,
             f"{format_bytes(f.per_gpu_bytes)} / {format_bytes(f.usable_bytes)}",
             format_bytes(f.headroom_bytes) + need, decode, ttft)
    if _CONCURRENCY_COLUMN in columns:
        seqs = "" if f.max_concurrency is None else f"{f.max_concurrency:,.1f} ({d.batch})"
        cells = (*cells, seqs)
    if _TRAIN_COLUMN in columns:
        train = ""
        if d.is_training:
            train = ("?" if f.train_tokens_per_s_per_gpu is None
                     else f"{f.train_tokens_per_s_per_gpu:,.0f}")
            if d.min_train_tokens_per_s is not None:
                train += f" (≥ {d.min_train_tokens_per_s:g})"
        cells = (*cells, train)
    return cells


def _summary(report: CheckReport) -> str:
    total, failed = len(report.results), len(report.failed)
    verdict = "all pass" if not failed else f"{failed} of {total} fail"
    return f"{total} deployment{'s' if total != 1 else ''} from {report.source}: {verdict}"


def render_table(report: CheckReport) -> str:
    """The terminal table, then each failure's reasons, baseline notes and a summary line."""
    columns = _columns(report)
    rows = [columns, *(_row(r, columns) for r in report.results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("─" * w for w in widths))
    lines += _details(report, bullet="  - ")
    lines.append("")
    lines.append(_summary(report) + ".")
    return "\n".join(lines)


def _details(report: CheckReport, *, bullet: str, name_format: str = "{}",
             escape: Callable[[str], str] = str) -> list[str]:
    out: list[str] = []
    for r in report.results:
        notes = list(r.reasons) + list(r.notes)
        if notes:
            out.append("")
            out.append(f"{name_format.format(escape(r.name))}: "
                       f"{'FAILS' if not r.passed else 'passes'}")
            out += [f"{bullet}{escape(text)}" for text in notes]
    if report.baseline is not None:
        out.append("")
        out.append(f"Compared with baseline {escape(str(report.baseline))} (tolerance "
                   f"{report.tolerance * 100:g}%).")
    return out


def render_markdown(report: CheckReport) -> str:
    """A pull-request summary (GitHub's $GITHUB_STEP_SUMMARY or a comment)."""
    mark = "✅" if report.passed else "❌"
    lines = [f"### {mark} vramest capacity: {_summary(report)}", ""]
    columns = _columns(report)
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join(" --- " for _ in columns) + "|")
    for r in report.results:
        cells = _row(r, columns, marks=("✅ pass", "❌ fail"))
        lines.append("| " + " | ".join(_markdown(c) for c in cells) + " |")
    lines += _details(report, bullet="- ", name_format="**{}**", escape=_markdown)
    return "\n".join(lines) + "\n"


# the marks that start emphasis, code, links, images, inline HTML, entities or a table cell
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>#!|~&"})


def _markdown(text: str) -> str:
    """One line of text from a spec or a file, shown literally in Markdown: no links, images,
    HTML, emphasis or table breaks; line breaks become spaces."""
    return printable(text.replace("\r", " ").replace("\n", " ")).translate(_MARKDOWN_SPECIAL)


def render_json(report: CheckReport) -> str:
    return json.dumps(report.to_json(), indent=2)


def junit_xml(report: CheckReport) -> bytes:
    """JUnit XML: one test suite, one test case per deployment, a failure per failing one."""
    failed = len(report.failed)
    root = ET.Element("testsuites", tests=str(len(report.results)), failures=str(failed),
                      errors="0")
    suite = ET.SubElement(root, "testsuite", name=f"vramest capacity: {report.source}",
                          tests=str(len(report.results)), failures=str(failed), errors="0",
                          skipped="0")
    classname = "vramest.capacity." + Path(report.source).stem
    for r in report.results:
        case = ET.SubElement(suite, "testcase", classname=classname, name=r.name)
        if not r.passed:
            failure = ET.SubElement(case, "failure", type="CapacityCheckFailed",
                                    message="; ".join(r.reasons))
            failure.text = "\n".join(r.reasons)
        ET.SubElement(case, "system-out").text = json.dumps(
            {"figures": r.figures.to_json(), "notes": list(r.notes)}, indent=2)
    return _serialise(root)


def problems_junit_xml(source: str, problems: Sequence[SpecProblem]) -> bytes:
    """JUnit XML for a spec that could not be checked: one errored test case listing why."""
    root = ET.Element("testsuites", tests="1", failures="0", errors="1")
    suite = ET.SubElement(root, "testsuite", name=f"vramest capacity: {source}", tests="1",
                          failures="0", errors="1", skipped="0")
    case = ET.SubElement(suite, "testcase", classname="vramest.capacity." + Path(source).stem,
                         name="spec")
    error = ET.SubElement(case, "error", type="InvalidCapacitySpec",
                          message=f"{len(problems)} problem(s) in {source}")
    error.text = "\n".join(str(p) for p in problems)
    return _serialise(root)


def _serialise(root: ET.Element) -> bytes:
    for element in root.iter():  # XML 1.0 cannot hold control characters: show them as "?"
        element.attrib.update({k: printable(v) for k, v in element.attrib.items()})
        if element.text:
            element.text = printable(element.text)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
