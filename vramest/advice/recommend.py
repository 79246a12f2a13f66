"""Hardware for a need: the fewest cards of each listed device that hold the model with the
context and concurrent users asked for, fast enough per user and within a budget, ranked.

Ranking: fewest cards, then the cheapest known price (unknown prices after), then the fastest.
"""

from __future__ import annotations

from vramest.advice.tiers import Tier, short_name, tier_for
from vramest.frozen import TYPE_CHECKING, frozen
from vramest.hardware.database import Device
from vramest.inference.engines.speed import Engine
from vramest.inference.estimate import Estimate
from vramest.inference.placement import (
    MULTI_NODE_GPUS,
    PARALLEL_DEGREES,
    FitPlan,
    Reserve,
    plan,
    valid_tp_degrees,
)
from vramest.inference.throughput import Throughput, estimate_throughput
from vramest.model.precisions import kv_format, weight_format
from vramest.units import format_bytes

if TYPE_CHECKING:
    from typing import Any

DEFAULT_KINDS = ("gpu", "apple")  # CPU RAM and NPUs without a bandwidth figure only on request

# why an option was left out, in the order the report lists them
DOES_NOT_FIT = "does not fit"
TOO_SLOW = "too slow"
NO_SPEED = "speed unknown"
OVER_BUDGET = "over budget"
NO_PRICE = "price unknown"
EXCLUSION_KINDS = (DOES_NOT_FIT, TOO_SLOW, NO_SPEED, OVER_BUDGET, NO_PRICE)


@frozen
class Need:
    users: int  # concurrent sequences, each with the full context
    min_decode_tokens_per_s: float | None  # per user
    budget_usd: float | None
    prompt_tokens: int
    gen_tokens: int


@frozen
class Option:
    plan: FitPlan
    speed: Throughput | None

    @property
    def device(self) -> Device:
        return self.plan.device

    @property
    def price_usd(self) -> float | None:
        price = self.device.price_usd
        return None if price is None else price * self.plan.num_gpus

    @property
    def decode_tokens_per_s(self) -> float | None:
        return None if self.speed is None else self.speed.decode_tokens_per_s

    def rank_key(self) -> tuple[int, bool, float, float]:
        price = self.price_usd
        return (self.plan.num_gpus, price is None, price or 0.0, -(self.decode_tokens_per_s or 0))

    def to_json(self) -> dict[str, Any]:
        s = self.speed
        return {"gpu": self.device.name, "num_gpus": self.plan.num_gpus,
                "tensor_parallel": self.plan.tp, "pipeline_parallel": self.plan.pp,
                "per_gpu_bytes": self.plan.per_gpu.total, "usable_bytes": self.plan.usable_bytes,
                "headroom_bytes": self.plan.headroom_bytes,
                "decode_tokens_per_s_per_user": self.decode_tokens_per_s,
                "decode_tokens_per_s_total": None if s is None else s.decode_tokens_per_s_total,
                "time_to_first_token_s": None if s is None else s.time_to_first_token_s,
                "price_usd": self.price_usd, "price_date": self.device.price_date,
                "price_source": self.device.price_source}


@frozen
class Exclusion:
    device: Device
    kind: str  # one of EXCLUSION_KINDS
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"gpu": self.device.name, "kind": self.kind, "reason": self.reason}


@frozen
class Recommendation:
    estimate: Estimate
    tier: Tier
    need: Need
    options: tuple[Option, ...]  # every option that meets the need, best first
    excluded: tuple[Exclusion, ...]

    def to_json(self, top: int) -> dict[str, Any]:
        m, s, n = self.estimate.model, self.estimate.settings, self.need
        return {
            "model": {"name": m.name, "params": m.params, "active_params": m.active_params},
            "tier": {"name": self.tier.name, "guide_range": self.tier.guide_range,
                     "guide_hardware": self.tier.hardware},
            "need": {"dtype": s.dtype, "ctx": s.ctx, "users": n.users,
                     "min_decode_tokens_per_s": n.min_decode_tokens_per_s,
                     "budget_usd": n.budget_usd, "prompt_tokens": n.prompt_tokens,
                     "gen_tokens": n.gen_tokens},
            "memory_bytes": self.estimate.memory.total,
            "options": [o.to_json() for o in self.options[:top]],
            "more_options": max(0, len(self.options) - top),
            "excluded": [e.to_json() for e in self.excluded],
        }


def layouts(est: Estimate) -> list[tuple[int, int]]:
    """(tensor parallel, pipeline stages) in the order vramest.inference.placement.fewest_gpus tries them."""
    valid = valid_tp_degrees(est.model.shape)
    tried = [(tp, 1) for tp in PARALLEL_DEGREES] + [(8, n // 8) for n in MULTI_NODE_GPUS]
    return [(tp, pp) for tp, pp in tried if tp in valid and pp <= est.model.shape.num_layers]


def speed_on(est: Estimate, fit: FitPlan, need: Need, engine: Engine) -> Throughput | None:
    device = fit.device
    if not device.bandwidth_bytes_s:
        return None
    s = est.settings
    return estimate_throughput(est.model.shape, weight_format(s.dtype), kv_format(s.kv_dtype),
                               device, batch=s.batch, prompt_tokens=need.prompt_tokens,
                               gen_tokens=need.gen_tokens, tp=fit.tp, pp=fit.pp,
                               constants=est.constants, engine=engine)


def judge_device(est: Estimate, device: Device, need: Need, engine: Engine,
                 reserve: Reserve) -> Option | Exclusion:
    """The fewest cards of this device that hold the model and, more cards permitting, reach
    the speed target; then the budget."""
    target = need.min_decode_tokens_per_s
    fastest: tuple[float, int] | None = None
    chosen: Option | None = None
    for tp, pp in layouts(est):
        fit = plan(est, device, tp * pp, pp, reserve)
        if not fit.fits:
            continue
        speed = speed_on(est, fit, need, engine)
        if target is None:
            chosen = Option(fit, speed)
            break
        if speed is None:
            return Exclusion(device, NO_SPEED, "no memory bandwidth figure, so the speed "
                             "target cannot be checked")
        if speed.decode_tokens_per_s >= target:
            chosen = Option(fit, speed)
            break
        if fastest is None or speed.decode_tokens_per_s > fastest[0]:
            fastest = (speed.decode_tokens_per_s, fit.num_gpus)
    if chosen is None:
        if fastest is not None:
            return Exclusion(device, TOO_SLOW, f"at most {fastest[0]:.1f} tokens/s per user "
                             f"(on {fastest[1]}×), below {target:g}")
        return Exclusion(device, DOES_NOT_FIT, f"does not fit on {max(MULTI_NODE_GPUS)} cards")
    if need.budget_usd is not None:
        price = chosen.price_usd
        if price is None:
            return Exclusion(device, NO_PRICE, "no shipped price, so the budget cannot be "
                             "checked (--hardware-file can add one)")
        if price > need.budget_usd:
            return Exclusion(device, OVER_BUDGET, f"{chosen.plan.num_gpus}× costs "
                             f"${price:,.0f}, over ${need.budget_usd:,.0f}")
    return chosen


def recommend(est: Estimate, devices: tuple[Device, ...], need: Need, engine: Engine,
              reserve: Reserve | None = None) -> Recommendation:
    reserve = reserve or Reserve()
    verdicts = [judge_device(est, device, need, engine, reserve) for device in devices]
    options = sorted((v for v in verdicts if isinstance(v, Option)), key=Option.rank_key)
    excluded = sorted((v for v in verdicts if isinstance(v, Exclusion)),
                      key=lambda e: EXCLUSION_KINDS.index(e.kind))
    return Recommendation(est, tier_for(est.model.params), need, tuple(options), tuple(excluded))


def describe_option(option: Option) -> str:
    """One line: layout, headroom, speed, price."""
    speed = option.decode_tokens_per_s
    price = option.price_usd
    return (f"{option.plan.num_gpus}× {short_name(option.device)}: headroom "
            f"{format_bytes(option.plan.headroom_bytes)} per card, "
            + (f"{speed:,.1f} tokens/s per user" if speed is not None else "speed unknown")
            + ", " + (f"${price:,.0f} ({option.device.price_date})" if price is not None
                      else "no shipped price"))
