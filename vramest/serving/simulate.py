"""The scheduler in steady state: TTFT, TPOT, ITL and end-to-end latency under load.

Continuous batching with chunked prefill, as vLLM V1, SGLang and TensorRT-LLM run it: every step
carries one token for each decoding sequence, and the prompt tokens of waiting requests fill
the rest of the token budget (`max_num_batched_tokens`). At most `max_num_seqs` sequences run,
and no more than the KV blocks hold; the others wait.

Simulating steps one by one costs thousands of step evaluations per estimate. Instead the
steady state is solved in aggregate. With fixed lengths, requests whose prompts were scheduled
together finish in the same step and come back together, so they travel as a clump of g
requests; where prompts share steps with decodes the measured TTFTs put g at about a fitted
scale × √C, and nothing bounds a clump by one step's budget: its prompts fill n_p = g·I / budget
consecutive steps (vLLM and TensorRT-LLM carry the other clumps' decodes in them). SGLang by
default runs them as prefill batches back to back while the decodes wait, so no clump ever
splits and the whole running batch is one. A request's first token comes with the step that
finishes its own prompt, so the median one of a clump waits for (n_p + 1) / 2 of those steps.
With C running sequences there are C / g clumps. One request's cycle is n_p prefill steps and
O − 1 decode steps, of which the other clumps' prefills make (C/g − 1)·n_p slower mixed steps
(and, where decodes run beside prompts, the (n_p − 1) / 2 of its own clump after its own). When
the prefills need more steps than a cycle has, prefill is the bottleneck and requests queue for
it. Two step times (a pure decode step and a mixed step, each a closed form of its composition)
thus give every figure, in about a millisecond. A request rate is solved the same way at the
concurrency Little's law gives (L = λ · E2E).

Spread: which clumps' prefills fall into a request's decode steps varies as a Poisson count,
giving the TPOT percentiles; the wait for the step in progress when a request arrives is taken
as exponential, giving the TTFT percentiles. ITL percentiles come from the share of mixed steps.
"""

from __future__ import annotations

import itertools
import math

from vramest.frozen import frozen, replace
from vramest.serving.engines import ServingEngine
from vramest.serving.lengths import FIXED, LengthDist
from vramest.serving.step import Deployment, Step, step_seconds

Z = {"median": 0.0, "p90": 1.2816, "p99": 2.3263}  # standard normal quantiles
EXP = {"median": math.log(2), "p90": math.log(10), "p99": math.log(100)}  # exponential quantiles
OFFLINE_REQUESTS = 1000  # requests a benchmark sends (vllm bench serve --num-prompts default)


@frozen
class Spread:
    median: float
    p90: float
    p99: float

    def to_json(self) -> dict[str, float]:
        return {"median": self.median, "p90": self.p90, "p99": self.p99}

    def at(self, percentile: float) -> float:
        """The value at a percentile between 50 and 99 (linear between the three known)."""
        points = ((50.0, self.median), (90.0, self.p90), (99.0, self.p99))
        if percentile <= 50:
            return self.median
        for (p0, v0), (p1, v1) in itertools.pairwise(points):
            if percentile <= p1:
                return v0 + (v1 - v0) * (percentile - p0) / (p1 - p0)
        return self.p99


def _spread(median: float, p90: float, p99: float) -> Spread:
    """Percentiles never decrease (rounding in the formulas could make them)."""
    p90 = max(median, p90)
    return Spread(median, p90, max(p90, p99))


@frozen
class SteadyState:
    ttft: Spread
    tpot: Spread
    itl: Spread
    e2e: Spread
    output_tokens_per_s: float
    running: float  # sequences running at once
    concurrency: float  # requests in the system (running + waiting)
    decode_step_s: float
    mixed_step_s: float
    clump: float
    prefill_bound: bool
    mean_e2e_s: float  # mean request latency, waiting for a slot included


def steady_state(d: Deployment, eng: ServingEngine, *, input_len: int, output_len: int,
                 concurrency: float, capacity: float, input_dist: LengthDist = FIXED,
                 output_dist: LengthDist = FIXED) -> SteadyState:
    """Closed loop: `concurrency` requests always in the system (each sends the next as soon as
    its last one finishes). `capacity` is how many sequences the KV cache holds at once. The
    lengths are means; the distributions say how single requests scatter around them."""
    budget = eng.max_num_batched_tokens
    run = max(1.0, min(concurrency, eng.max_num_seqs, capacity))
    # requests that come back together and wait for their prefill: the measured TTFTs grow as
    # √C (fitted scale). A clump is not bounded by one step's budget: the engines split the
    # waiting prompts over consecutive steps (vLLM V1 and TensorRT-LLM fill each step's token
    # budget in arrival order; SGLang runs prefill batches back to back while prompts wait)
    gen = max(1, output_len - 1)
    g = max(1.0, min(run, eng.clump_scale * math.sqrt(run)))
    if not eng.mixed:
        # prefill first (SGLang's default): a clump's requests get their first tokens batch by
        # batch but decode only once its last prefill batch is done, so they finish in the same
        # step and come back together: the clump never splits, the whole running batch is one
        g = run
    # with scattered output lengths a clump's requests finish over about cv × O steps instead
    # of in one, and come back spread over them; those that come back within one step still
    # share it (about run / O of them)
    g = min(g, max(1.0, g / (1 + output_dist.cv * gen), run / (gen + 1)))
    n_p = max(1.0, g * input_len / budget)
    clumps = run / g
    cycle = max(n_p + gen, clumps * n_p)  # steps per request cycle
    # the running sequences past their prompt: all but the prefilling ones, and fewer when
    # prefill is the bottleneck (most then wait for their prompt's turn)
    active = max(1.0, run * gen / cycle)
    ctx = input_len + output_len / 2
    decode = step_seconds(d, Step(decodes=active, decode_context=ctx, prefill_tokens=0,
                                  prefill_context=0))
    chunk = Step(decodes=max(0.0, active - g) if eng.mixed else 0, decode_context=ctx,
                 prefill_tokens=g * input_len / n_p, prefill_context=input_len / 2,
                 prefill_seqs=g / n_p)
    mixed = prefill_s = step_seconds(d, chunk)
    if not eng.mixed:  # the decodes wait for the prefill batch, then run their own step
        mixed += step_seconds(d, Step(decodes=max(1.0, active - g), decode_context=ctx,
                                      prefill_tokens=0, prefill_context=0))
    # where streaming the KV cache bounds a step, the g fewer decodes of a mixed step could
    # make it shorter; those g decode in the other steps, so a mixed step costs at least one
    mixed = max(mixed, decode)
    # mixed steps among one request's decode steps: the other clumps' prompts and, where
    # decodes run beside prompts, the prompts of its own clump scheduled after its own
    others = (clumps - 1) * n_p + ((n_p - 1) / 2 if eng.mixed else 0.0)
    prefill_bound = clumps * n_p > n_p + gen
    share = min(1.0, others / gen)
    # the step in progress when a request arrives: its mean residual E[t²] / (2 E[t])
    mean_t = share * mixed + (1 - share) * decode
    residual = (share * mixed ** 2 + (1 - share) * decode ** 2) / (2 * mean_t)
    queue_steps = cycle - (n_p + gen)  # waiting for a prefill slot when prefill is the bottleneck
    # a request's first token comes with the step that finishes its own prompt: the median one
    # of a clump waits for half the clump's prefill steps. SGLang runs those prefill batches back
    # to back, decodes waiting (sgl-project/sglang@d51c1c21, python/sglang/srt/managers/
    # scheduler.py get_next_batch_to_run: "Run prefill first if possible"), so its steps are
    # prefill-only; chunked engines carry the running decodes in each
    own = (n_p + 1) / 2 * (mixed if eng.mixed else prefill_s)
    ttft_base = own + queue_steps * mixed + eng.request_overhead_s
    # a longer prompt than the mean takes its share longer (quantiles of the prompt length and
    # of the wait for the step in progress taken together: an upper bound for p90 and p99)
    ttft = _spread(*(ttft_base + own * (input_dist.quantile(input_len, q) / input_len - 1)
                     + residual * EXP[k] for k, q in zip(Z, (0.5, 0.9, 0.99), strict=True)))

    def tpot_at(z: float) -> float:
        k = min(gen, max(0.0, others + z * math.sqrt(max(others, 0.0))))
        # SGLang: a request whose prompt was in an early batch of its clump has its first token
        # but decodes only once the clump's last prefill batch is done
        stall = 0.0 if eng.mixed else (n_p - 1) / 2 * prefill_s
        return (k * mixed + (gen - k) * decode + stall) / gen

    tpot = _spread(*(tpot_at(Z[k]) for k in Z))
    itl = _spread(*(mixed if share > 1 - q else decode for q in (0.5, 0.9, 0.99)))
    mean_ttft = ttft_base + residual
    e2e_running = mean_ttft + gen * tpot.median
    # requests beyond what runs at once wait for a slot: X = run / E2E, E2E_all = C / X
    slot_wait = e2e_running * (concurrency / run - 1) if concurrency > run else 0.0
    ttft = _spread(ttft.median + slot_wait, ttft.p90 + slot_wait, ttft.p99 + slot_wait)
    e2e = _spread(*(getattr(ttft, k) + gen * getattr(tpot, k) for k in Z))
    throughput = run * output_len / e2e_running
    return SteadyState(ttft=ttft, tpot=tpot, itl=itl, e2e=e2e, output_tokens_per_s=throughput,
                       running=run, concurrency=max(concurrency, run), decode_step_s=decode,
                       mixed_step_s=mixed, clump=g, prefill_bound=prefill_bound,
                       mean_e2e_s=e2e_running + slot_wait)


def at_request_rate(d: Deployment, eng: ServingEngine, *, input_len: int, output_len: int,
                    rate: float, capacity: float, input_dist: LengthDist = FIXED,
                    output_dist: LengthDist = FIXED) -> SteadyState:
    """Open loop, Poisson arrivals at `rate` requests/s: the concurrency L that satisfies
    L = rate × E2E(L) (Little's law), found by bisection. Past the most the replica serves, the
    queue grows for as long as requests keep coming: the figures are then those of a benchmark
    of OFFLINE_REQUESTS requests."""
    top = max(1.0, min(eng.max_num_seqs, capacity))

    def solve(conc: float) -> SteadyState:
        return steady_state(d, eng, input_len=input_len, output_len=output_len,
                            concurrency=conc, capacity=capacity, input_dist=input_dist,
                            output_dist=output_dist)

    full = solve(top)
    max_rate = full.output_tokens_per_s / output_len
    if rate >= max_rate:
        # the backlog grows by (rate − max_rate) per second; averaged over the run
        duration = OFFLINE_REQUESTS / rate
        backlog_wait = 0.5 * duration * (rate / max_rate - 1)
        t = full.ttft
        ttft = _spread(t.median + backlog_wait, t.p90 + 1.8 * backlog_wait,
                      t.p99 + 1.98 * backlog_wait)
        gen = max(1, output_len - 1)
        e2e = _spread(*(getattr(ttft, k) + gen * getattr(full.tpot, k) for k in Z))
        return replace(full, ttft=ttft, e2e=e2e, mean_e2e_s=full.mean_e2e_s + backlog_wait,
                       concurrency=full.running)
    lo, hi = 0.0, top
    for _ in range(40):
        mid = (lo + hi) / 2
        if rate * solve(max(mid, 1e-3)).mean_e2e_s > mid:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-3 * max(1.0, hi):
            break
    state = solve(max(hi, 1e-3))
    # every request is served: the output rate is the arrival rate
    return replace(state, output_tokens_per_s=rate * output_len,
                   concurrency=rate * state.mean_e2e_s)
