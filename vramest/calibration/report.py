"""The fit as text: the device and its measured roofs, each constant before → after, and the
held-out errors. Torch-free (reads a profile)."""

from __future__ import annotations

from vramest.calibration.distributed_fit import report_lines
from vramest.calibration.profile import METRICS, Profile, format_heldout
from vramest.frozen import TYPE_CHECKING
from vramest.units import format_bytes

if TYPE_CHECKING:
    from typing import Any


def _value(name: str, value: float) -> str:
    if value != value:  # NaN: no value before
        return "-"
    if name.endswith("_bytes"):
        return format_bytes(int(value))
    if name.endswith("_s"):
        return f"{value * 1e3:.3f} ms"
    return f"{value:.4g}"


def render_report(profile: Profile) -> list[str]:
    raw: dict[str, Any] = profile.raw
    device = profile.device
    lines = [f"calibration profile {profile.path}",
             f"device: {device.get('name')}  ({device.get('kind')}; torch {device.get('torch')}, "
             f"transformers {device.get('transformers')}, {device.get('threads')} threads; "
             f"{device.get('runtime')}{', driver ' + str(device['driver']) if device.get('driver') else ''})",
             f"created {profile.created}; {raw.get('points_ok', '?')} points measured "
             f"({raw.get('points_failed', 0)} out of memory or failed), "
             f"measurements: {raw.get('measurements')}"]
    roofs = raw.get("roofs") or {}
    if roofs:
        flops = ", ".join(f"{k} {v / 1e12:.3f} TFLOP/s" for k, v in roofs["matmul_flops"].items())
        lines.append(f"measured roofs: copy bandwidth {roofs['bandwidth_bytes_s'] / 1e9:.1f} GB/s; "
                     f"matmul {flops}")
    quant = raw.get("quantization_support") or {}
    if quant:
        lines.append("bitsandbytes here: " + "; ".join(f"{k}: {v}" for k, v in quant.items()))
    before = {**(raw.get("constants_before") or {})}
    lines.append("")
    lines.append(f"{'constant (16-bit set)':32} {'before':>12} {'after':>12}")
    for name, value in profile.constants.items():
        lines.append(f"{name:32} {_value(name, before.get(name, float('nan'))):>12} "
                     f"{_value(name, value):>12}")
    for engine, values in profile.engine.items():
        for name, value in values.items():
            key = f"{engine}.{name}"
            lines.append(f"{key:32} {_value(name, before.get(key, float('nan'))):>12} "
                         f"{_value(name, value):>12}")
    for group, values in profile.precision_constants.items():
        lines.append(f"speed constants for {group} (before → after):")
        for key, value in values.items():
            lines.append(f"  {key:30} {_value(key, before.get(key, float('nan'))):>12} "
                         f"{_value(key, value):>12}")
    lines.append("")
    lines.append(f"held-out median |relative error| ({raw.get('heldout_scheme', '')}):")
    for metric in METRICS:
        e = profile.heldout_error[metric]
        lines.append(f"  {metric:8} {format_heldout(e)}")
    lines.extend(training_lines(raw.get("training")))
    lines.extend(report_lines(raw))
    residuals = raw.get("residuals") or []
    if residuals:
        lines.append("")
        lines.append("largest residuals after the fit (predicted / measured − 1):")
        for metric in METRICS:
            worst = sorted((r for r in residuals if metric in r), key=lambda r: -abs(r[metric]))[:3]
            lines.append(f"  {metric:8} " + "; ".join(f"{r['key']} {100 * r[metric]:+.1f}%"
                                                      for r in worst))
    return lines


def training_lines(training: dict[str, Any] | None) -> list[str]:
    """The training fit: constants before → after, held-out errors, largest residuals."""
    if not training:
        return []
    before = training.get("constants_before") or {}
    lines = ["", f"training grid: {training.get('points_ok', '?')} steps measured "
             f"({training.get('points_failed', 0)} failed); QLoRA here: "
             f"{training.get('qlora_support', '?')}",
             f"{'training constant':32} {'before':>12} {'after':>12}"]
    fitted = "" if training.get("memory_fitted") else "  (not fitted: within the threshold)"
    for name, value in (training.get("constants") or {}).items():
        lines.append(f"{name:32} {_value(name, before.get(name, float('nan'))):>12} "
                     f"{_value(name, value):>12}{fitted}")
    for group, values in (training.get("precision_constants") or {}).items():
        for name, value in values.items():
            lines.append(f"{name + ' (' + group + ')':32} "
                         f"{_value(name, before.get(name, float('nan'))):>12} {_value(name, value):>12}")
    lines.append(f"training held-out median |relative error| ({training.get('heldout_scheme', '')}):")
    lines.extend(heldout_lines(training.get("heldout_error") or {}, "  "))
    worst = sorted(training.get("residuals") or [], key=lambda r: -abs(r.get("memory", 0)))[:3]
    if worst:
        lines.append("  largest memory residuals: " + "; ".join(
            f"{r['key']} {100 * r['memory']:+.1f}%" for r in worst))
    return lines


def heldout_lines(heldout: dict[str, dict[str, float]], indent: str) -> list[str]:
    return [f"{indent}{metric:8} {format_heldout(e)}" for metric, e in heldout.items()]


def calibration_points(profile: Profile) -> dict[str, tuple[list[tuple[str, float, float]],
                                                            list[tuple[str, float, float]]]]:
    """Per metric, (label, predicted, measured) of every measured point with the shipped
    constants (before) and with the profile's (after), for the predicted-vs-measured chart."""
    from vramest.calibration.fit import (
        SHIPPED,
        SPEED_DTYPES,
        Calibrated,
        make_cases,
        predict,
        roofs_device,
    )
    from vramest.calibration.store import read_records
    from vramest.frozen import replace
    from vramest.inference.constants import DEFAULTS
    from vramest.inference.engines.speed import ENGINES

    raw = profile.raw
    if not raw.get("roofs") or not raw.get("measurements"):
        from vramest.errors import InputError

        raise InputError(f"{profile.path} has no measured roofs or measurements file to plot.")
    records = [r for r in read_records(profile.path.parent / str(raw["measurements"]))
               if r.get("status", "ok") == "ok"]
    memory = profile.device.get("memory_bytes")
    device = roofs_device(str(profile.device.get("name", "device")),
                          str(profile.device.get("kind", "cpu")),
                          int(memory) if isinstance(memory, (int, float)) and memory > 0 else 0,
                          raw["roofs"])
    points: dict[str, tuple[list[tuple[str, float, float]], list[tuple[str, float, float]]]] = \
        {metric: ([], []) for metric in METRICS}
    for case in make_cases(records, device):
        fitted = Calibrated(profile.apply(DEFAULTS, case.dtype),
                            replace(ENGINES["hf"], **_hf_costs(profile, case.dtype)))
        before, after = predict(case, device, SHIPPED), predict(case, device, fitted)
        for metric in METRICS:
            if metric != "memory" and case.dtype not in SPEED_DTYPES:
                continue  # bitsandbytes points count in memory only, as in the fit
            measured = case.measured.get(metric, 0.0)
            if measured > 0 and before[metric] > 0 and after[metric] > 0:
                points[metric][0].append((case.key, before[metric], measured))
                points[metric][1].append((case.key, after[metric], measured))
    return points


def _hf_costs(profile: Profile, dtype: str) -> dict[str, Any]:
    """The transformers engine's fixed costs the profile fitted for this precision."""
    return dict(profile.engine_for(dtype).get("hf", {}))
