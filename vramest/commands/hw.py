"""vramest hw: what this machine has."""

from __future__ import annotations

import json

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("hw", help=help_text, description=help_text)
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from vramest.hardware.local import detect
    from vramest.units import format_bytes

    found = detect()
    if args.json:
        print(json.dumps(found.to_json(), indent=2))
        return 0
    for gpu in found.gpus:
        print(f"GPU {gpu.index}: {gpu.name}, {format_bytes(gpu.total_bytes)} total, "
              f"{format_bytes(gpu.free_bytes)} free, driver {gpu.driver}")
    if not found.gpus:
        print(f"No NVIDIA GPU: {found.note}.")
    ram = format_bytes(found.ram_bytes) if found.ram_bytes else "unknown"
    free = format_bytes(found.free_ram_bytes) if found.free_ram_bytes else "unknown"
    print(f"CPU: {found.cpu_cores} cores, RAM {ram} ({free} free)")
    return 0
