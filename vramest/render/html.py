"""One self-contained HTML file for an estimate: something to attach to a pull request or a
purchase request.

The page holds the estimate, its breakdown, the fit on each GPU, charts drawn as inline SVG,
the assumptions, the constants and how well the estimator matches published measurements.
It loads nothing from the network, needs no scripts, and is written atomically. Standard
library only (the charts come from `vramest.render.plots.svg`, not matplotlib).
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from html import escape
from pathlib import Path

from vramest.frozen import TYPE_CHECKING, frozen
from vramest.inference.estimate import Estimate
from vramest.render.plots.charts import MEMORY_LAYERS, calibration_figure, memory_figure, throughput_figure
from vramest.render.plots.figure import Figure
from vramest.render.plots.series import Agreement, median_abs_error, memory_sweeps, speed_sweeps
from vramest.render.plots.svg import figure_svg
from vramest.units import GIB, format_bytes, format_count, format_tokens

if TYPE_CHECKING:
    from typing import Any

PART_LABELS = {name: label for name, label, _, _ in MEMORY_LAYERS}
PART_COLORS = {name: color for name, _, color, _ in MEMORY_LAYERS}


@frozen
class AccuracyGroup:
    name: str
    rows: int
    median_abs_error: float
    worst_abs_error: float
    note: str = ""


@frozen
class AccuracySection:
    memory: tuple[AccuracyGroup, ...]
    speed: tuple[AccuracyGroup, ...]
    charts: tuple[tuple[str, Figure], ...]


@frozen
class Chart:
    caption: str
    figure: Figure


@frozen
class Report:
    """Everything the page shows, computed; `render_html` only formats it."""

    estimate: Estimate  # on the first GPU named, or with the table of common GPUs
    placements: tuple[Estimate, ...]  # one per GPU named, each with its fit and speed
    charts: tuple[Chart, ...]
    accuracy: AccuracySection | None
    command: str
    version: str
    created: str


# --- gathering -------------------------------------------------------------------------------
def build_report(estimate_kwargs: dict[str, Any], gpus: Sequence[str], *,
                 placement: dict[str, Any], accuracy: bool = True, command: str = "") -> Report:
    """Run the estimate on each GPU named (or on the common GPUs), sweep the charts and score
    the constants. `placement` holds estimate()'s hardware arguments other than `gpu`."""
    from vramest.api import estimate
    from vramest.inference.placement import parse_reserve
    from vramest.units import parse_positive_int, parse_tokens

    placements = tuple(estimate(**estimate_kwargs, **placement, gpu=name, max_ctx=True,
                                max_batch=True) for name in gpus)
    main = placements[0] if placements else estimate(**estimate_kwargs, **placement,
                                                     compare_gpus=True)
    devices = [p.fit.device for p in placements if p.fit is not None]
    num_gpus = parse_positive_int(placement.get("num_gpus", 1), what="--num-gpus", maximum=4096)
    pp = parse_positive_int(placement.get("pp", 1), what="--pp", maximum=4096)
    reserve = parse_reserve(placement.get("reserve"))
    charts = []
    for axis in ("ctx", "batch"):
        sweeps = memory_sweeps([main], axis, devices, num_gpus=num_gpus, reserve=reserve, pp=pp)
        charts.append(Chart(_memory_caption(axis, devices), memory_figure(sweeps)))
    first = devices[0] if devices else None
    if first is not None and first.bandwidth_bytes_s:
        prompt = placement.get("prompt")
        sweeps_ = speed_sweeps([main], first, num_gpus=num_gpus, reserve=reserve,
                               prompt_tokens=parse_tokens(prompt, what="--prompt") if prompt
                               else None,
                               gen_tokens=parse_positive_int(placement.get("gen", 128),
                                                             what="--gen", maximum=10**7),
                               engine=placement.get("engine", "generic"), pp=pp)
        charts.append(Chart("Throughput against batch on " + first.name + ": where decode "
                            "stops being limited by memory bandwidth, and where memory runs "
                            "out.", throughput_figure(sweeps_)))
    return Report(estimate=main, placements=placements, charts=tuple(charts),
                  accuracy=accuracy_section(main) if accuracy else None, command=command,
                  version=_version(),
                  created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def _memory_caption(axis: str, devices: Sequence[Any]) -> str:
    what = "context length" if axis == "ctx" else "batch (concurrent sequences)"
    lines = " against each GPU's usable memory" if devices else ""
    return f"Memory per GPU against {what}{lines}; the other settings stay as above."


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vramest")
    except PackageNotFoundError:
        return "unknown"


def accuracy_section(est: Estimate) -> AccuracySection | None:
    """The estimator against the published rows, with the constants this estimate used."""
    from vramest.validation.accuracy import DEFAULT_REFERENCE_DIR, memory_comparisons, speed_comparisons

    if not (DEFAULT_REFERENCE_DIR / "memory.csv").exists():
        return None
    memory = memory_comparisons(DEFAULT_REFERENCE_DIR)
    speed, _ = speed_comparisons(DEFAULT_REFERENCE_DIR, constants=est.constants)
    memory_groups = group_accuracy(memory, lambda c: c.source)
    speed_groups = group_accuracy(speed, lambda c: f"{c.quantity.split(':')[0]} · {c.source}")
    measured = [(f"{c.source}: {c.record_id} ({c.quantity})", c.predicted / GIB, c.measured / GIB)
                for c in memory if "calculated" not in c.source]
    rates = [(f"{c.source}: {c.record_id} ({c.quantity})", c.predicted, c.measured)
             for c in speed if c.unit == "tokens/s"]
    charts = [("Memory: each published measurement against the estimate (calculated rows "
               "left out).", calibration_figure(measured, title="Memory: predicted vs measured",
                                                unit="GiB", before_label="published rows"))]
    if rates:
        charts.append(("Speed: published tokens/s against the roofline estimate with the "
                       "constants above.",
                       calibration_figure(rates, title="Speed: predicted vs measured",
                                          unit="tokens/s", before_label="published rows")))
    return AccuracySection(memory_groups, speed_groups, tuple(charts))


def group_accuracy(comparisons: Iterable[Any], key: Callable[[Any], str]) -> tuple[AccuracyGroup, ...]:
    groups: dict[str, list[Agreement]] = defaultdict(list)
    for c in comparisons:
        if c.measured:
            groups[key(c)].append(Agreement(c.record_id, c.predicted, c.measured))
    return tuple(AccuracyGroup(name, len(points), median_abs_error(points),
                               max(abs(p.error) for p in points),
                               "calculated, not measured" if "calculated" in name else "")
                 for name, points in sorted(groups.items()))


# --- writing ---------------------------------------------------------------------------------
def write_atomically(path: str | Path, text: str) -> Path:
    """Write to a temporary file beside `path`, then rename it into place."""
    from vramest.files import write_atomic

    return write_atomic(path, text)


# --- rendering -------------------------------------------------------------------------------
STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;
color:#222;margin:0;background:#fafafa;line-height:1.45}
main{max-width:1440px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:32px 0 8px;border-bottom:1px solid #ddd;
padding-bottom:4px}.lead{font-size:1.1em;margin:8px 0 16px}.muted{color:#666}
table{border-collapse:collapse;margin:8px 0;font-size:.92em}th,td{padding:4px 10px;
border-bottom:1px solid #e5e5e5;text-align:left;vertical-align:top}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font-size:.88em;background:#f4f4f4;padding:1px 4px;border-radius:3px;word-break:break-word}
.bar{display:flex;height:22px;border-radius:3px;overflow:hidden;margin:8px 0 4px;max-width:900px}
.bar span{display:block;height:100%}.swatch{display:inline-block;width:12px;height:12px;
margin-right:6px;border-radius:2px;vertical-align:-1px}.ok{color:#00734d;font-weight:600}
.no{color:#b34700;font-weight:600}figure{margin:16px 0 24px}figcaption{color:#555;
font-size:.92em;margin-top:4px}svg{display:block}ul{padding-left:20px}
.charts{display:flex;flex-wrap:wrap;gap:8px 32px}.charts figure{max-width:560px}
"""


def render_html(report: Report) -> str:
    est = report.estimate
    title = f"vramest: {est.model.name}, {est.settings.dtype}"
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="lead">{escape(headline(report))}</p>',
        *_settings_section(est),
        *_breakdown_section(est),
        *_fit_section(report),
        *_charts_section(report.charts),
        "<h2>Assumptions</h2>",
        _list(est.assumptions),
        *_constants_section(est),
        *_accuracy_section(report.accuracy),
        f'<p class="muted">Made by vramest {escape(report.version)} on {escape(report.created)}'
        + (f": <code>{escape(report.command)}</code>" if report.command else "") + ".</p>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


def headline(report: Report) -> str:
    est = report.estimate
    s = est.settings
    needs = (f"{est.model.name} in {s.dtype} with a {format_tokens(s.ctx)}-token context and "
             f"batch {s.batch} needs {format_bytes(est.memory.total)}")
    if not report.placements:
        fitting = [o for o in est.gpu_options if o.plan is not None and o.plan.num_gpus == 1]
        if fitting:
            return f"{needs}; it fits on one {fitting[0].device.name}, among others below."
        return needs + "."
    verdicts = []
    for p in report.placements:
        plan = p.fit
        assert plan is not None  # placements are estimates made with a GPU
        layout = f"{plan.num_gpus}× {plan.device.name}" if plan.num_gpus > 1 else plan.device.name
        verdicts.append(f"fits on {layout} with {format_bytes(plan.headroom_bytes)} to spare"
                        if plan.fits else f"does not fit on {layout} "
                        f"({format_bytes(-plan.headroom_bytes)} short)")
    return f"{needs}; it " + "; it ".join(verdicts) + "."


def _settings_section(est: Estimate) -> list[str]:
    m, s = est.model, est.settings
    rows = [("model", m.name), ("parameters", format_count(m.params) + (
        f" ({format_count(m.active_params)} active)" if m.active_params != m.params else "")),
        ("weights", s.dtype), ("KV cache", s.kv_dtype), ("context", f"{s.ctx:,} tokens"),
        ("batch", str(s.batch)), ("prefill chunk", f"{s.prefill_chunk:,} tokens"),
        ("attention", s.attention), ("constants", est.constants_source)]
    return ["<h2>Settings</h2>", _table(("setting", "value"), rows)]


def _breakdown_section(est: Estimate) -> list[str]:
    total = est.memory.total or 1
    bar = "".join(f'<span style="width:{100 * p.bytes / total:.3f}%;background:'
                  f'{PART_COLORS[p.name]}" title="{escape(PART_LABELS[p.name])}"></span>'
                  for p in est.memory.parts())
    rows = "".join(
        f'<tr><td><span class="swatch" style="background:{PART_COLORS[p.name]}"></span>'
        f"{escape(PART_LABELS[p.name])}</td><td class=\"num\">{format_bytes(p.bytes)}</td>"
        f'<td class="num">{p.bytes / total:.1%}</td><td><code>{escape(p.formula)}</code></td></tr>'
        for p in est.memory.parts())
    return ["<h2>Memory breakdown</h2>", f'<div class="bar" role="img" aria-label="share of '
            f'each part">{bar}</div>',
            "<table><tr><th>part</th><th>size</th><th>share</th><th>formula</th></tr>"
            f'{rows}<tr><th>total</th><th class="num">{format_bytes(est.memory.total)}</th>'
            "<th></th><th></th></tr></table>"]


def _fit_section(report: Report) -> list[str]:
    if report.placements:
        rows = [_placement_row(p) for p in report.placements]
        header = ("GPU", "GPUs", "per GPU", "usable", "headroom", "fits", "longest context",
                  "most sequences", "prefill", "decode", "first token")
        out = ["<h2>Fit and speed</h2>", _table(header, rows, numeric_from=1, raw=True)]
        speed = report.placements[0].throughput
        if speed is not None:
            out += [f'<p class="muted">Speed on {escape(speed.gpu)}:</p>', _list(speed.notes)]
        return out
    rows = []
    for option, speed in zip(report.estimate.gpu_options, report.estimate.speeds, strict=True):
        if option.plan is None:
            rows.append((escape(option.device.name), "—", "", "", escape(option.reason)))
            continue
        plan = option.plan
        rows.append((escape(option.device.name), str(plan.num_gpus),
                     format_bytes(plan.per_gpu.total), format_bytes(plan.headroom_bytes),
                     _rate(speed.decode_tokens_per_s if speed else None)))
    if not rows:
        return []
    return ["<h2>Where it fits</h2>", '<p class="muted">The fewest cards of each common GPU '
            "(tensor parallel); name GPUs with --gpu for details and charts.</p>",
            _table(("GPU", "cards", "per GPU", "headroom", "decode per sequence"), rows,
                   numeric_from=1, raw=True)]


def _placement_row(est: Estimate) -> tuple[str, ...]:
    plan, speed = est.fit, est.throughput
    assert plan is not None  # a placement row is an estimate made with a GPU
    layout = str(plan.num_gpus) + (f" (TP {plan.tp} × PP {plan.pp})" if plan.pp > 1 else "")
    verdict = '<span class="ok">yes</span>' if plan.fits else '<span class="no">no</span>'
    ttft = speed.time_to_first_token_s if speed is not None else None
    return (escape(plan.device.name), layout, format_bytes(plan.per_gpu.total),
            format_bytes(plan.usable_bytes), format_bytes(plan.headroom_bytes), verdict,
            f"{plan.max_ctx:,} tokens" if plan.max_ctx is not None else "",
            f"{plan.max_batch:,}" if plan.max_batch is not None else "",
            _rate(speed.prefill_tokens_per_s if speed else None),
            _rate(speed.decode_tokens_per_s if speed else None),
            f"{ttft:.2f} s" if ttft is not None else "n/a")


def _charts_section(charts: Sequence[Chart]) -> list[str]:
    if not charts:
        return []
    out = ["<h2>Charts</h2>", '<div class="charts">']
    for i, chart in enumerate(charts):
        out.append(f"<figure>{figure_svg(chart.figure, id_prefix=f'chart{i}')}"
                   f"<figcaption>{escape(chart.caption)}</figcaption></figure>")
    return [*out, "</div>"]


def _constants_section(est: Estimate) -> list[str]:
    from vramest.inference.constants import DEFAULTS, SOURCES

    defaults = DEFAULTS.as_dict()
    rows = [(name, f"{value:g}" if isinstance(value, float) else f"{value:,}",
             "default" if defaults.get(name) == value else est.constants_source,
             SOURCES.get(name, "")) for name, value in est.constants.as_dict().items()]
    return ["<h2>Constants</h2>", _table(("constant", "value", "from", "source"), rows)]


def _accuracy_section(section: AccuracySection | None) -> list[str]:
    out = ["<h2>Accuracy against published measurements</h2>"]
    if section is None:
        return [*out, '<p class="muted">The reference rows (vramest/validation/reference) are not '
                "installed here, so no accuracy figures.</p>"]
    header = ("rows from", "rows", "median |error|", "worst |error|", "")
    memory = [(g.name, str(g.rows), f"{g.median_abs_error:.1%}", f"{g.worst_abs_error:.1%}",
               g.note) for g in section.memory]
    speed = [(g.name, str(g.rows), f"{g.median_abs_error:.1%}", f"{g.worst_abs_error:.1%}",
              g.note) for g in section.speed]
    out += ["<p>How far the estimator, with the constants above, is from each published "
            "figure it can express. Memory rows test the weights, KV cache and peak formulas; "
            "prefill rows test the compute efficiency, decode rows the memory efficiency.</p>",
            "<h3>Memory</h3>", _table(header, memory, numeric_from=1),
            "<h3>Speed</h3>", _table(header, speed, numeric_from=1)]
    for i, (caption, figure) in enumerate(section.charts):
        out.append(f"<figure>{figure_svg(figure, id_prefix=f'accuracy{i}')}"
                   f"<figcaption>{escape(caption)} Hover a point for its row.</figcaption>"
                   "</figure>")
    return out


def _rate(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f} tok/s" if value >= 100 else f"{value:.1f} tok/s"


def _list(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], *, numeric_from: int | None = None,
           raw: bool = False) -> str:
    """A table; cells are escaped unless `raw` (already HTML); columns from `numeric_from` on
    are right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            css = ' class="num"' if numeric_from is not None and i >= numeric_from else ""
            cells.append(f"<td{css}>{cell if raw else escape(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _training_section(deployment: Any) -> list[str]:
    """A training deployment's peak moment of the step, part by part, with its formulas."""
    from vramest.training import estimate_training

    est = estimate_training(**deployment.training_kwargs())
    peak = est.peak
    rows = [(escape(p.name.replace("_", " ")), format_bytes(p.bytes), f"<code>{escape(p.formula)}</code>")
            for p in peak.parts]
    rows.append(("CUDA context", format_bytes(est.cuda_context_bytes), ""))
    rows.append(("<b>needed per GPU</b>", f"<b>{format_bytes(est.fit.required_bytes)}</b>", ""))
    return [f"<h2>{escape(deployment.name)}: training memory at the peak "
            f"({escape(peak.name.replace('_', ' '))})</h2>",
            _table(("part", "size", "formula"), rows, numeric_from=1, raw=True),
            _list(est.assumptions)]


# --- a capacity spec (vramest check --html) -------------------------------------------------
def render_capacity_html(report: Any, *, created: str | None = None) -> str:
    """One page for a `vramest check` run: every deployment's verdict and margins, then each
    deployment's memory breakdown. `report` is a vramest.capacity.CheckReport."""
    from vramest.api import estimate

    when = created or datetime.datetime.now().isoformat(timespec="seconds")
    verdict = "all deployments pass" if report.passed else "some deployments FAIL"
    rows = []
    for result in report.results:
        f = result.figures
        ok = '<span class="ok">pass</span>' if result.passed else '<span class="no">FAIL</span>'
        layout = f"{f.num_gpus}× {escape(f.gpu)}" if f.num_gpus > 1 else escape(f.gpu)
        speed = (_rate(f.train_tokens_per_s_per_gpu) + " per GPU, training"
                 if result.deployment.is_training else _rate(f.decode_tokens_per_s))
        rows.append((escape(result.deployment.name), ok, layout, format_bytes(f.per_gpu_bytes),
                     format_bytes(f.usable_bytes), format_bytes(f.headroom_bytes),
                     format_bytes(f.required_headroom_bytes),
                     speed, escape("; ".join(result.failures) or "—")))
    body = [f"<h1>{escape('vramest check: ' + str(report.source))}</h1>",
            f'<p class="lead">{escape(verdict)} ({len(report.results)} checked).</p>',
            "<h2>Deployments</h2>",
            _table(("deployment", "verdict", "GPUs", "per GPU", "usable", "headroom",
                    "required", "decode tok/s", "why it fails"), rows, numeric_from=3, raw=True)]
    for result in report.results:
        if result.deployment.is_training:
            body += _training_section(result.deployment)
            continue
        est = estimate(**result.deployment.estimate_kwargs())
        section = _breakdown_section(est)
        section[0] = f"<h2>{escape(result.deployment.name)}: memory breakdown</h2>"
        body += [*section, _list(est.assumptions)]
    body.append(f'<p class="muted">Made by vramest {escape(_version())} on {escape(when)}.</p>')
    title = f"vramest check: {report.source}"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")
