"""vramest trace --model NAME --dtype bf16 --ctx 8192: measure a full-size model on fake tensors."""

from __future__ import annotations

import json

from vramest.commands.common import positive_int
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from typing import Any


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("trace", help=help_text, description=help_text + ". Runs the "
                       "transformers implementation of a catalog model at full size on torch "
                       "fake tensors (no weights, no GPU) and reports the exact peak of live "
                       "tensor bytes per phase beside the analytic estimate. Needs the "
                       "`calibrate` extra.")
    p.add_argument("--model", required=True, help="catalog name (vramest models lists them)")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"),
                   help="compute and weight precision (default bf16)")
    p.add_argument("--ctx", default="4096", help="prompt tokens: 8192, 8k (default 4096)")
    p.add_argument("--batch", type=positive_int("--batch", maximum=4096), default=1,
                   help="concurrent sequences (default 1)")
    p.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"),
                   help="attention implementation (eager materialises the scores)")
    p.add_argument("--phase", default="decode", choices=("load", "prefill", "decode", "train"),
                   help="trace up to this phase (default decode: load, prefill, decode); train: "
                   "one full fine-tuning step (forward with the loss, backward, AdamW step) at "
                   "--ctx tokens × --batch sequences")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="with --phase train: recompute each layer in backward")
    p.add_argument("--method", default="full", choices=("full", "lora", "qlora"),
                   help="with --phase train: full fine-tuning (default) or PEFT LoRA adapters "
                   "over a frozen base (needs the peft package; qlora runs on real tensors only)")
    p.add_argument("--lora-rank", type=positive_int("--lora-rank", maximum=65536),
                   help="with --method lora: adapter rank (default 16; alpha = 2 × rank)")
    p.add_argument("--lora-targets",
                   help="with --method lora: all-linear (default) or module names, e.g. "
                   "q_proj,v_proj")
    p.add_argument("--prefill-chunk", help="tokens per prefill forward (default: the whole prompt)")
    p.add_argument("--decode-steps", type=positive_int("--decode-steps", maximum=64),
                   help="decode steps after the prefill (default 2)")
    p.add_argument("--images", type=positive_int("--images", maximum=64),
                   help="pictures per sequence through the vision tower at its own size, their "
                   "tokens beside the --ctx text tokens (Gemma 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from vramest.tracing.inference import PHASES, trace
    from vramest.units import parse_tokens

    ctx = parse_tokens(args.ctx)
    _refuse_unused_flags(args)
    if args.phase == "train":
        return _run_train(args, ctx)
    chunk = (None if args.prefill_chunk is None
             else parse_tokens(args.prefill_chunk, what="--prefill-chunk"))
    phases = PHASES[:PHASES.index(args.phase) + 1]
    result = trace(args.model, args.dtype, ctx, args.batch, args.attn, phases,
                   prefill_chunk=chunk, decode_steps=args.decode_steps or 2,
                   images=args.images or 0)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print("\n".join(render_trace(result.to_json())))
    return 0


def _refuse_unused_flags(args: argparse.Namespace) -> None:
    """A flag the chosen phase or method would ignore is a mistake worth one sentence."""
    from vramest.errors import InputError

    train = args.phase == "train"
    lora = train and args.method != "full"
    needs = (("--grad-checkpointing", args.grad_checkpointing, train, "--phase train"),
             ("--method", args.method != "full", train, "--phase train"),
             ("--lora-rank", args.lora_rank is not None, lora, "--method lora or qlora"),
             ("--lora-targets", args.lora_targets is not None, lora, "--method lora or qlora"),
             ("--prefill-chunk", args.prefill_chunk is not None, not train, "the inference phases"),
             ("--decode-steps", args.decode_steps is not None, not train, "the inference phases"),
             ("--images", args.images is not None, not train, "the inference phases"))
    for flag, given, applies, where in needs:
        if given and not applies:
            raise InputError(f"{flag} applies to {where} only.")


def render_trace(data: dict[str, Any]) -> list[str]:
    from vramest.units import format_bytes

    s = data["settings"]
    lines = [f"{data['model']}  ·  {s['dtype']}  ·  ctx {s['ctx']}  ·  batch {s['batch']}  ·  "
             f"{s['attention']}  ·  traced on fake tensors in {data['seconds']:.1f} s, "
             f"process RSS {format_bytes(data['rss_bytes'])}", ""]
    lines.append(f"  {'phase':8} {'peak':>11} {'params':>11} {'KV cache':>11} "
                 f"{'activations':>11}  peak at")
    for phase in data["phases"].values():
        lines.append(f"  {phase['name']:8} {format_bytes(phase['peak_bytes']):>11} "
                     f"{format_bytes(phase['params_bytes']):>11} "
                     f"{format_bytes(phase['kv_cache_bytes']):>11} "
                     f"{format_bytes(phase['activations_bytes']):>11}  aten.{phase['peak_op']}")
    memory = data["memory"]
    lines.append("")
    lines.append(f"  analytic  weights {format_bytes(memory['weights'])} + KV "
                 f"{format_bytes(memory['kv_cache'])} + activations "
                 f"{format_bytes(memory['activations'])} (+ overhead "
                 f"{format_bytes(memory['overhead'])} = total {format_bytes(memory['total'])})")
    if "difference" in data:
        diff = data["difference"]
        lines.append(f"  analytic tensor peak {format_bytes(data['analytic_peak_bytes'])} vs "
                     f"traced prefill peak: {diff['pct']:+.2f}% ({diff['bytes']:+,} bytes)")
    lines.append(f"  attention: {data['attention_kernel']}")
    lines.extend(f"  note: {note}" for note in data.get("notes", ()))
    return lines


def _run_train(args: argparse.Namespace, seq: int) -> int:
    from vramest.tracing.training import trace_train
    from vramest.units import format_bytes

    result = trace_train(args.model, dtype=args.dtype, seq=seq, micro_batch=args.batch,
                         attn=args.attn, grad_checkpointing=args.grad_checkpointing,
                         method=args.method, lora_rank=args.lora_rank or 16,
                         lora_targets=args.lora_targets or "all-linear")
    data = result.to_json()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    run, analytic = data["phases"]["train"], data["analytic"]
    what = (f"full fine-tuning, pure {args.dtype}" if args.method == "full" else
            f"LoRA r={args.lora_rank or 16} on {args.lora_targets or 'all-linear'} (PEFT), "
            f"{args.dtype} base, "
            f"{run['trainable_params']:,} trainable params")
    print(f"{data['model']}  ·  {what}, AdamW  ·  seq {seq} × "
          f"micro-batch {args.batch}{'  ·  checkpointing' if args.grad_checkpointing else ''}  ·  "
          f"traced on fake tensors in {run['seconds']:.1f} s, process RSS "
          f"{format_bytes(run['rss_bytes'])}\n")
    print(f"  traced peak   {format_bytes(run['peak_bytes']):>11}  at {run['peak_op']}")
    for key in ("params", "gradients", "optimizer_states", "activations"):
        print(f"    {key:17} {format_bytes(run[key + '_bytes']):>11}")
    print(f"  analytic      {format_bytes(analytic['total']):>11}  (peaks at the "
          f"{analytic['moment'].replace('_', ' ')}; `vramest train --method {args.method} "
          f"--precision {data['settings']['analytic_precision']}` shows its parts)")
    print(f"  difference    {data['difference']['pct']:+.1f}%")
    return 0
