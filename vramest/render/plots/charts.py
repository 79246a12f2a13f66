"""Sweeps turned into figures: what each chart shows, in display units, with its ticks.

Pure functions from the data in `vramest.render.plots.series` to a `vramest.render.plots.figure.Figure`;
renderers never decide what a chart says.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

from vramest.render.plots.figure import (
    LINE_STYLES,
    OKABE_ITO,
    Area,
    Figure,
    HLine,
    Line,
    Marker,
    Panel,
    Span,
    Tick,
    VLine,
    linear_ticks,
    padded_max,
    power_ticks,
)
from vramest.render.plots.series import (
    Agreement,
    MemorySweep,
    SpeedSweep,
    agreements,
    median_abs_error,
)
from vramest.units import GIB

# Constant parts at the bottom of the stack, the parts that grow on top.
MEMORY_LAYERS: tuple[tuple[str, str, str, str], ...] = (
    # (MemoryPoint field, legend label, colour, terminal fill)
    ("weights", "weights", OKABE_ITO["blue"], "█"),
    ("overhead", "overhead", OKABE_ITO["reddish_purple"], "░"),
    ("activations", "activations", OKABE_ITO["bluish_green"], "▒"),
    ("kv_cache", "KV cache", OKABE_ITO["orange"], "▓"),
)
GPU_COLORS = (OKABE_ITO["vermillion"], OKABE_ITO["black"], OKABE_ITO["sky_blue"],
              OKABE_ITO["yellow"])
AXIS_LABELS = {"ctx": "context length (tokens)", "batch": "batch (concurrent sequences)"}
AXIS_NAMES = {"ctx": "context length", "batch": "batch"}


# --- labels ----------------------------------------------------------------------------------
def tokens_label(value: float) -> str:
    """8192 → '8k', 1536 → '1.5k', 100 → '100'."""
    if value >= 1024:
        return f"{value / 1024:g}k" if value < 1024**2 else f"{value / 1024**2:g}M"
    return f"{value:g}"


def rate_label(value: float) -> str:
    """Tokens per second, compactly: 1, 10, 100, 1k, 10k, 1M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def signed_label(value: float) -> str:
    return f"{value:+g}" if value else "0"


def gib_label(value: float) -> str:
    return f"{value:g}"


def axis_value_label(axis: str, value: int) -> str:
    """A crossing, exactly: '29,402 tokens' or '12 sequences'."""
    return f"{value:,} tokens" if axis == "ctx" else f"{value:,} sequences"


def power_of_two_ticks(lo: float, hi: float, label: Callable[[float], str],
                       most: int = 8) -> tuple[Tick, ...]:
    """Evenly spaced ticks whose step is a power of two (context lengths and batches)."""
    step = 1
    while (hi - lo) / step > most:
        step *= 2
    first = math.ceil(lo / step) * step
    return tuple(Tick(float(v), label(float(v))) for v in range(int(first), int(hi) + 1, step))


# --- memory ----------------------------------------------------------------------------------
def memory_figure(sweeps: Sequence[MemorySweep], *, reserve_note: str = "") -> Figure:
    """Stacked memory parts against context or batch, one panel per precision, with each GPU's
    usable memory and the point where the total crosses it."""
    if not sweeps:
        raise ValueError("memory_figure needs at least one sweep")
    top = padded_max([p.total / GIB for s in sweeps for p in s.points]
                     + [lim.usable_bytes / GIB for s in sweeps for lim in s.limits])
    y_ticks = linear_ticks(0, top, 6, gib_label)
    panels = tuple(_memory_panel(s, top, y_ticks) for s in sweeps)
    first = sweeps[0]
    fixed = (f"batch {first.fixed}" if first.axis == "ctx"
             else f"context {tokens_label(first.fixed)} tokens")
    if first.pp > 1:
        gpus = (f"per GPU, {first.num_gpus} GPUs: tensor parallel over {first.num_gpus // first.pp}"
                f" × {first.pp} pipeline stages")
    else:
        gpus = f"per GPU, tensor parallel over {first.num_gpus} GPUs" if first.num_gpus > 1 else \
            "one GPU"
    subtitle = " · ".join(x for x in (fixed, gpus, reserve_note) if x)
    return Figure(title=f"{first.model}: memory vs {AXIS_NAMES[first.axis]}", panels=panels,
                  subtitle=subtitle)


def _memory_panel(sweep: MemorySweep, top: float, y_ticks: tuple[Tick, ...]) -> Panel:
    xs = tuple(float(p.x) for p in sweep.points)
    areas = []
    floor = [0.0] * len(xs)
    for field_name, label, color, symbol in MEMORY_LAYERS:
        ceiling = [f + getattr(p, field_name) / GIB for f, p in zip(floor, sweep.points, strict=True)]
        areas.append(Area(label, xs, tuple(floor), tuple(ceiling), color, symbol))
        floor = ceiling
    hlines, markers, notes = [], [], []
    for i, limit in enumerate(sweep.limits):
        color = GPU_COLORS[i % len(GPU_COLORS)]
        usable = limit.usable_bytes / GIB
        hlines.append(HLine(usable, f"{limit.name} ({usable:.1f} GiB usable)", color,
                            LINE_STYLES[1 + i % (len(LINE_STYLES) - 1)]))
        if limit.largest_fit == 0:
            notes.append(f"{limit.name}: does not fit even at {AXIS_NAMES[sweep.axis]} 1")
        elif limit.largest_fit < xs[0]:
            notes.append(f"{limit.name}: fits up to {axis_value_label(sweep.axis, limit.largest_fit)}")
        elif limit.largest_fit <= xs[-1]:
            markers.append(Marker(float(limit.largest_fit), usable,
                                  f"{axis_value_label(sweep.axis, limit.largest_fit)} fit",
                                  color))
        else:
            notes.append(f"{limit.name}: fits beyond the chart, up to "
                         f"{axis_value_label(sweep.axis, limit.largest_fit)}")
    vlines = []
    if sweep.axis == "ctx" and sweep.trained_ctx and xs[0] < sweep.trained_ctx < xs[-1]:
        vlines.append(VLine(float(sweep.trained_ctx),
                            f"trained context {tokens_label(sweep.trained_ctx)}",
                            OKABE_ITO["grey"]))
    title = sweep.dtype if sweep.kv_dtype == sweep.dtype else f"{sweep.dtype}, KV {sweep.kv_dtype}"
    return Panel(title=title, x_label=AXIS_LABELS[sweep.axis], y_label="memory per GPU (GiB)",
                 x_range=(0.0, xs[-1]), y_range=(0.0, top),
                 x_ticks=power_of_two_ticks(0, xs[-1], tokens_label if sweep.axis == "ctx"
                                            else lambda v: f"{v:g}"),
                 y_ticks=y_ticks, areas=tuple(areas), hlines=tuple(hlines),
                 vlines=tuple(vlines), markers=tuple(markers), note="; ".join(notes))


# --- throughput ------------------------------------------------------------------------------
SPEED_COLORS = {"decode": OKABE_ITO["blue"], "per_sequence": OKABE_ITO["sky_blue"],
                "prefill": OKABE_ITO["vermillion"], "memory": OKABE_ITO["sky_blue"],
                "compute": OKABE_ITO["yellow"], "full": OKABE_ITO["grey"]}


def throughput_figure(sweeps: Sequence[SpeedSweep]) -> Figure:
    """Decode and prefill tokens/s against batch (log-log), with the decode roofline's
    memory-bound and compute-bound ranges shaded and the batch where memory runs out."""
    if not sweeps:
        raise ValueError("throughput_figure needs at least one sweep")
    rates = [v for s in sweeps for p in s.points
             for v in (p.decode_tokens_per_s, p.decode_tokens_per_s_per_sequence,
                       p.prefill_tokens_per_s) if v]
    low = 10 ** math.floor(math.log10(min(rates)))
    high = 10 ** math.ceil(math.log10(max(rates) * 1.05))
    y_ticks = power_ticks(low, high, 10, rate_label)
    panels = tuple(_speed_panel(s, (low, high), y_ticks) for s in sweeps)
    first = sweeps[0]
    gpus = f"{first.num_gpus}× {first.gpu}" if first.num_gpus > 1 else first.gpu
    subtitle = (f"{gpus} · prompt {tokens_label(first.prompt_tokens)} tokens, "
                f"{first.gen_tokens} generated · {first.engine} engine")
    return Figure(title=f"{first.model}: speed vs batch", panels=panels, subtitle=subtitle,
                  footnotes=("Roofline estimate: each phase takes the longer of its compute time "
                             "and its memory-traffic time.",))


def _speed_panel(sweep: SpeedSweep, y_range: tuple[float, float],
                 y_ticks: tuple[Tick, ...]) -> Panel:
    batches = tuple(float(p.batch) for p in sweep.points)
    x_range = (1.0, batches[-1])
    lines = [Line("decode, all sequences", batches,
                  tuple(p.decode_tokens_per_s for p in sweep.points), SPEED_COLORS["decode"],
                  markers=True, symbol="D"),
             Line("decode, per sequence", batches,
                  tuple(p.decode_tokens_per_s_per_sequence for p in sweep.points),
                  SPEED_COLORS["per_sequence"], style="dashed", symbol="d")]
    prefill = [(b, p.prefill_tokens_per_s) for b, p in zip(batches, sweep.points, strict=True)
               if p.prefill_tokens_per_s]
    if prefill:
        lines.append(Line("prefill", tuple(b for b, _ in prefill), tuple(r for _, r in prefill),
                          SPEED_COLORS["prefill"], markers=True, symbol="P"))
    spans = list(regime_spans(sweep))
    vlines, note = [], ""
    if sweep.largest_batch == 0:
        spans.append(Span(*x_range, "memory full", SPEED_COLORS["full"], hatch=True, symbol="#"))
        note = "does not fit in memory even at batch 1"
    elif sweep.largest_batch < batches[-1]:
        spans.append(Span(float(sweep.largest_batch), batches[-1], "memory full",
                          SPEED_COLORS["full"], hatch=True, symbol="#"))
        vlines.append(VLine(float(sweep.largest_batch), f"memory full after batch "
                            f"{sweep.largest_batch}", OKABE_ITO["black"], style="solid"))
    else:
        note = f"memory holds up to batch {sweep.largest_batch}, beyond the chart"
    return Panel(title=sweep.dtype, x_label="batch (concurrent sequences)",
                 y_label="throughput (tokens/s)", x_range=x_range, y_range=y_range,
                 x_ticks=power_ticks(*x_range, 2, lambda v: f"{v:g}"), y_ticks=y_ticks,
                 x_scale="log2", y_scale="log10", lines=tuple(lines), spans=tuple(spans),
                 vlines=tuple(vlines), note=note)


def regime_spans(sweep: SpeedSweep) -> tuple[Span, ...]:
    """Ranges of batch where decode is memory-bound or compute-bound; a change between two
    sampled batches is drawn at their geometric mean."""
    points = sweep.points
    spans = []
    start = float(points[0].batch)
    for before, after in itertools.pairwise(points):
        if before.decode_bound != after.decode_bound:
            edge = math.sqrt(before.batch * after.batch)
            spans.append(_regime(before.decode_bound, start, edge))
            start = edge
    spans.append(_regime(points[-1].decode_bound, start, float(points[-1].batch)))
    return tuple(spans)


def _regime(bound: str, x0: float, x1: float) -> Span:
    return Span(x0, x1, f"decode {bound}-bound", SPEED_COLORS[bound],
                symbol="m" if bound == "memory" else "c")


# --- predicted vs measured -------------------------------------------------------------------
def calibration_figure(before: Sequence[tuple[str, float, float]],
                       after: Sequence[tuple[str, float, float]] = (), *,
                       title: str = "Predicted vs measured", unit: str = "",
                       before_label: str = "before", after_label: str = "after") -> Figure:
    """Predicted against measured (log-log, with the line of perfect agreement) and the
    relative error of each point, for the points before and, where given, after a fit.

    `before` and `after` are plain (label, predicted, measured) rows in one unit, so a
    calibration report can hand in its own points.
    """
    groups = [(before_label, agreements(before), OKABE_ITO["vermillion"], "o"),
              (after_label, agreements(after), OKABE_ITO["blue"], "+")]
    groups = [g for g in groups if g[1]]
    if not groups:
        raise ValueError("calibration_figure needs at least one row with positive values")
    values = [v for _, pts, _, _ in groups for p in pts for v in (p.predicted, p.measured)]
    low = 10 ** math.floor(math.log10(min(values)))
    high = 10 ** math.ceil(math.log10(max(values)))
    unit_suffix = f" ({unit})" if unit else ""
    scatter = []
    residuals = []
    for name, points, color, symbol in groups:
        legend = f"{name}: {len(points)} points, median |error| {median_abs_error(points):.1%}"
        scatter.append(_points(legend, points, color, symbol, lambda p: p.predicted))
        residuals.append(_points(legend, points, color, symbol, lambda p: 100 * p.error))
    exact = Line("predicted = measured", (low, high), (low, high), OKABE_ITO["black"],
                 style="dotted", symbol=".")
    x_ticks = power_ticks(low, high, 10, rate_label)
    agreement_panel = Panel(title="predicted against measured",
                            x_label=f"measured{unit_suffix}", y_label=f"predicted{unit_suffix}",
                            x_range=(low, high), y_range=(low, high), x_ticks=x_ticks,
                            y_ticks=x_ticks, x_scale="log10", y_scale="log10",
                            lines=(exact, *scatter))
    errors = [100 * p.error for _, pts, _, _ in groups for p in pts]
    reach = max(10.0, max(abs(e) for e in errors) * 1.1)
    residual_panel = Panel(title="error of each prediction", x_label=f"measured{unit_suffix}",
                           y_label="predicted / measured − 1 (%)", x_range=(low, high),
                           y_range=(-reach, reach), x_ticks=x_ticks,
                           y_ticks=linear_ticks(-reach, reach, 6, signed_label),
                           x_scale="log10", lines=tuple(residuals),
                           hlines=(HLine(0.0, "", OKABE_ITO["black"], "dotted"),))
    return Figure(title=title, panels=(agreement_panel, residual_panel))


def _points(legend: str, points: Sequence[Agreement], color: str, symbol: str,
            y_of: Callable[[Agreement], float]) -> Line:
    ordered = sorted(points, key=lambda p: p.measured)
    return Line(legend, tuple(p.measured for p in ordered), tuple(y_of(p) for p in ordered),
                color, style="none", markers=True, symbol=symbol,
                point_labels=tuple(f"{p.label}: predicted {p.predicted:.4g}, measured "
                                   f"{p.measured:.4g} ({p.error:+.1%})" for p in ordered))
