"""The numbers behind the charts: memory and speed swept over context length or batch.

Pure functions of an `Estimate` (its model and settings stay fixed, one axis varies); no
plotting library is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from vramest.errors import InputError, short
from vramest.frozen import frozen
from vramest.hardware.database import Device
from vramest.inference.engines.speed import Engine
from vramest.inference.engines.speed import engine as engine_by_name
from vramest.inference.estimate import Estimate, estimate_at
from vramest.inference.placement import PerGPU, Reserve, per_gpu_memory, plan
from vramest.inference.throughput import estimate_throughput
from vramest.model.precisions import kv_format, weight_format

AXES = ("ctx", "batch")
DEFAULT_CTX_UPPER = 32 * 1024
DEFAULT_BATCH_UPPER = 64
DEFAULT_SPEED_BATCH_UPPER = 256
MAX_CTX_UPPER = 4 * 1024**2
MAX_BATCH_UPPER = 16 * 1024
SWEEP_POINTS = 64
# A crossing further out than this many times the default range is left off the chart
# (the note under the panel still gives it) rather than squashing the interesting part.
_CROSSING_STRETCH = 4


@frozen
class MemoryPoint(PerGPU):
    """Bytes per GPU at one context length or batch `x`."""

    x: int = 0


@frozen
class GpuLimit:
    """A GPU's usable memory and the largest context or batch that fits in it (0: none)."""

    name: str
    usable_bytes: int
    largest_fit: int


@frozen
class MemorySweep:
    model: str
    dtype: str
    kv_dtype: str
    axis: str  # "ctx" or "batch"
    fixed: int  # the batch when the context varies, the context when the batch varies
    num_gpus: int
    points: tuple[MemoryPoint, ...]
    limits: tuple[GpuLimit, ...]
    trained_ctx: int | None = None
    pp: int = 1  # pipeline stages; num_gpus // pp tensor-parallel GPUs in each

    @property
    def upper(self) -> int:
        return self.points[-1].x


@frozen
class SpeedPoint:
    batch: int
    decode_tokens_per_s: float  # all sequences together
    decode_tokens_per_s_per_sequence: float
    prefill_tokens_per_s: float | None  # None where the device publishes no compute figure
    decode_bound: str  # "memory" or "compute"
    prefill_bound: str


@frozen
class SpeedSweep:
    model: str
    dtype: str
    gpu: str
    num_gpus: int
    ctx: int
    prompt_tokens: int
    gen_tokens: int
    engine: str
    points: tuple[SpeedPoint, ...]
    largest_batch: int  # the most sequences that fit in memory (0: not even one)

    @property
    def upper(self) -> int:
        return self.points[-1].batch


def memory_sweeps(bases: Sequence[Estimate], axis: str, devices: Sequence[Device] = (), *,
                  num_gpus: int = 1, reserve: Reserve | None = None, upper: int | None = None,
                  count: int = SWEEP_POINTS, pp: int = 1) -> tuple[MemorySweep, ...]:
    """Memory per GPU (`num_gpus` in all: tensor parallel within each of `pp` pipeline stages)
    along `axis` for each estimate (one per precision), over one common range: `upper`, or a
    default widened to show the crossings."""
    if axis not in AXES:
        raise InputError(f"Unknown --vs {short(axis)}; accepted: {', '.join(AXES)}.")
    reserve = reserve or Reserve()
    limits = [tuple(_limit(base, device, axis, num_gpus, reserve, pp) for device in devices)
              for base in bases]
    if upper is None:
        trained = max((b.model.shape.max_context or 0) for b in bases)
        default = (trained or DEFAULT_CTX_UPPER) if axis == "ctx" else DEFAULT_BATCH_UPPER
        upper = stretch_to_show(default, [lim.largest_fit for group in limits for lim in group])
    cap = MAX_CTX_UPPER if axis == "ctx" else MAX_BATCH_UPPER
    if not 2 <= upper <= cap:
        raise InputError(f"--up-to {upper} is out of range; give 2 to {cap}.")
    return tuple(_memory_sweep(base, axis, group, num_gpus, upper, count, pp)
                 for base, group in zip(bases, limits, strict=True))


def _memory_sweep(base: Estimate, axis: str, limits: tuple[GpuLimit, ...], num_gpus: int,
                  upper: int, count: int, pp: int = 1) -> MemorySweep:
    points = []
    for x in sweep_values(upper, count):
        est = estimate_at(base, ctx=x) if axis == "ctx" else estimate_at(base, batch=x)
        per = per_gpu_memory(est, num_gpus // pp, pp)
        points.append(MemoryPoint(per.weights, per.kv_cache, per.activations, per.overhead, x=x))
    s = base.settings
    return MemorySweep(model=base.model.name, dtype=s.dtype, kv_dtype=s.kv_dtype, axis=axis,
                       fixed=s.batch if axis == "ctx" else s.ctx, num_gpus=num_gpus,
                       points=tuple(points), limits=limits,
                       trained_ctx=base.model.shape.max_context, pp=pp)


def _limit(base: Estimate, device: Device, axis: str, num_gpus: int, reserve: Reserve,
           pp: int = 1) -> GpuLimit:
    fit = plan(base, device, num_gpus, pp, reserve, want_max_ctx=axis == "ctx",
               want_max_batch=axis == "batch")
    largest = fit.max_ctx if axis == "ctx" else fit.max_batch
    return GpuLimit(device.name, fit.usable_bytes, largest or 0)


def stretch_to_show(default: int, crossings: Sequence[int]) -> int:
    """The default range, widened to show crossings not far beyond it."""
    near = [c for c in crossings if default < c <= default * _CROSSING_STRETCH]
    if not near:
        return default
    return round_up_nicely(max(near) * 1.15)


def round_up_nicely(value: float) -> int:
    """Up to 1, 1.5, 2, 3, 4, 6 or 8 × a power of two."""
    power = 2 ** max(0, math.floor(math.log2(max(value, 1))))
    for factor in (1, 1.5, 2, 3, 4, 6, 8):
        if value <= factor * power:
            return int(factor * power)
    return int(8 * power)


def sweep_values(upper: int, count: int) -> tuple[int, ...]:
    """1, then about `count` evenly spaced integers up to `upper` (every integer if fewer)."""
    if upper <= count:
        return tuple(range(1, upper + 1))
    return tuple(sorted({1} | {round(upper * i / count) for i in range(1, count + 1)}))


def batch_ladder(upper: int) -> tuple[int, ...]:
    """1, 2, 3, 4, 6, 8, 12, 16, … up to `upper` (even steps on a log axis)."""
    values = {upper}
    power = 1
    while power <= upper:
        values.add(power)
        if power * 3 // 2 <= upper and power >= 2:
            values.add(power * 3 // 2)
        power *= 2
    return tuple(sorted(values))


def speed_sweeps(bases: Sequence[Estimate], device: Device, *, num_gpus: int = 1,
                 reserve: Reserve | None = None, prompt_tokens: int | None = None,
                 gen_tokens: int = 128, engine: str = "generic",
                 upper: int | None = None, pp: int = 1) -> tuple[SpeedSweep, ...]:
    """Prefill and decode tokens/s over batch sizes on `num_gpus` × `device` for each estimate
    (one per precision), over one common range, with the largest batch that fits in memory."""
    reserve = reserve or Reserve()
    largest = [_limit(base, device, "batch", num_gpus, reserve, pp).largest_fit for base in bases]
    if upper is None:
        upper = stretch_to_show(DEFAULT_SPEED_BATCH_UPPER, largest)
    if not 2 <= upper <= MAX_BATCH_UPPER:
        raise InputError(f"--up-to {upper} is out of range; give 2 to {MAX_BATCH_UPPER}.")
    runner = engine_by_name(engine)
    return tuple(_speed_sweep(base, device, num_gpus, prompt_tokens, gen_tokens, runner, upper,
                              fits, pp) for base, fits in zip(bases, largest, strict=True))


def _speed_sweep(base: Estimate, device: Device, num_gpus: int, prompt_tokens: int | None,
                 gen_tokens: int, runner: Engine, upper: int, largest: int,
                 pp: int = 1) -> SpeedSweep:
    s = base.settings
    prompt = prompt_tokens or s.ctx
    chunk = s.explicit_chunk
    fmt, kv = weight_format(s.dtype), kv_format(s.kv_dtype)
    points = []
    for batch in batch_ladder(upper):
        speed = estimate_throughput(base.model.shape, fmt, kv, device, batch=batch,
                                    prompt_tokens=prompt, gen_tokens=gen_tokens,
                                    tp=num_gpus // pp, pp=pp, constants=base.constants,
                                    engine=runner,
                                    prefill_chunk=chunk)
        points.append(SpeedPoint(batch, speed.decode_tokens_per_s_total,
                                 speed.decode_tokens_per_s, speed.prefill_tokens_per_s,
                                 speed.decode.bound, speed.prefill.bound))
    return SpeedSweep(model=base.model.name, dtype=s.dtype, gpu=device.name, num_gpus=num_gpus,
                      ctx=s.ctx, prompt_tokens=prompt, gen_tokens=gen_tokens,
                      engine=runner.name, points=tuple(points), largest_batch=largest)


@frozen
class Agreement:
    """One predicted value beside its measurement."""

    label: str
    predicted: float
    measured: float

    @property
    def error(self) -> float:
        """Signed relative error of the prediction."""
        return self.predicted / self.measured - 1 if self.measured else math.nan


def agreements(rows: Sequence[tuple[str, float, float]]) -> tuple[Agreement, ...]:
    """Plain (label, predicted, measured) rows, keeping only those with positive values."""
    return tuple(Agreement(label, float(p), float(m)) for label, p, m in rows if p > 0 and m > 0)


def median_abs_error(points: Sequence[Agreement]) -> float:
    errors = sorted(abs(p.error) for p in points)
    if not errors:
        return math.nan
    middle = len(errors) // 2
    return errors[middle] if len(errors) % 2 else (errors[middle - 1] + errors[middle]) / 2
