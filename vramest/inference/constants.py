"""Every tunable constant of the estimator, in one place, with where it came from.

A calibration profile replaces some of them; an estimate reports which values it used and
whether each came from here or from a profile.
"""

from __future__ import annotations

from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING, fields, frozen, replace

if TYPE_CHECKING:
    from typing import Any

MAX_CONSTANT = 1e15  # far above any real constant; keeps products finite
# constants the estimate divides by: a profile may not set them to 0
DIVISORS = frozenset({"memory_efficiency_gpu", "memory_efficiency_apple", "memory_efficiency_cpu",
                      "compute_efficiency_gpu", "compute_efficiency_apple",
                      "compute_efficiency_cpu", "visible_memory_fraction",
                      "allreduce_efficiency"})


@frozen
class Constants:
    # Runtime memory outside the tensors: CUDA context, cuBLAS/cuDNN workspaces, allocator
    # reserve. nvidia-smi-style totals include a CUDA context of roughly 0.5-1.3 GB
    # (shared/reference/README.md, training caveats); 1 GiB is the documented default.
    runtime_overhead_bytes: int = 1024**3
    # Prefill transient per token, in units of the compute dtype: `ffn` × intermediate size
    # (gate, up and their product) plus `hidden` × hidden size (residual, norm output,
    # attention output, projection). First hypothesis from fake-tensor traces of Llama-shaped
    # models (issue 5: held within 16 MiB on 7B/8B/70B, sdpa, bf16, batch 1).
    activation_ffn_factor: float = 3.0
    activation_hidden_factor: float = 4.0
    # MLPs whose gate and up come out of one fused projection (MoE experts in transformers'
    # grouped implementation) keep that output live beside act(gate) and the product: 4 × ffn;
    # so does an ungated MLP whose tanh GELU is written as separate ops (GPT-2). Measured on
    # fake-tensor traces (vramest/validation/traces/, Mixtral-8x7B, DeepSeek-V2-Lite, GPT-2).
    activation_fused_ffn_factor: float = 4.0
    # BERT-family encoder blocks (post-LN, one exact-GELU op): the up projection and its GELU
    # (2 × ffn) beside 3 hidden-size rows; fake-tensor traces of bge-large-en-v1.5 and
    # bge-reranker-v2-m3 (vramest/validation/traces/): 2 × 4096 + 3 × 1024 elements per token.
    activation_encoder_ffn_factor: float = 2.0
    activation_encoder_hidden_factor: float = 3.0
    # Sliding-window layers under sdpa get an explicit boolean mask (chunk × keys, broadcast):
    # a fused kernel's causal flag cannot express a window (Mistral-7B traces).
    activation_window_mask_bytes: float = 1.0
    # Eager attention materialises the scores in the compute dtype and the softmax in fp32
    # (transformers' eager_attention_forward upcasts softmax to float32): bytes of each fp32
    # score tensor. In 16 bit the upcast copy and the softmax output are both live.
    eager_score_bytes_extra: float = 4.0
    # Roofline efficiencies: the share of datasheet bandwidth / dense FLOP/s reached, per
    # device class. GPU and Apple values are fitted to the published rows by
    # scripts/fit_published.py (median |error| 11.2% prefill, 11.9% decode, 285 rows);
    # the CPU values are typical until a calibration profile measures them.
    memory_efficiency_gpu: float = 0.78
    memory_efficiency_apple: float = 0.90
    memory_efficiency_cpu: float = 0.60
    compute_efficiency_gpu: float = 0.48
    compute_efficiency_apple: float = 0.50
    compute_efficiency_cpu: float = 0.50
    # A matmul over M token rows reaches M / (M + M0) of the large-GEMM rate (tile quantisation
    # and weight loads amortised over few rows): MoE experts at prefill see few rows each.
    gemm_half_efficiency_rows: float = 65.0
    # The memory a driver reports is below the nominal size (ECC, reserved pages): vLLM logged
    # total_gpu_memory 23.58 GiB on a 24 GB RTX 3090 and 79.22 GiB on 80 GB H100s.
    visible_memory_fraction: float = 0.985
    # vLLM's non-torch memory (cuBLAS/NCCL workspaces outside the torch allocator) and its
    # CUDA-graph pool; tensor parallelism adds NCCL buffers on every rank.
    vllm_non_torch_bytes: int = int(0.6 * 1024**3)
    # SGLang's CUDA graphs (sglang.py); vLLM's are counted per captured graph below
    vllm_cuda_graph_bytes: int = int(0.5 * 1024**3)
    # vLLM's CUDA graphs per GPU: captured graphs x (fixed + per layer x decoder layers on the
    # GPU) (engines/vllm_graphs.py), fitted to 8 logged figures of
    # validation/reference/vllm_cuda_graphs.csv (the llm-d-planner v0.19.0 H100 logs)
    vllm_graph_fixed_bytes: int = round(3.5 * 2**20)
    vllm_graph_layer_bytes: int = round(0.17 * 2**20)
    # and from 0.12 each graph of <= 256 tokens x MoE layers with shared experts on the GPU
    # (their aux CUDA stream, engines/vllm_graphs.py), fitted to the 2 such 'fit' rows there
    vllm_graph_shared_expert_layer_bytes: int = round(0.33 * 2**20)
    # vLLM's profiling forward keeps the MLP intermediates but only two hidden-size rows per
    # token (fused residual + RMSNorm run in place).
    vllm_activation_hidden_factor: float = 2.0
    nccl_buffer_bytes: int = int(1.5 * 1024**3)
    # Share of the interconnect bandwidth a ring all-reduce reaches, and its fixed latency.
    allreduce_efficiency: float = 0.7
    allreduce_latency_s: float = 10e-6
    # A ring all-reduce's measured bus bandwidth (NCCL tests' busbw); 0 = from the datasheet:
    # link / 2 × allreduce_efficiency. `vramest calibrate --nproc-per-node N` fits it.
    allreduce_bus_bytes_s: float = 0.0

    def with_values(self, values: dict[str, Any]) -> Constants:
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(f"Unknown constant(s) {', '.join(unknown)}; known: "
                             f"{', '.join(known)}.")
        cleaned: dict[str, Any] = {}
        for key, value in values.items():
            lowest = "above 0" if key in DIVISORS else "from 0"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0 <= value <= MAX_CONSTANT) or (value == 0 and key in DIVISORS):
                raise InputError(f"Constant {key} must be a number {lowest} to "
                                 f"{MAX_CONSTANT:g}, got {short(value)}.")
            cleaned[key] = int(value) if key.endswith("_bytes") else float(value)
        return replace(self, **cleaned)

    def as_dict(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULTS = Constants()

SOURCES: dict[str, str] = {
    "runtime_overhead_bytes": "CUDA context + library workspaces; 0.5-1.3 GB per "
    "shared/reference/README.md (nvidia-smi vs torch peak)",
    "activation_ffn_factor": "fake-tensor traces of Llama/Qwen/Mistral shapes "
    "(vramest/validation/traces/)",
    "activation_hidden_factor": "fake-tensor traces of Llama/Qwen/Mistral shapes "
    "(vramest/validation/traces/)",
    "eager_score_bytes_extra": "transformers eager attention: fp32 softmax of the scores",
    "activation_fused_ffn_factor": "fake-tensor traces: fused gate_up MoE experts, GPT-2 MLP "
    "(vramest/validation/traces/)",
    "activation_encoder_ffn_factor": "fake-tensor traces of BERT/XLM-R encoders "
    "(vramest/validation/traces/BAAI__bge-large-en-v1.5.json)",
    "activation_encoder_hidden_factor": "fake-tensor traces of BERT/XLM-R encoders "
    "(vramest/validation/traces/BAAI__bge-large-en-v1.5.json)",
    "activation_window_mask_bytes": "fake-tensor traces: sdpa boolean window mask (Mistral-7B)",
    "memory_efficiency_gpu": "fitted: scripts/fit_published.py on throughput.csv decode rows",
    "memory_efficiency_apple": "fitted: scripts/fit_published.py (llama.cpp Metal rows, "
    "capped at 0.90)",
    "memory_efficiency_cpu": "typical share of DDR peak bandwidth reached by GEMV (no rows)",
    "compute_efficiency_gpu": "fitted: scripts/fit_published.py on throughput.csv prefill rows",
    "compute_efficiency_apple": "typical (Apple publishes no compute figure to fit against)",
    "compute_efficiency_cpu": "typical GEMM efficiency of CPU BLAS (no rows)",
    "gemm_half_efficiency_rows": "fitted: scripts/fit_published.py (MoE vs dense prefill "
    "in llama.cpp)",
    "visible_memory_fraction": "vLLM logs: 23.58/24 GiB (RTX 3090), 79.22/80 GiB (H100)",
    "vllm_non_torch_bytes": "vLLM memory-profiling logs (memory.csv): 0.16-0.35 GiB single GPU in "
    "V0, 1.79 GiB in a Dec 2024 dev build; 0.6 GiB between them. vLLM V1 0.8.0-0.9.0 counts the "
    "CUDA context too: 0.53 GiB (opt-125m, A100, PR #18858); from 0.9.1 versions.py sets 0.13",
    "vllm_cuda_graph_bytes": "SGLang CUDA-graph capture, typically 0.3-1 GiB (no logged row); "
    "vLLM's graphs use vllm_graph_fixed_bytes and vllm_graph_layer_bytes",
    "vllm_graph_fixed_bytes": "least squares over the 'fit' rows of validation/reference/"
    "vllm_cuda_graphs.csv (vLLM 0.19.0 'CUDA graph pool memory' of 8 H100 runs, "
    "github.com/llm-d-incubation/llm-d-planner @d3121e05 accuracy/results/v0.19.0/logs): "
    "3.5 MiB per captured graph",
    "vllm_graph_layer_bytes": "the same fit: 0.17 MiB per captured graph and decoder layer (vLLM's "
    "own estimate in those logs: 6 MiB per graph for 32 layers, 20 MiB for 80)",
    "vllm_graph_shared_expert_layer_bytes": "least squares over the 'fit' rows of "
    "validation/reference/vllm_cuda_graphs.csv with shared experts (Qwen1.5-MoE-A2.7B 1.10 GiB, "
    "DeepSeek-V2-Lite-Chat 1.57 GiB, llm-d-planner @d3121e05 v0.19.0 logs) over the graphs the "
    "aux stream runs in (<= 256 tokens, vLLM PR #28406): 0.33 MiB per such graph and layer",
    "vllm_activation_hidden_factor": "vLLM logs vllm-10517-a/b: the activation peak grows "
    "102 KB per batched token for Llama-3.1-8B = (3 × 14336 + 2 × 4096) × 2 B",
    "nccl_buffer_bytes": "vLLM logs: non-torch memory 1.79 → 3.58 GiB going from TP 1 to TP 2",
    "allreduce_efficiency": "ring all-reduce bus bandwidth vs link bandwidth (NCCL tests)",
    "allreduce_latency_s": "NCCL small-message all-reduce latency within a node",
    "allreduce_bus_bytes_s": "unset (0): the datasheet link × allreduce_efficiency; a profile of "
    "`vramest calibrate --nproc-per-node N` sets it from the fitted all-reduce",
}
