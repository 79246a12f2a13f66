"""Where a calibration keeps its work: measurements appended to a JSONL file the moment each is
taken (fsynced; a torn last line is ended first), read back to resume; a lock beside the
profile so two runs cannot write it at once; profiles written atomically (`vramest.files`).

Torch-free.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

from vramest.errors import InputError
from vramest.files import (
    append_line,
    check_writable,
    dumps_json,
    exclusive_lock,
    make_folder_for,
    parse_json,
    read_bytes,
    write_atomic,
)
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

MAX_MEASUREMENTS_BYTES = 256 * 1024**2  # a full grid's JSONL is a few MiB


def measurements_path(profile_path: Path) -> Path:
    """The JSONL beside a profile: `cpu.json` → `cpu.measurements.jsonl`."""
    return profile_path.with_name(profile_path.stem + ".measurements.jsonl")


def append_record(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, on disk before this returns (a torn last line is ended first, so the
    new record never joins it)."""
    make_folder_for(path, what="measurements")
    append_line(path, json.dumps(record, sort_keys=True), what="measurements")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record; a last line cut short by an interruption is ignored."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        pass  # read_bytes says what is wrong with the name
    text = read_bytes(path, what="Measurements", limit=MAX_MEASUREMENTS_BYTES).decode(
        "utf-8", errors="replace")
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = parse_json(line, what="a measurement", allow_nonfinite=True)
        except InputError:
            continue  # a torn write: the point is measured again
        if well_formed(record):
            records.append(record)  # a hand-edited or foreign line is dropped like a torn one
    return records


def well_formed(record: Any) -> bool:
    """The shape every reader of the JSONL relies on: the headers in full, a point's key,
    status and (when measured) its settings. A point's figures are checked where they are
    turned into fit cases."""
    if not isinstance(record, dict):
        return False
    kind = record.get("kind", "point")
    if kind == "device":
        fingerprint = record.get("fingerprint")
        return isinstance(fingerprint, dict) and isinstance(fingerprint.get("name"), str)
    if kind == "roofs":
        flops = record.get("matmul_flops")
        return _positive(record.get("bandwidth_bytes_s")) and isinstance(flops, dict) and all(
            isinstance(k, str) and _positive(v) for k, v in flops.items())
    if kind == "quantization_support":
        formats = record.get("formats")
        return isinstance(formats, dict) and all(isinstance(v, str) for v in formats.values())
    if kind == "training_qlora_support":
        return isinstance(record.get("result"), str)
    if kind != "point":
        return False
    return isinstance(record.get("key"), str) and record.get("status") in (
        "ok", "oom", "error") and (record["status"] != "ok" or isinstance(record.get("point"), dict))


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


def done_keys(records: list[dict[str, Any]]) -> set[str]:
    """Points already measured, or already found out of memory (not retried on resume)."""
    return {str(r["key"]) for r in records if r.get("kind", "point") == "point" and "key" in r
            and r.get("status") in ("ok", "oom", "error")}


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Readers see the old file or the new one, never half of either; NaN is written as null
    (JSON has no NaN, and the profile loader refuses one)."""
    make_folder_for(path, what="profile")
    write_atomic(path, dumps_json(data) + "\n", what="profile")


def lock_path(profile_path: Path) -> Path:
    """The lock beside the profile: `cpu.json` → `.cpu.json.lock`."""
    return profile_path.with_name(f".{profile_path.name}.lock")


@contextlib.contextmanager
def profile_lock(profile_path: Path) -> Iterator[None]:
    """Hold a lock on the profile for the whole run; a second run fails at once. The lock file
    lives beside the profile, so runs with different $TMPDIRs, or on two hosts sharing the
    folder, still exclude each other. (Where there is no fcntl, on Windows, nothing is locked.)"""
    check_writable(profile_path, what="profile", make_folder=True)
    lock = lock_path(profile_path)
    with exclusive_lock(lock, busy=f"Another calibration is writing {profile_path} (lock {lock} "
                        "is held); wait for it or choose another --out."):
        yield
