"""Prefill and decode speed from a roofline per phase.

time per forward = max(FLOPs / (peak × compute efficiency), bytes moved / (bandwidth × memory
efficiency)) + fixed per-step and per-layer costs + tensor-parallel all-reduces.
Decode moves the weights a token touches (the routed experts only) and reads the KV cache;
prefill is dominated by matmul FLOPs plus attention FLOPs that grow with the prompt squared.

The work of a phase (`PhaseWork`: FLOPs, bytes, matmul rows) depends only on the model and the
request; the constants only enter `time_phase`, so a fit can re-time the same work cheaply.
"""

from __future__ import annotations

from functools import lru_cache

from vramest.frozen import frozen
from vramest.hardware.database import Device
from vramest.inference.constants import Constants
from vramest.inference.engines.speed import Engine
from vramest.inference.memory import kv_elements_per_token, state_bytes, weight_bytes_by_group
from vramest.model.precisions import KVFormat, WeightFormat
from vramest.model.shapes import LAYER_FULL, LAYER_SLIDING, ModelShape

_EXPERT_ROLES = ("expert_gate", "expert_up", "expert_down")


@frozen
class PhaseWork:
    """What one phase asks of each GPU, before any efficiency is applied."""

    dense_flops: float  # per GPU
    expert_flops: float  # per GPU
    dense_rows: float  # token rows per matmul
    expert_rows: float  # token rows each expert's matmul sees
    bytes_moved: float  # per GPU
    forwards: int  # forward passes (prefill chunks, or one decode step)
    allreduce_bytes: float  # per all-reduce, per forward
    layers: int
    tp: int
    pp: int
    is_prefill: bool = False


@frozen
class Phase:
    """One phase timed: each roof's time and the fixed costs."""

    work: PhaseWork
    compute_s: float | None  # None where the device publishes no compute figure
    memory_s: float
    overhead_s: float
    comm_s: float

    @property
    def seconds(self) -> float:
        return max(self.compute_s or 0.0, self.memory_s) + self.overhead_s + self.comm_s

    @property
    def bound(self) -> str:
        return "compute" if (self.compute_s or 0.0) > self.memory_s else "memory"


@frozen
class Workload:
    shape_name: str
    batch: int
    prompt_tokens: int
    gen_tokens: int
    precision: str
    prefill: PhaseWork
    decode: PhaseWork  # one decode step of the whole batch, at the mean position


@frozen
class Throughput:
    gpu: str
    num_gpus: int
    batch: int
    prompt_tokens: int
    gen_tokens: int
    precision: str
    prefill: Phase
    decode: Phase
    notes: tuple[str, ...]
    engine: str = ""  # the engine the speed is for, with what it stands for

    @property
    def prefill_tokens_per_s(self) -> float | None:
        if self.prefill.compute_s is None:
            return None
        return self.batch * self.prompt_tokens / self.prefill.seconds

    @property
    def decode_tokens_per_s(self) -> float:
        """Per sequence."""
        return 1.0 / self.decode.seconds

    @property
    def decode_tokens_per_s_total(self) -> float:
        return self.batch / self.decode.seconds

    @property
    def time_to_first_token_s(self) -> float | None:
        return None if self.prefill.compute_s is None else self.prefill.seconds

    @property
    def request_seconds(self) -> float | None:
        ttft = self.time_to_first_token_s
        return None if ttft is None else ttft + self.gen_tokens * self.decode.seconds

    def to_json(self) -> dict[str, object]:
        return {
            "gpu": self.gpu, "num_gpus": self.num_gpus, "batch": self.batch,
            "prompt_tokens": self.prompt_tokens, "gen_tokens": self.gen_tokens,
            "precision": self.precision,
            "prefill_tokens_per_s": self.prefill_tokens_per_s,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "decode_tokens_per_s_total": self.decode_tokens_per_s_total,
            "time_to_first_token_s": self.time_to_first_token_s,
            "request_seconds": self.request_seconds,
            "prefill_bound": self.prefill.bound, "decode_bound": self.decode.bound,
            "notes": list(self.notes), "engine": self.engine,
        }


def compute_precision(fmt: WeightFormat, device: Device) -> str:
    """The matmul precision a format runs in: weight-only quantization computes in 16 bit."""
    if fmt.name == "fp8" and dict(device.dense_tflops).get("fp8"):
        return "fp8"
    if fmt.name == "nvfp4" and dict(device.dense_tflops).get("fp4"):
        return "fp4"
    if fmt.name in ("fp32", "gguf-f32"):
        return "fp32"
    return "fp16"


def _attention_flops_per_token(shape: ModelShape, positions: range) -> float:
    """QKᵀ and softmax·V for one new token attending to `p` earlier tokens, averaged over the
    positions `p` given (sliding layers see at most their window)."""
    width = shape.num_heads * (shape.qk_nope_head_dim + shape.qk_rope_head_dim + shape.v_head_dim
                               if shape.is_mla else 2 * shape.head_dim)
    counts = shape.layer_kind_counts
    full, sliding = counts.get(LAYER_FULL, 0), counts.get(LAYER_SLIDING, 0)
    seen = _capped_sum(positions, None) * full
    if sliding:
        seen += sliding * _capped_sum(positions, shape.sliding_window)
    return 2.0 * width * seen / len(positions)


def _capped_sum(positions: range, cap: int | None) -> int:
    """sum(min(p, cap) for p in positions), in closed form (the range is arithmetic)."""
    n, first, step = len(positions), positions.start, positions.step
    below = n if not cap else max(0, min(n, -(-(cap - first) // step)))  # terms under the cap
    return below * first + step * below * (below - 1) // 2 + (n - below) * (cap or 0)


@lru_cache(maxsize=256)
def _params(shape: ModelShape) -> tuple[float, float]:
    """(matmul weights outside the experts incl. the output head, weights of one expert per
    MoE layer summed over layers)."""
    dense = expert = 0.0
    for t, times in shape.counted_tensors():
        if t.role in ("embedding", "position_embedding", "norm", "bias", "extra"):
            continue
        if t.role in _EXPERT_ROLES:
            expert += times * t.rows * t.cols
        else:
            dense += times * t.elements
    if shape.tie_embeddings:
        dense += shape.vocab_size * shape.hidden_size
    return dense, expert


def workload(shape: ModelShape, fmt: WeightFormat, kv: KVFormat, device: Device, *, batch: int,
             prompt_tokens: int, gen_tokens: int, tp: int = 1, pp: int = 1,
             prefill_chunk: int | None = None, context_depth: int = 0) -> Workload:
    """The work of B sequences: a prompt of P tokens (after `context_depth` cached tokens), then
    G generated tokens. Prefill runs in forwards of `prefill_chunk` tokens (all at once by
    default); each forward reads the weights again."""
    return _workload(shape, fmt, kv, compute_precision(fmt, device), batch=batch,
                     prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, tp=tp, pp=pp,
                     prefill_chunk=prefill_chunk, context_depth=context_depth)


@lru_cache(maxsize=1024)  # the device enters only through its precision: a GPU table's cards
def _workload(shape: ModelShape, fmt: WeightFormat, kv: KVFormat, precision: str, *,  # share it
              batch: int, prompt_tokens: int, gen_tokens: int, tp: int, pp: int,
              prefill_chunk: int | None, context_depth: int) -> Workload:
    gpus = tp * pp
    groups = weight_bytes_by_group(shape, fmt)
    dense_params, expert_params = _params(shape)
    k = shape.experts_per_token if shape.is_moe else 0
    head = shape.vocab_size * shape.hidden_size
    layers = shape.num_layers

    def kv_bytes(tokens: int) -> float:
        """KV bytes of one sequence holding `tokens` tokens (sliding layers capped), and its
        recurrent state, read and written once per step."""
        return kv_elements_per_token(shape, tokens) * kv.bytes_per_element + 2 * state_bytes(
            shape, kv)

    # --- prefill ----------------------------------------------------------------------
    tokens = batch * prompt_tokens
    forwards = max(1, -(-tokens // prefill_chunk)) if prefill_chunk else 1
    positions = _sample_positions(context_depth, prompt_tokens)
    attention = batch * prompt_tokens * _attention_flops_per_token(shape, positions)
    prefill = PhaseWork(
        dense_flops=(2 * tokens * (dense_params - head) + 2 * batch * head + attention) / gpus,
        expert_flops=2 * tokens * expert_params * k / gpus,
        dense_rows=tokens / forwards,
        expert_rows=max(1.0, tokens / forwards * k / shape.num_experts) if shape.is_moe else 0.0,
        bytes_moved=(forwards * sum(groups.values())
                     + batch * kv_bytes(context_depth + prompt_tokens)) / gpus,
        forwards=forwards, allreduce_bytes=tokens / forwards * shape.hidden_size *
        fmt.compute_bytes, layers=layers, tp=tp, pp=pp, is_prefill=True)

    # --- decode: one new token for each of B sequences, at the mean position ----------
    position = context_depth + prompt_tokens + gen_tokens // 2
    if shape.is_moe:
        touched = experts_touched(shape, batch)
        expert_bytes = groups["experts"] * touched
    else:
        touched, expert_bytes = 1.0, 0.0
    head_bytes = groups["lm_head"] if not shape.tie_embeddings else groups["embedding"]
    decode = PhaseWork(
        dense_flops=batch * (2 * dense_params + _attention_flops_per_token(
            shape, range(position, position + 1))) / gpus,
        expert_flops=batch * 2 * expert_params * k / gpus,
        # each touched expert sees its share of the B·k routed rows, at least one
        dense_rows=batch, expert_rows=max(1.0, batch * k / (shape.num_experts * touched))
        if shape.is_moe else 0.0,
        bytes_moved=(groups["layers"] + expert_bytes + head_bytes + batch * kv_bytes(position))
        / gpus,
        forwards=1, allreduce_bytes=batch * shape.hidden_size * fmt.compute_bytes,
        layers=layers, tp=tp, pp=pp)
    return Workload(shape_name=shape.name, batch=batch, prompt_tokens=prompt_tokens,
                    gen_tokens=gen_tokens, precision=precision, prefill=prefill, decode=decode)


def experts_touched(shape: ModelShape, batch: int) -> float:
    """Share of a layer's experts hit by at least one of `batch` tokens, routing assumed
    uniform."""
    return 1 - (1 - shape.experts_per_token / shape.num_experts) ** batch


def time_phase(work: PhaseWork, device: Device, precision: str, constants: Constants,
               engine: Engine) -> Phase:
    peak = engine_peak(device, precision, engine)
    mem_eff, comp_eff = engine_efficiencies(device, constants, engine)
    bandwidth = (device.bandwidth_bytes_s or 0.0) * mem_eff
    if not bandwidth:
        raise_missing_bandwidth(device)
    compute_s = None
    if peak:
        effective = work.dense_flops + work.expert_flops
        if work.is_prefill:  # decode GEMVs are bound by streaming the weights instead
            effective = work.dense_flops / gemm_efficiency(work.dense_rows, constants)
            if work.expert_flops:
                effective += work.expert_flops / gemm_efficiency(work.expert_rows, constants)
        compute_s = effective / (peak * comp_eff)
    overhead = work.forwards * (engine.step_overhead_s + engine.layer_overhead_s * work.layers
                                / work.pp)
    comm = work.forwards * allreduce_seconds(work, device, constants) / work.pp
    # pipeline parallel: a token passes the stages one after another
    pp = work.pp
    return Phase(work=work, compute_s=None if compute_s is None else compute_s * pp,
                 memory_s=work.bytes_moved / bandwidth * pp, overhead_s=overhead * pp,
                 comm_s=comm * pp)


def time_workload(load: Workload, device: Device, constants: Constants,
                  engine: Engine) -> Throughput:
    prefill = time_phase(load.prefill, device, load.precision, constants, engine)
    decode = time_phase(load.decode, device, load.precision, constants, engine)
    _, peak_source = device.flops(load.precision)
    notes = [f"compute peak: {peak_source}" if prefill.compute_s is not None else
             f"{device.name} publishes no {load.precision} compute figure: prefill speed "
             "unknown"]
    label = f"{engine.name} ({engine.description})"
    notes.append(f"engine: {label}")
    if load.prefill.pp > 1:
        notes.append(f"pipeline parallel over {load.prefill.pp} stages: a token passes every "
                     "stage in turn")
    return Throughput(gpu=device.name, num_gpus=load.prefill.tp * load.prefill.pp,
                      batch=load.batch, prompt_tokens=load.prompt_tokens,
                      gen_tokens=load.gen_tokens, precision=load.precision, prefill=prefill,
                      decode=decode, notes=tuple(notes), engine=label)


@lru_cache(maxsize=4096)  # searches and tables ask for the same point again and again
def estimate_throughput(shape: ModelShape, fmt: WeightFormat, kv: KVFormat, device: Device,
                        *, batch: int, prompt_tokens: int, gen_tokens: int, tp: int = 1,
                        pp: int = 1, constants: Constants, engine: Engine,
                        prefill_chunk: int | None = None, context_depth: int = 0) -> Throughput:
    load = workload(shape, fmt, kv, device, batch=batch, prompt_tokens=prompt_tokens,
                    gen_tokens=gen_tokens, tp=tp, pp=pp, prefill_chunk=prefill_chunk,
                    context_depth=context_depth)
    return time_workload(load, device, constants, engine)


def gemm_efficiency(rows: float, constants: Constants) -> float:
    """Share of the large-GEMM rate a matmul of `rows` token rows reaches: rows / (rows + M0)."""
    return rows / (rows + constants.gemm_half_efficiency_rows) if rows > 0 else 1.0


def _sample_positions(start: int, count: int) -> range:
    """Positions to average causal attention over (exact sums get slow for long prompts)."""
    step = max(1, count // 64)
    return range(start + step // 2, start + count, step) or range(start, start + 1)


def allreduce_seconds(work: PhaseWork, device: Device, constants: Constants) -> float:
    """Two all-reduces per layer (after attention and after the MLP), ring algorithm."""
    if work.tp <= 1:
        return 0.0
    return 2 * work.layers * (2 * (work.tp - 1) / work.tp * work.allreduce_bytes /
                              allreduce_bus_bytes_s(device, constants)
                              + constants.allreduce_latency_s)


def allreduce_bus_bytes_s(device: Device, constants: Constants) -> float:
    """A ring moves 2(n-1)/n of the buffer over each GPU's link at this bus bandwidth: the
    calibrated one (a profile's fitted all-reduce), else one direction of the bidirectional
    link figure datasheets quote × the ring's efficiency."""
    if constants.allreduce_bus_bytes_s > 0:
        return constants.allreduce_bus_bytes_s
    link = device.interconnect_bytes_s or device.pcie_bytes_s or 32e9
    return link / 2 * constants.allreduce_efficiency


def engine_peak(device: Device, precision: str, engine: Engine) -> float | None:
    peak, _ = device.flops(precision)
    table = dict(device.dense_tflops)
    # Pascal GeForce has no tensor cores: its rows give 16-bit math at the fp32 rate, with
    # nothing to double
    tensor_cores = table.get("fp16") is None or table.get("fp16") != table.get("fp32")
    if peak and engine.fp16_accumulate and precision in ("fp16", "bf16") and tensor_cores and \
            device.vendor == "nvidia" and device.device_class == "consumer":
        return 2 * peak
    return peak


def engine_efficiencies(device: Device, constants: Constants, engine: Engine) -> tuple[float, float]:
    kind = device.kind if device.kind in ("apple", "cpu") else "gpu"
    memory = getattr(constants, f"memory_efficiency_{kind}")
    compute = getattr(constants, f"compute_efficiency_{kind}")
    return (min(1.0, memory * engine.memory_efficiency_scale),
            min(1.0, compute * engine.compute_efficiency_scale))


def raise_missing_bandwidth(device: Device) -> None:
    from vramest.errors import InputError

    raise InputError(f"{device.name} has no memory bandwidth in the hardware database, so its "
                     "speed cannot be estimated; add memory_bandwidth_gbs with --hardware-file.")
