"""The multi-process part of a calibration profile, torch-free: the collectives' latency and
bandwidth (time = alpha + n / beta per operation and link class), the constants an estimate
takes from them, the tensor-parallel held-out errors, and merging profiles of several machines.

`n` is the bytes of the tensor each rank passes in: the all-reduce buffer, the all-gather
shard, the reduce-scatter input, the all-to-all input, the message of a send.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen

if TYPE_CHECKING:
    from typing import Any

OPERATIONS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
LINK_CLASSES = ("same_node", "across_nodes")
TP_METRICS = ("tp_prefill", "tp_decode")


@frozen
class LinkFit:
    alpha_s: float
    beta_bytes_per_s: float
    points: tuple[tuple[int, float], ...]  # (bytes, seconds) measured

    def seconds(self, nbytes: float) -> float:
        return self.alpha_s + nbytes / self.beta_bytes_per_s

    def residuals(self) -> list[dict[str, float]]:
        return [{"bytes": n, "seconds": t, "error": round(self.seconds(n) / t - 1, 5)}
                for n, t in self.points]

    def to_json(self) -> dict[str, Any]:
        errors = [abs(r["error"]) for r in self.residuals()]
        return {"alpha_s": self.alpha_s, "beta_bytes_per_s": self.beta_bytes_per_s,
                "median_abs_error": round(statistics.median(errors), 5) if errors else None,
                "residuals": self.residuals()}


def fit_alpha_beta(points: Sequence[tuple[int, float]]) -> LinkFit:
    """Least squares of relative errors: minimise sum(((alpha + b n) - t) / t)^2, b = 1/beta.
    Relative weights keep the small messages (latency) from being drowned by the large ones
    (bandwidth). Closed form; alpha is held at 0 when the free fit would make it negative."""
    usable = [(int(n), float(t)) for n, t in points if n > 0 and t > 0]
    if len({n for n, _ in usable}) < 2:
        raise InputError("Fitting latency and bandwidth needs timings at two or more message sizes.")
    w = [1 / t**2 for _, t in usable]
    sw = sum(w)
    sn = sum(wi * n for wi, (n, _) in zip(w, usable, strict=True))
    snn = sum(wi * n * n for wi, (n, _) in zip(w, usable, strict=True))
    st = sum(wi * t for wi, (_, t) in zip(w, usable, strict=True))
    snt = sum(wi * n * t for wi, (n, t) in zip(w, usable, strict=True))
    det = sw * snn - sn * sn
    alpha = (st * snn - sn * snt) / det
    slope = (sw * snt - sn * st) / det
    if alpha < 0 or slope <= 0:
        alpha = max(0.0, alpha) if slope > 0 else alpha
        if alpha <= 0:
            alpha, slope = 0.0, snt / snn
        if slope <= 0:  # time does not grow with size: all latency
            slope = 1e-15
    return LinkFit(alpha_s=float(alpha), beta_bytes_per_s=float(1 / slope),
                   points=tuple(sorted(usable)))


def collective_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == "point" and r.get("status") == "ok"
            and (r.get("point") or {}).get("task") == "collective"]


def tp_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == "point" and r.get("status") == "ok"
            and (r.get("point") or {}).get("task") == "tp"]


def fit_collectives(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """operation → link class → {alpha_s, beta_bytes_per_s, ranks, median_abs_error, residuals}."""
    grouped: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
    for record in collective_records(records):
        point = record["point"]
        grouped.setdefault((point["op"], point["link"], int(point["ranks"])), []).append(
            (int(point["bytes"]), float(record["seconds"])))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (op, link, ranks), points in sorted(grouped.items()):
        if len({n for n, _ in points}) < 2:
            continue
        out.setdefault(op, {})[link] = {**fit_alpha_beta(points).to_json(), "ranks": ranks}
    return out


def allreduce_constants(collectives: dict[str, Any]) -> dict[str, float]:
    """The estimate's all-reduce constants from a fitted all-reduce: `allreduce_latency_s` =
    alpha and `allreduce_bus_bytes_s` = beta × 2(N-1)/N (the ring's bus bandwidth, as NCCL's
    tests define it), so that vramest.inference.throughput.allreduce_seconds gives back
    alpha + n / beta at the measured N. Tensor parallelism runs inside a node: the same-node
    fit is used where there is one."""
    links = collectives.get("all_reduce") or {}
    chosen = links.get("same_node") or links.get("across_nodes")
    if not chosen:
        return {}
    ranks = int(chosen["ranks"])
    return {"allreduce_latency_s": float(chosen["alpha_s"]),
            "allreduce_bus_bytes_s": float(chosen["beta_bytes_per_s"]) * 2 * (ranks - 1) / ranks}


def check_collectives(data: Any, where: str) -> None:
    """What an estimate reads from a profile's `collectives`: finite positive numbers."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise InputError(f"{where} must map an operation to its link classes.")
    for op, links in data.items():
        if not isinstance(links, dict):
            raise InputError(f"{where}.{op} must map a link class to its fit.")
        for link, fit in links.items():
            ok = isinstance(fit, dict) and all(
                _finite(fit.get(k)) and fit[k] >= 0 for k in ("alpha_s", "beta_bytes_per_s")) \
                and fit["beta_bytes_per_s"] > 0 and isinstance(fit.get("ranks"), int) \
                and fit["ranks"] >= 2
            if not ok:
                raise InputError(f"{where}.{op}.{link} needs alpha_s >= 0, beta_bytes_per_s > 0 "
                                 "and ranks >= 2.")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- tensor-parallel held-out errors --------------------------------------------------------
def tp_prediction(record: dict[str, Any], device: Any, calibrated: Any) -> tuple[float, float]:
    """(decode tokens/s per sequence, prefill tokens/s) the estimate gives for a TP run."""
    from vramest.calibration.fit import DTYPE_FORMATS, record_model
    from vramest.inference.throughput import time_workload, workload
    from vramest.model.precisions import default_kv_format, weight_format

    point = record["point"]
    fmt = weight_format(DTYPE_FORMATS[point["dtype"]])
    load = workload(record_model(record).shape, fmt, default_kv_format(fmt), device,
                    batch=point["batch"], prompt_tokens=point["prompt"], gen_tokens=point["gen"],
                    tp=int(point["tp"]))
    speed = time_workload(load, device, calibrated.constants, calibrated.engine)
    return speed.decode_tokens_per_s, speed.prefill_tokens_per_s or 0.0


def tp_heldout(records: Sequence[dict[str, Any]], device: Any, before: Any,
               after_by_dtype: dict[str, Any]) -> tuple[dict[str, dict[str, float]],
                                                        list[dict[str, Any]]]:
    """Median |relative error| of the TP runs' prefill and decode speed with the shipped
    constants (`before`) and with the fitted ones plus the fitted collectives (`after`). The
    TP runs take no part in any fit: the speed constants come from the single-process points,
    the all-reduce from the micro-benchmarks."""
    errors: dict[str, dict[str, list[float]]] = {m: {"before": [], "after": []} for m in TP_METRICS}
    residuals = []
    for record in tp_records(records):
        measured = record["speed"]
        dtype = record["point"]["dtype"]
        after = after_by_dtype.get(dtype) or after_by_dtype.get("*")
        if after is None:
            continue
        row: dict[str, Any] = {"key": record["key"]}
        for label, calibrated in (("before", before), ("after", after)):
            decode, prefill = tp_prediction(record, device, calibrated)
            for metric, predicted, value in (
                    ("tp_decode", decode, measured["decode_tokens_per_s"]),
                    ("tp_prefill", prefill, measured["prefill_tokens_per_s"])):
                error = predicted / value - 1
                errors[metric][label].append(error)
                if label == "after":
                    row[metric] = round(error, 5)
        residuals.append(row)
    heldout = {m: {k: round(statistics.median(abs(e) for e in v), 5) for k, v in e.items()}
               | {"points": len(e["after"])} for m, e in errors.items() if e["after"]}
    return heldout, residuals


# --- merging several machines' profiles -----------------------------------------------------
def device_class(profile: dict[str, Any]) -> tuple[str, str]:
    device = profile.get("device") or {}
    return str(device.get("kind")), str(device.get("name"))


def merge_profiles(profiles: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One shared profile from several machines' profiles of one device class. Constants are
    the median over the machines; each collective is refitted on every machine's timings of the
    same operation, link class and world size; held-out errors are the point-weighted mean of
    the machines'. Each source is kept under `sources` with its own held-out errors and
    residuals (per machine)."""
    import datetime

    if len(profiles) < 2:
        raise InputError("--merge takes two or more profiles.")
    classes = {device_class(p) for _, p in profiles}
    if len(classes) != 1:
        found = "; ".join(f"{name}: {device_class(p)[1]} ({device_class(p)[0]})"
                          for name, p in profiles)
        raise InputError(f"--merge combines profiles of one device class; these differ ({found}).")
    first = profiles[0][1]
    constants: dict[str, float] = {}
    names = set().union(*(p.get("constants", {}) for _, p in profiles))
    for name in sorted(names):
        values = [p["constants"][name] for _, p in profiles if name in p.get("constants", {})]
        value = statistics.median(values)
        constants[name] = int(value) if name.endswith("_bytes") else value
    precision: dict[str, dict[str, list[float]]] = {}
    for _, p in profiles:
        for group, values in (p.get("precision_constants") or {}).items():
            for name, value in values.items():
                precision.setdefault(group, {}).setdefault(name, []).append(value)
    precision_median = {g: {n: statistics.median(v) for n, v in values.items()}
                        for g, values in precision.items()}
    heldout: dict[str, dict[str, float]] = {}
    for metric in sorted(set().union(*((p.get("heldout_error") or {}) for _, p in profiles))):
        rows = [(p["heldout_error"][metric], p["heldout_error"][metric].get("points", 1) or 1)
                for _, p in profiles if metric in (p.get("heldout_error") or {})]
        rows = [(e, w) for e, w in rows if _finite(e.get("before")) and _finite(e.get("after"))]
        total = sum(w for _, w in rows)
        if total:
            heldout[metric] = {k: round(sum(e[k] * w for e, w in rows) / total, 5)
                               for k in ("before", "after")} | {"points": total}
    collectives = _merge_collectives([p for _, p in profiles])
    merged = {k: v for k, v in first.items() if k in ("format", "version", "device", "devices",
                                                       "engine", "constants_before", "roofs",
                                                       "quantization_support")}
    merged.update({
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "constants": constants, "precision_constants": precision_median,
        "heldout_error": heldout, "heldout_scheme": "the machines' own held-out errors, "
        "weighted by their points",
        "residuals": [{**r, "key": f"{name}:{r['key']}"} for name, p in profiles
                      for r in p.get("residuals") or []],
        "merged_from": [name for name, _ in profiles],
        "sources": [{"profile": name, "created": p.get("created"), "device": p.get("device"),
                     "topology": p.get("topology"), "heldout_error": p.get("heldout_error"),
                     "residuals": p.get("residuals"), "tp_residuals": p.get("tp_residuals"),
                     "collectives": p.get("collectives"), "constants": p.get("constants")}
                    for name, p in profiles],
    })
    if collectives:
        merged["collectives"] = collectives
        merged["topology"] = {"merged": [p.get("topology") for _, p in profiles]}
    if first.get("training") is not None:
        merged["training"] = first["training"]
        merged["notes"] = [f"training constants are those of {profiles[0][0]} (not merged)"]
    return merged


def _merge_collectives(profiles: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    points: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
    for profile in profiles:
        for op, links in (profile.get("collectives") or {}).items():
            for link, fit in links.items():
                for r in fit.get("residuals") or []:
                    points.setdefault((op, link, int(fit["ranks"])), []).append(
                        (int(r["bytes"]), float(r["seconds"])))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (op, link, ranks), found in sorted(points.items()):
        if len({n for n, _ in found}) >= 2:
            out.setdefault(op, {})[link] = {**fit_alpha_beta(found).to_json(), "ranks": ranks}
    return out


# --- text -------------------------------------------------------------------------------------
def report_lines(raw: dict[str, Any]) -> list[str]:
    """Topology, the collectives' fits, the per-rank overhead and the TP held-out errors of a
    profile (nothing for a single-device one)."""
    from vramest.units import format_bytes

    topo, collectives = raw.get("topology"), raw.get("collectives") or {}
    if not topo and not collectives:
        return []
    lines = [""]
    if topo and "world_size" in topo:
        per = topo.get("gpus_per_node", topo.get("procs_per_node"))
        what = "GPUs" if "gpus_per_node" in topo else "processes"
        link = topo.get("interconnect") or {}
        lines.append(f"topology: {topo['world_size']} ranks on {topo['nodes']} node(s), {per} "
                     f"{what} per node, {topo.get('backend')}; same node: "
                     f"{link.get('same_node', 'unknown')} ({link.get('source', '')})"
                     + (f"; across nodes: {link['across_nodes']}" if "across_nodes" in link else ""))
    elif topo:
        lines.append(f"merged from {len(topo.get('merged', []))} machines")
    if collectives:
        lines.append("collectives (time = alpha + bytes / beta; bytes each rank passes in):")
        lines.append(f"  {'operation':15} {'link':13} {'ranks':>5} {'alpha':>10} {'beta':>12} "
                     f"{'median |err|':>12}")
        for op, links in collectives.items():
            for link, fit in links.items():
                error = fit.get("median_abs_error")
                lines.append(f"  {op:15} {link:13} {fit['ranks']:>5} "
                             f"{fit['alpha_s'] * 1e6:8.1f}us {fit['beta_bytes_per_s'] / 1e9:8.3f}GB/s "
                             f"{'' if error is None else f'{100 * error:11.1f}%'}")
    constants = raw.get("collective_constants") or {}
    if constants:
        lines.append(f"estimate's all-reduce: allreduce_latency_s = "
                     f"{constants['allreduce_latency_s'] * 1e6:.1f} us, allreduce_bus_bytes_s = "
                     f"{constants['allreduce_bus_bytes_s'] / 1e9:.3f} GB/s")
    overhead = raw.get("per_rank_overhead") or {}
    if overhead.get("tp_bytes") is not None:
        extra = overhead.get("tp_extra_bytes")
        lines.append(f"per-rank memory beyond tensors ({overhead.get('what')}): "
                     f"{format_bytes(overhead['tp_bytes'])} at TP"
                     + ("" if overhead.get("single_bytes") is None else
                        f", {format_bytes(overhead['single_bytes'])} with one process per rank")
                     + ("" if extra is None else f" (TP adds {format_bytes(extra)})"))
    lines.extend(tp_heldout_lines(raw))
    return lines


def tp_heldout_lines(raw: dict[str, Any], indent: str = "  ") -> list[str]:
    heldout = raw.get("heldout_error") or {}
    lines = []
    for metric in TP_METRICS:
        e = heldout.get(metric)
        if not e or not _finite(e.get("before")) or not _finite(e.get("after")):
            continue
        what = {"tp_prefill": "TP prefill tokens/s", "tp_decode": "TP decode tokens/s"}[metric]
        tp = (raw.get("topology") or {}).get("world_size", "N")
        lines.append(f"{indent}held-out median |error| {what:18} before {100 * e['before']:6.1f}%"
                     f"   after {100 * e['after']:6.1f}%   ({e.get('points', '?')} points, TP={tp})")
    return lines
