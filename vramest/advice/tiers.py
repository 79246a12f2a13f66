"""LLM size tiers (vramest/data/tiers.json) beside what vramest computes for them.

The tiers and the hardware claims are the size-tier guide's, as issue 9 summarises them; the
numbers beside them are vramest's: memory at fp16 / int8 / int4 and the smallest configuration of
listed GPUs (fewest cards, then the cheapest where a price is known).
"""

from __future__ import annotations

import json
from functools import lru_cache

from vramest.api import estimate
from vramest.data import read_text
from vramest.frozen import TYPE_CHECKING, frozen
from vramest.hardware.database import Device, HardwareDB, load_hardware
from vramest.inference.estimate import Estimate
from vramest.inference.placement import FitPlan, fewest_gpus
from vramest.units import GB, format_bytes, format_tokens

if TYPE_CHECKING:
    from typing import Any

TIER_DTYPES = ("fp16", "int8", "int4")
DEFAULT_TIER_CTX = 8192  # a realistic chat/RAG context: 8k tokens
CLAIM_DTYPE = "fp16"  # the guide's figures are about 2 bytes per parameter (see tiers.json notes)
# A guide memory figure "agrees" when ours is within this factor of it either way.
MEMORY_AGREEMENT = 1.25


@frozen
class GuideClaim:
    params: str
    gpu: str | None  # the card the guide names (None: it names none)
    check_on: str  # the card vramest checks the claim on
    num_gpus: int
    num_gpus_at_least: bool
    memory_gb: float
    memory_at_least: bool
    source: str

    @property
    def hardware_text(self) -> str:
        count = f"{self.num_gpus}{'+' if self.num_gpus_at_least else ''}"
        return f"{count}× {self.gpu}" if self.gpu else f"{count} GPUs"

    @property
    def memory_text(self) -> str:
        amount = f"{self.memory_gb / 1000:g} TB" if self.memory_gb >= 1000 else \
            f"{self.memory_gb:g} GB"
        return amount + ("+" if self.memory_at_least else "")


@frozen
class Tier:
    name: str
    guide_range: str
    upper_params: int | None  # vramest's boundary (exclusive); None for the last tier
    hardware: str
    uses: tuple[str, ...]
    representatives: tuple[str, ...]
    claims: tuple[GuideClaim, ...]


@frozen
class TierGuide:
    source: str
    notes: tuple[str, ...]
    tiers: tuple[Tier, ...]


@lru_cache(maxsize=1)
def load_tiers() -> TierGuide:
    text = read_text("tiers.json")
    raw = json.loads(text)
    tiers = []
    for t in raw["tiers"]:
        claims = tuple(GuideClaim(
            params=c["params"], gpu=c.get("gpu"), check_on=c.get("check_on") or c["gpu"],
            num_gpus=int(c["num_gpus"]), num_gpus_at_least=bool(c["num_gpus_at_least"]),
            memory_gb=float(c["memory_gb"]), memory_at_least=bool(c["memory_at_least"]),
            source=c["source"]) for c in t["claims"])
        upper = t.get("upper_params_b")
        tiers.append(Tier(name=t["name"], guide_range=t["guide_range"],
                          upper_params=None if upper is None else int(upper * 10**9),
                          hardware=t["hardware"], uses=tuple(t["uses"]),
                          representatives=tuple(t["representatives"]), claims=claims))
    return TierGuide(source=raw["source"], notes=tuple(raw["notes"]), tiers=tuple(tiers))


def tier_for(params: int) -> Tier:
    """The tier a total parameter count falls in (vramest's boundaries between the guide's)."""
    for tier in load_tiers().tiers:
        if tier.upper_params is None or params < tier.upper_params:
            return tier
    raise AssertionError("the last tier has no upper bound")


# --- the smallest configuration -----------------------------------------------------------


@frozen
class Configuration:
    """A number of one kind of card that holds a model, with its price where known."""

    plan: FitPlan

    @property
    def device(self) -> Device:
        return self.plan.device

    @property
    def num_gpus(self) -> int:
        return self.plan.num_gpus

    @property
    def price_usd(self) -> float | None:
        price = self.device.price_usd
        return None if price is None else price * self.num_gpus

    def describe(self) -> str:
        text = f"{self.num_gpus}× {short_name(self.device)}"
        if self.price_usd is not None:
            text += f" (${self.price_usd:,.0f}, {self.device.price_date})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"gpu": self.device.name, "num_gpus": self.num_gpus,
                "per_gpu_bytes": self.plan.per_gpu.total, "usable_bytes": self.plan.usable_bytes,
                "headroom_bytes": self.plan.headroom_bytes, "price_usd": self.price_usd,
                "price_date": self.device.price_date, "price_source": self.device.price_source}


def short_name(device: Device) -> str:
    for prefix in ("NVIDIA GeForce ", "NVIDIA ", "AMD Instinct ", "AMD "):
        if device.name.startswith(prefix):
            return device.name[len(prefix):]
    return device.name


def configuration_order(config: Configuration) -> tuple[int, int, float]:
    """Fewest cards first; among equals the cheapest known price, unknown prices last."""
    price = config.price_usd
    return (config.num_gpus, price is None, price or 0.0)


def smallest_configuration(est: Estimate, devices: tuple[Device, ...]) -> Configuration | None:
    options = (fewest_gpus(est, device) for device in devices)
    configs = [Configuration(o.plan) for o in options if o.plan is not None]
    return min(configs, key=configuration_order) if configs else None


def gpu_devices(db: HardwareDB) -> tuple[Device, ...]:
    """The cards the tier table considers: discrete GPUs (not Apple unified memory or CPU RAM)."""
    return tuple(d for d in db.devices if d.kind == "gpu")


# --- the table ----------------------------------------------------------------------------


@frozen
class TierRow:
    model: str
    params: int
    dtype: str
    ctx: int
    weights_bytes: int
    kv_cache_bytes: int
    total_bytes: int
    smallest: Configuration | None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "params": self.params, "dtype": self.dtype, "ctx": self.ctx,
                "memory": {"weights": self.weights_bytes, "kv_cache": self.kv_cache_bytes,
                           "total": self.total_bytes},
                "smallest_hardware": self.smallest.to_json() if self.smallest else None}


@frozen
class ClaimCheck:
    claim: GuideClaim
    ctx: int
    ours_total_bytes: int
    ours_weights_bytes: int
    ours_kv_bytes: int
    ours_on_claimed_card: FitPlan | None  # fewest of the claim's card at fp16
    fewest_by_dtype: tuple[tuple[str, int | None], ...]  # claim's card count per precision
    memory_agrees: bool
    memory_why: str
    hardware_agrees: bool
    hardware_why: str

    @property
    def agrees(self) -> bool:
        return self.memory_agrees and self.hardware_agrees

    def to_json(self) -> dict[str, Any]:
        plan = self.ours_on_claimed_card
        return {
            "params": self.claim.params, "source": self.claim.source,
            "guide": {"hardware": self.claim.hardware_text, "gpu": self.claim.gpu,
                      "num_gpus": self.claim.num_gpus,
                      "num_gpus_at_least": self.claim.num_gpus_at_least,
                      "memory_gb": self.claim.memory_gb,
                      "memory_at_least": self.claim.memory_at_least},
            "ours": {"dtype": CLAIM_DTYPE, "ctx": self.ctx, "total_bytes": self.ours_total_bytes,
                     "weights_bytes": self.ours_weights_bytes,
                     "kv_cache_bytes": self.ours_kv_bytes, "checked_on": self.claim.check_on,
                     "num_gpus": plan.num_gpus if plan else None,
                     "num_gpus_by_dtype": dict(self.fewest_by_dtype)},
            "memory": {"agrees": self.memory_agrees, "why": self.memory_why},
            "hardware": {"agrees": self.hardware_agrees, "why": self.hardware_why},
        }


@frozen
class TierReport:
    tier: Tier
    rows: tuple[TierRow, ...]
    claims: tuple[ClaimCheck, ...]

    def to_json(self) -> dict[str, Any]:
        t = self.tier
        return {"name": t.name,
                "params_range": {"guide": t.guide_range, "upper_params": t.upper_params,
                                 "upper_is_vramest_boundary": True},
                "hardware": t.hardware, "uses": list(t.uses),
                "rows": [r.to_json() for r in self.rows],
                "claims": [c.to_json() for c in self.claims]}


def tier_table(ctx: int | str = DEFAULT_TIER_CTX, hardware_file: str | None = None) -> \
        tuple[TierReport, ...]:
    db = load_hardware(hardware_file)
    devices = gpu_devices(db)
    reports = []
    for tier in load_tiers().tiers:
        rows = tuple(_row(model, dtype, ctx, devices) for model in tier.representatives
                     for dtype in TIER_DTYPES)
        claims = tuple(check_claim(claim, ctx, db) for claim in tier.claims)
        reports.append(TierReport(tier, rows, claims))
    return tuple(reports)


def _row(model: str, dtype: str, ctx: int | str, devices: tuple[Device, ...]) -> TierRow:
    est = estimate(model=model, dtype=dtype, ctx=ctx)
    return TierRow(model=est.model.name, params=est.model.params, dtype=est.settings.dtype,
                   ctx=est.settings.ctx, weights_bytes=est.memory.weights.bytes,
                   kv_cache_bytes=est.memory.kv_cache.bytes, total_bytes=est.memory.total,
                   smallest=smallest_configuration(est, devices))


def check_claim(claim: GuideClaim, ctx: int | str, db: HardwareDB) -> ClaimCheck:
    device = db.find(claim.check_on)
    counts: list[tuple[str, int | None]] = []
    fp16: Estimate | None = None
    fp16_plan: FitPlan | None = None
    for dtype in TIER_DTYPES:
        est = estimate(params=claim.params, dtype=dtype, ctx=ctx)
        option = fewest_gpus(est, device)
        counts.append((dtype, option.plan.num_gpus if option.plan else None))
        if dtype == CLAIM_DTYPE:
            fp16, fp16_plan = est, option.plan
    assert fp16 is not None
    memory_agrees, memory_why = judge_memory(claim, fp16)
    hardware_agrees, hardware_why = judge_hardware(claim, fp16_plan, dict(counts))
    return ClaimCheck(claim=claim, ctx=fp16.settings.ctx, ours_total_bytes=fp16.memory.total,
                      ours_weights_bytes=fp16.memory.weights.bytes,
                      ours_kv_bytes=fp16.memory.kv_cache.bytes, ours_on_claimed_card=fp16_plan,
                      fewest_by_dtype=tuple(counts), memory_agrees=memory_agrees,
                      memory_why=memory_why, hardware_agrees=hardware_agrees,
                      hardware_why=hardware_why)


def _gb(n: float) -> str:
    """Decimal GB, the unit the guide's figures use."""
    return f"{n / 1000 / GB:.2f} TB" if n >= 1000 * GB else f"{n / GB:.1f} GB"


def judge_memory(claim: GuideClaim, est: Estimate) -> tuple[bool, str]:
    """Agree when our fp16 total is within MEMORY_AGREEMENT× of the claim (or above an 'N+')."""
    ours = est.memory.total
    claimed = claim.memory_gb * GB
    weights, kv = est.memory.weights.bytes, est.memory.kv_cache.bytes
    ctx = format_tokens(est.settings.ctx)
    low = claimed / MEMORY_AGREEMENT
    high = float("inf") if claim.memory_at_least else claimed * MEMORY_AGREEMENT
    if low <= ours <= high:
        return True, (f"fp16 weights {_gb(weights)} + KV cache at {ctx} {_gb(kv)} + activations and "
                      f"overhead {_gb(ours - weights - kv)} = {_gb(ours)}")
    if ours > high:
        if kv >= (ours - claimed) / 2:
            return False, f"KV cache at {ctx} adds {format_bytes(kv)}"
        return False, f"fp16 weights alone are {_gb(weights)}"
    if weights >= claimed / MEMORY_AGREEMENT:
        return False, f"guide counts fp16 weights only ({_gb(weights)})"
    return False, (f"guide's figure is {claimed / weights:.1f}× the fp16 weights "
                   f"({_gb(weights)}); ours adds only {_gb(ours - weights)} at {ctx}")


def judge_hardware(claim: GuideClaim, plan: FitPlan | None,
                   counts: dict[str, int | None]) -> tuple[bool, str]:
    """Agree when the fewest of the claim's card at fp16 equals its count (or reaches an 'N+')."""
    card = claim.check_on.removeprefix("NVIDIA GeForce ").removeprefix("NVIDIA ")
    if plan is None:
        return False, f"does not fit on 64× {card} at fp16"
    ours = plan.num_gpus
    per_card = f"{format_bytes(plan.per_gpu.total)} of {format_bytes(plan.usable_bytes)} per card"
    smaller = _fewer_with_quantization(claim.num_gpus, counts)
    agrees = ours == claim.num_gpus or (claim.num_gpus_at_least and ours >= claim.num_gpus)
    if agrees:
        return True, f"{ours}× {card} at fp16: {per_card}" + smaller
    if ours < claim.num_gpus:
        return False, (f"{ours}× already fits at fp16 ({per_card}, "
                       f"{format_bytes(plan.headroom_bytes)} headroom)") + smaller
    return False, f"fp16 needs {ours}× ({per_card})" + smaller


def _fewer_with_quantization(claimed: int, counts: dict[str, int | None]) -> str:
    fp16 = counts.get("fp16")
    for dtype in ("int8", "int4"):
        n = counts.get(dtype)
        if n is not None and (fp16 is None or n < fp16) and n <= claimed:
            return f"; {dtype} fits on {'one card' if n == 1 else f'{n}'}"
    return ""

