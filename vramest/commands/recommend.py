"""vramest recommend --model llama-3.1-70b --ctx 16k --users 8 --min-decode-tokens-per-s 20"""

from __future__ import annotations

import json

from vramest.commands.common import add_model_args, estimate_kwargs
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from vramest.advice.recommend import Recommendation

PRICE_AGE_NOTE = ("Prices are list/launch prices in USD at the date shown; prices age, so check "
                  "today's.")


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    from vramest.inference.engines.speed import ENGINES

    p = sub.add_parser("recommend", help=help_text, description=help_text)
    add_model_args(p)
    g = p.add_argument_group("need")
    g.add_argument("--dtype", help="weight precision (default: the model's own)")
    g.add_argument("--kv-dtype", help="KV cache precision (default: the compute dtype)")
    g.add_argument("--ctx", help="context tokens per user: 8192, 8k, 128K (default 4096)")
    g.add_argument("--users", default="1", help="concurrent users, each with the full context "
                   "(default 1)")
    g.add_argument("--min-decode-tokens-per-s", help="generated tokens per second each user "
                   "needs at that concurrency")
    g.add_argument("--budget", help="most the cards may cost, in USD (the shipped prices' "
                   "currency)")
    g.add_argument("--gen", default="128", help="generated tokens per request (default 128)")
    g.add_argument("--engine", default="generic", choices=sorted(ENGINES),
                   help="serving engine whose fixed costs the speed uses (default generic)")
    g.add_argument("--reserve", help="memory kept free per card: 10%%, 0.1 or 2GiB (default 5%%)")
    g.add_argument("--kind", action="append", choices=("gpu", "apple", "cpu", "npu"),
                   help="device kinds to consider (repeatable; default gpu and apple)")
    g.add_argument("--hardware-file", help="JSON file of devices (and prices) to add or override")
    g.add_argument("--top", default="5", help="options to list (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from vramest.advice.cost import parse_amount
    from vramest.advice.recommend import DEFAULT_KINDS, Need, recommend
    from vramest.api import estimate
    from vramest.hardware.database import load_hardware
    from vramest.inference.engines.speed import engine
    from vramest.inference.placement import parse_reserve
    from vramest.units import parse_positive_int

    users = parse_positive_int(args.users, what="--users")
    import argparse

    kwargs = estimate_kwargs(argparse.Namespace(
        **vars(args), batch=users, prefill_chunk=None, attn="sdpa"))
    est = estimate(**kwargs)
    target = parse_amount(args.min_decode_tokens_per_s, "--min-decode-tokens-per-s",
                          allow_zero=False, maximum=1e7)
    budget = parse_amount(args.budget, "--budget", allow_zero=False)
    need = Need(users=est.settings.batch, min_decode_tokens_per_s=target, budget_usd=budget,
                prompt_tokens=est.settings.ctx,
                gen_tokens=parse_positive_int(args.gen, what="--gen", maximum=10**7))
    top = parse_positive_int(args.top, what="--top", maximum=1000)
    kinds = tuple(args.kind or DEFAULT_KINDS)
    devices = tuple(d for d in load_hardware(args.hardware_file).devices if d.kind in kinds)
    result = recommend(est, devices, need, engine(args.engine), parse_reserve(args.reserve))
    if args.json:
        out = result.to_json(top)
        out["price_note"] = PRICE_AGE_NOTE
        print(json.dumps(out, indent=2))
        return 0
    print(render(result, top))
    return 0


def render(result: Recommendation, top: int) -> str:
    from vramest.advice.recommend import EXCLUSION_KINDS, describe_option
    from vramest.advice.tiers import short_name
    from vramest.units import format_bytes, format_count, format_tokens

    est, need, tier = result.estimate, result.need, result.tier
    m, s = est.model, est.settings
    wants = [f"ctx {format_tokens(s.ctx)}", f"{need.users} concurrent user"
             + ("s" if need.users != 1 else "")]
    if need.min_decode_tokens_per_s is not None:
        wants.append(f"≥ {need.min_decode_tokens_per_s:g} tokens/s per user")
    if need.budget_usd is not None:
        wants.append(f"budget ${need.budget_usd:,.0f}")
    active = f" ({format_count(m.active_params)} active)" if m.active_params != m.params else ""
    lines = [f"{m.name}  ·  {format_count(m.params)} params{active}  ·  {s.dtype}  ·  "
             + "  ·  ".join(wants),
             f"Tier: {tier.name} (guide: {tier.guide_range}; {tier.hardware})",
             f"Memory: {format_bytes(est.memory.total)} in all (KV cache "
             f"{format_bytes(est.memory.kv_cache.bytes)} for {need.users} × "
             f"{format_tokens(s.ctx)})", ""]
    if result.options:
        lines.append("Options that meet it (fewest cards, then cheapest known price, then "
                     "fastest):")
        for i, option in enumerate(result.options[:top], 1):
            lines.append(f"  {i}. {describe_option(option)}")
        if len(result.options) > top:
            lines.append(f"  … {len(result.options) - top} more meet it (--top shows more)")
    else:
        lines.append("No listed hardware meets it.")
    lines += ["", "Left out:"]
    for kind in EXCLUSION_KINDS:
        group = [e for e in result.excluded if e.kind == kind]
        if not group:
            continue
        detailed = kind in ("too slow", "over budget")  # the reason differs per device
        limit = 4 if detailed else 6
        if detailed:
            shown = "; ".join(f"{short_name(e.device)}: {e.reason}" for e in group[:limit])
        else:
            shown = ", ".join(short_name(e.device) for e in group[:limit]) + \
                (" …" if len(group) > limit else "") + f": {group[0].reason}"
        more = f" (+{len(group) - limit} more)" if detailed and len(group) > limit else ""
        lines.append(f"  {kind} ({len(group)}): {shown}{more}")
    if not result.excluded:
        lines.append("  nothing")
    lines += ["", "Speed: decode tokens/s per user with all users generating at once, "
              f"after a {format_tokens(need.prompt_tokens)}-token prompt "
              "(`vramest --gpu ... --batch N` shows the parts).", PRICE_AGE_NOTE]
    priced = {o.device.name: o.device for o in result.options[:top]
              if o.device.price_usd is not None}
    for device in priced.values():
        lines.append(f"  {short_name(device)}: ${device.price_usd:,.0f} ({device.price_date}), "
                     f"{device.price_source}")
    return "\n".join(lines)
