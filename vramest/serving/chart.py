"""The planner's Pareto front as a chart: output tokens/s per GPU against tokens/s per user.

Drawn by the shared renderers (`vramest.render.plots`): PNG/SVG through matplotlib, inline SVG
for an HTML page, text for a terminal.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from vramest.render.plots.charts import rate_label
from vramest.render.plots.figure import OKABE_ITO, Figure, Line, Panel, power_ticks

ENGINE_COLORS = {"vllm": ("blue", "o"), "sglang": ("vermillion", "x"),
                 "trtllm": ("bluish_green", "+"), "llamacpp": ("reddish_purple", "#")}


def pareto_figure(plan: dict[str, object]) -> Figure:
    """`plan` is `vramest plan --json`'s object."""
    entries = plan["pareto"]
    assert isinstance(entries, list)
    if not entries:
        raise ValueError("no deployment meets the bounds: nothing to draw")

    def xy(e: dict) -> tuple[float, float]:
        s = e["serving"]
        return s["output_tokens_per_s_per_user"], s["output_tokens_per_s_per_gpu"]

    points = [xy(e) for e in entries]
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x_lo, x_hi = _decades(xs)
    y_lo, y_hi = _decades(ys)
    ordered = sorted(zip(xs, ys, strict=True))
    lines = [Line("Pareto front", tuple(x for x, _ in ordered), tuple(y for _, y in ordered),
                  OKABE_ITO["grey"], style="dotted", symbol=".")]
    for engine, (color, symbol) in ENGINE_COLORS.items():
        mine = [e for e in entries if e["engine"] == engine]
        if not mine:
            continue
        mine.sort(key=lambda e: xy(e)[0])
        lines.append(Line(
            engine, tuple(xy(e)[0] for e in mine), tuple(xy(e)[1] for e in mine),
            OKABE_ITO[color], style="none", markers=True, symbol=symbol,
            point_labels=tuple(_label(e) for e in mine)))
    b = plan["bounds"]
    assert isinstance(b, dict)
    panel = Panel(title="meets the bounds", x_label="output tokens/s per user (1 / TPOT)",
                  y_label="output tokens/s per GPU", x_range=(x_lo, x_hi), y_range=(y_lo, y_hi),
                  x_ticks=power_ticks(x_lo, x_hi, 10, rate_label),
                  y_ticks=power_ticks(y_lo, y_hi, 10, rate_label), x_scale="log10",
                  y_scale="log10", lines=tuple(lines))
    return Figure(
        title=f"{plan['model']}: the cheapest deployments that meet the SLA",
        subtitle=f"{plan['input_len']} prompt + {plan['output_len']} output tokens; "
                 f"p{b['percentile']:g} TTFT ≤ {b['ttft_s']:g} s, TPOT ≤ "
                 f"{b['tpot_s'] * 1000:g} ms",
        panels=(panel,),
        footnotes=(f"{plan['candidates_evaluated']:,} candidates, {plan['feasible']:,} meet "
                   "the bounds; each point is one Pareto-optimal deployment.",))


def _label(e: dict) -> str:
    cost = e["cost_per_million_tokens"]
    return (f"{e['num_gpus']}× {e['gpu']} TP{e['tensor_parallel']} PP{e['pipeline_parallel']} "
            f"{e['dtype']}/{e['kv_dtype']} {e['engine']} seqs {e['max_num_seqs']}"
            + ("" if cost is None else f", {cost:.3f} per M tokens"))


def _decades(values: Sequence[float]) -> tuple[float, float]:
    lo = 10 ** math.floor(math.log10(max(min(values), 1e-6)))
    hi = 10 ** math.ceil(math.log10(max(max(values), lo * 10)))
    return lo, hi


def pareto_html(plan: dict[str, object]) -> str:
    """A self-contained page: the chart (inline SVG) and the table of the front."""
    from vramest.render.plots.svg import figure_svg

    rows = []
    entries = plan["pareto"]
    notes = plan["notes"]
    assert isinstance(entries, list) and isinstance(notes, list)
    for e in entries:
        s = e["serving"]
        cost = e["cost_per_million_tokens"]
        cells = (e["gpu"], e["num_gpus"], e["tensor_parallel"], e["pipeline_parallel"],
                 e["dtype"], e["kv_dtype"], e["engine"], e["max_num_seqs"],
                 f"{s['output_tokens_per_s_per_gpu']:,.0f}",
                 f"{s['output_tokens_per_s_per_user']:,.1f}",
                 f"{s['ttft_s']['p90']:.3f}", f"{s['tpot_s']['p90'] * 1000:.1f}",
                 "—" if cost is None else f"{cost:.3f}")
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
                    + f"</tr><tr><td colspan=13><code>{html.escape(e['launch_command'])}"
                      "</code></td></tr>")
    head = ("GPU", "n", "TP", "PP", "dtype", "KV", "engine", "seqs", "tok/s/GPU", "tok/s/user",
            "TTFT p90 s", "TPOT p90 ms", "per M tokens")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>vramest plan</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;"
            "text-align:right}code{font-size:90%}</style></head><body>"
            f"<h1>{html.escape(str(plan['model']))}: deployments that meet the SLA</h1>"
            + figure_svg(pareto_figure(plan))
            + "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table><ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
            + "</ul></body></html>\n")
