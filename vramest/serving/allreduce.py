"""TensorRT-LLM's custom all-reduce over NVLink, from its measured op times on Hopper SXM GPUs.

TensorRT-LLM does not run its tensor-parallel all-reduces through NCCL's ring: its own kernels
(one-shot for small messages: every GPU reads every peer's buffer over NVLink; two-shot above:
reduce-scatter then all-gather) take a few microseconds where a ring pays about 20. A small
message therefore costs ~3-5 µs, not the ring's latency, while a mid-size one (0.1-4 M
elements) costs more than the ring's bandwidth line, as one-shot reads (n − 1) copies. The ring
formula of `vramest.inference.throughput.allreduce_seconds` fits neither end, so the serving
model reads the op's time from the measured table below, interpolated log-log in the message
size; messages past the table's ends scale linearly from its last point.
"""

from __future__ import annotations

import bisect
import math
from functools import lru_cache

from vramest.hardware.database import Device

# µs per bf16 all-reduce by GPU count and message size in elements (2^12 … 2^26), TensorRT-LLM
# 1.3.0rc20 on H100 SXM: PyPI aiconfigurator-core 0.12.0,
# aiconfigurator_core/systems/data/h100_sxm/comm/trtllm/1.3.0rc20/custom_allreduce_perf.parquet
# (implementation "trtllm"; its h200_sxm table and the 1.2.0rc5 and 1.3.0rc10 ones agree within
# a few per cent, so one table serves the NVLink-4 class)
SIZES = tuple(2 ** e for e in range(12, 27))
TRTLLM_NVLINK4_US: dict[int, tuple[float, ...]] = {
    2: (2.8, 2.8, 2.9, 3.1, 3.3, 3.8, 4.5, 6.1, 9.4, 17.1, 37.5, 78.5, 142.6, 254.2, 471.8),
    4: (3.1, 3.3, 3.4, 3.7, 4.3, 5.5, 7.9, 12.9, 26.1, 39.7, 63.8, 100.7, 174.9, 329.2, 618.8),
    8: (3.5, 3.6, 3.8, 4.6, 6.2, 10.2, 17.6, 26.0, 35.5, 51.9, 79.4, 122.3, 197.2, 322.5, 575.5),
}
# The same op measured on the other NVLink generations (same wheel, implementation "trtllm"):
# B200 (NVLink 5, 1800 GB/s), aiconfigurator_core/systems/data/b200_sxm/comm/trtllm/1.3.0rc20/
# custom_allreduce_perf.parquet; A100 SXM4 (NVLink 3, 600 GB/s), .../a100_sxm/comm/trtllm/1.0.0/
# custom_allreduce_perf.parquet (its 2^19-element TP-8 point is as measured: the kernels switch
# from one-shot to two-shot there). Scaling the H100 table by the link, as `trtllm_allreduce_s`
# does elsewhere, misses both ends: B200's small messages take 5-6 µs, not H100's 3-4, and its
# 2^26-element TP-8 op 0.69x H100's, not 0.5x; A100's 2.0x, not 1.5x.
TRTLLM_B200_US: dict[int, tuple[float, ...]] = {
    2: (4.8, 5.2, 5.2, 5.1, 5.1, 5.0, 5.4, 6.4, 8.0, 11.9, 20.8, 44.3, 86.6, 154.8, 283.4),
    4: (5.1, 5.5, 5.4, 5.4, 5.4, 5.8, 7.2, 9.7, 14.6, 26.8, 47.1, 72.7, 123.1, 188.7, 368.4),
    8: (5.6, 5.9, 6.1, 6.0, 6.3, 7.9, 10.9, 17.8, 30.4, 39.4, 55.4, 84.8, 146.5, 278.8, 397.8),
}
TRTLLM_A100_US: dict[int, tuple[float, ...]] = {
    2: (4.7, 5.1, 4.9, 5.1, 5.2, 6.2, 7.8, 11.6, 47.6, 54.3, 80.9, 128.9, 225.9, 391.6, 750.9),
    4: (6.0, 6.3, 6.0, 6.0, 7.3, 9.4, 13.9, 23.1, 48.3, 69.9, 112.5, 185.5, 291.4, 549.2, 1004.0),
    8: (8.0, 8.4, 8.4, 9.0, 11.7, 16.3, 28.3, 83.2, 53.6, 75.9, 128.8, 216.8, 374.5, 603.4,
        1173.7),
}
# devices whose own table is measured (the A100 table serves both SXM4 sizes: same chip, links)
MEASURED_US: dict[str, dict[int, tuple[float, ...]]] = {
    "NVIDIA B200": TRTLLM_B200_US,
    "NVIDIA A100 SXM4 80GB": TRTLLM_A100_US,
    "NVIDIA A100 SXM4 40GB": TRTLLM_A100_US,
}
NVLINK4_BYTES_S = 900e9  # the measured GPUs' NVLink (H100/H200 SXM, H20, GH200 list 900 GB/s)
# NVLink of the SXM class (V100's 300 GB/s and up): every GPU reaches the others directly, as the
# kernels need; two-card bridges (RTX A6000's 112.5 GB/s) keep the ring formula
NVLINK_SXM_BYTES_S = 300e9


def covers(device: Device, tp: int) -> bool:
    """Whether the table applies to this many GPUs of this kind."""
    return tp in TRTLLM_NVLINK4_US and device.vendor == "nvidia" and \
        (device.interconnect_bytes_s or 0.0) >= NVLINK_SXM_BYTES_S


def trtllm_allreduce_s(tp: int, elements: float, link_bytes_s: float = NVLINK4_BYTES_S) -> float:
    """Seconds of one all-reduce of `elements` bf16 values over `tp` GPUs. On another NVLink
    generation a message costs what one link / 900 GB/s times its size costs on the measured
    one: the bandwidth-bound sizes scale with the link, the few-µs small messages do not."""
    return _measured(tp, elements * NVLINK4_BYTES_S / link_bytes_s)


def device_allreduce_s(device: Device, tp: int, elements: float) -> float:
    """Seconds of one all-reduce on `device`: its own measured table where there is one, else
    the H100 table scaled by the link (`trtllm_allreduce_s`)."""
    if device.name in MEASURED_US:
        return _measured(tp, elements, device.name)
    return trtllm_allreduce_s(tp, elements, device.interconnect_bytes_s or NVLINK4_BYTES_S)


@lru_cache(maxsize=8192)
def _measured(tp: int, elements: float, table: str = "") -> float:
    row = MEASURED_US[table][tp] if table else TRTLLM_NVLINK4_US[tp]
    if elements <= SIZES[0]:
        return row[0] * 1e-6
    if elements >= SIZES[-1]:
        return row[-1] * elements / SIZES[-1] * 1e-6
    i = bisect.bisect_right(SIZES, elements) - 1
    f = math.log(elements / SIZES[i]) / math.log(SIZES[i + 1] / SIZES[i])
    return math.exp(math.log(row[i]) * (1 - f) + math.log(row[i + 1]) * f) * 1e-6
