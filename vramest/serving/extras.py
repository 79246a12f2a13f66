"""A serving step with LoRA adapters and speculative decoding (`inference/serving_extras.py`).

LoRA: the step also reads the slot of each distinct adapter among its sequences and multiplies
its tokens through A and B. Speculation: every decoding sequence verifies k + 1 positions in the
target forward (k more tokens' FLOPs, the same weights and KV read) after k proposer forwards of
one token each, and emits E = (1 − α^(k+1)) / (1 − α) tokens. A pure decode step is returned per
emitted token, (T_verify + k·T_draft) / E, which is what TPOT and tokens/s count; a step that
also prefills is returned whole, so TTFT keeps its real step time and the decodes in it are
counted as one token each (TPOT slightly high where mixed steps are frequent).
"""

from __future__ import annotations

from vramest.frozen import replace
from vramest.inference.lora import step_cost
from vramest.inference.serving_extras import ServingExtras, proposer
from vramest.model.precisions import weight_format
from vramest.serving.step import (
    Deployment,
    Step,
    attention_seconds,
    eager_seconds,
    phase_seconds,
    step_seconds,
    step_work,
)


def extras_step_seconds(d: Deployment, s: Step, extras: ServingExtras) -> float:
    base = replace(d, extras=None)
    work = step_work(base, s)
    if extras.lora is not None:
        cost = step_cost(d.shape, extras.lora, d.fmt.compute_bytes, s.decodes + s.prefill_tokens,
                         s.decodes + s.prefill_seqs, d.tp)
        work = replace(work, bytes_moved=work.bytes_moved + cost.bytes_read / d.pp,
                       dense_flops=work.dense_flops + cost.flops / d.pp)
    spec = extras.speculation
    draft_s, emitted, queries = 0.0, 1.0, 1.0
    if spec is not None:
        prop = proposer(d.shape, d.fmt.name, spec)
        # the proposer runs inside the engine's step: its GPU time only, no scheduler cost
        drafter = replace(base, shape=prop.shape, fmt=weight_format(prop.fmt),
                          engine=replace(d.engine, step_overhead_s=0.0), seq_overhead_s=0.0)
        if s.prefill_tokens:  # it also reads the prompt chunk, to draft from its end
            draft_s += step_seconds(drafter, Step(
                decodes=0, decode_context=0, prefill_tokens=s.prefill_tokens,
                prefill_context=s.prefill_context, prefill_seqs=s.prefill_seqs))
    if spec is not None and s.decodes:
        more = step_work(base, Step(decodes=s.decodes * spec.k, decode_context=s.decode_context,
                                    prefill_tokens=0, prefill_context=0))
        work = replace(work, dense_flops=work.dense_flops + more.dense_flops,
                       expert_flops=work.expert_flops + more.expert_flops,
                       dense_rows=work.dense_rows + more.dense_rows,
                       allreduce_bytes=work.allreduce_bytes + more.allreduce_bytes)
        draft_s += spec.k * step_seconds(drafter, Step(
            decodes=s.decodes, decode_context=s.decode_context, prefill_tokens=0,
            prefill_context=0))
        emitted = spec.tokens_per_step if not s.prefill_tokens else 1.0
        queries = 1.0 + spec.k
    seconds = phase_seconds(d, work) + attention_seconds(base, s, queries) + eager_seconds(d, s) + \
        d.seq_overhead_s * (s.decodes + s.prefill_seqs) + draft_s
    return seconds / emitted
