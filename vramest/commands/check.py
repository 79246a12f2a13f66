"""vramest check capacity.toml: fail CI when a deployment no longer fits or meets its speed.

Exit status: 0 when every deployment passes, 1 when any fails, 2 when the spec is invalid
(one line per problem on stderr).
"""

from __future__ import annotations

import sys

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("check", help=help_text, description=help_text + ". Exit status 0: all "
                       "pass; 1: any fails; 2: the spec is invalid.")
    p.add_argument("spec", help="the capacity spec: capacity.toml, .json or .yaml")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON object")
    fmt.add_argument("--markdown", action="store_true",
                     help="print a Markdown summary for a pull request")
    p.add_argument("--junit-xml", metavar="FILE", help="also write a JUnit XML test report")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--baseline", metavar="FILE",
                   help="compare with these accepted estimates and fail on drift")
    p.add_argument("--update-baseline", action="store_true",
                   help="write the current estimates to --baseline FILE (no drift check)")
    p.add_argument("--tolerance", default="5%",
                   help="drift allowed against the baseline: 5%% or 0.05 (default 5%%)")


def run(args: argparse.Namespace) -> int:
    from vramest.capacity import SpecError, check, parse_tolerance, write_atomically, write_baseline
    from vramest.capacity.output import (
        junit_xml,
        problems_junit_xml,
        render_json,
        render_markdown,
        render_table,
    )
    from vramest.commands.common import refuse_overwriting
    from vramest.errors import InputError

    if args.update_baseline and not args.baseline:
        raise InputError("--update-baseline needs --baseline FILE: the file to write.")
    refuse_overwriting(
        {"--junit-xml": args.junit_xml, "--html": args.html,
         "--baseline": args.baseline if args.update_baseline else None},
        {"the spec": args.spec,
         "the --baseline file": None if args.update_baseline else args.baseline})
    tolerance = parse_tolerance(args.tolerance)
    compare_with = None if args.update_baseline else args.baseline
    try:
        report = check(args.spec, baseline=compare_with, tolerance=tolerance)
    except SpecError as exc:
        if args.junit_xml:
            write_atomically(args.junit_xml, problems_junit_xml(args.spec, exc.problems))
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"vramest: {count} problem{'s' if count != 1 else ''} in {args.spec}; nothing was "
              "checked.", file=sys.stderr)
        return 2
    if args.junit_xml:
        write_atomically(args.junit_xml, junit_xml(report))
    if args.html:
        from vramest.render.html import render_capacity_html
        from vramest.render.html import write_atomically as write_text

        write_text(args.html, render_capacity_html(report))
    if args.update_baseline:
        write_baseline(report, args.baseline)
    if args.json:
        print(render_json(report))
    elif args.markdown:
        print(render_markdown(report), end="")
    else:
        print(render_table(report))
    if args.update_baseline:
        print(f"vramest: baseline {args.baseline} updated with {len(report.results)} "
              "deployment(s).", file=sys.stderr)
    return 0 if report.passed else 1
