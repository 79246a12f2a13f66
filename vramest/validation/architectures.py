"""Encoders, encoder-decoders and recurrent models against published figures
(vramest/validation/reference/architectures.csv): each row's quantity restated as an estimate.

- `recurrent_state`: the state one sequence keeps (llama.cpp's recurrent cache logs), read as
  the estimate's KV part at batch 1 in the row's KV precision (a pure recurrent model has no
  attention KV, so the part is its state alone).
- `activation_growth`: what a batch of `ctx` tokens adds over one of `ctx_base` tokens, with the
  weights and runtime overhead cancelling out (transformers' benchmark of a BERT forward).
- `weights_per_rank`: the weights one of `tensor_parallel` GPUs holds (vLLM's "Model loading
  took X GB" under tensor parallelism), read as the estimate's per-GPU weights.
- `vllm_attention_block`: the attention block (tokens) vLLM's hybrid allocator picks so that
  one attention page holds a recurrent state ("Setting attention block size to N tokens"),
  with the row's `ssm_dtype` as --mamba-ssm-cache-dtype.
- `vllm_state`: the recurrent state vLLM keeps per request over all state layers, unpadded.
- `llamacpp_cache`: llama.cpp's KV buffer plus its recurrent-state (RS) buffer at the row's
  `ctx` cells and `batch` sequences in the `kv_dtype` cache type (a hybrid whose layers keep
  both, such as Falcon-H1), read as the llama.cpp emulation's KV self size.
"""

from __future__ import annotations

from pathlib import Path

from vramest.errors import InputError
from vramest.frozen import frozen
from vramest.validation import read_rows

MIB = 1024**2
UNITS = {"MiB": MIB, "GiB": 1024**3, "MB": 10**6, "tokens": 1}


@frozen
class ArchitectureRow:
    record_id: str
    model: str
    quantity: str
    measured_bytes: float
    estimated_bytes: float
    source: str

    @property
    def error(self) -> float:
        return (self.estimated_bytes - self.measured_bytes) / self.measured_bytes


def estimate_row(row: dict[str, str]) -> float:
    from vramest.api import estimate

    batch = int(row["batch"] or 1)
    if row["quantity"] == "recurrent_state":
        est = estimate(model=row["model"], dtype=row["dtype"], kv_dtype=row["kv_dtype"],
                       ctx=int(row["ctx"]), batch=batch)
        return est.memory.kv_cache.bytes
    if row["quantity"] == "activation_growth":
        def activations(ctx: int) -> int:
            return estimate(model=row["model"], dtype=row["dtype"], ctx=ctx, batch=batch,
                            attention=row["attention"]).memory.activations.bytes
        return activations(int(row["ctx"])) - activations(int(row["ctx_base"]))
    if row["quantity"] == "weights_per_rank":
        from vramest.inference.placement import per_gpu_memory

        est = estimate(model=row["model"], dtype=row["dtype"], ctx=int(row["ctx"] or 1))
        return per_gpu_memory(est, int(row.get("tensor_parallel") or 1)).weights
    if row["quantity"] in ("vllm_attention_block", "vllm_state"):
        return _vllm_hybrid(row)
    if row["quantity"] == "llamacpp_cache":
        from vramest.inference.engines.startup import LlamaCppOptions, llamacpp_startup

        est = estimate(model=row["model"], dtype=row["dtype"], kv_dtype=row["kv_dtype"],
                       ctx=int(row["ctx"]), batch=batch)
        return llamacpp_startup(est, LlamaCppOptions(n_ctx=int(row["ctx"]),
                                                     n_parallel=batch)).kv_cache_bytes
    raise InputError(f"architectures.csv: unknown quantity {row['quantity']!r}.")


def _vllm_hybrid(row: dict[str, str]) -> float:
    from vramest.api import estimate
    from vramest.inference.engines.vllm_hybrid import hybrid_kv
    from vramest.inference.memory import kv_widths
    from vramest.model.precisions import kv_format, weight_format

    est = estimate(model=row["model"], dtype=row["dtype"])
    shape = est.model.shape
    tp = int(row.get("tensor_parallel") or 1)
    k, v = kv_widths(shape)
    token = (k + v) * kv_format(row["kv_dtype"] or row["dtype"]).bytes_per_element / tp
    pools = hybrid_kv(shape, weight_format(row["dtype"]).compute_bytes, token, tp, 16,
                      int(row["ctx"] or 1), row.get("ssm_dtype") or "auto")
    if row["quantity"] == "vllm_attention_block":
        return pools.block_size
    return pools.state_bytes * pools.state_layers


def architecture_rows(reference_dir: Path) -> list[ArchitectureRow]:
    path = reference_dir / "architectures.csv"
    if not path.exists():
        return []
    rows = read_rows(path)
    return [ArchitectureRow(record_id=r["record_id"], model=r["model"], quantity=r["quantity"],
                            measured_bytes=float(r["value"]) * UNITS[r["unit"]],
                            estimated_bytes=estimate_row(r), source=r["source"])
            for r in rows]


def architecture_accuracy_report(reference_dir: Path) -> list[str]:
    rows = architecture_rows(reference_dir)
    if not rows:
        return [f"no rows in {reference_dir / 'architectures.csv'}"]
    width = max(len(r.record_id) for r in rows)
    lines = [f"{'record':{width}}  {'quantity':20} {'estimate':>14} {'published':>14}  "
             f"{'error':>7}"]
    for r in rows:
        if r.quantity == "vllm_attention_block":
            est, pub = f"{r.estimated_bytes:7.0f} tokens", f"{r.measured_bytes:7.0f} tokens"
        else:
            est, pub = f"{r.estimated_bytes / MIB:10.2f} MiB", f"{r.measured_bytes / MIB:10.2f} MiB"
        lines.append(f"{r.record_id:{width}}  {r.quantity:20} {est:>14} {pub:>14}  "
                     f"{100 * r.error:+6.2f}%")
    return lines
