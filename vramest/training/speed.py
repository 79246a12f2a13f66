"""Training tokens per second: FLOPs per token at the fitted utilization of the GPU."""

from __future__ import annotations

from vramest.frozen import TYPE_CHECKING, frozen
from vramest.model.precisions import (
    EXPERT_ROLES,
)
from vramest.model.shapes import ModelShape
from vramest.training.settings import _MATMUL_ROLES, RECOMPUTING, TrainingSettings
from vramest.training.trainable import Trainable, _all_tensors

if TYPE_CHECKING:
    from typing import Any


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
    recompute = forward if s.checkpointing in RECOMPUTING else (
        attention if s.checkpointing == "selective" and s.attention == "eager" else 0)
    return forward + backward + recompute


@frozen
class TrainingSpeed:
    tokens_per_s_per_gpu: float | None
    step_time_s: float | None
    total_time_s: float | None
    flops_per_token: float
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"tokens_per_s_per_gpu": self.tokens_per_s_per_gpu, "step_time_s": self.step_time_s,
                "total_time_s": self.total_time_s, "flops_per_token": self.flops_per_token,
                "source": self.source}


