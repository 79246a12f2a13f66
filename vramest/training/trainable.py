"""What is trained and what the optimizer keeps: the trainable tensors (all, frozen
parts, LoRA adapters), their storage, and the optimizer's state."""

from __future__ import annotations

from collections.abc import Iterable

from vramest.errors import InputError
from vramest.frozen import frozen, replace
from vramest.inference.memory import weight_bytes
from vramest.model.precisions import (
    BITSANDBYTES_FORMATS,
    EXPERT_ROLES,
    LINEAR_ROLES,
    WeightFormat,
    weight_format,
)
from vramest.model.shapes import ModelShape, TensorSpec
from vramest.training.constants import TrainingConstants
from vramest.training.frameworks import UNSLOTH_DYNAMIC_CHECKPOINT_BYTES
from vramest.training.settings import _EMBEDDING_ROLES, _TARGET_ROLES, TrainingSettings


@frozen
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


def dynamic_checkpoint_extra(shape: ModelShape, s: TrainingSettings, nf4_bytes: int) -> int:
    """What an Unsloth Dynamic 4-bit checkpoint holds beyond plain NF4 (its modules left 16-bit),
    from its published size; 0 for a plain checkpoint or one whose size vramest does not know."""
    if s.base_checkpoint != "unsloth-dynamic" or s.method not in ("lora", "qlora"):
        return 0
    published = UNSLOTH_DYNAMIC_CHECKPOINT_BYTES.get(shape.name, 0)
    return max(0, published - nf4_bytes)


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
        frozen += dynamic_checkpoint_extra(shape, s, frozen)
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
        if s.optimizer in ("adamw", "adamw-fused"):
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
    if s.optimizer == "adamw" and s.adamw_single_tensor:
        # one tensor at a time, its temporaries freed before the next; DeepSpeed ZeRO hands the
        # optimizer one flat partition per group (stage_1_and_2.py single_partition_of_fp32_groups)
        flat = s.zero_stage >= 1 and not s.fsdp
        elements = (sum(t.elements for t in tensors) if flat
                    else max((t.elements for t in tensors), default=0))
        return c.adamw_single_tensor_temporaries * _state_bytes_per_element(s) * elements
    if s.optimizer == "adamw":
        return c.adamw_step_temporaries * _state_bytes_per_element(s) * \
            sum(t.elements for t in tensors)
    if s.optimizer == "adafactor":
        # transformers' Adafactor loops over tensors; for one it holds fp32 copies of the
        # gradient, the parameter and the update
        largest = max((t.rows * t.cols for t in tensors), default=0)
        return 3 * 4 * largest
    return 0.0  # SGD without weight decay and fused AdamW update in place; bitsandbytes fuses its update


