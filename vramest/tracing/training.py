"""Trace a real training step (forward with the loss, backward, AdamW step) on fake tensors.

The same LiveBytesTracker as inference tracing counts every live tensor; gradients and the
optimizer's states are watched under their own names, so the peak is split into parameters,
gradients, optimizer states and activations (what autograd saved, the logits and the loss).
The analytic training estimate (vramest.training) is reported beside it.

LoRA and QLoRA wrap the model with PEFT's `get_peft_model` (the `peft` package, part of the
`calibrate` extra) with its defaults: over a 16-bit base PEFT keeps the adapters in fp32
(`autocast_adapter_dtype`), which is the mixed-precision accounting of the analytic model
(16 B per trainable parameter with AdamW), and the forward runs under autocast as the Trainer
runs it. QLoRA quantizes the base to bitsandbytes NF4 and
runs PEFT's `prepare_model_for_kbit_training` (the unquantized rest in fp32); it runs on real
tensors only: bitsandbytes' `Params4bit` is a tensor subclass that cannot wrap a fake tensor.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen
from vramest.tracing.inference import (
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

if TYPE_CHECKING:
    from typing import Any

GRADIENTS = "gradients"
OPTIMIZER_STATES = "optimizer_states"
TRACE_METHODS = ("full", "lora", "qlora")
PEFT_HINT = "LoRA traces need the `peft` package: pip install 'vramest[calibrate]'."
QLORA_FAKE = ("QLoRA traces run on real CPU tensors only (bitsandbytes' Params4bit cannot wrap a "
              "fake tensor); use `vramest train --method qlora`, or trace a small model with "
              "fake=False.")


@frozen
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
    method: str = "full"
    trainable_params: int = 0
    step_seconds: tuple[float, ...] = ()  # untracked steps after the traced ones (real runs)

    def to_json(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "params_bytes": self.params_bytes,
                "gradients_bytes": self.gradients_bytes,
                "optimizer_states_bytes": self.optimizer_states_bytes,
                "activations_bytes": self.activations_bytes, "peak_op": self.peak_op,
                "seconds": round(self.seconds, 3), "rss_bytes": self.rss_bytes,
                "fake": self.fake, "method": self.method,
                "trainable_params": self.trainable_params,
                "step_seconds": [round(t, 5) for t in self.step_seconds]}


def trace_train_config(config: Mapping[str, Any], *, dtype: str = "bf16", seq: int = 2048,
                       micro_batch: int = 1, attn: str = "sdpa",
                       grad_checkpointing: bool = False, fake: bool = True, method: str = "full",
                       lora_rank: int = 16, lora_targets: str = "all-linear",
                       timed_steps: int = 0, upcast: str = "peft") -> TrainStepRun:
    """Build the model a config describes and trace forward + loss + backward + AdamW step.

    Pure `dtype` training as torch runs it by default on a GPU: parameters, gradients and
    AdamW's two moments in `dtype`, the multi-tensor optimizer step; `fake=False` runs the same
    step on real CPU tensors (tiny models). `method` "lora" / "qlora" trains PEFT adapters of
    `lora_rank` on `lora_targets` ("all-linear" or a comma list of module names) over a frozen
    base, which the tracker counts as parameters. `timed_steps` (real runs) times that many
    more steps without the tracker. QLoRA's `upcast` is "peft" (prepare_model_for_kbit_training
    alone) or "trl" (then the embeddings and head back to 16 bit, as TRL's SFTTrainer does).
    """
    if dtype not in TRACE_DTYPES:
        raise InputError(f"Training traces run unquantized models: --dtype {dtype!r} is not one "
                         f"of {', '.join(TRACE_DTYPES)}.")
    if attn not in TRACE_ATTENTION:
        raise InputError(f"Training traces run --attn {' or '.join(TRACE_ATTENTION)}.")
    if method not in TRACE_METHODS:
        raise InputError(f"Training traces run --method {', '.join(TRACE_METHODS)}.")
    if method == "qlora" and fake:
        raise InputError(QLORA_FAKE)
    if method == "qlora" and dtype == "fp32":
        raise InputError("QLoRA computes in 16 bit: trace it with --dtype bf16.")
    if upcast not in ("peft", "trl"):
        raise InputError(f"QLoRA's upcast is peft or trl, not {upcast!r}.")
    torch, transformers = _import_torch()
    peft = _import_peft() if method != "full" else None
    from vramest.tracing.tracking import ACTIVATIONS, PARAMS, LiveBytesTracker

    hf_config = _hf_config(transformers, config)
    torch_dtype = getattr(torch, TRACE_DTYPES[dtype])
    started = time.perf_counter()
    step_seconds: list[float] = []
    with _fake_mode(torch, fake), _grouped_mm_fallback(fake and dtype != "bf16"), \
            _unpacked_batch(fake), _unchanged_to_is_noop(torch, fake):
        tracker = LiveBytesTracker()
        with tracker:
            if method == "qlora":
                model = _build_nf4(torch, transformers, hf_config, torch_dtype, attn)
            else:
                model = _build(transformers, hf_config, torch_dtype, attn)
            model.train()
            if grad_checkpointing:
                _enable_checkpointing(model)
            if peft is not None:
                model = _wrap_lora(torch, peft, model, torch_dtype, lora_rank, lora_targets,
                                   quantized=method == "qlora")
                if method == "qlora" and upcast == "trl":
                    _embeddings_back_to(torch_dtype, model)
            tracker.label(_train_state_tensors(torch, model), PARAMS)
            params = [p for p in model.parameters() if p.requires_grad]
            # the multi-tensor (foreach) implementation torch picks by default on CUDA, whose
            # temporaries span all parameters at once; a CPU run would loop tensor by tensor
            optimizer = torch.optim.AdamW(params, lr=1e-5, foreach=True)
            tracker.watch(GRADIENTS, lambda: (p.grad for p in params if p.grad is not None))
            tracker.watch(OPTIMIZER_STATES, lambda: _optimizer_tensors(torch, optimizer))
            ids = torch.zeros(micro_batch, seq, dtype=torch.long)
            # the second of two steps: AdamW creates its states in the first, so the measured
            # step is the steady state every later step repeats
            autocast = _mixed_precision(torch, method, torch_dtype)
            for _ in range(2):
                tracker.reset_peak()
                _step(model, optimizer, ids, autocast)
            peak = tracker.peak
        for _ in range(0 if fake else timed_steps):
            step_started = time.perf_counter()
            _step(model, optimizer, ids, autocast)
            step_seconds.append(time.perf_counter() - step_started)
        trainable = sum(p.numel() for p in params)
        del model, ids
    return TrainStepRun(peak_bytes=peak.bytes, params_bytes=peak.part(PARAMS),
                        gradients_bytes=peak.part(GRADIENTS),
                        optimizer_states_bytes=peak.part(OPTIMIZER_STATES),
                        activations_bytes=peak.part(ACTIVATIONS), peak_op=peak.op,
                        seconds=time.perf_counter() - started, rss_bytes=_peak_rss_bytes(),
                        fake=fake, method=method, trainable_params=trainable,
                        step_seconds=tuple(step_seconds))


def _mixed_precision(torch: Any, method: str, torch_dtype: Any) -> Any:
    """Adapters over a 16-bit base train in mixed precision: PEFT keeps them in fp32 and the
    forward runs under autocast, as the Hugging Face Trainer (accelerate) runs it with bf16/fp16
    on; a full fine-tune traces pure `dtype` training, without autocast."""
    if method == "full" or torch_dtype == torch.float32:
        return contextlib.nullcontext
    return lambda: torch.autocast("cpu", dtype=torch_dtype)


def _step(model: Any, optimizer: Any, ids: Any, autocast: Any = contextlib.nullcontext) -> None:
    with autocast():
        out = model(input_ids=ids, labels=ids, use_cache=False)
    out.loss.backward()
    del out
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _import_peft() -> Any:
    try:
        import peft
    except ImportError:
        raise InputError(PEFT_HINT) from None
    return peft


def _wrap_lora(torch: Any, peft: Any, model: Any, torch_dtype: Any, rank: int, targets: str,
               quantized: bool) -> Any:
    """PEFT's LoRA with its defaults (alpha = 2r, no dropout). The adapters are created in the
    model's dtype (then PEFT's autocast_adapter_dtype upcasts 16-bit ones to fp32, as it does
    for every user), so no module has to change dtype on fake tensors."""
    if quantized:
        # casts the unquantized rest (norms, embeddings, head) to fp32, as the QLoRA recipe does
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    modules: str | list[str] = targets if targets == "all-linear" else \
        [t.strip() for t in targets.split(",") if t.strip()]
    lora = peft.LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=modules)
    with _default_dtype(torch, torch_dtype), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' checkpointing renames
        try:
            return peft.get_peft_model(model, lora)
        except ValueError as exc:
            raise InputError(f"PEFT cannot put LoRA on {targets!r}: "
                             f"{str(exc).splitlines()[0]}") from None


def _embeddings_back_to(torch_dtype: Any, model: Any) -> None:
    """TRL's SFTTrainer with bf16 after prepare_model_for_kbit_training: the embeddings and the
    output head go back to 16 bit, the norms stay fp32 (trl peft_module_casting_to_bf16)."""
    for name, module in model.named_modules():
        if "norm" in name:
            continue
        if any(part in name for part in ("lm_head", "embed_tokens", "wte", "wpe")) \
                and getattr(module, "weight", None) is not None:
            module.to(torch_dtype)


def _build_nf4(torch: Any, transformers: Any, hf_config: Any, torch_dtype: Any, attn: str) -> Any:
    """The model quantized to bitsandbytes NF4 the way users load it: `from_pretrained` with a
    BitsAndBytesConfig, from the random-weight model saved to a temporary folder."""
    model = _build(transformers, hf_config, torch_dtype, attn)
    with tempfile.TemporaryDirectory(prefix="vramest-qlora-") as folder:
        model.save_pretrained(folder, safe_serialization=True)
        del model
        quant = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                bnb_4bit_compute_dtype=torch_dtype)
        return transformers.AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=quant, dtype=torch_dtype, device_map="cpu",
            attn_implementation=attn)


def _train_state_tensors(torch: Any, model: Any) -> Iterator[Any]:
    """Parameters, buffers and bitsandbytes' quantization state (absmax and code)."""
    yield from _state_tensors(model)
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        while state is not None:
            yield from (v for v in vars(state).values() if isinstance(v, torch.Tensor))
            state = getattr(state, "state2", None)


@contextlib.contextmanager
def _default_dtype(torch: Any, dtype: Any) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def _unchanged_to_is_noop(torch: Any, fake: bool) -> Iterator[None]:
    """PEFT moves each new adapter to its base layer's device and dtype with `Module.to`; on
    fake parameters torch swaps tensors for that, which fails (FakeTensorMode holds a weak
    reference to each). A move that changes nothing returns the module untouched, as it
    leaves real tensors untouched; any real change still goes through torch."""
    if not fake:
        yield
        return
    from unittest import mock

    original = torch.nn.Module.to

    def to(self: Any, *args: Any, **kwargs: Any) -> Any:
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        tensors = [*self.parameters(), *self.buffers()]
        if all((device is None or t.device == device)
               and (dtype is None or not t.is_floating_point() or t.dtype == dtype)
               for t in tensors):
            return self
        return original(self, *args, **kwargs)

    with mock.patch.object(torch.nn.Module, "to", to):
        yield


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


@frozen
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
    method: str = "full"
    lora_rank: int | None = None
    lora_targets: str | None = None
    analytic_precision: str = "bf16"  # the training estimate's --precision for this trace

    def to_json(self) -> dict[str, Any]:
        total = self.analytic["total"]
        settings: dict[str, Any] = {
            "dtype": self.dtype, "seq": self.seq, "micro_batch": self.micro_batch,
            "attention": self.attention, "grad_checkpointing": self.grad_checkpointing,
            "method": self.method, "optimizer": "adamw",
            "analytic_precision": self.analytic_precision}
        if self.method != "full":
            settings.update(lora_rank=self.lora_rank, lora_targets=self.lora_targets)
        return {"model": self.model, "settings": settings,
                "phases": {"train": self.run.to_json()},
                "analytic": {**self.analytic, "moment": self.analytic_moment},
                "difference": {"bytes": total - self.run.peak_bytes,
                               "pct": round(100 * (total - self.run.peak_bytes)
                                            / max(1, self.run.peak_bytes), 3)}}


def analytic_settings(dtype: str, method: str, seq: int, micro_batch: int, attn: str,
                      grad_checkpointing: bool, lora_rank: int = 16,
                      lora_targets: str = "all-linear", upcast: str = "peft") -> dict[str, Any]:
    """The `estimate_training` keywords that describe the step a trace runs.

    Full fine-tuning is pure `dtype`. PEFT keeps adapters over a 16-bit base in fp32: fp32
    adapter weights, gradients and AdamW moments are the analytic "mixed" accounting's 16 B per
    trainable parameter (16-bit copy + fp32 master, 16-bit gradient, two fp32 moments), and
    activations stay in the 16-bit compute dtype. QLoRA adds the NF4 base with the rest in
    fp32 (prepare_model_for_kbit_training)."""
    precision = "fp32" if dtype == "fp32" else ("bf16" if method == "full" else "mixed")
    out: dict[str, Any] = {"method": method, "precision": precision, "optimizer": "adamw",
                           "seq": seq, "micro_batch": micro_batch, "attention": attn,
                           "grad_checkpointing": "full" if grad_checkpointing else "none"}
    if method != "full":
        out.update(lora_rank=lora_rank, lora_targets=lora_targets)
    if method == "qlora":
        out.update(base_dtype="nf4", upcast_unquantized=upcast)
    return out


def trace_train(model: str, *, dtype: str = "bf16", seq: int = 2048, micro_batch: int = 1,
                attn: str = "sdpa", grad_checkpointing: bool = False, method: str = "full",
                lora_rank: int = 16, lora_targets: str = "all-linear") -> TrainTrace:
    """Trace a catalog model's training step and put the analytic estimate beside it."""
    from vramest.model.catalog import default_catalog
    from vramest.training import estimate_training

    entry = default_catalog().find(model)
    settings = analytic_settings(dtype, method, seq, micro_batch, attn, grad_checkpointing,
                                 lora_rank, lora_targets)
    est = estimate_training(model=entry.id, **settings)  # bad settings fail before the trace
    run = trace_train_config(entry.config, dtype=dtype, seq=seq, micro_batch=micro_batch,
                             attn=attn, grad_checkpointing=grad_checkpointing, method=method,
                             lora_rank=lora_rank, lora_targets=lora_targets)
    peak = max(est.phases, key=lambda phase: phase.total)
    return TrainTrace(model=entry.id, dtype=dtype, seq=seq, micro_batch=micro_batch,
                      attention=attn, grad_checkpointing=grad_checkpointing, run=run,
                      analytic=peak.to_json(), analytic_moment=peak.name, method=method,
                      lora_rank=lora_rank if method != "full" else None,
                      lora_targets=lora_targets if method != "full" else None,
                      analytic_precision=settings["precision"])
