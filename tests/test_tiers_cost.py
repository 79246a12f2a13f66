"""Size tiers, hardware recommendations and local-vs-API cost (issue 9).

The arithmetic is checked against cases worked by hand in each test's docstring.
"""

from __future__ import annotations

import json

import pytest

from vramest.advice.cost import (
    LocalCost,
    LocalSetup,
    break_even_tokens_per_month,
    find_api_price,
    parse_utilization,
)
from vramest.advice.recommend import DOES_NOT_FIT, NO_PRICE, OVER_BUDGET, TOO_SLOW, Need, recommend
from vramest.advice.tiers import load_tiers, tier_for, tier_table
from vramest.api import estimate
from vramest.cli import main
from vramest.errors import InputError
from vramest.hardware.database import Device
from vramest.inference.engines.speed import engine
from vramest.units import GIB


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- cost arithmetic ----------------------------------------------------------------------

WORKED = LocalSetup(hardware_price=36_000, years=3, board_power_w=1000, utilization=0.5, pue=1.2,
                    electricity_price_per_kwh=0.10, staff_per_month=500, tokens_per_s=1000)


def test_local_cost_worked_by_hand() -> None:
    """36,000 over 3 years = 36,000 / 36 months = 1,000.00 a month.
    Power: 1 kW × 0.5 × PUE 1.2 = 0.6 kW; × 730 h = 438 kWh; × 0.10 = 43.80 a month.
    Staff 500. Total 1,000 + 43.80 + 500 = 1,543.80 a month.
    Tokens: 1,000/s × 0.5 × 2,628,000 s (730 h) = 1,314,000,000 = 1,314 million a month.
    Per million: 1,543.80 / 1,314 = 1.17489 (1,314 × 1.17489 = 1,543.80)."""
    cost = LocalCost(WORKED)
    assert cost.hardware_per_month == pytest.approx(1000.00)
    assert cost.power_per_month == pytest.approx(43.80)
    assert cost.total_per_month == pytest.approx(1543.80)
    assert cost.tokens_per_month == pytest.approx(1_314_000_000)
    assert cost.cost_per_million_tokens == pytest.approx(1.17489, abs=5e-6)


def test_break_even_worked_by_hand() -> None:
    """Electricity per million tokens: 10^6 tokens at 1,000/s take 1,000 s = 0.27778 h;
    1 kW × PUE 1.2 × 0.27778 h = 0.33333 kWh; × 0.10 = 0.033333.
    Fixed a month: 1,000 hardware + 500 staff = 1,500.
    Against an API at 2.00 per million: V = 1,500 / (2.00 − 0.033333) = 1,500 / 1.966667
    = 762.712 million tokens a month (1.966667 × 762.712 = 1,500.0), below the 2,628 million
    the card makes at 100%."""
    cost = LocalCost(WORKED)
    assert cost.energy_per_million_tokens == pytest.approx(0.033333, abs=1e-6)
    even = break_even_tokens_per_month(cost, 2.00)
    assert even == pytest.approx(762.712e6, rel=1e-6)
    assert even < cost.capacity_tokens_per_month == pytest.approx(2_628e6)


def test_no_break_even_when_electricity_alone_costs_more() -> None:
    """10 tokens/s on 1 kW at PUE 1.0 and 1.00 per kWh: a million tokens take 100,000 s
    = 27.78 h = 27.78 kWh = 27.78 in electricity, more than an API's 10 per million."""
    slow = LocalSetup(hardware_price=1000, years=1, board_power_w=1000, utilization=1, pue=1.0,
                      electricity_price_per_kwh=1.0, staff_per_month=0, tokens_per_s=10)
    assert LocalCost(slow).energy_per_million_tokens == pytest.approx(27.78, abs=0.01)
    assert break_even_tokens_per_month(LocalCost(slow), 10.0) is None


def test_utilisation_scales_tokens_not_the_fixed_costs() -> None:
    """At 25% instead of 50% the month makes half the tokens (657 million); hardware and
    staff (1,500) stay, power halves (21.90): (1,500 + 21.90) / 657 = 2.31644 per million."""
    quarter = LocalSetup(**{**WORKED.__dict__, "utilization": 0.25})
    assert LocalCost(quarter).cost_per_million_tokens == pytest.approx(2.31644, abs=5e-6)


@pytest.mark.parametrize("text", ["0", "0%", "1.5", "-0.2", "abc"])
def test_bad_utilisation_is_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_utilization(text)
    assert parse_utilization("50%") == 0.5


def test_api_table_names_and_nearest_suggestions() -> None:
    assert find_api_price("deepseek-v3").output_per_million == 1.1
    assert find_api_price("GPT-4o-mini").model == "gpt-4o-mini"
    with pytest.raises(InputError, match="did you mean gpt-4o"):
        find_api_price("gpt4o")


# --- cost on the command line -------------------------------------------------------------

COST_ARGS = ("cost", "--model", "llama-3.1-8b", "--gpu", "h100", "--num-gpus", "2",
             "--dtype", "int8", "--batch", "4", "--hardware-price", "36000", "--years", "3",
             "--board-power", "500", "--pue", "1.2", "--electricity-price", "0.1",
             "--staff-per-month", "500", "--utilization", "0.5", "--api-price", "2")


def test_cost_json_contract_and_hand_worked_parts(capsys: pytest.CaptureFixture[str]) -> None:
    """Two cards of 500 W are the 1 kW of the worked case above, so the month's hardware is
    1,000.00, power 43.80 and staff 500; tokens are the predicted rate × 0.5 × 2,628,000 s."""
    code, out, _ = run_cli(capsys, *COST_ARGS, "--json", "--currency", "CNY")
    assert code == 0
    data = json.loads(out)
    local = data["local"]
    assert data["currency"] == "CNY"
    assert local["per_month"]["hardware"] == pytest.approx(1000.00)
    assert local["per_month"]["power"] == pytest.approx(43.80)
    assert local["per_month"]["staff"] == 500
    tokens = data["decode_tokens_per_s_total"] * 0.5 * 2_628_000
    assert local["tokens_per_month"] == pytest.approx(tokens)
    assert local["cost_per_million_tokens"] == pytest.approx(1543.80 / tokens * 1e6)
    assert data["api"]["cost_per_million_tokens"] == 2
    energy = 1.2 * 0.1 * 1e6 / data["decode_tokens_per_s_total"] / 3600
    assert data["break_even_tokens_per_month"] == pytest.approx(1500 / (2 - energy) * 1e6)


def test_cost_shows_shipped_prices_with_source_and_date(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "cost", "--model", "llama-3.1-8b", "--gpu", "4090",
                           "--api", "gpt-4o-mini", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["local"]["inputs"]["hardware_price"] == 1599
    assert {p["date"] for p in data["prices"]} == {"2022-10", "2024-07"}
    assert all(p["source"].startswith("http") for p in data["prices"])
    assert any("prices age" in n for n in data["notes"])
    _, text, _ = run_cli(capsys, "cost", "--model", "llama-3.1-8b", "--gpu", "4090", "--api",
                         "gpt-4o-mini")
    assert "prices age" in text and "2022-10" in text and "Break-even" in text


@pytest.mark.parametrize("extra, message", [
    (("--hardware-price", "-5"), "--hardware-price"),
    (("--electricity-price", "-0.1"), "--electricity-price"),
    (("--utilization", "0"), "--utilization"),
    (("--api", "gpt4o"), "did you mean gpt-4o"),
    (("--years", "0"), "--years"),
    (("--pue", "0.5"), "--pue"),
])
def test_cost_bad_input_exits_2(capsys: pytest.CaptureFixture[str], extra: tuple[str, ...],
                                message: str) -> None:
    code, _, err = run_cli(capsys, "cost", "--model", "llama-3.1-8b", "--gpu", "4090", *extra)
    assert code == 2 and message in err and "Traceback" not in err


def test_cost_in_another_currency_needs_its_own_prices(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "cost", "--model", "llama-3.1-8b", "--gpu", "4090",
                           "--currency", "CNY", "--electricity-price", "0.8")
    assert code == 2 and "--hardware-price in CNY" in err
    code, _, err = run_cli(capsys, "cost", "--model", "llama-3.1-8b", "--gpu", "4090",
                           "--currency", "CNY", "--hardware-price", "13000",
                           "--electricity-price", "0.8", "--api", "gpt-4o")
    assert code == 2 and "--api-price" in err


def test_cost_refuses_a_model_that_does_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "cost", "--model", "llama-3.1-70b", "--gpu", "4090")
    assert code == 2 and "does not fit" in err and "--num-gpus" in err


# --- tiers --------------------------------------------------------------------------------


def test_tier_boundaries() -> None:
    assert [tier_for(n).name for n in (7 * 10**9, 8 * 10**9, 32 * 10**9, 70 * 10**9,
                                       671 * 10**9)] == \
        ["lightweight", "lightweight", "mainstream", "high performance", "frontier"]


def test_every_claim_names_its_source() -> None:
    for tier in load_tiers().tiers:
        assert tier.claims and tier.representatives
        for claim in tier.claims:
            assert "issue 9" in claim.source


def test_tier_table_reproduces_the_guide_rows_it_agrees_with() -> None:
    """At 8k and fp16 (2 bytes a parameter, as the guide's figures are):
    7B: weights 2 × 7.03e9 = 14.1 GB, plus 1 GiB of KV cache → about 17 GB against 16 GB, and
    one RTX 4090 holds it: both agree.
    32B: 2 × 32e9 = 64 GB of weights, about 68 GB in all against 80 GB: agrees; but one A100
    80GB (76 GiB usable) already holds it, where the guide says two: differs.
    70B: 2 × 70e9 = 140 GB, about 146 GB in all against 160 GB: agrees; 146 GB is 136 GiB, so
    2 × 76 GiB of H100 hold it, where the guide says four: differs.
    910B: 2 × 910e9 = 1.82 TB against 1.8 TB+, and 1.82 TB / 76 GiB per card needs more than
    16 cards, so 32 (TP 8 × PP 4): both agree."""
    checks = {c.claim.params: c for report in tier_table() for c in report.claims}
    assert checks["7B"].memory_agrees and checks["7B"].hardware_agrees
    assert checks["32B"].memory_agrees and not checks["32B"].hardware_agrees
    assert checks["32B"].ours_on_claimed_card is not None
    assert checks["32B"].ours_on_claimed_card.num_gpus == 1
    assert "already fits" in checks["32B"].hardware_why
    assert checks["70B"].memory_agrees and not checks["70B"].hardware_agrees
    assert checks["70B"].ours_on_claimed_card is not None
    assert checks["70B"].ours_on_claimed_card.num_gpus == 2
    assert checks["910B"].memory_agrees and checks["910B"].hardware_agrees
    assert checks["910B"].ours_weights_bytes == pytest.approx(1.82e12, rel=0.01)


def test_long_context_turns_the_7b_memory_claim_into_a_kv_difference() -> None:
    """At 32k the 7B's KV cache is 4× the 8k figure (about 4 GiB), the total passes
    16 GB × 1.25 = 20 GB, and the reason names the KV cache."""
    checks = {c.claim.params: c for report in tier_table(ctx="32k") for c in report.claims}
    assert not checks["7B"].memory_agrees
    assert checks["7B"].memory_why.startswith("KV cache at 32k")


def test_tier_rows_worked_by_hand() -> None:
    """Llama-3.1-8B's KV cache at 8k in fp16: 2 (K and V) × 32 layers × 8 KV heads × 128 dims
    × 2 bytes × 8,192 tokens = 1,073,741,824 bytes = 1 GiB; int4 weights fit the cheapest
    12 GiB card listed (RTX 3060 12GB, $329)."""
    light = tier_table()[0]
    rows = {(r.model, r.dtype): r for r in light.rows}
    assert rows[("meta-llama/Llama-3.1-8B", "fp16")].kv_cache_bytes == GIB
    small = rows[("meta-llama/Llama-3.1-8B", "int4")].smallest
    assert small is not None and small.num_gpus == 1 and small.price_usd == 329


def test_tiers_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "tiers", "--json", "--ctx", "8k")
    assert code == 0
    data = json.loads(out)
    assert [t["name"] for t in data["tiers"]] == ["lightweight", "mainstream",
                                                  "high performance", "frontier"]
    for tier in data["tiers"]:
        assert tier["params_range"]["guide"]
        assert {r["dtype"] for r in tier["rows"]} == {"fp16", "int8", "int4"}
        for row in tier["rows"]:
            assert isinstance(row["memory"]["total"], int)
            assert row["smallest_hardware"] is None or row["smallest_hardware"]["num_gpus"] >= 1
        for claim in tier["claims"]:
            assert isinstance(claim["memory"]["agrees"], bool) and claim["memory"]["why"]
            assert isinstance(claim["hardware"]["agrees"], bool) and claim["hardware"]["why"]
    assert "prices age" in data["price_note"]


def test_tiers_text_marks_agree_and_differ(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "tiers")
    assert code == 0 and "agree" in out and "DIFFER" in out and "prices age" in out


# --- recommend ----------------------------------------------------------------------------


def card(name: str, gib: int, price: float | None, bandwidth_gbs: float = 1000) -> Device:
    return Device(name=name, aliases=(), vendor="test", kind="gpu", device_class="test",
                  memory_bytes=gib * GIB, bandwidth_bytes_s=bandwidth_gbs * 1e9,
                  dense_tflops=(("fp16", 100.0),), source="test", tdp_w=300,
                  price_usd=price, price_date="2025-01" if price else None,
                  price_source="test" if price else None)


def need(**kw: float | None) -> Need:
    base: dict = {"users": 1, "min_decode_tokens_per_s": None, "budget_usd": None,
                  "prompt_tokens": 4096, "gen_tokens": 128}
    return Need(**{**base, **kw})


def test_recommend_ranks_fewest_cards_then_cheapest_and_says_why_others_are_out() -> None:
    """Llama-3.1-8B in int4 at 4k needs about 7.3 GiB. With a budget of 250:
    'big' (24 GiB, 200) holds it on one card → first; 'pair' (5 GiB, 100 each) needs two
    cards = 200 → second (more cards); 'pricey' (24 GiB, 300) is over budget; 'mystery' has
    no price, so the budget cannot be checked; 'tiny' (1 GiB) does not fit on 64 cards."""
    est = estimate(model="llama-3.1-8b", dtype="int4", ctx=4096)
    devices = (card("pricey", 24, 300), card("pair", 5, 100), card("big", 24, 200),
               card("mystery", 24, None), card("tiny", 1, 50))
    result = recommend(est, devices, need(budget_usd=250), engine("generic"))
    assert [(o.device.name, o.plan.num_gpus, o.price_usd) for o in result.options] == \
        [("big", 1, 200), ("pair", 2, 200)]
    reasons = {e.device.name: e.kind for e in result.excluded}
    assert reasons == {"pricey": OVER_BUDGET, "mystery": NO_PRICE, "tiny": DOES_NOT_FIT}
    assert result.tier.name == "lightweight"


def test_recommend_adds_cards_for_speed_and_excludes_slow_ones() -> None:
    """A slow card (100 GB/s) cannot reach 1,000 tokens/s per user on any layout; a target
    the fast card reaches on one card is met with its speed at or above it."""
    est = estimate(model="llama-3.1-8b", dtype="int4", ctx=4096)
    slow, fast = card("slow", 24, 100, bandwidth_gbs=100), card("fast", 24, 100, 3000)
    result = recommend(est, (slow, fast), need(min_decode_tokens_per_s=1000), engine("generic"))
    assert result.options == ()
    assert {e.kind for e in result.excluded} == {TOO_SLOW}
    easy = recommend(est, (slow, fast), need(min_decode_tokens_per_s=20), engine("generic"))
    assert easy.options and all((o.decode_tokens_per_s or 0) >= 20 for o in easy.options)


def test_recommend_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "recommend", "--model", "llama-3.1-70b", "--dtype", "int4",
                           "--ctx", "8k", "--users", "4", "--min-decode-tokens-per-s", "15",
                           "--json")
    assert code == 0
    data = json.loads(out)
    assert data["tier"]["name"] == "high performance"
    assert 1 <= len(data["options"]) <= 5
    for option in data["options"]:
        assert option["headroom_bytes"] >= 0
        assert option["decode_tokens_per_s_per_user"] >= 15
    assert all(e["reason"] for e in data["excluded"])


@pytest.mark.parametrize("extra", [("--users", "0"), ("--budget", "-1"),
                                   ("--min-decode-tokens-per-s", "0"), ("--top", "0")])
def test_recommend_bad_input_exits_2(capsys: pytest.CaptureFixture[str],
                                     extra: tuple[str, ...]) -> None:
    code, _, err = run_cli(capsys, "recommend", "--params", "7B", *extra)
    assert code == 2 and err.startswith("vramest:")
