"""What a fine-tuning run is: method, precision, optimizer, LoRA targets, and the
checks on each."""

from __future__ import annotations

import math
from collections.abc import Iterable

from vramest.errors import InputError, require_text, short
from vramest.frozen import TYPE_CHECKING, frozen
from vramest.model.precisions import (
    LINEAR_ROLES,
    weight_format,
)
from vramest.units import (
    parse_positive_int,
    parse_tokens,
)

if TYPE_CHECKING:
    from typing import Any

METHODS = ("full", "freeze", "lora", "qlora")
PRECISIONS = ("mixed", "bf16", "fp32")
# "adamw-fused": torch.optim.AdamW(fused=True) (torchtune's configs, Trainer optim
# "adamw_torch_fused"): the same states, updated in place by one kernel (torch/optim/adamw.py
# _fused_adamw -> torch._fused_adamw_), so no step temporaries.
OPTIMIZERS = ("adamw", "adamw-fused", "adamw-8bit", "paged-adamw", "paged-adamw-8bit", "sgd",
              "sgd-momentum", "adafactor")
# transformers' TrainingArguments.optim names for them (trainer_utils.py OptimizerNames), as
# LLaMA-Factory, axolotl and TRL configs pass them
OPTIMIZER_NAMES = {"adamw_torch": "adamw", "adamw_hf": "adamw", "adamw_torch_fused": "adamw-fused",
                   "adamw_bnb_8bit": "adamw-8bit", "paged_adamw_32bit": "paged-adamw"}
# the trainers' own true/false for gradient checkpointing
CHECKPOINTING_WORDS = {"true": "full", "false": "none"}


def optimizer_name(value: object) -> object:
    """An optimizer as the trainers spell it (adamw_torch, paged_adamw_8bit) in vramest's
    spelling; anything else unchanged, for the check that names what is accepted."""
    if not isinstance(value, str):
        return value
    key = value.strip().lower()
    return OPTIMIZER_NAMES.get(key, key.replace("_", "-"))


def checkpointing_name(value: object) -> object:
    """--grad-checkpointing as the trainers write it (true/false) in vramest's words."""
    if not isinstance(value, str):
        return value
    return CHECKPOINTING_WORDS.get(value.strip().lower(), value)
# "offloaded": Unsloth's gradient checkpointing, which moves each checkpointed layer input to
# host memory in forward and back one at a time in backward (unsloth_zoo
# gradient_checkpointing.py, Unsloth_Offloaded_Gradient_Checkpointer: hidden_states.to("cpu",
# non_blocking=True) in forward, .to(device) before the recompute in backward)
CHECKPOINTING = ("none", "full", "selective", "offloaded")
RECOMPUTING = ("full", "offloaded")  # modes that keep only layer inputs and recompute each layer
# "dpo": TRL's DPOTrainer runs chosen and rejected completions as one batch of twice the
# sequences (trl/trainer/dpo_trainer.py, concatenated_forward) and a reference model: the same
# weights with the adapter disabled under PEFT (null_ref_context), else a second frozen copy
# (replicated on every rank unless ZeRO-3 shards it, _prepare_deepspeed).
# "orpo": ORPOTrainer concatenates chosen and rejected the same way and has no reference model
# (trl/trainer/orpo_trainer.py: the odds ratio comes from the policy's own log-probabilities).
# "kto": KTOTrainer takes unpaired completions, one sequence each, and a reference model as DPO
# does; its KL term's completions go through policy and reference under torch.no_grad
# (trl/trainer/kto_trainer.py, forward: KL_logits), so they keep no activations for backward.
OBJECTIVES = ("sft", "dpo", "orpo", "kto")
BITSANDBYTES_DEFAULT = (0, 49, 0)  # a recent release
# DeepSpeed's default reduce_bucket_size and allgather_bucket_size, 5e8 elements
# (deepspeedai/DeepSpeed@edaa722 deepspeed/runtime/zero/config.py: Field(pp_int(5e8)))
ZERO_BUCKET_ELEMENTS = 500_000_000
BNB_FREES_INPUTS_FROM = (0, 43, 2)
# Unsloth's matmul_lora added the LoRA product out of place, a temporary the size of the base
# matmul's output (`out += (X @ A.to(dtype)) @ (s * B.to(dtype))` in unsloth@74f7968
# kernels/fast_lora.py, 2024-03, and unsloth@d9ed4be kernels/utils.py, 2024-12), until
# unsloth@4f16602 (2025-03-01) made it `out.addmm_(XA, B.to(dtype), alpha = s)`, in place.
# Releases are year.month.
UNSLOTH_IN_PLACE_LORA_FROM = (2025, 3)
UNSLOTH_DEFAULT = (2025, 10)  # a recent release
# torch's AdamW with foreach left unset ran one tensor at a time before 2.0 (torch 1.13
# torch/optim/adamw.py adamw(): "if foreach is None: ... foreach = False"); 2.0 made the
# foreach path the default on CUDA (_default_to_fused_or_foreach). LLaMA-Factory #1221's
# traceback (2023-10) is the single-tensor body: `denom = (exp_avg_sq.sqrt() /
# bias_correction2_sqrt).add_(eps)`.
TORCH_FOREACH_ADAMW_FROM = (2, 0)
TORCH_DEFAULT = (2, 13)  # a recent release (the one read: torch 2.13.0 torch/optim/adam.py)
_PAIRED = ("dpo", "orpo")  # chosen + rejected per example
_WITH_REFERENCE = ("dpo", "kto")
# "fused": Unsloth's cross-entropy kernel keeps the 16-bit logits and an fp32 logsumexp per row,
# and its backward writes the gradient into the logits buffer and returns it
# (unsloth/kernels/cross_entropy_loss.py, Fast_CrossEntropyLoss); the model still returns the
# 16-bit logits, which accelerate copies to fp32 under mixed precision (activations.py).
# "chunked": torchtune's CEWithChunkedOutputLoss as its recipes run it, compute_cross_entropy
# compiled (the class docstring's advice; compile=True in the README's memory table): the head
# runs per chunk of tokens, the 16-bit logits of every chunk stay alive and the compiled upcast
# and cross-entropy keep no fp32 copy; backward makes one chunk's gradient at a time
# (torchtune@1814feb modules/loss/ce_chunked_output_loss.py, num_output_chunks=8;
# modules/transformer.py chunked_output). Llama-3.2-3B QLoRA at 2 x 4096 tokens peaks at
# 4.6 GiB (README.md): the NF4 base and 16-bit logits, no fp32 copy of them.
# "cut": Apple's Cut Cross-Entropy (Unsloth since 2024.12, "Unsloth (+ Apple CCE)"): logits are
# computed block by block in on-chip memory and never stored; only a logsumexp per token
# (Wijmans et al. 2024, arXiv 2411.09009, sec. 4; https://unsloth.ai/blog/llama3-3).
# "half": a model's own cross-entropy taken on its 16-bit logits under DeepSpeed's fp16/bf16
# engine, which runs the module in 16 bit with no autocast (deepspeedai/DeepSpeed@7122362,
# 2023-11, deepspeed/runtime/engine.py _configure_distributed_model: self.module.half(), or
# .bfloat16() under bf16); code that never calls .float() on the logits then keeps every loss
# buffer in 16 bit. Qwen (v1) modeling_qwen.py: shift_logits = lm_logits[..., :-1, :]
# .contiguous(); CrossEntropyLoss()(shift_logits, ...). transformers' own models upcast
# (ForCausalLMLoss: logits.float()) and stay "standard".
LOSSES = ("standard", "fused", "chunked", "cut", "half")
# "unsloth": Unsloth's hand-written autograd for LoRA layers (unsloth/kernels/fast_lora.py,
# fast_rms_layernorm in rms_layernorm.py): LoRA_MLP saves X, e (gate) and g (up) and recomputes
# the SwiGLU product in backward, writing its derivatives into e and g in place
# (swiglu_DWf_DW_dfg_kernel); LoRA_QKV and LoRA_W save their input once for base and adapter;
# the RMSNorm keeps its 16-bit input and one fp32 rstd per row.
KERNELS = ("torch", "unsloth")
ATTENTIONS = ("sdpa", "flash", "eager")
OFFLOADS = ("none", "optimizer", "params")
# How a model's code holds routed experts: one fused 3-D parameter per projection
# (transformers >= 5) or an nn.Linear per expert (transformers 4, most other frameworks).
# "indexed": fused 3-D parameters that the model's own training branch runs one expert at a
# time, indexing each expert's slice with a one-element index tensor (transformers v4.55.0
# models/gpt_oss/modeling_gpt_oss.py GptOssExperts.forward, `if self.training:` loop:
# `current_state @ self.gate_up_proj[expert_idx]`); transformers 5 runs the same stacks through
# grouped_mm by default (modeling_utils.get_correct_experts_implementation), as "fused".
EXPERT_LAYOUTS = ("fused", "separate", "indexed")
# What becomes fp32 of a quantized base: nothing; all that bitsandbytes left 16-bit (PEFT's
# prepare_model_for_kbit_training); or that, less the embeddings and head (TRL's SFTTrainer, bf16)
UPCAST_SCOPES = ("none", "peft", "trl")
# Which pre-quantized checkpoint a 4-bit base loads: "plain" (every linear layer NF4) or
# "unsloth-dynamic", Unsloth's "unsloth/<model>-unsloth-bnb-4bit", which keeps some modules 16-bit
# (its config.json quantization_config.llm_int8_skip_modules); its weight is the published size
# of that checkpoint where vramest knows it (frameworks.UNSLOTH_DYNAMIC_CHECKPOINT_BYTES).
BASE_CHECKPOINTS = ("plain", "unsloth-dynamic")
PART_NAMES = ("frozen_weights", "trainable_weights", "gradients", "optimizer_states",
              "activations", "logits", "temporary")

# LoRA targets: short names (and Hugging Face module names) → tensor roles of vramest.model.shapes.
_TARGET_ROLES: dict[str, frozenset[str]] = {
    "q": frozenset({"attn_q", "attn_q_a", "attn_q_b"}),
    "k": frozenset({"attn_k"}),
    "v": frozenset({"attn_v"}),
    "kv": frozenset({"attn_kv_a", "attn_kv_b"}),
    "qkv": frozenset({"attn_qkv"}),
    "o": frozenset({"attn_o"}),
    "gate": frozenset({"ffn_gate", "expert_gate", "shared_gate"}),
    "up": frozenset({"ffn_up", "expert_up", "shared_up"}),
    "down": frozenset({"ffn_down", "expert_down", "shared_down"}),
    "router": frozenset({"router"}),
}
_TARGET_ALIASES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "out_proj": "o",
                   "output_proj": "o", "gate_proj": "gate", "up_proj": "up", "down_proj": "down",
                   "w1": "gate", "w3": "up", "w2": "down", "c_attn": "qkv", "query_key_value": "qkv"}
_ATTENTION_TARGETS = ("q", "k", "v", "kv", "qkv", "o")
_MLP_TARGETS = ("gate", "up", "down")
TARGET_PRESETS: dict[str, tuple[str, ...]] = {
    # PEFT's all-linear: every block linear, an MoE router included
    "all-linear": _ATTENTION_TARGETS + _MLP_TARGETS + ("router",),
    "attention": _ATTENTION_TARGETS,
    "qv": ("q", "v", "qkv"),
    "mlp": _MLP_TARGETS,
}
_ATTN_INPUT_ROLES = frozenset({"attn_q", "attn_k", "attn_v", "attn_qkv", "attn_q_a", "attn_kv_a"})
_MLP_INPUT_ROLES = frozenset({"ffn_gate", "ffn_up", "expert_gate", "expert_up", "shared_gate",
                              "shared_up", "router"})
_DOWN_ROLES = frozenset({"ffn_down", "expert_down", "shared_down"})
_MATMUL_ROLES = LINEAR_ROLES | {"lm_head", "router"}
_EMBEDDING_ROLES = frozenset({"embedding", "position_embedding", "lm_head"})

_MAX_SEARCH_SEQ = 1 << 22
_MAX_SEARCH_BATCH = 1 << 14


@frozen
class TrainingSettings:
    method: str = "full"
    precision: str = "mixed"
    optimizer: str = "adamw"
    seq: int = 2048
    micro_batch: int = 1
    grad_accumulation: int = 1
    # torchtune's optimizer_in_bwd: one optimizer per parameter, stepped and zeroed by a
    # post-accumulate-grad hook as soon as that parameter's gradient is ready
    # (pytorch/torchtune@1814feb torchtune/training/memory.py register_optim_in_bwd_hooks:
    # optim_dict[param].step(); optim_dict[param].zero_grad()), so gradients never pile up
    optimizer_in_backward: bool = False
    checkpointing: str = "none"
    attention: str = "sdpa"
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = TARGET_PRESETS["all-linear"]
    lora_dropout: bool = False
    base_dtype: str = "bf16"
    upcast_unquantized: bool = False  # PEFT prepare_model_for_kbit_training: the rest in fp32
    # TRL's SFTTrainer (bf16) then casts the embeddings and the output head back to 16 bit
    # and keeps the norms fp32 (trl.trainer.utils.peft_module_casting_to_bf16)
    embeddings_16bit: bool = False
    base_checkpoint: str = "plain"  # BASE_CHECKPOINTS
    trainable_layers: int = 2
    zero_stage: int = 0
    # DeepSpeed's overlap_comm under ZeRO-1/2 (reduce gradients while backward runs); off by
    # default for those stages (deepspeed/runtime/zero/config.py)
    overlap_comm: bool = False
    # DeepSpeed ZeRO-1/2 reduce_bucket_size, in elements: each gradient bucket backward fills
    # (deepspeed/runtime/zero/config.py default 5e8; a ds_config may set its own, e.g. QwenLM/Qwen
    # finetune/ds_config_zero2.json 2e8)
    reduce_bucket_size: int = ZERO_BUCKET_ELEMENTS
    fsdp: bool = False  # stage 3 as PyTorch FSDP runs it (the root unit stays gathered)
    num_gpus: int = 1
    offload: str = "none"
    moe_experts: str = "fused"
    # DeepSpeed Ulysses / context parallelism: each sequence's tokens split over this many GPUs
    sequence_parallel: int = 1
    objective: str = "sft"
    loss: str = "standard"
    kernels: str = "torch"
    # the bitsandbytes release a 4-bit base runs on: before 0.43.2 MatMul4Bit kept its input
    # for backward (ctx.tensors = (A, B)); PR #1270 (2024-07-16, "fix QLoRA mem bug: delete
    # useless buffered activation") keeps only the weight (ctx.tensors = (None, B))
    bitsandbytes: tuple[int, ...] = BITSANDBYTES_DEFAULT
    unsloth: tuple[int, ...] = UNSLOTH_DEFAULT  # the Unsloth release of --kernels unsloth
    torch: tuple[int, ...] = TORCH_DEFAULT  # the PyTorch release (its optimizers' default path)

    @property
    def bnb_keeps_inputs(self) -> bool:
        return self.bitsandbytes < BNB_FREES_INPUTS_FROM

    @property
    def kept_grad_share(self) -> float:
        """The share of a reduce-scattered gradient each GPU keeps: 1/n, none when offloaded."""
        return 0.0 if self.offload != "none" else 1 / self.num_gpus

    @property
    def adamw_single_tensor(self) -> bool:
        """Whether torch's AdamW (foreach unset) steps one tensor at a time."""
        return self.torch < TORCH_FOREACH_ADAMW_FROM

    @property
    def unsloth_lora_temporary(self) -> bool:
        """Whether Unsloth's LoRA matmuls add the adapter's product through a temporary."""
        return self.kernels == "unsloth" and self.unsloth < UNSLOTH_IN_PLACE_LORA_FROM

    @property
    def sequences_per_example(self) -> int:
        """DPO and ORPO forward a chosen and a rejected completion for every example."""
        return 2 if self.objective in _PAIRED else 1

    @property
    def reference_copy(self) -> bool:
        """Whether DPO or KTO holds a second frozen model (not under PEFT, which disables the
        adapter for the reference pass)."""
        return self.objective in _WITH_REFERENCE and self.method not in ("lora", "qlora")

    @property
    def upcast_scope(self) -> str:
        if not self.upcast_unquantized:
            return "none"
        return "trl" if self.embeddings_16bit else "peft"

    @property
    def fused_experts(self) -> bool:
        return self.moe_experts in ("fused", "indexed")

    @property
    def compute_bytes(self) -> int:
        return 4 if self.precision == "fp32" else 2

    @property
    def tokens(self) -> int:
        return self.seq * self.micro_batch

    def tokens_per_gpu(self, seq: int, micro_batch: int) -> int:
        """The tokens one GPU holds: its share of every sequence under sequence parallelism."""
        return math.ceil(seq / self.sequence_parallel) * micro_batch

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method, "precision": self.precision, "optimizer": self.optimizer,
            "seq": self.seq, "micro_batch": self.micro_batch,
            "grad_accumulation": self.grad_accumulation, "grad_checkpointing": self.checkpointing,
            "optimizer_in_backward": self.optimizer_in_backward,
            "attention": self.attention, "zero_stage": self.zero_stage,
            "overlap_comm": self.overlap_comm, "reduce_bucket_size": self.reduce_bucket_size,
            "num_gpus": self.num_gpus, "sequence_parallel": self.sequence_parallel,
            "objective": self.objective, "loss": self.loss, "kernels": self.kernels,
            "bitsandbytes": ".".join(map(str, self.bitsandbytes)),
            "unsloth": ".".join(map(str, self.unsloth)),
            "torch": ".".join(map(str, self.torch)),
            "offload": self.offload, "base_dtype": self.base_dtype,
        }
        if self.method in ("lora", "qlora"):
            out.update(lora_rank=self.lora_rank, lora_targets=list(self.lora_targets),
                       lora_dropout=self.lora_dropout, upcast_unquantized=self.upcast_unquantized,
                       upcast_scope=self.upcast_scope)
            if self.base_checkpoint != "plain":
                out["base_checkpoint"] = self.base_checkpoint
        if self.method == "freeze":
            out["trainable_layers"] = self.trainable_layers
        out["moe_experts"] = self.moe_experts
        return out


def _choice(value: object, accepted: Iterable[str], flag: str) -> str:
    key = value.strip().lower() if isinstance(value, str) else ""  # a non-text choice matches none
    accepted = tuple(accepted)
    if key not in accepted:
        raise InputError(f"Unknown {flag} {short(value)}; accepted: {', '.join(accepted)}.")
    return key


def parse_targets(text: str | Iterable[str]) -> tuple[str, ...]:
    """'all-linear', 'attention', 'qv', 'mlp', or a list such as 'q,v' or 'q_proj,v_proj'."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    names: list[str] = []
    for item in filter(None, items):
        if item in TARGET_PRESETS:
            names.extend(TARGET_PRESETS[item])
            continue
        name = _TARGET_ALIASES.get(item, item)
        if name not in _TARGET_ROLES:
            raise InputError(f"Unknown --lora-targets entry {short(item)}; accepted: "
                             f"{', '.join(TARGET_PRESETS)} or a list of "
                             f"{', '.join(_TARGET_ROLES)} (or q_proj, v_proj, ...).")
        names.append(name)
    if not names:
        raise InputError("--lora-targets is empty; give all-linear, attention, qv, mlp or a list "
                         "such as q,v.")
    return tuple(dict.fromkeys(names))


def _checkpointing(value: bool | str | None) -> str:
    if value is None or value is False:
        return "none"
    if value is True:
        return "full"
    return _choice(checkpointing_name(value), CHECKPOINTING, "--grad-checkpointing")


def _check_kernels(value: str, method: str) -> str:
    adapters = method in ("lora", "qlora")
    kernels = _choice(value, KERNELS, "--kernels")
    if kernels == "unsloth" and not adapters:
        raise InputError(f"--kernels unsloth models Unsloth's LoRA kernels; --method {method} has "
                         "no adapters (use --method lora or qlora, or --kernels torch).")
    return kernels


def make_settings(*, method: str = "full", precision: str | None = None,
                  optimizer: str = "adamw", seq: str | int = 2048, micro_batch: str | int = 1,
                  grad_accumulation: str | int = 1, grad_checkpointing: bool | str | None = False,
                  attention: str = "sdpa", lora_rank: str | int = 16,
                  lora_targets: str | Iterable[str] = "all-linear", lora_dropout: bool = False,
                  base_dtype: str | None = None, upcast_unquantized: bool | str = False,
                  base_checkpoint: str = "plain",
                  trainable_layers: str | int = 2,
                  zero: str | int = 0, fsdp: bool = False, num_gpus: str | int = 1,
                  offload: str | None = None, moe_experts: str = "fused",
                  sequence_parallel: str | int = 1, objective: str = "sft",
                  loss: str = "standard", kernels: str = "torch", unsloth: str | None = None,
                  bitsandbytes: str | None = None, torch: str | None = None,
                  overlap_comm: bool = False,
                  reduce_bucket_size: str | int | None = None,
                  optimizer_in_backward: bool = False) -> TrainingSettings:
    """Validate and normalise the inputs; every bad value is one InputError sentence."""
    require_text(method=method, precision=precision, optimizer=optimizer, attention=attention,
                 base_dtype=base_dtype, offload=offload, moe_experts=moe_experts)
    if not isinstance(lora_targets, str) and not (
            isinstance(lora_targets, (list, tuple)) and all(isinstance(t, str) for t in lora_targets)):
        raise InputError("lora_targets must be text such as 'all-linear' or 'q,v', or a list of "
                         f"names, not {type(lora_targets).__name__}.")
    method = _choice(method, METHODS, "--method")
    if isinstance(upcast_unquantized, str):
        upcast = _choice(upcast_unquantized, UPCAST_SCOPES, "--upcast-unquantized")
    else:
        upcast = "peft" if upcast_unquantized else "none"
    precision = _choice(precision or "mixed", PRECISIONS, "--precision")
    optimizer = _choice(optimizer_name(optimizer), OPTIMIZERS, "--optimizer")
    stage = int(_choice(str(zero), ("0", "1", "2", "3"), "--zero"))
    if fsdp:
        if stage not in (0, 3):
            raise InputError(f"--fsdp shards like ZeRO stage 3; it cannot be combined with --zero "
                             f"{stage}.")
        stage = 3
    if not isinstance(overlap_comm, bool):
        raise InputError("overlap_comm must be true or false.")
    if overlap_comm and stage not in (1, 2):
        raise InputError("--overlap-comm is DeepSpeed's ZeRO-1/2 setting; add --zero 1 or 2.")
    accumulation = parse_positive_int(grad_accumulation, what="--grad-accumulation")
    if not isinstance(optimizer_in_backward, bool):
        raise InputError("optimizer_in_backward must be true or false.")
    if optimizer_in_backward and accumulation > 1:
        # torchtune's recipes refuse it too (full_finetune_single_device.py: "Gradient
        # accumulation is not supported with optimizer in bwd")
        raise InputError("--optimizer-in-backward steps each parameter as its gradient is ready, "
                         "so it cannot accumulate gradients; use --grad-accumulation 1.")
    buckets = ZERO_BUCKET_ELEMENTS
    if reduce_bucket_size is not None:
        if stage not in (1, 2):
            raise InputError("--reduce-bucket-size is DeepSpeed's ZeRO-1/2 setting; add --zero 1 or 2.")
        buckets = _elements(reduce_bucket_size, "--reduce-bucket-size")
    offload_kind = _choice(offload or "none", OFFLOADS, "--offload")
    if offload_kind != "none" and stage == 0:
        raise InputError("--offload needs sharding: add --zero 1, 2 or 3 (or --fsdp).")
    if offload_kind == "params" and stage != 3:
        raise InputError("--offload params needs --zero 3 or --fsdp (only stage 3 partitions the "
                         "parameters).")
    gpus = parse_positive_int(num_gpus, what="--num-gpus", maximum=100_000)
    sp = parse_positive_int(sequence_parallel, what="--sequence-parallel", maximum=100_000)
    if gpus % sp:
        raise InputError(f"--sequence-parallel {sp} must divide --num-gpus {gpus}: each group of "
                         f"{sp} GPUs splits a sequence.")
    if base_dtype is None:
        base_dtype = "nf4" if method == "qlora" else ("fp32" if precision == "fp32" else "bf16")
    fmt = weight_format(base_dtype)
    if method == "qlora" and not fmt.is_quantized:
        raise InputError(f"--method qlora trains on a quantized base; --base-dtype {base_dtype} is "
                         "not quantized (use nf4, bnb-nf4-dq, int8 or gptq-int4, or --method lora).")
    if upcast != "none" and not fmt.is_quantized:
        raise InputError(f"--upcast-unquantized prepares a quantized base; this one is "
                         f"{fmt.name} (use --method qlora or a quantized --base-dtype).")
    checkpoint = _choice(base_checkpoint, BASE_CHECKPOINTS, "--base-checkpoint")
    if checkpoint != "plain" and fmt.name not in ("nf4", "bnb-nf4-dq"):
        raise InputError(f"--base-checkpoint {checkpoint} is a bitsandbytes NF4 checkpoint; "
                         f"--base-dtype {fmt.name} is not (use bnb-nf4-dq, or --base-checkpoint "
                         "plain).")
    return TrainingSettings(
        method=method, precision=precision, optimizer=optimizer,
        seq=parse_tokens(seq, what="--seq"),
        micro_batch=parse_positive_int(micro_batch, what="--micro-batch"),
        grad_accumulation=accumulation, optimizer_in_backward=optimizer_in_backward,
        checkpointing=_checkpointing(grad_checkpointing),
        objective=_choice(objective, OBJECTIVES, "--objective"),
        loss=_choice(loss, LOSSES, "--loss"),
        kernels=_check_kernels(kernels, method),
        bitsandbytes=_release(bitsandbytes, "--bitsandbytes"),
        unsloth=_release(unsloth, "--unsloth", UNSLOTH_DEFAULT, "2024.12"),
        torch=_release(torch, "--torch", TORCH_DEFAULT, "2.1"),
        attention=_choice(attention, ATTENTIONS, "--attn"),
        lora_rank=parse_positive_int(lora_rank, what="--lora-rank", maximum=65536),
        lora_targets=parse_targets(lora_targets), lora_dropout=bool(lora_dropout),
        base_dtype=fmt.name, upcast_unquantized=upcast != "none" and fmt.is_quantized,
        embeddings_16bit=upcast == "trl" and fmt.is_quantized, base_checkpoint=checkpoint,
        trainable_layers=parse_positive_int(trainable_layers, what="--trainable-layers",
                                            maximum=10_000),
        zero_stage=stage, overlap_comm=overlap_comm, reduce_bucket_size=buckets, fsdp=bool(fsdp),
        num_gpus=gpus,
        sequence_parallel=sp,
        offload=offload_kind, moe_experts=_choice(moe_experts, EXPERT_LAYOUTS, "--moe-experts"),
    )


def _elements(value: str | int, flag: str) -> int:
    """A count as a DeepSpeed config writes it: 200000000, 2e8 or 5e8."""
    text = str(value).strip().lower()
    try:
        number = float(text) if len(text) <= 24 else math.nan
    except ValueError:
        number = math.nan
    if not (1 <= number <= 1e12) or number != int(number):
        raise InputError(f"{flag} {short(value)} is not a count of elements; give one such as "
                         "200000000 or 2e8.")
    return int(number)


def _release(text: str | None, flag: str, default: tuple[int, ...] = BITSANDBYTES_DEFAULT,
             example: str = "0.43.1") -> tuple[int, ...]:
    if text is None:
        return default
    parts = str(text).strip().lower().removeprefix("v").split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() and len(p) <= 4 for p in parts):
        raise InputError(f"{flag} {short(text)} is not a release; give one such as {example}.")
    return tuple(int(p) for p in parts)
