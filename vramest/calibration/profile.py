"""Calibration profiles: load, validate and apply them; find the stored one for this machine.

Torch-free, and cheap to import: `vramest --profile FILE` and the automatic look-up run on
machines without torch. A profile is a JSON object:

    format, version, created          what and when
    device                            fingerprint: name, kind, memory_bytes, driver, runtime,
                                      torch/transformers versions, threads, cpu_model
    devices                           the device as a hardware-file entry with its measured
                                      bandwidth and matmul TFLOP/s (so the profile is also a
                                      valid --hardware-file)
    constants                         name → value (fields of vramest.inference.constants.Constants)
    engine                            {"hf": {"step_overhead_s", "layer_overhead_s"}}
    constants_before                  the shipped values of the same names
    measurements                      path of the JSONL beside it (relative to the profile)
    heldout_error                     {memory, decode, prefill} × {before, after, points}
    residuals                         per point: relative error after the fit
    training                          (optional) the training grid's fit: constants and
                                      precision_constants of vramest.training, constants_before,
                                      heldout_error {memory, speed}, residuals
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen
from vramest.inference.constants import MAX_CONSTANT, Constants
from vramest.validation import PROFILE_DIR as REPO_PROFILE_DIR

if TYPE_CHECKING:
    from typing import Any

PROFILE_FORMAT = "vramest-calibration-profile"
PROFILE_VERSION = 1
METRICS = ("memory", "decode", "prefill")


def user_profile_dir() -> Path:
    """Where `vramest calibrate` writes by default and where estimates look for a profile:
    $VRAMEST_PROFILE_DIR, else ~/.config/vramest/profiles."""
    env = os.environ.get("VRAMEST_PROFILE_DIR")
    if env:
        return Path(env)
    root = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(root) / "vramest" / "profiles"


@frozen
class Profile:
    path: Path
    device: dict[str, Any]
    constants: dict[str, float]
    engine: dict[str, dict[str, float]]
    precision_constants: dict[str, dict[str, float]]  # precision → speed constants (+ "hf.*")
    hardware: dict[str, Any] | None  # the hardware-file entry, when the profile has one
    heldout_error: dict[str, dict[str, float]]
    created: str
    raw: dict[str, Any]

    @property
    def source(self) -> str:
        return f"profile {self.path}"

    @property
    def device_name(self) -> str | None:
        return None if self.hardware is None else str(self.hardware["name"])

    def precision_for(self, dtype: str | None) -> str | None:
        """The precision group whose speed constants apply to a --dtype: fp32 runs fp32
        matmuls; every other format computes in 16 bit (fp16 where measured, else bf16)."""
        if not self.precision_constants:
            return None
        name = (dtype or "bf16").lower()
        group = "fp32" if name in ("fp32", "float32", "gguf-f32") else \
            "fp16" if name in ("fp16", "float16") and "fp16" in self.precision_constants else "bf16"
        return group if group in self.precision_constants else None

    def constants_for(self, dtype: str | None) -> dict[str, float]:
        """Every constant the profile sets for this precision (engine costs excluded)."""
        group = self.precision_for(dtype)
        chosen = self.precision_constants.get(group, {}) if group else {}
        return {**self.constants, **{k: v for k, v in chosen.items() if "." not in k}}

    def apply(self, base: Constants, dtype: str | None = None) -> Constants:
        return base.with_values(self.constants_for(dtype))

    def engine_for(self, dtype: str | None) -> dict[str, dict[str, float]]:
        group = self.precision_for(dtype)
        chosen = self.precision_constants.get(group, {}) if group else {}
        hf = {k[3:]: v for k, v in chosen.items() if k.startswith("hf.")}
        return {"hf": hf} if hf else self.engine

    def calibration_json(self, dtype: str | None = None) -> dict[str, Any]:
        """The `calibration` object of an estimate's JSON."""
        return {"path": str(self.path), "device": self.device.get("name"),
                "device_fingerprint": self.device, "created": self.created,
                "precision": self.precision_for(dtype),
                "constants": sorted(self.constants_for(dtype)),
                "engine": self.engine_for(dtype),
                "engine_note": "the hf engine's fitted step/layer costs replace the shipped ones "
                               "for --engine hf",
                "hardware_device": self.device_name,
                "heldout_error": self.heldout_error}

    def training_constants(self, base: Any, precision: str, on_profile_device: bool) -> Any:
        """vramest.training constants with what the training grid fitted: memory constants
        everywhere; the FLOP utilisation only on the profile's own device, since it is relative
        to that device's measured matmul roof."""
        from vramest.frozen import replace

        training = self.raw.get("training") or {}
        values = dict(training.get("constants") or {}) if training.get("memory_fitted") else {}
        if on_profile_device:
            group = "fp32" if precision == "fp32" else "bf16"
            values.update((training.get("precision_constants") or {}).get(group, {}))
        known = base.as_dict()
        return replace(base, **{k: v for k, v in values.items() if k in known})

    def collective_constants(self) -> dict[str, float]:
        """The all-reduce constants its fitted collectives give (none for a single-device
        profile): vramest.calibration.distributed_fit.allreduce_constants."""
        from vramest.calibration.distributed_fit import allreduce_constants

        return allreduce_constants(self.raw.get("collectives") or {})

    def measured_device(self, gpu: str | None) -> bool:
        """Whether `gpu` (after `placement`) is the device this profile measured: its own
        entry, or the database GPU its fingerprint names. Collectives measured on one device
        and link say nothing about another's."""
        if gpu is None:
            return False
        if self.device_name is not None and gpu.strip().lower() == self.device_name.lower():
            return True
        if self.device.get("kind") != "cuda":
            return False
        from vramest.hardware.database import default_hardware

        db = default_hardware()
        try:
            return db.find(gpu) is db.find(str(self.device.get("name")))
        except InputError:
            return False

    def placement(self, gpu: str | None, hardware_file: str | None) -> tuple[str | None, str | None]:
        """`--gpu local` or the profile's device name means the profile's device, with its
        measured bandwidth and FLOP/s: the profile file is itself the hardware file."""
        name = self.device_name
        if gpu is None or name is None:
            return gpu, hardware_file
        if gpu.strip().lower() in ("local", name.lower()):
            if hardware_file is not None:
                raise InputError("--profile with --gpu local uses the profile's own device "
                                 "figures; leave out --hardware-file (or name a GPU from it).")
            return name, str(self.path)
        return gpu, hardware_file


def load_profile(path: str | Path) -> Profile:
    from vramest.files import read_json

    data = read_json(path, what="--profile", missing="; `vramest calibrate` writes one")
    return validate_profile(data, Path(path))


def validate_profile(data: Any, path: Path) -> Profile:
    where = f"--profile {path}"
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
        raise InputError(f"{where} is not a vramest calibration profile (no \"format\": "
                         f"\"{PROFILE_FORMAT}\").")
    if data.get("version") != PROFILE_VERSION:
        raise InputError(f"{where} has version {data.get('version')!r}; this vramest reads "
                         f"version {PROFILE_VERSION}.")
    device, constants = data.get("device"), data.get("constants")
    if not isinstance(device, dict) or not isinstance(device.get("name"), str):
        raise InputError(f"{where}: \"device\" must be an object with a \"name\".")
    if not isinstance(constants, dict):
        raise InputError(f"{where}: \"constants\" must be an object of name → value.")
    Constants().with_values(constants)  # unknown names or bad values raise InputError
    engine = data.get("engine") or {}
    if not isinstance(engine, dict) or not all(
            isinstance(v, dict) and all(_is_number(x) for x in v.values()) for v in engine.values()):
        raise InputError(f"{where}: \"engine\" must map an engine to its numbers.")
    heldout = data.get("heldout_error")
    if not isinstance(heldout, dict) or any(
            not isinstance(heldout.get(m), dict) or not {"before", "after"} <= set(heldout[m])
            for m in METRICS):
        raise InputError(f"{where}: \"heldout_error\" needs memory, decode and prefill, each "
                         "with before and after.")
    precision = data.get("precision_constants") or {}
    if not isinstance(precision, dict) or not all(
            isinstance(v, dict) and all(_is_number(x) for x in v.values()) for v in precision.values()):
        raise InputError(f"{where}: \"precision_constants\" must map a precision to its numbers.")
    for values in precision.values():
        Constants().with_values({k: v for k, v in values.items() if "." not in k})
    for metric in METRICS:
        _heldout_numbers(heldout[metric], f"{where}: heldout_error.{metric}")
    hardware = _hardware_entry(data.get("devices"), where)
    _check_report_fields(data, where)
    if data.get("training") is not None:
        _check_training(data["training"], f"{where}: training")
    from vramest.calibration.distributed_fit import check_collectives

    check_collectives(data.get("collectives"), f"{where}: collectives")
    return Profile(path=path, device=device, constants=dict(constants), engine=engine,
                   precision_constants=precision, hardware=hardware, heldout_error=heldout,
                   created=str(data.get("created", "")), raw=data)


def _numbers(value: Any, where: str, required: tuple[str, ...] = ()) -> dict[str, float]:
    """An object of name → finite number (with the `required` names)."""
    if not isinstance(value, dict) or not all(_is_number(v) for v in value.values()):
        raise InputError(f"{where} must be an object of name → number.")
    missing = [name for name in required if not _is_number(value.get(name))]
    if missing:
        raise InputError(f"{where} needs the number(s) {', '.join(missing)}.")
    return value


def _hardware_entry(devices: Any, where: str) -> dict[str, Any] | None:
    """The profile's device as a hardware-file entry: it must parse as one."""
    if devices is None:
        return None
    from vramest.hardware.database import parse_devices

    if not isinstance(devices, list) or len(devices) != 1:
        raise InputError(f"{where}: \"devices\" must be a list of the one measured device.")
    parse_devices({"devices": devices}, f"{where}: devices")
    return dict(devices[0])


def _check_report_fields(data: dict[str, Any], where: str) -> None:
    """What `vramest calibrate --report` reads besides the fit itself."""
    roofs = data.get("roofs")
    if roofs:
        if not isinstance(roofs, dict):
            raise InputError(f"{where}: \"roofs\" must be an object.")
        _numbers({"bandwidth_bytes_s": roofs.get("bandwidth_bytes_s")}, f"{where}: roofs",
                 ("bandwidth_bytes_s",))
        _numbers(roofs.get("matmul_flops"), f"{where}: roofs.matmul_flops")
    _numbers(data.get("constants_before") or {}, f"{where}: constants_before")
    _check_residuals(data.get("residuals"), f"{where}: residuals", METRICS)
    if not isinstance(data.get("quantization_support") or {}, dict):
        raise InputError(f"{where}: \"quantization_support\" must be an object.")
    if not isinstance(data.get("measurements", ""), str):
        raise InputError(f"{where}: \"measurements\" must be the path of the JSONL beside it.")


def _check_residuals(residuals: Any, where: str, metrics: tuple[str, ...]) -> None:
    if residuals is None:
        return
    if not isinstance(residuals, list) or not all(
            isinstance(r, dict) and isinstance(r.get("key"), str)
            and all(_is_number(r[m]) for m in metrics if m in r) for r in residuals):
        raise InputError(f"{where} must be a list of {{key, {', '.join(metrics)}}} with numbers.")


def _check_training(training: Any, where: str) -> None:
    from vramest.training.constants import TRAINING_DIVISORS, TrainingConstants

    if not isinstance(training, dict):
        raise InputError(f"{where} must be an object.")
    known = set(TrainingConstants().as_dict())
    groups = training.get("precision_constants") or {}
    if not isinstance(groups, dict):
        raise InputError(f"{where}.precision_constants must map a precision to its numbers.")
    for label, values in (("constants", training.get("constants") or {}),
                          ("constants_before", training.get("constants_before") or {}),
                          *((f"precision_constants.{g}", v) for g, v in groups.items())):
        numbers = _numbers(values, f"{where}.{label}")
        unknown = sorted(set(numbers) - known)
        if unknown:
            raise InputError(f"{where}.{label}: unknown constant(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}.")
        if any(not 0 <= v <= MAX_CONSTANT or (v == 0 and k in TRAINING_DIVISORS)
               for k, v in numbers.items()):
            raise InputError(f"{where}.{label}: constants must be from 0 to {MAX_CONSTANT:g}, "
                             f"and {', '.join(sorted(TRAINING_DIVISORS))} above 0.")
    if not isinstance(training.get("memory_fitted", False), bool):
        raise InputError(f"{where}.memory_fitted must be true or false.")
    heldout = training.get("heldout_error") or {}
    if not isinstance(heldout, dict):
        raise InputError(f"{where}.heldout_error must be an object of metric → errors.")
    for metric, errors in heldout.items():
        _heldout_numbers(errors, f"{where}.heldout_error.{metric}")
    _check_residuals(training.get("residuals"), f"{where}.residuals", ("memory",))


def _heldout_numbers(value: Any, where: str) -> None:
    """Held-out errors: numbers, or null for both where too little was measured to hold any
    point out (a short calibration of one model)."""
    if isinstance(value, dict) and value.get("before") is None and value.get("after") is None \
            and value.get("points", 0) in (0, None):
        return
    _numbers(value, where, ("before", "after"))


def format_heldout(errors: dict[str, Any]) -> str:
    """'before 12.3%   after 4.5%   (20 points)', or what is lacking."""
    if errors.get("before") is None or errors.get("after") is None:
        return "not held out: too few models measured (calibrate longer, or without --quick)"
    return (f"before {100 * errors['before']:6.1f}%   after {100 * errors['after']:6.1f}%"
            f"   ({errors.get('points', '?')} points)")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- which stored profile fits this machine ------------------------------------------------
def local_fingerprint() -> dict[str, Any]:
    """What identifies this machine cheaply, without torch: its first NVIDIA GPU (NVML), else
    its CPU model, logical CPUs and RAM."""
    from vramest.hardware.local import detect

    found = detect()
    if found.gpus:
        gpu = found.gpus[0]
        return {"kind": "cuda", "name": gpu.name, "memory_bytes": gpu.total_bytes}
    from vramest.calibration.device import cpu_model

    return {"kind": "cpu", "cpu_model": cpu_model(), "cpu_count": os.cpu_count() or 1,
            "memory_bytes": found.ram_bytes or 0}


def fingerprint_matches(profile_device: dict[str, Any], local: dict[str, Any]) -> bool:
    if profile_device.get("kind") != local.get("kind"):
        return False
    if not _close(profile_device.get("memory_bytes"), local.get("memory_bytes")):
        return False
    if local["kind"] == "cuda":
        return str(profile_device.get("name", "")).lower() == str(local["name"]).lower()
    return (profile_device.get("cpu_model") == local.get("cpu_model")
            and profile_device.get("cpu_count") == local.get("cpu_count"))


def _close(a: Any, b: Any, tolerance: float = 0.03) -> bool:
    return _is_number(a) and _is_number(b) and abs(a - b) <= tolerance * max(a, b)


def find_matching_profile(directory: Path | None = None) -> Path | None:
    """The newest profile in the profile directory whose device is this machine's; nothing is
    detected unless the directory exists and holds a profile."""
    folder = directory or user_profile_dir()
    if not os.path.isdir(folder):  # the common case, on every estimate: keep it cheap
        return None
    candidates = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not candidates:
        return None
    local = local_fingerprint()
    for path in candidates:
        try:
            profile = load_profile(path)
        except InputError:
            continue
        if fingerprint_matches(profile.device, local):
            return path
    return None


def resolve_profile_option(value: str | None) -> str | None:
    """The CLI's --profile: a path; "none" for no profile; unset: a stored matching profile."""
    if value is not None:
        return None if value.strip().lower() == "none" else value
    found = find_matching_profile()
    return None if found is None else str(found)


# --- make accuracy ---------------------------------------------------------------------------
def calibration_accuracy_report(reference_dir: str | Path | None = None) -> list[str]:
    """Held-out median |error| before and after calibration, per committed profile.

    Reads the profiles in `reference_dir` if it holds any, else vramest/validation/profiles/."""
    folder = Path(reference_dir) if reference_dir is not None else REPO_PROFILE_DIR
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    profiles = []
    for path in paths:
        try:
            profiles.append(load_profile(path))
        except InputError:
            continue
    if not profiles and folder != REPO_PROFILE_DIR:
        return calibration_accuracy_report(REPO_PROFILE_DIR)
    if not profiles:
        return [f"no calibration profiles in {folder}"]
    lines = []
    for profile in profiles:
        scheme = profile.raw.get("heldout_scheme", "held-out points")
        lines.append(f"calibration profile {profile.path.name}: {profile.device.get('name')} "
                     f"({profile.created[:10]}; {scheme})")
        for metric in METRICS:
            e = profile.heldout_error[metric]
            what = {"memory": "peak tensor memory", "decode": "decode tokens/s",
                    "prefill": "prefill tokens/s"}[metric]
            lines.append(f"  held-out median |error| {what:18} {format_heldout(e)}")
        from vramest.calibration.distributed_fit import tp_heldout_lines

        lines.extend(tp_heldout_lines(profile.raw))
        training = profile.raw.get("training") or {}
        for metric, e in training.get("heldout_error", {}).items():
            what = {"memory": "training step memory", "speed": "training tokens/s"}.get(metric, metric)
            lines.append(f"  held-out median |error| {what:18} {format_heldout(e)}")
    return lines
