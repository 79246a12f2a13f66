"""Speed with layers left on the host: llama.cpp's -ngl below the layer count, Ollama's partial
offload, and expert tensors kept on the host (--n-cpu-moe).

Decode runs the host layers on the CPU, one after the GPU's, so each token also streams the
host's weights (all of a host layer's dense weights and the output head when it stays there; of
host expert tensors only the experts a token routes to) and the host layers' KV from system
memory. Prefill batches of 32 tokens or more run every matmul on the GPU, copying each host
weight over PCIe once per micro-batch (llama.cpp PR #6083, "offload large batches to GPU";
ggml-cuda.cu ggml_backend_cuda_device_offload_op: min_batch_size 32).
"""

from __future__ import annotations

from vramest.frozen import replace
from vramest.hardware.database import Device, HardwareDB
from vramest.inference.constants import Constants
from vramest.inference.engines.startup import LlamaCppStartup
from vramest.inference.throughput import Throughput, experts_touched
from vramest.model.shapes import ModelShape
from vramest.units import format_bytes

# What a desktop beside a consumer GPU has; --host-memory names another row of the database
DEFAULT_HOST_MEMORY = "CPU DDR5-5600 2-channel"
# pinned host-to-device copies reach about 25 of PCIe 4.0 x16's 32 GB/s (CUDA samples
# bandwidthTest); pcie_gbs rows are both directions; where a GPU row gives none, PCIe 4.0 x16
PCIE_COPY_EFFICIENCY = 25 / 32
PCIE_DEFAULT_BYTES_S = 32e9
OP_OFFLOAD_MIN_BATCH = 32  # ggml-cuda.cu ggml_backend_cuda_device_offload_op


def host_memory(db: HardwareDB, name: str | None) -> Device:
    """The system memory the host layers stream from: a CPU row of the database."""
    from vramest.errors import InputError, short

    cpus = ", ".join(d.name for d in db.devices if d.kind == "cpu")
    try:
        device = db.find(DEFAULT_HOST_MEMORY if name is None else name)
    except InputError:
        raise InputError(f"Unknown --host-memory {short(name)}; accepted: a system-memory row of "
                         f"the database ({cpus}) or one added with --hardware-file.") from None
    if device.kind != "cpu" or not device.bandwidth_bytes_s:
        raise InputError(f"--host-memory takes a system-memory row of the database ({cpus}), "
                         f"not {device.name}.")
    return device


def host_bytes_per_step(report: LlamaCppStartup, shape: ModelShape, batch: int,
                        position: int) -> float:
    """Bytes one decode step reads from system memory: the host's dense weights, its experts
    as far as the batch's tokens route to them, and the host layers' KV up to `position`."""
    experts = report.host_expert_bytes * (experts_touched(shape, batch) if shape.is_moe else 1.0)
    host_kv = report.kv_cache_bytes - report.kv_cache_gpu_bytes
    filled = min(1.0, batch * position / report.n_ctx) if report.n_ctx else 1.0
    return report.host_dense_bytes + experts + host_kv * filled


def with_host_layers(speed: Throughput, report: LlamaCppStartup, shape: ModelShape,
                     gpu: Device, host: Device, constants: Constants) -> Throughput:
    """`speed` (every layer on the GPU) with the host's share moved to system memory."""
    position = speed.prompt_tokens + speed.gen_tokens // 2
    host_read = host_bytes_per_step(report, shape, speed.batch, position)
    if host_read <= 0:
        return speed
    decode = speed.decode
    on_gpu = max(0.0, 1.0 - host_read / decode.work.bytes_moved) if decode.work.bytes_moved else 0.0
    host_bandwidth = (host.bandwidth_bytes_s or 0.0) * constants.memory_efficiency_cpu
    host_s = host_read / host_bandwidth
    decode = replace(decode, compute_s=None if decode.compute_s is None else
                     decode.compute_s * on_gpu, memory_s=decode.memory_s * on_gpu + host_s)
    notes = [f"{format_bytes(host_read)} per decode step from system memory ({host.name}, "
             f"{host_bandwidth / 1e9:.0f} GB/s at {constants.memory_efficiency_cpu:.0%} of its "
             f"peak; --host-memory for another): +{host_s * 1e3:.1f} ms per token"]
    prefill = speed.prefill
    tokens = speed.batch * speed.prompt_tokens
    if tokens >= OP_OFFLOAD_MIN_BATCH:
        steps = -(-tokens // max(1, report.n_ubatch))
        copied = report.host_dense_bytes + report.host_expert_bytes
        pcie = (gpu.pcie_bytes_s or 2 * PCIE_DEFAULT_BYTES_S) / 2 * PCIE_COPY_EFFICIENCY
        copy_s = steps * copied / pcie
        prefill = replace(prefill, overhead_s=prefill.overhead_s + copy_s)
        notes.append(f"prefill copies the host's {format_bytes(copied)} of weights over PCIe "
                     f"({pcie / 1e9:.0f} GB/s) for each of {steps} micro-batches of "
                     f"{report.n_ubatch}: +{copy_s:.2f} s")
    return replace(speed, decode=decode, prefill=prefill, notes=(*speed.notes, *notes))
