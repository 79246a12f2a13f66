"""Charts and the HTML report: the numbers behind them, the files they make, and what they hold."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from vramest.cli import main
from vramest.errors import InputError
from vramest.hardware.database import load_hardware
from vramest.inference.estimate import estimate_at, estimate_for
from vramest.model.resolve import resolve_model
from vramest.render.plots.charts import calibration_figure, memory_figure, throughput_figure
from vramest.render.plots.figure import OKABE_ITO, Figure
from vramest.render.plots.series import (
    batch_ladder,
    memory_sweeps,
    speed_sweeps,
    stretch_to_show,
    sweep_values,
)
from vramest.render.plots.svg import figure_svg
from vramest.render.plots.terminal import figure_text
from vramest.units import GIB

MODEL = "meta-llama/Llama-3.1-8B"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bases() -> list:
    info = resolve_model(model=MODEL)
    return [estimate_for(info, dtype=d) for d in ("bf16", "int4")]


@pytest.fixture(scope="module")
def devices() -> list:
    db = load_hardware()
    return [db.find("4090"), db.find("h100")]


@pytest.fixture(scope="module")
def figures(bases: list, devices: list) -> dict[str, Figure]:
    rows = [(f"row {i}", 1.1 * v, v) for i, v in enumerate((0.5, 2.0, 8.0, 30.0, 70.0))]
    return {
        "memory-ctx": memory_figure(memory_sweeps(bases, "ctx", devices)),
        "memory-batch": memory_figure(memory_sweeps(bases, "batch", devices)),
        "throughput": throughput_figure(speed_sweeps(bases, devices[1])),
        "calibration": calibration_figure(rows, [(n, 0.98 * m, m) for n, _, m in rows],
                                          unit="GiB"),
    }


# --- the numbers -----------------------------------------------------------------------------
def test_memory_sweep_matches_the_estimate_and_grows(bases: list, devices: list) -> None:
    sweeps = memory_sweeps(bases, "ctx", devices)
    for base, sweep in zip(bases, sweeps, strict=True):
        totals = [p.total for p in sweep.points]
        assert totals == sorted(totals)
        point = sweep.points[10]
        assert point.total == estimate_at(base, ctx=point.x).memory.total
    assert len({s.upper for s in sweeps}) == 1, "dtype panels share one x range"


def test_crossing_is_the_largest_context_that_fits(bases: list, devices: list) -> None:
    sweep = memory_sweeps(bases[:1], "ctx", devices[:1])[0]
    limit = sweep.limits[0]
    assert 0 < limit.largest_fit < sweep.upper
    fits = estimate_at(bases[0], ctx=limit.largest_fit).memory.total
    too_long = estimate_at(bases[0], ctx=limit.largest_fit + 1).memory.total
    assert fits <= limit.usable_bytes < too_long


def test_speed_sweep_marks_where_memory_runs_out(bases: list, devices: list) -> None:
    sweep = speed_sweeps(bases[:1], devices[0])[0]
    assert 0 < sweep.largest_batch < sweep.upper
    rates = [p.decode_tokens_per_s for p in sweep.points]
    assert rates == sorted(rates), "batching raises total decode throughput"
    assert all(p.prefill_tokens_per_s for p in sweep.points)


def test_ranges_and_ladders() -> None:
    assert sweep_values(5, 64) == (1, 2, 3, 4, 5)
    assert sweep_values(1024, 4) == (1, 256, 512, 768, 1024)
    assert batch_ladder(20) == (1, 2, 3, 4, 6, 8, 12, 16, 20)
    assert stretch_to_show(128, [100, 10_000]) == 128
    assert stretch_to_show(128, [200]) == 256


def test_bad_axis_is_an_input_error(bases: list) -> None:
    with pytest.raises(InputError, match="--vs"):
        memory_sweeps(bases, "prompt")


# --- what the charts say ---------------------------------------------------------------------
def test_memory_chart_is_labelled(figures: dict[str, Figure]) -> None:
    figure = figures["memory-ctx"]
    assert [p.title for p in figure.panels] == ["bf16", "int4, KV fp16"]
    panel = figure.panels[0]
    assert "GiB" in panel.y_label and "tokens" in panel.x_label
    assert [label for _, label, _ in panel.legend()] == ["KV cache", "activations", "overhead",
                                                         "weights"]
    assert any("RTX 4090" in h.label and "GiB usable" in h.label for h in panel.hlines)
    assert any(m.label.endswith("tokens fit") for m in panel.markers)
    assert figures["memory-batch"].panels[0].x_label.startswith("batch")
    assert figures["throughput"].panels[0].y_label == "throughput (tokens/s)"


def test_throughput_chart_shades_regimes_and_the_memory_limit(figures: dict[str, Figure]) -> None:
    panel = figures["throughput"].panels[0]
    labels = {s.label for s in panel.spans}
    assert "decode memory-bound" in labels and "memory full" in labels
    assert any("memory full after batch" in v.label for v in panel.vlines)


def test_colours_are_colour_blind_safe(figures: dict[str, Figure]) -> None:
    palette = set(OKABE_ITO.values())
    for figure in figures.values():
        for panel in figure.panels:
            colours = {a.color for a in panel.areas} | {ln.color for ln in panel.lines} | \
                {h.color for h in panel.hlines} | {s.color for s in panel.spans}
            assert colours <= palette


def test_calibration_chart_takes_before_and_after() -> None:
    figure = calibration_figure([("a", 11.0, 10.0), ("b", 9.0, 10.0)], [("a", 10.1, 10.0)])
    scatter = [ln for ln in figure.panels[0].lines if ln.style == "none"]
    assert [ln.label.split(":")[0] for ln in scatter] == ["before", "after"]
    assert "10.0%" in scatter[0].label and "1.0%" in scatter[1].label
    with pytest.raises(ValueError):
        calibration_figure([("zero", 0.0, 1.0)])


# --- rendering -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["memory-ctx", "memory-batch", "throughput", "calibration"])
def test_every_chart_renders_to_png_and_svg(kind: str, figures: dict[str, Figure],
                                            tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from vramest.render.plots.matplotlib_render import save_figure

    png = save_figure(figures[kind], tmp_path / f"{kind}.png", dpi=60)
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(png)
    assert pixels.std() > 0.05, "the image is blank"
    svg = save_figure(figures[kind], tmp_path / f"{kind}.svg")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert sum(1 for e in root.iter() if e.tag.endswith(("path", "use"))) > 30
    assert not list(tmp_path.glob(".*")), "no temporary file left behind"


@pytest.mark.parametrize("kind", ["memory-ctx", "memory-batch", "throughput", "calibration"])
def test_inline_svg_is_well_formed_and_drawn(kind: str, figures: dict[str, Figure]) -> None:
    text = figure_svg(figures[kind], id_prefix=kind, standalone=True)
    root = ET.fromstring(text)
    drawn = [e for e in root.iter() if e.tag.rsplit("}", 1)[-1] in
             ("polygon", "polyline", "circle", "rect", "line", "path")]
    assert len(drawn) > 20
    assert "<script" not in text
    texts = "".join(e.text or "" for e in root.iter() if e.tag.endswith("text"))
    assert figures[kind].title in text and figures[kind].panels[0].y_label in texts


def test_terminal_chart(figures: dict[str, Figure]) -> None:
    text = figure_text(figures["memory-ctx"])
    assert "█ weights" in text and "▓ KV cache" in text
    assert "NVIDIA GeForce RTX 4090" in text and "tokens fit" in text
    assert "context length (tokens)" in text
    speed = figure_text(figures["throughput"])
    assert "m decode memory-bound" in speed and "# memory full" in speed


# --- the command -----------------------------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_plot_term(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "plot", "--model", MODEL, "--dtype", "bf16,int8",
                           "--gpu", "4090", "--up-to", "64k")
    assert code == 0
    assert "memory vs context length" in out and "int8" in out and "64k" in out


def test_plot_writes_a_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out_file = tmp_path / "speed.png"
    code, out, _ = run_cli(capsys, "plot", "--params", "7B", "--throughput", "--gpu", "l40s",
                           "--out", str(out_file))
    assert code == 0 and f"wrote {out_file}" in out
    assert out_file.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize("args, message", [
    (("--throughput", "--vs", "ctx", "--gpu", "h100"), "batch only"),
    (("--throughput",), "exactly one --gpu"),
    (("--out", "chart.jpg"), ".png or .svg"),
    (("--dtype", "bf16,fp8,int8,int4,nf4"), "at most 4"),
    (("--gpu", "no-such-gpu"), "Unknown GPU"),
])
def test_plot_errors_are_one_line(capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                                  message: str) -> None:
    code, _, err = run_cli(capsys, "plot", "--params", "7B", *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_without_matplotlib_one_line_says_how_to_install(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    code, _, err = run_cli(capsys, "plot", "--params", "7B", "--out", str(tmp_path / "m.png"))
    assert code == 2
    assert err == "vramest: Charts need matplotlib: pip install 'vramest[plot]'\n"


def test_report_and_term_do_not_import_matplotlib(tmp_path: Path) -> None:
    script = (
        "import sys\nfrom vramest.cli import main\n"
        f"main(['report', '--params', '7B', '--gpu', '4090', '--no-accuracy', '--html', "
        f"{str(tmp_path / 'r.html')!r}])\n"
        "main(['plot', '--params', '7B'])\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)


# --- the HTML report -------------------------------------------------------------------------
class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.open_svg = 0
        self.svg_children = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]
        if tag == "svg":
            self.open_svg += 1
        elif self.open_svg:
            self.svg_children += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.open_svg -= 1


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", "--model", MODEL, "--dtype", "int4", "--gpu", "4090,l40s",
                 "--html", str(path)]) == 0
    assert [p.name for p in path.parent.iterdir()] == ["report.html"], "written atomically"
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained(report_page: str) -> None:
    page = PageParser()
    page.feed(report_page)
    page.close()
    assert "script" not in page.tags
    for forbidden in ("link", "img", "iframe", "object", "embed"):
        assert forbidden not in page.tags
    for name, value in page.attributes:
        if name in ("src", "href", "xlink:href", "action", "srcset"):
            assert not value.startswith(("http:", "https:", "//")), (name, value)
        assert "http://" not in value and "https://" not in value, (name, value)
        assert not name.startswith("on"), f"event handler {name}"
    assert "url(http" not in report_page and "@import" not in report_page


def test_report_holds_every_section_and_inline_charts(report_page: str) -> None:
    page = PageParser()
    page.feed(report_page)
    assert page.tags.count("svg") == 5  # memory vs ctx and batch, speed, two accuracy charts
    assert page.svg_children > 500
    for heading in ("Settings", "Memory breakdown", "Fit and speed", "Charts", "Assumptions",
                    "Constants", "Accuracy against published measurements"):
        assert f"<h2>{heading}</h2>" in report_page
    assert "NVIDIA L40S" in report_page and "memory_efficiency_gpu" in report_page
    assert "vramest report --model meta-llama/Llama-3.1-8B --dtype int4" in report_page


def test_report_without_gpus_lists_common_gpus(tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    assert main(["report", "--params", "70B", "--dtype", "int4", "--no-accuracy",
                 "--html", str(path)]) == 0
    text = path.read_text(encoding="utf-8")
    assert "<h2>Where it fits</h2>" in text and text.count("<svg") == 2
    ET.fromstring(text[text.index("<svg"):text.index("</svg>") + 6])


def test_report_to_a_missing_folder_is_an_input_error(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "report", "--params", "7B", "--no-accuracy", "--html",
                           str(tmp_path / "nowhere" / "r.html"))
    assert code == 2 and "does not exist" in err


def test_memory_values_are_in_gib(figures: dict[str, Figure], bases: list) -> None:
    weights = figures["memory-ctx"].panels[0].areas[0]
    assert weights.label == "weights"
    assert weights.upper[0] == pytest.approx(bases[0].memory.weights.bytes / GIB)


def test_pipeline_parallel_sweeps_follow_the_fit() -> None:
    """With --pp, memory per GPU is the largest stage's, as fit planning computes it."""
    from vramest import estimate
    from vramest.hardware.database import default_hardware
    from vramest.inference.placement import per_gpu_memory
    from vramest.render.plots.series import memory_sweeps

    est = estimate(model="llama-3.1-70b", dtype="bf16", ctx=4096)
    sweep = memory_sweeps([est], "ctx", [default_hardware().find("h100")], num_gpus=4, pp=2,
                          upper=4096, count=3)[0]
    assert sweep.pp == 2 and sweep.points[-1].x == 4096
    assert sweep.points[-1].total == per_gpu_memory(est, 2, 2).total
