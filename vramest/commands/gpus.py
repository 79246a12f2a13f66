"""vramest gpus: the hardware database."""

from __future__ import annotations

import json

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("gpus", help=help_text, description=help_text)
    p.add_argument("--json", action="store_true")
    p.add_argument("--kind", choices=("gpu", "apple", "cpu", "npu"), help="only this kind")
    p.add_argument("--hardware-file", help="JSON file of devices to add or override")


def run(args: argparse.Namespace) -> int:
    from vramest.hardware.database import load_hardware

    devices = [d for d in load_hardware(args.hardware_file).devices
               if args.kind is None or d.kind == args.kind]
    if args.json:
        print(json.dumps({"devices": [d.to_json() for d in devices]}, indent=2))
        return 0
    print(f"{'device':40} {'memory':>8} {'GB/s':>7} {'fp16 TFLOPS':>12} {'W':>5} {'price':>8}")
    for d in devices:
        fp16, _ = d.flops("fp16")
        bw = f"{d.bandwidth_bytes_s / 1e9:,.0f}" if d.bandwidth_bytes_s else "?"
        print(f"{d.name[:40]:40} {d.memory_gib:>5.0f}GiB {bw:>7} "
              f"{(f'{fp16 / 1e12:,.1f}' if fp16 else '?'):>12} "
              f"{(f'{d.tdp_w:.0f}' if d.tdp_w else ''):>5} "
              f"{(f'${d.price_usd:,.0f}' if d.price_usd else ''):>8}")
    return 0
