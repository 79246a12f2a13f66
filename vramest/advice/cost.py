"""Cost per million generated tokens on your own hardware, beside an API's price per token.

Local cost per month = hardware price / (years × 12) + board power × utilisation × PUE × hours ×
electricity price + staff; tokens per month = generated tokens/s × utilisation × seconds. This is
the cost model of the local-versus-API course summarised in issue 9 (hardware amortised, plus
electricity, plus operations staff). Money is in whatever currency the user's prices are in: a
label only, never converted.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache

from vramest.data import read_text
from vramest.errors import InputError, short
from vramest.frozen import frozen
from vramest.units import parse_share

HOURS_PER_MONTH = 730.0  # 8760 hours a year / 12
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600  # 2,628,000
TOKENS_PER_MILLION = 1e6
DEFAULT_UTILIZATION = 0.5
DEFAULT_YEARS = 3.0
DEFAULT_ELECTRICITY_PRICE = 0.15  # USD per kWh: an assumed default, not a published tariff
DEFAULT_PUE = 1.3  # an assumed data-room power usage effectiveness; 1.0 is a bare desk
PRICE_AGE_NOTE = "Shipped prices are list prices at the date shown; prices age, so check today's."


def parse_amount(text: str | float | None, flag: str, *, allow_zero: bool = True,
                 maximum: float = 1e15) -> float | None:
    """A price or other non-negative number from the command line."""
    if text is None:
        return None
    try:
        value = float(str(text).strip().replace(",", "").replace("_", ""))
    except ValueError:
        raise InputError(f"{flag} {short(text)} is not a number; give one such as 1599 or 0.15.") \
            from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero) or \
            value > maximum:
        least = "0 or more" if allow_zero else "more than 0"
        raise InputError(f"{flag} {short(text)} is out of range; give a number {least} "
                         f"(at most {maximum:g}).")
    return value


def parse_utilization(text: str | float | None) -> float:
    """'0.5' or '50%': the share of the month the hardware is generating tokens, in (0, 1]."""
    if text is None:
        return DEFAULT_UTILIZATION
    value = parse_share(text, what="--utilization", accepted="give a share such as 0.5 or 50%")
    if not 0 < value <= 1:
        raise InputError(f"--utilization {short(text)} is out of range; give a share above 0 and at "
                         "most 1 (or 100%).")
    return value


@frozen
class LocalSetup:
    """What running the model locally costs and produces; money in one currency."""

    hardware_price: float
    years: float
    board_power_w: float  # all cards together, at full load
    utilization: float  # share of the month spent generating
    pue: float
    electricity_price_per_kwh: float
    staff_per_month: float
    tokens_per_s: float  # generated tokens per second of the whole deployment while busy

    def __post_init__(self) -> None:
        if self.years <= 0:
            raise InputError("--years must be more than 0.")
        if not 0 < self.utilization <= 1:
            raise InputError("--utilization must be above 0 and at most 1.")
        if self.pue < 1:
            raise InputError("--pue must be at least 1 (1.0 is no cooling or power overhead).")
        if min(self.hardware_price, self.electricity_price_per_kwh, self.staff_per_month,
               self.board_power_w) < 0:
            raise InputError("Prices and board power must not be negative.")
        if self.tokens_per_s <= 0:
            raise InputError("The predicted speed is zero, so no cost per token can be given.")


@frozen
class LocalCost:
    setup: LocalSetup

    @property
    def hardware_per_month(self) -> float:
        """Straight-line amortisation: price / (years × 12)."""
        return self.setup.hardware_price / (self.setup.years * 12)

    @property
    def power_per_month(self) -> float:
        """kW × utilisation × PUE × hours in a month × price per kWh."""
        s = self.setup
        return s.board_power_w / 1000 * s.utilization * s.pue * HOURS_PER_MONTH * \
            s.electricity_price_per_kwh

    @property
    def fixed_per_month(self) -> float:
        """What is paid whether or not tokens are generated: amortisation and staff."""
        return self.hardware_per_month + self.setup.staff_per_month

    @property
    def total_per_month(self) -> float:
        return self.fixed_per_month + self.power_per_month

    @property
    def tokens_per_month(self) -> float:
        return self.setup.tokens_per_s * self.setup.utilization * SECONDS_PER_MONTH

    @property
    def capacity_tokens_per_month(self) -> float:
        """Tokens a month at 100% utilisation."""
        return self.setup.tokens_per_s * SECONDS_PER_MONTH

    @property
    def cost_per_million_tokens(self) -> float:
        return self.total_per_month / self.tokens_per_month * TOKENS_PER_MILLION

    @property
    def energy_per_million_tokens(self) -> float:
        """Electricity alone per million tokens: kW × PUE × hours to generate them × price."""
        s = self.setup
        hours = TOKENS_PER_MILLION / s.tokens_per_s / 3600
        return s.board_power_w / 1000 * s.pue * hours * s.electricity_price_per_kwh

    def to_json(self) -> dict[str, object]:
        return {
            "cost_per_million_tokens": self.cost_per_million_tokens,
            "per_month": {"hardware": self.hardware_per_month, "power": self.power_per_month,
                          "staff": self.setup.staff_per_month, "total": self.total_per_month},
            "tokens_per_month": self.tokens_per_month,
            "capacity_tokens_per_month": self.capacity_tokens_per_month,
            "energy_per_million_tokens": self.energy_per_million_tokens,
            "tokens_per_s_while_busy": self.setup.tokens_per_s,
            "inputs": {"hardware_price": self.setup.hardware_price, "years": self.setup.years,
                       "board_power_w": self.setup.board_power_w,
                       "utilization": self.setup.utilization, "pue": self.setup.pue,
                       "electricity_price_per_kwh": self.setup.electricity_price_per_kwh,
                       "staff_per_month": self.setup.staff_per_month},
        }


def break_even_tokens_per_month(local: LocalCost, api_per_million: float) -> float | None:
    """The monthly volume V where the API bill equals the local bill:
    api × V = fixed + energy × V, so V = fixed / (api − energy) (per million tokens).
    None when every token costs more in electricity alone than the API charges."""
    margin = api_per_million - local.energy_per_million_tokens
    if margin <= 0:
        return None
    return local.fixed_per_month / margin * TOKENS_PER_MILLION


# --- API list prices -----------------------------------------------------------------------


@frozen
class ApiPrice:
    provider: str
    model: str
    input_per_million: float | None
    output_per_million: float
    currency: str
    date: str | None
    source: str

    def to_json(self) -> dict[str, object]:
        return {"provider": self.provider, "model": self.model,
                "input_per_million_tokens": self.input_per_million,
                "output_per_million_tokens": self.output_per_million,
                "currency": self.currency, "date": self.date, "source": self.source}


@lru_cache(maxsize=1)
def api_prices() -> tuple[ApiPrice, ...]:
    text = read_text("api_prices.json")
    return tuple(ApiPrice(provider=p["provider"], model=p["model"],
                          input_per_million=p.get("input_per_million_usd"),
                          output_per_million=float(p["output_per_million_usd"]), currency="USD",
                          date=p.get("date"), source=p["source"])
                 for p in json.loads(text)["prices"])


def _base_name(price: ApiPrice) -> str:
    """The table's model name without its parenthesised aliases: 'deepseek-chat'."""
    return re.sub(r"\s*\(.*\)$", "", price.model.lower())


def _names(price: ApiPrice) -> tuple[str, ...]:
    """Every name a table row answers to: whole, base, aliases in parentheses, provider/base."""
    whole = price.model.lower()
    parts = [whole, _base_name(price), f"{price.provider.lower()}/{_base_name(price)}"]
    inside = re.search(r"\((.*)\)", whole)
    if inside:
        parts += [p.strip() for p in inside.group(1).split("/")]
    return tuple(dict.fromkeys(p for p in parts if p))


def find_api_price(name: str) -> ApiPrice:
    key = name.strip().lower()
    for price in api_prices():
        if key in _names(price):
            return price
    from difflib import get_close_matches

    index = {n: p.model for p in api_prices() for n in _names(p)}
    close = list(dict.fromkeys(index[c] for c in get_close_matches(key, list(index), n=3,
                                                                     cutoff=0.4)))
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise InputError(f"Unknown API model {short(name)}; {hint}`vramest cost --api list` shows the "
                     "table, or give your own --api-price.")
