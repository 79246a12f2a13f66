"""The public training estimate: resolve the model, add up a step's memory per GPU,
fit it on GPUs and time it."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from vramest.errors import InputError, require_text, short
from vramest.frozen import TYPE_CHECKING, field, frozen, replace
from vramest.hardware.database import Device, agreeing_count, common_devices, load_hardware
from vramest.inference.placement import ecc_note, largest_fitting, parse_reserve
from vramest.model.resolve import ModelInfo, resolve_model
from vramest.model.shapes import ModelShape
from vramest.training.activations import ActivationModel, activation_model, stream_bytes
from vramest.training.constants import TRAINING_DEFAULTS, TRAINING_SOURCES, TrainingConstants
from vramest.training.frameworks import UNSLOTH_DYNAMIC_CHECKPOINT_BYTES
from vramest.training.memory import StaticMemory, TrainingPhase, phases, static_memory
from vramest.training.settings import (
    _MAX_SEARCH_BATCH,
    _MAX_SEARCH_SEQ,
    PART_NAMES,
    TrainingSettings,
    make_settings,
)
from vramest.training.speed import TrainingSpeed, flops_per_token
from vramest.training.trainable import Trainable, experts_stay_16_bit, trainable_part_of
from vramest.units import (
    format_bytes,
    parse_bytes,
    parse_params,
)

if TYPE_CHECKING:
    from typing import Any


@frozen
class Fit:
    device: str | None
    usable_bytes: int | None
    required_bytes: int
    fits: bool | None
    headroom_bytes: int | None
    max_seq: int | None
    max_micro_batch: int | None
    advice: tuple[str, ...] = ()  # one change each, with the headroom it leaves, when not "fits"

    @property
    def error_band_bytes(self) -> int:
        from vramest.inference.verdict import BANDS

        return round(BANDS["training"].fraction * self.required_bytes)

    @property
    def verdict(self) -> str | None:
        """fits / tight / does-not-fit, with the measured error of training peaks as the band."""
        from vramest.inference.verdict import verdict

        if self.headroom_bytes is None:
            return None
        return verdict(self.headroom_bytes, self.error_band_bytes)

    def to_json(self) -> dict[str, Any]:
        from vramest.inference.verdict import BANDS

        band = BANDS["training"].to_json(self.error_band_bytes) if self.verdict else None
        return {"device": self.device, "usable_bytes": self.usable_bytes,
                "required_bytes": self.required_bytes, "fits": self.fits,
                "verdict": self.verdict, "error_band": band,
                "headroom": self.headroom_bytes, "max_seq": self.max_seq,
                "max_micro_batch": self.max_micro_batch, "advice": list(self.advice)}


@frozen
class DeviceFit:
    """The fit and speed on one common GPU, for an estimate that named none."""

    fit: Fit
    tokens_per_s_per_gpu: float | None
    fewest_gpus_zero3: int | None  # of 1, 2, 4, ... 64; None: not even 64

    def to_json(self) -> dict[str, Any]:
        return {**self.fit.to_json(), "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
                "fewest_gpus_zero3": self.fewest_gpus_zero3}


@frozen
class TrainingEstimate:
    model: ModelInfo
    settings: TrainingSettings
    trainable_params: int
    phases: tuple[TrainingPhase, ...]
    cuda_context_bytes: int
    host_bytes: int
    paged_bytes: int
    fit: Fit
    throughput: TrainingSpeed
    assumptions: tuple[str, ...]
    constants: TrainingConstants = field(default=TRAINING_DEFAULTS)
    devices: tuple[DeviceFit, ...] = ()  # without --gpu: the fit on each common GPU

    @property
    def peak(self) -> TrainingPhase:
        return max(self.phases, key=lambda phase: phase.total)

    @property
    def total_bytes(self) -> int:
        return self.peak.total

    def to_json(self) -> dict[str, Any]:
        peak = self.peak
        memory: dict[str, Any] = {name: peak.get(name) for name in PART_NAMES}
        memory.update(total=peak.total, host_bytes=self.host_bytes,
                      cuda_context=self.cuda_context_bytes, peak_phase=peak.name)
        return {
            "model": self.model.to_json(),
            "settings": self.settings.to_json(),
            "trainable_params": self.trainable_params,
            "memory": memory,
            "phases": {phase.name: phase.to_json() for phase in self.phases},
            "formulas": {part.name: part.formula for part in peak.parts},
            "fit": self.fit.to_json(),
            "throughput": self.throughput.to_json(),
            "devices": [option.to_json() for option in self.devices],
            "constants": {name: {"value": value, "source": TRAINING_SOURCES[name]}
                          for name, value in self.constants.as_dict().items()},
            "assumptions": list(self.assumptions),
        }


@frozen(eq=False)  # identity-hashed: its searches' answers are remembered per instance
class _Model:
    """Everything seq- and batch-independent, so the fit search only redoes the cheap parts."""

    shape: ModelShape
    settings: TrainingSettings
    trainable: Trainable
    static: StaticMemory
    act: ActivationModel

    def required(self, seq: int, micro_batch: int, context: int) -> int:
        return _required(self, seq, micro_batch) + context


@lru_cache(maxsize=4096)
def _required(m: _Model, seq: int, micro_batch: int) -> int:
    """The step's peak at (seq, micro_batch): the GPU table's searches probe the same points
    on every card (doubling from 1, then bisecting), so each is computed once."""
    moments = phases(m.shape, m.settings, m.static, m.act, seq, micro_batch)
    return max(phase.total for phase in moments) - m.static.paged_bytes


# A QLoRA run prepares its 4-bit base with PEFT's prepare_model_for_kbit_training, whose
# use_gradient_checkpointing defaults to True (peft/utils/other.py): the recipe's default
QLORA_CHECKPOINTING_NOTE = (
    "Gradient checkpointing on: a QLoRA base is prepared with PEFT's "
    "prepare_model_for_kbit_training, which turns it on unless told not to "
    "(use_gradient_checkpointing=True); --grad-checkpointing none for a run without it.")


def estimate_training(*, model: str | None = None, params: str | int | None = None,
                      family: str = "llama", info: ModelInfo | None = None,
                      gpu: str | None = None, gpu_memory: str | int | None = None,
                      tokens: str | int | None = None, constants: TrainingConstants | None = None,
                      hardware_file: str | None = None, reserve: str | float | None = None,
                      profile: str | None = None, framework: str | None = None,
                      _advise: bool = True, **settings: Any) -> TrainingEstimate:
    """Memory per GPU, fit and throughput of one training step.

    `settings` are make_settings' keywords: method, precision, optimizer, seq, micro_batch,
    grad_accumulation, grad_checkpointing, attention, lora_rank, lora_targets, lora_dropout,
    base_dtype, trainable_layers, zero, fsdp, num_gpus, offload. `framework` (llamafactory,
    axolotl, trl, unsloth, torchtune) fills the ones not given with that framework's defaults.
    """
    require_text(model=model, family=family, gpu=gpu, hardware_file=hardware_file, profile=profile,
                 framework=framework)
    c = constants or TRAINING_DEFAULTS
    filled: dict[str, Any] = {}
    if framework is not None:
        from vramest.training.frameworks import framework_defaults

        filled = {k: v for k, v in framework_defaults(
            framework, str(settings.get("method", "full")).strip().lower()).items()
            if k not in settings}
        settings = {**filled, **settings}
    recipe: tuple[str, ...] = ()
    if framework is None and "grad_checkpointing" not in settings and \
            str(settings.get("method", "full")).strip().lower() == "qlora":
        settings = {**settings, "grad_checkpointing": "full"}
        recipe = (QLORA_CHECKPOINTING_NOTE,)
    s = make_settings(**settings)
    kept_free = parse_reserve(reserve)  # checked even when no --gpu uses it
    token_count = None if tokens is None else parse_params(tokens, what="--tokens")
    if profile is not None:  # a calibration profile with a training grid (vramest calibrate)
        from vramest.calibration.profile import load_profile

        loaded = load_profile(profile)
        gpu, hardware_file = loaded.placement(gpu, hardware_file)
        on_device = gpu is not None and gpu == loaded.device_name
        c = loaded.training_constants(c, s.precision, on_device)
    device = None
    if gpu is not None:
        device, count = load_hardware(hardware_file).find_counted(gpu)  # "2x A100": two
        if count > 1:
            s = replace(s, num_gpus=agreeing_count(s.num_gpus, count, gpu))
            settings = {**settings, "num_gpus": s.num_gpus}
    if framework is not None and "loss" in filled and device is not None:
        from vramest.inference.engines.layouts import compute_capability
        from vramest.training.frameworks import framework_loss_on

        loss = framework_loss_on(framework, s.loss, compute_capability(device), s.torch)
        if loss != s.loss:  # the default's own condition fails on this GPU or torch release
            s, settings = replace(s, loss=loss), {**settings, "loss": loss}
            filled = {**filled, "loss": f"{loss} (its Cut Cross-Entropy needs compute "
                      "capability 7.5 and torch 2.4)"}
    info = info or resolve_model(params=params, model=model, family=family)
    shape = info.shape
    if shape.num_heads % s.sequence_parallel:
        raise InputError(f"--sequence-parallel {s.sequence_parallel} must divide the "
                         f"{shape.num_heads} attention heads of {shape.name} (Ulysses gives "
                         "each GPU whole heads).")
    trainable = trainable_part_of(shape, s)
    static = static_memory(shape, s, trainable, c)
    act = activation_model(shape, s, trainable, c)
    m = _Model(shape, s, trainable, static, act)
    moments = phases(shape, s, static, act, s.seq, s.micro_batch)
    # offloaded checkpointing keeps every block's input in host memory
    offloaded = (s.tokens_per_gpu(s.seq, s.micro_batch) * s.sequences_per_example
                 * stream_bytes(s) * shape.hidden_size * shape.num_layers
                 if s.checkpointing == "offloaded" else 0)
    peak_total = max(phase.total for phase in moments)

    device_name, usable, peak_flops, flops_source = None, None, None, "no --gpu given"
    device_notes: tuple[str, ...] = ()
    if gpu_memory is not None:
        usable = parse_bytes(gpu_memory, what="--gpu-memory")
        if usable <= 0:
            raise InputError(f"--gpu-memory {short(gpu_memory)} leaves nothing to fit on; give a "
                             "size such as 24GB or 80GiB.")
        device_name = f"{format_bytes(usable)} GPU"
    if device is not None:
        device_name = device.name
        if device.addressable_bytes < device.memory_bytes and gpu_memory is None:
            device_notes = (ecc_note(device),)
        # the same free share as inference (vramest.inference.placement.DEFAULT_RESERVE,
        # --reserve). Against the logs it stands for what a training process cannot use beyond
        # the context counted in `required`: the driver shows 0.985-0.992 of the card (31.75 of
        # 32 GiB, LlamaFactory#1221; 39.39 of 40, #2908; 79.35 of 80, #1158) and 1.33-1.52 GiB
        # sat outside PyTorch's allocator (#2908 one GPU, #1221 eight), 0.3-0.5 GiB more than
        # cuda_context_bytes; what the allocator reserved but had not allocated was 0-0.09 GiB
        # at those failures (it frees its cache and retries before raising). Both rules leave
        # PyTorch within 3% of each other on 24-40 GiB cards (tests/test_training_fit.py).
        usable = usable or kept_free.usable(device)
        precision = "fp32" if s.precision == "fp32" else "bf16"
        peak_flops, flops_source = device.flops(precision)
    required = peak_total - static.paged_bytes + c.cuda_context_bytes
    options: tuple[DeviceFit, ...] = ()
    if usable is None:
        fit = Fit(None, None, required, None, None, None, None)
        if gpu is None:  # no device named: the common GPUs, as the inference estimate shows
            options = tuple(_device_fit(m, c, required, device, kept_free.usable(device),
                                        token_count)
                            for device in common_devices(hardware_file))
    else:
        fit = _fit(m, c, required, device_name, usable)
        if _advise and fit.verdict != "fits":
            fit = replace(fit, advice=_advice(s, settings, fit, lambda **changed: estimate_training(
                info=info, gpu=gpu, gpu_memory=gpu_memory, constants=constants,
                hardware_file=hardware_file, reserve=reserve, profile=profile, _advise=False,
                **{**settings, **changed}).fit))
    throughput = _throughput(shape, s, trainable, peak_flops, flops_source, token_count, c)
    return TrainingEstimate(
        model=info, settings=s, trainable_params=trainable.params, phases=moments,
        cuda_context_bytes=c.cuda_context_bytes, host_bytes=static.host_bytes + offloaded,
        paged_bytes=static.paged_bytes, fit=fit, throughput=throughput,
        assumptions=(_framework_note(framework, filled) + recipe
                     + _assumptions(info, s, trainable, static, c) + device_notes), constants=c,
        devices=options)


def _advice(s: TrainingSettings, given: dict[str, Any], fit: Fit,
            refit: Callable[..., Fit]) -> tuple[str, ...]:
    """Single changes that take the step out of "does not fit" or "tight", each with the
    headroom it leaves (the longest sequence that fits is printed beside them already)."""
    changes: list[tuple[str, dict[str, Any]]] = []
    if s.checkpointing in ("none", "selective"):
        changes.append(("--grad-checkpointing full: recompute each layer in backward (PEFT's "
                        "prepare_model_for_kbit_training and most recipes turn it on)",
                        {"grad_checkpointing": "full"}))
    if s.micro_batch > 1:
        changes.append(("--micro-batch 1 (more --grad-accumulation keeps the batch)",
                        {"micro_batch": 1}))
    if s.optimizer in ("adamw", "adamw-fused") and s.method in ("full", "freeze"):
        changes.append(("--optimizer adamw-8bit: 2 bytes of state per parameter instead of 8",
                        {"optimizer": "adamw-8bit"}))
    if s.method in ("full", "freeze"):
        changes.append(("--method lora: train adapters, the base frozen", {"method": "lora"}))
    elif s.method == "lora":
        changes.append(("--method qlora: the frozen base in 4 bit", {"method": "qlora"}))
    out = []
    for text, changed in changes:
        try:
            after = refit(**changed)
        except InputError:
            continue
        if after.headroom_bytes is not None and after.headroom_bytes > (fit.headroom_bytes or 0):
            out.append(f"{text}: headroom {format_bytes(after.headroom_bytes)}"
                       + ("" if after.verdict == "fits" else f" ({after.verdict})"))
    return tuple(out)


def _fit(m: _Model, c: TrainingConstants, required: int, device_name: str | None,
         usable: int) -> Fit:
    s = m.settings
    max_seq = largest_fitting(lambda n: m.required(n, s.micro_batch, c.cuda_context_bytes) <= usable,
                              _MAX_SEARCH_SEQ)
    max_mb = largest_fitting(lambda n: m.required(s.seq, n, c.cuda_context_bytes) <= usable,
                             _MAX_SEARCH_BATCH)
    return Fit(device_name, usable, required, required <= usable, usable - required,
               max_seq, max_mb)


_GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64)


def _device_fit(m: _Model, c: TrainingConstants, required: int, device: Device, usable: int,
                tokens: int | None) -> DeviceFit:
    """One row of the common-GPU table: the fit and the speed on that card, and how many of
    them fully sharded (ZeRO-3 / FSDP) would hold the step."""
    s = m.settings
    peak_flops, source = device.flops("fp32" if s.precision == "fp32" else "bf16")
    speed = _throughput(m.shape, s, m.trainable, peak_flops, source, tokens, c)
    fewest = next((n for n in _GPU_COUNTS if n % s.sequence_parallel == 0 and _sharded(
        m, c, n).required(s.seq, s.micro_batch, c.cuda_context_bytes) <= usable), None)
    return DeviceFit(_fit(m, c, required, device.name, usable), speed.tokens_per_s_per_gpu,
                     fewest)


def _sharded(m: _Model, c: TrainingConstants, num_gpus: int) -> _Model:
    """The same step with everything partitioned over `num_gpus` (ZeRO stage 3)."""
    s = replace(m.settings, num_gpus=num_gpus, zero_stage=3)
    static = static_memory(m.shape, s, m.trainable, c)
    return _Model(m.shape, s, m.trainable, static, activation_model(m.shape, s, m.trainable, c))


def _throughput(shape: ModelShape, s: TrainingSettings, trainable: Trainable,
                peak_flops: float | None, source: str, tokens: int | None,
                c: TrainingConstants) -> TrainingSpeed:
    per_token = flops_per_token(shape, s, trainable, s.seq)
    if not peak_flops:
        return TrainingSpeed(None, None, None, per_token, source)
    rate = c.flops_utilization * peak_flops / per_token
    step_time = s.tokens_per_gpu(s.seq, s.micro_batch) * s.grad_accumulation / rate
    total = None
    if tokens is not None:
        total = tokens / (rate * s.num_gpus)
    return TrainingSpeed(rate, step_time, total, per_token,
                      f"{c.flops_utilization:g} × {source} ÷ {per_token / 1e9:.1f} GFLOP/token")


def _framework_note(framework: str | None, filled: dict[str, Any]) -> tuple[str, ...]:
    if framework is None:
        return ()
    given = ", ".join(f"{k}={v}" for k, v in filled.items()) or "none (all given explicitly)"
    return (f"Framework {framework.strip().lower()}: its defaults for what was not given: "
            f"{given}.",)


def _assumptions(info: ModelInfo, s: TrainingSettings, trainable: Trainable, static: StaticMemory,
                 c: TrainingConstants) -> tuple[str, ...]:
    out = [f"Model shape: {info.origin}." if info.source == "params" else
           f"Model shape from {info.source} {info.name}."]
    out.append({"mixed": "Mixed precision: 16-bit weights and gradients, fp32 master weights "
                "and fp32 optimizer states (ZeRO paper accounting: 2 + 2 + 12 B/param with AdamW).",
                "bf16": "Pure bf16: weights, gradients and torch optimizer states in bf16, no "
                "master copy.",
                "fp32": "fp32 weights, gradients and optimizer states."}[s.precision])
    if s.method in ("lora", "qlora"):
        out.append(f"LoRA adapters on {trainable.adapted_targets(s)} with rank {s.lora_rank}; "
                   f"the base stays frozen in {s.base_dtype}.")
        if s.upcast_unquantized:
            out.append("prepare_model_for_kbit_training made what is not quantized fp32"
                       + (", and TRL's SFTTrainer cast the embeddings and head back to 16 bit"
                          if s.embeddings_16bit else "")
                       + ": the residual stream runs in fp32.")
        if s.base_checkpoint == "unsloth-dynamic":
            out.append("Unsloth loads its Dynamic 4-bit checkpoint (unsloth/<model>-unsloth-bnb-4bit)"
                       " for this model name: "
                       + ("some modules stay 16-bit, counted from its published size"
                          if info.shape.name in UNSLOTH_DYNAMIC_CHECKPOINT_BYTES else
                          "its size is not in vramest's table, so it is counted as plain NF4")
                       + "; --base-checkpoint plain for a '-bnb-4bit' name.")
        if info.shape.is_moe and s.fused_experts and {"gate", "up", "down"} & set(s.lora_targets):
            out.append("MoE experts are fused 3-D parameters (transformers 5): PEFT adapts "
                       "them as parameters (gate_up at rank 2r) and each forward folds W + BA "
                       "into a full-size copy of the layer's experts, kept for backward; "
                       "--moe-experts separate for one Linear per expert.")
        if experts_stay_16_bit(info.shape, s):
            out.append("bitsandbytes quantizes nn.Linear modules only: the fused expert "
                       "parameters of transformers 5 stay 16-bit"
                       + (" (fp32 after prepare_model_for_kbit_training)"
                          if s.upcast_unquantized else "")
                       + "; --moe-experts separate for code that quantizes each expert.")
    if info.shape.is_moe and s.moe_experts == "indexed":
        out.append("MoE experts indexed one at a time (transformers 4.55's gpt-oss training "
                   "loop): each expert's weights are copied and kept for backward, and each "
                   "expert's backward fills a zero tensor of the whole stack.")
    if s.optimizer.startswith("paged"):
        out.append("Paged optimizer states can spill to host memory, so the fit check leaves "
                   "them out.")
    out.append(f"Activations: {s.attention} attention, gradient checkpointing {s.checkpointing}; "
               + {"standard": "loss on every position with fp32 log-softmax",
                 "fused": "Unsloth's fused cross-entropy over 16-bit logits",
                 "chunked": "torchtune's chunked cross-entropy",
                 "cut": "Cut Cross-Entropy (no logits stored)",
                 "half": "the model's own cross-entropy in 16 bit (DeepSpeed's fp16/bf16 engine, "
                 "no autocast)"}[s.loss]
               + " (no torch.compile).")
    if s.optimizer == "adamw" and s.adamw_single_tensor:
        out.append(f"torch {'.'.join(map(str, s.torch))}: AdamW steps one tensor at a time, its "
                   "sqrt(v) and the quotient alive together: two temporaries the size of the "
                   "largest tensor stepped (under DeepSpeed ZeRO, its flat partition).")
    if s.optimizer_in_backward:
        out.append("Optimizer in backward: each parameter is stepped and its gradient freed as "
                   "soon as it is ready, so at most one tensor's gradient is alive.")
    else:
        out.append("Gradients are freed after each optimizer step (set_to_none), so backward "
                   "and the optimizer step peak separately; the larger one is the total.")
    if s.num_gpus > 1 and s.zero_stage == 0:
        out.append("Data parallel without sharding: every GPU holds a full replica.")
    if static.gathered_root:
        out.append("FSDP: a running and a prefetched block are gathered in their storage format, "
                   "and the root unit (embeddings, final norm, head) stays gathered from the "
                   "forward to the end of backward"
                   + ("; in backward the running block's gradients are unsharded and the "
                      "previous block's wait in its reduce-scatter" if static.fsdp_grad_buffers
                      else "") + ".")
    elif static.gathered_layer:
        out.append("Stage 3 / FSDP: a running and a prefetched layer are gathered in 16 bit.")
    if static.engine_init_base:
        out.append("DeepSpeed ZeRO-3 on a quantized base: transformers loads a quantized model "
                   "without zero.Init, so DeepSpeed moves the whole model to every GPU before "
                   "partitioning it (phase engine_init); FSDP shards it at load instead.")
    if s.sequence_parallel > 1:
        sp = s.sequence_parallel
        out.append(f"Sequence parallel {sp} (DeepSpeed Ulysses, context parallel): each GPU "
                   f"holds 1/{sp} of every sequence's tokens (activations, logits and the loss) "
                   f"and, inside attention, every token for 1/{sp} of the heads; weights, "
                   f"gradients and states shard by the ZeRO stage over all {s.num_gpus} GPUs. "
                   "The all-to-all buffers are not counted.")
    if s.offload != "none":
        out.append(f"Offload {s.offload}: host memory is the total over {s.num_gpus} GPU(s).")
    out.append(f"Fit adds a CUDA context of {format_bytes(c.cuda_context_bytes)}; "
               "other communication buffers and allocator fragmentation are not modelled.")
    return tuple(out)
