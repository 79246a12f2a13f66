"""Embedding and reranking servers against their published logs
(vramest/validation/reference/embedding_servers.csv): each row's figure restated as the
estimator's answer for the same launch.

- `weights_loaded`: vLLM's "Model loading took X GiB" with the pooling runner, read as the
  weights of vramest's vLLM start-up (the runner deletes the LM head; vllm_pooling.py).
- `kv_cache_tokens`: vLLM's "GPU KV cache size: N tokens" for the KV memory the same log
  reports ("Available KV cache memory"), read as whole blocks of the start-up's KV bytes per
  token: the GPU is not named in these logs, so the budget is taken as logged and what is
  checked is which layers keep KV and how wide a token is.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from vramest.errors import InputError

UNITS = {"GiB": 1024**3, "MiB": 1024**2, "tokens": 1}
# Any GPU with room for the model: neither quantity depends on which one.
_GPU = "h100"


@dataclass(frozen=True)
class EmbeddingRow:
    record_id: str
    model: str
    quantity: str
    measured: float  # bytes or tokens
    estimated: float
    unit: str
    source: str

    @property
    def error(self) -> float:
        return (self.estimated - self.measured) / self.measured


def estimate_row(row: dict[str, str]) -> float:
    from vramest.api import estimate
    from vramest.hardware.database import default_hardware
    from vramest.inference.engines.startup import VLLMOptions, vllm_startup

    if row["engine"] != "vllm":
        raise InputError(f"embedding_servers.csv: engine {row['engine']!r} is not read.")
    est = estimate(model=row["model"], dtype=row["dtype"] or None)
    release = ".".join(row["engine_version"].split(".")[:3])  # 0.10.1.1: a post release of 0.10.1
    options = VLLMOptions(runner=row["runner"] or "auto", version=release,
                          max_model_len=int(row["max_model_len"]) if row["max_model_len"]
                          else None,
                          gpu_memory_utilization=float(row["gpu_memory_utilization"] or 0.9))
    startup = vllm_startup(est, default_hardware().find(_GPU), 1, options)
    if row["quantity"] == "weights_loaded":
        return startup.weights_bytes
    if row["quantity"] == "kv_cache_tokens":
        available = float(row["kv_memory"]) * UNITS[row["kv_memory_unit"]]
        block = startup.kv_bytes_per_token * startup.block_size
        return int(available // block) * startup.block_size
    raise InputError(f"embedding_servers.csv: unknown quantity {row['quantity']!r}.")


def embedding_rows(reference_dir: Path) -> list[EmbeddingRow]:
    path = reference_dir / "embedding_servers.csv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [EmbeddingRow(record_id=r["record_id"], model=r["model"], quantity=r["quantity"],
                         measured=float(r["value"]) * UNITS[r["unit"]],
                         estimated=estimate_row(r), unit=r["unit"], source=r["source"])
            for r in rows]


def embedding_accuracy_report(reference_dir: Path) -> list[str]:
    rows = embedding_rows(reference_dir)
    if not rows:
        return [f"no rows in {reference_dir / 'embedding_servers.csv'}"]
    width = max(len(r.record_id) for r in rows)
    lines = [f"{'record':{width}}  {'quantity':16} {'estimate':>16} {'published':>16}  "
             f"{'error':>7}"]
    for r in rows:
        scale = UNITS[r.unit]
        fmt = "{:12.4f} " + r.unit if r.unit != "tokens" else "{:9.0f} tokens"
        lines.append(f"{r.record_id:{width}}  {r.quantity:16} "
                     f"{fmt.format(r.estimated / scale):>16} {fmt.format(r.measured / scale):>16}"
                     f"  {100 * r.error:+6.2f}%")
    return lines
