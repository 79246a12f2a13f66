"""vramest plot --model llama-3.1-8b --dtype bf16,int4 --vs ctx --gpu 4090,h100 --out mem.png"""

from __future__ import annotations

from collections.abc import Sequence

from vramest.commands.common import add_gpu_list_args, add_model_args, add_run_args
from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from vramest.hardware.database import Device
    from vramest.inference.estimate import Estimate
    from vramest.render.plots.figure import Figure

MAX_PANELS = 4


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("plot", help=help_text, description=help_text + ". --dtype takes a "
                       "comma-separated list (one panel each).")
    add_model_args(p)
    add_run_args(p)
    g = p.add_argument_group("chart")
    g.add_argument("--vs", choices=("ctx", "batch"),
                   help="what varies along the x axis (default: ctx; batch with --throughput)")
    g.add_argument("--throughput", action="store_true",
                   help="decode and prefill tokens/s against batch instead of memory")
    g.add_argument("--up-to", help="the x axis's upper end: tokens (128k) or sequences "
                   "(default: the trained context or 64 sequences, widened to show crossings)")
    g.add_argument("--out", help="write the chart to FILE.png or FILE.svg (needs matplotlib)")
    g.add_argument("--term", action="store_true",
                   help="print the chart as text (the default without --out)")
    add_gpu_list_args(p, "hardware", "GPUs whose usable memory to draw, comma-separated "
                      "(4090,a100-80gb,h100; 'local' for this machine's); --throughput takes one",
                      "prompt tokens for --throughput (default: --ctx)")

def split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def run(args: argparse.Namespace) -> int:
    from vramest.render.plots.terminal import figure_text

    axis = args.vs or ("batch" if args.throughput else "ctx")
    if args.throughput and axis != "batch":
        raise InputError("--throughput plots against batch only; drop --vs ctx.")
    if args.out:
        from vramest.commands.common import refuse_overwriting
        from vramest.render.plots.matplotlib_render import output_format, require_matplotlib

        refuse_overwriting({"--out": args.out}, {"the --model file": args.model,
                                                 "the --hardware-file": args.hardware_file})
        output_format(args.out)
        require_matplotlib()
    figure = build_figure(args, axis)
    if args.out:
        from vramest.render.plots.matplotlib_render import save_figure

        print(f"wrote {save_figure(figure, args.out)}")
    if args.term or not args.out:
        print(figure_text(figure))
    return 0


def build_figure(args: argparse.Namespace, axis: str) -> Figure:
    from vramest.inference.placement import RESERVE_NOTE, parse_reserve
    from vramest.render.plots.charts import memory_figure, throughput_figure
    from vramest.render.plots.series import memory_sweeps, speed_sweeps
    from vramest.units import parse_positive_int, parse_tokens

    bases = estimates_per_dtype(args)
    devices = find_devices(split_list(args.gpu), args.hardware_file)
    num_gpus = parse_positive_int(args.num_gpus, what="--num-gpus", maximum=4096)
    pp = parse_positive_int(args.pp, what="--pp", maximum=4096)
    if num_gpus % pp:
        raise InputError(f"--num-gpus {num_gpus} is not a multiple of --pp {pp}; each pipeline "
                         "stage needs the same number of GPUs.")
    reserve = parse_reserve(args.reserve)
    upper = None
    if args.up_to is not None:
        upper = parse_tokens(args.up_to, what="--up-to") if axis == "ctx" else \
            parse_positive_int(args.up_to, what="--up-to")
    if args.throughput:
        if len(devices) != 1:
            raise InputError("--throughput needs exactly one --gpu (its roofline is drawn), "
                             "e.g. --gpu h100.")
        prompt = parse_tokens(args.prompt, what="--prompt") if args.prompt else None
        gen = parse_positive_int(args.gen, what="--gen", maximum=10**7)
        return throughput_figure(speed_sweeps(bases, devices[0], num_gpus=num_gpus,
                                              reserve=reserve, prompt_tokens=prompt,
                                              gen_tokens=gen, engine=args.engine, upper=upper,
                                              pp=pp))
    note = RESERVE_NOTE.split(" by default")[0] if devices and args.reserve is None else (
        f"--reserve {args.reserve} kept free per GPU" if devices else "")
    return memory_figure(memory_sweeps(bases, axis, devices, num_gpus=num_gpus, reserve=reserve,
                                       upper=upper, pp=pp), reserve_note=note)


def estimates_per_dtype(args: argparse.Namespace) -> list[Estimate]:
    """One estimate per --dtype in the list, on one resolved model."""
    from vramest.inference.estimate import estimate_for
    from vramest.model.resolve import SHAPE_OVERRIDES, resolve_model

    dtypes: Sequence[str | None] = split_list(args.dtype) or [None]
    if len(dtypes) > MAX_PANELS:
        raise InputError(f"--dtype lists {len(dtypes)} precisions; a chart holds at most "
                         f"{MAX_PANELS} side by side.")
    info = resolve_model(params=args.params, model=args.model, family=args.family,
                         active_params=args.active_params,
                         overrides={k: getattr(args, k) for k in SHAPE_OVERRIDES})
    return [estimate_for(info, dtype=dtype, ctx=args.ctx, batch=args.batch,
                         kv_dtype=args.kv_dtype, attention=args.attn,
                         prefill_chunk=args.prefill_chunk) for dtype in dtypes]


def find_devices(names: Sequence[str], hardware_file: str | None) -> list[Device]:
    from vramest.hardware.database import load_hardware
    from vramest.inference.deploy import local_device

    db = load_hardware(hardware_file)
    return [local_device(db) if name.lower() == "local" else db.find(name) for name in names]
