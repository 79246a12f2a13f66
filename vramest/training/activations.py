"""What a training step saves for backward, per layer, with and without checkpointing."""

from __future__ import annotations

from vramest.frozen import frozen
from vramest.inference.memory import ffn_width
from vramest.model.precisions import (
    EXPERT_ROLES,
)
from vramest.model.shapes import ModelShape
from vramest.training.constants import TrainingConstants
from vramest.training.settings import (
    _ATTN_INPUT_ROLES,
    _DOWN_ROLES,
    _MLP_INPUT_ROLES,
    RECOMPUTING,
    TrainingSettings,
)
from vramest.training.trainable import (
    _FUSED_GATE_UP,
    Trainable,
    base_format,
    expert_bytes_per_element,
    merged_expert_bytes,
)

# bitsandbytes' 4-bit matmul (bitsandbytes/autograd/_functions.py, MatMul4Bit): forward
# dequantizes the weight into a new 16-bit tensor, and backward again; before 0.43.2
# (bitsandbytes@dada530) it also kept its input for backward whenever an input gradient was
# needed (ctx.tensors = (A, B)), which PR #1270 dropped (settings.BNB_FREES_INPUTS_FROM).
_BNB_4BIT = frozenset({"nf4", "bnb-nf4-dq"})


def bnb_saved_input_roles(shape: ModelShape, s: TrainingSettings) -> frozenset[str]:
    """The frozen 4-bit linears that keep their input for backward (a frozen 16-bit nn.Linear
    keeps nothing): every role bitsandbytes quantized, on releases before 0.43.2."""
    return base_format(shape, s).quantized_roles if s.base_dtype in _BNB_4BIT and \
        s.bnb_keeps_inputs else frozenset()


def dequantized_weight_bytes(shape: ModelShape, s: TrainingSettings) -> float:
    """The largest 4-bit weight dequantized to 16 bit while its matmul runs."""
    roles = base_format(shape, s).quantized_roles if s.base_dtype in _BNB_4BIT else frozenset()
    return float(max((2 * t.rows * t.cols for layer, _ in shape.layer_groups()
                      for t in shape.layer_tensors(layer) if t.role in roles), default=0))


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


def unsloth_layer_bytes(shape: ModelShape, layer: int, s: TrainingSettings) -> float:
    """Bytes one token leaves saved for backward in one layer under Unsloth's LoRA kernels
    (settings.KERNELS): each RMSNorm its 16-bit input and an fp32 rstd, LoRA_QKV its input once,
    attention q, k, v, its output (LoRA_W's input) and logsumexp, LoRA_MLP its input, gate and up
    (the SwiGLU product is recomputed in backward)."""
    p, h = s.compute_bytes, shape.hidden_size
    q_width = shape.num_heads * shape.head_dim
    kv_width = _attention_kv_heads(shape, s.attention) * shape.head_dim
    width = shape.intermediate_size if not shape.is_moe_layer(layer) else \
        shape.moe_intermediate_size * shape.experts_per_token
    return (2 * (p * h + 4) + p * h + p * (2 * q_width + 2 * kv_width) + 4 * shape.num_heads
            + p * h + p * 2 * width)


def unsloth_transient(shape: ModelShape, s: TrainingSettings, c: TrainingConstants) -> float:
    """Per token, the backward temporaries of one layer under Unsloth: LoRA_MLP's gradient of
    down's input (and, before 2025.3, the adapter's product summed into it through a temporary
    of the same size: settings.UNSLOTH_IN_PLACE_LORA_FROM), and the recomputed layer output and
    its incoming gradient, both held while autograd runs through the layer (unsloth_zoo@b09a943
    gradient_checkpointing.py, Unsloth_Offloaded_Gradient_Checkpointer.backward:
    torch.autograd.backward(output, dY))."""
    p = s.compute_bytes
    copies = c.unsloth_backward_ffn_copies + (1 if s.unsloth_lora_temporary else 0)
    return p * (copies * ffn_width(shape) + 2 * shape.hidden_size)


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
    if s.kernels == "unsloth":
        return unsloth_layer_bytes(shape, layer, s)
    p, h = s.compute_bytes, shape.hidden_size
    roles = {t.role for t in shape.layer_tensors(layer)}
    own_copies = s.lora_dropout or s.precision == "mixed"
    # inputs shared by every module reading them: kept once, by a trained linear or an adapter
    shared_by_adapters = frozenset() if own_copies else trainable.adapted_roles - (
        EXPERT_ROLES if s.fused_experts else frozenset())
    learns = trainable.trained_roles | shared_by_adapters | bnb_saved_input_roles(shape, s)
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


def indexed_expert_bytes(shape: ModelShape, layer: int, s: TrainingSettings,
                         trainable: Trainable) -> tuple[float, float]:
    """(saved, backward transient) of one MoE layer whose code indexes each expert's slice of
    the fused stacks in a Python loop (settings.EXPERT_LAYOUTS "indexed").

    `stack[expert_idx]` with a one-element index tensor is advanced indexing: a copy of that
    expert's weights, which the matmul keeps for the input's gradient, so the layer keeps a copy
    of every expert it ran. Backward of each index (IndexBackward0) writes that expert's gradient
    into a zero-filled tensor of the whole stack, summed into the stack's gradient out of place:
    the whole-stack gradients, plus one zero-filled stack and its sum. Measured with
    vramest.tracing.tracking on 32 experts, top-4 (tests/test_train_expert_loop.py)."""
    if s.moe_experts != "indexed" or not shape.is_moe_layer(layer):
        return 0.0, 0.0
    per_element = expert_bytes_per_element(shape, s)
    stacks = {t.role: t.rows * t.cols * t.count * per_element
              for t in shape.layer_tensors(layer) if t.role in EXPERT_ROLES}
    saved = float(sum(stacks.values()))
    if not EXPERT_ROLES & trainable.trained_roles:
        return saved, 0.0
    gate_up = sum(size for role, size in stacks.items() if role in _FUSED_GATE_UP)
    largest = max([gate_up, *stacks.values()])
    # the whole-stack gradients are counted with the block's own: unsharded, or by FSDP's
    # unsharded gradients (memory.fsdp_gradient_buffers); under ZeRO-2/3 only 1/n of them
    if s.zero_stage < 2 or (s.fsdp and s.num_gpus > 1):
        return saved, 2 * largest
    return saved, 2 * largest + saved * (1 - s.kept_grad_share)


def eager_score_bytes(shape: ModelShape, s: TrainingSettings) -> float:
    """Per token, per key, per layer: eager attention keeps the fp32 softmax and its 16-bit copy
    (transformers' eager_attention_forward); sdpa and flash recompute them in backward."""
    return shape.num_heads * (4 + s.compute_bytes) if s.attention == "eager" else 0.0


def loss_bytes_per_logit(s: TrainingSettings, c: TrainingConstants, fp32_head: bool) -> float:
    """Bytes per (token × vocab) alive at the loss peak, by cross-entropy implementation (see
    settings.LOSSES)."""
    p = s.compute_bytes
    if s.loss == "cut":
        return 0.0
    if s.loss == "fused":
        # Unsloth returns its 16-bit logits, and under mixed precision the Trainer's model runs
        # wrapped in accelerate's convert_outputs_to_fp32, which returns an fp32 copy of every
        # 16-bit output (accelerate/utils/operations.py _convert_to_fp32: tensor.float(); the
        # OOM traceback of unslothai/unsloth#465 ends there) while the 16-bit logits stay saved
        return p + (4 if s.precision == "mixed" else 0)
    if s.loss == "half":  # the 16-bit logits, their shifted copy and the loss buffers, all 16 bit
        return p * (2 + c.loss_fp32_buffers)
    if s.loss == "chunked":  # the 16-bit logits and one chunk's 16-bit gradient (compiled loss)
        return p * (1 + 1 / c.chunked_loss_chunks)
    # an upcast (fp32) head gives fp32 logits, unless autocast runs it in 16 bit
    return c.loss_fp32_buffers * 4 + (4 if fp32_head and s.precision != "mixed" else p)


@frozen
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
    dequantized_weight: float = 0.0  # a 4-bit weight dequantized for its matmul (bytes)
    head_cast: float = 0.0  # autocast's 16-bit copy of an fp32 output head, kept for its backward
    # an "indexed" expert loop: every expert's weight copy, all layers and one layer, and the
    # largest backward transient of the whole-stack gradients (indexed_expert_bytes)
    expert_copies: float = 0.0
    expert_copies_layer: float = 0.0
    expert_loop_grad: float = 0.0

    def saved_per_token(self, checkpointing: str, seq: int) -> float:
        if checkpointing in RECOMPUTING:
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
    indexed = {layer: indexed_expert_bytes(shape, layer, s, trainable) for layer, _ in groups}
    # selective checkpointing recomputes only the attention scores (Korthikanti et al. 2022)
    return ActivationModel(
        all_layers=sum(n * per_layer[layer] for layer, n in groups)
        + stream_bytes(s) * shape.hidden_size * 2,  # + final norm input and lm_head input
        largest_layer=max(per_layer.values()),
        scores_per_key=eager_score_bytes(shape, s),
        layers_with_scores=0 if s.checkpointing == "selective" else shape.num_layers,
        # layer inputs and the final norm's and head's inputs; offloaded: only the last two and
        # the one block input copied back for its recompute stay on the GPU
        checkpoints=stream_bytes(s) * shape.hidden_size * (
            3 if s.checkpointing == "offloaded" else shape.num_layers + 2),
        transient=unsloth_transient(shape, s, c) if s.kernels == "unsloth"
        else p * c.backward_ffn_copies * ffn_width(shape),
        transient_per_key=4 * shape.num_heads if s.attention == "eager" else 0.0,
        loss_per_logit=loss_bytes_per_logit(s, c, fp32_head),
        merged_experts=sum(n * merged[layer][0] for layer, n in groups),
        merged_experts_layer=max(both for both, _ in merged.values()),
        merged_expert_grad=max(largest for _, largest in merged.values()),
        dequantized_weight=dequantized_weight_bytes(shape, s),
        head_cast=p * shape.vocab_size * shape.hidden_size
        if fp32_head and s.precision == "mixed" else 0.0,
        expert_copies=sum(n * indexed[layer][0] for layer, n in groups),
        expert_copies_layer=max(saved for saved, _ in indexed.values()),
        expert_loop_grad=max(grad for _, grad in indexed.values()),
    )


