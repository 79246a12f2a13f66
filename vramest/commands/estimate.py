"""vramest [estimate] --params 70B --dtype int4 --ctx 8192"""

from __future__ import annotations

import argparse
import json

from vramest.commands.common import (
    add_hardware_args,
    add_model_args,
    add_run_args,
    estimate_kwargs,
    hardware_kwargs,
)


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("estimate", help=help_text, description=help_text)
    add_model_args(p)
    add_run_args(p)
    add_hardware_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--explain", action="store_true", help="show each part's formula")


def run(args: argparse.Namespace) -> int:
    from vramest.api import estimate
    from vramest.render.text import render_estimate

    result = estimate(**estimate_kwargs(args), **hardware_kwargs(args))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render_estimate(result, explain=args.explain))
    return 0
