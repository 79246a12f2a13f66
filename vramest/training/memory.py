"""A training step's memory per GPU, counted from the model's tensors.

The peak is the largest of four moments of a step, each the sum of what is alive then:
- `loss`: backward through cross-entropy: weights, optimizer states (kept from the last step),
  the activations saved for backward and the fp32 loss buffers over the logits;
- `first_layer_backward`: the loss buffers are freed; the last block (recomputed under
  checkpointing) runs backward with every saved activation still alive and few gradients;
- `last_layer_backward`: the first block runs backward with nearly all gradients produced;
- `optimizer_step`: weights, all gradients, optimizer states and the step's temporaries.
Gradients are set to None after each step (torch's default since 2.0), so they only pile up
during backward, unless gradient accumulation keeps them."""

from __future__ import annotations

import math

from vramest.frozen import frozen
from vramest.inference.memory import Part, weight_bytes
from vramest.model.shapes import ModelShape
from vramest.training.activations import ActivationModel
from vramest.training.constants import TrainingConstants
from vramest.training.settings import RECOMPUTING, ZERO_BUCKET_ELEMENTS, TrainingSettings  # noqa: F401
from vramest.training.trainable import (
    Trainable,
    base_format,
    dynamic_checkpoint_extra,
    optimizer_state_bytes,
    optimizer_step_temporary,
)
from vramest.units import (
    format_bytes,
)

_LOSS_HOW = {"standard": "16-bit logits + fp32 log-softmax, its gradient in and out",
             "fused": "16-bit logits, the fused kernel's gradient written in place",
             "chunked": "16-bit logits and one chunk's gradient",
             "cut": "none stored: Cut Cross-Entropy computes them block by block",
             "half": "16-bit logits, their shifted copy, log-softmax and its gradients in 16 bit"}


@frozen
class TrainingPhase:
    """What is alive at one moment of the step, per GPU."""

    name: str
    parts: tuple[Part, ...]

    @property
    def total(self) -> int:
        return sum(part.bytes for part in self.parts)

    def get(self, name: str) -> int:
        return next((part.bytes for part in self.parts if part.name == name), 0)

    def to_json(self) -> dict[str, int]:
        return {**{part.name: part.bytes for part in self.parts}, "total": self.total}


@frozen
class StaticMemory:
    """The parts that do not depend on sequence length or micro-batch (per GPU, host)."""

    frozen: Part
    trainable: Part
    gradients: Part
    optimizer: Part
    step_temporary: Part
    gathered_layer: int  # ZeRO-3 / FSDP: a layer's 16-bit weights gathered while it runs
    gathered_root: int  # FSDP: embeddings, final norm and head, gathered forward to backward
    first_layer_gradients: int  # the output head's and one block's gradients
    host_bytes: int
    paged_bytes: int  # optimizer states that can spill to host (paged optimizers)
    comm_buckets: int = 0  # ZeRO-1/2 gradient buckets, held from the first backward on
    # optimizer in backward: the gradient of the largest trainable tensor, the most alive at once
    largest_gradient: int = 0
    # FSDP: the running block's unsharded gradients and the previous block's, still in flight
    fsdp_grad_buffers: int = 0
    # ZeRO-3 on a quantized base: the whole base and every adapter on every GPU when
    # deepspeed.initialize starts (zero3_quantized_init_bytes)
    engine_init_base: int = 0
    engine_init_adapters: int = 0


def _buckets_how(buckets: int, s: TrainingSettings) -> str:
    if not buckets:
        return ""
    size = f"{s.reduce_bucket_size:.0e}".replace("e+0", "e")
    how = f"overlap_comm: 4.5 x both {size}-element buckets" if s.overlap_comm else \
        f"one {size}-element reduce bucket"
    return f" + ZeRO gradient buckets {format_bytes(buckets)} ({how})"


def _root_bytes_per_element(s: TrainingSettings, weight_b: int) -> int:
    """The embeddings' and head's storage: the training precision when they are trained, else
    16 bit, or fp32 when prepare_model_for_kbit_training upcast them."""
    if s.method not in ("lora", "qlora"):
        return weight_b
    if s.precision == "fp32" or (s.upcast_unquantized and not s.embeddings_16bit):
        return 4
    return 2


def _shard(nbytes: float, shards: int) -> int:
    return math.ceil(nbytes / shards)


# DeepSpeed ZeRO-3 updates its fp32 partition one sub group at a time, sub_group_size
# elements each (deepspeedai/DeepSpeed@v0.12.6 deepspeed/runtime/zero/config.py
# sub_group_size default 1e9; stage3.py step: "update parameters one sub group at a time")
ZERO3_SUB_GROUP_ELEMENTS = 1_000_000_000


def _zero_step(step_tmp: int, shard_elements: float, grad_b: int, sub_group: float,
               keeps_16bit_grads: bool) -> int:
    """DeepSpeed's optimizer step under mixed precision: the partition's gradients as a new
    fp32 tensor (stage_1_and_2.py step, single_grad_partition = flatten(...).to(fp32); stage3.py
    _prepare_fp32_grad_for_sub_group) with the update's temporaries beside it. ZeRO-1/2 drop
    their 16-bit gradients once converted (averaged_gradients[i] = None; the buffer's own
    reference went at the end of backward, _release_ipg_buffers), so the fp32 copy is 4 -
    grad_b bytes over the 16-bit gradients counted: LlamaFactory#1221 logged 28.28 GiB allocated
    = 16-bit weights + fp32 master, states, gradients and one sqrt, no 16-bit gradients.
    ZeRO-3 keeps its flat 16-bit gradient buffer (grad_partitions_flat_buffer, allocated once
    in __init__), so its fp32 copy is 4 bytes new, one sub group at a time.
    DeepSpeed v0.11.1 (e9503fe, 2023-10) and v0.15.3 (a24cdd6, 2024-10) read."""
    share = min(1.0, sub_group / shard_elements) if shard_elements else 1.0
    fp32_grads = ((FP32_BYTES if keeps_16bit_grads else FP32_BYTES - grad_b) * shard_elements
                  if grad_b else 0)
    return round((step_tmp + fp32_grads) * share)


FP32_BYTES = 4


# DeepSpeed ZeRO-1/2's gradient buckets: reduce_bucket_size and allgather_bucket_size default
# to 5e8 elements (deepspeed/runtime/zero/config.py). With contiguous_gradients (default on)
# backward copies gradients into a bucket of reduce_bucket_size elements (stage_1_and_2.py
# backward: ipg_buffer), whatever the model's size; with overlap_comm the buffers are doubled
# and gradients stay in flight: "uses
# 4.5x the allgather_bucket_size and reduce_bucket_size values. So if they are set to 5e8,
# this requires a 9GB footprint (5e8 x 2Bytes x 2 x 4.5)" (transformers docs, DeepSpeed, ZeRO-2).
ZERO_OVERLAP_FACTOR = 4.5


def zero_bucket_bytes(s: TrainingSettings, grad_b: int) -> int:
    """ZeRO-1/2's communication buffers per GPU (0 for other strategies)."""
    if s.zero_stage not in (1, 2):
        return 0
    if s.overlap_comm:
        return round(ZERO_OVERLAP_FACTOR * 2 * s.reduce_bucket_size * grad_b)
    return s.reduce_bucket_size * grad_b


def fsdp_gradient_buffers(s: TrainingSettings, layer_grad_bytes: float) -> int:
    """FSDP's unsharded gradients in backward, per GPU: the running block's, less the share kept
    as its sharded gradient (none when gradients are offloaded), and the block before it, whose
    reduce-scatter input stays referenced until this block's own reduce (torch 2.13.0
    torch/distributed/fsdp/_fully_shard/_fsdp_param_group.py post_backward: comm_ctx.
    reduce_scatter_states holds reduce_scatter_input, reduce_scatter_max_input_buffers = 1;
    FSDP1 _runtime_utils._post_backward_hook: record_stream on padded_unsharded_grad)."""
    if not s.fsdp or s.num_gpus < 2:
        return 0
    return round(layer_grad_bytes * (2 - s.kept_grad_share))


def zero3_quantized_init_bytes(shape: ModelShape, s: TrainingSettings, trainable: Trainable,
                               weight_b: int) -> tuple[int, int]:
    """DeepSpeed ZeRO-3 on a quantized base (bitsandbytes, GPTQ, AWQ) holds the whole model on
    every GPU before it partitions it: (the base in its storage format, the adapters), or (0, 0).
    transformers builds the model under deepspeed.zero.Init only when it is not quantized
    (modeling_utils.py from_pretrained: `if is_deepspeed_zero3_enabled() and not is_quantized:`,
    the same test in v4.40.1, v4.46.1 and v4.53.2); a quantized one is loaded whole, its 4-bit
    parameters moved to the CPU (_load_state_dict_into_meta_model, v4.40.1) or, with
    LLaMA-Factory's low_cpu_mem_usage=False under ZeRO-3 (model/patcher.py at v0.7.1), put on the
    GPU by the quantizer's device_map {"": current_device} (quantizer_bnb_4bit.update_device_map).
    No parameter then carries a ds_id, so DeepSpeedEngine._configure_distributed_model casts the
    module to the 16-bit training dtype and calls `self.module.to(self.device)` (engine.py,
    `if not (self.dont_change_device or is_zero_init_model)`: the same lines at DeepSpeed v0.12.6,
    v0.14.2, v0.15.4 and v0.16.8; accelerate does not pass dont_change_device) before the ZeRO-3
    optimizer partitions the parameters (parameter_offload.py _convert_to_zero_parameters ->
    Init(module=...)). Logged: bitsandbytes#1249 / peft#1844 (transformers 4.41.1: "when run
    trainer.train() the parameters fully loaded to each GPU then sharded"); axolotl#1717 (70B
    QLoRA on 4x RTX 3090 under ZeRO-3 or FSDP: OOM; "deepspeed zero3 just doesn't shard the
    model if it's loaded in 4-bit?"; on 4x 48 GB "it settles out at around 10GB/GPU during
    training, it for some reason has a large requirement to load the model").
    FSDP is not concerned (accelerate shards it from rank 0's CPU copy), nor one GPU (the model
    stays whole anyway)."""
    if s.zero_stage != 3 or s.fsdp or s.num_gpus < 2 or not base_format(shape, s).is_quantized:
        return 0, 0
    fmt = base_format(shape, s)
    # DeepSpeed's module.bfloat16()/half() has undone prepare_model_for_kbit_training's fp32
    # upcast by then: the format's own 16-bit parts, and the adapters in the training dtype
    whole = weight_bytes(shape, fmt)
    return whole + dynamic_checkpoint_extra(shape, s, whole), trainable.params * weight_b


def static_memory(shape: ModelShape, s: TrainingSettings, trainable: Trainable,
                  c: TrainingConstants) -> StaticMemory:
    n = s.num_gpus
    params = trainable.params
    weight_b = 4 if s.precision == "fp32" else 2
    grad_b = weight_b
    master_b = 4 if s.precision == "mixed" else 0  # the fp32 master copy (ZeRO paper sec. 3.1)
    states = optimizer_state_bytes(trainable.tensors, s, c) + master_b * params
    step_tmp = optimizer_step_temporary(trainable.tensors, s, c)
    # ZeRO stage k partitions: 1 optimizer states, 2 + gradients, 3 + parameters
    # (Rajbhandari et al. 2020, sec. 5); FSDP FULL_SHARD is stage 3.
    states_shards = n if s.zero_stage >= 1 else 1
    grad_shards = n if s.zero_stage >= 2 else 1
    param_shards = n if s.zero_stage >= 3 else 1
    frozen = _shard(trainable.frozen_bytes, param_shards)
    # DPO's or KTO's reference model without PEFT: every weight again, frozen, in the training
    # precision
    reference = _shard(shape.param_count() * weight_b, param_shards) if s.reference_copy else 0
    frozen += reference
    train_w = _shard(params * weight_b, param_shards)
    grads = _shard(params * grad_b, grad_shards)
    opt = _shard(states, states_shards)
    tmp = _shard(step_tmp, states_shards)
    if s.zero_stage == 3 and not s.fsdp and s.offload == "none":
        tmp = _zero_step(tmp, params / n, weight_b if master_b else 0, ZERO3_SUB_GROUP_ELEMENTS,
                         keeps_16bit_grads=True)
    elif s.zero_stage in (1, 2) and s.offload == "none":
        tmp = _zero_step(tmp, params / n, weight_b if master_b else 0, params,
                         keeps_16bit_grads=False)
    buckets = zero_bucket_bytes(s, grad_b)
    host = 0
    if s.offload in ("optimizer", "params"):
        # ZeRO-Offload keeps fp32 master, states, gradients and the step on the CPU
        # (Ren et al. 2021, sec. 4.1)
        host += opt + grads
        opt, grads, tmp = 0, 0, 0
    if s.offload == "params":
        host += frozen + train_w
        frozen, train_w = 0, 0
    gathered = root = 0
    if (s.zero_stage == 3 and n > 1) or s.offload == "params":
        everything = trainable.frozen_bytes + params * weight_b
        if s.fsdp and n > 1:
            # FSDP's root unit (embeddings, final norm and head, outside the wrapped blocks) is
            # not resharded after forward: it stays gathered until backward ends
            # (torch.distributed.fsdp _runtime_utils._post_forward skips the root)
            root = round(sum(t.elements for t in shape.global_tensors())
                         * _root_bytes_per_element(s, weight_b))
            everything -= root
        # the running block and the prefetched next one, gathered in their storage format
        gathered = round(2 * everything / shape.num_layers)
    block_params = sum(t.elements for t in trainable.tensors if t.layer is not None)
    blocks = min(s.trainable_layers, shape.num_layers) if s.method == "freeze" else shape.num_layers
    head = sum(t.elements for t in trainable.tensors
               if t.role == "lm_head" or (t.role == "embedding" and shape.tie_embeddings))
    first_grads = min(grads, _shard((block_params / blocks + head) * grad_b, grad_shards))
    largest = _shard(max((t.rows * t.cols for t in trainable.tensors), default=0) * grad_b,
                     grad_shards)
    fsdp_grads = fsdp_gradient_buffers(s, block_params / blocks * grad_b)
    init_base, init_adapters = zero3_quantized_init_bytes(shape, s, trainable, weight_b)
    paged = opt if s.optimizer.startswith("paged") else 0
    fmt = base_format(shape, s)
    what = {"lora": f"LoRA r={s.lora_rank} on {trainable.adapted_targets(s)}",
            "qlora": f"LoRA r={s.lora_rank} on {trainable.adapted_targets(s)}",
            "freeze": f"the last {s.trainable_layers} layers", "full": "every parameter"}[s.method]
    shard_note = lambda k: f" ÷ {n} GPUs" if k > 1 else ""  # noqa: E731
    upcast_note = ""
    dynamic = dynamic_checkpoint_extra(shape, s, weight_bytes(shape, fmt))
    if dynamic:
        upcast_note = (f"; Unsloth's Dynamic 4-bit checkpoint keeps some modules 16-bit: "
                       f"+{format_bytes(dynamic)}, its published size")
    if s.upcast_unquantized and s.method in ("lora", "qlora"):
        upcast_note += ("; then what is not quantized made fp32, embeddings and head cast back"
                       if s.embeddings_16bit else "; then all that is not quantized made fp32")
    return StaticMemory(
        frozen=Part("frozen_weights", frozen,
                    f"base weights in {fmt.name} ({fmt.description}{upcast_note})"
                    f"{shard_note(param_shards)}"
                    + (f" + {s.objective.upper()} reference model {format_bytes(reference)}"
                       if reference else "")
                    + f" = {format_bytes(frozen)}" if trainable.frozen_bytes or reference
                    else "none frozen"),
        trainable=Part("trainable_weights", train_w,
                       f"{params:,} trainable params ({what}) × {weight_b} B"
                       f"{shard_note(param_shards)} = {format_bytes(train_w)}"),
        gradients=Part("gradients", grads, f"{params:,} × {grad_b} B{shard_note(grad_shards)}"
                       f"{' (on the host)' if s.offload != 'none' else ''} = "
                       f"{format_bytes(grads)}"),
        optimizer=Part("optimizer_states", opt,
                       f"{s.optimizer} states{' + fp32 master 4 B/param' if master_b else ''}"
                       f"{shard_note(states_shards)}"
                       f"{' (on the host)' if s.offload != 'none' else ''} = {format_bytes(opt)}"),
        step_temporary=Part("temporary", tmp + buckets, f"optimizer step temporaries = "
                            f"{format_bytes(tmp)}" + _buckets_how(buckets, s)),
        comm_buckets=buckets,
        gathered_layer=gathered, gathered_root=root, first_layer_gradients=first_grads,
        host_bytes=host * n, paged_bytes=paged, largest_gradient=largest,
        fsdp_grad_buffers=fsdp_grads,
        engine_init_base=init_base, engine_init_adapters=init_adapters,
    )


def phases(shape: ModelShape, s: TrainingSettings, static: StaticMemory, act: ActivationModel,
           seq: int, micro_batch: int) -> tuple[TrainingPhase, ...]:
    """The four moments of a step (see the module docstring), per GPU. Under sequence
    parallelism a GPU holds its share of the tokens; Ulysses attention gives it every key for
    its share of the heads, so the eager scores are tokens per GPU × all keys."""
    tokens = s.tokens_per_gpu(seq, micro_batch) * s.sequences_per_example
    saved = round(tokens * act.saved_per_token(s.checkpointing, seq))
    one_layer = round(tokens * (act.largest_layer + act.scores_per_key * seq)
                      + act.merged_experts_layer + act.expert_copies_layer)
    if s.checkpointing in RECOMPUTING:
        saved_how = f"checkpointed layer inputs {act.checkpoints:,.0f} B/token" + (
            " (the others offloaded to the host)" if s.checkpointing == "offloaded" else "")
        first_saved = saved + one_layer  # the recomputed block sits on top of the checkpoints
        last_saved = round(tokens * act.checkpoints / (shape.num_layers + 2)) + one_layer
    else:
        saved_how = f"{act.all_layers:,.0f} B/token over {shape.num_layers} layers"
        if s.checkpointing == "selective":
            saved_how += " (attention scores recomputed)"
        saved += round(act.merged_experts + act.expert_copies)
        first_saved = saved
        last_saved = one_layer
    if act.merged_experts:
        saved_how += (f" + LoRA-folded expert weights {format_bytes(act.merged_experts_layer)} "
                      "per MoE layer" + (" (recomputed layer)" if s.checkpointing in RECOMPUTING
                                         else ""))
    if act.expert_copies:
        saved_how += (f" + each expert's indexed weight copy {format_bytes(act.expert_copies_layer)}"
                      " per MoE layer" + (" (recomputed layer)" if s.checkpointing in RECOMPUTING
                                          else ""))
    if act.scores_per_key and act.layers_with_scores:
        saved_how += f" + eager scores {act.scores_per_key:g} B × {seq} keys per layer"
    logits = round(tokens * shape.vocab_size * act.loss_per_logit + act.head_cast)
    transient = round(tokens * act.transient_per_token(seq) + act.merged_expert_grad
                      + act.dequantized_weight + act.expert_loop_grad) + \
        static.gathered_layer + static.gathered_root + static.comm_buckets + static.fsdp_grad_buffers
    root = (f" + gathered embeddings and head {format_bytes(static.gathered_root)}"
            if static.gathered_root else "")
    gathered = (f" + gathered layer weights {format_bytes(static.gathered_layer)}"
                if static.gathered_layer else "") + root + _buckets_how(static.comm_buckets, s)
    loop_how = (f" + indexed experts' gradient temporaries {format_bytes(act.expert_loop_grad)}"
                if act.expert_loop_grad else "") + \
        (f" + FSDP unsharded gradients of this block and the previous "
         f"{format_bytes(static.fsdp_grad_buffers)}" if static.fsdp_grad_buffers else "")
    # at the loss FSDP has resharded every block (the last one after its forward); ZeRO-3
    # fetches per module and is counted with a running and a prefetched block throughout
    at_loss = static.gathered_root if static.gathered_root else static.gathered_layer
    at_loss_how = root if static.gathered_root else gathered
    accumulating = s.grad_accumulation > 1
    no_grads = static.gradients.bytes if accumulating else 0
    first_grads = static.gradients.bytes if accumulating else static.first_layer_gradients
    all_grads, all_when, step = static.gradients.bytes, "nearly all", static.step_temporary
    step_grads = static.gradients
    if s.optimizer_in_backward:  # each stepped and freed as soon as it is ready
        first_grads = min(first_grads, static.largest_gradient)
        all_grads, all_when = static.largest_gradient, "one tensor's at a time (optimizer in backward)"
        step_grads = Part("gradients", 0, "none: each was stepped and freed in backward")
        step = Part("temporary", 0, "none: the step ran in backward, one tensor at a time")

    def grads(nbytes: int, when: str) -> Part:
        return Part("gradients", nbytes, f"{when} = {format_bytes(nbytes)}")

    def acts(nbytes: int, how: str) -> Part:
        return Part("activations", nbytes, f"{tokens:,} tokens × {how} = {format_bytes(nbytes)}")

    base = (static.frozen, static.trainable)
    none = (Part("logits", 0, "freed"),)
    init: tuple[TrainingPhase, ...] = ()
    if static.engine_init_base:
        init = (TrainingPhase("engine_init", (
            Part("frozen_weights", static.engine_init_base,
                 f"the whole quantized base on every GPU before ZeRO-3 partitions it (no "
                 f"zero.Init for a quantized model; DeepSpeed moves the module to the GPU) = "
                 f"{format_bytes(static.engine_init_base)}"),
            Part("trainable_weights", static.engine_init_adapters, f"every adapter, "
                 f"unpartitioned = {format_bytes(static.engine_init_adapters)}")),),)
    return (
        *init,
        TrainingPhase("loss", (*base, grads(no_grads, "kept by gradient accumulation" if accumulating
                                    else "none yet (freed after the last step)"),
                       static.optimizer, acts(saved, saved_how),
                       Part("logits", logits, f"{tokens:,} tokens × vocab {shape.vocab_size:,} × "
                            f"{act.loss_per_logit:g} B ({_LOSS_HOW[s.loss]})"
                            + (f" + autocast's 16-bit copy of the fp32 head "
                               f"{format_bytes(act.head_cast)}" if act.head_cast else "")
                            + f" = {format_bytes(logits)}"),
                       Part("temporary", at_loss, f"none{at_loss_how}"))),
        TrainingPhase("first_layer_backward", (*base, grads(first_grads, "the output head's and one "
                                                    "block's"), static.optimizer,
                                       acts(first_saved, saved_how + " + one block in backward"),
                                       *none, Part("temporary", transient,
                                                   f"backward buffers of one block{loop_how}{gathered} = "
                                                   f"{format_bytes(transient)}"))),
        TrainingPhase("last_layer_backward", (*base, grads(all_grads, all_when),
                                      static.optimizer, acts(last_saved, "one block's saved "
                                                             "activations"),
                                      *none, Part("temporary", transient,
                                                  f"backward buffers of one block{loop_how}{gathered} = "
                                                  f"{format_bytes(transient)}"))),
        TrainingPhase("optimizer_step", (*base, step_grads, static.optimizer,
                                 Part("activations", 0, "freed"), *none, step)),
    )


