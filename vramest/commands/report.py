"""vramest report --model llama-3.1-8b --dtype int4 --gpu 4090,l40s --html report.html"""

from __future__ import annotations

import shlex

from vramest.commands.common import add_gpu_list_args, add_model_args, add_run_args, estimate_kwargs
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("report", help=help_text, description=help_text + ": the estimate, its "
                       "breakdown, the fit on each GPU, charts (inline SVG), the assumptions and "
                       "the accuracy of the constants used. No scripts, no network fetches.")
    add_model_args(p)
    add_run_args(p)
    add_gpu_list_args(p, "hardware and speed", "GPUs to fit on, comma-separated (4090,l40s,h100; "
                      "'local' for this machine's); without it, the table of common GPUs",
                      "prompt tokens for the speed estimate (default: --ctx)")
    o = p.add_argument_group("output")
    o.add_argument("--html", required=True, metavar="FILE", help="the HTML file to write")
    o.add_argument("--no-accuracy", action="store_true",
                   help="leave out the comparison with published measurements (faster)")


def run(args: argparse.Namespace) -> int:
    from vramest.commands.common import refuse_overwriting
    from vramest.commands.plot import split_list
    from vramest.render.html import build_report, render_html, write_atomically

    refuse_overwriting({"--html": args.html}, {"the --model file": args.model,
                                               "the --hardware-file": args.hardware_file})
    placement = {"num_gpus": args.num_gpus, "pp": args.pp, "reserve": args.reserve,
                 "prompt": args.prompt, "gen": args.gen, "engine": args.engine,
                 "hardware_file": args.hardware_file}
    report = build_report(estimate_kwargs(args), split_list(args.gpu), placement=placement,
                          accuracy=not args.no_accuracy,
                          command=command_line(args))
    print(f"wrote {write_atomically(args.html, render_html(report))}")
    return 0


# (flag, attribute, default): the flags a reader needs to run the same report again
_REPEATED_FLAGS = (("--params", "params", None), ("--model", "model", None),
                   ("--active-params", "active_params", None), ("--family", "family", "llama"),
                   ("--dtype", "dtype", None), ("--kv-dtype", "kv_dtype", None),
                   ("--ctx", "ctx", None), ("--batch", "batch", "1"),
                   ("--prefill-chunk", "prefill_chunk", None), ("--attn", "attn", "sdpa"),
                   ("--gpu", "gpu", None), ("--num-gpus", "num_gpus", "1"), ("--pp", "pp", "1"),
                   ("--reserve", "reserve", None), ("--prompt", "prompt", None),
                   ("--gen", "gen", "128"), ("--engine", "engine", "generic"))


def command_line(args: argparse.Namespace) -> str:
    """The command that makes this report again (the output file left out)."""
    from vramest.commands.common import SHAPE_FLAGS

    words = ["vramest", "report"]
    for flag, name, default in (*_REPEATED_FLAGS, *((f, n, None) for f, n in SHAPE_FLAGS)):
        value = getattr(args, name, None)
        if value is not None and str(value) != str(default):
            words += [flag, str(value)]
    return shlex.join(words)
