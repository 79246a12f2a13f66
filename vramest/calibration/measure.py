"""Measure one grid point on real tensors: memory per phase and prefill/decode speed.

Memory: the `LiveBytesTracker` counts every live tensor's bytes (parameters and quantization
state, KV cache, transients) through the load, the prefill and the decode; on CUDA the
allocator's own peaks and NVML's device total are recorded beside it; the process RSS always.
Speed: `generate()` with `min_new_tokens = max_new_tokens` (no early EOS), timed after a
warm-up; the phase boundary is taken from a logits processor, which runs once per forward.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vramest.calibration.device import Backend, peak_rss_bytes, process_rss_bytes
from vramest.calibration.grid import QUANT_DTYPES, GridPoint, TrainPoint
from vramest.calibration.models import model_config, saved_model_dir
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
TIMED_REPEATS = 3  # at least; more while the point's timing budget lasts
TIMING_BUDGET_S = 1.5
MAX_REPEATS = 9


@dataclasses.dataclass
class LoadedModel:
    """A model loaded for a run of points that share it, with its load measurements."""

    model_key: str
    model: Any
    tracker: Any
    load: dict[str, Any]


def quantization_config(dtype: str, compute: str = "bf16") -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if dtype == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=getattr(torch, TORCH_DTYPES[compute]))


def load_model(point: GridPoint, backend: Backend, cache_dir: Path,
               tensor_parallel: bool = False) -> LoadedModel:
    """`from_pretrained` from the saved safetensors, under the tracker (the load peak). With
    `tensor_parallel`, inside a torch.distributed process group: transformers' tensor-parallel
    plan shards the model over the group's ranks (torch.distributed.tensor.parallel)."""
    import torch
    from transformers import AutoModelForCausalLM

    from vramest.tracing.tracking import PARAMS, LiveBytesTracker

    folder = saved_model_dir(point.family, point.size, cache_dir)
    kwargs: dict[str, Any] = {"attn_implementation": "sdpa"}
    if tensor_parallel:
        from transformers import DistributedConfig

        kwargs.update(distributed_config=DistributedConfig(tp_plan="auto"),
                      dtype=getattr(torch, TORCH_DTYPES[point.dtype]))
    elif point.dtype in QUANT_DTYPES:
        kwargs.update(quantization_config=quantization_config(point.dtype), dtype=torch.bfloat16,
                      device_map=backend.torch_device)
    else:
        kwargs.update(dtype=getattr(torch, TORCH_DTYPES[point.dtype]))
        if backend.kind == "cuda":
            kwargs["device_map"] = backend.torch_device
    backend.release_memory()
    backend.reset_peaks()
    rss_before = process_rss_bytes()
    tracker = LiveBytesTracker()
    started = time.perf_counter()
    with tracker:
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval()
    seconds = time.perf_counter() - started
    tracker.label(state_tensors(model), PARAMS)
    params_bytes = tracker.bytes_by_label()[PARAMS]
    load = {"peak_bytes": max(tracker.peak.bytes, params_bytes), "params_bytes": params_bytes,
            "seconds": round(seconds, 3), "rss_before": rss_before, "rss_after": process_rss_bytes(),
            "parameters": sum(p.numel() for p in model.parameters()),
            **{f"allocator_{k}": v for k, v in backend.allocator_peaks().items()}}
    return LoadedModel(point.model_key, model, tracker, load)


def state_tensors(model: Any) -> Iterator[Any]:
    """Parameters, buffers and the quantization state bitsandbytes keeps beside them (absmax,
    the nested quantization's absmax and code, LLM.int8's row scales): `get_memory_footprint`
    sums parameters only, and would miss these."""
    import torch

    yield from model.parameters()
    yield from model.buffers()
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        while state is not None:
            for value in vars(state).values():
                if isinstance(value, torch.Tensor):
                    yield value
            state = getattr(state, "state2", None)
        for name in ("SCB", "CB"):
            value = getattr(param, name, None)
            if isinstance(value, torch.Tensor):
                yield value


def cache_tensors(cache: Any) -> Iterator[Any]:
    import torch

    for layer in getattr(cache, "layers", ()):
        for value in vars(layer).values():
            if isinstance(value, torch.Tensor):
                yield value


def _input_ids(point: GridPoint, vocab: int, device: str) -> Any:
    import torch

    generator = torch.Generator().manual_seed(point.prompt * 31 + point.batch)
    return torch.randint(3, vocab, (point.batch, point.prompt), generator=generator).to(device)


class _PhaseClock:
    """A logits processor that marks each forward's end; the first one ends the prefill."""

    def __init__(self, backend: Backend, on_prefill_end: Callable[[], None] | None = None) -> None:
        self.backend = backend
        self.on_prefill_end = on_prefill_end
        self.times: list[float] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.backend.synchronize()
        self.times.append(time.perf_counter())
        if len(self.times) == 1 and self.on_prefill_end is not None:
            self.on_prefill_end()
        return scores


def _generate(model: Any, ids: Any, gen: int, clock: _PhaseClock, cache: Any) -> Any:
    from transformers import LogitsProcessorList

    return model.generate(input_ids=ids, attention_mask=ids.new_ones(ids.shape),
                          max_new_tokens=gen, min_new_tokens=gen, do_sample=False,
                          past_key_values=cache, logits_processor=LogitsProcessorList([clock]),
                          pad_token_id=0)


def measure_point(point: GridPoint, loaded: LoadedModel, backend: Backend,
                  repeats: int = TIMED_REPEATS, budget_s: float = TIMING_BUDGET_S) -> dict[str, Any]:
    """One record: the phases' memory (tracker; allocator and NVML on CUDA; RSS) and speeds."""
    import torch
    from transformers import DynamicCache

    from vramest.tracing.tracking import ACTIVATIONS, KV_CACHE, PARAMS

    model, tracker = loaded.model, loaded.tracker
    ids = _input_ids(point, model.config.vocab_size, backend.torch_device)
    phases: dict[str, dict[str, Any]] = {}

    def close_phase(name: str) -> None:
        peak = tracker.peak
        phases[name] = {"peak_bytes": peak.bytes, "params_bytes": peak.part(PARAMS),
                        "kv_cache_bytes": peak.part(KV_CACHE),
                        "activations_bytes": peak.part(ACTIVATIONS), "peak_op": peak.op,
                        "rss": process_rss_bytes(),
                        **{f"allocator_{k}": v for k, v in backend.allocator_peaks().items()}}
        tracker.reset_peak()
        backend.reset_peaks()

    # --- memory: one generate under the tracker ---------------------------------------
    backend.release_memory()
    cache: Any = DynamicCache(config=model.config)  # None once measured
    tracker.watch(KV_CACHE, lambda: cache_tensors(cache))
    clock = _PhaseClock(backend, lambda: close_phase("prefill"))
    with torch.inference_mode():
        tracker.reset_peak()
        backend.reset_peaks()
        with tracker:
            tracker.count([ids])
            out = _generate(model, ids, point.gen, clock, cache)
        close_phase("decode")
    generated = int(out.shape[1] - ids.shape[1])
    device_used = backend.device_used_bytes()
    del out
    cache = None  # the watcher now finds no tensors

    # --- speed: warm-up, then the median of timed runs without the tracker ------------
    prefill_s: list[float] = []
    decode_s: list[float] = []
    timing_started = time.perf_counter()
    with torch.inference_mode():
        for run in range(MAX_REPEATS + 1):
            if run > repeats and time.perf_counter() - timing_started > budget_s:
                break
            clock = _PhaseClock(backend)
            backend.synchronize()
            started = time.perf_counter()
            _generate(model, ids, point.gen, clock, DynamicCache(config=model.config))
            if run == 0:
                continue  # warm-up
            prefill_s.append(clock.times[0] - started)
            decode_s.append((clock.times[-1] - clock.times[0]) / max(1, len(clock.times) - 1))
    backend.release_memory()
    prefill_median, decode_median = statistics.median(prefill_s), statistics.median(decode_s)
    return {
        "status": "ok", "point": point.to_json(), "key": point.key,
        "parameters": loaded.load["parameters"], "generated_tokens": generated,
        "memory": {"load": loaded.load, **phases, "device_used_after": device_used,
                   "peak_rss": peak_rss_bytes()},
        "speed": {"prefill_tokens_per_s": point.batch * point.prompt / prefill_median,
                  "decode_tokens_per_s": 1.0 / decode_median,
                  "prefill_seconds": prefill_s, "decode_step_seconds": decode_s,
                  "threads": torch.get_num_threads(), "repeats": len(prefill_s),
                  # other processes competing for the cores make timings slow: the load average
                  # is recorded so such points can be recognised
                  "load_average_1m": _load_average()},
        "config": model_config(point.family, point.size),
    }


def _load_average() -> float | None:
    try:
        import os

        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def quant_support(backend: Backend, cache_dir: Path) -> dict[str, str]:
    """Which bitsandbytes formats load and generate on this device: format → "ok" or why not.
    Tried on the smallest Llama, never assumed."""
    results: dict[str, str] = {}
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return {dtype: "bitsandbytes is not installed" for dtype in QUANT_DTYPES}
    for dtype in QUANT_DTYPES:
        point = GridPoint("llama", "xs", dtype, 8, 1, 2)
        try:
            loaded = load_model(point, backend, cache_dir)
            measure_point(point, loaded, backend, repeats=1, budget_s=0.0)
            results[dtype] = "ok"
        except Exception as exc:  # any failure means: not on this device
            results[dtype] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        backend.release_memory()
    return results


# --- training ----------------------------------------------------------------------------------
def measure_train_point(point: TrainPoint, repeats: int = TIMED_REPEATS) -> dict[str, Any]:
    """One training step of a small model on real tensors: the steady-state (second) step's
    peak of live tensor bytes and its parts (vramest.tracing.training), then `repeats` more steps
    timed without the tracker; their median gives tokens/s."""
    import torch

    from vramest.tracing.training import trace_train_config

    config = model_config(point.family, point.size)
    run = trace_train_config(config, dtype=point.dtype, seq=point.seq,
                             micro_batch=point.micro_batch, grad_checkpointing=point.checkpointing,
                             fake=False, method=point.method, timed_steps=max(1, repeats))
    step = statistics.median(run.step_seconds)
    memory = run.to_json()
    for key in ("seconds", "step_seconds", "fake", "method"):
        memory.pop(key)
    return {
        "status": "ok", "point": point.to_json(), "key": point.key,
        "trainable_parameters": run.trainable_params, "memory": memory,
        "speed": {"tokens_per_s": point.seq * point.micro_batch / step,
                  "step_seconds": [round(t, 5) for t in run.step_seconds],
                  "threads": torch.get_num_threads(), "repeats": len(run.step_seconds),
                  "load_average_1m": _load_average()},
        "config": config,
    }


def qlora_support() -> str:
    """Whether a QLoRA step (bitsandbytes NF4 base, PEFT adapters) trains on this device: "ok"
    or why not. Tried on a tiny Llama, never assumed."""
    try:
        import bitsandbytes  # noqa: F401
        import peft  # noqa: F401
    except ImportError as exc:
        return f"not installed: {exc.name}"
    try:
        measure_train_point(TrainPoint("llama", "xs", "bf16", "qlora", 16, 1, False), repeats=1)
    except Exception as exc:  # any failure means: not on this device
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    return "ok"
