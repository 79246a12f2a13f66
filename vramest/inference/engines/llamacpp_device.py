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

import re

from vramest.frozen import frozen
from vramest.hardware.database import Device
from vramest.inference.engines.versions import Release
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


# --- ggml's CUDA pool in builds that multiplied through cuBLAS in F16 ---------------------------
# RUNTIME_BYTES was measured on a build whose matrix products run in MMQ kernels and whose
# attention scores come out in F32. Older builds kept more in the pool (ggml_cuda_pool_alloc in
# ggml-cuda.cu), on GPUs with fast F16 (llama.cpp's fp16_performance_good: Volta or later, RDNA):
# - the attention scores of a prompt batch in F16: ggml_cuda_mul_mat_batched_cublas allocates
#   "dst_f16" of n_kv x n_tokens x n_head elements when the KQ product keeps the default
#   precision; batched cuBLAS for attention came with ggml-org/llama.cpp PR #3749 (merged
#   2023-10-24, before issue #3780's build 1430 of 2023-10-27), and PR #10015 ("switch KQ
#   multiplication to use F32 precision by default", 2024-10-23) ended it. Without flash attention
#   only, and for an F16 K cache (the batched path takes F16).
BATCHED_KQ_F16 = (Release((1420,)), Release((3970,)))
# - a quantized weight matrix dequantised to F16 for cuBLAS when more than 32 rows multiply it
#   (MMQ_MAX_BATCH_SIZE): PR #3412 ("perform cublas mat mul of quantized types as f16",
#   2023-09-30, "This increases VRAM") until PR #8075 ("use MMQ instead of cuBLAS by default",
#   2024-06-23) for GPUs with int8 tensor cores; V100 and RDNA3 keep cuBLAS after it.
F16_DEQUANT = (Release((1300,)), Release((3215,)))
# Until PR #6122 (2024-03, "greatly reduce output buffer memory usage") the output head
# multiplied every token of the batch, so its matrix was dequantised too.
HEAD_EVERY_TOKEN_UNTIL = Release((2536,))
MMQ_MAX_BATCH_SIZE = 32
F16_BYTES = 2
# GPUs without fast F16 (compute capability below 7.0 on NVIDIA's list; AMD's GCN): llama.cpp
# keeps them on MMQ (min_compute_capability >= MIN_CC_DP4A, 610) and, from PR #4682 ("CUDA: fix
# tensor core logic for Pascal and HIP", a20f3c74 of 2023-12-29, build b1728 by rev-list count),
# off the batched F16 path. Before it, ggml_cuda_mul_mat sent every F16 x F32 multi-batch
# product there whatever the GPU ("KQ + KQV multi-batch", ggml-cuda.cu @2f9ec7e = b1430, the
# build of issue #3780's 3x P40 log): a P40 held the F16 scores in the pool too.
SLOW_F16_BATCHED_KQ_UNTIL = Release((1728,))
_SLOW_F16 = re.compile(r"gtx 10\d\d|gtx titan|titan xp?\b|tesla [kmp]\d|quadro [kmp]\d|"
                       r"\bmi(25|50|60)\b|vega|radeon vii", re.IGNORECASE)
# V100 (7.0, no int8 tensor cores) and RDNA3: cuBLAS after PR #8075 too
_CUBLAS_AFTER_MMQ = re.compile(r"v100|rx 7\d{3}|radeon pro w7\d{3}|8060s|strix halo",
                               re.IGNORECASE)


@frozen
class PoolShape:
    """What decides the pool's size: the largest weight matrix multiplied by a prompt batch."""

    n_kv: int  # cells the scores of one batch span
    n_tokens: int  # the prompt batch (n_ubatch)
    n_head: int
    layer_matrix_elements: int  # the largest quantized matrix of a layer
    head_matrix_elements: int  # the output head, 0 when it stays on the host
    quantized: bool
    flash_attn: bool
    k_cache_f16: bool


def pool_bytes(pool: PoolShape, device: Device | None, backend: str, build: Release) -> int:
    """The peak ggml's pool reaches beyond what a recent build holds (RUNTIME_BYTES): the larger
    of the F16 scores and the dequantised matrix (the VMM pool maps its peak; the older pool
    caches both, so this is a floor there)."""
    if device is None or backend not in ("CUDA", "ROCm"):
        return 0
    slow_f16 = _SLOW_F16.search(device.name) is not None
    batched_until = min(BATCHED_KQ_F16[1], SLOW_F16_BATCHED_KQ_UNTIL) if slow_f16 \
        else BATCHED_KQ_F16[1]
    scores = 0
    if not pool.flash_attn and pool.k_cache_f16 and pool.n_tokens > 1 and \
            BATCHED_KQ_F16[0] <= build < batched_until:
        scores = pool.n_kv * pool.n_tokens * pool.n_head * F16_BYTES
    if slow_f16:  # MMQ: no matrix dequantised for cuBLAS
        return scores
    dequant = 0
    until = Release((10**9,)) if _CUBLAS_AFTER_MMQ.search(device.name) else F16_DEQUANT[1]
    if pool.quantized and pool.n_tokens > MMQ_MAX_BATCH_SIZE and F16_DEQUANT[0] <= build < until:
        head = pool.head_matrix_elements if build < HEAD_EVERY_TOKEN_UNTIL else 0
        dequant = max(pool.layer_matrix_elements, head) * F16_BYTES
    return max(scores, dequant)
