"""Plain-text rendering of results for the terminal."""

from __future__ import annotations

from vramest.estimator import Estimate
from vramest.units import format_bytes, format_count, format_tokens

_BAR_WIDTH = 28


def render_estimate(result: Estimate, *, explain: bool = False) -> str:
    s, m = result.settings, result.model
    lines = [
        f"{m.name}  ·  {format_count(m.params)} params  ·  {s.dtype}  ·  ctx "
        f"{format_tokens(s.ctx)}  ·  batch {s.batch}",
        "",
    ]
    total = result.memory.total
    labels = {"weights": "weights", "kv_cache": "KV cache", "activations": "activations",
              "overhead": "overhead"}
    for part in result.memory.parts():
        share = part.bytes / total if total else 0
        bar = "█" * max(0, round(share * _BAR_WIDTH))
        lines.append(f"  {labels[part.name]:<12} {format_bytes(part.bytes):>11}  {share:6.1%}  "
                     f"{bar}")
        if explain:
            lines.append(f"      = {part.formula}")
    lines.append(f"  {'─' * 12} {'─' * 11}")
    lines.append(f"  {'total':<12} {format_bytes(total):>11}")
    for block in result.extras.get("_text_blocks", ()):
        lines += ["", *block]
    if explain:
        lines += ["", f"Constants ({result.constants_source}):"]
        lines += [f"  {k} = {v}" for k, v in result.constants.as_dict().items()]
    lines += ["", "Assumptions:"]
    lines += [f"  - {a}" for a in result.assumptions]
    return "\n".join(lines)
