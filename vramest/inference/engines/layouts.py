"""Quantized weights as vLLM's kernels hold them on the GPU, which is not always as stored.

MXFP4 MoE experts (gpt-oss) are padded and repacked per kernel, and the kernel depends on the
GPU generation and the vLLM release; the vocabulary is padded for the parallel embedding.
GPTQ/AWQ repacked for Marlin keep their size (4-bit values, one scale per group: the tile
permutation moves bytes, it adds none), so they need no rule here.
"""

from __future__ import annotations

import math
import re

from vramest.frozen import frozen
from vramest.hardware.database import Device
from vramest.model.shapes import ModelShape

MXFP4_BLOCK = 32  # elements per E8M0 scale (OCP MX spec)
# vllm/model_executor/layers/vocab_parallel_embedding.py: DEFAULT_VOCAB_PADDING_SIZE = 64
VOCAB_PADDING = 64


@frozen
class Layout:
    weights_bytes: int  # per GPU, as vLLM's "Model loading took" counts it
    note: str


def compute_capability(device: Device) -> tuple[int, int]:
    """The SM version of an NVIDIA GPU from its name (the hardware database has no such
    column; NVIDIA's CUDA GPUs table); (0, 0) for other vendors."""
    name = device.name.lower()
    if device.vendor.lower() != "nvidia":
        return (0, 0)
    table = (
        (("ada generation", "rtx 40", "l40", "l4"), (8, 9)),
        (("b100", "b200", "b300", "gb200", "gb300"), (10, 0)),
        (("rtx 50", "rtx pro 6000 blackwell", "gb10", "dgx spark"), (12, 0)),
        (("h100", "h200", "h800", "h20", "gh200"), (9, 0)),
        (("a100", "a800", "a30"), (8, 0)),
        (("rtx 30", "rtx a", "a10", "a40", "a16", "a2"), (8, 6)),
        (("t4", "rtx 20", "quadro rtx", "titan rtx"), (7, 5)),
        (("v100", "titan v"), (7, 0)),
        (("p100",), (6, 0)),
        (("p40", "p4", "gtx 10", "quadro p", "titan x"), (6, 1)),
    )
    for keys, cc in table:
        if any(k in name for k in keys):
            return cc
    return (7, 0)


# The oldest GPU each vLLM quantization method loads on: get_min_capability() of its config
# (vllm/model_executor/layers/quantization/mxfp4.py @007d5005: 80; awq.py: 75; gptq.py: 60;
# fp8.py: 80, or 90 before FP8 Marlin: see versions.VLLMRules.fp8_min_capability). Logs:
# "The quantization method mxfp4 is not supported for the current GPU SM75" (vLLM #22288).
MIN_CAPABILITY = {"mxfp4": (8, 0), "fp8": (8, 0), "awq": (7, 5), "gptq": (6, 0)}


def capability_refusal(fmt_name: str, device: Device,
                       fp8_min: tuple[int, int] = (8, 0)) -> str:
    cc = compute_capability(device)
    if cc == (0, 0):  # not an NVIDIA GPU: no CUDA capability to compare
        return ""
    for prefix, needed in {**MIN_CAPABILITY, "fp8": fp8_min}.items():
        if fmt_name.startswith(prefix) and cc < needed:
            return (f"vLLM refuses {fmt_name} weights on {device.name} (compute capability "
                    f"{cc[0]}.{cc[1]}; its {prefix} method needs {needed[0]}.{needed[1]}).")
    return ""


def _up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def mxfp4_backend(cc: tuple[int, int], hopper_kernel: str) -> str:
    """vllm/model_executor/layers/quantization/mxfp4.py get_mxfp4_backend @007d5005: FlashInfer
    on sm100 family, triton_kernels on sm90-sm10x (0.11+), Marlin otherwise (Ampere, Ada,
    sm120, and sm90 in 0.10)."""
    if cc[0] == 10:
        return "flashinfer-sm100"
    if cc[0] == 9:
        return hopper_kernel
    return "marlin"


def mxfp4_expert_bytes(hidden: int, inter: int, backend: str) -> tuple[float, str]:
    """Bytes of one expert's gate_up + down (values, scales, biases) under `backend`.

    `inter` is the expert's intermediate size on this rank. Padding from mxfp4.py
    create_weights @007d5005: Marlin rounds the intermediate to 128 and hidden to 256 (the MoE
    Marlin kernel needs n % 256 and k % 128); FlashInfer sm100 rounds both to 256; Triton rounds
    the intermediate to 64, then triton_kernels' Hopper value layout pads the byte-packed
    (K, N) planes to 64 × 256 (triton-lang/triton python/triton_kernels/.../hopper_value.py
    _padded_shape @000df03e). Biases are bf16, or fp32 where the kernel casts them.
    """
    scale = 1 / MXFP4_BLOCK
    if backend == "marlin":
        i, h = _up(inter, 128), _up(hidden, 256)
        values = 3 * i * h / 2
        bias = (2 * i + h) * 2
        how = f"Marlin: intermediate {inter}→{i}, hidden {hidden}→{h}"
    elif backend == "flashinfer-sm100":
        i, h = _up(inter, 256), _up(hidden, 256)
        values = 3 * i * h / 2
        bias = (2 * i + h) * 4
        how = f"FlashInfer sm100: intermediate {inter}→{i}, hidden {hidden}→{h}"
    else:  # triton_kernels on Hopper
        i, h = _up(inter, 64), hidden
        w13 = _up(h // 2, 64) * _up(2 * i, 256)
        w2 = _up(i // 2, 64) * _up(h, 256)
        values = w13 + w2
        bias = (2 * i + h) * 4
        how = "triton_kernels Hopper layout: packed planes padded to 64 × 256"
    return values + 3 * i * h * scale + bias, how


def vllm_weights(shape: ModelShape, fmt_name: str, device: Device, tp: int, base_bytes: int,
                 expert_bytes: float, hopper_kernel: str, pp: int = 1) -> Layout:
    """Per-GPU weights as vLLM holds them: `base_bytes` (the stored layout split by rank) with
    MXFP4 experts re-laid for their kernel, and the vocabulary padded to 64 rows."""
    notes = []
    total = float(base_bytes)
    if shape.is_moe and "mxfp4" in fmt_name and expert_bytes:
        backend = mxfp4_backend(compute_capability(device), hopper_kernel)
        inter = math.ceil(shape.moe_intermediate_size / tp)
        one, how = mxfp4_expert_bytes(shape.hidden_size, inter, backend)
        moe_layers = sum(1 for i in range(shape.num_layers) if shape.is_moe_layer(i))
        laid = one * shape.num_experts * moe_layers / pp  # a stage holds its layers' experts
        total += laid - expert_bytes / tp
        notes.append(f"MXFP4 experts as vLLM's {backend} kernel holds them ({how}): "
                     f"{laid / 2**30:.2f} GiB per GPU")
    padded = _up(shape.vocab_size, VOCAB_PADDING)
    if padded != shape.vocab_size:
        tables = 1 if shape.tie_embeddings else 2
        total += (padded - shape.vocab_size) * shape.hidden_size * 2 * tables / tp
        notes.append(f"vocabulary padded {shape.vocab_size}→{padded} rows "
                     "(vocab_parallel_embedding.py)")
    return Layout(round(total), "; ".join(notes))


def group_size(fmt_name: str) -> int | None:
    """The quantization group of a GPTQ/AWQ format name (`gptq-int4-g64`; 128 by default)."""
    if not fmt_name.startswith(("gptq", "awq")):
        return None
    found = re.search(r"-g(\d+)", fmt_name)
    return int(found.group(1)) if found else 128


def vllm_refusal(shape: ModelShape, fmt_name: str, tp: int) -> str:
    """Why vLLM would not load these weights at this TP degree, or "".

    vllm/model_executor/layers/quantization/gptq.py and awq.py create_weights: a row-parallel
    layer's input slice must hold whole groups ("The input size is not aligned with the
    quantized weight shape. This can be caused by too large tensor parallel size.")."""
    group = group_size(fmt_name)
    if group is None or tp == 1:
        return ""
    slices = {"MLP down_proj": (shape.moe_intermediate_size if shape.is_moe
                                else shape.intermediate_size),
              "attention o_proj": shape.num_heads * shape.head_dim}
    for name, width in slices.items():
        if width and (width // tp) % group:
            return (f"vLLM refuses these {fmt_name} weights at TP {tp}: the {name} input "
                    f"slice ({width} / {tp} = {width / tp:g}) is not a whole number of "
                    f"{group}-weight groups.")
    return ""


def group_refusal_ways_out(shape: ModelShape, fmt_name: str, tp: int, pp: int) -> tuple[str, ...]:
    """What loads when `vllm_refusal` says the group layout does not split `tp` ways: pipeline
    stages instead (they split layers, not the matrices), a smaller TP that aligns, or a
    release in the catalog whose MLP its makers padded for tensor parallelism."""
    from vramest.model.catalog import default_catalog

    gpus = tp * pp
    out = [f"--pp {gpus} (with --num-gpus {gpus}): pipeline stages split the layers, not the "
           "matrices, so no slice has to hold whole groups"]
    smaller = [t for t in range(tp - 1, 1, -1) if tp % t == 0 and not vllm_refusal(shape, fmt_name, t)]
    if smaller:
        out.append(f"--num-gpus {smaller[0] * pp}: TP {smaller[0]} slices into whole groups")
    for entry in default_catalog().entries:
        other = entry.shape()
        same_model = (other.num_layers, other.hidden_size, other.num_heads, other.num_kv_heads,
                      other.vocab_size) == (shape.num_layers, shape.hidden_size, shape.num_heads,
                                            shape.num_kv_heads, shape.vocab_size)
        # padded by at most 1% (Qwen2.5-72B: 29568 → 29696), not another model of that width
        padded = shape.intermediate_size < other.intermediate_size <= 1.01 * shape.intermediate_size
        if same_model and padded and not vllm_refusal(other, fmt_name, tp):
            out.append(f"--model {entry.id}: its MLP is padded to {other.intermediate_size}, "
                       f"which TP {tp} slices into whole groups")
            break
    return tuple(out)
