"""LoRA slots and speculative decoding applied to an estimate: its memory parts, its decode and
prefill speed, and what vLLM's start-up accounting takes from the KV budget.

The settings travel in the answer's JSON (`lora`, `speculative`), so the engine accounting and
the speed read them back from there; the formulas live in `lora.py` and `speculative.py`.
"""

from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType

from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.inference.lora import LoraServing, host_bytes, slots_bytes, step_cost
from vramest.inference.lora import formula as lora_formula
from vramest.inference.memory import Part, kv_elements_per_token, weight_bytes_by_group
from vramest.inference.speculative import (
    Speculation,
    head_shape,
    shares_embedding,
    spec_formula,
)
from vramest.model.precisions import kv_format, weight_format
from vramest.model.shapes import ModelShape

if TYPE_CHECKING:
    from typing import Any

    from vramest.hardware.database import Device
    from vramest.inference.engines.speed import Engine
    from vramest.inference.estimate import Estimate
    from vramest.inference.throughput import Phase, Throughput


@frozen
class ServingExtras:
    lora: LoraServing | None = None
    speculation: Speculation | None = None

    def __bool__(self) -> bool:
        return self.lora is not None or self.speculation is not None


NO_EXTRAS = ServingExtras()


@frozen
class Proposer:
    """The drafting model or head as vramest sees it: a shape, its format, and its memory."""

    shape: ModelShape
    fmt: str
    weights_bytes: int  # what it adds to the GPU (shared tables not counted again)
    kv_elements_per_token: float
    params: int  # its own parameters (shared tables not counted again)


@lru_cache(maxsize=64)
def proposer(target: ModelShape, target_fmt: str, spec: Speculation) -> Proposer:
    if spec.method == "draft":
        from vramest.model.resolve import resolve_model

        info = resolve_model(model=spec.draft, family="llama", overrides={})
        if info.shape.vocab_size != target.vocab_size:
            from vramest.errors import InputError

            raise InputError(f"The draft model {spec.draft} has a vocabulary of "
                             f"{info.shape.vocab_size:,} tokens and the target "
                             f"{target.vocab_size:,}; a draft model must share the target's "
                             "tokenizer.")
        fmt = info.native_format or info.stored_format or target_fmt
        weights = info.exact_weights_bytes or round(sum(
            weight_bytes_by_group(info.shape, weight_format(fmt)).values()))
        return Proposer(info.shape, weight_format(fmt).name, weights,
                        kv_elements_per_token(info.shape, 1), info.params)
    shape = head_shape(target, spec.method, spec.layers)
    # an MTP module is stored like the target's layers (DeepSeek-V3: FP8); EAGLE heads in 16 bit
    fmt = target_fmt if spec.method == "mtp" else (
        "fp32" if weight_format(target_fmt).compute_bytes == 4 else "bf16")
    groups = weight_bytes_by_group(shape, weight_format(fmt))
    own = sum(groups.values()) - (groups["embedding"] if shares_embedding(spec.method) else 0.0)
    shared = shape.vocab_size * shape.hidden_size if shares_embedding(spec.method) else 0
    return Proposer(shape, weight_format(fmt).name, round(own), kv_elements_per_token(shape, 1),
                    shape.param_count() - shared)


def for_model(extras: ServingExtras, model: str | None, name: str) -> ServingExtras:
    """The settings with what the model's own config decides: how many MTP layers it ships
    (a catalog model; refused when it ships none)."""
    spec = extras.speculation
    if spec is None or spec.method != "mtp" or model is None:
        return extras
    from vramest.inference.speculative import mtp_layers
    from vramest.model.resolve import catalog_name

    match = catalog_name(model)
    if match is None:
        return extras
    return replace(extras, speculation=replace(spec, layers=mtp_layers(match.entry.config, name)))


def apply_memory(est: Estimate, extras: ServingExtras) -> Estimate:
    """The estimate with the adapters' slots and the proposer's weights in `weights`, the
    proposer's KV in `kv_cache`, a formula line for each, and their JSON."""
    if not extras:
        return est
    extras = _checked(extras)
    shape, s = est.model.shape, est.settings
    dtype_bytes = weight_format(s.dtype).compute_bytes
    kv_bytes = kv_format(s.kv_dtype).bytes_per_element
    weights, kv = est.memory.weights, est.memory.kv_cache
    notes: list[str] = []
    json: dict[str, Any] = {}
    if extras.lora is not None:
        slots = slots_bytes(shape, extras.lora, dtype_bytes)
        weights = Part("weights", weights.bytes + slots,
                       f"{weights.formula} + {slots / 2**20:,.1f} MiB of LoRA slots")
        notes.append(lora_formula(shape, extras.lora, dtype_bytes) + "; the CPU adapter cache "
                     f"(--max-cpu-loras {extras.lora.cpu_loras}) holds up to "
                     f"{host_bytes(shape, extras.lora, dtype_bytes) / 2**20:,.0f} MiB of host "
                     "memory.")
        json["lora"] = {**extras.lora.to_json(), "gpu_bytes": slots,
                        "host_bytes": host_bytes(shape, extras.lora, dtype_bytes)}
    if extras.speculation is not None:
        spec = extras.speculation
        prop = proposer(shape, s.dtype, spec)
        per_token = prop.kv_elements_per_token * kv_bytes
        draft_kv = round(kv_elements_per_token(prop.shape, s.ctx) * kv_bytes * s.batch)
        weights = Part("weights", weights.bytes + prop.weights_bytes,
                       f"{weights.formula} + {prop.weights_bytes / 2**30:,.2f} GiB of the "
                       f"{spec.method} proposer ({prop.fmt})")
        kv = Part("kv_cache", kv.bytes + draft_kv,
                  f"{kv.formula} + the proposer's {per_token:,.0f} B per token × {s.ctx} × "
                  f"{s.batch}")
        notes.append(spec_formula(spec) + ".")
        json["speculative"] = {**spec.to_json(), "proposer_layers": spec.layers,
                               "proposer_weights_bytes": prop.weights_bytes,
                               "proposer_params": prop.params,
                               "kv_bytes_per_token": per_token, "kv_cache_bytes": draft_kv}
    memory = replace(est.memory, weights=weights, kv_cache=kv)
    return replace(est, memory=memory, assumptions=(*est.assumptions, *notes),
                   extras=MappingProxyType({**est.extras, **json}))


def extras_json(shape: ModelShape, dtype: str, kv_dtype: str,
                extras: ServingExtras) -> dict[str, Any]:
    """The `lora` and `speculative` JSON of a deployment, each with its formula line."""
    extras = _checked(extras)
    dtype_bytes = weight_format(dtype).compute_bytes
    out: dict[str, Any] = {}
    if extras.lora is not None:
        out["lora"] = {**extras.lora.to_json(),
                       "gpu_bytes": slots_bytes(shape, extras.lora, dtype_bytes),
                       "host_bytes": host_bytes(shape, extras.lora, dtype_bytes),
                       "formula": lora_formula(shape, extras.lora, dtype_bytes)}
    if extras.speculation is not None:
        prop = proposer(shape, dtype, extras.speculation)
        out["speculative"] = {**extras.speculation.to_json(),
                              "proposer_weights_bytes": prop.weights_bytes,
                              "kv_bytes_per_token": prop.kv_elements_per_token *
                              kv_format(kv_dtype).bytes_per_element,
                              "formula": spec_formula(extras.speculation)}
    return out


def _checked(extras: ServingExtras) -> ServingExtras:
    """Settings built directly (the API) pass the same checks as the flags."""
    from vramest.inference.lora import lora_serving
    from vramest.inference.speculative import speculation

    lora, spec = extras.lora, extras.speculation
    checked = speculation(spec.draft or spec.method, spec.k, spec.alpha) if spec else None
    if spec is not None and checked is not None:
        checked = replace(checked, layers=spec.layers)
    return ServingExtras(
        lora_serving(lora.max_loras, lora.max_lora_rank, lora.max_cpu_loras) if lora else None,
        checked)


def extras_of(est: Estimate) -> ServingExtras:
    """The settings apply_memory put in the answer."""
    lora = est.extras.get("lora")
    spec = est.extras.get("speculative")
    return ServingExtras(
        LoraServing(lora["max_loras"], lora["max_lora_rank"], lora["max_cpu_loras"])
        if lora else None,
        Speculation(spec["method"], spec["num_speculative_tokens"], spec["acceptance_rate"],
                    spec["draft_model"], spec["proposer_layers"]) if spec else None)


def vllm_extras(est: Estimate, tp: int) -> tuple[int, float]:
    """For vLLM's start-up accounting on each of `tp` GPUs: the LoRA slot bytes beyond the
    even split the weights get (A of a column-parallel layer and B of a row-parallel one are
    whole on every GPU), and the KV bytes per cached token the proposer's layers add."""
    extras = extras_of(est)
    spec = est.extras.get("speculative")
    draft_kv = float(spec["kv_bytes_per_token"]) if spec else 0.0
    if extras.lora is None or tp == 1:
        return 0, draft_kv
    shape = est.model.shape
    dtype_bytes = weight_format(est.settings.dtype).compute_bytes
    whole = slots_bytes(shape, extras.lora, dtype_bytes)
    return slots_bytes(shape, extras.lora, dtype_bytes, tp) - round(whole / tp), draft_kv


def apply_speed(est: Estimate, speed: Throughput, device: Device, tp: int, pp: int,
                engine: Engine) -> Throughput:
    """Prefill and decode with the adapters' reads and FLOPs, and decode per emitted token
    under speculation: (T_verify + k·T_draft) / E."""
    from vramest.inference.throughput import estimate_throughput, time_phase

    extras = extras_of(est)
    if not extras:
        return speed
    c, shape = est.constants, est.model.shape
    dtype_bytes = weight_format(est.settings.dtype).compute_bytes

    def retime(phase: Phase, extra_bytes: float, extra_flops: float) -> Phase:
        work = replace(phase.work, bytes_moved=phase.work.bytes_moved + extra_bytes,
                       dense_flops=phase.work.dense_flops + extra_flops)
        return time_phase(work, device, speed.precision, c, engine)

    prefill, decode, notes = speed.prefill, speed.decode, list(speed.notes)
    if extras.lora is not None:
        forwards = prefill.work.forwards
        pre = step_cost(shape, extras.lora, dtype_bytes, speed.batch * speed.prompt_tokens,
                        speed.batch, tp)
        dec = step_cost(shape, extras.lora, dtype_bytes, speed.batch, speed.batch, tp)
        prefill = retime(prefill, pre.bytes_read * forwards, pre.flops)
        decode = retime(decode, dec.bytes_read, dec.flops)
        notes.append(f"LoRA: each step reads the slots of up to {extras.lora.max_loras} "
                     f"adapters ({dec.bytes_read / 2**20:,.1f} MiB per GPU at this batch) and "
                     "multiplies every token through A and B; this roofline is a lower "
                     "bound: vLLM measured more (V0: -34% output tokens/s for one rank-8 "
                     "adapter, PR #11267).")
    spec = extras.speculation
    if spec is not None:
        k, w = spec.k, decode.work
        verify = replace(w, dense_flops=w.dense_flops * (k + 1),
                         expert_flops=w.expert_flops * (k + 1), dense_rows=w.dense_rows * (k + 1),
                         expert_rows=w.expert_rows * (k + 1),
                         allreduce_bytes=w.allreduce_bytes * (k + 1))
        t_verify = time_phase(verify, device, speed.precision, c, engine).seconds
        prop = proposer(shape, est.settings.dtype, spec)
        draft = estimate_throughput(prop.shape, weight_format(prop.fmt),
                                    kv_format(est.settings.kv_dtype), device, batch=speed.batch,
                                    prompt_tokens=speed.prompt_tokens, gen_tokens=speed.gen_tokens,
                                    tp=tp, pp=pp, constants=c,
                                    # inside the engine's step: no scheduler cost of its own
                                    engine=replace(engine, step_overhead_s=0.0))
        # the proposer also reads the prompt, to draft from its end
        prefill = replace(prefill, overhead_s=prefill.overhead_s + draft.prefill.seconds)
        per_token = (t_verify + k * draft.decode.seconds) / spec.tokens_per_step
        scale = per_token / decode.seconds
        decode = replace(decode, work=verify, compute_s=None if decode.compute_s is None
                         else decode.compute_s * scale, memory_s=decode.memory_s * scale,
                         overhead_s=decode.overhead_s * scale, comm_s=decode.comm_s * scale)
        notes.append(f"Speculative decoding: verify {t_verify * 1e3:.2f} ms + {k} × draft "
                     f"{draft.decode.seconds * 1e3:.2f} ms per step, {spec.tokens_per_step:.2f} "
                     f"tokens per step at acceptance {spec.alpha:g} (a chain of drafts, as "
                     "vLLM runs it; tree drafting verifies more tokens per step).")
    return replace(speed, prefill=prefill, decode=decode, notes=tuple(notes))
