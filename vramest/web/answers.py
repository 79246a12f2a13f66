"""The web page's questions answered by the CLI's own parser and code.

A query string (`params=70B&dtype=int4&ctx=8192&gpu=h100`) becomes the argv of
`vramest estimate --json` (each name is an estimate flag without its dashes), which the CLI's
parser reads and the estimate command's code runs; /api/estimate returns the very text the
CLI prints. What would read the server's disk from a request is refused: `--hardware-file`,
a `--profile` file, and a `--model` that is not a catalog name or a file uploaded to this
server (`upload:ID`, resolved by `vramest.web.uploads`).
"""

from __future__ import annotations

import argparse
import shlex
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import parse_qsl

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen

if TYPE_CHECKING:
    from typing import Any

    from vramest.inference.estimate import Estimate

MAX_FIELDS = 64
MAX_VALUE_CHARS = 200
UPLOAD_PREFIX = "upload:"
# Flags whose value names a file on the server's disk: a web request may not choose one.
_REFUSED = {"hardware-file": "the page cannot name a file on the server; --hardware-file is "
                             "for the command line"}
# Flags the page never sends: --json is always on, --help prints usage.
_NOT_QUERIES = {"json", "help"}
_TRUE, _FALSE = ("", "1", "true", "on"), ("0", "false", "off")
# The GPU lines drawn when no GPU is chosen: one card of each common memory size.
CHART_GPUS = ("NVIDIA GeForce RTX 4090", "NVIDIA L40S", "NVIDIA H100 SXM5 80GB",
              "NVIDIA H200 SXM 141GB")

UploadResolver = Callable[[str], tuple[str, str]]  # token -> (private path, name shown)


@frozen
class Query:
    """A validated query: the CLI's argv for it, and the command line a person would type."""

    argv: tuple[str, ...]
    command: str

    @property
    def chart_key(self) -> tuple[str, ...]:
        """The chart's inputs: its x axis is the context, so every input but --ctx (which
        still counts when a --prefill-chunk may or may not be shorter than it)."""
        if any(word.startswith("--prefill-chunk=") for word in self.argv):
            return self.argv
        return tuple(word for word in self.argv if not word.startswith("--ctx="))


@lru_cache(maxsize=1)
def estimate_parser() -> argparse.ArgumentParser:
    """The CLI's parser with only the estimate command, built once (parsing does not change it)."""
    from vramest.commands.parser import build_parser

    return build_parser(only="estimate")


@lru_cache(maxsize=1)
def query_names() -> dict[str, bool]:
    """Each estimate flag without its dashes → whether it takes a value (False: a switch)."""
    parser = estimate_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    names: dict[str, bool] = {}
    for action in sub.choices["estimate"]._actions:
        for option in action.option_strings:
            name = option.removeprefix("--")
            if option.startswith("--") and name not in _NOT_QUERIES:
                names[name] = action.nargs != 0
    return names


def parse_query(query: str, resolve_upload: UploadResolver | None = None) -> Query:
    """The argv of `vramest estimate --json` for a query string, refusing what the CLI would
    refuse, unknown or repeated names, and anything that would read the server's disk."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_FIELDS,
                          errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"The query is not understood: give at most {MAX_FIELDS} name=value "
                         "pairs, UTF-8 and URL-encoded.") from None
    names = query_names()
    argv: list[str] = ["estimate", "--json"]
    shown: list[str] = ["vramest"]
    seen: set[str] = set()
    for name, value in pairs:
        if name not in names or name in _REFUSED:
            reason = _REFUSED.get(name) or ("accepted: " + ", ".join(sorted(
                n for n in names if n not in _REFUSED)))
            raise InputError(f"Unknown parameter {name[:50]!r}; {reason}.")
        if name in seen:
            raise InputError(f"Parameter {name!r} is given twice; give each parameter once.")
        seen.add(name)
        if len(value) > MAX_VALUE_CHARS:
            raise InputError(f"Parameter {name!r} is longer than {MAX_VALUE_CHARS} characters.")
        if not names[name]:
            if value.lower() in _TRUE:
                argv.append(f"--{name}")
                shown.append(f"--{name}")
            elif value.lower() not in _FALSE:
                raise InputError(f"Parameter {name!r} is a switch: give 1 to turn it on or 0 to "
                                 "leave it off.")
            continue
        typed = value
        if name == "model":
            value, typed = _model_value(value, resolve_upload)
        elif name == "profile" and value.lower() != "none":
            raise InputError("The page cannot name a profile file on the server; give "
                             "profile=none for the shipped constants, or leave it out for this "
                             "machine's stored profile.")
        argv.append(f"--{name}={value}")  # '=' keeps a value such as '-5' a value
        shown += [f"--{name}", typed]
    return Query(argv=tuple(argv), command=shlex.join(shown))


def _model_value(value: str, resolve_upload: UploadResolver | None) -> tuple[str, str]:
    """(the --model value the CLI gets, the one a person would type) for a catalog name or an
    uploaded file; anything else (a path, a hub id) is refused."""
    from vramest.model.catalog import default_catalog

    if value.startswith(UPLOAD_PREFIX):
        if resolve_upload is None:
            raise InputError("This server takes no uploads.")
        return resolve_upload(value.removeprefix(UPLOAD_PREFIX))
    catalog = default_catalog()
    if catalog.get(value) is None:
        close = catalog.suggest(value).split("`vramest models`")[0]
        raise InputError(f"Unknown model {value[:100]!r}; {close}the page takes a catalog name "
                         "(the picker lists them) or a dropped config.json, safetensors or GGUF "
                         "file, never a path or hub id.")
    return value, value


def run_estimate(query: Query) -> tuple[argparse.Namespace, Estimate]:
    """Parse the argv with the CLI's parser and run what `vramest estimate` runs."""
    from vramest.commands.estimate import answer

    args = estimate_parser().parse_args(list(query.argv))
    return args, answer(args)


def cli_json(result: Estimate) -> str:
    """Exactly what `vramest … --json` prints, print's newline included."""
    from vramest.commands.estimate import json_text

    return json_text(result) + "\n"


def view(query: Query, result: Estimate) -> dict[str, Any]:
    """What the page shows: the CLI's JSON, its figures formatted as the terminal prints them,
    the CLI's own text (with --explain) and the command line."""
    from vramest.render.text import render_estimate

    return {"estimate": result.to_json(), "command": query.command,
            "formatted": formatted(result), "text": render_estimate(result, explain=True)}


def formatted(result: Estimate) -> dict[str, Any]:
    """The figures as the terminal shows them (vramest.units and vramest.render.text)."""
    from vramest.inference.placement import describe
    from vramest.render.text import render_fit
    from vramest.units import format_bytes, format_count, format_tokens

    s, m, total = result.settings, result.model, result.memory.total
    out: dict[str, Any] = {
        "headline": f"{m.name}  ·  {format_count(m.params)} params  ·  {s.dtype}  ·  ctx "
                    f"{format_tokens(s.ctx)}  ·  batch {s.batch}",
        "parts": [{"name": p.name, "bytes": p.bytes, "text": format_bytes(p.bytes),
                   "share": f"{p.bytes / total if total else 0:.1%}", "formula": p.formula}
                  for p in result.memory.parts()],
        "total": {"bytes": total, "text": format_bytes(total)},
        "assumptions": list(result.assumptions),
        "constants": [f"{k} = {v}" for k, v in result.constants.as_dict().items()],
        "constants_source": result.constants_source,
    }
    if result.fit is not None:
        plan = result.fit
        out["fit"] = {"describe": describe(plan), "fits": plan.fits, "gpu": plan.device.name,
                      "num_gpus": plan.num_gpus,
                      "per_gpu": format_bytes(plan.per_gpu.total),
                      "usable": format_bytes(plan.usable_bytes),
                      "headroom": format_bytes(plan.headroom_bytes),
                      "lines": render_fit(result)[1:]}
    if result.gpu_options:
        out["gpus"] = [_gpu_row(option, speed)
                       for option, speed in zip(result.gpu_options, result.speeds, strict=True)]
    if result.engine_report is not None:
        out["engine"] = result.engine_report.log_lines()
    return out


def _gpu_row(option: Any, speed: Any) -> dict[str, Any]:
    from vramest.render.text import _rate  # the terminal's tok/s format, one rule for both
    from vramest.units import format_bytes

    row: dict[str, Any] = {"gpu": option.device.name, "fits": option.plan is not None}
    if option.plan is None:
        row["reason"] = option.reason
        return row
    p = option.plan
    row.update(cards=p.num_gpus, per_gpu=format_bytes(p.per_gpu.total),
               headroom=format_bytes(p.headroom_bytes),
               decode=_rate(speed.decode_tokens_per_s if speed else None))
    return row


_CHARTS: OrderedDict[tuple[str, ...], str] = OrderedDict()
_CHARTS_LOCK = threading.Lock()
MAX_CHARTS = 64


def chart(query: Query) -> str:
    """The chart for a query, kept for the last few inputs: moving the context slider
    redraws nothing."""
    with _CHARTS_LOCK:
        svg = _CHARTS.get(query.chart_key)
        if svg is not None:
            _CHARTS.move_to_end(query.chart_key)
            return svg
    args, result = run_estimate(query)
    svg = chart_svg(args, result)
    with _CHARTS_LOCK:
        _CHARTS[query.chart_key] = svg
        while len(_CHARTS) > MAX_CHARTS:
            _CHARTS.popitem(last=False)
    return svg


def chart_svg(args: argparse.Namespace, result: Estimate) -> str:
    """Memory per GPU against context with the GPU lines, drawn as `vramest report` draws it."""
    from vramest.hardware.database import load_hardware
    from vramest.inference.placement import RESERVE_NOTE, parse_reserve
    from vramest.render.plots.charts import memory_figure
    from vramest.render.plots.series import memory_sweeps
    from vramest.render.plots.svg import figure_svg

    if result.fit is not None:
        devices, num_gpus, pp = [result.fit.device], result.fit.num_gpus, result.fit.pp
    else:
        db = load_hardware(None)
        devices, num_gpus, pp = [db.find(name) for name in CHART_GPUS], 1, 1
    reserve = parse_reserve(args.reserve)
    note = RESERVE_NOTE.split(" by default")[0] if args.reserve is None else \
        f"--reserve {args.reserve} kept free per GPU"
    sweeps = memory_sweeps([result], "ctx", devices, num_gpus=num_gpus, reserve=reserve, pp=pp)
    return figure_svg(memory_figure(sweeps, reserve_note=note), id_prefix="web")


def models(search: str = "") -> dict[str, Any]:
    """The catalog for the picker, filtered by a case-insensitive search of ids and aliases."""
    from vramest.model.catalog import default_catalog
    from vramest.units import format_count

    words = search.lower().split()
    rows = []
    for entry in default_catalog().entries:
        haystack = " ".join((entry.id, *entry.aliases, entry.family)).lower()
        if all(word in haystack for word in words):
            rows.append({"id": entry.id, "aliases": list(entry.aliases), "family": entry.family,
                         "params": format_count(entry.shape().param_count())})
    return {"models": rows}


def gpus() -> dict[str, Any]:
    """The hardware database for the GPU picker, common GPUs first."""
    from vramest.hardware.database import load_hardware
    from vramest.units import format_bytes

    db = load_hardware(None)
    common = {d.name for d in db.common()}
    rows = [{"id": d.aliases[0] if d.aliases else d.name, "name": d.name,
             "memory": format_bytes(d.memory_bytes), "kind": d.kind,
             "common": d.name in common} for d in db.devices]
    rows.sort(key=lambda r: (not r["common"], r["kind"] != "gpu", r["name"]))
    return {"gpus": rows}


def choices() -> dict[str, Any]:
    """The pickers' options, from the modules that accept them."""
    from vramest.model.precisions import _KV_FORMATS, weight_format_names

    sub = next(a for a in estimate_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {option: action for action in sub.choices["estimate"]._actions
             for option in action.option_strings}
    return {"dtypes": weight_format_names(), "kv_dtypes": list(_KV_FORMATS),
            "engines": list(flags["--engine"].choices or ()),
            "attn": list(flags["--attn"].choices or ())}
