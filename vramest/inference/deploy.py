"""Put an estimate on hardware: fit per GPU, speed, and the fewest cards of each common GPU."""

from __future__ import annotations

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, NamedTuple, replace
from vramest.hardware.database import (
    Device,
    HardwareDB,
    agreeing_count,
    common_devices,
    device_from_local,
    load_hardware,
)
from vramest.inference.engine_fit import (
    ACCOUNTED_ENGINES,
    LLAMACPP_LIMIT_NOTE,
    MIXED_GPU_ENGINES,
    engine_fit,
    engine_report_for,
    host_held,
    llamacpp_buffers,
    llamacpp_usable,
    speed_on,
    what_to_change,
)
from vramest.inference.engines.speed import engine as engine_by_name
from vramest.inference.estimate import Estimate
from vramest.inference.placement import RESERVE_NOTE, ecc_note, fewest_gpus, parse_reserve, plan
from vramest.units import parse_positive_int, parse_tokens

if TYPE_CHECKING:
    from typing import Any


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
        from vramest.inference.engines.llamacpp_forks import fork_build, past_table

        if (mapped := fork_build(alias.fork, str(engine_options["version"]))) is not None:
            engine_options["version"] = f"b{mapped.build}"
            fork_note = mapped.note
        elif (newer := past_table(alias.fork, str(engine_options["version"]))) is not None:
            del engine_options["version"]  # not a llama.cpp build: the default build's rules
            fork_note = newer
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
    # llama.cpp fills what the driver reports; so does Ollama's llama.cpp runner when num_gpu
    # places the layers (engines/ollama.py: no estimate of Ollama's decides anything then)
    llamacpp_limit = engine_.name in MIXED_GPU_ENGINES or (
        engine_.name == "ollama" and "num_gpu" in (engine_options or {}))
    assumptions = [*est.assumptions, f"Speed: {engine_.name} engine ({engine_.description}); "
                   f"prompt {prompt_tokens} tokens, then {gen_tokens} generated.",
                   (LLAMACPP_LIMIT_NOTE if llamacpp_limit and reserve is None
                    else RESERVE_NOTE + (f"; here {reserve}" if reserve is not None else ""))
                   + "."]
    if alias is not None:
        assumptions.append(f"Engine: {alias.note}" + (f"; {fork_note}" if fork_note else "") + ".")
    mixed_gpus = gpu is not None and ("," in gpu or "+" in gpu)
    device = None
    if gpu is not None and not mixed_gpus:
        db = load_hardware(hardware_file)
        if gpu.strip().lower() == "local":
            device = local_device(db)
        else:
            device, count = db.find_counted(gpu)  # "2x RTX 4090" is two of them
            n = agreeing_count(n, count, gpu)
    if engine_.name in LAYER_SPLIT_ENGINES and stages == 1:
        stages = n  # whole layers per GPU: no head has to divide among the GPUs
    if gpu is not None and mixed_gpus:
        from vramest.inference.mixed import MIXED_TP_ENGINES, Mixed, place_mixed

        if engine_.name in MIXED_TP_ENGINES and stages > 1:
            raise InputError(f"Different GPUs in one --gpu are modelled for {engine_.name}'s "
                             "tensor parallelism over all of them; leave --pp out.")
        mixed = Mixed(load_hardware(hardware_file).find_list(gpu), n, reserve_,
                      max_ctx or max_batch)
        return place_mixed(est, mixed, engine_, engine_options, assumptions,
                            (prompt_tokens, gen_tokens))
    if device is not None:
        fit_plan = plan(est, device, n, stages, reserve_, max_ctx, max_batch)
        if llamacpp_limit:
            fit_plan = replace(fit_plan, usable_bytes=llamacpp_usable(device, est, reserve_))
        if device.addressable_bytes < device.memory_bytes:
            assumptions.append(ecc_note(device))
        speed = speed_on(est, device, fit_plan.tp, fit_plan.pp, prompt_tokens, gen_tokens, engine_)
        if fit_plan.max_ctx is not None and est.model.shape.max_context and \
                fit_plan.max_ctx > est.model.shape.max_context:
            assumptions.append(f"The longest context that fits ({fit_plan.max_ctx}) is beyond "
                               f"the model's trained {est.model.shape.max_context} tokens.")
        layer_split = engine_.name in LAYER_SPLIT_ENGINES
        report = engine_report_for(est, engine_.name, engine_options, device,
                               n if layer_split else fit_plan.tp, fit_plan.usable_bytes,
                               1 if layer_split else fit_plan.pp, prompt_tokens)
        fit_plan = engine_fit(fit_plan, report)
        fit_plan = replace(fit_plan, advice=what_to_change(est, fit_plan, report,
                                                           engine_options or {}))
        held = host_held(report)
        if speed is not None and held is not None and device.kind == "gpu":
            from vramest.inference.offload import host_memory as host_row
            from vramest.inference.offload import with_host_layers

            speed = with_host_layers(speed, held, est.model.shape, device,
                                     host_row(db, host_memory), est.constants)
        if speed is not None and device.kind == "gpu" and llamacpp_buffers(report) is not None:
            from vramest.inference.llamacpp_prefill import with_unfused_attention

            speed = with_unfused_attention(speed, llamacpp_buffers(report), est.model.shape,
                                           device, est.constants, engine_)
        return replace(est, fit=fit_plan, throughput=speed, assumptions=tuple(assumptions),
                       engine_report=report)
    report = engine_report_for(est, engine_.name, engine_options, None, 1, None, 1, prompt_tokens)
    if not compare_gpus:
        return replace(est, engine_report=report, assumptions=tuple(assumptions))
    options = tuple(fewest_gpus(est, device, reserve_) for device in common_devices(hardware_file))
    speeds = tuple(speed_on(est, o.device, o.plan.tp, o.plan.pp, prompt_tokens, gen_tokens,
                          engine_) if o.plan is not None and o.device.bandwidth_bytes_s else None
                   for o in options)
    return replace(est, gpu_options=options, speeds=speeds, assumptions=tuple(assumptions),
                   engine_report=report)


def local_device(db: HardwareDB) -> Device:
    """This machine's first GPU (memory as detected), or a clear error where there is none."""
    from vramest.hardware.local import detect

    found = detect()
    if not found.gpus:
        raise InputError(f"--gpu local found no GPU on this machine ({found.note}); name a GPU "
                         "instead, e.g. --gpu 4090.")
    first = found.gpus[0]
    return device_from_local(first.name, first.total_bytes, None, db)
