"""llama.cpp prefill without flash attention: the KQ scores travel through memory.

Without -fa, src/llama-graph.cpp (build_attn_mha) computes attention in three graph nodes per
layer: kq = ggml_mul_mat(k, q) writes an f32 score for every head, token of the micro-batch and
KV cell in view; ggml_soft_max_ext reads and writes them; ggml_mul_mat(v, kq) reads them again.
Those are four passes over 4-byte elements that the roofline's matmul FLOPs do not count, and
they run as separate memory-bound kernels after the matmuls, so their time adds. With -fa the
scores stay in on-chip memory. llama-bench keeps -fa off by default (ggml-org/llama.cpp PR
#23714, 2026-05: "The default is still kept as -fa off"); llama-server turns it on by default
from about b6300 (vramest/inference/engines/versions.py).
"""

from __future__ import annotations

from vramest.frozen import replace
from vramest.hardware.database import Device
from vramest.inference.constants import Constants
from vramest.inference.engines.speed import Engine
from vramest.inference.engines.startup import LlamaCppStartup
from vramest.inference.throughput import Throughput, engine_efficiencies
from vramest.model.shapes import LAYER_FULL, LAYER_SLIDING, ModelShape
from vramest.units import format_bytes

SCORE_BYTES_MOVED = 4 * 4  # f32 scores: written by KQ, read and written by softmax, read by KQV


def score_bytes(shape: ModelShape, prompt_tokens: int, ubatch: int) -> float:
    """Bytes the materialised KQ scores move over a prompt of `prompt_tokens` processed in
    micro-batches of `ubatch`: each micro-batch attends to the cells filled so far (a sliding
    layer to its window and the micro-batch)."""
    ubatch = max(1, ubatch)
    full = sliding = 0
    for kind in shape.kinds():
        full += kind == LAYER_FULL
        sliding += kind == LAYER_SLIDING
    window = shape.sliding_window or 0
    elements = 0.0
    for start in range(0, prompt_tokens, ubatch):
        rows = min(ubatch, prompt_tokens - start)
        cells = start + rows
        elements += rows * (full * cells + sliding * min(cells, window + ubatch))
    return elements * shape.num_heads * SCORE_BYTES_MOVED


def with_unfused_attention(speed: Throughput, report: LlamaCppStartup, shape: ModelShape,
                           gpu: Device, constants: Constants, engine: Engine) -> Throughput:
    """`speed` with the scores' memory traffic added to prefill when flash attention is off."""
    if report.flash_attn or not report.gpu_layers or speed.prompt_tokens <= 1:
        return speed
    moved = speed.batch * score_bytes(shape, speed.prompt_tokens, report.n_ubatch)
    moved *= report.gpu_layers / max(1, report.layers_total)  # host layers attend on the CPU
    mem_eff, _ = engine_efficiencies(gpu, constants, engine)
    bandwidth = (gpu.bandwidth_bytes_s or 0.0) * mem_eff
    if not moved or not bandwidth:
        return speed
    extra_s = moved / bandwidth  # layer split: the GPUs run their layers one after another
    prefill = replace(speed.prefill, overhead_s=speed.prefill.overhead_s + extra_s)
    note = (f"flash attention off: the KQ scores move {format_bytes(moved)} through GPU memory "
            f"during prefill (+{extra_s * 1e3:.0f} ms; -fa on keeps them on chip)")
    return replace(speed, prefill=prefill, notes=(*speed.notes, note))
