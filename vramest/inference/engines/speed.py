"""Serving engines: the fixed costs and efficiency each adds on top of the hardware roofline.

Few constants per engine, each with its source; calibration profiles can replace them.
"""

from __future__ import annotations

from vramest.errors import InputError, short
from vramest.frozen import frozen


@frozen
class Engine:
    name: str
    description: str
    step_overhead_s: float  # per forward: scheduling, sampling, host sync
    layer_overhead_s: float  # per layer per forward: kernel launches not hidden by CUDA graphs
    memory_efficiency_scale: float = 1.0
    compute_efficiency_scale: float = 1.0
    # fp16 GEMMs accumulate in fp16 (cuBLAS COMPUTE_16F): GeForce cards run that at twice the
    # fp32-accumulate rate their datasheets list (Ampere/Ada GA102/AD102 whitepapers).
    fp16_accumulate: bool = False
    source: str = ""


_FITTED = "fitted by scripts/fit_published.py to vramest/validation/reference/throughput.csv"
ENGINES: dict[str, Engine] = {
    "generic": Engine(
        "generic", "a serving engine with CUDA graphs (TensorRT-LLM / vLLM class)", 0.00055, 0.0,
        source="assumed equal to TensorRT-LLM's fitted step cost"),
    "vllm": Engine(
        "vllm", "vLLM with CUDA graphs", 0.00055, 0.0,
        source="assumed equal to TensorRT-LLM's fitted step cost (no vLLM speed rows)"),
    "trtllm": Engine("trtllm", "TensorRT-LLM", 0.00055, 0.0, source=_FITTED),
    "llamacpp": Engine(
        "llamacpp", "llama.cpp llama-bench / server (ggml kernels)", 0.00040, 0.000027,
        fp16_accumulate=True, source=_FITTED),
    "llamacpp-cli": Engine(
        "llamacpp-cli", "llama.cpp's llama-cli / main: one token at a time with CPU sampling",
        0.0030, 0.000027, fp16_accumulate=True, source=_FITTED),
    "hf": Engine(
        "hf", "transformers generate(): eager PyTorch, one kernel launch per op", 0.0037,
        0.00050, source=_FITTED),
    # start-up accounting in vramest/inference/engines/ollama.py, sglang.py (registry.py)
    "ollama": Engine(
        "ollama", "Ollama: llama.cpp underneath", 0.00040, 0.000027, fp16_accumulate=True,
        source="assumed equal to llama.cpp server's fitted costs (" + _FITTED + ")"),
    "sglang": Engine(
        "sglang", "SGLang with CUDA graphs", 0.00055, 0.0,
        source="assumed equal to TensorRT-LLM's fitted step cost (no SGLang speed rows)"),
    "tgi": Engine(
        "tgi", "Text Generation Inference with CUDA graphs", 0.00055, 0.0,
        source="assumed equal to TensorRT-LLM's fitted step cost (no TGI speed rows)"),
    "exllamav2": Engine(
        "exllamav2", "ExLlamaV2 dynamic generator", 0.00055, 0.0,
        source="assumed equal to TensorRT-LLM's fitted step cost (no ExLlamaV2 speed rows)"),
}


def engine(name: str) -> Engine:
    try:
        return ENGINES[name.lower()]
    except KeyError:
        raise InputError(f"Unknown engine {short(name)}; accepted: {', '.join(ENGINES)}.") from None
