"""Draw a `Figure` as SVG text with the standard library only (the HTML report's charts).

The output has no scripts and references nothing outside itself: hatching and clipping are
defined inside the SVG and named with `id_prefix`, so several charts can share one page.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

from vramest.frozen import frozen
from vramest.render.plots.figure import Figure, Line, Panel, fraction, text_color

PANEL_WIDTH = 470
PLOT_HEIGHT = 250
MARGIN_LEFT = 62
MARGIN_RIGHT = 18
MARGIN_TOP = 30
AXIS_BAND = 44  # tick labels and the axis label under the plot
LINE_HEIGHT = 16
MAX_COLUMNS = 3
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
DASHES = {"solid": "", "dashed": "6 4", "dotted": "2 3", "dashdot": "8 3 2 3", "none": ""}
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
_CHAR_WIDTH = 6.2  # mean width of an 11 px sans-serif character


@frozen
class PlotBox:
    """Where a panel's plot area lies in the SVG, and how data maps into it."""

    left: float
    top: float
    width: float
    height: float
    panel: Panel

    def x(self, value: float) -> float:
        return self.left + self.width * fraction(value, self.panel.x_range, self.panel.x_scale)

    def y(self, value: float) -> float:
        return self.top + self.height * (1 - fraction(value, self.panel.y_range,
                                                      self.panel.y_scale))

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height


def figure_svg(figure: Figure, *, id_prefix: str = "chart", standalone: bool = False) -> str:
    """The figure as one <svg> element; `standalone` adds the XML namespace a .svg file needs
    (inline SVG in HTML gets it from the parser)."""
    columns = min(MAX_COLUMNS, len(figure.panels))
    rows = math.ceil(len(figure.panels) / columns)
    legend_rows = max(math.ceil(len(p.legend()) / legend_columns(p)) for p in figure.panels)
    notes = any(p.note for p in figure.panels)
    panel_height = (MARGIN_TOP + PLOT_HEIGHT + AXIS_BAND + LINE_HEIGHT * notes
                    + LINE_HEIGHT * legend_rows + 8)
    header = 30 + (20 if figure.subtitle else 0)
    width = columns * PANEL_WIDTH
    footnotes = [line for note in figure.footnotes
                 for line in textwrap.wrap(note, int((width - 20) / _CHAR_WIDTH))]
    height = header + rows * panel_height + LINE_HEIGHT * len(footnotes) + 6
    namespace = f' xmlns="{SVG_NAMESPACE}"' if standalone else ""
    out = [f'<svg{namespace} viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label={quoteattr(figure.title)} font-family={quoteattr(FONT)} '
           'style="max-width:100%;height:auto">',
           f"<title>{escape(figure.title)}</title>",
           _definitions(id_prefix),
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           _text(width / 2, 22, figure.title, size=15, anchor="middle", weight="600")]
    if figure.subtitle:
        out.append(_text(width / 2, 42, figure.subtitle, size=12, anchor="middle",
                         fill="#444444"))
    for i, panel in enumerate(figure.panels):
        left = (i % columns) * PANEL_WIDTH
        top = header + (i // columns) * panel_height
        box = PlotBox(left + MARGIN_LEFT, top + MARGIN_TOP,
                      PANEL_WIDTH - MARGIN_LEFT - MARGIN_RIGHT, PLOT_HEIGHT, panel)
        out.extend(_panel(box, f"{id_prefix}-{i}", id_prefix))
    for j, note in enumerate(footnotes):
        out.append(_text(width / 2, header + rows * panel_height + LINE_HEIGHT * j, note,
                         size=11, anchor="middle", fill="#555555"))
    out.append("</svg>")
    return "\n".join(out)


def _definitions(prefix: str) -> str:
    return (f'<defs><pattern id="{prefix}-hatch" patternUnits="userSpaceOnUse" width="7" '
            'height="7" patternTransform="rotate(45)"><rect width="7" height="7" '
            'fill="#ffffff" fill-opacity="0.35"/><line x1="0" y1="0" x2="0" y2="7" '
            'stroke="#888888" stroke-width="2"/></pattern></defs>')


def _panel(box: PlotBox, clip_id: str, prefix: str) -> list[str]:
    p = box.panel
    out = [f'<g class="panel" aria-label={quoteattr(p.title)}>',
           f'<clipPath id="{clip_id}"><rect x="{box.left:.1f}" y="{box.top:.1f}" '
           f'width="{box.width:.1f}" height="{box.height:.1f}"/></clipPath>',
           _text(box.left + box.width / 2, box.top - 10, p.title, size=13, anchor="middle",
                 weight="600")]
    out.extend(_grid(box))
    out.append(f'<g clip-path="url(#{clip_id})">')
    for span in p.spans:
        x0, x1 = box.x(span.x0), box.x(span.x1)
        fill = f'fill="url(#{prefix}-hatch)"' if span.hatch else \
            f'fill="{span.color}" fill-opacity="0.22"'
        out.append(f'<rect x="{x0:.1f}" y="{box.top:.1f}" width="{max(0.0, x1 - x0):.1f}" '
                   f'height="{box.height:.1f}" {fill}><title>{escape(span.label)}</title></rect>')
    for area in p.areas:
        upper = [(box.x(x), box.y(y)) for x, y in zip(area.xs, area.upper, strict=True)]
        lower = [(box.x(x), box.y(y)) for x, y in zip(area.xs, area.lower, strict=True)]
        out.append(f'<polygon points="{_points(upper + lower[::-1])}" fill="{area.color}" '
                   f'fill-opacity="0.85"><title>{escape(area.label)}</title></polygon>')
    for line in p.lines:
        out.extend(_line(box, line))
    out.append("</g>")
    for hline in p.hlines:
        y = box.y(hline.y)
        out.append(f'<line x1="{box.left:.1f}" y1="{y:.1f}" x2="{box.right:.1f}" y2="{y:.1f}" '
                   f'stroke="{hline.color}" stroke-width="1.8"{_dash(hline.style)}/>')
        if hline.label:
            out.append(_text(box.right - 4, y - 4, hline.label, size=11, anchor="end",
                             fill=text_color(hline.color), halo=True))
    for vline in p.vlines:
        x = box.x(vline.x)
        out.append(f'<line x1="{x:.1f}" y1="{box.top:.1f}" x2="{x:.1f}" y2="{box.bottom:.1f}" '
                   f'stroke="{vline.color}" stroke-width="1.4"{_dash(vline.style)}/>')
        out.append(f'<text x="{x + 12:.1f}" y="{box.top + 6:.1f}" font-size="11" '
                   f'fill="{text_color(vline.color)}" text-anchor="end" paint-order="stroke" '
                   f'stroke="#ffffff" stroke-width="3" '
                   f'transform="rotate(-90 {x + 12:.1f} {box.top + 6:.1f})">'
                   f"{escape(vline.label)}</text>")
    for marker in p.markers:
        x, y = box.x(marker.x), box.y(marker.y)
        on_left = x < box.left + box.width / 2
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{marker.color}" '
                   f'stroke="#ffffff" stroke-width="1.5"/>')
        out.append(_text(x + (8 if on_left else -8), y + 16, marker.label, size=11,
                         anchor="start" if on_left else "end", fill=text_color(marker.color),
                         halo=True,
                         weight="600"))
    out.append(f'<rect x="{box.left:.1f}" y="{box.top:.1f}" width="{box.width:.1f}" '
               f'height="{box.height:.1f}" fill="none" stroke="#333333" stroke-width="1"/>')
    out.extend(_axis_labels(box))
    out.extend(_legend(box, prefix))
    out.append("</g>")
    return out


def _grid(box: PlotBox) -> Iterable[str]:
    p = box.panel
    for tick in p.x_ticks:
        x = box.x(tick.value)
        if box.left - 0.5 <= x <= box.right + 0.5:
            yield (f'<line x1="{x:.1f}" y1="{box.top:.1f}" x2="{x:.1f}" y2="{box.bottom:.1f}" '
                   'stroke="#e3e3e3" stroke-width="1"/>')
            yield _text(x, box.bottom + 15, tick.label, size=11, anchor="middle")
    for tick in p.y_ticks:
        y = box.y(tick.value)
        if box.top - 0.5 <= y <= box.bottom + 0.5:
            yield (f'<line x1="{box.left:.1f}" y1="{y:.1f}" x2="{box.right:.1f}" y2="{y:.1f}" '
                   'stroke="#e3e3e3" stroke-width="1"/>')
            yield _text(box.left - 6, y + 4, tick.label, size=11, anchor="end")


def _axis_labels(box: PlotBox) -> Iterable[str]:
    p = box.panel
    yield _text(box.left + box.width / 2, box.bottom + 34, p.x_label, size=12, anchor="middle")
    mid = box.top + box.height / 2
    yield (f'<text x="{box.left - 46:.1f}" y="{mid:.1f}" font-size="12" text-anchor="middle" '
           f'transform="rotate(-90 {box.left - 46:.1f} {mid:.1f})">{escape(p.y_label)}</text>')
    if p.note:
        yield _text(box.left + box.width / 2, box.bottom + 34 + LINE_HEIGHT, p.note, size=11,
                    anchor="middle", fill="#555555", italic=True)


def _legend(box: PlotBox, prefix: str) -> Iterable[str]:
    entries = box.panel.legend()
    top = box.bottom + AXIS_BAND + LINE_HEIGHT * bool(box.panel.note) + 6
    columns = legend_columns(box.panel)
    column_width = (PANEL_WIDTH - 20) / columns
    styles = {ln.label: ln for ln in box.panel.lines}
    for i, (kind, label, color) in enumerate(entries):
        x = box.left - MARGIN_LEFT + 12 + (i % columns) * column_width
        y = top + (i // columns) * LINE_HEIGHT
        if kind == "line":
            line = styles[label]
            if line.style != "none":
                yield (f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 18:.1f}" y2="{y:.1f}" '
                       f'stroke="{color}" stroke-width="2"{_dash(line.style)}/>')
            if line.markers:
                yield _marker(x + 9, y, line.symbol, color)
        elif kind == "span" and "full" in label:
            yield (f'<rect x="{x:.1f}" y="{y - 5:.1f}" width="18" height="10" '
                   f'fill="url(#{prefix}-hatch)" stroke="#888888" stroke-width="0.5"/>')
        else:
            opacity = "0.22" if kind == "span" else "0.85"
            yield (f'<rect x="{x:.1f}" y="{y - 5:.1f}" width="18" height="10" fill="{color}" '
                   f'fill-opacity="{opacity}"/>')
        yield _text(x + 24, y + 4, label, size=11)


def legend_columns(panel: Panel) -> int:
    """Two legend columns where the labels are short enough, otherwise one."""
    longest = max((len(label) for _, label, _ in panel.legend()), default=0)
    return 2 if longest * _CHAR_WIDTH + 30 < (PANEL_WIDTH - 20) / 2 else 1


def _line(box: PlotBox, line: Line) -> list[str]:
    points = [(box.x(x), box.y(y)) for x, y in zip(line.xs, line.ys, strict=True)
              if math.isfinite(y) and (box.panel.y_scale == "linear" or y > 0)]
    out = []
    if line.style != "none" and len(points) > 1:
        out.append(f'<polyline points="{_points(points)}" fill="none" stroke="{line.color}" '
                   f'stroke-width="2"{_dash(line.style)} stroke-linejoin="round"/>')
    if line.markers:
        labels = line.point_labels or (line.label,) * len(points)
        for (x, y), label in zip(points, labels, strict=False):
            out.append(_marker(x, y, line.symbol, line.color, label))
    return out


def _marker(x: float, y: float, symbol: str, color: str, label: str = "") -> str:
    title = f"<title>{escape(label)}</title>" if label else ""
    if symbol == "+":
        return (f'<path d="M{x - 4:.1f},{y:.1f}h8M{x:.1f},{y - 4:.1f}v8" stroke="{color}" '
                f'stroke-width="2.2">{title}</path>')
    if symbol == "P":
        return (f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" fill="{color}">'
                f"{title}</rect>")
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.2" fill="{color}">{title}</circle>'


def _points(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _dash(style: str) -> str:
    pattern = DASHES.get(style, "")
    return f' stroke-dasharray="{pattern}"' if pattern else ""


def _text(x: float, y: float, content: str, *, size: int = 12, anchor: str = "start",
          fill: str = "#222222", weight: str = "", halo: bool = False, italic: bool = False) -> str:
    extra = f' font-weight="{weight}"' if weight else ""
    extra += ' paint-order="stroke" stroke="#ffffff" stroke-width="3"' if halo else ""
    extra += ' font-style="italic"' if italic else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}"{extra}>{escape(content)}</text>')
