"""Plain-text rendering of results for the terminal."""

from __future__ import annotations

from vramest.inference.estimate import Estimate
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
    if result.engine_report is not None:
        lines += ["", "Engine start-up, as its log would print it:"]
        lines += [f"  {line}" for line in result.engine_report.log_lines()]
    if result.fit is not None:
        lines += ["", *render_fit(result)]
    if result.gpu_options:
        lines += ["", *render_gpu_table(result)]
    if explain:
        lines += ["", f"Constants ({result.constants_source}):"]
        lines += [f"  {k} = {v}" for k, v in result.constants.as_dict().items()]
    lines += ["", "Assumptions:"]
    lines += [f"  - {a}" for a in result.assumptions]
    return "\n".join(lines)


def _rate(x: float | None, unit: str = "tok/s") -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f} {unit}" if x >= 100 else f"{x:.1f} {unit}"


def render_fit(result: Estimate) -> list[str]:
    from vramest.inference.placement import describe

    plan, speed = result.fit, result.throughput
    assert plan is not None, "render_fit needs an estimate made with a GPU"
    described = describe(plan)
    devices = getattr(result.engine_report, "devices", ())
    if len(devices) > 1:  # llama.cpp splits whole layers over the GPUs, not tensors
        described = described.replace(f"(TP {plan.tp})", "(llama.cpp layer split: " + ", ".join(
            f"{d.layers}" for d in devices) + " layers)")
    lines = ["Fit:", f"  {described}"]
    if plan.advice:
        lines.append("  to get out of " + ("'tight'" if plan.verdict == "tight" else
                                            "'does not fit'") + ":")
        lines += [f"    - {change}" for change in plan.advice]
    per = plan.per_gpu
    if plan.num_gpus > 1:
        lines.append(f"  per GPU: weights {format_bytes(per.weights)}, KV {format_bytes(per.kv_cache)}, "
                     f"activations {format_bytes(per.activations)}, overhead "
                     f"{format_bytes(per.overhead)}")
    if plan.max_ctx is not None:
        lines.append(f"  longest context that fits: {plan.max_ctx:,} tokens"
                     + (" (none: the weights alone do not fit)" if plan.max_ctx == 0 else ""))
    if plan.max_batch is not None:
        lines.append(f"  most concurrent sequences that fit: {plan.max_batch:,}")
    if speed is not None:
        lines += ["", f"Speed (roofline, {speed.engine}):",
                  f"  prefill   {_rate(speed.prefill_tokens_per_s)} for {speed.prompt_tokens:,} "
                  f"prompt tokens × batch {speed.batch} ({speed.prefill.bound}-bound)",
                  f"  decode    {_rate(speed.decode_tokens_per_s)} per sequence, "
                  f"{_rate(speed.decode_tokens_per_s_total)} in total ({speed.decode.bound}-bound)"]
        if speed.time_to_first_token_s is not None:
            lines.append(f"  first token after {speed.time_to_first_token_s:.2f} s; whole request "
                         f"({speed.gen_tokens} tokens) {speed.request_seconds:.1f} s")
        lines += [f"  {note}" for note in speed.notes if not note.startswith("engine: ")]
    return lines


def render_gpu_table(result: Estimate) -> list[str]:
    lines = ["Where it fits (fewest cards of each; --gpu NAME for details):",
             f"  {'GPU':32} {'cards':>5} {'per GPU':>11} {'headroom':>11} {'verdict':>8} "
             f"{'decode':>12}"]
    for option, speed in zip(result.gpu_options, result.speeds, strict=True):
        if option.plan is None:
            lines.append(f"  {option.device.name[:32]:32} {'—':>5}  {option.reason}")
            continue
        p = option.plan
        lines.append(f"  {option.device.name[:32]:32} {p.num_gpus:>5} "
                     f"{format_bytes(p.per_gpu.total):>11} {format_bytes(p.headroom_bytes):>11} "
                     f"{p.verdict.replace('does-not-fit', 'no'):>8} "
                     f"{_rate(speed.decode_tokens_per_s if speed else None):>12}")
    return lines
