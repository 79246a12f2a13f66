"""vramest [estimate] --params 70B --dtype int4 --ctx 8192"""

from __future__ import annotations

from vramest.commands.common import (
    add_hardware_args,
    add_model_args,
    add_run_args,
    estimate_kwargs,
    hardware_kwargs,
)
from vramest.commands.extras_args import add_extras_args, extras_kwargs
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from vramest.inference.estimate import Estimate


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("estimate", help=help_text, description=help_text)
    add_model_args(p)
    add_run_args(p)
    add_hardware_args(p)
    add_extras_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--explain", action="store_true", help="show each part's formula")


def answer(args: argparse.Namespace) -> Estimate:
    """The estimate for parsed flags (`vramest web` runs this too)."""
    from vramest.api import estimate

    return estimate(**estimate_kwargs(args), **hardware_kwargs(args), **extras_kwargs(args))


def json_text(result: Estimate) -> str:
    """What --json prints, without print's newline."""
    import json  # only here: the text answer never needs the json package

    return json.dumps(result.to_json(), indent=2)


def run(args: argparse.Namespace) -> int:
    from vramest.render.text import render_estimate

    result = answer(args)
    print(json_text(result) if args.json else render_estimate(result, explain=args.explain))
    return 0
