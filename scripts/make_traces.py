"""Regenerate vramest/validation/traces/*.json: fake-tensor traces of a fixed grid of catalog models.

    .venv/bin/python scripts/make_traces.py [--only SUBSTRING] [--out DIR]

One JSON file per model, each holding the `vramest trace --json` object of every grid point.
The torch-free tests (tests/test_trace_data.py) and `make accuracy` compare the analytic
estimate with these rows. Takes a few minutes on a 2-core CPU; needs the `calibrate` extra.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vramest.tracing.inference import TRACE_DIR, UnsupportedAttention, trace  # noqa: E402

MODELS = (
    "meta-llama/Llama-3.1-8B",
    "meta-llama/Llama-3.1-70B",
    "Qwen/Qwen2.5-7B",
    "mistralai/Mistral-7B-v0.1",  # sliding window 4096
    "mistralai/Mixtral-8x7B-v0.1",  # mixture of experts
    "google/gemma-2-9b",  # alternating sliding/full layers, tied embeddings, 256k vocabulary
    "openai-community/gpt2",  # learned positions, LayerNorm, Conv1D, 1024-token context
    "deepseek-ai/DeepSeek-V2-Lite",  # MLA + MoE with shared experts
    "BAAI/bge-large-en-v1.5",  # BERT encoder: an embedding batch, no KV, no logits
    "BAAI/bge-reranker-v2-m3",  # XLM-R encoder with a classifier head, 8192 positions
    "facebook/bart-large",  # encoder-decoder: self- and cross-attention KV
    "google/flan-t5-large",  # encoder-decoder with a relative position bias, untied head
    "mistralai/Mamba-Codestral-7B-v0.1",  # Mamba-2: recurrent state, chunked scan, no attention
    "google/gemma-3-4b-it",  # vision-language: SigLIP tower over a picture + its 258 tokens
    "ai21labs/Jamba-v0.1",  # hybrid: Mamba-1 + attention + MoE (its own short grid)
    "tiiuae/Falcon-H1-1.5B-Instruct",  # attention and Mamba-2 in parallel in every layer
    "Zyphra/Zamba2-2.7B",  # Mamba-2 + 2 shared attention blocks with per-use LoRA
    "ibm-granite/granite-4.0-h-tiny",  # Mamba-2 or attention per layer, MoE + shared MLP
    "RWKV/rwkv-4-169m-pile",  # RWKV-4: token shifts + WKV state, no attention
)
# the hybrids added for issue 21 (their reference scans are slower on fake tensors): a short
# grid over context, batch, precision, eager attention and chunked prefill
HYBRIDS = ("tiiuae/Falcon-H1-1.5B-Instruct", "Zyphra/Zamba2-2.7B",
           "ibm-granite/granite-4.0-h-tiny")
# vision-language models: every grid point also carries this many pictures per sequence
IMAGES = {"google/gemma-3-4b-it": 1}


STALE_KEYS = ("memory", "analytic_peak_bytes", "difference", "rss_bytes")


@dataclass(frozen=True)
class GridPoint:
    dtype: str
    ctx: int
    batch: int
    attention: str
    prefill_chunk: int | None = None


def grid() -> tuple[GridPoint, ...]:
    """bf16 sdpa over contexts × batch; eager, fp32 and chunked prefill on a smaller subset."""
    points = [GridPoint("bf16", ctx, batch, "sdpa") for ctx in (1024, 4096, 16384)
              for batch in (1, 4)]
    points += [GridPoint("bf16", ctx, batch, "eager") for ctx in (1024, 4096) for batch in (1, 4)]
    points += [GridPoint("fp32", 4096, batch, "sdpa") for batch in (1, 4)]
    points += [GridPoint("fp32", 4096, 1, "eager")]
    points += [GridPoint("bf16", 16384, 1, "sdpa", 2048), GridPoint("bf16", 4096, 2, "eager", 1024)]
    return tuple(points)


def grid_for(model: str) -> tuple[GridPoint, ...]:
    """Jamba's reference Mamba-1 scan loops once per token per layer on fake tensors (about 3
    minutes per 512 tokens on 2 cores): a short grid."""
    if model == "ai21labs/Jamba-v0.1":
        return (GridPoint("bf16", 512, 1, "sdpa"), GridPoint("bf16", 512, 2, "sdpa"),
                GridPoint("bf16", 1024, 1, "sdpa"))
    if model == "RWKV/rwkv-4-169m-pile":  # its CPU WKV loop runs once per token per layer,
        # and transformers builds it with eager attention only
        return (GridPoint("bf16", 256, 1, "eager"), GridPoint("bf16", 256, 2, "eager"),
                GridPoint("fp32", 512, 1, "eager"))
    if model in HYBRIDS:
        return (GridPoint("bf16", 1024, 1, "sdpa"), GridPoint("bf16", 4096, 1, "sdpa"),
                GridPoint("bf16", 4096, 4, "sdpa"), GridPoint("bf16", 1024, 2, "eager"),
                GridPoint("fp32", 4096, 1, "sdpa"), GridPoint("bf16", 4096, 2, "sdpa", 1024))
    return grid()


def is_encoder(model: str) -> bool:
    """Encoders and encoder-decoders: the trace runs one forward, never in chunks."""
    from vramest.model.catalog import default_catalog

    return default_catalog().find(model).shape().architecture != "decoder"


def max_context(model: str) -> int | None:
    from vramest.model.catalog import default_catalog

    return default_catalog().find(model).shape().max_context


def slug(model: str) -> str:
    return model.replace("/", "__")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="only models whose name contains this")
    parser.add_argument("--out", type=Path, default=TRACE_DIR)
    args = parser.parse_args(argv)
    import torch
    import transformers

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for model in MODELS:
        if args.only and args.only.lower() not in model.lower():
            continue
        limit = max_context(model)
        encoder = is_encoder(model)  # one forward per batch: no chunked prefill to trace
        rows: list[dict] = []  # type: ignore[type-arg]
        done: set[tuple[str, int, int, str, int]] = set()
        unsupported: set[str] = set()
        for point in grid_for(model):
            ctx = min(point.ctx, limit) if limit else point.ctx  # GPT-2: 1024 positions
            chunk = min(point.prefill_chunk or ctx, ctx)
            key = (point.dtype, ctx, point.batch, point.attention, chunk)
            images = IMAGES.get(model, 0)
            if key in done or point.attention in unsupported or (encoder and chunk < ctx) or \
                    (images and chunk < ctx):  # pictures enter with the first chunk whole
                continue
            done.add(key)
            try:
                result = trace(model, point.dtype, ctx, point.batch, point.attention,
                               prefill_chunk=None if images else chunk,
                               images=images).to_json()
            except UnsupportedAttention as exc:  # Gemma 2: eager only in transformers 5
                print(f"{model} {point.attention}: skipped, {exc}", flush=True)
                unsupported.add(point.attention)
                continue
            print(f"{model} {point.dtype} ctx {ctx} chunk {chunk} batch {point.batch} "
                  f"{point.attention}: "
                  f"{result['seconds']:.1f}s, analytic vs trace {result['difference']['pct']:+.2f}%",
                  flush=True)
            for stale in STALE_KEYS:  # the estimate changes with the formulas: compare afresh
                result.pop(stale, None)
            rows.append(result)
        payload = {
            "generated_by": "scripts/make_traces.py",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "model": model,
            "traces": rows,
        }
        (args.out / f"{slug(model)}.json").write_text(json.dumps(payload, indent=1) + "\n",
                                                      encoding="utf-8")
    print(f"done in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
