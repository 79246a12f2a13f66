"""Per-device kernel figures for vramest/serving/devices.py, from AIConfigurator's GEMM tables.

    python scripts/aic_device_kernels.py DIR

DIR holds the unpacked aiconfigurator_core/systems/data/ of the PyPI wheel
aiconfigurator-core 0.12.0 (measured bf16 GEMM latencies per device, engine and version). Needs
pandas and pyarrow (a scratch environment; not a vramest dependency). For each device it prints:

- weight streaming: decode GEMMs (M <= 4 rows, N and K 1024-16384) fitted as
  t = t0 + bytes / B on their relative errors; B over vramest's datasheet bandwidth;
- large GEMMs: median achieved share of the datasheet bf16 peak (M 2048-8192, N, K 2048-16384),
  the mean over the engines' tables;
- small kernels: median latency of GEMMs with M <= 8 and N, K <= 512 (launch-bound: they move
  and compute next to nothing), the mean over the engines' tables.
"""

from __future__ import annotations

import glob
import sys

import numpy as np
import pandas as pd

# vramest's datasheet figures (vramest/hardware database): bytes/s, bf16 dense FLOP/s
DEVICES = {"a100_sxm": (2039e9, 312e12), "h100_sxm": (3350e9, 989.4e12),
           "h200_sxm": (4800e9, 989.4e12), "b200_sxm": (8000e9, 2250e12)}


def main(root: str) -> None:
    for dev, (bandwidth, peak) in DEVICES.items():
        tables = sorted(glob.glob(f"{root}/{dev}/gemm/*/*/gemm_perf.parquet"))
        frames = [pd.read_parquet(f) for f in tables]
        frames = [f[f.gemm_dtype == "bfloat16"] for f in frames]
        d = pd.concat(frames)
        gemv = d[(d.m <= 4) & d.n.between(1024, 16384) & d.k.between(1024, 16384)]
        x = 2.0 * gemv.n.to_numpy() * gemv.k.to_numpy()
        y = gemv.latency.to_numpy() * 1e-3
        a = np.vstack([np.ones_like(x), x]).T / y[:, None]
        (t0, inv), *_ = np.linalg.lstsq(a, np.ones_like(y), rcond=None)
        big, small = [], []
        for f in frames:
            g = f[f.m.between(2048, 8192) & f.n.between(2048, 16384) & f.k.between(2048, 16384)]
            big.append(float(np.median(2.0 * g.m * g.n * g.k / (g.latency * 1e-3) / peak)))
            s = f[(f.m <= 8) & (f.n <= 512) & (f.k <= 512)]
            small.append(float(s.latency.median() * 1e3))
        print(f"{dev}: tables {len(tables)}, weight streaming {1 / inv / bandwidth:.3f} of "
              f"datasheet (t0 {t0 * 1e6:.2f} us, n={len(gemv)}), large GEMMs "
              f"{np.mean(big):.3f} of peak, small kernels {np.mean(small):.2f} us")


if __name__ == "__main__":
    main(sys.argv[1])
