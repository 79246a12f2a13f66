"""Write a `Figure` to PNG or SVG with matplotlib (the `plot` extra).

Only `vramest plot` imports this module; matplotlib is imported inside `save_figure`, with a
one-line hint where it is missing.
"""

from __future__ import annotations

import io
from pathlib import Path

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING
from vramest.render.plots.figure import Figure, Panel, fraction, text_color

if TYPE_CHECKING:
    from typing import Any

FORMATS = ("png", "svg")
INSTALL_HINT = "Charts need matplotlib: pip install 'vramest[plot]'"
_DASHES = {"solid": "-", "dashed": "--", "dotted": ":", "dashdot": "-.", "none": "none"}
_MARKERS = {"o": "o", "+": "P", "D": "o", "P": "s", "d": "."}
PANEL_WIDTH_IN = 5.6
PANEL_HEIGHT_IN = 4.4
MIN_WIDTH_IN = 8.4
DPI = 150


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise InputError(f"--out {str(path)!r} must end in .png or .svg.")
    return suffix


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(INSTALL_HINT) from None


def save_figure(figure: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Draw `figure` and write it atomically to `path` (.png or .svg)."""
    fmt = output_format(path)
    require_matplotlib()
    from matplotlib.figure import Figure as MplFigure

    columns = len(figure.panels)
    # one panel still gets room for the title, subtitle and footnote
    canvas = MplFigure(figsize=(max(PANEL_WIDTH_IN * columns, MIN_WIDTH_IN), PANEL_HEIGHT_IN + 0.9),
                       layout="constrained")
    axes = canvas.subplots(1, columns, squeeze=False)[0]
    for ax, panel in zip(axes, figure.panels, strict=True):
        _draw_panel(ax, panel)
    heading = figure.title + (f"\n{figure.subtitle}" if figure.subtitle else "")
    canvas.suptitle(heading, fontsize=12)
    if figure.footnotes:
        canvas.supxlabel("\n".join(figure.footnotes), fontsize=8, color="#555555")
    from vramest.files import check_writable, write_atomic

    check_writable(path)
    metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {}
    drawn = io.BytesIO()
    canvas.savefig(drawn, format=fmt, dpi=dpi, metadata=metadata)
    return write_atomic(path, drawn.getvalue())


def _draw_panel(ax: Any, panel: Panel) -> None:
    _set_scale(ax.set_xscale, panel.x_scale)
    _set_scale(ax.set_yscale, panel.y_scale)
    for span in panel.spans:
        if span.hatch:
            ax.axvspan(span.x0, span.x1, facecolor="none", edgecolor=span.color, hatch="///",
                       linewidth=0, label=span.label, zorder=0)
        else:
            ax.axvspan(span.x0, span.x1, color=span.color, alpha=0.18, linewidth=0,
                       label=span.label, zorder=0)
    for area in panel.areas:
        ax.fill_between(area.xs, area.lower, area.upper, color=area.color, alpha=0.85,
                        linewidth=0, label=area.label, zorder=1)
    for line in panel.lines:
        ax.plot(line.xs, line.ys, color=line.color, linestyle=_DASHES.get(line.style, "-"),
                marker=_MARKERS.get(line.symbol, "o") if line.markers else None,
                markersize=4 if line.style != "none" else 5, linewidth=1.8, label=line.label,
                zorder=3)
    for hline in panel.hlines:
        ax.axhline(hline.y, color=hline.color, linestyle=_DASHES[hline.style], linewidth=1.6,
                   zorder=4)
        if hline.label:
            ax.annotate(hline.label, xy=(1, hline.y), xycoords=("axes fraction", "data"),
                        xytext=(-4, 3), textcoords="offset points", ha="right", va="bottom",
                        fontsize=8, color=text_color(hline.color), zorder=6,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                              "alpha": 0.8})
    for vline in panel.vlines:
        ax.axvline(vline.x, color=vline.color, linestyle=_DASHES[vline.style], linewidth=1.3,
                   zorder=4)
        ax.annotate(vline.label, xy=(vline.x, 1), xycoords=("data", "axes fraction"),
                    xytext=(3, -4), textcoords="offset points", ha="left", va="top",
                    fontsize=8, color=text_color(vline.color), rotation=90, zorder=6)
    for marker in panel.markers:
        ax.plot([marker.x], [marker.y], marker="o", markersize=7, color=marker.color,
                markeredgecolor="white", zorder=5)
        on_left = fraction(marker.x, panel.x_range, panel.x_scale) < 0.5
        ax.annotate(marker.label, xy=(marker.x, marker.y), xytext=(6 if on_left else -6, -10),
                    textcoords="offset points", ha="left" if on_left else "right", va="top",
                    fontsize=8, color=text_color(marker.color), zorder=6,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": marker.color,
                          "alpha": 0.9})
    ax.set_xlim(*panel.x_range)
    ax.set_ylim(*panel.y_range)
    ax.minorticks_off()
    ax.set_xticks([t.value for t in panel.x_ticks], [t.label for t in panel.x_ticks])
    ax.set_yticks([t.value for t in panel.y_ticks], [t.label for t in panel.y_ticks])
    ax.set_title(panel.title, fontsize=11)
    ax.set_xlabel(panel.x_label + (f"\n{panel.note}" if panel.note else ""))
    ax.set_ylabel(panel.y_label)
    ax.grid(True, color="#dddddd", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    _legend(ax, panel)


def _set_scale(setter: Any, scale: str) -> None:
    if scale == "log2":
        setter("log", base=2)
    elif scale == "log10":
        setter("log", base=10)


def _legend(ax: Any, panel: Panel) -> None:
    handles, labels = ax.get_legend_handles_labels()
    by_label = dict(zip(labels, handles, strict=True))
    wanted = [label for _, label, _ in panel.legend() if label in by_label]
    ax.legend([by_label[label] for label in wanted], wanted, fontsize=8, loc="best",
              framealpha=0.9)
