"""vramest models: the built-in catalog."""

from __future__ import annotations

import json

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from typing import Any


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("models", help=help_text, description=help_text)
    p.add_argument("--json", action="store_true")
    p.add_argument("--family", help="only this model_type (llama, qwen2, ...)")


def run(args: argparse.Namespace) -> int:
    from vramest.model.catalog import default_catalog
    from vramest.units import format_count

    rows: list[dict[str, Any]] = []
    for entry in default_catalog().entries:
        if args.family and entry.family != args.family.lower():
            continue
        shape = entry.shape()
        rows.append({"id": entry.id, "aliases": list(entry.aliases), "family": entry.family,
                     "params": shape.param_count(), "active_params": shape.active_param_count(),
                     "source": entry.source})
    if args.json:
        print(json.dumps({"models": rows}, indent=2))
        return 0
    width = max((len(r["id"]) for r in rows), default=10)
    print(f"{'model':{width}}  {'family':18} {'params':>8} {'active':>8}  aliases")
    for r in rows:
        active = format_count(r["active_params"]) if r["active_params"] < r["params"] else ""
        print(f"{r['id']:{width}}  {r['family']:18} {format_count(r['params']):>8} "
              f"{active:>8}  {', '.join(r['aliases'])}")
    return 0
