"""vramest cost --model llama-3.1-8b --gpu 4090 --batch 8 --api gpt-4o-mini"""

from __future__ import annotations

import json

from vramest.commands.common import add_model_args, estimate_kwargs
from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from typing import Any


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    from vramest.inference.engines.speed import ENGINES

    p = sub.add_parser("cost", help=help_text, description=help_text)
    add_model_args(p)
    g = p.add_argument_group("run")
    g.add_argument("--gpu", help="the GPU it runs on (4090, h100, ...; `vramest gpus` lists them)")
    g.add_argument("--num-gpus", default="1", help="GPUs in total, tensor parallel (default 1)")
    g.add_argument("--dtype", help="weight precision (default: the model's own)")
    g.add_argument("--kv-dtype", help="KV cache precision (default: the compute dtype)")
    g.add_argument("--ctx", help="context tokens per sequence (default 4096)")
    g.add_argument("--batch", default="1", help="sequences generated at once (default 1)")
    g.add_argument("--gen", default="128", help="generated tokens per request (default 128)")
    g.add_argument("--engine", default="generic", choices=sorted(ENGINES),
                   help="serving engine whose fixed costs the speed uses (default generic)")
    g.add_argument("--hardware-file", help="JSON file of devices to add or override")
    m = p.add_argument_group("money (any currency: --currency is a label; nothing is converted)")
    m.add_argument("--currency", default="USD", help="label for all amounts (default USD)")
    m.add_argument("--hardware-price", help="price of the hardware in all (default: the shipped "
                   "USD price of one card × --num-gpus)")
    m.add_argument("--years", default="3", help="years to amortise the hardware over (default 3)")
    m.add_argument("--utilization", default="0.5", help="share of the month spent generating: "
                   "0.5 or 50%% (default 0.5)")
    m.add_argument("--electricity-price", help="price per kWh (default 0.15, an assumed USD "
                   "figure)")
    m.add_argument("--pue", default="1.3", help="power usage effectiveness, ≥ 1 (default 1.3)")
    m.add_argument("--board-power", help="watts per card at load (default: the card's TDP)")
    m.add_argument("--staff-per-month", default="0", help="operations staff cost per month "
                   "(default 0)")
    m.add_argument("--api-price", help="an API's price per million output tokens")
    m.add_argument("--api", help="an API model from the shipped price table (gpt-4o-mini, "
                   "deepseek-chat, ...); `--api list` shows the table")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from vramest.advice.cost import api_prices

    if args.api and args.api.strip().lower() == "list":
        if args.json:
            print(json.dumps({"prices": [p.to_json() for p in api_prices()]}, indent=2))
        else:
            print(render_api_table(api_prices()))
        return 0
    report = build(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 0


def build(args: argparse.Namespace) -> dict[str, Any]:
    from vramest.advice.cost import (
        DEFAULT_ELECTRICITY_PRICE,
        PRICE_AGE_NOTE,
        LocalCost,
        LocalSetup,
        break_even_tokens_per_month,
        find_api_price,
        parse_amount,
        parse_utilization,
    )
    from vramest.api import estimate
    from vramest.inference.placement import fewest_gpus

    if not args.gpu:
        raise InputError("Give --gpu, the card the model runs on (4090, h100, ...); "
                         "`vramest recommend` suggests some.")
    if args.api and args.api_price:
        raise InputError("Give --api (a model from the price table) or --api-price, not both.")
    currency = args.currency.strip().upper() or "USD"
    foreign = currency != "USD"
    hardware_price = parse_amount(args.hardware_price, "--hardware-price")
    electricity = parse_amount(args.electricity_price, "--electricity-price", maximum=1e6)
    if foreign and hardware_price is None:
        raise InputError(f"The shipped GPU prices are in USD, not {currency}; give "
                         f"--hardware-price in {currency} (vramest converts no currencies).")
    if foreign and electricity is None:
        raise InputError(f"The default electricity price is in USD, not {currency}; give "
                         f"--electricity-price per kWh in {currency}.")
    if foreign and args.api:
        raise InputError(f"The shipped API prices are in USD, not {currency}; give "
                         f"--api-price per million output tokens in {currency}.")
    years = parse_amount(args.years, "--years", allow_zero=False, maximum=100)
    pue = parse_amount(args.pue, "--pue", allow_zero=False, maximum=10)
    staff = parse_amount(args.staff_per_month, "--staff-per-month")
    api_given = parse_amount(args.api_price, "--api-price", allow_zero=False)
    utilization = parse_utilization(args.utilization)
    assert years is not None and pue is not None and staff is not None

    import argparse

    kwargs = estimate_kwargs(argparse.Namespace(**vars(args), prefill_chunk=None, attn="sdpa"))
    est = estimate(**kwargs, gpu=args.gpu, num_gpus=args.num_gpus, gen=args.gen,
                   engine=args.engine, hardware_file=args.hardware_file)
    fit, speed = est.fit, est.throughput
    assert fit is not None and speed is not None  # estimated with a GPU
    device = fit.device
    if not fit.fits:
        fewest = fewest_gpus(est, device)
        hint = f"the fewest that hold it is {fewest.plan.num_gpus}" if fewest.plan else \
            "it does not fit on 64 of them"
        raise InputError(f"{est.model.name} does not fit on {fit.num_gpus}× {device.name} at "
                         f"{est.settings.dtype}, ctx {est.settings.ctx}, batch "
                         f"{est.settings.batch}; {hint} (--num-gpus).")
    if speed is None:
        raise InputError(f"{device.name} has no memory bandwidth in the hardware database, so "
                         "its speed and cost per token cannot be estimated.")
    prices: list[dict[str, Any]] = []
    if hardware_price is None:
        if device.price_usd is None:
            raise InputError(f"{device.name} has no shipped price; give --hardware-price (the "
                             "cards, or the whole server).")
        hardware_price = device.price_usd * fit.num_gpus
        prices.append({"what": f"{device.name}, one card ({fit.num_gpus} used)",
                       "amount": device.price_usd, "currency": "USD",
                       "date": device.price_date, "source": device.price_source})
    board_w = parse_amount(args.board_power, "--board-power", allow_zero=False, maximum=1e5)
    if board_w is None:
        if device.tdp_w is None:
            raise InputError(f"{device.name} has no board power in the hardware database; give "
                             "--board-power in watts per card.")
        board_w = device.tdp_w
    if electricity is None:
        electricity = DEFAULT_ELECTRICITY_PRICE
    setup = LocalSetup(hardware_price=hardware_price, years=years,
                       board_power_w=board_w * fit.num_gpus, utilization=utilization, pue=pue,
                       electricity_price_per_kwh=electricity, staff_per_month=staff,
                       tokens_per_s=speed.decode_tokens_per_s_total)
    local = LocalCost(setup)
    api: dict[str, Any] | None = None
    if args.api:
        listed = find_api_price(args.api)
        api = {"cost_per_million_tokens": listed.output_per_million, "name": listed.model,
               "provider": listed.provider,
               "input_per_million_tokens": listed.input_per_million}
        prices.append({"what": f"{listed.provider} {listed.model}, per million output tokens",
                       "amount": listed.output_per_million, "currency": listed.currency,
                       "date": listed.date, "source": listed.source})
    elif api_given is not None:
        api = {"cost_per_million_tokens": api_given, "name": None, "provider": None,
               "input_per_million_tokens": None}
    break_even = break_even_tokens_per_month(local, api["cost_per_million_tokens"]) \
        if api else None
    notes = [
        "Tokens are generated tokens at the predicted decode rate for the whole batch; prompt "
        "processing time is not counted, so real output is somewhat lower.",
        f"Power: board power × utilisation × PUE; idle draw is not counted. A month is "
        f"{730:g} hours.",
        "Hardware: straight-line over the years given, no resale value or interest"
        + ("; the shipped price is the cards only, not the server around them."
           if args.hardware_price is None else "."),
    ]
    if args.electricity_price is None:
        notes.append(f"Electricity {DEFAULT_ELECTRICITY_PRICE} USD per kWh is an assumed "
                     "default, not a published tariff; give yours with --electricity-price.")
    if api is not None:
        notes.append("API prices are per million output tokens; input tokens are billed "
                     "separately by the provider.")
    if prices:
        notes.append(PRICE_AGE_NOTE)
    s = est.settings
    return {
        "currency": currency,
        "model": est.model.name, "gpu": device.name, "num_gpus": fit.num_gpus,
        "settings": {"dtype": s.dtype, "ctx": s.ctx, "batch": s.batch},
        "headroom_bytes": fit.headroom_bytes,
        "decode_tokens_per_s_total": speed.decode_tokens_per_s_total,
        "local": local.to_json(),
        "api": api,
        "break_even_tokens_per_month": break_even,
        "break_even_within_capacity": None if break_even is None else
        break_even <= local.capacity_tokens_per_month,
        "prices": prices,
        "notes": notes,
    }


def _tokens(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:,.2f}{unit}"
    return f"{n:,.0f}"


def render(r: dict[str, Any]) -> str:
    cur = r["currency"]
    local = r["local"]
    per_month, inputs = local["per_month"], local["inputs"]
    s = r["settings"]
    lines = [
        f"{r['model']} on {r['num_gpus']}× {r['gpu']}  ·  {s['dtype']}  ·  batch {s['batch']}  ·  "
        f"{r['decode_tokens_per_s_total']:,.0f} generated tokens/s while busy",
        "",
        f"Local, per month ({cur}), at {inputs['utilization']:.0%} utilisation:",
        f"  hardware  {per_month['hardware']:>12,.2f}   {inputs['hardware_price']:,.0f} over "
        f"{inputs['years']:g} years",
        f"  power     {per_month['power']:>12,.2f}   {inputs['board_power_w']:,.0f} W × "
        f"{inputs['utilization']:g} × PUE {inputs['pue']:g} × {inputs['electricity_price_per_kwh']:g}"
        f" per kWh",
        f"  staff     {per_month['staff']:>12,.2f}",
        f"  total     {per_month['total']:>12,.2f}   for {_tokens(local['tokens_per_month'])} "
        f"tokens (capacity {_tokens(local['capacity_tokens_per_month'])} at 100%)",
        "",
        f"Local cost per million generated tokens: {local['cost_per_million_tokens']:,.4f} {cur}"
        f"  (electricity alone {local['energy_per_million_tokens']:,.4f})",
    ]
    api = r["api"]
    if api is None:
        lines.append("API: give --api-price or --api to compare and get the break-even volume.")
    else:
        name = f" ({api['provider']} {api['name']})" if api["name"] else ""
        lines.append(f"API cost per million output tokens{name}: "
                     f"{api['cost_per_million_tokens']:,.4f} {cur}")
        even = r["break_even_tokens_per_month"]
        if even is None:
            lines.append("Break-even: never; electricity alone costs more per token than "
                         "the API.")
        else:
            where = "within" if r["break_even_within_capacity"] else "BEYOND"
            lines.append(f"Break-even: {_tokens(even)} tokens a month ({where} this hardware's "
                         "capacity); above it local is cheaper, below it the API.")
    if r["prices"]:
        lines += ["", "Shipped prices used:"]
        lines += [f"  {p['what']}: {p['amount']:,.2f} {p['currency']} ({p['date']}), {p['source']}"
                  for p in r["prices"]]
    lines += ["", "Notes:"] + [f"  - {n}" for n in r["notes"]]
    return "\n".join(lines)


def render_api_table(prices: tuple[Any, ...]) -> str:
    lines = [f"{'provider':12} {'model':44} {'input/M':>8} {'output/M':>9}  date     source"]
    for p in prices:
        given = f"{p.input_per_million:g}" if p.input_per_million is not None else "?"
        lines.append(f"{p.provider:12} {p.model[:44]:44} {given:>8} {p.output_per_million:>9g}  "
                     f"{p.date or '?':8} {p.source}")
    lines.append("Prices in USD per million tokens, list prices at the date shown; they age, "
                 "so check the provider's page.")
    return "\n".join(lines)
