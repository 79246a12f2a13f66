"""Trace a real training step (forward with the loss, backward, AdamW step) on fake tensors.

The same LiveBytesTracker as inference tracing counts every live tensor; gradients and the
optimizer's states are watched under their own names, so the peak is split into parameters,
gradients, optimizer states and activations (what autograd saved, the logits and the loss).
The analytic training estimate (vramest.training) is reported beside it. Full fine-tuning
only: LoRA needs the `peft` package, which vramest does not depend on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from vramest.errors import InputError
from vramest.trace import (
    TRACE_ATTENTION,
    TRACE_DTYPES,
    _build,
    _fake_mode,
    _grouped_mm_fallback,
    _hf_config,
    _import_torch,
    _peak_rss_bytes,
    _state_tensors,
)

GRADIENTS = "gradients"
OPTIMIZER_STATES = "optimizer_states"


@dataclass(frozen=True)
class TrainStepRun:
    """The peak of live tensor bytes over one step, and its parts at that moment."""

    peak_bytes: int
    params_bytes: int
    gradients_bytes: int
    optimizer_states_bytes: int
    activations_bytes: int
    peak_op: str
    seconds: float
    rss_bytes: int
    fake: bool

    def to_json(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "params_bytes": self.params_bytes,
                "gradients_bytes": self.gradients_bytes,
                "optimizer_states_bytes": self.optimizer_states_bytes,
                "activations_bytes": self.activations_bytes, "peak_op": self.peak_op,
                "seconds": round(self.seconds, 3), "rss_bytes": self.rss_bytes,
                "fake": self.fake}


def trace_train_config(config: Mapping[str, Any], *, dtype: str = "bf16", seq: int = 2048,
                       micro_batch: int = 1, attn: str = "sdpa",
                       grad_checkpointing: bool = False, fake: bool = True) -> TrainStepRun:
    """Build the model a config describes and trace forward + loss + backward + AdamW step.

    Pure `dtype` training as torch runs it by default on a GPU: parameters, gradients and
    AdamW's two moments in `dtype`, the multi-tensor optimizer step; `fake=False` runs the same
    step on real CPU tensors (tiny models).
    """
    if dtype not in TRACE_DTYPES:
        raise InputError(f"Training traces run unquantized models: --dtype {dtype!r} is not one "
                         f"of {', '.join(TRACE_DTYPES)}.")
    if attn not in TRACE_ATTENTION:
        raise InputError(f"Training traces run --attn {' or '.join(TRACE_ATTENTION)}.")
    torch, transformers = _import_torch()
    from vramest.tracking import PARAMS, LiveBytesTracker

    hf_config = _hf_config(transformers, config)
    started = time.perf_counter()
    with _fake_mode(torch, fake), _grouped_mm_fallback(fake and dtype != "bf16"), \
            _unpacked_batch(fake):
        tracker = LiveBytesTracker()
        with tracker:
            model = _build(transformers, hf_config, getattr(torch, TRACE_DTYPES[dtype]), attn)
            model.train()
            if grad_checkpointing:
                _enable_checkpointing(model)
            tracker.label(_state_tensors(model), PARAMS)
            params = [p for p in model.parameters() if p.requires_grad]
            # the multi-tensor (foreach) implementation torch picks by default on CUDA, whose
            # temporaries span all parameters at once; a CPU run would loop tensor by tensor
            optimizer = torch.optim.AdamW(params, lr=1e-5, foreach=True)
            tracker.watch(GRADIENTS, lambda: (p.grad for p in params if p.grad is not None))
            tracker.watch(OPTIMIZER_STATES, lambda: _optimizer_tensors(torch, optimizer))
            ids = torch.zeros(micro_batch, seq, dtype=torch.long)
            # the second of two steps: AdamW creates its states in the first, so the measured
            # step is the steady state every later step repeats
            for _ in range(2):
                tracker.reset_peak()
                out = model(input_ids=ids, labels=ids, use_cache=False)
                out.loss.backward()
                del out
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            peak = tracker.peak
            del model, ids
    from vramest.tracking import ACTIVATIONS

    return TrainStepRun(peak_bytes=peak.bytes, params_bytes=peak.part(PARAMS),
                        gradients_bytes=peak.part(GRADIENTS),
                        optimizer_states_bytes=peak.part(OPTIMIZER_STATES),
                        activations_bytes=peak.part(ACTIVATIONS), peak_op=peak.op,
                        seconds=time.perf_counter() - started, rss_bytes=_peak_rss_bytes(),
                        fake=fake)


def _enable_checkpointing(model: Any) -> None:
    """Non-reentrant activation checkpointing on every layer (renamed in transformers 5)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


@contextlib.contextmanager
def _unpacked_batch(fake: bool) -> Iterator[None]:
    """Without a cache, transformers asks whether a batch packs several sequences by reading the
    position ids; a fake tensor has no values, so it would assume packing and build a full mask
    (which also turns off sdpa's native GQA: K and V get repeated to every head). The batch we
    feed holds one sequence per row, so answer as real tensors would: no packing."""
    if not fake:
        yield
        return
    import transformers.masking_utils as masking

    original = masking.find_packed_sequence_indices
    masking.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        masking.find_packed_sequence_indices = original


def _optimizer_tensors(torch: Any, optimizer: Any) -> Iterator[Any]:
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                yield value


@dataclass(frozen=True)
class TrainTrace:
    model: str
    dtype: str
    seq: int
    micro_batch: int
    attention: str
    grad_checkpointing: bool
    run: TrainStepRun
    analytic: dict[str, int]  # the training estimate's parts at its peak moment, and total
    analytic_moment: str  # which moment of the step the estimate peaks at

    def to_json(self) -> dict[str, Any]:
        total = self.analytic["total"]
        return {"model": self.model,
                "settings": {"dtype": self.dtype, "seq": self.seq,
                             "micro_batch": self.micro_batch, "attention": self.attention,
                             "grad_checkpointing": self.grad_checkpointing, "method": "full",
                             "optimizer": "adamw"},
                "phases": {"train": self.run.to_json()},
                "analytic": {**self.analytic, "moment": self.analytic_moment},
                "difference": {"bytes": total - self.run.peak_bytes,
                               "pct": round(100 * (total - self.run.peak_bytes)
                                            / max(1, self.run.peak_bytes), 3)}}


def trace_train(model: str, *, dtype: str = "bf16", seq: int = 2048, micro_batch: int = 1,
                attn: str = "sdpa", grad_checkpointing: bool = False) -> TrainTrace:
    """Trace a catalog model's training step and put the analytic estimate beside it."""
    from vramest.catalog import default_catalog
    from vramest.training import estimate_training

    entry = default_catalog().find(model)
    run = trace_train_config(entry.config, dtype=dtype, seq=seq, micro_batch=micro_batch,
                             attn=attn, grad_checkpointing=grad_checkpointing)
    est = estimate_training(model=entry.id, method="full",
                            precision="fp32" if dtype == "fp32" else "bf16", optimizer="adamw",
                            seq=seq, micro_batch=micro_batch, attention=attn,
                            grad_checkpointing="full" if grad_checkpointing else "none")
    peak = max(est.phases, key=lambda phase: phase.total)
    return TrainTrace(model=entry.id, dtype=dtype, seq=seq, micro_batch=micro_batch,
                      attention=attn, grad_checkpointing=grad_checkpointing, run=run,
                      analytic=peak.to_json(), analytic_moment=peak.name)
