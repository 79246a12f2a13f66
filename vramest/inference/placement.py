"""Fit planning: memory per GPU under tensor / pipeline parallelism, and what fits where.

Tensor parallelism splits the weights (vocabulary-parallel embeddings included) and the KV
cache by heads; KV heads fewer than the TP degree are replicated, and an MLA latent cache is
replicated on every rank. The MLP part of the activations splits, the hidden states do not.
Every GPU carries its own runtime overhead. Pipeline parallelism splits the layers; the first
and last stages also hold the embeddings and the output head.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from vramest.errors import InputError, short
from vramest.frozen import frozen
from vramest.hardware.database import Device
from vramest.inference.constants import Constants
from vramest.inference.estimate import Estimate, estimate_at
from vramest.inference.memory import ffn_width, weight_bytes_by_group
from vramest.inference.verdict import BANDS, DOES_NOT_FIT, FITS, ErrorBand, verdict
from vramest.model.precisions import weight_format
from vramest.model.shapes import ModelShape
from vramest.units import format_bytes, number_text, parse_bytes, parse_share

DEFAULT_RESERVE = 0.05
RESERVE_NOTE = ("5% of each GPU is kept free by default (--reserve): the driver shows 1-3% less "
                "than the nominal size, and allocators fragment")
PARALLEL_DEGREES = (1, 2, 4, 8)
MULTI_NODE_GPUS = (16, 32, 64)
_MAX_SEARCH_TOKENS = 16 * 1024**2
_MAX_SEARCH_BATCH = 1 << 20


def ecc_note(device: Device) -> str:
    """Why a device offers less than its nominal memory (in-band ECC or unified memory)."""
    if device.addressable_override_bytes is not None:
        return (f"{device.name} shares its {format_bytes(device.memory_bytes)} with the CPU and "
                f"the OS: about {format_bytes(device.addressable_bytes)} is addressable by a "
                "CUDA process (firmware carve-outs and the OS keep the rest).")
    return (f"{device.name} keeps ECC on by default, in band: {format_bytes(device.memory_bytes)} "
            f"nominal, {format_bytes(device.addressable_bytes)} addressable (nvidia-smi's total).")


@frozen
class Reserve:
    fraction: float = DEFAULT_RESERVE
    bytes: int = 0
    given: bool = False  # the user's --reserve, not the default (llama.cpp replaces the default)

    def usable(self, device: Device) -> int:
        """What a model may take of one GPU: its addressable memory less the reserve, and on
        unified memory less what the OS holds at start (Device.os_in_use_bytes)."""
        return self.left_of(device.addressable_bytes) - device.os_in_use_bytes

    def left_of(self, total: int) -> int:
        """`total` less what this reserve keeps free of it."""
        return int(total * (1 - self.fraction)) - self.bytes


def parse_reserve(text: str | float | None) -> Reserve:
    """'10%', '0.1' (a fraction) or '2GiB' (bytes kept free per GPU)."""
    if text is None:
        return Reserve()
    raw = number_text(text)
    if not raw.endswith("%") and not raw.replace(".", "", 1).isdigit():
        return Reserve(0.0, parse_bytes(raw or text, what="--reserve"), given=True)
    fraction = parse_share(raw, what="--reserve", accepted="give a fraction (0.1), a percentage "
                           "(10%) or a size (2GiB)")
    if not raw.endswith("%") and fraction >= 1:  # a bare 2 is neither a share nor a size
        raise InputError(f"--reserve {short(text)} is ambiguous; give a fraction below 1 (0.1), a "
                         "percentage (10%) or a size with its unit (2GiB).")
    if not 0 <= fraction < 1:
        raise InputError(f"--reserve {short(text)} must keep less than 100% of the GPU free.")
    return Reserve(fraction, 0, given=True)


def check_parallelism(shape: ModelShape, tp: int, pp: int) -> None:
    """Raise a plain error for a TP degree that does not divide the heads, or too many stages."""
    if tp < 1 or pp < 1:
        raise InputError("--num-gpus and --pp must be at least 1.")
    if shape.num_heads % tp:
        raise InputError(
            f"Tensor parallelism over {tp} GPUs cannot split {shape.num_heads} attention heads "
            f"evenly; valid degrees for this model: {', '.join(map(str, valid_tp_degrees(shape)))}"
            " (or add --pp for pipeline stages).")
    if not shape.is_mla and shape.num_kv_heads % tp and tp % shape.num_kv_heads:
        raise InputError(
            f"Tensor parallelism over {tp} GPUs cannot share {shape.num_kv_heads} KV heads "
            f"evenly; valid degrees: {', '.join(map(str, valid_tp_degrees(shape)))}.")
    if pp > shape.num_layers:
        raise InputError(f"--pp {pp} is more pipeline stages than the model's "
                         f"{shape.num_layers} layers.")


def valid_tp_degrees(shape: ModelShape, limit: int = 64) -> list[int]:
    out = []
    for tp in range(1, limit + 1):
        if shape.num_heads % tp:
            continue
        if not shape.is_mla and shape.num_kv_heads % tp and tp % shape.num_kv_heads:
            continue
        out.append(tp)
    return out


@frozen
class PerGPU:
    weights: int
    kv_cache: int
    activations: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.overhead

    def to_json(self) -> dict[str, int]:
        return {"weights": self.weights, "kv_cache": self.kv_cache,
                "activations": self.activations, "overhead": self.overhead, "total": self.total}


def per_gpu_memory(est: Estimate, tp: int = 1, pp: int = 1) -> PerGPU:
    m = est.memory
    return _per_gpu(est.model.shape, est.settings.dtype, est.constants, m.weights.bytes,
                    m.kv_cache.bytes, m.activations.bytes, m.overhead.bytes, tp, pp)


@lru_cache(maxsize=4096)  # fit searches ask for the same split of the same parts again
def _per_gpu(shape: ModelShape, dtype: str, c: Constants, weights_bytes: int, kv_bytes: int,
             activation_bytes: int, overhead_bytes: int, tp: int, pp: int) -> PerGPU:
    check_parallelism(shape, tp, pp)
    groups = weight_bytes_by_group(shape, weight_format(dtype))
    total_groups = sum(groups.values()) or 1.0
    # exact stored bytes (from files) keep the proportions of the modelled groups
    scale = weights_bytes / total_groups
    blocks = (groups["layers"] + groups["experts"]) * scale
    ends = (groups["embedding"] + groups["lm_head"]) * scale
    if pp > 1:
        ends = max(groups["embedding"], groups["lm_head"]) * scale
    weights = blocks / (tp * pp) + ends / tp
    if shape.is_mla:
        kv_share = 1.0
    elif shape.num_kv_heads % tp == 0:
        kv_share = 1 / tp
    else:  # fewer KV heads than ranks: each rank keeps one head
        kv_share = 1 / shape.num_kv_heads
    kv = kv_bytes * kv_share / pp
    ffn_term = c.activation_ffn_factor * ffn_width(shape)
    hidden_term = c.activation_hidden_factor * shape.hidden_size
    ffn_share = ffn_term / (ffn_term + hidden_term) if ffn_term + hidden_term else 0.0
    activations = activation_bytes * (ffn_share / tp + (1 - ffn_share))
    return PerGPU(round(weights), round(kv), round(activations), overhead_bytes)


@frozen
class FitPlan:
    device: Device
    tp: int
    pp: int
    per_gpu: PerGPU
    usable_bytes: int
    max_ctx: int | None = None
    max_batch: int | None = None
    band: ErrorBand = BANDS["generic"]
    band_basis_bytes: int | None = None  # what band.fraction multiplies; default per-GPU total
    band_extra_bytes: int = 0  # a fixed uncertainty beside the fraction (llama.cpp's runtime,
    # vLLM 0.2.5's reclaimed all-reduce inputs)
    advice: tuple[str, ...] = ()  # what to change when the verdict is not "fits"
    refused: str = ""  # the engine will not start whatever the memory (e.g. vLLM's TP checks)
    on_host: str = ""  # what llama.cpp or Ollama keeps in system memory: "37 of 80 layers"

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp

    @property
    def headroom_bytes(self) -> int:
        return self.usable_bytes - self.per_gpu.total

    @property
    def fits(self) -> bool:
        return self.headroom_bytes >= 0 and not self.refused

    @property
    def error_band_bytes(self) -> int:
        basis = self.per_gpu.total if self.band_basis_bytes is None else self.band_basis_bytes
        return round(self.band.fraction * max(basis, 0)) + self.band_extra_bytes

    @property
    def verdict(self) -> str:
        if self.refused:
            return DOES_NOT_FIT
        return verdict(self.headroom_bytes, self.error_band_bytes)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "gpu": self.device.name, "num_gpus": self.num_gpus, "tensor_parallel": self.tp,
            "pipeline_parallel": self.pp, "fits": self.fits, "verdict": self.verdict,
            "error_band": self.band.to_json(self.error_band_bytes) | (
                {"runtime_spread_bytes": self.band_extra_bytes} if self.band_extra_bytes else {}),
            "per_gpu_bytes": self.per_gpu.total, "per_gpu": self.per_gpu.to_json(),
            "usable_bytes": self.usable_bytes, "headroom_bytes": self.headroom_bytes,
        }
        if self.advice:
            out["what_to_change"] = list(self.advice)
        if self.refused:
            out["refused"] = self.refused
        if self.on_host:
            out["in_system_memory"] = self.on_host
        if self.max_ctx is not None:
            out["max_ctx"] = self.max_ctx
        if self.max_batch is not None:
            out["max_batch"] = self.max_batch
        return out


def plan(est: Estimate, device: Device, num_gpus: int = 1, pp: int = 1,
         reserve: Reserve | None = None, want_max_ctx: bool = False,
         want_max_batch: bool = False) -> FitPlan:
    reserve = reserve or Reserve()
    if num_gpus < 1:
        raise InputError("--num-gpus must be at least 1.")
    if num_gpus % pp:
        raise InputError(f"--num-gpus {num_gpus} is not a multiple of --pp {pp}; each pipeline "
                         "stage needs the same number of GPUs.")
    tp = num_gpus // pp
    usable = reserve.usable(device)
    if usable <= 0:
        raise InputError(f"--reserve leaves nothing usable on {device.name}.")
    per_gpu = per_gpu_memory(est, tp, pp)
    max_ctx = largest_fitting(lambda ctx: _fits(est, device, tp, pp, usable, ctx=ctx),
                      _MAX_SEARCH_TOKENS) if want_max_ctx else None
    max_batch = largest_fitting(lambda b: _fits(est, device, tp, pp, usable, batch=b),
                        _MAX_SEARCH_BATCH) if want_max_batch else None
    return FitPlan(device, tp, pp, per_gpu, usable, max_ctx, max_batch)


def longest_context(est: Estimate, device: Device, tp: int, pp: int, usable: int) -> int:
    """The longest context whose memory per GPU stays within `usable` bytes (0: none)."""
    if usable <= 0:
        return 0
    return largest_fitting(lambda ctx: _fits(est, device, tp, pp, usable, ctx=ctx),
                           _MAX_SEARCH_TOKENS)


def _fits(est: Estimate, device: Device, tp: int, pp: int, usable: int, *,
          ctx: int | None = None, batch: int | None = None) -> bool:
    other = estimate_at(est, ctx=ctx, batch=batch)
    return per_gpu_memory(other, tp, pp).total <= usable


def largest_fitting(fits: Callable[[int], bool], upper: int) -> int:
    """The largest n in [1, upper] with fits(n) for a monotone fits (True, then False), or 0
    when even 1 does not fit: doubling, then bisection."""
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= upper and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, upper + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


@frozen
class DeviceOption:
    """The fewest GPUs of one kind that hold the model, or why none do."""

    device: Device
    plan: FitPlan | None
    reason: str = ""


def fewest_gpus(est: Estimate, device: Device, reserve: Reserve | None = None) -> DeviceOption:
    shape = est.model.shape
    tried: list[tuple[int, int]] = [(tp, 1) for tp in PARALLEL_DEGREES]
    tried += [(8, n // 8) for n in MULTI_NODE_GPUS]
    valid = valid_tp_degrees(shape)
    for tp, pp in tried:
        if tp not in valid or pp > shape.num_layers:
            continue
        option = plan(est, device, tp * pp, pp, reserve)
        if option.fits:
            return DeviceOption(device, option)
    largest = max(MULTI_NODE_GPUS)
    return DeviceOption(device, None, f"does not fit on {largest} GPUs")


def describe(plan_: FitPlan) -> str:
    said = plan_.verdict
    verdict_text = "will not start" if plan_.refused else {
        FITS: "fits", DOES_NOT_FIT: "does NOT fit"}.get(
        said, f"TIGHT ({'fits' if plan_.fits else 'does not fit'} by less than the "
        f"±{format_bytes(plan_.error_band_bytes)} measured error of {plan_.band.kind}"
        + (" and the spread of what the runtime holds" if plan_.band_extra_bytes else "") + ")")
    layout = f"{plan_.num_gpus}× {plan_.device.name}"
    if plan_.num_gpus > 1:
        layout += f" (TP {plan_.tp}" + (f" × PP {plan_.pp})" if plan_.pp > 1 else ")")
    host = f"; {plan_.on_host} in system memory (see the speed)" if plan_.on_host else ""
    return (f"{layout}: {format_bytes(plan_.per_gpu.total)} per GPU of "
            f"{format_bytes(plan_.usable_bytes)} usable — {verdict_text}, headroom "
            f"{format_bytes(plan_.headroom_bytes)}{host}")

