"""Training and fine-tuning memory per GPU (full, freeze, LoRA, QLoRA), fit and throughput.

    from vramest.training import estimate_training
    est = estimate_training(model="meta-llama/Llama-3.1-8B", method="qlora", seq=4096,
                            micro_batch=2, grad_checkpointing=True, gpu="RTX 4090")
    est.to_json()["memory"]["total"]
"""

from vramest.training.constants import TRAINING_DEFAULTS, TRAINING_SOURCES, TrainingConstants
from vramest.training.estimate import TrainingEstimate, estimate_training
from vramest.training.settings import (
    METHODS,
    OPTIMIZERS,
    PRECISIONS,
    TARGET_PRESETS,
    TrainingSettings,
    make_settings,
)

__all__ = ["METHODS", "OPTIMIZERS", "PRECISIONS", "TARGET_PRESETS", "TRAINING_DEFAULTS",
           "TRAINING_SOURCES", "TrainingConstants", "TrainingEstimate", "TrainingSettings",
           "estimate_training", "make_settings"]
