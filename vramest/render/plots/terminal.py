"""Draw a `Figure` as plain text, for a quick look over SSH (`vramest plot --term`).

Each panel is a character grid: stacked areas fill cells with their own character, lines
put their symbol in each column, reference lines run across with their label at the right
end, and shaded x ranges become a strip under the axis.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from vramest.frozen import frozen
from vramest.render.plots.figure import Figure, Line, Panel, Span, fraction, transform

DEFAULT_WIDTH = 64
DEFAULT_HEIGHT = 16
GUTTER = 8  # y tick labels
RULES = {"solid": "─", "dashed": "╌", "dotted": "┈", "dashdot": "-"}


@frozen
class Grid:
    """Maps data to cells of a width × height plot area (row 0 at the top)."""

    panel: Panel
    width: int
    height: int

    def column(self, x: float) -> int | None:
        share = fraction(x, self.panel.x_range, self.panel.x_scale)
        if not -1e-9 <= share <= 1 + 1e-9:
            return None
        return min(self.width - 1, max(0, int(share * self.width)))

    def row(self, y: float) -> int | None:
        share = fraction(y, self.panel.y_range, self.panel.y_scale)
        if not -1e-9 <= share <= 1 + 1e-9:
            return None
        return self.height - 1 - min(self.height - 1, max(0, int(share * self.height)))

    def column_x(self, column: int) -> float:
        """The data x at a column's centre."""
        return _inverse((column + 0.5) / self.width, self.panel.x_range, self.panel.x_scale)

    def row_y(self, row: int) -> float:
        return _inverse((self.height - row - 0.5) / self.height, self.panel.y_range,
                        self.panel.y_scale)


def _inverse(share: float, bounds: tuple[float, float], scale: str) -> float:
    lo, hi = (transform(b, scale) for b in bounds)
    position = lo + share * (hi - lo)
    if scale == "log2":
        return float(2**position)
    if scale == "log10":
        return float(10**position)
    return position


def interpolate(xs: Sequence[float], ys: Sequence[float], x: float, scale: str) -> float | None:
    """y at x along a polyline (x positions compared on the axis scale); None outside it."""
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    i = bisect.bisect_left(xs, x)
    if i < len(xs) and xs[i] == x:
        return ys[i]
    x0, x1 = transform(xs[i - 1], scale), transform(xs[i], scale)
    share = (transform(x, scale) - x0) / (x1 - x0) if x1 != x0 else 0.0
    return ys[i - 1] + share * (ys[i] - ys[i - 1])


def figure_text(figure: Figure, *, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT) -> str:
    lines = [figure.title]
    if figure.subtitle:
        lines.append(figure.subtitle)
    for panel in figure.panels:
        lines += ["", *panel_text(panel, width, height)]
    lines += [f"  {note}" for note in figure.footnotes]
    return "\n".join(lines)


def panel_text(panel: Panel, width: int, height: int) -> list[str]:
    grid = Grid(panel, width, height)
    cells = [[" "] * width for _ in range(height)]
    _fill_areas(cells, grid)
    rules = [(grid.row(h.y), h) for h in panel.hlines]
    for row, hline in rules:
        if row is not None:
            cells[row] = [RULES.get(hline.style, "─")] * width
    columns = [(grid.column(v.x), v) for v in panel.vlines]
    for column, _ in columns:
        if column is not None:
            for cells_row in cells:
                cells_row[column] = "│" if cells_row[column] == " " else cells_row[column]
    for line in panel.lines:
        _draw_line(cells, grid, line)
    places = [(grid.column(m.x), grid.row(m.y), m) for m in panel.markers]
    for column, row, _ in places:
        if column is not None and row is not None:
            cells[row][column] = "●"
    # text last, so that no rule or area runs through a label; labels avoid each other
    taken: set[tuple[int, int]] = set()
    for column, vline in columns:
        if column is not None:
            label = f" {vline.label} "
            fits_right = column + len(label) < width
            _place(cells, taken, (0, 1), column + 1 if fits_right else column - 1, label,
                   "start" if fits_right else "end")
    for row, hline in rules:
        if row is not None and hline.label:
            _place(cells, taken, (row - 1, row + 1, row - 2), width - 1, f" {hline.label} ",
                   "end")
    for column, row, marker in places:
        if column is not None and row is not None:
            on_left = column < width // 2
            _place(cells, taken, (row + 1, row - 1, row + 2), column + 1 if on_left else column - 1,
                   f" {marker.label} ", "start" if on_left else "end")
    out = [f"  {panel.title}", f"{panel.y_label}"]
    tick_rows: dict[int, str] = {}
    for tick in panel.y_ticks:
        row = grid.row(tick.value)
        if row is not None:
            tick_rows.setdefault(row, tick.label)
    for r, cell_row in enumerate(cells):
        label = tick_rows.get(r, "")
        out.append(f"{label:>{GUTTER - 1}}{'┤' if label else '│'}{''.join(cell_row)}")
    out += _x_axis(grid)
    out.append(f"{'':{GUTTER}}{panel.x_label:^{width}}".rstrip())
    for hatched in (False, True):  # regimes on one strip, "memory full" on another
        spans = [s for s in panel.spans if s.hatch == hatched]
        if spans:
            out.append(f"{'':{GUTTER}}{_span_strip(grid, spans)}".rstrip())
    if panel.note:
        out.append(f"{'':{GUTTER}}{panel.note}")
    out += _legend(panel)
    return out


def _fill_areas(cells: list[list[str]], grid: Grid) -> None:
    for area in grid.panel.areas:
        for column in range(grid.width):
            x = grid.column_x(column)
            low = interpolate(area.xs, area.lower, x, grid.panel.x_scale)
            high = interpolate(area.xs, area.upper, x, grid.panel.x_scale)
            if low is None or high is None:
                continue
            for row in range(grid.height):
                if low <= grid.row_y(row) < high:
                    cells[row][column] = area.symbol


def _draw_line(cells: list[list[str]], grid: Grid, line: Line) -> None:
    scale = grid.panel.y_scale
    xs, ys = line.xs, line.ys
    if line.style == "none":  # a scatter: the points only
        for x, y in zip(xs, ys, strict=True):
            column, row = grid.column(x), grid.row(y)
            if column is not None and row is not None:
                cells[row][column] = line.symbol
        return
    positions = [transform(y, scale) for y in ys]
    for column in range(grid.width):
        position = interpolate(xs, positions, grid.column_x(column), grid.panel.x_scale)
        if position is None:
            continue
        y = 2**position if scale == "log2" else 10**position if scale == "log10" else position
        row = grid.row(y)
        if row is not None:
            cells[row][column] = line.symbol


def _place(cells: list[list[str]], taken: set[tuple[int, int]], rows: Sequence[int],
           anchor: int, text: str, align: str) -> None:
    """Write a label on the first of `rows` where it overlaps no earlier label."""
    start = anchor - len(text) + 1 if align == "end" else anchor
    usable = [r for r in rows if 0 <= r < len(cells)]
    for r in usable:
        span = {(r, c) for c in range(max(0, start), min(len(cells[r]), start + len(text)))}
        if not span & taken:
            _write(cells[r], anchor, text, align=align)
            taken.update(span)
            return
    if usable:
        _write(cells[usable[0]], anchor, text, align=align)


def _write(row: list[str], anchor: int, text: str, *, align: str) -> None:
    """Write text into a row ending (align='end') or starting at `anchor`, clipped to the row."""
    start = anchor - len(text) + 1 if align == "end" else anchor
    for i, char in enumerate(text):
        if 0 <= start + i < len(row):
            row[start + i] = char


def _x_axis(grid: Grid) -> list[str]:
    rule = ["─"] * grid.width
    labels = [" "] * (grid.width + 12)
    taken_until = -1
    for tick in grid.panel.x_ticks:
        column = grid.column(tick.value)
        if column is None:
            continue
        rule[column] = "┬"
        start = max(0, column - len(tick.label) // 2)
        if start > taken_until:
            _write(labels, start, tick.label, align="start")
            taken_until = start + len(tick.label)
    return [f"{'':{GUTTER - 1}}└{''.join(rule)}", f"{'':{GUTTER}}{''.join(labels).rstrip()}"]


def _span_strip(grid: Grid, spans: Sequence[Span]) -> str:
    strip = [" "] * grid.width
    for span in spans:
        for column in range(grid.width):
            if span.x0 <= grid.column_x(column) <= span.x1:
                strip[column] = span.symbol
    return "".join(strip)


def _legend(panel: Panel) -> list[str]:
    symbols = {a.label: a.symbol for a in panel.areas}
    symbols.update({ln.label: ln.symbol for ln in panel.lines})
    symbols.update({s.label: s.symbol for s in panel.spans})
    entries = [f"{symbols.get(label, '?')} {label}" for _, label, _ in panel.legend()]
    out, current = [], ""
    for entry in entries:
        if current and len(current) + len(entry) + 3 > GUTTER + DEFAULT_WIDTH:
            out.append(current)
            current = ""
        current = f"{current}   {entry}" if current else f"{'':{GUTTER}}{entry}"
    return [*out, current] if current else out
