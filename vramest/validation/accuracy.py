"""Score the estimator against published measurements (vramest/validation/reference/*.csv).

Each reference row names its source; this module maps the rows the tool can express to an
estimate and reports predicted vs measured. `make accuracy` prints the table; the tests hold
the median errors. Run: python -m vramest.validation.accuracy [REFERENCE_DIR]
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

from vramest.api import estimate
from vramest.frozen import frozen
from vramest.hardware.database import Device
from vramest.inference.constants import DEFAULTS, Constants
from vramest.inference.engines.speed import Engine
from vramest.inference.throughput import Workload
from vramest.units import GIB, MIB
from vramest.validation import REFERENCE_DIR, read_rows

DEFAULT_REFERENCE_DIR = REFERENCE_DIR

# Reference rows name models in prose; these are the catalog models they mean.
MODEL_NAMES: tuple[tuple[str, str], ...] = (
    ("Meta-Llama-3.1-405B", "meta-llama/Llama-3.1-405B"),
    ("Meta-Llama-3.1-70B", "meta-llama/Llama-3.1-70B"),
    ("Meta-Llama-3.1-8B", "meta-llama/Llama-3.1-8B"),
    ("Llama-3.1-70B", "meta-llama/Llama-3.1-70B"),
    ("Llama-3.1-8B", "meta-llama/Llama-3.1-8B"),
    ("Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B"),
    ("Llama-3.2-11B-Vision", "meta-llama/Llama-3.2-11B-Vision"),
    ("pythia-1.4B", "EleutherAI/pythia-1.4b"),
    ("pythia-2.8B", "EleutherAI/pythia-2.8b"),
    ("open_llama_7b_v2", "openlm-research/open_llama_7b_v2"),
    ("octocoder", "bigcode/starcoder"),  # octocoder is a StarCoder fine-tune, same shape
    ("Llama-2-13b", "meta-llama/Llama-2-13b-hf"),
    ("Llama-2-7B", "meta-llama/Llama-2-7b-hf"),
    ("Llama-2-70b", "meta-llama/Llama-2-70b-hf"),
    ("Llama-2-7b", "meta-llama/Llama-2-7b-hf"),
    ("Mixtral-8x7B", "mistralai/Mixtral-8x7B-v0.1"),
    ("zephyr-7B", "HuggingFaceH4/zephyr-7b-beta"),
    ("OpenHermes-2.5-Mistral-7B", "teknium/OpenHermes-2.5-Mistral-7B"),
    ("opt-125m", "facebook/opt-125m"),
    ("phi-2", "microsoft/phi-2"),
    ("GPT-J 6B", "EleutherAI/gpt-j-6b"),
    ("Falcon-180B", "tiiuae/falcon-180B"),
    ("bloom-1b7", "bigscience/bloom-1b7"),
    ("bloom-560m", "bigscience/bloom-560m"),
    ("BLOOM-176B", "bigscience/bloom"),
    ("Qwen2.5-Coder-7B", "Qwen/Qwen2.5-Coder-7B"),
    ("Qwen3-Coder-30B-A3B", "Qwen/Qwen3-Coder-30B-A3B-Instruct"),
    ("gemma-3-4b", "google/gemma-3-4b-it"),
    ("gpt-oss-120b", "openai/gpt-oss-120b"),
    ("gpt-oss-20b", "openai/gpt-oss-20b"),
    ("codellama-7b", "codellama/CodeLlama-7b-hf"),
    ("LLaMA 7B", "meta-llama/Llama-2-7b-hf"),
    ("llama 7B", "meta-llama/Llama-2-7b-hf"),
)


def catalog_model(text: str) -> str | None:
    for needle, model_id in MODEL_NAMES:
        if needle.lower() in text.lower():
            return model_id
    return None


@frozen
class Comparison:
    source: str  # a short name for the source group
    record_id: str
    quantity: str  # what is compared: weights, kv_cache, peak, decode_tps, ...
    predicted: float
    measured: float
    unit: str
    note: str = ""

    @property
    def error(self) -> float:
        """Signed relative error of the prediction."""
        return self.predicted / self.measured - 1


def _records(rows: Iterable[dict[str, str]]) -> dict[str, dict[str, dict[str, str]]]:
    grouped: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for row in rows:
        grouped[row["record_id"]][row["metric"]] = row
    return grouped


def _to_bytes(row: dict[str, str]) -> float:
    value, unit = float(row["value"]), row["unit"].strip()
    if unit.startswith("MiB"):
        return value * MIB
    if unit.startswith("MB"):
        return value * 10**6
    # vLLM and HF's helpers print GiB even where they label it GB (reference README)
    if unit.startswith(("GiB", "GB (vLLM", "GB (GiB")):
        return value * GIB
    if unit.startswith("GB"):
        return value * 10**9
    raise ValueError(f"unexpected unit {unit!r}")


# --- memory ----------------------------------------------------------------------------------
_GGUF_TYPES = ("q2_k", "q3_k_m", "q4_0", "q4_1", "q4_k_m", "q5_k_m", "q6_k", "q8_0")


def llamacpp_memory(rows: list[dict[str, str]]) -> list[Comparison]:
    """llama.cpp start-up logs: model buffers (= weights) and the KV cache, to the MiB."""
    out = []
    for rid, rec in _records(r for r in rows if r["framework"] == "llama.cpp").items():
        first = next(iter(rec.values()))
        model = catalog_model(first["model"])
        quant = first["weight_dtype_or_quant"].split()[0].lower()
        if model is None or "model_buffer_gpu" not in rec:
            continue
        dtype = "gguf-f16" if quant == "f16" else quant
        if dtype not in _GGUF_TYPES and dtype != "gguf-f16":
            continue
        est = estimate(model=model, dtype=dtype, ctx=int(first["context_len"]),
                       kv_dtype=first["kv_cache_dtype"] or "fp16")
        metal = "Metal" in rec["model_buffer_gpu"]["unit"]
        weights = _to_bytes(rec["model_buffer_gpu"])
        # On Metal the host buffer maps the same file again; elsewhere it holds the embeddings.
        if not metal and "model_buffer_cpu" in rec:
            weights += _to_bytes(rec["model_buffer_cpu"])
        out.append(Comparison("llama.cpp logs", rid, "weights", est.memory.weights.bytes,
                              weights, "bytes"))
        if "kv_cache_size" in rec:
            out.append(Comparison("llama.cpp logs", rid, "kv_cache", est.memory.kv_cache.bytes,
                                  _to_bytes(rec["kv_cache_size"]), "bytes"))
    return out


def hf_blog_memory(rows: list[dict[str, str]]) -> list[Comparison]:
    """The Llama 3.1 blog's calculated table (a cross-check of formulas, not a measurement)."""
    out = []
    for row in rows:
        if row["framework"] != "HF blog table":
            continue
        model = catalog_model(row["model"])
        if model is None:
            continue
        if row["metric"] == "weights_required":
            dtype = row["weight_dtype_or_quant"].lower()
            est = estimate(model=model, dtype=dtype, ctx=1)
            note = ("blog counts every parameter at the nominal width; vramest keeps embeddings "
                    "and lm_head in 16 bit and counts scales") if dtype != "fp16" else ""
            out.append(Comparison("HF Llama 3.1 blog (calculated)", row["record_id"],
                                  f"weights_{dtype}", est.memory.weights.bytes,
                                  float(row["value"]) * 10**9, "bytes", note))
        elif row["metric"] == "kv_cache_size":
            est = estimate(model=model, dtype="fp16", ctx=int(row["context_len"]))
            note = ("blog's 405B figures use 16 KV heads; the config has 8"
                    if "405B" in row["model"] else "")
            out.append(Comparison("HF Llama 3.1 blog (calculated)", row["record_id"], "kv_cache",
                                  est.memory.kv_cache.bytes, float(row["value"]) * GIB, "bytes",
                                  note))
    return out


def transformers_peaks(rows: list[dict[str, str]]) -> list[Comparison]:
    """torch peak allocated in transformers runs with a stated prompt (no CUDA context)."""
    out = []
    dtypes = {"bf16": "bf16", "bitsandbytes llm.int8": "int8", "bitsandbytes 4-bit": "nf4"}
    for row in rows:
        if row["metric"] != "peak_memory_allocated" or "longprompt" in row["record_id"]:
            continue
        model = catalog_model(row["model"])
        dtype = next((v for k, v in dtypes.items()
                      if row["weight_dtype_or_quant"].lower().startswith(k)), None)
        if model is None or dtype is None:
            continue
        # short prompt (~20 tokens) + 60 new tokens; torch-allocated excludes the CUDA context
        est = estimate(model=model, dtype=dtype, ctx=80, prefill_chunk=20)
        predicted = est.memory.total - est.memory.overhead.bytes
        out.append(Comparison("transformers peak allocated", row["record_id"], "peak",
                              predicted, _to_bytes(row), "bytes"))
    return out


def vllm_weights(rows: list[dict[str, str]]) -> list[Comparison]:
    """'Loading model weights took X GiB' / 'Model loading took X GiB' (whole model, TP=1)."""
    out = []
    formats = {"bf16": "bf16", "fp16": "fp16", "int8 w8a8": "int8"}
    for row in rows:
        if row["framework"] != "vLLM" or row["metric"] != "weights_loaded":
            continue
        if row["tensor_parallel"] not in ("", "1"):
            continue
        model = catalog_model(row["model"])
        fmt = next((v for k, v in formats.items()
                    if row["weight_dtype_or_quant"].lower().startswith(k)), None)
        if model is None or fmt is None:
            continue
        est = estimate(model=model, dtype=fmt, ctx=1)
        out.append(Comparison("vLLM weight logs", row["record_id"], "weights",
                              est.memory.weights.bytes, _to_bytes(row), "bytes"))
    return out


def memory_comparisons(reference_dir: Path = DEFAULT_REFERENCE_DIR) -> list[Comparison]:
    rows = read_rows(reference_dir / "memory.csv")
    return [*llamacpp_memory(rows), *vllm_weights(rows), *transformers_peaks(rows),
            *hf_blog_memory(rows)]


# --- engines: what vLLM and llama.cpp print at start-up ------------------------------------
def _vllm_total(row: dict[str, str]) -> int | None:
    """total_gpu_memory as the run's own log stated it, when the row records it."""
    text = row["gpu"]
    for key in ("total_gpu_memory=", "total_gpu_memory "):
        if key in text:
            number = text.split(key)[1].split("GiB")[0].strip()
            try:
                return int(float(number) * GIB)
            except ValueError:
                return None
    return None


def _vllm_release(row: dict[str, str]) -> str:
    """The release a log row comes from: its stated version, else the month it was posted."""
    import re

    text = row["framework_version"]
    stated = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
    if stated:
        return stated.group(1)
    if "Dec 2024" in text or "2024-12" in row["source"]:
        return "0.6.4"  # vLLM 0.6.4 (Nov 2024) was the release of December 2024
    return "0.21.0" if "V1" in row["notes"] else "0.6.4"


def vllm_engine_rows(rows: list[dict[str, str]]) -> list[Comparison]:
    """vLLM start-up logs: KV cache size, blocks, tokens and maximum concurrency."""
    from vramest.hardware.database import default_hardware
    from vramest.inference.engines.startup import VLLMOptions, vllm_startup

    out = []
    for rid, rec in _records(r for r in rows if r["framework"] == "vLLM").items():
        first = next(iter(rec.values()))
        model = catalog_model(first["model"])
        gpu = _first((*_GPU_OF, ("RTX 3090", "rtx 3090"), ("RTX A6000", "rtx a6000"),
                      ("H100 80GB", "h100"), ("80GB-class", "h100")), first["gpu"])
        util = first["gpu_memory_utilization"]
        dtype = _first((("bf16", "bf16"), ("fp16", "fp16"), ("gptq", "gptq-int4"),
                        ("awq", "awq-int4"), ("int8 w8a8", "int8")),
                       first["weight_dtype_or_quant"])
        if None in (model, gpu, dtype) or not util or "Vision" in first["model"]:
            continue
        tp = int(first["tensor_parallel"] or 1)
        version = _vllm_release(first)
        options = VLLMOptions(gpu_memory_utilization=float(util),
                              max_model_len=int(first["context_len"]) if first["context_len"]
                              else None, version=version, total_memory_bytes=_vllm_total(first))
        est = estimate(model=model, dtype=dtype)
        report = vllm_startup(est, default_hardware().find(gpu), tp, options)  # type: ignore[arg-type]
        figures = {"kv_cache_size": (report.kv_cache_bytes, _to_bytes),
                   "gpu_kv_blocks": (report.num_gpu_blocks, lambda r: float(r["value"])),
                   "kv_cache_tokens": (report.kv_cache_tokens, lambda r: float(r["value"])),
                   "max_concurrency": (report.max_concurrency, lambda r: float(r["value"]))}
        for metric, (predicted, measure) in figures.items():
            if metric in rec:
                out.append(Comparison("vLLM start-up logs", rid, metric, float(predicted),
                                      measure(rec[metric]), rec[metric]["unit"].split(" ")[0]))
    return out


def llamacpp_engine_rows(rows: list[dict[str, str]]) -> list[Comparison]:
    """llama.cpp start-up logs: compute and output buffers (model buffers and KV are scored
    in llamacpp_memory)."""
    from vramest.inference.engines.startup import LlamaCppOptions, llamacpp_startup

    out = []
    for rid, rec in _records(r for r in rows if r["framework"] == "llama.cpp").items():
        first = next(iter(rec.values()))
        model = catalog_model(first["model"])
        quant = first["weight_dtype_or_quant"].split()[0].lower()
        if model is None:
            continue
        text = first["notes"]
        ctx = int(first["context_len"])
        ubatch = 128 if "n_ubatch 128" in text or "-b 128" in text else 512
        outputs = 512 if ("perplexity" in text and "llama-perplexity" not in text) or \
            "main " in text else 1
        est = estimate(model=model, dtype="gguf-f16" if quant == "f16" else quant, ctx=ctx)
        build = first["framework_version"].removeprefix("build ").split(" ")[0]
        report = llamacpp_startup(est, LlamaCppOptions(n_ctx=ctx, n_ubatch=min(ubatch, ctx),
                                                       n_outputs=outputs, version=f"b{build}"))
        figures = {"compute_buffer_gpu": report.compute_buffer_gpu_bytes,
                   "compute_buffer_cpu": report.compute_buffer_host_bytes,
                   "output_buffer_host": report.output_buffer_host_bytes}
        for metric, predicted in figures.items():
            if metric in rec:
                out.append(Comparison("llama.cpp start-up logs", rid, metric, float(predicted),
                                      _to_bytes(rec[metric]), "bytes"))
    return out


def hf_engine_rows(rows: list[dict[str, str]]) -> list[Comparison]:
    """optimum's GPTQ benchmark on an A100 (device memory, CUDA context included): prefill-only
    runs against the prefill peak, generation runs against generate()'s peak."""
    from vramest.inference.engines.startup import hf_startup

    out = []
    for row in rows:
        if not row["record_id"].startswith("optimum-gptq") or row["metric"] != "peak_memory":
            continue
        if "cuda-old" in row["record_id"]:  # a legacy kernel with its own buffers
            continue
        generation = "-gen-" in row["record_id"]
        dtype = "gptq-int4" if "GPTQ" in row["weight_dtype_or_quant"] else "fp16"
        # prompt 512, then 512 new tokens (generation) or 1 (prefill-only)
        est = estimate(model="meta-llama/Llama-2-13b-hf", dtype=dtype,
                       ctx=1024 if generation else 513, prefill_chunk=512,
                       batch=int(row["batch_or_max_seqs"]))
        report = hf_startup(est)
        predicted = report.generate_peak_bytes if generation else report.prefill_peak_bytes
        out.append(Comparison("transformers generate (optimum GPTQ benchmark)", row["record_id"],
                              "peak_memory", float(predicted), _to_bytes(row), "bytes"))
    return out


# --- throughput ------------------------------------------------------------------------------
# Which engine each source's framework is, and the GPU names the rows use.
_ENGINE_OF = (("TensorRT-LLM", "trtllm"), ("llama.cpp", "llamacpp"), ("HF transformers", "hf"))
_GPU_OF = (("H100 SXM", "h100"), ("L40S", "l40s"), ("A100-SXM4-80GB", "a100 sxm4 80gb"),
           ("A100 80GB", "a100 sxm4 80gb"), ("A100 40GB", "a100 sxm4 40gb"),
           ("A100 (80GB", "a100 sxm4 80gb"), ("NVIDIA A100", "a100 sxm4 80gb"),
           ("DGX Spark", "gb10"), ("V100-PCIE-16GB", "v100 pcie 16gb"),
           ("RTX 4090", "rtx 4090"), ("RTX 3090 Ti", "rtx 3090 ti"), ("M2 Ultra", "m2 ultra"),
           ("M4 10-core", "m4"))
_QUANT_OF = (("fp8", "fp8"), ("fp16", "fp16"), ("f16", "gguf-f16"), ("bf16", "bf16"),
             ("gptq 4-bit", "gptq-int4"), ("bitsandbytes 4-bit", "nf4"), ("int8 (llm.int8", "int8"),
             ("mxfp4", "mxfp4_moe"), ("q8_0", "q8_0"), ("q6_k", "q6_k"), ("q5_k_m", "q5_k_m"),
             ("q4_k_m", "q4_k_m"), ("q4_0", "q4_0"), ("q4_1", "q4_1"), ("q3_k_m", "q3_k_m"),
             ("q2_k", "q2_k"))


def _first(table: tuple[tuple[str, str], ...], text: str) -> str | None:
    return next((v for k, v in table if k.lower() in text.lower()), None)


@frozen
class SpeedCase:
    """A reference row restated as vramest inputs, or the reason it cannot be."""

    model: str
    dtype: str
    gpu: str
    engine: str
    tp: int
    pp: int
    batch: int
    prompt: int
    gen: int
    depth: int
    chunk: int | None
    kv_dtype: str | None = None


def speed_case(row: dict[str, str]) -> SpeedCase | str:
    """Restate a throughput row, or say why it cannot be expressed."""
    text = " ".join((row["model"], row["notes"], row["config"]))
    if "encoder-decoder" in row["model"]:
        return "encoder-decoder model (T5): vramest models decoder-only transformers"
    if "nkvo 1" in text or "KV cache kept in CPU" in text:
        return "KV cache kept in host RAM (--no-kv-offload): not modelled"
    if "autogptq-cuda-old" in row["weight_dtype_or_quant"]:
        return "AutoGPTQ's legacy cuda-old kernel: vramest models the exllama kernel speed"
    if row["metric"] == "output_throughput" and row["gpu"].startswith("NVIDIA A100") and \
            row["config"] not in ("", "TP1"):
        return ("A100 table column 'out tok/s' at TP>1: per GPU or total is not stated "
                "(the reference README asks to check); not scored")
    model = catalog_model(row["model"])
    engine = _first(_ENGINE_OF, row["framework"])
    gpu = _first(_GPU_OF, row["gpu"])
    dtype = _first(_QUANT_OF, row["weight_dtype_or_quant"])
    if None in (model, engine, gpu, dtype):
        return f"unmapped (model {model}, engine {engine}, gpu {gpu}, dtype {dtype})"
    num_gpus = int(row["num_gpus"] or 1)
    # accelerate's device_map="auto" places consecutive layers on each GPU: a pipeline
    tp, pp = (1, num_gpus) if engine == "hf" else (num_gpus, 1)
    depth = 0
    if "depth(d)=" in row["config"]:
        depth = int(row["config"].split("depth(d)=")[1].split(";")[0])
    prompt = int(row["input_len"] or 0)
    gen = int(row["output_len"] or 0)
    chunk: int | None = None
    if engine == "llamacpp":
        chunk = 2048 if "n_ubatch 2048" in text else 512
        if "llama-cli" in text or "main " in text or "main\"" in text or "sampling" in text:
            engine = "llamacpp-cli"
        if "tg" in row["record_id"].split("-")[-1] and depth:
            prompt, depth = 0, depth  # tgN at depth d: decode after d cached tokens
    if engine == "hf" and prompt == 0:
        prompt = 1
    kv = "fp8" if "fp8 kv" in row["weight_dtype_or_quant"].lower() else None
    return SpeedCase(model, dtype, gpu, engine, tp, pp, int(row["batch_size"] or 1),  # type: ignore[arg-type]
                     max(prompt, 1), max(gen, 1), depth, chunk, kv)


@lru_cache(maxsize=1024)
def speed_workload(case: SpeedCase) -> tuple[Workload, Device]:
    """The work a case asks for (independent of the constants, so fits can re-time it)."""
    from vramest.hardware.database import default_hardware
    from vramest.inference.throughput import workload
    from vramest.model.precisions import kv_format, weight_format

    est = estimate(model=case.model, dtype=case.dtype, ctx=case.depth + case.prompt + case.gen,
                   batch=case.batch, kv_dtype=case.kv_dtype)
    device = default_hardware().find(case.gpu)
    load = workload(est.model.shape, weight_format(est.settings.dtype),
                    kv_format(est.settings.kv_dtype), device, batch=case.batch,
                    prompt_tokens=case.prompt, gen_tokens=case.gen, tp=case.tp, pp=case.pp,
                    prefill_chunk=case.chunk, context_depth=case.depth)
    return load, device


def predict_speed(case: SpeedCase, metric: str, constants: Constants = DEFAULTS,
                  engines: dict[str, Engine] | None = None) -> float | None:
    """The prediction in the row's own metric and unit."""
    from vramest.inference.engines.speed import ENGINES
    from vramest.inference.throughput import time_workload

    load, device = speed_workload(case)
    speed = time_workload(load, device, constants, (engines or ENGINES)[case.engine])
    prefill_s = speed.prefill.seconds
    step_s = speed.decode.seconds
    if metric in ("prefill_tps", "prefill_tps_aggregate"):
        return speed.prefill_tokens_per_s
    if metric == "decode_tps":
        return speed.decode_tokens_per_s
    if metric == "decode_tps_aggregate":
        return speed.decode_tokens_per_s_total
    if metric == "per_token_latency":
        # transformers benchmarks: ms per decode step; BLOOM's blog: per step / batch
        return step_s * 1000 / (case.batch if case.pp > 1 else 1)
    if metric in ("prefill_latency", "ttft"):
        return None if speed.prefill.compute_s is None else prefill_s * 1000
    if metric in ("output_throughput", "output_throughput_per_gpu"):
        if speed.prefill.compute_s is None:
            return None
        total = prefill_s + case.gen * step_s
        per_gpu = case.tp * case.pp if metric.endswith("per_gpu") else 1
        return case.batch * case.gen / total / per_gpu
    return None


@frozen
class SpeedRow:
    case: SpeedCase
    metric: str
    measured: float
    source: str
    record_id: str
    unit: str


def speed_rows(reference_dir: Path = DEFAULT_REFERENCE_DIR
               ) -> tuple[list[SpeedRow], list[tuple[str, str]]]:
    """Every throughput row vramest can express, and the others with the reason."""
    rows: list[SpeedRow] = []
    skipped: list[tuple[str, str]] = []
    for row in read_rows(reference_dir / "throughput.csv"):
        if row["metric"] not in SPEED_METRICS:
            skipped.append((row["record_id"], f"metric {row['metric']} restates another row"))
            continue
        case = speed_case(row)
        if isinstance(case, str):
            skipped.append((row["record_id"], case))
            continue
        if predict_speed(case, row["metric"]) is None:
            skipped.append((row["record_id"], f"{case.gpu} publishes no compute figure"))
            continue
        source = f"{row['framework'].split(' (')[0].split(' + ')[0]} on {case.gpu}"
        rows.append(SpeedRow(case, row["metric"], float(row["value"]), source,
                             row["record_id"], row["unit"].split(" ")[0]))
    return rows, skipped


def speed_comparisons(reference_dir: Path = DEFAULT_REFERENCE_DIR, constants: Constants = DEFAULTS,
                      engines: dict[str, Engine] | None = None
                      ) -> tuple[list[Comparison], list[tuple[str, str]]]:
    """Predicted vs measured for every throughput row vramest can express, and the others."""
    rows, skipped = speed_rows(reference_dir)
    out = [Comparison(r.source, r.record_id, f"{_PHASE_OF[r.metric]}:{r.metric}",
                      predict_speed(r.case, r.metric, constants, engines) or 0.0, r.measured,
                      r.unit) for r in rows]
    return out, skipped


SPEED_METRICS = ("prefill_tps", "prefill_tps_aggregate", "decode_tps", "decode_tps_aggregate",
                 "per_token_latency", "prefill_latency", "ttft", "output_throughput",
                 "output_throughput_per_gpu")
_PHASE_OF = {"prefill_tps": "prefill", "prefill_tps_aggregate": "prefill", "prefill_latency":
             "prefill", "ttft": "prefill", "decode_tps": "decode", "decode_tps_aggregate":
             "decode", "per_token_latency": "decode", "output_throughput": "decode",
             "output_throughput_per_gpu": "decode"}


# --- report ----------------------------------------------------------------------------------
def median_abs_error(comparisons: Iterable[Comparison]) -> float:
    errors = [abs(c.error) for c in comparisons]
    return statistics.median(errors) if errors else float("nan")


def format_table(comparisons: list[Comparison], scale: Callable[[float], str]) -> list[str]:
    lines = []
    by_source: dict[str, list[Comparison]] = defaultdict(list)
    for c in comparisons:
        by_source[c.source].append(c)
    for source, items in by_source.items():
        lines.append(f"\n== {source}")
        lines.append(f"  {'record':44} {'quantity':14} {'predicted':>12} {'measured':>12} {'error':>8}")
        for c in items:
            lines.append(f"  {c.record_id[:44]:44} {c.quantity[:14]:14} {scale(c.predicted):>12} "
                         f"{scale(c.measured):>12} {c.error:+8.1%}" + (f"  ({c.note})" if c.note else ""))
        errors = [abs(c.error) for c in items]
        lines.append(f"  median |error| {statistics.median(errors):.1%}   worst {max(errors):.1%}"
                     f"   rows {len(items)}")
    return lines


def _gib(x: float) -> str:
    return f"{x / GIB:.3f} GiB"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    reference = Path(args[0]) if args else DEFAULT_REFERENCE_DIR
    memory = memory_comparisons(reference)
    print("vramest accuracy against published measurements")
    print("\n".join(format_table(memory, _gib)))
    by_quantity: dict[str, list[Comparison]] = defaultdict(list)
    for c in memory:
        if "calculated" not in c.source:
            by_quantity[c.quantity].append(c)
    print("\nMeasured rows only, median |error| by quantity:")
    for quantity, items in by_quantity.items():
        print(f"  {quantity:12} {median_abs_error(items):6.2%}  ({len(items)} rows)")
    memory_rows = read_rows(reference / "memory.csv")
    engines = [*vllm_engine_rows(memory_rows), *llamacpp_engine_rows(memory_rows),
               *hf_engine_rows(memory_rows)]
    print("\n#### Engines: start-up figures vs their logs (memory.csv)")
    print("\n".join(format_table(engines, lambda x: f"{x:,.2f}")))
    speed, skipped = speed_comparisons(reference)
    print("\n#### Speed (throughput.csv)")
    print("\n".join(format_table(speed, lambda x: f"{x:,.1f}")))
    for phase in ("prefill", "decode"):
        items = [c for c in speed if c.quantity.startswith(phase)]
        print(f"  {phase}: median |error| {median_abs_error(items):.1%} over {len(items)} rows")
    reasons: dict[str, int] = defaultdict(int)
    for _, reason in skipped:
        reasons[reason] += 1
    print("  rows not scored:")
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"    {count:3} × {reason}")
    for name, report in extra_sections():
        print(f"\n#### {name}")
        print("\n".join(report(reference)))
    return 0


def extra_sections() -> list[tuple[str, Callable[[Path], list[str]]]]:
    """Reports of the other checked parts; the trace and calibration ones read stored data
    (vramest/validation/traces, vramest/validation/profiles), so none of them needs torch."""
    from vramest.calibration.profile import calibration_accuracy_report
    from vramest.tracing.inference import TRACE_DIR, trace_accuracy_report
    from vramest.validation.architectures import architecture_accuracy_report
    from vramest.validation.real_cases import report_lines as real_cases_report
    from vramest.validation.serving_architectures import serving_architecture_report
    from vramest.validation.training import training_accuracy_report

    return [("Training memory (training.csv)", training_accuracy_report),
            ("Real deployments from public threads (validation/reference/real_cases.jsonl)",
             lambda _reference: real_cases_report()),
            ("Encoders and recurrent models vs published figures (architectures.csv)",
             architecture_accuracy_report),
            ("Embedding servers and sparse attention vs engine logs "
             "(serving_architectures.csv)", serving_architecture_report),
            ("Analytic activations vs fake-tensor traces (vramest/validation/traces)",
             lambda _reference: trace_accuracy_report(TRACE_DIR)),
            ("Calibration profiles: held-out error before and after the fit",
             calibration_accuracy_report),
            ("Serving under load (validation/reference/serving_*.csv)", _serving_report),
            ("LoRA slots and speculative decoding (serving_extras.csv)", _extras_report)]


def _extras_report(reference: Path) -> list[str]:
    from vramest.validation.serving_extras import report_lines

    return report_lines(reference)


def _serving_report(reference: Path) -> list[str]:
    from vramest.serving.reference import serving_accuracy_report

    return serving_accuracy_report(reference)


if __name__ == "__main__":
    sys.exit(main())
