"""What a llama.cpp process holds on a device beyond the buffers it logs, and the limit it fills.

llama.cpp's log names every buffer it allocates (model, KV, compute: CUDA0, ROCm0, Metal), and
vramest reproduces them to the byte. Whether a run starts is a different question: the buffers
plus what the backend holds outside them must fit in what the device lets the process use.

- CUDA / HIP / Vulkan: the limit is the total the driver reports (cudaMemGetInfo), a little
  below the nominal size (`Constants.visible_memory_fraction`; llama.cpp's own breakdown shows
  24080 MiB on an RTX 4090, 24115-24159 MiB on RTX 3090s). Outside the buffers the process holds
  the CUDA context, the cuBLAS handle and workspace and ggml's memory pool; llama.cpp prints
  this as the "unaccounted" column of its memory breakdown: 451, 456 and 456 MiB on three
  RTX 4090s at exit (RUNTIME_BYTES).
- Metal: the limit is recommendedMaxWorkingSetSize (vramest.hardware.database.metal_working_set)
  and only the Metal buffers count against it: llama.cpp's warning compares the buffers it
  allocated with it, "(12921.25 / 10922.67)" on a 16 GB M1 (ise-uiuc/magicoder#19), "(23984.91 /
  21845.34)" on a 32 GB M2 Max (ollama/ollama#434); no CUDA context exists there.

llama.cpp's own fit (`-fit`, llama_params_fit, ggml-org/llama.cpp PR #16653) is stricter than
what a run needs: it leaves a margin of 1024 MiB (`--fit-target`) of the free memory it reads
after the context exists. That margin is what llama.cpp changes parameters to keep, not what a
run needs to start, so the verdict here does not charge it (LLAMACPP_FIT_MARGIN is used where
vramest emulates that fit).
"""

from __future__ import annotations

from vramest.hardware.database import Device
from vramest.units import MIB

# The "unaccounted" column of llama_memory_breakdown_print at exit (CUDA context + cuBLAS +
# ggml's pool) on 3x RTX 4090: 451, 456, 456 MiB (ggml-org/llama.cpp PR #15860, its example)
RUNTIME_BYTES = 456 * MIB
# How far that hold moves from one machine to the next, kept as the verdict's band beyond the
# buffers' 1%: a bare context at load is smaller, a desktop on the same GPU takes far more
# (2445 MiB in use before the model loaded on a GTX 1080 Ti, ggml-org/llama.cpp#19437; a display
# GPU "often needs ... 2048 MiB", #18390). One hold's worth either way; --reserve for a desktop.
RUNTIME_SPREAD_BYTES = RUNTIME_BYTES
# llama_params_fit's default margin: "-fitt, --fit-target MiB ... default: 1024"
# (ggml-org/llama.cpp common/arg.cpp, PR #16653; quoted in issue #18390)
LLAMACPP_FIT_MARGIN = 1024 * MIB
# backends without a CUDA-style context: the working-set limit counts the buffers only
NO_CONTEXT_BACKENDS = ("Metal",)


def runtime_bytes(backend: str) -> int:
    """What the backend holds on each GPU it uses beyond the logged buffers."""
    return 0 if backend in NO_CONTEXT_BACKENDS else RUNTIME_BYTES


def runtime_spread_bytes(backend: str) -> int:
    return 0 if backend in NO_CONTEXT_BACKENDS else RUNTIME_SPREAD_BYTES


def device_limit(device: Device, visible_fraction: float) -> int:
    """What llama.cpp may fill on one device: the total the driver reports (Metal's working set
    on a Mac, a unified chip's measured total), less what the OS holds there at start."""
    return device.reported_total_bytes(visible_fraction) - device.os_in_use_bytes
