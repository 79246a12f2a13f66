"""Servers running the newer architectures against their published logs
(vramest/validation/reference/serving_architectures.csv): embedding and reranking servers
(vLLM's pooling runner) and DeepSeek sparse attention's KV pool, each row's figure restated as
the estimator's answer for the same launch.

- `weights_loaded`: vLLM's "Model loading took X GiB", read as the weights of vramest's vLLM
  start-up with the row's runner (the pooling runner deletes the LM head; vllm_pooling.py).
- `kv_cache_tokens`: vLLM's "GPU KV cache size: N tokens" for the KV memory (`basis`) the same
  log reports, read as whole blocks of the start-up's KV bytes per token.
- `kv_cache_bytes`: an engine's KV pool size for the token count (`basis`) it logged, read as
  that many tokens of the engine start-up's KV bytes per token (SGLang: its token cell).
The logs here do not name the GPU or measure something the GPU does not change, so the budget
is taken as logged and what is checked is which layers keep what, per token.
"""

from __future__ import annotations

from pathlib import Path

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen
from vramest.validation import read_rows

if TYPE_CHECKING:
    from vramest.inference.engines.startup import VLLMStartup

UNITS = {"GiB": 1024**3, "MiB": 1024**2, "tokens": 1}
# Any GPU with room for the model's share: none of the quantities depends on which one.
_GPU = "b200"


@frozen
class ServingArchitectureRow:
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


def _kv_bytes_per_token(row: dict[str, str]) -> float:
    """The token cell the row's engine sizes its pool with."""
    from vramest.api import estimate
    from vramest.hardware.database import default_hardware
    from vramest.inference.engines import registry

    est = estimate(model=row["model"], dtype=row["dtype"] or None,
                   kv_dtype=row["kv_dtype"] or None)
    if row["engine"] == "sglang":
        start = registry.startup("sglang", est, {}, default_hardware().find(_GPU), 8, None)
        return float(start.kv_bytes_per_token)  # type: ignore[attr-defined]
    return _vllm(row).kv_bytes_per_token


def _vllm(row: dict[str, str]) -> VLLMStartup:
    from vramest.api import estimate
    from vramest.hardware.database import default_hardware
    from vramest.inference.engines.startup import VLLMOptions, vllm_startup

    est = estimate(model=row["model"], dtype=row["dtype"] or None,
                   kv_dtype=row["kv_dtype"] or None)
    release = ".".join(row["engine_version"].split(".")[:3])  # 0.10.1.1: a post release
    options = VLLMOptions(runner=row["runner"] or "auto", version=release or None,
                          max_model_len=int(row["max_model_len"]) if row["max_model_len"]
                          else None,
                          gpu_memory_utilization=float(row["gpu_memory_utilization"] or 0.9))
    return vllm_startup(est, default_hardware().find(_GPU), 1, options)


def estimate_row(row: dict[str, str]) -> float:
    if row["engine"] not in ("vllm", "sglang"):
        raise InputError(f"serving_architectures.csv: engine {row['engine']!r} is not read.")
    basis = float(row["basis"] or 0) * UNITS.get(row["basis_unit"], 1)
    if row["quantity"] == "weights_loaded" and row["engine"] == "vllm":
        return _vllm(row).weights_bytes
    if row["quantity"] == "kv_cache_tokens" and row["engine"] == "vllm":
        start = _vllm(row)
        block = start.kv_bytes_per_token * start.block_size
        return int(basis // block) * start.block_size
    if row["quantity"] == "kv_cache_bytes":
        return basis * _kv_bytes_per_token(row)
    raise InputError(f"serving_architectures.csv: quantity {row['quantity']!r} is not read "
                     f"for engine {row['engine']!r}.")


def serving_architecture_rows(reference_dir: Path) -> list[ServingArchitectureRow]:
    path = reference_dir / "serving_architectures.csv"
    if not path.exists():
        return []
    rows = read_rows(path)
    return [ServingArchitectureRow(record_id=r["record_id"], model=r["model"],
                                   quantity=r["quantity"],
                                   measured=float(r["value"]) * UNITS[r["unit"]],
                                   estimated=estimate_row(r), unit=r["unit"],
                                   source=r["source"])
            for r in rows]


def serving_architecture_report(reference_dir: Path) -> list[str]:
    rows = serving_architecture_rows(reference_dir)
    if not rows:
        return [f"no rows in {reference_dir / 'serving_architectures.csv'}"]
    width = max(len(r.record_id) for r in rows)
    lines = [f"{'record':{width}}  {'quantity':16} {'estimate':>16} {'published':>16}  "
             f"{'error':>7}"]
    for r in rows:
        scale = UNITS[r.unit]
        fmt = "{:9.0f} tokens" if r.unit == "tokens" else "{:12.4f} " + r.unit
        lines.append(f"{r.record_id:{width}}  {r.quantity:16} "
                     f"{fmt.format(r.estimated / scale):>16} {fmt.format(r.measured / scale):>16}"
                     f"  {100 * r.error:+6.2f}%")
    return lines
