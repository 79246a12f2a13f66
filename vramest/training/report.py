"""The plain-text table of `vramest train`."""

from __future__ import annotations

from vramest.training.estimate import TrainingEstimate
from vramest.training.settings import PART_NAMES
from vramest.units import format_bytes, format_count


def _time(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.2f} s"


def _device_table(est: TrainingEstimate) -> list[str]:
    s = est.settings
    rows = [("GPU", "usable", "verdict", "headroom", f"longest seq at micro-batch {s.micro_batch}",
             f"largest micro-batch at seq {s.seq}", "tokens/s per GPU", "GPUs with ZeRO-3")]
    for option in est.devices:
        f = option.fit
        rows.append((f.device or "", format_bytes(f.usable_bytes or 0),
                     f.verdict or "?", format_bytes(f.headroom_bytes or 0),
                     f"{f.max_seq:,}" if f.max_seq else "none",
                     f"{f.max_micro_batch:,}" if f.max_micro_batch else "none",
                     f"{option.tokens_per_s_per_gpu:,.0f}" if option.tokens_per_s_per_gpu
                     else "?",
                     str(option.fewest_gpus_zero3) if option.fewest_gpus_zero3 else "> 64"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                              for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    return [f"Where it fits, per GPU at {s.num_gpus} GPU(s) (--gpu NAME for one):", *table]


def render_training(est: TrainingEstimate, explain: bool = False) -> str:
    s, peak = est.settings, est.peak
    lines = [f"{est.model.name}  ·  {format_count(est.model.params)} params  ·  {s.method}  ·  "
             f"{format_count(est.trainable_params)} trainable  ·  {s.precision}  ·  {s.optimizer}"
             f"  ·  seq {s.seq} × micro-batch {s.micro_batch}  ·  {s.num_gpus} GPU(s)"
             + (f", ZeRO {s.zero_stage}" if s.zero_stage else ""), "",
             f"  per GPU            {'  '.join(f'{p.name:>20}' for p in est.phases)}"]
    for name in PART_NAMES:
        cells = "  ".join(f"{format_bytes(p.get(name)):>20}" for p in est.phases)
        lines.append(f"  {name:<18} {cells}")
    totals = "  ".join(f"{format_bytes(p.total):>19}{'*' if p is peak else ' '}"
                       for p in est.phases)
    lines += [f"  {'total':<18} {totals}", f"  * peak: {peak.name}"]
    if est.host_bytes:
        lines.append(f"  host memory (offload): {format_bytes(est.host_bytes)}")
    fit = est.fit
    lines.append("")
    if fit.fits is None:
        lines.append(f"Needs {format_bytes(fit.required_bytes)} per GPU with the CUDA context "
                     "(--gpu or --gpu-memory checks the fit).")
        if est.devices:
            lines += _device_table(est)
    else:
        verdict = {"fits": "fits", "does-not-fit": "does NOT fit"}.get(
            fit.verdict or "", f"TIGHT ({'fits' if fit.fits else 'does not fit'} by less than "
            f"the ±{format_bytes(fit.error_band_bytes)} measured error of training peaks)")
        lines.append(f"{verdict} on {fit.device}: needs {format_bytes(fit.required_bytes)} of "
                     f"{format_bytes(fit.usable_bytes or 0)} (headroom "
                     f"{format_bytes(fit.headroom_bytes or 0)})")
        lines.append(f"  longest sequence at micro-batch {s.micro_batch}: {fit.max_seq or 'none'}"
                     f"  ·  largest micro-batch at seq {s.seq}: {fit.max_micro_batch or 'none'}")
        if fit.advice:
            lines.append(f"  to get out of '{'tight' if fit.verdict == 'tight' else 'does not fit'}'"
                         ", one change each:")
            lines += [f"    - {line}" for line in fit.advice]
    t = est.throughput
    if t.tokens_per_s_per_gpu:
        line = (f"Throughput: {t.tokens_per_s_per_gpu:,.0f} tokens/s per GPU, step "
                f"{_time(t.step_time_s or 0)}")
        if t.total_time_s:
            line += f", all tokens in {_time(t.total_time_s)}"
        lines.append(f"{line}  ({t.source})")
    if explain:
        lines += ["", "Formulas (peak moment):"]
        lines += [f"  {part.name}: {part.formula}" for part in peak.parts]
    lines += ["", "Assumptions:"] + [f"  - {a}" for a in est.assumptions]
    return "\n".join(lines)
