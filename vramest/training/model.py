"""Training and fine-tuning memory per GPU, fit and throughput, counted from the model's tensors.

The peak is the largest of four moments of a step, each the sum of what is alive then:
- `loss`: backward through cross-entropy: weights, optimizer states (kept from the last step),
  the activations saved for backward and the fp32 loss buffers over the logits;
- `first_layer_backward`: the loss buffers are freed; the last block (recomputed under
  checkpointing) runs backward with every saved activation still alive and few gradients;
- `last_layer_backward`: the first block runs backward with nearly all gradients produced;
- `optimizer_step`: weights, all gradients, optimizer states and the step's temporaries.
Gradients are set to None after each step (torch's default since 2.0), so they only pile up
during backward, unless gradient accumulation keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from vramest.errors import InputError, require_text
from vramest.hardware.database import Device, load_hardware
from vramest.inference.memory import Part, ffn_width, weight_bytes
from vramest.inference.placement import ecc_note, largest_fitting, parse_reserve
from vramest.model.precisions import (
    BITSANDBYTES_FORMATS,
    EXPERT_ROLES,
    LINEAR_ROLES,
    WeightFormat,
    weight_format,
)
from vramest.model.resolve import ModelInfo, resolve_model
from vramest.model.shapes import ModelShape, TensorSpec
from vramest.training.constants import TRAINING_DEFAULTS, TRAINING_SOURCES, TrainingConstants
from vramest.units import (
    format_bytes,
    parse_bytes,
    parse_params,
    parse_positive_int,
    parse_tokens,
)

METHODS = ("full", "freeze", "lora", "qlora")
PRECISIONS = ("mixed", "bf16", "fp32")
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw", "paged-adamw-8bit", "sgd", "sgd-momentum",
              "adafactor")
CHECKPOINTING = ("none", "full", "selective")
ATTENTIONS = ("sdpa", "flash", "eager")
OFFLOADS = ("none", "optimizer", "params")
# How a model's code holds routed experts: one fused 3-D parameter per projection
# (transformers >= 5) or an nn.Linear per expert (transformers 4, most other frameworks).
EXPERT_LAYOUTS = ("fused", "separate")
# What becomes fp32 of a quantized base: nothing; all that bitsandbytes left 16-bit (PEFT's
# prepare_model_for_kbit_training); or that, less the embeddings and head (TRL's SFTTrainer, bf16)
UPCAST_SCOPES = ("none", "peft", "trl")
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


# --- settings --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingSettings:
    method: str = "full"
    precision: str = "mixed"
    optimizer: str = "adamw"
    seq: int = 2048
    micro_batch: int = 1
    grad_accumulation: int = 1
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
    trainable_layers: int = 2
    zero_stage: int = 0
    fsdp: bool = False  # stage 3 as PyTorch FSDP runs it (the root unit stays gathered)
    num_gpus: int = 1
    offload: str = "none"
    moe_experts: str = "fused"
    # DeepSpeed Ulysses / context parallelism: each sequence's tokens split over this many GPUs
    sequence_parallel: int = 1

    @property
    def upcast_scope(self) -> str:
        if not self.upcast_unquantized:
            return "none"
        return "trl" if self.embeddings_16bit else "peft"

    @property
    def fused_experts(self) -> bool:
        return self.moe_experts == "fused"

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
            "attention": self.attention, "zero_stage": self.zero_stage,
            "num_gpus": self.num_gpus, "sequence_parallel": self.sequence_parallel,
            "offload": self.offload, "base_dtype": self.base_dtype,
        }
        if self.method in ("lora", "qlora"):
            out.update(lora_rank=self.lora_rank, lora_targets=list(self.lora_targets),
                       lora_dropout=self.lora_dropout, upcast_unquantized=self.upcast_unquantized,
                       upcast_scope=self.upcast_scope)
        if self.method == "freeze":
            out["trainable_layers"] = self.trainable_layers
        out["moe_experts"] = self.moe_experts
        return out


def _choice(value: str, accepted: Iterable[str], flag: str) -> str:
    key = str(value).strip().lower()
    accepted = tuple(accepted)
    if key not in accepted:
        raise InputError(f"Unknown {flag} {value!r}; accepted: {', '.join(accepted)}.")
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
            raise InputError(f"Unknown --lora-targets entry {item!r}; accepted: "
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
    return _choice(value, CHECKPOINTING, "--grad-checkpointing")


def make_settings(*, method: str = "full", precision: str | None = None,
                  optimizer: str = "adamw", seq: str | int = 2048, micro_batch: str | int = 1,
                  grad_accumulation: str | int = 1, grad_checkpointing: bool | str | None = False,
                  attention: str = "sdpa", lora_rank: str | int = 16,
                  lora_targets: str | Iterable[str] = "all-linear", lora_dropout: bool = False,
                  base_dtype: str | None = None, upcast_unquantized: bool | str = False,
                  trainable_layers: str | int = 2,
                  zero: str | int = 0, fsdp: bool = False, num_gpus: str | int = 1,
                  offload: str | None = None, moe_experts: str = "fused",
                  sequence_parallel: str | int = 1) -> TrainingSettings:
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
    optimizer = _choice(optimizer, OPTIMIZERS, "--optimizer")
    stage = int(_choice(str(zero), ("0", "1", "2", "3"), "--zero"))
    if fsdp:
        if stage not in (0, 3):
            raise InputError(f"--fsdp shards like ZeRO stage 3; it cannot be combined with --zero "
                             f"{stage}.")
        stage = 3
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
    return TrainingSettings(
        method=method, precision=precision, optimizer=optimizer,
        seq=parse_tokens(seq, what="--seq"),
        micro_batch=parse_positive_int(micro_batch, what="--micro-batch"),
        grad_accumulation=parse_positive_int(grad_accumulation, what="--grad-accumulation"),
        checkpointing=_checkpointing(grad_checkpointing),
        attention=_choice(attention, ATTENTIONS, "--attn"),
        lora_rank=parse_positive_int(lora_rank, what="--lora-rank", maximum=65536),
        lora_targets=parse_targets(lora_targets), lora_dropout=bool(lora_dropout),
        base_dtype=fmt.name, upcast_unquantized=upcast != "none" and fmt.is_quantized,
        embeddings_16bit=upcast == "trl" and fmt.is_quantized,
        trainable_layers=parse_positive_int(trainable_layers, what="--trainable-layers",
                                            maximum=10_000),
        zero_stage=stage, fsdp=bool(fsdp), num_gpus=gpus, sequence_parallel=sp,
        offload=offload_kind, moe_experts=_choice(moe_experts, EXPERT_LAYOUTS, "--moe-experts"),
    )


# --- what is trained -------------------------------------------------------------------------
@dataclass(frozen=True)
class Trainable:
    """The trainable tensors (as TensorSpecs, LoRA adapters included) and the frozen base."""

    tensors: tuple[TensorSpec, ...]
    frozen_bytes: int
    adapted_roles: frozenset[str]  # roles carrying a LoRA adapter
    trained_roles: frozenset[str]  # roles whose own weights are trained

    @property
    def params(self) -> int:
        return sum(t.elements for t in self.tensors)

    def adapted_targets(self, s: TrainingSettings) -> str:
        """The --lora-targets entries this model has (all-linear lists every name)."""
        return ", ".join(name for name in s.lora_targets
                         if _TARGET_ROLES[name] & self.adapted_roles)


def _all_tensors(shape: ModelShape) -> list[TensorSpec]:
    """Every tensor once, with layer groups expanded by count (cheap: one entry per group)."""
    out = list(shape.global_tensors())
    for layer, repeats in shape.layer_groups():
        out.extend(replace(t, count=t.count * repeats) for t in shape.layer_tensors(layer))
    return out


_FUSED_GATE_UP = frozenset({"expert_gate", "expert_up"})


def lora_tensors(shape: ModelShape, rank: int, roles: frozenset[str],
                 fused_experts: bool = True) -> list[TensorSpec]:
    """A LoRA pair per adapted matrix: A is rank × in, B is out × rank (Hu et al. 2021, eq. 3).

    Routed experts are one fused 3-D parameter per projection in transformers 5 (gate_up_proj,
    down_proj), which PEFT adapts as parameters: gate_up gets rank 2r over the concatenated
    gate and up outputs, so its B is twice a separate gate's and up's (peft ParamWrapper)."""
    out = []
    for t in _all_tensors(shape):
        if t.role in roles:
            b_rank = 2 * rank if fused_experts and t.role in _FUSED_GATE_UP else rank
            out.append(TensorSpec(f"lora_a:{t.role}", t.layer, rank, t.cols, t.count))
            out.append(TensorSpec(f"lora_b:{t.role}", t.layer, t.rows, b_rank, t.count))
    return out


def merged_expert_bytes(shape: ModelShape, layer: int, s: TrainingSettings,
                        trainable: Trainable) -> tuple[float, float]:
    """(all adapted expert stacks of one layer, the largest one): PEFT adapts a fused expert
    parameter by folding W + BA into a new full-size tensor each forward (torch.baddbmm in
    ParamWrapper's parametrization), which the grouped matmul keeps for backward; backward makes
    a gradient of the same size."""
    if not s.fused_experts:
        return 0.0, 0.0
    stacks = {t.role: t.rows * t.cols * t.count * expert_bytes_per_element(shape, s)
              for t in shape.layer_tensors(layer)
              if t.role in EXPERT_ROLES and t.role in trainable.adapted_roles}
    gate_up = sum(size for role, size in stacks.items() if role in _FUSED_GATE_UP)
    return float(sum(stacks.values())), float(max([gate_up, *stacks.values()]))


def experts_stay_16_bit(shape: ModelShape, s: TrainingSettings) -> bool:
    """bitsandbytes replaces nn.Linear modules only; transformers 5 keeps routed experts as fused
    3-D parameters, so a bitsandbytes base leaves them in 16 bit (checked by loading a Mixtral
    with BitsAndBytesConfig: gate_up_proj and down_proj stay bf16)."""
    return shape.is_moe and s.fused_experts and s.base_dtype in BITSANDBYTES_FORMATS


def base_format(shape: ModelShape, s: TrainingSettings) -> WeightFormat:
    fmt = weight_format(s.base_dtype)
    if experts_stay_16_bit(shape, s):
        fmt = replace(fmt, quantized_roles=fmt.quantized_roles - EXPERT_ROLES)
    return fmt


def expert_bytes_per_element(shape: ModelShape, s: TrainingSettings) -> int:
    """The routed experts' dtype as they are trained around: fp32 when the run is fp32, or when
    PEFT's prepare_model_for_kbit_training upcasts what bitsandbytes left in 16 bit."""
    if s.precision == "fp32" or (s.upcast_unquantized and experts_stay_16_bit(shape, s)):
        return 4
    return 2


def trainable_part_of(shape: ModelShape, s: TrainingSettings) -> Trainable:
    if s.method in ("lora", "qlora"):
        roles = frozenset().union(*(_TARGET_ROLES[name] for name in s.lora_targets))
        adapters = lora_tensors(shape, s.lora_rank, roles, s.fused_experts)
        if not adapters:
            present = sorted({t.role for t in shape.tensors() if t.role in LINEAR_ROLES})
            raise InputError(f"--lora-targets {','.join(s.lora_targets)} matches no tensor of "
                             f"{shape.name}; its linear layers are {', '.join(present)}.")
        fmt = base_format(shape, s)
        frozen = weight_bytes(shape, fmt)
        if s.upcast_unquantized:  # what the format keeps in 16 bit becomes fp32: 2 more bytes
            kept_16bit = fmt.quantized_roles | (_EMBEDDING_ROLES if s.embeddings_16bit
                                                else frozenset())
            frozen += 2 * sum(t.elements for t in _all_tensors(shape)
                              if t.role not in kept_16bit)
        return Trainable(tuple(adapters), frozen, frozenset(t.role.split(":")[1] for t in adapters),
                         frozenset())
    if s.method == "freeze":
        first = max(0, shape.num_layers - s.trainable_layers)
        trained = [t for layer in range(first, shape.num_layers) for t in shape.layer_tensors(layer)]
        trained_bytes = sum(t.elements for t in trained) * 2
        frozen = weight_bytes(shape, weight_format(s.base_dtype)) - trained_bytes
        return Trainable(tuple(trained), max(frozen, 0), frozenset(),
                         frozenset(t.role for t in trained))
    tensors = _all_tensors(shape)
    return Trainable(tuple(tensors), 0, frozenset(), frozenset(t.role for t in tensors))


# --- optimizer -------------------------------------------------------------------------------
def _state_bytes_per_element(s: TrainingSettings) -> int:
    """torch optimizers keep states in the dtype of what they update: the fp32 master under
    mixed precision, the parameter itself otherwise."""
    return 2 if s.precision == "bf16" else 4


def optimizer_state_bytes(tensors: Iterable[TensorSpec], s: TrainingSettings,
                          c: TrainingConstants) -> float:
    """Optimizer states, without the fp32 master copy."""
    sb = _state_bytes_per_element(s)
    total = 0.0
    for t in tensors:
        n = t.elements
        if s.optimizer == "adamw":
            total += 2 * sb * n  # first and second moment (Loshchilov & Hutter 2019)
        elif s.optimizer == "paged-adamw":
            total += 2 * 4 * n  # bitsandbytes 32-bit states are fp32 whatever the param dtype
        elif s.optimizer in ("adamw-8bit", "paged-adamw-8bit"):
            per_tensor = t.rows * t.cols
            if per_tensor < c.bnb_min_8bit_size:
                total += 2 * 4 * n
            else:  # 8-bit codes + an fp32 absmax per block (Dettmers et al. 2022, 8-bit optimizers)
                total += 2 * n * (1 + 4 / c.bnb_block_size)
        elif s.optimizer == "sgd-momentum":
            total += sb * n
        elif s.optimizer == "adafactor":
            # factored second moment: a row and a column vector per matrix, no first moment
            # (Shazeer & Stern 2018, alg. 4; transformers' Adafactor default beta1=None)
            factored = t.rows > 1 and t.cols > 1
            total += sb * ((t.rows + t.cols) * t.count if factored else n)
    return total


def optimizer_step_temporary(tensors: tuple[TensorSpec, ...], s: TrainingSettings,
                             c: TrainingConstants) -> float:
    """Bytes the optimizer step allocates on top of its states (unsharded)."""
    if s.optimizer == "adamw":
        return c.adamw_step_temporaries * _state_bytes_per_element(s) * \
            sum(t.elements for t in tensors)
    if s.optimizer == "adafactor":
        # transformers' Adafactor loops over tensors; for one it holds fp32 copies of the
        # gradient, the parameter and the update
        largest = max((t.rows * t.cols for t in tensors), default=0)
        return 3 * 4 * largest
    return 0.0  # SGD without weight decay updates in place; bitsandbytes fuses its update


# --- activations -----------------------------------------------------------------------------
def _attention_kv_heads(shape: ModelShape, attention: str) -> int:
    # transformers' sdpa and eager paths repeat K/V to every head before attending (repeat_kv);
    # flash-attention reads the grouped heads directly
    return shape.num_kv_heads if attention == "flash" else shape.num_heads


def stream_bytes(s: TrainingSettings) -> int:
    """Bytes per element of the hidden states between matmuls. PEFT's
    prepare_model_for_kbit_training makes the embeddings and norms fp32, and bitsandbytes
    returns each quantized linear's output in its input's dtype, so the residual stream and the
    MLP's elementwise tensors stay fp32; attention and the adapters still run in 16 bit under
    autocast (bitsandbytes Linear4bit.forward, LlamaRMSNorm). With TRL's 16-bit embeddings the
    fp32 norms alone do it: the first MLP output is fp32 and every residual sum after it."""
    return 4 if s.upcast_unquantized else s.compute_bytes


def layer_activation_bytes(shape: ModelShape, layer: int, s: TrainingSettings,
                           trainable: Trainable) -> float:
    """Bytes one token leaves saved for backward in one layer, attention scores aside.

    Per tensor, what autograd keeps: an RMSNorm keeps its fp32 upcast input (a LayerNorm its
    input), a trained linear keeps its input (a frozen one keeps nothing), attention keeps q, k, v
    and its output, the gated MLP keeps gate, act(gate) and up, and down's input when down is
    trained. A LoRA adapter keeps what its A matrix multiplies: the linear's own input in pure
    16-bit or fp32 training; its own copy in mixed precision, where PEFT casts the input to the
    fp32 adapter and autocast casts it back to 16 bit (peft.tuners.lora.layer.Linear.forward);
    with dropout, its own dropped copy and a one-byte mask.
    """
    p, h = s.compute_bytes, shape.hidden_size
    roles = {t.role for t in shape.layer_tensors(layer)}
    own_copies = s.lora_dropout or s.precision == "mixed"
    # inputs shared by every module reading them: kept once, by a trained linear or an adapter
    shared_by_adapters = frozenset() if own_copies else trainable.adapted_roles - (
        EXPERT_ROLES if s.fused_experts else frozenset())
    learns = trainable.trained_roles | shared_by_adapters
    norm = 4 * h if not shape.layer_norm_bias else p * h
    total = 2 * norm
    if roles & _ATTN_INPUT_ROLES & learns:
        total += p * h
    q_width = shape.num_heads * shape.head_dim
    kv_width = _attention_kv_heads(shape, s.attention) * shape.head_dim
    total += p * (2 * q_width + 2 * kv_width) + 4 * shape.num_heads  # q, out, k, v, logsumexp
    if shape.is_moe_layer(layer):
        width = shape.moe_intermediate_size * shape.experts_per_token + \
            shape.shared_intermediate_size * shape.shared_experts
        total += 4 * shape.num_experts  # fp32 router probabilities
        if roles & EXPERT_ROLES & learns:
            total += p * h * shape.experts_per_token  # the tokens gathered per expert
    else:
        width = shape.intermediate_size
    if roles & _MLP_INPUT_ROLES & learns:
        total += p * h
    total += stream_bytes(s) * width * (3 if shape.gated_mlp else 1)
    if roles & _DOWN_ROLES & learns:
        total += p * width
    if own_copies:
        per_element = p + (1 if s.lora_dropout else 0)
        for t in shape.layer_tensors(layer):
            if t.role not in trainable.adapted_roles or (
                    s.fused_experts and t.role in EXPERT_ROLES):
                continue
            copies = shape.experts_per_token if t.role in EXPERT_ROLES else t.count
            total += per_element * t.cols * copies
    if s.fused_experts and roles & EXPERT_ROLES & trainable.adapted_roles:
        # the folded weights require grad, so the grouped matmuls keep their inputs: the
        # routed tokens for gate_up (once), the activated ones for down
        k = shape.experts_per_token
        total += p * k * (h * bool(roles & _FUSED_GATE_UP & trainable.adapted_roles)
                          + shape.moe_intermediate_size * ("expert_down" in trainable.adapted_roles))
    return total


def eager_score_bytes(shape: ModelShape, s: TrainingSettings) -> float:
    """Per token, per key, per layer: eager attention keeps the fp32 softmax and its 16-bit copy
    (transformers' eager_attention_forward); sdpa and flash recompute them in backward."""
    return shape.num_heads * (4 + s.compute_bytes) if s.attention == "eager" else 0.0


@dataclass(frozen=True)
class ActivationModel:
    """Per-token bytes for the seq-dependent parts of a step; `*_per_key` terms grow with seq."""

    all_layers: float  # everything saved for backward, every layer
    largest_layer: float  # one layer recomputed under checkpointing
    scores_per_key: float  # eager scores of one layer, per key
    layers_with_scores: int  # layers whose scores stay saved (0 under selective checkpointing)
    checkpoints: float  # the layer inputs that checkpointing keeps
    transient: float  # one layer's backward temporaries
    transient_per_key: float  # eager: the fp32 gradient of the softmax
    loss_per_logit: float  # bytes per (token × vocab) at the loss peak
    merged_experts: float = 0.0  # PEFT's folded expert stacks, all layers (bytes, not per token)
    merged_experts_layer: float = 0.0  # one layer's, recomputed under checkpointing
    merged_expert_grad: float = 0.0  # the largest folded stack's gradient, in backward
    head_cast: float = 0.0  # autocast's 16-bit copy of an fp32 output head, kept for its backward

    def saved_per_token(self, checkpointing: str, seq: int) -> float:
        if checkpointing == "full":
            return self.checkpoints
        return self.all_layers + self.layers_with_scores * self.scores_per_key * seq

    def transient_per_token(self, seq: int) -> float:
        return self.transient + self.transient_per_key * seq


def activation_model(shape: ModelShape, s: TrainingSettings, trainable: Trainable,
                     c: TrainingConstants) -> ActivationModel:
    p = s.compute_bytes
    fp32_head = s.upcast_unquantized and not s.embeddings_16bit
    groups = shape.layer_groups()
    per_layer = {layer: layer_activation_bytes(shape, layer, s, trainable) for layer, _ in groups}
    merged = {layer: merged_expert_bytes(shape, layer, s, trainable) for layer, _ in groups}
    # selective checkpointing recomputes only the attention scores (Korthikanti et al. 2022)
    return ActivationModel(
        all_layers=sum(n * per_layer[layer] for layer, n in groups)
        + stream_bytes(s) * shape.hidden_size * 2,  # + final norm input and lm_head input
        largest_layer=max(per_layer.values()),
        scores_per_key=eager_score_bytes(shape, s),
        layers_with_scores=0 if s.checkpointing == "selective" else shape.num_layers,
        checkpoints=stream_bytes(s) * shape.hidden_size * (shape.num_layers + 2),
        transient=p * c.backward_ffn_copies * ffn_width(shape),
        transient_per_key=4 * shape.num_heads if s.attention == "eager" else 0.0,
        # an upcast (fp32) head gives fp32 logits, unless autocast runs it in 16 bit
        loss_per_logit=c.loss_fp32_buffers * 4 + (4 if fp32_head and s.precision != "mixed" else p),
        merged_experts=sum(n * merged[layer][0] for layer, n in groups),
        merged_experts_layer=max(both for both, _ in merged.values()),
        merged_expert_grad=max(largest for _, largest in merged.values()),
        head_cast=p * shape.vocab_size * shape.hidden_size
        if fp32_head and s.precision == "mixed" else 0.0,
    )


# --- the estimate ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
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


@dataclass(frozen=True)
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
    train_w = _shard(params * weight_b, param_shards)
    grads = _shard(params * grad_b, grad_shards)
    opt = _shard(states, states_shards)
    tmp = _shard(step_tmp, states_shards)
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
    paged = opt if s.optimizer.startswith("paged") else 0
    fmt = base_format(shape, s)
    what = {"lora": f"LoRA r={s.lora_rank} on {trainable.adapted_targets(s)}",
            "qlora": f"LoRA r={s.lora_rank} on {trainable.adapted_targets(s)}",
            "freeze": f"the last {s.trainable_layers} layers", "full": "every parameter"}[s.method]
    shard_note = lambda k: f" ÷ {n} GPUs" if k > 1 else ""  # noqa: E731
    upcast_note = ""
    if s.upcast_unquantized and s.method in ("lora", "qlora"):
        upcast_note = ("; then what is not quantized made fp32, embeddings and head cast back"
                       if s.embeddings_16bit else "; then all that is not quantized made fp32")
    return StaticMemory(
        frozen=Part("frozen_weights", frozen,
                    f"base weights in {fmt.name} ({fmt.description}{upcast_note})"
                    f"{shard_note(param_shards)}"
                    f" = {format_bytes(frozen)}" if trainable.frozen_bytes else "none frozen"),
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
        step_temporary=Part("temporary", tmp, f"optimizer step temporaries = {format_bytes(tmp)}"),
        gathered_layer=gathered, gathered_root=root, first_layer_gradients=first_grads,
        host_bytes=host * n, paged_bytes=paged,
    )


def phases(shape: ModelShape, s: TrainingSettings, static: StaticMemory, act: ActivationModel,
           seq: int, micro_batch: int) -> tuple[Phase, ...]:
    """The four moments of a step (see the module docstring), per GPU. Under sequence
    parallelism a GPU holds its share of the tokens; Ulysses attention gives it every key for
    its share of the heads, so the eager scores are tokens per GPU × all keys."""
    tokens = s.tokens_per_gpu(seq, micro_batch)
    saved = round(tokens * act.saved_per_token(s.checkpointing, seq))
    one_layer = round(tokens * (act.largest_layer + act.scores_per_key * seq)
                      + act.merged_experts_layer)
    if s.checkpointing == "full":
        saved_how = f"checkpointed layer inputs {act.checkpoints:,.0f} B/token"
        first_saved = saved + one_layer  # the recomputed block sits on top of the checkpoints
        last_saved = round(tokens * act.checkpoints / (shape.num_layers + 2)) + one_layer
    else:
        saved_how = f"{act.all_layers:,.0f} B/token over {shape.num_layers} layers"
        if s.checkpointing == "selective":
            saved_how += " (attention scores recomputed)"
        saved += round(act.merged_experts)
        first_saved = saved
        last_saved = one_layer
    if act.merged_experts:
        saved_how += (f" + LoRA-folded expert weights {format_bytes(act.merged_experts_layer)} "
                      "per MoE layer" + (" (recomputed layer)" if s.checkpointing == "full"
                                         else ""))
    if act.scores_per_key and act.layers_with_scores:
        saved_how += f" + eager scores {act.scores_per_key:g} B × {seq} keys per layer"
    logits = round(tokens * shape.vocab_size * act.loss_per_logit + act.head_cast)
    transient = round(tokens * act.transient_per_token(seq) + act.merged_expert_grad) + \
        static.gathered_layer + static.gathered_root
    root = (f" + gathered embeddings and head {format_bytes(static.gathered_root)}"
            if static.gathered_root else "")
    gathered = (f" + gathered layer weights {format_bytes(static.gathered_layer)}"
                if static.gathered_layer else "") + root
    # at the loss FSDP has resharded every block (the last one after its forward); ZeRO-3
    # fetches per module and is counted with a running and a prefetched block throughout
    at_loss = static.gathered_root if static.gathered_root else static.gathered_layer
    at_loss_how = root if static.gathered_root else gathered
    accumulating = s.grad_accumulation > 1
    no_grads = static.gradients.bytes if accumulating else 0
    first_grads = static.gradients.bytes if accumulating else static.first_layer_gradients

    def grads(nbytes: int, when: str) -> Part:
        return Part("gradients", nbytes, f"{when} = {format_bytes(nbytes)}")

    def acts(nbytes: int, how: str) -> Part:
        return Part("activations", nbytes, f"{tokens:,} tokens × {how} = {format_bytes(nbytes)}")

    base = (static.frozen, static.trainable)
    none = (Part("logits", 0, "freed"),)
    return (
        Phase("loss", (*base, grads(no_grads, "kept by gradient accumulation" if accumulating
                                    else "none yet (freed after the last step)"),
                       static.optimizer, acts(saved, saved_how),
                       Part("logits", logits, f"{tokens:,} tokens × vocab {shape.vocab_size:,} × "
                            f"{act.loss_per_logit:g} B (16-bit logits + fp32 log-softmax, its "
                            f"gradient in and out)"
                            + (f" + autocast's 16-bit copy of the fp32 head "
                               f"{format_bytes(act.head_cast)}" if act.head_cast else "")
                            + f" = {format_bytes(logits)}"),
                       Part("temporary", at_loss, f"none{at_loss_how}"))),
        Phase("first_layer_backward", (*base, grads(first_grads, "the output head's and one "
                                                    "block's"), static.optimizer,
                                       acts(first_saved, saved_how + " + one block in backward"),
                                       *none, Part("temporary", transient,
                                                   f"backward buffers of one block{gathered} = "
                                                   f"{format_bytes(transient)}"))),
        Phase("last_layer_backward", (*base, grads(static.gradients.bytes, "nearly all"),
                                      static.optimizer, acts(last_saved, "one block's saved "
                                                             "activations"),
                                      *none, Part("temporary", transient,
                                                  f"backward buffers of one block{gathered} = "
                                                  f"{format_bytes(transient)}"))),
        Phase("optimizer_step", (*base, static.gradients, static.optimizer,
                                 Part("activations", 0, "freed"), *none, static.step_temporary)),
    )


# --- throughput ------------------------------------------------------------------------------
def flops_per_token(shape: ModelShape, s: TrainingSettings, trainable: Trainable,
                    seq: int) -> float:
    """Forward 2·N + attention, backward twice that for trained weights (Kaplan et al. 2020,
    sec. 2.1), once for frozen ones (input gradients only), plus a forward recomputed under
    checkpointing (Korthikanti et al. 2022)."""
    matmul = 0
    trained_matmul = 0
    for t in _all_tensors(shape):
        if t.role not in _MATMUL_ROLES and not (t.role == "embedding" and shape.tie_embeddings):
            continue
        count = t.count
        if t.role in EXPERT_ROLES:
            count = shape.experts_per_token * (t.count // max(shape.num_experts, 1))
        elements = t.rows * t.cols * count
        matmul += elements
        if t.role in trainable.trained_roles:
            trained_matmul += elements
    adapters = trainable.params if s.method in ("lora", "qlora") else 0
    # causal attention: each token attends to (seq + 1) / 2 keys on average, QKᵀ and AV
    attention = 2 * 2 * shape.num_layers * shape.num_heads * shape.head_dim * (seq + 1) / 2
    forward = 2 * (matmul + adapters) + attention
    backward = 2 * matmul + 2 * trained_matmul + 4 * adapters + 2 * attention
    recompute = forward if s.checkpointing == "full" else (
        attention if s.checkpointing == "selective" and s.attention == "eager" else 0)
    return forward + backward + recompute


@dataclass(frozen=True)
class Throughput:
    tokens_per_s_per_gpu: float | None
    step_time_s: float | None
    total_time_s: float | None
    flops_per_token: float
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"tokens_per_s_per_gpu": self.tokens_per_s_per_gpu, "step_time_s": self.step_time_s,
                "total_time_s": self.total_time_s, "flops_per_token": self.flops_per_token,
                "source": self.source}


# --- the public result -----------------------------------------------------------------------
@dataclass(frozen=True)
class Fit:
    device: str | None
    usable_bytes: int | None
    required_bytes: int
    fits: bool | None
    headroom_bytes: int | None
    max_seq: int | None
    max_micro_batch: int | None

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "usable_bytes": self.usable_bytes,
                "required_bytes": self.required_bytes, "fits": self.fits,
                "headroom": self.headroom_bytes, "max_seq": self.max_seq,
                "max_micro_batch": self.max_micro_batch}


@dataclass(frozen=True)
class DeviceFit:
    """The fit and speed on one common GPU, for an estimate that named none."""

    fit: Fit
    tokens_per_s_per_gpu: float | None
    fewest_gpus_zero3: int | None  # of 1, 2, 4, ... 64; None: not even 64

    def to_json(self) -> dict[str, Any]:
        return {**self.fit.to_json(), "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
                "fewest_gpus_zero3": self.fewest_gpus_zero3}


@dataclass(frozen=True)
class TrainingEstimate:
    model: ModelInfo
    settings: TrainingSettings
    trainable_params: int
    phases: tuple[Phase, ...]
    cuda_context_bytes: int
    host_bytes: int
    paged_bytes: int
    fit: Fit
    throughput: Throughput
    assumptions: tuple[str, ...]
    constants: TrainingConstants = field(default=TRAINING_DEFAULTS)
    devices: tuple[DeviceFit, ...] = ()  # without --gpu: the fit on each common GPU

    @property
    def peak(self) -> Phase:
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


@dataclass(frozen=True)
class _Model:
    """Everything seq- and batch-independent, so the fit search only redoes the cheap parts."""

    shape: ModelShape
    settings: TrainingSettings
    trainable: Trainable
    static: StaticMemory
    act: ActivationModel

    def required(self, seq: int, micro_batch: int, context: int) -> int:
        moments = phases(self.shape, self.settings, self.static, self.act, seq, micro_batch)
        return max(phase.total for phase in moments) - self.static.paged_bytes + context


def estimate_training(*, model: str | None = None, params: str | int | None = None,
                      family: str = "llama", info: ModelInfo | None = None,
                      gpu: str | None = None, gpu_memory: str | int | None = None,
                      tokens: str | int | None = None, constants: TrainingConstants | None = None,
                      hardware_file: str | None = None, reserve: str | float | None = None,
                      profile: str | None = None, **settings: Any) -> TrainingEstimate:
    """Memory per GPU, fit and throughput of one training step.

    `settings` are make_settings' keywords: method, precision, optimizer, seq, micro_batch,
    grad_accumulation, grad_checkpointing, attention, lora_rank, lora_targets, lora_dropout,
    base_dtype, trainable_layers, zero, fsdp, num_gpus, offload.
    """
    require_text(model=model, family=family, gpu=gpu, hardware_file=hardware_file, profile=profile)
    c = constants or TRAINING_DEFAULTS
    s = make_settings(**settings)
    kept_free = parse_reserve(reserve)  # checked even when no --gpu uses it
    token_count = None if tokens is None else parse_params(tokens, what="--tokens")
    if profile is not None:  # a calibration profile with a training grid (vramest calibrate)
        from vramest.calibration.profile import load_profile

        loaded = load_profile(profile)
        gpu, hardware_file = loaded.placement(gpu, hardware_file)
        on_device = gpu is not None and gpu == loaded.device_name
        c = loaded.training_constants(c, s.precision, on_device)
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
    peak_total = max(phase.total for phase in moments)

    device_name, usable, peak_flops, flops_source = None, None, None, "no --gpu given"
    device_notes: tuple[str, ...] = ()
    if gpu_memory is not None:
        usable = parse_bytes(gpu_memory, what="--gpu-memory")
        if usable <= 0:
            raise InputError(f"--gpu-memory {gpu_memory!r} leaves nothing to fit on; give a "
                             "size such as 24GB or 80GiB.")
        device_name = f"{format_bytes(usable)} GPU"
    if gpu is not None:
        device = load_hardware(hardware_file).find(gpu)
        device_name = device.name
        if device.ecc_in_band and gpu_memory is None:
            device_notes = (ecc_note(device),)
        # the same free share as inference (vramest.inference.placement.DEFAULT_RESERVE, --reserve)
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
                            for device in load_hardware(hardware_file).common())
    else:
        fit = _fit(m, c, required, device_name, usable)
    throughput = _throughput(shape, s, trainable, peak_flops, flops_source, token_count, c)
    return TrainingEstimate(
        model=info, settings=s, trainable_params=trainable.params, phases=moments,
        cuda_context_bytes=c.cuda_context_bytes, host_bytes=static.host_bytes,
        paged_bytes=static.paged_bytes, fit=fit, throughput=throughput,
        assumptions=_assumptions(info, s, trainable, static, c) + device_notes, constants=c,
        devices=options)


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
                c: TrainingConstants) -> Throughput:
    per_token = flops_per_token(shape, s, trainable, s.seq)
    if not peak_flops:
        return Throughput(None, None, None, per_token, source)
    rate = c.flops_utilization * peak_flops / per_token
    step_time = s.tokens_per_gpu(s.seq, s.micro_batch) * s.grad_accumulation / rate
    total = None
    if tokens is not None:
        total = tokens / (rate * s.num_gpus)
    return Throughput(rate, step_time, total, per_token,
                      f"{c.flops_utilization:g} × {source} ÷ {per_token / 1e9:.1f} GFLOP/token")


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
    if s.optimizer.startswith("paged"):
        out.append("Paged optimizer states can spill to host memory, so the fit check leaves "
                   "them out.")
    out.append(f"Activations: {s.attention} attention, gradient checkpointing {s.checkpointing}; "
               "loss on every position with fp32 log-softmax (no chunked or fused "
               "cross-entropy, no torch.compile).")
    out.append("Gradients are freed after each optimizer step (set_to_none), so backward and "
               "the optimizer step peak separately; the larger one is the total.")
    if s.num_gpus > 1 and s.zero_stage == 0:
        out.append("Data parallel without sharding: every GPU holds a full replica.")
    if static.gathered_root:
        out.append("FSDP: a running and a prefetched block are gathered in their storage format, "
                   "and the root unit (embeddings, final norm, head) stays gathered from the "
                   "forward to the end of backward.")
    elif static.gathered_layer:
        out.append("Stage 3 / FSDP: a running and a prefetched layer are gathered in 16 bit.")
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
               "communication buffers and allocator fragmentation are not modelled.")
    return tuple(out)
