"""Put an estimate on hardware: fit per GPU, speed, and the fewest cards of each common GPU."""

from __future__ import annotations

from collections.abc import Sequence

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, NamedTuple, field_names, replace
from vramest.hardware.database import (
    Device,
    HardwareDB,
    common_devices,
    device_from_local,
    load_hardware,
)
from vramest.inference.engines.speed import Engine
from vramest.inference.engines.speed import engine as engine_by_name
from vramest.inference.estimate import Estimate
from vramest.inference.placement import (
    RESERVE_NOTE,
    FitPlan,
    PerGPU,
    Reserve,
    ecc_note,
    fewest_gpus,
    parse_reserve,
    plan,
)
from vramest.inference.throughput import Throughput, estimate_throughput
from vramest.inference.verdict import BANDS
from vramest.model.precisions import kv_format, weight_format
from vramest.units import format_bytes, parse_positive_int, parse_tokens

if TYPE_CHECKING:
    from typing import Any

    from vramest.inference.engines.startup import LlamaCppStartup
    from vramest.inference.estimate import EngineReport


class Deployment(NamedTuple):
    """Where an estimate runs and how it is served, as the caller gave it; place() checks it."""

    gpu: str | None = None  # None: the fewest cards of each common GPU (with compare_gpus)
    num_gpus: int | str = 1  # all GPUs: tensor parallel = num_gpus / pp
    pp: int | str = 1
    reserve: str | float | None = None  # memory kept free per GPU: "10%", 0.1 or "2GiB"
    max_ctx: bool = False  # search the longest context that fits
    max_batch: bool = False  # search the most concurrent sequences that fit
    compare_gpus: bool = False
    hardware_file: str | None = None
    engine: str = "generic"
    engine_options: tuple[tuple[str, object], ...] = ()
    prompt: str | int | None = None  # the request the speed is for (default: the context)
    gen: str | int = 128
    host_memory: str | None = None  # system memory of host layers (default offload.DEFAULT_HOST_MEMORY)

    @property
    def needs_hardware(self) -> bool:
        """Whether the estimate must be placed at all (a GPU, a table, or an engine's view)."""
        engine = self.engine
        if isinstance(engine, str) and engine != "generic":
            from vramest.inference.engines.aliases import resolve_engine

            engine = resolve_engine(engine)[0]
        return (self.gpu is not None or self.compare_gpus or bool(self.engine_options)
                or (engine in ACCOUNTED_ENGINES and engine != "hf"))


# engines with their own start-up accounting (engines/startup.py and the modules it registers)
ACCOUNTED_ENGINES = ("vllm", "llamacpp", "llamacpp-cli", "hf", "ollama", "sglang", "tgi",
                     "exllamav2")
# llama.cpp's default split mode (-sm layer) and Ollama's scheduler give each GPU whole layers
# (llama.cpp src/llama-model.cpp, LLAMA_SPLIT_MODE_LAYER), so --num-gpus there is a layer split;
# so does transformers' device_map="auto" (accelerate infer_auto_device_map: whole decoder
# layers per GPU, "balanced" over several), which runs the GPUs one after the other
LAYER_SPLIT_ENGINES = ("llamacpp", "llamacpp-cli", "ollama", "hf")


def place(est: Estimate, where: Deployment,
          engine_costs: dict[str, dict[str, float]] | None = None) -> Estimate:
    """Fit per GPU, speed, and the engine's own start-up figures (or the GPU table)."""
    (gpu, num_gpus, pp, reserve, max_ctx, max_batch, compare_gpus, hardware_file, engine,
     option_pairs, prompt, gen, host_memory) = where
    engine_options = dict(option_pairs)
    alias = None
    if engine != "generic":  # the common answer needs no engine module
        from vramest.inference.engines.aliases import resolve_engine

        engine, alias = resolve_engine(engine)
    if alias is not None and alias.version and "version" not in engine_options:
        engine_options["version"] = alias.version
    fork_note = None
    if alias is not None and alias.fork and isinstance(engine_options.get("version"), str):
        from vramest.inference.engines.llamacpp_forks import fork_build

        if (mapped := fork_build(alias.fork, str(engine_options["version"]))) is not None:
            engine_options["version"] = f"b{mapped.build}"
            fork_note = mapped.note
    if host_memory is not None:  # checked when given, whether or not layers stay on the host
        from vramest.inference.offload import host_memory as host_row

        host_row(load_hardware(hardware_file), host_memory)
    n = parse_positive_int(num_gpus, what="--num-gpus", maximum=4096)
    stages = parse_positive_int(pp, what="--pp", maximum=4096)
    reserve_ = parse_reserve(reserve)
    prompt_tokens = parse_tokens(prompt, what="--prompt") if prompt is not None else est.settings.ctx
    gen_tokens = parse_positive_int(gen, what="--gen", maximum=10**7)
    engine_ = engine_by_name(engine)
    fitted: dict[str, Any] | None = (engine_costs or {}).get(engine_.name)
    if fitted:  # a calibration profile measured this engine's fixed costs
        engine_ = replace(engine_, **fitted)
    assumptions = [*est.assumptions, f"Speed: {engine_.name} engine ({engine_.description}); "
                   f"prompt {prompt_tokens} tokens, then {gen_tokens} generated.",
                   (LLAMACPP_LIMIT_NOTE if engine_.name in MIXED_GPU_ENGINES and reserve is None
                    else RESERVE_NOTE + (f"; here {reserve}" if reserve is not None else ""))
                   + "."]
    if alias is not None:
        assumptions.append(f"Engine: {alias.note}" + (f"; {fork_note}" if fork_note else "") + ".")
    if engine_.name in LAYER_SPLIT_ENGINES and stages == 1:
        stages = n  # whole layers per GPU: no head has to divide among the GPUs
    if gpu is not None and ("," in gpu or "+" in gpu):
        if engine_.name in MIXED_TP_ENGINES and stages > 1:
            raise InputError(f"Different GPUs in one --gpu are modelled for {engine_.name}'s "
                             "tensor parallelism over all of them; leave --pp out.")
        mixed = Mixed(load_hardware(hardware_file).find_list(gpu), n, reserve_,
                      max_ctx or max_batch)
        return _place_mixed(est, mixed, engine_, engine_options, assumptions,
                            (prompt_tokens, gen_tokens))
    if gpu is not None:
        db = load_hardware(hardware_file)
        device = local_device(db) if gpu.strip().lower() == "local" else db.find(gpu)
        fit_plan = plan(est, device, n, stages, reserve_, max_ctx, max_batch)
        if engine_.name in MIXED_GPU_ENGINES:  # llama.cpp fills what the driver reports
            fit_plan = replace(fit_plan, usable_bytes=llamacpp_usable(device, est, reserve_))
        if device.addressable_bytes < device.memory_bytes:
            assumptions.append(ecc_note(device))
        speed = _speed(est, device, fit_plan.tp, fit_plan.pp, prompt_tokens, gen_tokens, engine_)
        if fit_plan.max_ctx is not None and est.model.shape.max_context and \
                fit_plan.max_ctx > est.model.shape.max_context:
            assumptions.append(f"The longest context that fits ({fit_plan.max_ctx}) is beyond "
                               f"the model's trained {est.model.shape.max_context} tokens.")
        layer_split = engine_.name in LAYER_SPLIT_ENGINES
        report = _engine_report(est, engine_.name, engine_options, device,
                               n if layer_split else fit_plan.tp, fit_plan.usable_bytes,
                               1 if layer_split else fit_plan.pp, prompt_tokens)
        fit_plan = _engine_fit(fit_plan, report)
        fit_plan = replace(fit_plan, advice=what_to_change(est, fit_plan, report,
                                                           engine_options or {}))
        held = _host_held(report)
        if speed is not None and held is not None and device.kind == "gpu":
            from vramest.inference.offload import host_memory as host_row
            from vramest.inference.offload import with_host_layers

            speed = with_host_layers(speed, held, est.model.shape, device,
                                     host_row(db, host_memory), est.constants)
        if speed is not None and device.kind == "gpu" and _llamacpp_buffers(report) is not None:
            from vramest.inference.llamacpp_prefill import with_unfused_attention

            speed = with_unfused_attention(speed, _llamacpp_buffers(report), est.model.shape,
                                           device, est.constants, engine_)
        return replace(est, fit=fit_plan, throughput=speed, assumptions=tuple(assumptions),
                       engine_report=report)
    report = _engine_report(est, engine_.name, engine_options, None, 1, None, 1, prompt_tokens)
    if not compare_gpus:
        return replace(est, engine_report=report, assumptions=tuple(assumptions))
    options = tuple(fewest_gpus(est, device, reserve_) for device in common_devices(hardware_file))
    speeds = tuple(_speed(est, o.device, o.plan.tp, o.plan.pp, prompt_tokens, gen_tokens,
                          engine_) if o.plan is not None and o.device.bandwidth_bytes_s else None
                   for o in options)
    return replace(est, gpu_options=options, speeds=speeds, assumptions=tuple(assumptions),
                   engine_report=report)


# llama.cpp's default -sm layer split gives each GPU a share of the layers in proportion to its
# free memory (src/llama-model.cpp, load_tensors: "default split, by free memory"); -ts
# (tensor_split) replaces the shares. Each GPU then holds its layers' weights, KV and compute
# buffer (CUDA0, CUDA1, ... in the log), so each must fit its own card.
MIXED_GPU_ENGINES = ("llamacpp", "llamacpp-cli")
LLAMACPP_LIMIT_NOTE = (
    "llama.cpp fills what the driver reports (Metal: recommendedMaxWorkingSetSize); beyond its "
    "buffers each GPU holds the CUDA context, cuBLAS and ggml's pool (456 MiB measured, "
    "llama.cpp PR #15860), and a desktop on the same GPU takes more: give it as --reserve")


# vLLM gives every tensor-parallel rank the same number of KV blocks, the fewest any rank can
# hold: V1 vllm/v1/core/kv_cache_utils.py unify_kv_cache_configs ("the smallest among all
# ranks"), V0 the executor's determine_num_available_blocks (min over the workers). Each rank
# budgets gpu_memory_utilization of its own card, so the smallest card binds ("each worker
# applies that same fraction to its own GPU", vllm-project/vllm#49816).
# SGLang reads the smallest rank's free memory for every rank (get_available_gpu_memory with
# distributed=True: an all-reduce MIN) and, from PR #1194 (v0.2.14, 2024-08), refuses when that
# is below 0.9 × a rank's own ("The memory capacity is unbalanced", model_runner.py
# init_torch_distributed) unless SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK=0 (earlier
# SGL_DISABLE_TP_MEMORY_INBALANCE_CHECK=1; sgl-project/sglang#5426). Users report it for a
# Tesla T10 16G + 3060 12G and an A4000 16GB + 3090 24GB (sglang#1533).
MIXED_TP_ENGINES = ("vllm", "sglang")
SGLANG_BALANCE_SHARE = 0.9
SGLANG_BALANCE_SINCE = (0, 2, 14)


class Mixed(NamedTuple):
    """Different GPUs in one machine, as --gpu "A,B" names them."""

    devices: tuple[Device, ...]
    num_gpus: int  # --num-gpus as given: 1 (unset) or the number of GPUs named
    reserve: Reserve
    search: bool  # --max-ctx / --max-batch asked


def _place_mixed(est: Estimate, mixed: Mixed, engine: Engine, options: dict[str, object],
                 assumptions: list[str], request: tuple[int, int]) -> Estimate:
    devices = mixed.devices
    names = ", ".join(d.name for d in devices)
    if engine.name not in (*MIXED_GPU_ENGINES, *MIXED_TP_ENGINES, "ollama"):
        raise InputError(f"Different GPUs in one --gpu ({names}) are modelled for llama.cpp's "
                         f"and Ollama's layer split (--engine llamacpp, llamacpp-cli or ollama) "
                         f"and vLLM's and SGLang's tensor parallelism (--engine vllm or sglang); "
                         f"--engine {engine.name} needs one kind of GPU (--gpu NAME --num-gpus N).")
    if mixed.num_gpus not in (1, len(devices)):
        raise InputError(f"--num-gpus {mixed.num_gpus} does not match the {len(devices)} GPUs "
                         "named in --gpu; leave --num-gpus out.")
    if mixed.search:
        raise InputError("--max-ctx and --max-batch take one kind of GPU; with different GPUs, "
                         "give --ctx and --batch and read the headroom of each GPU.")
    usable = [mixed.reserve.usable(d) for d in devices]
    if min(usable) <= 0:
        raise InputError("--reserve leaves nothing usable on one of the GPUs.")
    if engine.name in MIXED_TP_ENGINES:
        return _place_mixed_tp(est, mixed, engine, options, assumptions, request)
    if engine.name == "ollama":
        return _place_mixed_ollama(est, mixed, engine, options, assumptions, request)
    from vramest.inference.engines.startup import LlamaCppStartup, parse_engine_options

    split = parse_engine_options(engine.name, options)  # typed once: the advice reads them too
    usable = [llamacpp_usable(d, est, mixed.reserve) for d in devices]
    split.setdefault("tensor_split", tuple(float(u) for u in usable))
    # no single usable size: llama.cpp's automatic fit is not applied; each GPU is judged below
    report = _engine_report(est, engine.name, split, devices[0], len(devices), None)

    assert isinstance(report, LlamaCppStartup)
    held = [PerGPU(d.model_bytes, d.kv_bytes, d.compute_bytes,
                   report.cuda_context_bytes if d.layers else 0) for d in report.devices]
    held += [PerGPU(0, 0, 0, 0)] * (len(devices) - len(held))
    binding = min(range(len(devices)), key=lambda i: usable[i] - held[i].total)
    judged = replace(devices[binding], name=f"{devices[binding].name} (the GPU with the least "
                     f"headroom of {' + '.join(d.name for d in devices)})")
    fit_plan = FitPlan(device=judged, tp=1, pp=len(devices), per_gpu=held[binding],
                       usable_bytes=usable[binding], band=BANDS["llamacpp"],
                       band_extra_bytes=_runtime_spread(report))
    fit_plan = replace(fit_plan, advice=_mixed_advice(est, fit_plan, split, usable))
    shares = "/".join(f"{u / sum(usable):.2f}" for u in usable)
    notes = [f"Different GPUs: llama.cpp splits the layers by each GPU's free memory (-ts "
             f"{shares} unless --tensor-split is given); each GPU must hold its own share, "
             "and the fit is judged on the GPU with the least headroom."]
    layers = [d.layers for d in report.devices] + [0] * len(devices)
    notes += [f"CUDA{i} {d.name}: {layers[i]} "
              f"layers, {format_bytes(held[i].total)} of {format_bytes(usable[i])} usable"
              for i, d in enumerate(devices)]
    notes += [ecc_note(d) for d in devices if d.addressable_bytes < d.memory_bytes]
    speed, speed_notes = _slowest_speed(est, devices, 1, len(devices), request, engine)
    return replace(est, fit=fit_plan, throughput=speed, engine_report=report,
                   assumptions=tuple([*assumptions, *notes, *speed_notes]))


def _place_mixed_ollama(est: Estimate, mixed: Mixed, engine: Engine, options: dict[str, object],
                        assumptions: list[str], request: tuple[int, int]) -> Estimate:
    """Ollama over different GPUs: it picks the GPUs and each one's layers itself
    (engines/ollama_mixed.py) and llama.cpp allocates them; every GPU used is judged on its own
    card, and the fit is for the whole model on the GPUs, as with one kind of GPU."""
    from vramest.inference.engines.ollama_mixed import advice as ollama_advice
    from vramest.inference.engines.ollama_mixed import place as ollama_place
    from vramest.inference.verdict import FITS

    devices = mixed.devices
    usable = [mixed.reserve.usable(d) for d in devices]
    placed = ollama_place(est, options, devices, usable)
    report = placed.startup
    used = [i for i, n in zip(placed.order, placed.counts, strict=True) if n]
    counts = dict(zip(placed.order, placed.counts, strict=True))

    def per_device(b: LlamaCppStartup, ranks: list[int]) -> dict[int, PerGPU]:
        out = {i: PerGPU(0, 0, 0, 0) for i in range(len(devices))}
        for i, d in zip(ranks, b.devices, strict=False):
            out[i] = PerGPU(d.model_bytes, d.kv_bytes, d.compute_bytes,
                            b.cuda_context_bytes if d.layers else 0)
        return out

    held = per_device(report.buffers, used)  # the layers Ollama places
    judged_held = held if report.fully_offloaded or report.placed else \
        per_device(report.full, list(placed.order))  # every layer, shared by free memory
    ranks = used if judged_held is held else list(placed.order)
    binding = min(ranks or [placed.order[0]], key=lambda i: usable[i] - judged_held[i].total)
    judged = replace(devices[binding], name=f"{devices[binding].name} (the GPU with the least "
                     f"headroom of {' + '.join(d.name for d in devices)})")
    host = "" if report.fully_offloaded else \
        f"{report.layers_total - report.offloaded} of {report.layers_total} layers"
    fit_plan = FitPlan(device=judged, tp=1, pp=max(1, len(ranks)),
                       per_gpu=judged_held[binding], usable_bytes=usable[binding],
                       band=BANDS["llamacpp"], on_host=host)
    if fit_plan.verdict != FITS:
        fit_plan = replace(fit_plan, advice=ollama_advice(est, options, devices, usable, placed,
                                                          fit_plan.band.fraction))
    notes = [f"Different GPUs: {placed.rule}; the fit is for every layer on the GPUs, judged "
             "on the GPU with the least headroom."]
    notes += [f"CUDA{rank} {devices[i].name}: {counts[i]} layers, "
              f"{format_bytes(held[i].total)} of {format_bytes(usable[i])} usable "
              f"(headroom {format_bytes(usable[i] - held[i].total)})"
              for rank, i in enumerate(used)]
    unused = [devices[i].name for i in placed.order if not counts[i]]
    if unused:
        notes.append(f"Not used by Ollama: {', '.join(unused)}.")
    if not report.fully_offloaded:
        notes.append(f"Ollama keeps {host} on the CPU.")
    notes += [ecc_note(d) for d in devices if d.addressable_bytes < d.memory_bytes]
    speed, speed_notes = _slowest_speed(est, [devices[i] for i in used or [placed.order[0]]],
                                        1, max(1, len(used)), request, engine)
    return replace(est, fit=fit_plan, throughput=speed, engine_report=report,
                   assumptions=tuple([*assumptions, *notes, *speed_notes]))


def _place_mixed_tp(est: Estimate, mixed: Mixed, engine: Engine, options: dict[str, object],
                    assumptions: list[str], request: tuple[int, int]) -> Estimate:
    """vLLM or SGLang over different GPUs: tensor parallel over all of them, each rank with its
    own budget; the rank with the smallest KV cache sets every rank's, and is the one judged."""
    devices, tp = mixed.devices, len(mixed.devices)
    judged: list[tuple[FitPlan, Any]] = []
    for device in devices:
        fit_plan = plan(est, device, tp, 1, mixed.reserve, False, False)
        report = _engine_report(est, engine.name, options, device, fit_plan.tp,
                                fit_plan.usable_bytes)
        judged.append((_engine_fit(fit_plan, report), report))
    binding = min(range(tp), key=lambda i: getattr(judged[i][1], "kv_cache_bytes", 0))
    fit_plan, report = judged[binding]
    imbalance = _sglang_imbalance(devices, report) if engine.name == "sglang" else ""
    if imbalance and not fit_plan.refused:
        fit_plan = replace(fit_plan, refused=imbalance)
    fit_plan = replace(fit_plan, device=replace(
        fit_plan.device, name=f"{devices[binding].name} (the binding rank of "
        f"{' + '.join(d.name for d in devices)})"))
    advice = what_to_change(est, fit_plan, report, options)  # more GPUs: name them in --gpu
    if imbalance:
        advice = ("GPUs of one kind, or --engine vllm (it holds every rank to the smallest card "
                  "instead of refusing) or llamacpp (layers split by each card's memory)",)
    fit_plan = replace(fit_plan, advice=tuple(a for a in advice if not a.startswith("--num-gpus")))
    notes = [f"Different GPUs: {engine.name} runs tensor parallel {tp} over them and holds every "
             "rank to what the smallest rank has room for."]
    notes += [f"rank {i} {d.name}: KV cache {format_bytes(getattr(r, 'kv_cache_bytes', 0))}"
              for i, (d, (_, r)) in enumerate(zip(devices, judged, strict=True))]
    notes += [imbalance] if imbalance else []
    speed, speed_notes = _slowest_speed(est, devices, tp, 1, request, engine)
    return replace(est, fit=fit_plan, throughput=speed, engine_report=report,
                   assumptions=tuple([*assumptions, *notes, *speed_notes]))


def _slowest_speed(est: Estimate, devices: Sequence[Device], tp: int, pp: int,
                   request: tuple[int, int], engine: Engine) -> tuple[Throughput | None, list[str]]:
    """The speed over different GPUs, as if every GPU used were the slowest of them."""
    slowest = min(devices, key=lambda d: d.bandwidth_bytes_s or 0)
    speed = _speed(est, slowest, tp, pp, *request, engine)
    note = f"Speed as if every GPU used were the slowest of them ({slowest.name})."
    return speed, [note] if speed is not None else []


def _sglang_imbalance(devices: tuple[Device, ...], report: object) -> str:
    """SGLang's balance check over tensor-parallel ranks of different GPUs, or ""."""
    from vramest.inference.engines.registry import version as release_of

    version = str(getattr(report, "version", ""))  # "sglang==0.4.6", or the commit read
    if version.startswith("sglang==") and \
            release_of(version, "--engine-version") < SGLANG_BALANCE_SINCE:
        return ""
    free = [d.reported_total_bytes(1.0) - d.os_in_use_bytes for d in devices]
    if min(free) >= SGLANG_BALANCE_SHARE * max(free):
        return ""
    return (f"SGLang refuses to start: the memory capacity is unbalanced (the smallest GPU has "
            f"{format_bytes(min(free))} free, under {SGLANG_BALANCE_SHARE:g} × the largest's "
            f"{format_bytes(max(free))}); SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK=0 starts it "
            "anyway, every rank held to the smallest GPU's memory.")


def _mixed_advice(est: Estimate, plan_: FitPlan, options: dict[str, object],
                  usable: list[int]) -> tuple[str, ...]:
    """What to change when a split over different GPUs is tight or does not fit: the most
    layers that leave every GPU its error band free, and a smaller KV cache."""
    from vramest.inference.engines.startup import LlamaCppOptions, llamacpp_startup
    from vramest.inference.verdict import FITS

    if plan_.verdict == FITS:
        return ()
    given = {k: v for k, v in options.items() if k in field_names(LlamaCppOptions)}
    base = LlamaCppOptions(**{**given, "n_gpus": len(usable)})  # type: ignore[arg-type]
    band = plan_.band.fraction

    def fits(layers: int) -> bool:
        report = llamacpp_startup(est, replace(base, n_gpu_layers=layers))
        return all(d.total(report.cuda_context_bytes) * (1 + band) <= u
                   for d, u in zip(report.devices, usable, strict=False))

    out = []
    layers = next((n for n in range(est.model.shape.num_layers, -1, -1) if fits(n)), 0)
    if layers < min(base.n_gpu_layers, est.model.shape.num_layers):
        out.append(f"-ngl {layers}: keep the other layers on the host (every GPU keeps its "
                   "error band free)")
    if kv_format(est.settings.kv_dtype).bytes_per_element >= 2 and not options.get("cache_type_k"):
        out.append("--cache-type-k q8_0 --cache-type-v q8_0 (with --flash-attn): half the "
                   "KV cache")
    out.append("another GPU in --gpu: llama.cpp splits the layers over it too")
    return tuple(out)


def _speed(est: Estimate, device: Device, tp: int, pp: int, prompt: int, gen: int,
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


def local_device(db: HardwareDB) -> Device:
    """This machine's first GPU (memory as detected), or a clear error where there is none."""
    from vramest.hardware.local import detect

    found = detect()
    if not found.gpus:
        raise InputError(f"--gpu local found no GPU on this machine ({found.note}); name a GPU "
                         "instead, e.g. --gpu 4090.")
    first = found.gpus[0]
    return device_from_local(first.name, first.total_bytes, None, db)


def _host_held(report: object) -> Any:
    """llama.cpp's buffers (Ollama's too) when some weights stay in system memory; else None."""
    buffers = getattr(report, "buffers", report)
    if getattr(buffers, "host_dense_bytes", 0) or getattr(buffers, "host_expert_bytes", 0):
        return buffers
    return None


def _llamacpp_buffers(report: object) -> Any:
    """llama.cpp's buffers (Ollama's too), or None for another engine."""
    from vramest.inference.engines.startup import LlamaCppStartup

    buffers = getattr(report, "buffers", report)
    return buffers if isinstance(buffers, LlamaCppStartup) else None


def _engine_report(est: Estimate, engine: str, options: dict[str, object], device: Device | None,
                   tp: int, usable_bytes: int | None, pp: int = 1,
                   prompt: int | None = None) -> EngineReport | None:
    """The engine's start-up figures; an engine without its own accounting and no options
    (generic, trtllm) needs none of the engine modules, so the common answer never imports
    them."""
    if not options and engine not in ACCOUNTED_ENGINES:
        return None
    from vramest.inference.engines.startup import engine_report

    return engine_report(est, engine, options, device, tp, usable_bytes, pp, prompt)


def _engine_fit(fit_plan: FitPlan, report: object) -> FitPlan:
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
                       band_extra_bytes=_runtime_spread(report) if fullest else 0,
                       on_host=host_share(report, fit_plan.device), refused=report.refusal)
    if isinstance(report, HFStartup):
        # generate() grows each layer's cache with torch.cat: while one layer's keys (or values)
        # are copied both copies are allocated. The second cache's worth the caching allocator
        # keeps reserved meanwhile (the device figure) is unsplit cached blocks, which it frees
        # and retries before it raises out-of-memory (CUDACachingAllocator: release_cached_blocks
        # on a failed cudaMalloc), so the verdict counts the copy, not the reserve. Sliding
        # layers hold their whole last prefill chunk; before 4.45 the prefill holds every prompt
        # position's logits.
        per = fit_plan.per_gpu
        gpus = max(1, fit_plan.num_gpus)
        return replace(fit_plan, per_gpu=replace(
            per, kv_cache=per.kv_cache + (report.cache_copy_bytes + report.window_kv_extra_bytes)
            // gpus, activations=per.activations + report.prompt_logits_bytes // gpus))
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
                       refused=refused)
    return fit_plan


def llamacpp_usable(device: Device, est: Estimate, reserve: Reserve) -> int:
    """What llama.cpp may fill on one GPU (engines/llamacpp_device.py): the driver's total or
    Metal's working set; what it holds beyond its buffers is charged in the per-GPU figure, so
    the default 5% reserve is not taken again. A --reserve the user gives is kept free."""
    from vramest.inference.engines.llamacpp_device import device_limit

    limit = device_limit(device, est.constants.visible_memory_fraction)
    return reserve.left_of(limit) if reserve.given else limit


def _runtime_spread(report: LlamaCppStartup) -> int:
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
            rest = plan_.per_gpu.total - plan_.per_gpu.kv_cache  # _engine_fit's parts
            room = (plan_.usable_bytes - band - rest) // 2**20
            if room > 0:
                out.append(f"--kv-cache-memory-bytes {room}MiB: the largest pinned cache that "
                           "leaves the error band free on the card")
        elif isinstance(util, float) and util < 0.95:
            out.append("a higher --gpu-memory-utilization (0.95) if nothing else uses the GPU; "
                       "lower it instead if the process is killed outside vLLM's budget")
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
