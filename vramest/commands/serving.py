"""vramest serving --model M --gpu h100 --num-gpus 2 --engine vllm --input-len 1024
--output-len 256 --concurrency 32"""

from __future__ import annotations

import json

from vramest.commands.common import positive_float, positive_int
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

ENGINE_NAMES = ("vllm", "sglang", "trtllm", "llamacpp")


def add_workload_args(p: argparse.ArgumentParser) -> None:
    """The model and the request lengths: the flags `serving` and `plan` share."""
    p.add_argument("--model", help="catalog name, config.json, model folder or hub id")
    p.add_argument("--params", help="parameter count (70B) when no --model is given")
    p.add_argument("--input-len", required=True, type=positive_int("--input-len", 10**7),
                   help="prompt tokens per request")
    p.add_argument("--output-len", required=True, type=positive_int("--output-len", 10**7),
                   help="generated tokens per request")
    p.add_argument("--input-len-dist", help="how prompt lengths scatter around --input-len: "
                   "fixed (default), uniform:R (over [1-R, 1+R] × the mean) or exponential")
    p.add_argument("--output-len-dist", help="the same for output lengths")


def add_serving_args(p: argparse.ArgumentParser) -> None:
    """The workload's flags and the engine scheduler's."""
    add_workload_args(p)
    p.add_argument("--max-num-batched-tokens", type=positive_int("--max-num-batched-tokens"),
                   help="the chunked-prefill token budget per step (default: the engine's)")
    p.add_argument("--max-num-seqs", type=positive_int("--max-num-seqs"),
                   help="most sequences running at once (default: the engine's)")
    p.add_argument("--hardware-file", help="JSON file of devices to add or override")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("serving", help=help_text, description=help_text)
    add_serving_args(p)
    p.add_argument("--dtype", help="weight precision (fp8, bf16, nvfp4, ...; default: the "
                   "model's own)")
    p.add_argument("--kv-dtype", help="KV cache precision (default: the compute dtype)")
    p.add_argument("--gpu", required=True, help="the GPU (h100, h200, ...)")
    p.add_argument("--num-gpus", default=1, type=positive_int("--num-gpus", 4096),
                   help="all the GPUs of the replica: tensor parallel = num-gpus / pp")
    p.add_argument("--pp", default=1, type=positive_int("--pp", 4096),
                   help="pipeline-parallel stages (default 1)")
    p.add_argument("--ep", default=1, type=positive_int("--ep", 4096),
                   help="expert-parallel groups for a mixture of experts, dividing the "
                   "tensor-parallel size (default 1: experts split by tensor parallelism)")
    p.add_argument("--engine", default="vllm", choices=ENGINE_NAMES,
                   help="serving engine whose scheduler and costs to use (default vllm)")
    load = p.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=positive_int("--concurrency", 10**6),
                      help="requests kept in flight (closed loop, as --max-concurrency)")
    load.add_argument("--request-rate", type=positive_float("--request-rate",
                                                            "a rate of requests per second",
                                                            1e6),
                      help="Poisson arrivals per second (open loop)")
    from vramest.commands.extras_args import add_extras_args

    add_extras_args(p)


def run(args: argparse.Namespace) -> int:
    from vramest.commands.extras_args import extras_kwargs
    from vramest.inference.serving_extras import ServingExtras
    from vramest.serving.api import serving

    extras = ServingExtras(**extras_kwargs(args))
    est = serving(model=args.model, params=args.params, dtype=args.dtype,
                  kv_dtype=args.kv_dtype, gpu=args.gpu, num_gpus=args.num_gpus, pp=args.pp,
                  engine=args.engine, input_len=args.input_len, output_len=args.output_len,
                  concurrency=args.concurrency, request_rate=args.request_rate,
                  max_num_batched_tokens=args.max_num_batched_tokens,
                  max_num_seqs=args.max_num_seqs, hardware_file=args.hardware_file,
                  extras=extras, ep=args.ep, input_len_dist=args.input_len_dist,
                  output_len_dist=args.output_len_dist)
    d = est.deployment
    out = {"model": d.shape.name, "dtype": d.fmt.name, "kv_dtype": d.kv.name,
           "gpu": d.device.name, "num_gpus": d.num_gpus, "serving": est.to_json()}
    if d.extras:  # as the model's config settled them (MTP layers)
        from vramest.inference.serving_extras import extras_json

        out.update(extras_json(d.shape, d.fmt.name, d.kv.name, d.extras))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(render(out))
    return 0


def render(out: dict[str, object]) -> str:
    s = out["serving"]
    assert isinstance(s, dict)
    if s["mode"] == "concurrency":
        load = f"{s['concurrency']:g} requests in flight"
    elif s["mode"] == "request-rate":
        load = f"{s['request_rate']:g} requests/s (Poisson), {s['concurrency']:g} in flight"
    else:
        load = f"maximum throughput ({s['concurrency']:g} running, requests always waiting)"
    mem = s["memory_per_gpu"]
    gib = 1 / 2**30

    def row(label: str, key: str, scale: float = 1000, unit: str = "ms") -> str:
        v = s[key]
        return (f"  {label:<6} {v['median'] * scale:10.1f} {v['p90'] * scale:10.1f} "
                f"{v['p99'] * scale:10.1f}  {unit}")

    lines = [
        f"{out['model']}  ·  {out['dtype']} (KV {out['kv_dtype']})  ·  {out['num_gpus']}× "
        f"{out['gpu']} (TP {s['tensor_parallel']}, PP {s['pipeline_parallel']}"
        f"{', EP ' + str(s['expert_parallel']) if s.get('expert_parallel', 1) > 1 else ''})  ·  "
        f"{s['engine']}",
        f"{s['input_len']} prompt + {s['output_len']} output tokens per request"
        f"{_spread_note(s)}, {load}",
        "",
        "  latency    median        p90        p99",
        row("TTFT", "ttft_s"), row("TPOT", "tpot_s"), row("ITL", "itl_s"),
        row("E2E", "e2e_s", 1, "s"),
        "",
        f"  output tokens/s: {s['output_tokens_per_s']:,.0f} in all, "
        f"{s['output_tokens_per_s_per_gpu']:,.0f} per GPU, "
        f"{s['output_tokens_per_s_per_user']:,.1f} per user",
        f"  KV cache holds {s['max_concurrency']} whole requests at once "
        f"({mem['kv_cache_tokens']:,} tokens); simulated {s['running']:g} running",
        f"  per GPU: weights {mem['weights_bytes'] * gib:.2f} GiB, activations at the "
        f"{s['max_num_batched_tokens']}-token budget {mem['activation_bytes'] * gib:.2f} GiB, "
        f"KV cache {mem['kv_cache_bytes'] * gib:.2f} GiB",
        "",
        "Steady state of continuous batching with chunked prefill; percentiles are modelled "
        "spreads, not samples. Constants fitted per engine on H100/H200 measurements "
        "(make accuracy shows the errors).",
    ]
    lines += [str(extra["formula"]) for extra in (out.get("lora"), out.get("speculative"))
              if isinstance(extra, dict)]
    if s["prefill_bound"]:
        lines.append("Prefill is the bottleneck here: requests queue for prompt processing.")
    return "\n".join(lines)


def _spread_note(s: dict) -> str:
    """How the lengths scatter, when they do (means otherwise)."""
    kinds = [f"{what} {s[key]}" for what, key in (("prompts", "input_len_dist"),
                                                   ("outputs", "output_len_dist"))
             if s.get(key, "fixed") != "fixed"]
    return f" on average ({', '.join(kinds)})" if kinds else ""
