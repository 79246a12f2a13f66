"""Command line: a thin layer over the public API. Estimating is the default command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vramest.errors import InputError

SUBCOMMANDS: dict[str, str] = {
    "estimate": "memory (and, with --gpu, fit and speed) of one model; the default command",
    "models": "list the built-in model catalog",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as InputError (one line, exit 2) instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{message[0].upper()}{message[1:]}; see `vramest --help`.")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--params", help="parameter count: 7B, 70b, 1.5B, 560M, 1.2T or an integer")
    g.add_argument("--active-params", help="active parameters of a mixture of experts (13B)")
    g.add_argument("--model", help="catalog name (meta-llama/Llama-3.1-70B, llama-3.1-70b), "
                   "config.json, model folder or .gguf file")
    g.add_argument("--family", default="llama",
                   help="shape family borrowed for --params: llama, qwen, gemma, moe")
    for flag, dest in (("--layers", "num_layers"), ("--hidden", "hidden_size"),
                       ("--heads", "num_heads"), ("--kv-heads", "num_kv_heads"),
                       ("--head-dim", "head_dim"), ("--intermediate", "intermediate_size"),
                       ("--vocab", "vocab_size")):
        g.add_argument(flag, dest=dest, type=_positive_int(flag), help="shape override")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--dtype", help="weight precision: fp32 fp16 bf16 fp8 int8 int4 nf4 "
                   "bnb-nf4-dq gptq-int4 awq-int4 mxfp4 q8_0 q6_k q5_k_m q4_k_m q4_0 q2_k "
                   "iq4_xs ... (default: the model's own)")
    g.add_argument("--kv-dtype", help="KV cache precision: fp16 bf16 fp32 fp8 q8_0 q4_0 "
                   "(default: the compute dtype)")
    g.add_argument("--ctx", help="context length in tokens: 8192, 8k, 128K (default 4096)")
    g.add_argument("--batch", default="1", help="concurrent sequences (default 1)")
    g.add_argument("--prefill-chunk", help="tokens per prefill forward (default: the context)")
    g.add_argument("--attn", default="sdpa", choices=("sdpa", "flash", "eager"),
                   help="attention implementation (eager materialises the scores)")


def _positive_int(flag: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        from vramest.units import parse_positive_int

        return parse_positive_int(text, what=flag, maximum=10**7)
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vramest", description="How much GPU memory an LLM needs.",
                     epilog="Commands: " + "; ".join(f"{k}: {v}" for k, v in SUBCOMMANDS.items()))
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    est = sub.add_parser("estimate", help=SUBCOMMANDS["estimate"])
    _add_model_args(est)
    _add_run_args(est)
    est.add_argument("--json", action="store_true", help="print one JSON object")
    est.add_argument("--explain", action="store_true", help="show each part's formula")
    models = sub.add_parser("models", help=SUBCOMMANDS["models"])
    models.add_argument("--json", action="store_true")
    models.add_argument("--family", help="only this model_type (llama, qwen2, ...)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in SUBCOMMANDS and args_list[0] not in
                         ("-h", "--help", "--version")):
        args_list.insert(0, "estimate")
    try:
        args = build_parser().parse_args(args_list)
        if args.version:
            from importlib.metadata import version

            print(version("vramest"))
            return 0
        handler = _HANDLERS[args.command]
        return handler(args)
    except InputError as exc:
        print(f"vramest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vramest: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _estimate_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    from vramest.estimator import SHAPE_OVERRIDES

    kwargs: dict[str, Any] = {
        "params": args.params, "model": args.model, "family": args.family,
        "active_params": args.active_params, "dtype": args.dtype, "kv_dtype": args.kv_dtype,
        "ctx": args.ctx, "batch": args.batch, "prefill_chunk": args.prefill_chunk,
        "attention": args.attn,
    }
    kwargs.update({k: getattr(args, k) for k in SHAPE_OVERRIDES})
    return kwargs


def _cmd_estimate(args: argparse.Namespace) -> int:
    from vramest.estimator import estimate
    from vramest.report import render_estimate

    result = estimate(**_estimate_kwargs(args))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render_estimate(result, explain=args.explain))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from vramest.catalog import default_catalog
    from vramest.units import format_count

    rows = []
    for entry in default_catalog().entries:
        if args.family and entry.family != args.family.lower():
            continue
        shape = entry.shape()
        rows.append({"id": entry.id, "aliases": list(entry.aliases), "family": entry.family,
                     "params": shape.param_count(), "active_params": shape.active_param_count(),
                     "source": entry.source})
    if args.json:
        print(json.dumps({"models": rows}, indent=2))
        return 0
    width = max((len(r["id"]) for r in rows), default=10)
    print(f"{'model':{width}}  {'family':18} {'params':>8} {'active':>8}  aliases")
    for r in rows:
        active = format_count(r["active_params"]) if r["active_params"] < r["params"] else ""
        print(f"{r['id']:{width}}  {r['family']:18} {format_count(r['params']):>8} "
              f"{active:>8}  {', '.join(r['aliases'])}")
    return 0


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "estimate": _cmd_estimate,
    "models": _cmd_models,
}


if __name__ == "__main__":
    sys.exit(main())
