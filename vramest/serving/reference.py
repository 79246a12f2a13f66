"""Serving measurements with their sources, and the model's error on them.

In vramest/validation/reference/: serving_aiconfigurator_silicon.csv, TTFT and TPOT of
aggregated serving of dense models on H100/H200 at a fixed concurrency, from the silicon rows
NVIDIA ships in the `aiconfigurator-core` 0.12.0 wheel (TRT-LLM, vLLM, SGLang), and its B200
rows (never fitted); serving_max_throughput.csv, TensorRT-LLM's published offline
maximum-throughput runs; serving_public_posts.csv, rows of public benchmark posts.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from vramest.frozen import frozen, replace
from vramest.hardware.database import default_hardware
from vramest.model.resolve import resolve_model
from vramest.serving.engines import SERVING_ENGINES, ServingEngine, with_options
from vramest.serving.estimate import capacity, deployment, serve
from vramest.serving.lengths import parse_length_dist
from vramest.serving.step import kv_bytes_per_sequence

DATA = Path(__file__).resolve().parents[1] / "validation" / "reference"
MAX_BYTES = 4 << 20


@frozen
class Row:
    id: str
    engine: str
    model: str
    checkpoint: str
    gpu: str
    dtype: str
    input_len: int
    output_len: int
    tp: int
    concurrency: int | None  # None: offline maximum throughput
    ttft_s: float | None
    tpot_s: float | None
    tokens_per_s: float | None
    source: str
    ep: int = 1  # expert parallel groups (AIConfigurator's moe_ep_size)
    engine_version: str = ""
    length_dist: str = "fixed"  # how the run's input and output lengths spread (lengths.py)
    kv: str = ""  # the KV precision where the source states it (a `kv_dtype` column)

    @property
    def kv_dtype(self) -> str | None:
        """The KV precision the source states; else NVIDIA's FP8 checkpoints (ModelOpt,
        nvidia/*-FP8) carry kv_cache_quant_algo FP8 and engines run them with an FP8 KV cache;
        so did the TensorRT-LLM campaigns in FP8_KV_CAMPAIGNS, as their own capacity shows.
        Otherwise the KV cache keeps the compute precision (the engines' default)."""
        if self.kv:
            return self.kv
        if self.dtype != "fp8":
            return None
        if self.checkpoint.startswith("nvidia/"):
            return "fp8"
        return "fp8" if (self.engine, self.group) in FP8_KV_CAMPAIGNS else None

    @property
    def group(self) -> str:
        """The measurement campaign a row belongs to (left out together)."""
        if "(measured: " in self.source:
            return self.source.split("(measured: ")[1].rstrip(")")
        return f"{self.engine} max throughput {self.model} {self.gpu}"


# The KV precision a campaign ran with, where its rows name the base model rather than the FP8
# checkpoint: TensorRT-LLM reserves each request's full length (CapacitySchedulerPolicy
# GUARANTEED_NO_EVICT, its default), so the concurrency at which requests start to queue
# measures the KV pool. Llama-3.1-70B in FP8 on one H200 at 1024 in / 8192 out ran 32 requests
# at once (TTFT 0.45 s) and queued at 64 (TTFT 80 s): 32 × 9216 tokens need 90 GiB of bf16 KV
# (320 KiB a token), more than the ~60 GiB left, and 45 GiB in FP8, which fits while 64 do not
# (the FP8 Llama-3.1 checkpoints NVIDIA publishes quantize the KV cache). The 1.0.0rc3
# Qwen3-32B FP8 campaign on one H100 waited longer for its first token at 64 × (4096 + 512)
# tokens (3.8 s) than at 64 × (4096 + 256) (1.6 s): a pool of about 280–295k tokens, near what
# bf16 KV leaves (the start-up accounting here gives 255k) and half what FP8 would hold, so it
# stays bf16 (with FP8 its TPOT comes out 15% fast, with bf16 5%).
FP8_KV_CAMPAIGNS = {("trtllm", "2026-04-06.csv")}


def _is_aiconfigurator(row: Row) -> bool:
    return "aiconfigurator" in row.source


def _version(text: str) -> tuple[int, ...]:
    """'0.5.6.post2' → (0, 5, 6); unparsable parts end the tuple."""
    out: list[int] = []
    for part in text.split(".")[:3]:
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


# AIConfigurator's config generator deploys an aggregated SGLang worker with
# --enable-mixed-chunk, --max-prefill-tokens ISL + 1500 and --max-running-requests the batch
# size (ai-dynamo/aiconfigurator@07a37792333d81714d0071669f8eb9a1bef4b163, 2026-01-19,
# src/aiconfigurator/generator/rule_plugin/sglang.rule and config/backend_config_mapping.yaml).
# Its SGLang 0.5.6.post2 and later campaigns behave so (each request's TPOT carries the other
# requests' prompts; clumps are 0.2–0.4 of the running batch), its 0.5.1.post1 campaign, measured
# before that generator existed, as SGLang's default (prefill batches run alone, whole clumps).
GENERATOR_SGLANG_FROM = (0, 5, 6)


# AIConfigurator's TensorRT-LLM aggregated worker, from its first release on
# (ai-dynamo/aiconfigurator@efcae124c, 2025-08-11: src/aiconfigurator/cli/backends/trtllm.py
# "max_num_tokens = bs + isl + 1500", templates/trtllm/dynamo/extra_engine_args.1.0.0rc3.yaml.j2
# "max_batch_size: {{ bs }}", "enable_chunked_prefill: ... default(false)"; the rule plugin
# (generator/rule_plugin/trtllm.rule) kept + 1500 until 2026-03-17). Its TensorRT-LLM campaigns
# ran so: 1.0.0rc3 and 1.2.0rc6.post1 from its own gap analysis, and the 2026-04-06 dump's rows,
# measured 2025-10-29. Its template's free_gpu_memory_fraction default (0.80) is not taken: the
# 2026-04-06 campaign ran 128 requests of 9216 tokens on two H200s without queueing (TTFT
# 0.66 s), which needs about 0.95 of the free memory for the KV cache.
AIC_TRTLLM_PROMPT_ROOM = 1500  # tokens of max_num_tokens past the batch and one prompt


def deployed(row: Row, eng: ServingEngine) -> ServingEngine:
    """The engine as it was deployed for a measurement: SGLang campaigns of AIConfigurator run
    under its generator's flags from GENERATOR_SGLANG_FROM on, its TensorRT-LLM campaigns under
    its TensorRT-LLM settings; every other row under the engine's defaults."""
    if row.concurrency is None or not _is_aiconfigurator(row):
        return eng
    if eng.name == "trtllm":
        # without chunking a step takes whole prompts; the decodes use up to the batch of
        # max_num_tokens, so ISL + 1500 tokens are left for them
        whole = max(1, (row.input_len + AIC_TRTLLM_PROMPT_ROOM) // row.input_len)
        return with_options(eng, max_num_batched_tokens=whole * row.input_len,
                            max_num_seqs=row.concurrency)
    if eng.name != "sglang" or _version(row.engine_version) < GENERATOR_SGLANG_FROM:
        return eng
    # the prompt tokens of a mixed step: up to max-prefill-tokens, within the chunk size
    budget = min(eng.max_num_batched_tokens, row.input_len + 1500)
    return replace(with_options(eng, max_num_batched_tokens=budget,
                                max_num_seqs=row.concurrency), mixed=True)


# trtllm-bench sizes the engine for its dataset when not told (TensorRT-LLM's published
# throughput tables ran so): NVIDIA/TensorRT-LLM@04cba882084a25665e7f80f5bda71b35b9790b6f
# tensorrt_llm/bench/build/tuning.py, calc_engine_setting and finetune_setting. The requests the
# KV cache holds at ISL + OSL (0.95 of the memory the weights leave), capped at 4096, give
# max_batch_size (rounded up to 32 below 256, 128 below 1024, else 256; at least 64), and times
# 1 + ISL / OSL, capped at 32768, max_num_tokens (at least 2048; rounded up to 256 below 4096,
# 512 below 8192, else 1024).
BENCH_KV_FRACTION = 0.95
TENSORRT_ENGINE = "TensorRT engine backend"  # engine_version of the 0.17 table's rows
BENCH_MAX_BATCH = 4096
BENCH_MAX_TOKENS = 32768


def _round_up(value: float, step: int) -> int:
    return step * math.ceil(value / step)


def trtllm_bench_settings(row: Row, eng: ServingEngine, weights_bytes: float,
                          kv_bytes_per_request: float, memory_bytes: float) -> ServingEngine:
    """`eng` with the max_batch_size and max_num_tokens trtllm-bench picks for `row`'s lengths;
    `weights_bytes` is the replica's, `memory_bytes` one GPU's."""
    free = (memory_bytes * row.tp - weights_bytes) * BENCH_KV_FRACTION
    requests = max(0.0, free / kv_bytes_per_request) if kv_bytes_per_request else 0.0
    raw_bs = min(requests, BENCH_MAX_BATCH)
    raw_tokens = min(raw_bs * (1 + row.input_len / row.output_len), BENCH_MAX_TOKENS)
    step = 32 if raw_bs < 256 else 128 if raw_bs < 1024 else 256
    bs = max(64, _round_up(raw_bs, step))
    if raw_tokens < 4096:
        tokens = max(2048, _round_up(raw_tokens, 256))
    else:
        tokens = _round_up(raw_tokens, 512 if raw_tokens < 8192 else 1024)
    bench = with_options(eng, max_num_batched_tokens=tokens, max_num_seqs=bs)
    if TENSORRT_ENGINE in row.engine_version:
        # a built TensorRT engine enqueues its whole network for a step with prompt tokens, not
        # the PyTorch backend's op-by-op eager launches (ServingEngine.eager_layer_s)
        bench = replace(bench, eager_layer_s=0.0)
    return bench


def _read(name: str) -> list[dict[str, str]]:
    path = DATA / name
    with path.open("rb") as fh:
        raw = fh.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ValueError(f"{path} is larger than {MAX_BYTES} bytes")
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))


@lru_cache(maxsize=1)
def silicon_rows() -> tuple[Row, ...]:
    """H100/H200 rows: the ones the constants are fitted on."""
    return _silicon("serving_aiconfigurator_silicon.csv")


@lru_cache(maxsize=1)
def b200_rows() -> tuple[Row, ...]:
    """B200 rows (Llama-3.1-70B, fp8 and nvfp4): a device class the fit never sees."""
    return _silicon("serving_aiconfigurator_silicon_b200.csv")


@lru_cache(maxsize=1)
def moe_rows() -> tuple[Row, ...]:
    """Mixture-of-experts rows (Qwen3-235B-A22B, DeepSeek-V3/R1, gpt-oss-120b; H100/H200, no
    attention data parallelism): they fit the MoE kernel efficiency only."""
    return _silicon("serving_aiconfigurator_silicon_moe.csv")


def _silicon(name: str) -> tuple[Row, ...]:
    return tuple(Row(
        id=r["id"], engine=r["engine"], model=r["model"], checkpoint=r["checkpoint"],
        gpu=r["gpu"], dtype=r["dtype"],
        input_len=int(r["input_len"]), output_len=int(r["output_len"]),
        tp=int(r["tensor_parallel"]), concurrency=int(r["concurrency"]),
        ttft_s=float(r["ttft_ms"]) / 1000, tpot_s=float(r["tpot_ms"]) / 1000, tokens_per_s=None,
        source=r["source"], ep=int(r.get("moe_ep") or 1),
        engine_version=r.get("engine_version") or "") for r in _read(name))


@lru_cache(maxsize=1)
def public_rows() -> tuple[Row, ...]:
    """Rows from public benchmark posts: never fitted, scored as they come. They ran on other
    device classes than the fitted H100/H200 (A100s so far), which the constants do not cover."""
    return tuple(Row(
        id=r["id"], engine=r["engine"], model=r["model"], checkpoint=r["checkpoint"],
        gpu=r["gpu"], dtype=r["dtype"], input_len=int(r["input_len"]),
        output_len=int(r["output_len"]), tp=int(r["tensor_parallel"]),
        concurrency=int(r["concurrency"]),
        ttft_s=float(r["ttft_ms"]) / 1000 if r["ttft_ms"] else None,
        tpot_s=float(r["tpot_ms"]) / 1000 if r["tpot_ms"] else None, tokens_per_s=None,
        source=r["source"], engine_version=r.get("engine_version") or "",
        length_dist=r.get("length_dist") or "fixed") for r in _read("serving_public_posts.csv"))


@lru_cache(maxsize=1)
def max_throughput_rows() -> tuple[Row, ...]:
    return tuple(Row(
        id=r["id"], engine=r["engine"], model=r["model"], checkpoint=r["checkpoint"],
        gpu=r["gpu"], dtype=r["dtype"],
        input_len=int(r["input_len"]), output_len=int(r["output_len"]),
        tp=int(r["tensor_parallel"]), concurrency=None, ttft_s=None, tpot_s=None,
        tokens_per_s=float(r["output_tokens_per_s"]), source=r["source"],
        engine_version=r.get("engine_version") or "", kv=r.get("kv_dtype") or "")
        for r in _read("serving_max_throughput.csv"))


@frozen
class Prediction:
    row: Row
    ttft_s: float | None
    tpot_s: float | None
    tokens_per_s: float | None


@lru_cache(maxsize=64)
def _model(name: str):
    return resolve_model(params=None, model=name, family="llama", active_params=None,
                         overrides={})


def predict(row: Row, eng: ServingEngine | None = None) -> Prediction:
    eng = deployed(row, eng or SERVING_ENGINES[row.engine])
    info = _model(row.model)
    device = default_hardware().find(row.gpu)
    d = deployment(info, row.dtype, row.kv_dtype, device, row.tp, 1, eng, ep=row.ep)
    cap = capacity(info, d.fmt.name, d.kv.name, device, row.tp, eng,
                   row.input_len + row.output_len)
    if row.engine == "trtllm" and row.concurrency is None:  # trtllm-bench's own sizing
        eng = trtllm_bench_settings(row, eng, cap.weights_bytes * row.tp,
                                    kv_bytes_per_sequence(d, row.input_len + row.output_len),
                                    device.memory_bytes)
        d = deployment(info, row.dtype, row.kv_dtype, device, row.tp, 1, eng, ep=row.ep)
        cap = capacity(info, d.fmt.name, d.kv.name, device, row.tp, eng,
                       row.input_len + row.output_len)
    dist = parse_length_dist(row.length_dist, f"{row.id} length_dist")
    est = serve(d, eng, cap, input_len=row.input_len, output_len=row.output_len,
                concurrency=row.concurrency, input_dist=dist, output_dist=dist)
    s = est.state
    return Prediction(row=row, ttft_s=s.ttft.median, tpot_s=s.tpot.median,
                      tokens_per_s=s.output_tokens_per_s)


def _predict_or_none(row: Row) -> Prediction | None:
    """A row whose deployment the model refuses (it does not fit) is left out."""
    from vramest.errors import InputError

    try:
        return predict(row)
    except InputError:
        return None


def errors(preds: Iterable[Prediction]) -> dict[str, list[float]]:
    """Signed relative errors (predicted / measured − 1) per metric."""
    out: dict[str, list[float]] = {"tpot": [], "ttft": [], "max_throughput": []}
    for p in preds:
        r = p.row
        if r.tpot_s and p.tpot_s:
            out["tpot"].append(p.tpot_s / r.tpot_s - 1)
        if r.ttft_s and p.ttft_s:
            out["ttft"].append(p.ttft_s / r.ttft_s - 1)
        if r.tokens_per_s and p.tokens_per_s:
            out["max_throughput"].append(p.tokens_per_s / r.tokens_per_s - 1)
    return out


def median_abs(values: list[float]) -> float:
    return statistics.median(abs(v) for v in values) if values else math.nan


def engine_with(eng: ServingEngine, step_s: float, mem: float, comp: float,
                clump: float, request_s: float, allreduce_s: float,
                seq_s: float, half_width: float, eager_layer_s: float,
                fp8_share: float, layer_s: float) -> ServingEngine:
    speed = replace(eng.speed, step_overhead_s=step_s, memory_efficiency_scale=mem,
                    compute_efficiency_scale=comp, layer_overhead_s=layer_s)
    return replace(eng, speed=speed, clump_scale=clump, request_overhead_s=request_s,
                   allreduce_latency_s=allreduce_s, seq_overhead_s=seq_s,
                   gemm_half_width=half_width, eager_layer_s=eager_layer_s,
                   fp8_gemm_share=fp8_share)


def rows_for(engine: str) -> list[Row]:
    return [r for r in (*silicon_rows(), *max_throughput_rows()) if r.engine == engine]


FIT_REPORT = Path(__file__).resolve().parent / "serving_fit.txt"
# AIConfigurator 0.12's own median |error| on the same kinds of rows (729 dense H100/H200 silicon
# rows; 8 offline maximum-throughput runs), as measured in issue 19 — not recomputed here
AICONFIGURATOR = {"tpot": 0.10, "ttft": 0.48, "max_throughput": 0.059}
STATIC_BATCH = {"tpot": 0.41, "ttft": 0.82, "max_throughput": 0.149}  # vramest before, issue 19


def serving_accuracy_report(_reference: object = None) -> list[str]:
    """`make accuracy`'s serving section: median |error| per engine and metric, all rows and
    held out (from the stored fit report), beside AIConfigurator's."""
    lines = ["median |error|           rows   TPOT    TTFT    max tok/s"]
    every: list[Prediction] = []
    for engine in ("vllm", "sglang", "trtllm"):
        rows = rows_for(engine)
        preds = [p for p in (_predict_or_none(r) for r in rows) if p is not None]
        every += preds
        e = errors(preds)
        refused = f"   ({len(rows) - len(preds)} refused: do not fit)" if len(preds) < len(rows) \
            else ""
        lines.append(f"  {engine:<22} {len(preds):5} {_pct(e['tpot'])} {_pct(e['ttft'])} "
                     f"{_pct(e['max_throughput'])}{refused}")
    e = errors(every)
    lines.append(f"  {'all (fitted on all)':<22} {len(every):5} {_pct(e['tpot'])} "
                 f"{_pct(e['ttft'])} {_pct(e['max_throughput'])}")
    lines.append(f"  {'AIConfigurator 0.12':<22} {'':5} {AICONFIGURATOR['tpot']:7.1%} "
                 f"{AICONFIGURATOR['ttft']:7.1%} {AICONFIGURATOR['max_throughput']:7.1%}"
                 "   (issue 19's figures)")
    lines.append(f"  {'vramest static batch':<22} {'':5} {STATIC_BATCH['tpot']:7.1%} "
                 f"{STATIC_BATCH['ttft']:7.1%} {STATIC_BATCH['max_throughput']:7.1%}"
                 "   (before this model)")
    moe = [p for p in (_predict_or_none(r) for r in moe_rows()) if p is not None]
    for engine in ("vllm", "sglang", "trtllm"):
        e = errors(p for p in moe if p.row.engine == engine)
        lines.append(f"  {'MoE (one constant): ' + engine:<22} {len(e['tpot']):5} "
                     f"{_pct(e['tpot'])} {_pct(e['ttft'])}")
    ep_rows = [p for p in moe if p.row.ep > 1]
    as_tp = [p for p in (_predict_or_none(replace(p.row, ep=1)) for p in ep_rows) if p]
    lines.append(f"  {'MoE expert-parallel rows':<22} {len(ep_rows):5} "
                 f"{_pct(errors(ep_rows)['tpot'])} {_pct(errors(ep_rows)['ttft'])}"
                 f"   (taken as TP: {_pct(errors(as_tp)['tpot']).strip()} / "
                 f"{_pct(errors(as_tp)['ttft']).strip()})")
    b200 = [predict(r) for r in b200_rows()]
    for engine in ("vllm", "trtllm"):
        e = errors(p for p in b200 if p.row.engine == engine)
        lines.append(f"  {'B200, never fitted: ' + engine:<22} {len(e['tpot']):5} "
                     f"{_pct(e['tpot'])} {_pct(e['ttft'])}")
    for row in public_rows():
        p = predict(row)
        what = [f"{name} {pred * 1000:.1f} ms vs {meas * 1000:.1f} ms ({pred / meas - 1:+.0%})"
                for name, pred, meas in (("TPOT", p.tpot_s, row.tpot_s),
                                         ("TTFT", p.ttft_s, row.ttft_s)) if pred and meas]
        lines.append(f"  public post, never fitted: {row.id}: {'; '.join(what)}")
        lines.append(f"    {row.source.split(' ')[0]}")
    if FIT_REPORT.is_file():
        held = [line.strip() for line in FIT_REPORT.read_text()[:20000].splitlines()
                if line.startswith("==") or "leave-one" in line or "held out" in line]
        lines.append("  held out (vramest/serving/serving_fit.txt):")
        lines += [f"    {line}" for line in held]
    lines.append("  fitted constants per engine (vramest/serving/engines.py FITTED, one device class "
                 "H100/H200) + 1 MoE efficiency: vLLM 9 (no eager cost: its CUDA graphs cover "
                 "mixed steps), SGLang 10, TensorRT-LLM 10 (with the FP8 GEMM share and a cost "
                 "per layer; its all-reduces from a measured table, not fitted)")
    lines.append("  off that class (A100 SXM4 80GB, B200): the same constants, carried by the chips' "
                 "measured GEMV bandwidth share and small-kernel time over Hopper's and TRT-LLM's "
                 "all-reduce table of each NVLink generation (vramest/serving/devices.py, "
                 "allreduce.py; AIConfigurator 0.12's tables), not refitted")
    lines.append("  targets on held-out rows: TPOT 8%, TTFT under load 30%, max throughput 5%")
    return lines


def _pct(values: list[float]) -> str:
    return f"{median_abs(values):7.1%}" if values else f"{'—':>7}"
