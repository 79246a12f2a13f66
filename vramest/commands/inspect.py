"""vramest inspect PATH: what a model folder, safetensors or GGUF file holds."""

from __future__ import annotations

import json

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("inspect", help=help_text, description=help_text + ". Only headers are "
                       "read: safetensors and GGUF, never pickled .bin/.pt files.")
    p.add_argument("path", help="model folder, config.json, .safetensors or .gguf file")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from vramest.files import dumps_json
    from vramest.model.shapes import UnknownArchitecture, shape_from_config
    from vramest.readers.inspect import inspect_path
    from vramest.units import format_bytes, format_count

    found = inspect_path(args.path)
    shape, refused = None, ""
    if found.config:
        try:
            shape = shape_from_config(found.config, str(found.path), origin=str(found.path),
                                      generic_decoder=found.params is not None)
        except UnknownArchitecture as exc:  # the files' own counts still stand
            if found.params is None:
                raise
            refused = str(exc)
    if args.json:
        out = found.to_json()
        if shape is not None:
            out["resolved_shape"] = shape.summary()
        if refused:
            out["shape_refused"] = refused
        print(dumps_json(out, indent=2))  # NaN and Infinity become null
        return 0
    print(f"{found.path}  ({found.kind})")
    if found.params is not None:
        print(f"  parameters    {format_count(found.params)} ({found.params:,})")
    if found.weights_bytes is not None:
        print(f"  stored bytes  {format_bytes(found.weights_bytes)} ({found.weights_bytes:,})")
    if found.params_by_dtype:
        print("  by dtype:")
        for label, params in sorted(found.params_by_dtype.items(), key=lambda kv: -kv[1]):
            nbytes = found.bytes_by_dtype.get(label, 0)
            bits = nbytes * 8 / params if params else 0
            print(f"    {label:14} {format_count(params):>9} params  {format_bytes(nbytes):>11}"
                  f"  {bits:6.3f} bits/param")
    if found.params_by_component:
        print("  by component:")
        for component, params in sorted(found.params_by_component.items(), key=lambda kv: -kv[1]):
            print(f"    {component:14} {format_count(params):>9}")
    if shape is not None:
        print("  shape: " + ", ".join(f"{k} {v}" for k, v in shape.summary().items()))
    if refused:
        print(f"  shape: not read ({refused})")
    if found.quantization:
        print(f"  quantization: {json.dumps(found.quantization, default=str)[:300]}")
    return 0
