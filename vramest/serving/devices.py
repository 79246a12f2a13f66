"""How a GPU's kernels differ from the H100/H200 ones the serving constants were fitted on.

The serving constants (serving/engines.py FITTED) were fitted on H100/H200 rows only, so they
carry Hopper's kernels: the share of the datasheet bandwidth a decode GEMM streams its weights
at, the share of the datasheet peak a large GEMM reaches, and the few microseconds every small
kernel takes however little it does (the per-step and per-layer costs are sums of those). On
another chip the three move separately: A100's small kernels take 1.2x Hopper's (lower clocks),
its GEMVs stream a smaller share of HBM2e, while B200's kernels launch faster but its large
GEMMs reach a smaller share of its doubled peak. Scaling each fitted figure by the chip's
measured ratio to Hopper moves the model by mechanism instead of refitting per device.

The ratios come from AIConfigurator's measured bf16 GEMM tables (PyPI aiconfigurator-core
0.12.0, aiconfigurator_core/systems/data/<device>/gemm/<engine>/<version>/gemm_perf.parquet),
reduced by scripts/aic_device_kernels.py (its output: scripts/aic_device_kernels.txt):

    device     weight streaming   large GEMMs    small kernels
    a100_sxm   0.747              0.810          3.36 us
    h100_sxm   0.866              0.770          2.84 us
    h200_sxm   0.850              0.772          2.78 us
    b200_sxm   0.785              0.661          2.15 us

Hopper is the mean of H100 and H200 (0.858, 0.771, 2.81 us). Devices without tables keep
Hopper's figures (ratio 1): nothing measured says how they differ.

Two of the three are applied: the weight-streaming share scales the memory efficiency, and the
small-kernel time scales the costs that are sums of kernels on the GPU (TensorRT-LLM's per-layer
cost, the eager per-layer launches of steps with prompt tokens). The per-step cost stays: it is
the host's scheduling, sampling and synchronisation. The large-GEMM share (B200 0.86x Hopper's,
A100 1.05x) is not applied: on the B200 rows it moves vLLM's TTFT error from -36% to -29% and
TensorRT-LLM's from +57% to +72% (fp8), the two engines' residuals having opposite signs on the
same chip, so what is left there is the engines' prefill paths, not the chip's GEMM rate.
"""

from __future__ import annotations

from functools import lru_cache

from vramest.frozen import frozen, replace
from vramest.hardware.database import Device
from vramest.inference.engines.speed import Engine


@frozen
class KernelRatios:
    """A chip's kernel figures over Hopper's."""

    memory: float  # share of datasheet bandwidth decode GEMMs stream weights at
    latency: float  # time of a launch-bound small kernel
    source: str


_HOPPER = (0.858, 2.81)  # H100/H200 mean of the table above


def _ratios(memory: float, latency_us: float, table: str) -> KernelRatios:
    return KernelRatios(memory / _HOPPER[0], latency_us / _HOPPER[1],
                        f"aiconfigurator-core 0.12.0 systems/data/{table}/gemm tables "
                        "(scripts/aic_device_kernels.txt)")


# only the devices measured: AIConfigurator's a100_sxm is the 80 GB SXM4 (2039 GB/s HBM2e, its
# systems/a100_sxm.yaml); the 40 GB one's HBM2 is another memory system
RATIOS: dict[str, KernelRatios] = {
    "NVIDIA A100 SXM4 80GB": _ratios(0.747, 3.36, "a100_sxm"),
    "NVIDIA B200": _ratios(0.785, 2.15, "b200_sxm"),
}


def kernel_ratios(device: Device) -> KernelRatios | None:
    return RATIOS.get(device.name)


@lru_cache(maxsize=256)
def on_device(speed: Engine, device: Device) -> Engine:
    """The engine's Hopper-fitted speed constants carried to `device`'s kernels."""
    r = kernel_ratios(device)
    if r is None:
        return speed
    return replace(speed,
                   memory_efficiency_scale=speed.memory_efficiency_scale * r.memory,
                   layer_overhead_s=speed.layer_overhead_s * r.latency)


def eager_layer_on_device(eager_layer_s: float, device: Device) -> float:
    """Kernel launches of an eager layer take the device's small-kernel time."""
    r = kernel_ratios(device)
    return eager_layer_s * r.latency if r else eager_layer_s
