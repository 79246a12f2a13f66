"""Where a calibration keeps its work: measurements appended to a JSONL file the moment each is
taken (flushed and fsynced), read back to resume; a lock so two runs cannot write the same
profile at once; profiles written atomically (a temporary file, then `os.replace`).

Torch-free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vramest.errors import InputError


def measurements_path(profile_path: Path) -> Path:
    """The JSONL beside a profile: `cpu.json` → `cpu.measurements.jsonl`."""
    return profile_path.with_name(profile_path.stem + ".measurements.jsonl")


def append_record(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, on disk before this returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record; a last line cut short by an interruption is ignored."""
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
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
    """Readers see the old file or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a profile is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def profile_lock(profile_path: Path) -> Iterator[None]:
    """Hold a lock on the profile's path for the whole run; a second run fails at once. The
    lock file lives in the temporary directory, named by the profile's absolute path, so no
    lock file lands beside a profile that is to be committed. (Where there is no fcntl, on
    Windows, runs are not locked.)"""
    try:
        import fcntl
    except ImportError:
        yield
        return
    digest = hashlib.sha256(str(profile_path.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"vramest-calibrate-{digest}.lock"
    with open(lock_path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"Another calibration is writing {profile_path} (lock "
                             f"{lock_path} is held); wait for it or choose another --out.") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
