"""The SLA planner: every deployment that meets a TTFT and TPOT bound, and their Pareto front.

Candidates are GPU type × GPU count × tensor/pipeline split × weight precision × KV precision ×
engine × max_num_seqs (the concurrency it runs at) × token budget. Each is checked for memory
(the engine's start-up accounting) and then simulated in steady state (`serving.simulate`);
the survivors are ranked by output tokens/s per GPU against tokens/s per user, the two axes of
the throughput-latency trade-off, each with its cost per million tokens from the cost model.
"""

from __future__ import annotations

from collections.abc import Sequence

from vramest.advice.cost import DEFAULT_ELECTRICITY_PRICE, DEFAULT_PUE, DEFAULT_YEARS, LocalCost, LocalSetup
from vramest.errors import InputError
from vramest.frozen import frozen, replace
from vramest.hardware.database import Device
from vramest.model.precisions import weight_format
from vramest.model.resolve import ModelInfo
from vramest.serving.disagg import Pools, disaggregated_state
from vramest.serving.engines import ServingEngine, serving_engine, with_options
from vramest.serving.estimate import ServingEstimate, capacity, deployment, serve
from vramest.serving.lengths import FIXED, LengthDist

DEFAULT_GPUS = ("h100", "h200", "b200", "a100-80gb", "l40s", "h100-pcie")
DEFAULT_ENGINES = ("vllm", "sglang", "trtllm")
GPU_COUNTS = (1, 2, 4, 8, 16)
PIPELINE = (1, 2, 4)
DTYPES = ("bf16", "fp8", "awq-int4", "nvfp4")
KV_DTYPES = (None, "fp8")  # None: the compute precision
MAX_NUM_SEQS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
BUDGETS = (2048, 8192)
# Utilisation of the cost model: the planner sizes a deployment for its busy hours, so the
# hardware is counted as generating all month (cost.py's default is 0.5 for a desk machine)
PLAN_UTILIZATION = 1.0


@frozen
class Bounds:
    ttft_s: float
    tpot_s: float
    percentile: float = 90.0


@frozen
class Candidate:
    estimate: ServingEstimate
    dtype: str
    kv_dtype: str
    cost_per_million_tokens: float | None
    launch_command: str

    def to_json(self) -> dict[str, object]:
        d = self.estimate.deployment
        return {"gpu": d.device.name, "num_gpus": self.estimate.num_gpus, "tensor_parallel": d.tp,
                "pipeline_parallel": d.pp, "expert_parallel": d.ep, "dtype": self.dtype,
                "kv_dtype": self.kv_dtype, "engine": self.estimate.engine.name,
                "max_num_seqs": self.estimate.engine.max_num_seqs,
                "max_num_batched_tokens": self.estimate.engine.max_num_batched_tokens,
                "serving": self.estimate.to_json(),
                "cost_per_million_tokens": self.cost_per_million_tokens,
                "launch_command": self.launch_command}


@frozen
class Plan:
    candidates_evaluated: int
    simulated: int
    feasible: int
    pareto: tuple[Candidate, ...]
    bounds: Bounds
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"candidates_evaluated": self.candidates_evaluated, "simulated": self.simulated,
                "feasible": self.feasible,
                "bounds": {"ttft_s": self.bounds.ttft_s, "tpot_s": self.bounds.tpot_s,
                           "percentile": self.bounds.percentile},
                "pareto": [c.to_json() for c in self.pareto], "notes": list(self.notes)}


def _dtypes(info: ModelInfo, device: Device, wanted: Sequence[str] | None) -> list[str]:
    if wanted:
        return list(wanted)
    out = []
    for name in DTYPES:
        if name == "nvfp4" and not dict(device.dense_tflops).get("fp4"):
            continue  # FP4 checkpoints run on Blackwell tensor cores only
        out.append(name)
    return out


def _meets(est: ServingEstimate, b: Bounds) -> bool:
    s = est.state
    return s.ttft.at(b.percentile) <= b.ttft_s and s.tpot.at(b.percentile) <= b.tpot_s


def launch_command(model: str, est: ServingEstimate, dtype: str, kv_dtype: str | None) -> str:
    d, e = est.deployment, est.engine
    max_len = est.input_len + est.output_len
    quant = {"fp8": "fp8", "awq-int4": "awq", "nvfp4": "modelopt_fp4"}.get(dtype)
    if e.name == "vllm":
        parts = [f"vllm serve {model}", f"--tensor-parallel-size {d.tp}"]
        if d.pp > 1:
            parts.append(f"--pipeline-parallel-size {d.pp}")
        if d.ep > 1:  # vLLM's expert parallel spans the tensor-parallel GPUs
            parts.append("--enable-expert-parallel")
        parts += [f"--max-num-seqs {e.max_num_seqs}",
                  f"--max-num-batched-tokens {e.max_num_batched_tokens}",
                  f"--max-model-len {max_len}"]
        if quant:
            parts.append(f"--quantization {quant}")
        if kv_dtype == "fp8":
            parts.append("--kv-cache-dtype fp8")
    elif e.name == "sglang":
        parts = [f"python -m sglang.launch_server --model-path {model}", f"--tp {d.tp}"]
        if d.pp > 1:
            parts.append(f"--pp-size {d.pp}")
        if d.ep > 1:
            parts.append(f"--ep-size {d.ep}")
        parts += [f"--max-running-requests {e.max_num_seqs}",
                  f"--chunked-prefill-size {e.max_num_batched_tokens}",
                  f"--context-length {max_len}"]
        if quant:
            parts.append(f"--quantization {quant}")
        if kv_dtype == "fp8":
            parts.append("--kv-cache-dtype fp8_e4m3")
    elif e.name == "trtllm":
        parts = [f"trtllm-serve {model}", f"--tp_size {d.tp}", f"--pp_size {d.pp}",
                 *([f"--ep_size {d.ep}"] if d.ep > 1 else []),
                 f"--max_batch_size {e.max_num_seqs}", f"--max_num_tokens {e.max_num_batched_tokens}",
                 f"--max_seq_len {max_len}"]
        if kv_dtype == "fp8":
            parts.append("--extra_llm_api_options kv_fp8.yaml  # kv_cache_config: {dtype: fp8}")
    else:
        parts = [f"llama-server -m {model}.gguf -ngl 99", f"--parallel {e.max_num_seqs}",
                 f"--ctx-size {e.max_num_seqs * max_len}",
                 f"--batch-size {e.max_num_batched_tokens}"]
        if d.num_gpus > 1:
            parts.append("--split-mode row")
        if kv_dtype:
            parts.append(f"--cache-type-k {kv_dtype} --cache-type-v {kv_dtype}")
    return " ".join(parts)


def cost_per_million(est: ServingEstimate, price_per_gpu: float | None) -> float | None:
    device = est.deployment.device
    price = price_per_gpu if price_per_gpu is not None else device.price_usd
    if price is None or not device.tdp_w or est.state.output_tokens_per_s <= 0:
        return None
    n = est.num_gpus
    setup = LocalSetup(hardware_price=price * n, years=DEFAULT_YEARS,
                       board_power_w=device.tdp_w * n, utilization=PLAN_UTILIZATION,
                       pue=DEFAULT_PUE, electricity_price_per_kwh=DEFAULT_ELECTRICITY_PRICE,
                       staff_per_month=0.0, tokens_per_s=est.state.output_tokens_per_s)
    return LocalCost(setup).cost_per_million_tokens


def pareto_front(items: list[Candidate]) -> list[Candidate]:
    """Those no other beats on both tokens/s per GPU and tokens/s per user (ties: cheaper;
    a point within 1% of a faster one's tokens/s per GPU is left out)."""
    ranked = sorted(items, key=lambda c: (-c.estimate.tokens_per_s_per_user,
                                          -c.estimate.tokens_per_s_per_gpu,
                                          c.cost_per_million_tokens or float("inf")))
    front: list[Candidate] = []
    best_gpu = -1.0
    for c in ranked:
        if c.estimate.tokens_per_s_per_gpu > best_gpu * 1.01:  # 1%: no near-duplicates
            front.append(c)
            best_gpu = c.estimate.tokens_per_s_per_gpu
    return front


def plan(info: ModelInfo, model_name: str, devices: Sequence[Device], *, input_len: int,
         output_len: int, bounds: Bounds, max_gpus: int = 8,
         engines: Sequence[str] = DEFAULT_ENGINES, dtypes: Sequence[str] | None = None,
         kv_dtypes: Sequence[str | None] = KV_DTYPES,
         prices: dict[str, float] | None = None,
         lengths: tuple[LengthDist, LengthDist] = (FIXED, FIXED),
         disaggregated: bool = False) -> Plan:
    """`lengths`: how prompt and output lengths scatter around their means; `disaggregated`:
    also search separate prefill and decode pools (`vramest.serving.disagg`)."""
    if bounds.ttft_s <= 0 or bounds.tpot_s <= 0:
        raise InputError("--ttft and --tpot must be more than 0 seconds.")
    if not 50 <= bounds.percentile <= 99:
        raise InputError("--percentile must be from 50 to 99.")
    shape = info.shape
    evaluated = simulated = 0
    feasible: list[Candidate] = []
    max_len = input_len + output_len
    for device in devices:
        price = (prices or {}).get(device.name)
        for n in GPU_COUNTS:
            if n > max_gpus:
                continue
            for pp in PIPELINE:
                if n % pp or pp > shape.num_layers:
                    continue
                tp = n // pp
                if not shape.is_mla and shape.num_heads % tp:
                    continue
                for dtype in _dtypes(info, device, dtypes):
                    weight_format(dtype)  # an unknown --dtype is refused before any work
                    for kv_name in kv_dtypes:
                        for engine_name in engines:
                            base = serving_engine(engine_name)
                            for budget in BUDGETS:
                                evaluated += len(MAX_NUM_SEQS)
                                fits = _fits(info, dtype, kv_name, device, tp, pp,
                                             with_options(base, max_num_batched_tokens=budget),
                                             max_len)
                                if not fits:
                                    continue
                                # a mixture of experts: experts split by tensor
                                # parallelism, or one expert group per GPU
                                for ep in (1, tp) if shape.is_moe and tp > 1 else (1,):
                                    evaluated += len(MAX_NUM_SEQS) if ep > 1 else 0
                                    for seqs in MAX_NUM_SEQS:
                                        eng = with_options(base, max_num_batched_tokens=budget,
                                                           max_num_seqs=seqs)
                                        est = _simulate(info, dtype, kv_name, device, tp, pp,
                                                        eng, input_len, output_len, seqs, ep,
                                                        lengths)
                                        simulated += 1
                                        if est is None:
                                            break
                                        if est.state.tpot.at(bounds.percentile) > bounds.tpot_s:
                                            break  # TPOT only grows with the concurrency
                                        if est.max_concurrency < seqs:
                                            break  # more would wait for KV blocks
                                        if not _meets(est, bounds):
                                            continue
                                        d = est.deployment
                                        feasible.append(Candidate(
                                            estimate=est, dtype=d.fmt.name, kv_dtype=d.kv.name,
                                            cost_per_million_tokens=cost_per_million(est,
                                                                                     price),
                                            launch_command=launch_command(model_name, est,
                                                                          dtype, kv_name)))
    if disaggregated:
        for device in devices:
            price = (prices or {}).get(device.name)
            for dtype in _dtypes(info, device, dtypes):
                for kv_name in kv_dtypes:
                    for engine_name in engines:
                        if engine_name == "llamacpp":
                            continue
                        n_eval, n_sim, found = _search_pools(
                            info, model_name, device, dtype, kv_name,
                            serving_engine(engine_name), input_len, output_len, bounds,
                            max_gpus, price)
                        evaluated += n_eval
                        simulated += n_sim
                        feasible += found
    notes = [f"Bounds apply to the p{bounds.percentile:g} TTFT and TPOT.",
             "Cost per million output tokens: the card price over 3 years, board power at "
             "PUE 1.3 and 0.15 per kWh, busy all month (vramest cost's model); null where no "
             "card price is known (give --gpu-price).",
             "Attention data parallelism is not searched; a mixture of experts is tried with "
             "expert parallelism across the tensor-parallel GPUs and without; disaggregated "
             "prefill/decode pools " + ("are searched too (same GPU type, lengths at their "
                                        "means)." if disaggregated else
                                        "are searched with --disaggregated.")]
    return Plan(candidates_evaluated=evaluated, simulated=simulated, feasible=len(feasible),
                pareto=tuple(pareto_front(feasible)), bounds=bounds, notes=tuple(notes))


def _fits(info: ModelInfo, dtype: str, kv: str | None, device: Device, tp: int, pp: int,
          eng: ServingEngine, max_len: int) -> bool:
    d = deployment(info, dtype, kv, device, tp, pp, eng)
    cap = capacity(info, d.fmt.name, d.kv.name, device, tp * pp, eng, max_len, pp=pp)
    return cap.kv_cache_bytes > 0 and cap.sequences(max_len) >= 1


def _simulate(info: ModelInfo, dtype: str, kv: str | None, device: Device, tp: int, pp: int,
              eng: ServingEngine, input_len: int, output_len: int,
              concurrency: int, ep: int = 1,
              lengths: tuple[LengthDist, LengthDist] = (FIXED, FIXED)
              ) -> ServingEstimate | None:
    d = deployment(info, dtype, kv, device, tp, pp, eng, ep=ep)
    cap = capacity(info, d.fmt.name, d.kv.name, device, tp * pp, eng, input_len + output_len,
                   pp=pp)
    try:
        return serve(d, eng, cap, input_len=input_len, output_len=output_len,
                     concurrency=concurrency, input_dist=lengths[0], output_dist=lengths[1])
    except InputError:
        return None


POOL_TP = (1, 2, 4, 8)


def _search_pools(info: ModelInfo, model_name: str, device: Device, dtype: str,
                  kv: str | None, eng: ServingEngine, input_len: int, output_len: int,
                  bounds: Bounds, max_gpus: int, price: float | None
                  ) -> tuple[int, int, list[Candidate]]:
    """Prefill and decode pools of one GPU type, precision and engine: every split of at most
    `max_gpus` GPUs (a whole GPU count of the search) into replicas of TP 1–8, and every decode
    batch; those that meet the bounds."""
    shape = info.shape
    max_len = input_len + output_len
    evaluated = simulated = 0
    found: list[Candidate] = []
    tps = [t for t in POOL_TP if t <= max_gpus and (shape.is_mla or shape.num_heads % t == 0)
           and _fits(info, dtype, kv, device, t, 1, eng, max_len)]
    for tp_p in tps:
        prefill = deployment(info, dtype, kv, device, tp_p, 1, eng)
        for tp_d in tps:
            decode = deployment(info, dtype, kv, device, tp_d, 1, eng)
            cap = capacity(info, decode.fmt.name, decode.kv.name, device, tp_d, eng, max_len)
            holds = cap.sequences(input_len + output_len // 2)
            for total in GPU_COUNTS:
                if total > max_gpus:
                    continue
                for p in range(1, total // tp_p + 1):
                    left = total - p * tp_p
                    if left < tp_d or left % tp_d:
                        continue
                    pools = Pools(prefill, decode, p, left // tp_d)
                    for batch in MAX_NUM_SEQS:
                        evaluated += 1
                        if batch > holds:
                            break
                        simulated += 1
                        state = disaggregated_state(pools, eng, input_len=input_len,
                                                    output_len=output_len, decode_batch=batch)
                        if state.tpot.at(bounds.percentile) > bounds.tpot_s:
                            break
                        if state.ttft.at(bounds.percentile) > bounds.ttft_s:
                            continue
                        est = ServingEstimate(
                            deployment=decode, engine=with_options(eng, max_num_seqs=batch),
                            input_len=input_len, output_len=output_len, state=state,
                            capacity=cap, max_concurrency=cap.sequences(max_len),
                            mode="disaggregated", request_rate=None, pools=pools)
                        found.append(Candidate(
                            estimate=est, dtype=decode.fmt.name, kv_dtype=decode.kv.name,
                            cost_per_million_tokens=cost_per_million(est, price),
                            launch_command=pools_launch_command(model_name, est, dtype, kv)))
    return evaluated, simulated, found


def pools_launch_command(model: str, est: ServingEstimate, dtype: str, kv: str | None) -> str:
    """One prefill and one decode instance's command (start the replicas each pool counts)."""
    pools = est.pools
    assert pools is not None
    decode = launch_command(model, est, dtype, kv)
    prefill_est = replace(est, deployment=pools.prefill, pools=None)
    prefill = launch_command(model, prefill_est, dtype, kv)
    name = est.engine.name
    if name == "vllm":  # a KV connector moves the prompt's cache (vLLM's NixlConnector)
        flag = \
            " --kv-transfer-config '{\"kv_connector\":\"NixlConnector\",\"kv_role\":\"kv_both\"}'"
        return (f"prefill ×{pools.prefill_replicas}: {prefill}{flag} ; "
                f"decode ×{pools.decode_replicas}: {decode}{flag}")
    if name == "sglang":
        return (f"prefill ×{pools.prefill_replicas}: {prefill} --disaggregation-mode prefill ; "
                f"decode ×{pools.decode_replicas}: {decode} --disaggregation-mode decode")
    return (f"trtllm-serve disaggregated -c disagg.yaml  # disagg.yaml lists the "
            f"context_servers (prefill): {pools.prefill_replicas} × ({prefill}); and the "
            f"generation_servers (decode): {pools.decode_replicas} × ({decode})")
