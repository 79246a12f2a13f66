"""Run a calibration: measure the grid point by point (appending each record as it is taken),
resume where a previous run stopped, survive out-of-memory points, stop at the time budget,
then fit and write the profile. Needs torch (through `device` and `measure`)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from vramest.calibration import measure
from vramest.calibration.device import Backend
from vramest.calibration.fit import (
    MEMORY_PARAMETERS,
    SHIPPED,
    calibrate,
    heldout_json,
    is_training,
    make_cases,
    roofs_device,
    runtime_overhead_bytes,
    speed_parameter_names,
)
from vramest.calibration.grid import (
    FLOAT_DTYPES,
    QUANT_DTYPES,
    GridPoint,
    TrainPoint,
    training_grid,
)
from vramest.calibration.profile import PROFILE_FORMAT, PROFILE_VERSION
from vramest.calibration.store import (
    append_record,
    done_keys,
    measurements_path,
    profile_lock,
    read_records,
    write_json_atomic,
)
from vramest.calibration.train_fit import training_profile_section
from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen

if TYPE_CHECKING:
    from typing import Any, TextIO

GridFn = Callable[[tuple[str, ...], tuple[str, ...]], list[GridPoint]]
TrainGridFn = Callable[[bool], list[TrainPoint]]  # qlora trains here → the training points
# the training grid that goes with a named inference grid (others: none unless given)
TRAIN_GRIDS: dict[str, TrainGridFn] = {"quick": lambda qlora: training_grid(True, qlora),
                                       "default": lambda qlora: training_grid(False, qlora)}


@frozen
class RunOptions:
    profile_path: Path
    cache_dir: Path
    grid: GridFn
    grid_name: str
    max_minutes: float | None = None
    fresh: bool = False
    quantized: bool = True
    fit_evaluations: int = 500
    timed_repeats: int = measure.TIMED_REPEATS
    timing_budget_s: float = measure.TIMING_BUDGET_S
    roof_seconds: float = 0.6
    train_grid: TrainGridFn | None = None  # None: TRAIN_GRIDS[grid_name] where there is one

    def training_points(self, qlora: bool) -> list[TrainPoint]:
        chosen = self.train_grid or TRAIN_GRIDS.get(self.grid_name)
        return chosen(qlora) if chosen is not None else []


@dataclasses.dataclass
class Progress:
    """A plain-text progress bar on stderr (redrawn in place on a terminal)."""

    total: int
    stream: TextIO = dataclasses.field(default_factory=lambda: sys.stderr)
    started: float = dataclasses.field(default_factory=time.perf_counter)
    done: int = 0

    def show(self, label: str) -> None:
        width = 28
        filled = round(width * self.done / max(1, self.total))
        elapsed = time.perf_counter() - self.started
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"{elapsed // 60:.0f}m{elapsed % 60:02.0f}s  {label}")
        if self.stream.isatty():
            self.stream.write(f"\r{line[:118]:118}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self, label: str) -> None:
        self.show(label)
        if self.stream.isatty():
            self.stream.write("\n")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No library warnings while measuring: the progress bar is the output. A filter by module
    misses a warning that `stacklevel` attributes to its caller's module (bitsandbytes' to
    torch or transformers), so every warning is ignored for the run, and the filters are
    restored after it."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _header(records: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((r for r in records if r.get("kind") == kind), None)


def run_calibration(backend: Backend, options: RunOptions, progress_stream: TextIO | None = None
                    ) -> dict[str, Any]:
    """Measure what is missing, fit, write the profile; returns the profile."""
    path = options.profile_path
    jsonl = measurements_path(path)
    started = time.perf_counter()
    with profile_lock(path), _quiet():
        if options.fresh and jsonl.exists():
            jsonl.unlink()
        records = read_records(jsonl)
        fingerprint = backend.fingerprint()
        device_record = _header(records, "device")
        if device_record is None:
            device_record = {"kind": "device", "fingerprint": fingerprint}
            append_record(jsonl, device_record)
        elif not _same_device(device_record["fingerprint"], fingerprint):
            raise InputError(f"{jsonl} holds measurements of {device_record['fingerprint'].get('name')}"
                             f" ({device_record['fingerprint'].get('threads')} threads), not of this "
                             f"{fingerprint['name']}; use --fresh or another --out.")
        float_dtypes = tuple(d for d in FLOAT_DTYPES if backend.kind == "cuda" or d != "fp16")
        roofs = _header(records, "roofs")
        if roofs is None:
            roofs = {"kind": "roofs", **backend.measure_roofs(float_dtypes, options.roof_seconds).to_json()}
            append_record(jsonl, roofs)
        quant = _header(records, "quantization_support")
        if quant is None:
            support = measure.quant_support(backend, options.cache_dir) if options.quantized else \
                {d: "not tried (--no-quantized)" for d in QUANT_DTYPES}
            quant = {"kind": "quantization_support", "formats": support}
            append_record(jsonl, quant)
        quant_dtypes = tuple(d for d, status in quant["formats"].items() if status == "ok")
        grid: list[GridPoint | TrainPoint] = [*options.grid(float_dtypes, quant_dtypes)]
        train_points = options.training_points(False)
        if train_points:
            qlora = _header(records, "training_qlora_support")
            if qlora is None:
                qlora = {"kind": "training_qlora_support",
                         "result": measure.qlora_support() if options.quantized else
                         "not tried (--no-quantized)"}
                append_record(jsonl, qlora)
            grid.extend(options.training_points(qlora["result"] == "ok"))
        stopped = measure_grid(grid, backend, options, jsonl, records, started, progress_stream)
        records = read_records(jsonl)
        profile = build_profile(records, path, jsonl, options, stopped,
                                time.perf_counter() - started)
        write_json_atomic(path, profile)
    return profile


def _same_device(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("kind", "name", "threads", "memory_bytes"))


def measure_grid(grid: Sequence[GridPoint | TrainPoint], backend: Backend, options: RunOptions, jsonl: Path,
                 records: list[dict[str, Any]], started: float, stream: TextIO | None) -> str:
    """Measure the points not yet in the JSONL; returns why it stopped ("complete" or
    "time budget")."""
    done = done_keys(records)
    pending = [p for p in grid if p.key not in done]
    progress = Progress(total=len(grid), stream=stream or sys.stderr)
    progress.done = len(grid) - len(pending)
    loaded: measure.LoadedModel | None = None
    failed_model: str | None = None
    budget_s = None if options.max_minutes is None else options.max_minutes * 60
    try:
        for point in pending:
            if budget_s is not None and time.perf_counter() - started > budget_s:
                progress.finish(f"time budget of {options.max_minutes:g} min reached; "
                                f"{len(grid) - progress.done} points left for a resumed run")
                return "time budget"
            progress.show(point.key)
            record: dict[str, Any]
            try:
                if isinstance(point, TrainPoint):
                    loaded = None  # a training step builds its own model
                    backend.release_memory()
                    record = measure.measure_train_point(point, max(1, options.timed_repeats))
                else:
                    if point.model_key == failed_model:
                        raise _LoadFailed
                    if loaded is None or loaded.model_key != point.model_key:
                        loaded = None
                        backend.release_memory()
                        loaded = measure.load_model(point, backend, options.cache_dir)
                    record = measure.measure_point(point, loaded, backend,
                                                   options.timed_repeats, options.timing_budget_s)
            except _LoadFailed:
                record = {"status": "oom", "reason": "the model did not load (out of memory)"}
            except Exception as exc:  # one point never ends the run
                oom = backend.is_out_of_memory(exc)
                if oom and (loaded is None or loaded.model_key != point.model_key):
                    failed_model = point.model_key
                record = {"status": "oom" if oom else "error", "reason": _reason(exc)}
                if not oom:
                    loaded = None  # the model may be in a bad state
                backend.release_memory()
            record.setdefault("key", point.key)
            record.setdefault("point", point.to_json())
            record.update(kind="point", taken=datetime.datetime.now(datetime.timezone.utc)
                          .isoformat(timespec="seconds"))
            append_record(jsonl, record)
            progress.done += 1
    finally:
        loaded = None
        backend.release_memory()
    progress.finish("measured")
    return "complete"


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


class _LoadFailed(Exception):
    """This model already ran out of memory while loading: its other points are skipped."""


def build_profile(records: list[dict[str, Any]], path: Path, jsonl: Path, options: RunOptions,
                  stopped: str, seconds: float) -> dict[str, Any]:
    fingerprint = _header(records, "device")["fingerprint"]  # type: ignore[index]
    roofs = _header(records, "roofs") or {}
    quant = (_header(records, "quantization_support") or {}).get("formats", {})
    points = [r for r in records if r.get("kind") == "point" and not is_training(r)]
    ok = [r for r in points if r.get("status") == "ok"]
    device = roofs_device(fingerprint["name"], fingerprint["kind"], fingerprint["memory_bytes"], roofs)
    cases = make_cases(ok, device)
    if len(cases) < 3:
        raise InputError(f"Only {len(cases)} points measured so far in {jsonl}; a fit needs at "
                         "least 3 (run again to resume, or allow more --max-minutes).")
    outcome = calibrate(cases, device, fingerprint["kind"], options.fit_evaluations)
    speed_names = [n for n in speed_parameter_names(fingerprint["kind"]) if not n.startswith("hf.")]
    precision_constants = {
        group: {**{n: round(float(getattr(c.constants, n)), 6) for n in speed_names},
                "hf.step_overhead_s": round(c.engine.step_overhead_s, 8),
                "hf.layer_overhead_s": round(c.engine.layer_overhead_s, 8)}
        for group, c in outcome.by_precision.items()}
    constants: dict[str, float] = {n: round(float(getattr(outcome.fitted.constants, n)), 6)
                                   for n in MEMORY_PARAMETERS}
    overhead = runtime_overhead_bytes(ok, fingerprint["kind"])
    if overhead is not None and overhead > 0:
        constants["runtime_overhead_bytes"] = overhead
    default_group = "bf16" if "bf16" in precision_constants else next(iter(precision_constants), None)
    engine: dict[str, dict[str, float]] = {}
    if default_group is not None:  # a consumer that ignores precision gets the 16-bit set
        chosen = precision_constants[default_group]
        constants.update({n: chosen[n] for n in speed_names})
        engine = {"hf": {k[3:]: v for k, v in chosen.items() if k.startswith("hf.")}}
    before: dict[str, float] = {n: getattr(SHIPPED.constants, n) for n in constants}
    before.update({"hf.step_overhead_s": SHIPPED.engine.step_overhead_s,
                   "hf.layer_overhead_s": SHIPPED.engine.layer_overhead_s})
    qlora = (_header(records, "training_qlora_support") or {}).get("result", "not tried")
    training = training_profile_section(records, roofs, qlora, options.fit_evaluations // 2)
    flops = {k: v / 1e12 for k, v in roofs.get("matmul_flops", {}).items()}
    flops.setdefault("fp16", flops.get("bf16", 0.0))
    return {
        "format": PROFILE_FORMAT, "version": PROFILE_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": fingerprint,
        "devices": [{
            "name": device.name + " (calibrated)", "kind": device.kind, "class": device.device_class,
            "vendor": "measured", "memory_gib": fingerprint["memory_bytes"] / 1024**3,
            "memory_bandwidth_gbs": roofs["bandwidth_bytes_s"] / 1e9,
            "dense_tflops": {k: round(v, 6) for k, v in flops.items() if v > 0},
            "source": f"measured by vramest calibrate on {fingerprint['name']} (torch copy "
                      "bandwidth and square matmuls); 16-bit = the bf16 rate unless fp16 was measured",
        }],
        "constants": constants, "engine": engine, "precision_constants": precision_constants,
        "constants_before": before,
        "measurements": jsonl.name, "grid": options.grid_name, "run": stopped,
        "run_seconds": round(seconds, 1), "points_ok": len(ok),
        "points_failed": len(points) - len(ok),
        "roofs": {k: v for k, v in roofs.items() if k != "kind"},
        "quantization_support": quant,
        **heldout_json(outcome),
        **({"training": training} if training is not None else {}),
        "notes": [
            "memory: peak live tensor bytes over prefill and decode (LiveBytesTracker), "
            "predicted as weights + KV cache (as transformers holds it) + activations",
            "speed: transformers generate() (--engine hf) with min_new_tokens = max_new_tokens; "
            "efficiencies are relative to this device's measured roofs, so use the profile with "
            "its own device (--gpu local or the device name)",
            "speed constants are fitted per precision (precision_constants; `constants` holds the "
            "16-bit set) on fp32/bf16/fp16 points; bitsandbytes points count in memory only "
            "(their dequantising kernels are not in the roofline)",
        ],
    }
