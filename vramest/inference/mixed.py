"""Different GPUs in one machine, as --gpu "A,B" names them: llama.cpp's layer split, vLLM's
and SGLang's tensor parallelism over unequal cards, and Ollama's scheduler."""

from __future__ import annotations

from collections.abc import Sequence

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, NamedTuple, field_names, replace
from vramest.hardware.database import Device
from vramest.inference.engine_fit import (
    MIXED_GPU_ENGINES,
    engine_fit,
    engine_report_for,
    llamacpp_usable,
    runtime_spread,
    speed_on,
    what_to_change,
)
from vramest.inference.engines.speed import Engine
from vramest.inference.estimate import Estimate
from vramest.inference.placement import FitPlan, PerGPU, Reserve, ecc_note, plan
from vramest.inference.throughput import Throughput
from vramest.inference.verdict import BANDS
from vramest.model.precisions import kv_format
from vramest.units import format_bytes

if TYPE_CHECKING:
    from typing import Any

    from vramest.inference.engines.startup import LlamaCppStartup


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


def place_mixed(est: Estimate, mixed: Mixed, engine: Engine, options: dict[str, object],
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
    report = engine_report_for(est, engine.name, split, devices[0], len(devices), None)

    assert isinstance(report, LlamaCppStartup)
    held = [PerGPU(d.model_bytes, d.kv_bytes, d.compute_bytes,
                   report.cuda_context_bytes if d.layers else 0) for d in report.devices]
    held += [PerGPU(0, 0, 0, 0)] * (len(devices) - len(held))
    binding = min(range(len(devices)), key=lambda i: usable[i] - held[i].total)
    judged = replace(devices[binding], name=f"{devices[binding].name} (the GPU with the least "
                     f"headroom of {' + '.join(d.name for d in devices)})")
    fit_plan = FitPlan(device=judged, tp=1, pp=len(devices), per_gpu=held[binding],
                       usable_bytes=usable[binding], band=BANDS["llamacpp"],
                       band_extra_bytes=runtime_spread(report))
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
        report = engine_report_for(est, engine.name, options, device, fit_plan.tp,
                                fit_plan.usable_bytes)
        judged.append((engine_fit(fit_plan, report), report))
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
    speed = speed_on(est, slowest, tp, pp, *request, engine)
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
