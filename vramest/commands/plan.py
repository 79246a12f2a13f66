"""vramest plan --model M --input-len 1024 --output-len 256 --ttft 1 --tpot 0.05
[--gpu h100,h200] [--max-gpus 8] [--engine vllm,sglang] [--percentile 90]"""

from __future__ import annotations

import json
import sys

from vramest.commands.common import positive_float, positive_int
from vramest.commands.serving import ENGINE_NAMES, add_workload_args
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("plan", help=help_text, description=help_text)
    add_workload_args(p)
    p.add_argument("--ttft", required=True, type=positive_float("--ttft", "a time in seconds"),
                   help="bound on the time to first token, seconds")
    p.add_argument("--tpot", required=True, type=positive_float("--tpot", "a time in seconds"),
                   help="bound on the time per output token, seconds")
    p.add_argument("--percentile", default=90.0,
                   type=positive_float("--percentile", "a percentile", 99),
                   help="the percentile the bounds apply to (50 to 99; default 90)")
    p.add_argument("--gpu", help="GPU types to consider, comma separated (default: "
                   "h100,h200,b200,a100-80gb,l40s,h100-pcie)")
    p.add_argument("--max-gpus", default=8, type=positive_int("--max-gpus", 16),
                   help="most GPUs in one replica (default 8, at most 16)")
    p.add_argument("--engine", help=f"engines, comma separated ({', '.join(ENGINE_NAMES)}; "
                   "default vllm,sglang,trtllm)")
    p.add_argument("--dtype", help="weight precisions, comma separated (default bf16, fp8, "
                   "awq-int4, and nvfp4 on Blackwell)")
    p.add_argument("--gpu-price", help="price of one card, for the cost: a number for every GPU "
                   "or NAME=PRICE,... (default: the shipped price where there is one)")
    p.add_argument("--disaggregated", action="store_true",
                   help="also search separate prefill and decode pools of each GPU type")
    p.add_argument("--hardware-file", help="JSON file of devices to add or override")
    p.add_argument("--top", default=10, type=positive_int("--top", 1000),
                   help="Pareto entries to print as text (default 10; --json gives all)")
    p.add_argument("--plot", metavar="FILE", help="draw the Pareto front to a .png or .svg file "
                   "(needs the plot extra: matplotlib)")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML page: the chart "
                   "and the table with each launch command")
    p.add_argument("--term", action="store_true", help="draw the Pareto front as text too")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _prices(text: str | None, devices: list) -> dict[str, float]:
    from vramest.advice.cost import parse_amount
    from vramest.errors import InputError
    from vramest.hardware.database import load_hardware

    if not text:
        return {}
    if "=" not in text:
        price = parse_amount(text, "--gpu-price")
        return {d.name: price for d in devices if price is not None}
    out: dict[str, float] = {}
    db = load_hardware()
    for item in _list(text):
        name, _, value = item.partition("=")
        if not value:
            raise InputError(f"--gpu-price {item!r} needs NAME=PRICE, such as h100=25000.")
        amount = parse_amount(value, "--gpu-price")
        if amount is not None:
            out[db.find(name).name] = amount
    return out


def run(args: argparse.Namespace) -> int:
    from vramest.errors import InputError
    from vramest.hardware.database import load_hardware
    from vramest.model.resolve import resolve_model
    from vramest.serving.lengths import parse_length_dist
    from vramest.serving.plan import DEFAULT_ENGINES, DEFAULT_GPUS, Bounds, plan

    if args.plot or args.html:
        from vramest.commands.common import refuse_overwriting

        refuse_overwriting({"--plot": args.plot, "--html": args.html},
                           {"the --hardware-file": args.hardware_file})
    if args.plot:
        from vramest.render.plots.matplotlib_render import output_format, require_matplotlib

        output_format(args.plot)
        require_matplotlib()
    engines = _list(args.engine) or list(DEFAULT_ENGINES)
    for e in engines:
        if e not in ENGINE_NAMES:
            raise InputError(f"Unknown --engine {e!r}; accepted: {', '.join(ENGINE_NAMES)}.")
    info = resolve_model(params=args.params, model=args.model, family="llama",
                         active_params=None, overrides={})
    db = load_hardware(args.hardware_file)
    devices = [db.find(g) for g in (_list(args.gpu) or list(DEFAULT_GPUS))]
    result = plan(info, info.shape.name, devices, input_len=args.input_len,
                  output_len=args.output_len,
                  bounds=Bounds(args.ttft, args.tpot, args.percentile), max_gpus=args.max_gpus,
                  engines=engines, dtypes=_list(args.dtype) or None,
                  prices=_prices(args.gpu_price, devices),
                  lengths=(parse_length_dist(args.input_len_dist, "--input-len-dist"),
                           parse_length_dist(args.output_len_dist, "--output-len-dist")),
                  disaggregated=args.disaggregated)
    out = {"model": info.shape.name, "input_len": args.input_len,
           "output_len": args.output_len, **result.to_json()}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(render(out, args.top))
    if out["pareto"] and (args.plot or args.html or args.term):
        _draw(out, args)
    return 0


def _draw(out: dict, args: argparse.Namespace) -> None:
    from vramest.serving.chart import pareto_figure, pareto_html

    figure = pareto_figure(out)
    notice = print if not args.json else (lambda text: print(text, file=sys.stderr))
    if args.plot:
        from vramest.render.plots.matplotlib_render import save_figure

        notice(f"wrote {save_figure(figure, args.plot)}")
    if args.html:
        from vramest.render.html import write_atomically

        notice(f"wrote {write_atomically(args.html, pareto_html(out))}")
    if args.term:
        from vramest.render.plots.terminal import figure_text

        notice(figure_text(figure))


def render(out: dict, top: int) -> str:
    b = out["bounds"]
    lines = [f"{out['model']}: {out['input_len']} prompt + {out['output_len']} output tokens; "
             f"p{b['percentile']:g} TTFT ≤ {b['ttft_s']:g} s and TPOT ≤ {b['tpot_s'] * 1000:g} ms",
             f"{out['candidates_evaluated']:,} candidates, {out['simulated']:,} simulated, "
             f"{out['feasible']:,} meet the bounds; Pareto front of tokens/s per GPU against "
             "tokens/s per user:", ""]
    if not out["pareto"]:
        lines.append("No deployment meets these bounds; loosen them or allow more GPUs.")
        return "\n".join(lines)
    lines.append(f"  {'GPU':<24} {'n':>2} {'TP':>2} {'PP':>2} {'dtype':<8} {'KV':<5} "
                 f"{'engine':<7} {'seqs':>4} {'tok/s/GPU':>9} {'tok/s/user':>10} "
                 f"{'TTFT p':>7} {'TPOT p':>7} {'$/Mtok':>7}")
    pct = b["percentile"]
    for c in out["pareto"][:top]:
        s = c["serving"]
        ttft = _at(s["ttft_s"], pct)
        tpot = _at(s["tpot_s"], pct)
        cost = c["cost_per_million_tokens"]
        lines.append(
            f"  {c['gpu'][:24]:<24} {c['num_gpus']:>2} {c['tensor_parallel']:>2} "
            f"{c['pipeline_parallel']:>2} {c['dtype']:<8} {c['kv_dtype']:<5} {c['engine']:<7} "
            f"{c['max_num_seqs']:>4} {s['output_tokens_per_s_per_gpu']:>9,.0f} "
            f"{s['output_tokens_per_s_per_user']:>10,.1f} {ttft:>6.2f}s {tpot * 1000:>5.1f}ms "
            f"{'—' if cost is None else f'{cost:.3f}':>7}")
        pools = s.get("disaggregated")
        if pools:
            pre, dec = pools["prefill"], pools["decode"]
            lines.append(f"    disaggregated: {pre['replicas']} prefill × TP{pre['tensor_parallel']}"
                         f" + {dec['replicas']} decode × TP{dec['tensor_parallel']}")
    best = max(out["pareto"], key=lambda c: c["serving"]["output_tokens_per_s_per_gpu"])
    lines += ["", "Most tokens per GPU:", f"  {best['launch_command']}", ""]
    lines += [f"- {n}" for n in out["notes"]]
    return "\n".join(lines)


def _at(spread: dict, percentile: float) -> float:
    from vramest.serving.simulate import Spread

    return Spread(spread["median"], spread["p90"], spread["p99"]).at(percentile)
