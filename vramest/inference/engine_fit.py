"""The engine's view of one placement: its start-up report, the fit as it uses the GPU,
the speed on a device, and what to change when it does not fit (deploy.py and mixed.py
both place through it)."""

from __future__ import annotations

from vramest.frozen import TYPE_CHECKING, field_names, replace
from vramest.hardware.database import Device
from vramest.inference.engines.speed import Engine
from vramest.inference.estimate import Estimate
from vramest.inference.placement import FitPlan, PerGPU, Reserve
from vramest.inference.throughput import Throughput, estimate_throughput
from vramest.inference.verdict import BANDS
from vramest.model.precisions import kv_format, weight_format
from vramest.units import format_bytes

if TYPE_CHECKING:
    from typing import Any

    from vramest.inference.engines.startup import LlamaCppStartup
    from vramest.inference.estimate import EngineReport


# engines with their own start-up accounting (engines/startup.py and the modules it registers)
ACCOUNTED_ENGINES = ("vllm", "llamacpp", "llamacpp-cli", "hf", "ollama", "sglang", "tgi",
                     "exllamav2")


# llama.cpp's default -sm layer split gives each GPU a share of the layers in proportion to its
# free memory (src/llama-model.cpp, load_tensors: "default split, by free memory"); -ts
# (tensor_split) replaces the shares. Each GPU then holds its layers' weights, KV and compute
# buffer (CUDA0, CUDA1, ... in the log), so each must fit its own card.
MIXED_GPU_ENGINES = ("llamacpp", "llamacpp-cli")
LLAMACPP_LIMIT_NOTE = (
    "llama.cpp fills what the driver reports (Metal: recommendedMaxWorkingSetSize); beyond its "
    "buffers each GPU holds the CUDA context, cuBLAS and ggml's pool (456 MiB measured, "
    "llama.cpp PR #15860), and a desktop on the same GPU takes more: give it as --reserve")


def speed_on(est: Estimate, device: Device, tp: int, pp: int, prompt: int, gen: int,
           engine: Engine) -> Throughput | None:
    if not device.bandwidth_bytes_s:
        return None
    s = est.settings
    speed = estimate_throughput(est.model.shape, weight_format(s.dtype), kv_format(s.kv_dtype),
                                device, batch=s.batch, prompt_tokens=prompt, gen_tokens=gen,
                                tp=tp, pp=pp, constants=est.constants, engine=engine,
                                prefill_chunk=s.explicit_chunk)
    if "lora" in est.extras or "speculative" in est.extras:  # inference/serving_extras.py
        from vramest.inference.serving_extras import apply_speed

        speed = apply_speed(est, speed, device, tp, pp, engine)
    return speed


def host_held(report: object) -> Any:
    """llama.cpp's buffers (Ollama's too) when some weights stay in system memory; else None."""
    buffers = getattr(report, "buffers", report)
    if getattr(buffers, "host_dense_bytes", 0) or getattr(buffers, "host_expert_bytes", 0):
        return buffers
    return None


def llamacpp_buffers(report: object) -> Any:
    """llama.cpp's buffers (Ollama's too), or None for another engine."""
    from vramest.inference.engines.startup import LlamaCppStartup

    buffers = getattr(report, "buffers", report)
    return buffers if isinstance(buffers, LlamaCppStartup) else None


def engine_report_for(est: Estimate, engine: str, options: dict[str, object], device: Device | None,
                   tp: int, usable_bytes: int | None, pp: int = 1,
                   prompt: int | None = None) -> EngineReport | None:
    """The engine's start-up figures; an engine without its own accounting and no options
    (generic, trtllm) needs none of the engine modules, so the common answer never imports
    them."""
    if not options and engine not in ACCOUNTED_ENGINES:
        return None
    from vramest.inference.engines.startup import engine_report

    return engine_report(est, engine, options, device, tp, usable_bytes, pp, prompt)


def engine_fit(fit_plan: FitPlan, report: object) -> FitPlan:
    """Judge the fit the way the engine uses the GPU: llama.cpp holds only its offloaded
    buffers there; vLLM starts when one max_model_len sequence fits in its KV budget."""
    if report is None:
        return fit_plan
    from vramest.inference.engines.startup import HFStartup, LlamaCppStartup, VLLMStartup

    own = getattr(report, "engine_fit", None)  # engines in vramest.inference.engines.registry
    if own is not None:
        return own(fit_plan)
    if isinstance(report, LlamaCppStartup):  # the fullest GPU of the layer split
        fullest = max(report.devices, key=lambda d: d.total(report.cuda_context_bytes),
                      default=None)
        per_gpu = PerGPU(fullest.model_bytes, fullest.kv_bytes, fullest.compute_bytes,
                         report.cuda_context_bytes) if fullest else PerGPU(0, 0, 0, 0)
        return replace(fit_plan, per_gpu=per_gpu, band=BANDS["llamacpp"],
                       band_extra_bytes=runtime_spread(report) if fullest else 0,
                       on_host=host_share(report, fit_plan.device), refused=report.refusal)
    if isinstance(report, HFStartup):
        # generate() grows each layer's cache with torch.cat: while one layer's keys (or values)
        # are copied both copies are allocated. The second cache's worth the caching allocator
        # keeps reserved meanwhile (the device figure) is unsplit cached blocks, which it frees
        # and retries before it raises out-of-memory (CUDACachingAllocator: release_cached_blocks
        # on a failed cudaMalloc), so the verdict counts the copy, not the reserve. Sliding
        # layers hold their whole last prefill chunk; before 4.45 the prefill holds every prompt
        # position's logits. A prompt shorter than the context is prefilled alone, so the peak
        # is the larger of that prefill and a decode step over the whole cache.
        per = fit_plan.per_gpu
        gpus = max(1, fit_plan.num_gpus)
        return replace(fit_plan, per_gpu=replace(
            per, kv_cache=per.kv_cache + (report.cache_copy_bytes + report.window_kv_extra_bytes)
            // gpus, activations=per.activations + (report.prompt_logits_bytes
                                                    - report.prompt_phase_saving_bytes) // gpus))
    if isinstance(report, VLLMStartup):
        one_sequence = report.request_bytes or round(report.kv_bytes_per_token *
                                                     report.max_model_len)
        if not report.checks_length:  # releases before 0.2.7 start with any block
            one_sequence = min(one_sequence, round(report.kv_bytes_per_token * report.block_size))
        one_sequence *= report.virtual_engines  # V0 over pipeline stages: each engine its share
        refused = report.refusal
        if report.kv_pinned:  # the whole pinned cache is allocated; one request must fit in it
            if one_sequence > report.kv_cache_bytes and not refused:
                refused = (f"vLLM would refuse to start: one {report.max_model_len}-token "
                           f"request needs {format_bytes(one_sequence)} of KV cache, the pinned "
                           f"cache holds {format_bytes(report.kv_cache_bytes)}.")
            one_sequence = report.kv_cache_bytes
        per_gpu = PerGPU(report.weights_bytes, one_sequence, report.activation_peak_bytes,
                         report.non_torch_bytes + report.cuda_graph_bytes)
        return replace(fit_plan, per_gpu=per_gpu, usable_bytes=report.budget_bytes,
                       band=BANDS["vllm"], band_basis_bytes=report.kv_cache_bytes,
                       band_extra_bytes=report.kv_spread_bytes, refused=refused)
    return fit_plan


def llamacpp_usable(device: Device, est: Estimate, reserve: Reserve) -> int:
    """What llama.cpp may fill on one GPU (engines/llamacpp_device.py): the driver's total or
    Metal's working set; what it holds beyond its buffers is charged in the per-GPU figure, so
    the default 5% reserve is not taken again. A --reserve the user gives is kept free."""
    from vramest.inference.engines.llamacpp_device import device_limit

    limit = device_limit(device, est.constants.visible_memory_fraction)
    return reserve.left_of(limit) if reserve.given else limit


def runtime_spread(report: LlamaCppStartup) -> int:
    from vramest.inference.engines.llamacpp_device import runtime_spread_bytes

    return runtime_spread_bytes(report.backend)


def host_share(report: LlamaCppStartup, device: Device) -> str:
    """What llama.cpp keeps in system memory, in its own terms; "" when nothing (or on a Mac,
    whose memory is one)."""
    if device.kind != "gpu" or not (report.host_dense_bytes or report.host_expert_bytes):
        return ""
    layers = report.layers_total
    if report.gpu_layers < layers:
        return f"{layers - report.gpu_layers} of {layers} layers"
    return f"the experts of {report.host_expert_layers} of {layers} layers"


def what_to_change(est: Estimate, plan_: FitPlan, report: object,
                   options: dict[str, object]) -> tuple[str, ...]:
    """When the verdict is tight or does not fit: the changes that leave the measured error band
    free, each with its figure (the longest context, the most layers, ...)."""
    from vramest.inference.placement import longest_context, valid_tp_degrees
    from vramest.inference.verdict import FITS

    if plan_.verdict == FITS:
        return ()
    own = getattr(report, "what_to_change", None)  # engines with knobs of their own (Ollama)
    if own is not None:
        gpus = plan_.tp * plan_.pp
        return (*own(est, plan_, options),
                f"--num-gpus {gpus + 1}: the layers split over one more GPU")
    from vramest.inference.engines.layouts import group_refusal_ways_out, vllm_refusal
    from vramest.inference.engines.startup import LlamaCppStartup, VLLMStartup

    band = plan_.error_band_bytes
    out: list[str] = []
    kv_16bit = kv_format(est.settings.kv_dtype).bytes_per_element >= 2
    if isinstance(report, VLLMStartup) and "sampler warm-up" in report.refusal:
        # MRV2 (engines/vllm_runner.py): a longer KV cache or a higher utilization only
        # shrinks what the warm-up has left
        return ("--model-runner v1 (VLLM_USE_V2_MODEL_RUNNER=0): the default runner profiles "
                "the sampler inside the budget",
                "a lower --max-num-seqs (the warm-up samples that many sequences over the whole "
                "vocabulary) or a lower --gpu-memory-utilization")
    if isinstance(report, VLLMStartup) and "shared memory" in report.refusal:
        # vLLM 0.2.0-0.2.1: a length limit whatever the memory (startup.shared_memory_max_len)
        return (f"--max-model-len {report.max_len_limit} or less: {report.version} keeps one "
                "fp32 logit per position in the GPU's shared memory",
                "--engine-version vllm==0.2.2 or later (PagedAttention V2 has no such limit)")
    if isinstance(report, VLLMStartup):
        fmt_name = weight_format(est.settings.dtype).name
        if vllm_refusal(est.model.shape, fmt_name, plan_.tp):
            out.extend(group_refusal_ways_out(est.model.shape, fmt_name, plan_.tp, plan_.pp))
        room = report.kv_cache_bytes - band
        tokens = int(room // report.kv_bytes_per_token) if report.kv_bytes_per_token else 0
        tokens -= tokens % report.block_size
        if 0 < tokens < report.max_model_len:
            out.append(f"--max-model-len {tokens} (the longest that starts with the error band "
                       "to spare)")
        if kv_16bit:
            out.append("--kv-dtype fp8 (vLLM --kv-cache-dtype fp8): half the KV cache per token")
        util = options.get("gpu_memory_utilization", 0.9)
        if report.kv_pinned:  # the utilization is ignored; the pinned size is the knob
            rest = plan_.per_gpu.total - plan_.per_gpu.kv_cache  # engine_fit's parts
            room = (plan_.usable_bytes - band - rest) // 2**20
            if room > 0:
                out.append(f"--kv-cache-memory-bytes {room}MiB: the largest pinned cache that "
                           "leaves the error band free on the card")
        elif isinstance(util, float) and util < 0.95:
            out.append("a higher --gpu-memory-utilization (0.95) if nothing else uses the GPU; "
                       "lower it instead if the process is killed outside vLLM's budget")
        if report.kv_spread_bytes:  # 0.2.5's held all-reduce inputs (held_allreduce_inputs)
            out.append("--engine-version vllm==0.2.6 or later: the profile's all-reduce inputs "
                       "are freed again (vLLM PR #2151)")
    elif isinstance(report, LlamaCppStartup):
        from vramest.inference.engines.startup import (
            LlamaCppOptions,
            llamacpp_fit_layers,
            parse_engine_options,
        )

        typed = parse_engine_options("llamacpp", options)  # "2GiB", "64k": as the report read them
        given = {k: v for k, v in typed.items() if k in field_names(LlamaCppOptions)}
        given.setdefault("n_gpus", len(report.devices) or 1)
        llama_options = LlamaCppOptions(**given)  # type: ignore[arg-type]
        layers = llamacpp_fit_layers(est, plan_.device, llama_options, plan_.usable_bytes - band)
        if layers < report.gpu_layers:
            out.append(f"-ngl {layers}: keep the other layers on the host")
        if est.model.shape.is_moe and not report.notes:
            out.append("--n-cpu-moe N: keep the first N layers' experts on the host")
        if kv_16bit and not options.get("cache_type_k"):
            out.append("--cache-type-k q8_0 --cache-type-v q8_0 (with --flash-attn): half the "
                       "KV cache")
        gpus = max(1, len(report.devices))
        out.append(f"--num-gpus {gpus + 1}: llama.cpp splits the layers over one more GPU")
    else:
        ctx = longest_context(est, plan_.device, plan_.tp, plan_.pp, plan_.usable_bytes - band)
        if 0 < ctx < est.settings.ctx:
            out.append(f"--ctx {ctx} (the longest context that fits with the error band to "
                       "spare)")
        if kv_16bit:
            out.append("--kv-dtype fp8: half the KV cache")
    more = 2 * plan_.tp
    refuses_more = isinstance(report, VLLMStartup) and bool(
        vllm_refusal(est.model.shape, weight_format(est.settings.dtype).name, more))
    if more in valid_tp_degrees(est.model.shape, more) and not refuses_more and \
            not isinstance(report, LlamaCppStartup):
        out.append(f"--num-gpus {more * plan_.pp}: one more GPU's share per GPU")
    return tuple(out)
