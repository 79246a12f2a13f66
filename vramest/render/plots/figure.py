"""A chart described as plain data, drawn the same way by every renderer.

The chart functions (`vramest.render.plots.charts`) build a `Figure`; `matplotlib_render` writes it
to PNG or SVG, `svg` draws it as inline SVG for the HTML report, `terminal` as text. Values
are already in display units (GiB, tokens, tokens/s) and ticks are chosen here, so the three
renderers agree on what the reader sees.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from vramest.frozen import field, frozen

SCALES = ("linear", "log2", "log10")

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour
# vision deficiency.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "grey": "#999999",
}
# Lines that must also differ in greyscale print cycle their dash pattern too.
LINE_STYLES = ("solid", "dashed", "dotted", "dashdot")


@frozen
class Tick:
    value: float
    label: str


@frozen
class Area:
    """A filled band between `lower` and `upper` (one layer of a stacked area)."""

    label: str
    xs: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    color: str
    symbol: str  # the terminal's fill character


@frozen
class Line:
    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    color: str
    style: str = "solid"
    markers: bool = False  # draw each point as well (scatter when style is "none")
    symbol: str = "*"  # the terminal's point character
    point_labels: tuple[str, ...] = ()  # one per point, shown on hover in SVG


@frozen
class HLine:
    """A horizontal reference line labelled at its right end (a GPU's usable memory)."""

    y: float
    label: str
    color: str
    style: str = "dashed"


@frozen
class VLine:
    x: float
    label: str
    color: str
    style: str = "dotted"


@frozen
class Span:
    """A shaded range of x (a roofline regime, or where memory has run out)."""

    x0: float
    x1: float
    label: str
    color: str
    hatch: bool = False
    symbol: str = "."


@frozen
class Marker:
    """One labelled point (where a total crosses a GPU's memory)."""

    x: float
    y: float
    label: str
    color: str


@frozen
class Panel:
    title: str
    x_label: str
    y_label: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    x_scale: str = "linear"
    y_scale: str = "linear"
    areas: tuple[Area, ...] = ()
    lines: tuple[Line, ...] = ()
    hlines: tuple[HLine, ...] = ()
    vlines: tuple[VLine, ...] = ()
    spans: tuple[Span, ...] = ()
    markers: tuple[Marker, ...] = ()
    note: str = ""  # one line under the panel, e.g. "does not fit at any batch"

    def legend(self) -> tuple[tuple[str, str, str], ...]:
        """(kind, label, colour) of each legend entry, areas from the top of the stack down."""
        entries = [("area", a.label, a.color) for a in reversed(self.areas)]
        entries += [("line", ln.label, ln.color) for ln in self.lines if ln.label]
        entries += [("span", s.label, s.color) for s in self.spans if s.label]
        seen: set[tuple[str, str]] = set()
        out = []
        for kind, label, color in entries:
            if (label, color) not in seen:
                seen.add((label, color))
                out.append((kind, label, color))
        return tuple(out)


@frozen
class Figure:
    title: str
    panels: tuple[Panel, ...]
    subtitle: str = ""
    footnotes: tuple[str, ...] = field(default=())

    @property
    def element_count(self) -> int:
        """Drawn elements across panels (a cheap 'is anything there' check)."""
        return sum(len(p.areas) + len(p.lines) + len(p.hlines) + len(p.vlines) + len(p.spans)
                   + len(p.markers) for p in self.panels)


def text_color(color: str) -> str:
    """The colour for text in `color` on white: light colours (sky blue, yellow) darkened until
    they read."""
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    luminance = (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255
    if luminance <= 0.45:
        return color
    scale = 0.45 / luminance
    return "#" + "".join(f"{round(c * scale):02X}" for c in (red, green, blue))


# --- scales and ticks ------------------------------------------------------------------------
def transform(value: float, scale: str) -> float:
    """The position of a value along an axis of the given scale (before pixel mapping)."""
    if scale == "linear":
        return value
    positive = max(value, 1e-300)
    return math.log2(positive) if scale == "log2" else math.log10(positive)


def fraction(value: float, bounds: tuple[float, float], scale: str) -> float:
    """0 at the low end of the axis, 1 at the high end."""
    lo, hi = (transform(b, scale) for b in bounds)
    return 0.5 if hi == lo else (transform(value, scale) - lo) / (hi - lo)


def nice_step(span: float, count: int) -> float:
    """A 1-2-2.5-5 × 10^k step giving about `count` intervals over `span`."""
    if span <= 0:
        return 1.0
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def linear_ticks(lo: float, hi: float, count: int, label: Callable[[float], str]) -> tuple[Tick, ...]:
    step = nice_step(hi - lo, count)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(Tick(value, label(value)))
        value += step
    return tuple(ticks)


def power_ticks(lo: float, hi: float, base: int, label: Callable[[float], str],
                most: int = 10) -> tuple[Tick, ...]:
    """Ticks at powers of `base` inside [lo, hi], thinned to at most `most`."""
    first = math.ceil(math.log(max(lo, 1e-300), base) - 1e-9)
    last = math.floor(math.log(max(hi, 1e-300), base) + 1e-9)
    exponents = list(range(first, last + 1))
    stride = max(1, math.ceil(len(exponents) / most))
    return tuple(Tick(float(base**e), label(float(base**e))) for e in exponents[::stride])


def padded_max(values: Sequence[float], headroom: float = 1.08) -> float:
    top = max((v for v in values if math.isfinite(v)), default=1.0)
    return top * headroom if top > 0 else 1.0
