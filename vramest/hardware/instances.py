"""Cloud instance types as users name their machine ("a g5.2xlarge", "8x A100 on a p4d"): the
GPU row each holds and how many.

Sources: AWS https://aws.amazon.com/ec2/instance-types/{g4,g5,g6,g6e,p3,p4,p5,p6}/ (accelerated
computing tables), Google Cloud https://cloud.google.com/compute/docs/gpus (A2, A3, A4, G2
machine types), Azure https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/
(NC A100 v4, NCas T4 v3, ND A100 v4, ND H100 v5 series).
"""

from __future__ import annotations

_T4, _A10G, _L4, _L40S = "NVIDIA T4", "NVIDIA A10G", "NVIDIA L4", "NVIDIA L40S"
_V100, _V100_32 = "NVIDIA Tesla V100 SXM2 16GB", "NVIDIA Tesla V100 SXM2 32GB"
_A100_40, _A100_80 = "NVIDIA A100 SXM4 40GB", "NVIDIA A100 SXM4 80GB"
_A100_80_PCIE = "NVIDIA A100 PCIe 80GB"
_H100, _H200, _B200 = "NVIDIA H100 SXM5 80GB", "NVIDIA H200 SXM 141GB", "NVIDIA B200"


def _sizes(family: str, gpu: str, counts: dict[str, int]) -> dict[str, tuple[str, int]]:
    return {f"{family}.{size}": (gpu, n) for size, n in counts.items()}


_ONE_TO_EIGHT = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
                 "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}  # g5, g6, g6e
INSTANCES: dict[str, tuple[str, int]] = {
    **_sizes("g4dn", _T4, {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1,
                           "16xlarge": 1, "12xlarge": 4, "metal": 8}),
    **_sizes("g5", _A10G, _ONE_TO_EIGHT),
    **_sizes("g6", _L4, _ONE_TO_EIGHT),
    **_sizes("g6e", _L40S, _ONE_TO_EIGHT),
    **_sizes("p3", _V100, {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8}),
    "p3dn.24xlarge": (_V100_32, 8),
    "p4d.24xlarge": (_A100_40, 8), "p4de.24xlarge": (_A100_80, 8),
    "p5.4xlarge": (_H100, 1), "p5.48xlarge": (_H100, 8),
    "p5e.48xlarge": (_H200, 8), "p5en.48xlarge": (_H200, 8),
    "p6-b200.48xlarge": (_B200, 8),
    **{f"a2-highgpu-{n}g": (_A100_40, n) for n in (1, 2, 4, 8)},
    "a2-megagpu-16g": (_A100_40, 16),
    **{f"a2-ultragpu-{n}g": (_A100_80, n) for n in (1, 2, 4, 8)},
    **{f"a3-highgpu-{n}g": (_H100, n) for n in (1, 2, 4, 8)},
    "a3-megagpu-8g": (_H100, 8), "a3-edgegpu-8g": (_H100, 8),
    "a3-ultragpu-8g": (_H200, 8), "a4-highgpu-8g": (_B200, 8),
    **{f"g2-standard-{n}": (_L4, 1) for n in (4, 8, 12, 16, 32)},
    "g2-standard-24": (_L4, 2), "g2-standard-48": (_L4, 4), "g2-standard-96": (_L4, 8),
    "standard_nc24ads_a100_v4": (_A100_80_PCIE, 1), "standard_nc48ads_a100_v4": (_A100_80_PCIE, 2),
    "standard_nc96ads_a100_v4": (_A100_80_PCIE, 4),
    **{f"standard_nc{n}as_t4_v3": (_T4, 1) for n in (4, 8, 16)}, "standard_nc64as_t4_v3": (_T4, 4),
    "standard_nd96asr_v4": (_A100_40, 8), "standard_nd96amsr_a100_v4": (_A100_80, 8),
    "standard_nd96isr_h100_v5": (_H100, 8),
}


def instance(name: str) -> tuple[str, int] | None:
    """The GPU row and count of a cloud instance type ("g5.2xlarge", "a2-highgpu-4g",
    "Standard_NC24ads_A100_v4"); None for any other name."""
    return INSTANCES.get(name.strip().lower())
