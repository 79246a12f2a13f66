"""vramest tiers: the LLM size tiers, the guide's hardware claims, and vramest's numbers."""

from __future__ import annotations

import json

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from vramest.advice.tiers import TierReport
    from vramest.hardware.database import Device

PRICE_AGE_NOTE = ("Prices are list/launch prices at the date shown, in USD; prices age, so check "
                  "today's before buying.")


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("tiers", help=help_text, description=help_text)
    p.add_argument("--ctx", help="context tokens for the computed memory (default 8k)")
    p.add_argument("--hardware-file", help="JSON file of devices to add or override")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from vramest.advice.tiers import DEFAULT_TIER_CTX, load_tiers, tier_table

    reports = tier_table(args.ctx or DEFAULT_TIER_CTX, args.hardware_file)
    guide = load_tiers()
    if args.json:
        print(json.dumps({"source": guide.source, "notes": list(guide.notes),
                          "price_note": PRICE_AGE_NOTE,
                          "tiers": [r.to_json() for r in reports]}, indent=2))
        return 0
    print(render(reports))
    return 0


def render(reports: tuple[TierReport, ...]) -> str:
    from vramest.advice.tiers import CLAIM_DTYPE, short_name
    from vramest.units import format_bytes, format_tokens

    guide_source = "the LLM size-tier guide, as summarised in issue 9"
    lines = [f"LLM size tiers: {guide_source}, beside vramest's estimate (batch 1)", ""]
    priced: dict[str, Device] = {}
    for report in reports:
        t = report.tier
        bound = f"vramest counts below {t.upper_params / 1e9:g}B" if t.upper_params else \
            "vramest counts everything above the previous tier"
        lines.append(f"{t.name.upper()}  (guide: {t.guide_range}; {bound})")
        lines.append(f"  guide's hardware: {t.hardware}; uses: {', '.join(t.uses)}")
        lines.append(f"  {'model':30} {'dtype':5} {'ctx':>4} {'memory':>11}  smallest listed GPUs")
        for row in report.rows:
            smallest = row.smallest.describe() if row.smallest else "does not fit on 64 cards"
            if row.smallest and row.smallest.price_usd is not None:
                priced[row.smallest.device.name] = row.smallest.device
            lines.append(f"  {row.model[:30]:30} {row.dtype:5} {format_tokens(row.ctx):>4} "
                         f"{format_bytes(row.total_bytes):>11}  {smallest}")
        for check in report.claims:
            c = check.claim
            lines.append(f"  guide: {c.params} → {c.hardware_text}, {c.memory_text}   "
                         f"(vramest: {CLAIM_DTYPE}, ctx {format_tokens(check.ctx)}, "
                         f"on {short_name_of(c.check_on)})")
            lines.append(f"    memory    {'agree ' if check.memory_agrees else 'DIFFER'}  "
                         f"{check.memory_why}")
            lines.append(f"    hardware  {'agree ' if check.hardware_agrees else 'DIFFER'}  "
                         f"{check.hardware_why}")
        lines.append("")
    lines.append("Smallest = fewest cards of one listed GPU (`vramest gpus`), then the cheapest "
                 "known price; cards without a shipped price rank after priced ones.")
    lines.append(PRICE_AGE_NOTE)
    for device in priced.values():
        lines.append(f"  {short_name(device)}: ${device.price_usd:,.0f} ({device.price_date}), "
                     f"{device.price_source}")
    return "\n".join(lines)


def short_name_of(name: str) -> str:
    return name.removeprefix("NVIDIA GeForce ").removeprefix("NVIDIA ")
