"""What each fine-tuning framework sets when the user does not: `--framework NAME` fills these
`make_settings` keywords under the ones given explicitly.

Each default is read from the framework's source at the commit named on its line; a setting a
framework leaves to the model or to the user (sequence length, batch) is not listed.
"""

from __future__ import annotations

from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

# keyword -> value, for every method, then per method
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llamafactory": {
        # model_args.py disable_gradient_checkpointing=False; model_utils/checkpointing.py
        # prepare_model_for_training enables it (hiyouga/LlamaFactory@137c87f, 2024-07)
        "grad_checkpointing": True,
        # finetuning_args.py: lora_rank=8, lora_target="all", lora_dropout=0.0
        "lora_rank": 8,
        "lora_targets": "all-linear",
        "lora_dropout": False,
        # adapter.py: trainable params cast to fp32 unless pure_bf16 (autocast mixed precision);
        # no prepare_model_for_kbit_training anywhere, so a 4-bit base keeps 16-bit norms
        "precision": "mixed",
        "upcast_unquantized": "none",
    },
    "axolotl": {
        # src/axolotl/utils/models.py load_model (axolotl@5f79b82, 2023-12): after
        # prepare_model_for_kbit_training, an adapter run (needs_fa2_dtype) casts the norms,
        # lm_head and embed_tokens back to torch_dtype
        "upcast_unquantized": "none",
    },
    "trl": {
        # trl/trainer/sft_trainer.py (v0.12.0): a 4-bit model goes through
        # prepare_model_for_kbit_training, then peft_module_casting_to_bf16 under bf16
        "upcast_unquantized": "trl",
    },
    "unsloth": {
        # unsloth/models/loader.py from_pretrained(use_gradient_checkpointing="unsloth") and
        # _utils.py: "unsloth" turns on the offloaded checkpointer (unsloth@b9fe258, 2024-12)
        "grad_checkpointing": "offloaded",
        "kernels": "unsloth",
        # models/llama.py CausalLM_fast_forward: fused_linear_cross_entropy (Cut Cross-Entropy)
        # when cut_cross_entropy is installed and a batch has more than 1024 tokens; off on older
        # GPUs and torch releases (UNSLOTH_CCE_MIN_CAPABILITY, framework_loss_on)
        "loss": "cut",
    },
    "torchtune": {
        # recipes/configs/llama3_2/*.yaml (pytorch/torchtune@1814feb): dtype bf16,
        # torch.optim.AdamW fused=True, CEWithChunkedOutputLoss, activation checkpointing on
        "precision": "bf16",
        "optimizer": "adamw-fused",
        "loss": "chunked",
        "grad_checkpointing": True,
    },
}
_QLORA_BASE = {
    # src/axolotl/utils/models.py load_model (axolotl@5f79b82, 2023-12): a qlora adapter loads
    # with BitsAndBytesConfig(bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4")
    "axolotl": "bnb-nf4-dq",
    # quantization.py: bnb_4bit_use_double_quant=model_args.double_quantization (default True)
    "llamafactory": "bnb-nf4-dq",
    # models/llama.py from_pretrained: BitsAndBytesConfig(bnb_4bit_use_double_quant=True)
    "unsloth": "bnb-nf4-dq",
}
# The checkpoint Unsloth's loader picks for a 4-bit base: from_pretrained(load_in_4bit=True) maps
# the model name through loader_utils.get_model_name -> mapper.FLOAT_TO_INT_MAPPER to
# "unsloth/<model>-unsloth-bnb-4bit", the Dynamic 4-bit quant, wherever mapper.py lists one
# (e.g. "unsloth/Qwen3-14B" and "Qwen/Qwen3-14B"); a name already ending "-bnb-4bit" is loaded as
# given, and BAD_MAPPINGS sends Qwen3-32B to the plain "-bnb-4bit" (unsloth@d74e7c19, 2025.4.5,
# and unsloth@16af0ceb, 2025.6.1: unsloth/models/loader_utils.py, mapper.py).
_QLORA_CHECKPOINT = {"unsloth": "unsloth-dynamic"}
# Published sizes of Unsloth's Dynamic 4-bit checkpoints, in bytes (the Hub's download bars, in
# decimal GB); what they hold beyond plain NF4 is the modules left 16-bit.
UNSLOTH_DYNAMIC_CHECKPOINT_BYTES = {
    # unsloth/Qwen3-14B-unsloth-bnb-4bit: 4.97G + 4.59G + 1.56G (unslothai/notebooks@80f99e1e
    # nb/Qwen3_(14B).ipynb, model_name "unsloth/Qwen3-14B", load_in_4bit, Unsloth 2025.4.5)
    "Qwen/Qwen3-14B": 11_120_000_000,
}
FRAMEWORKS = tuple(_DEFAULTS)
# Unsloth runs Cut Cross-Entropy only where unsloth_zoo imports it: torch >= 2.4 (and Triton >= 3)
# on compute capability 7.5 and up (unslothai/unsloth-zoo@a90bf5aa, 2024-11-28, "Fix V100",
# unsloth_zoo/loss_utils.py: HAS_CUT_CROSS_ENTROPY needs `not ((major <= 7) and (minor < 5))`;
# the same at 2025.6.1, unsloth-zoo@b1d2d28c). Without it models/llama.py CausalLM_fast_forward
# computes the 16-bit logits and runs its Triton fast_cross_entropy_loss (unsloth@16af0ceb,
# 2025.6.1), the "fused" loss.
UNSLOTH_CCE_MIN_CAPABILITY = (7, 5)
UNSLOTH_CCE_MIN_TORCH = (2, 4)


def framework_defaults(name: str, method: str) -> dict[str, Any]:
    """The make_settings keywords `name` sets by default for a run of `method`."""
    key = name.strip().lower() if isinstance(name, str) else ""
    if key not in _DEFAULTS:
        raise InputError(f"Unknown --framework {short(name)}; accepted: {', '.join(FRAMEWORKS)}.")
    out = dict(_DEFAULTS[key])
    if method == "qlora" and key in _QLORA_BASE:
        out["base_dtype"] = _QLORA_BASE[key]
    if method == "qlora" and key in _QLORA_CHECKPOINT:
        out["base_checkpoint"] = _QLORA_CHECKPOINT[key]
    if method not in ("lora", "qlora"):
        for adapter_only in ("lora_rank", "lora_targets", "lora_dropout", "kernels"):
            out.pop(adapter_only, None)
    if method != "qlora":
        out.pop("upcast_unquantized", None)  # only a quantized base is prepared
    return out


def framework_loss_on(name: str, loss: str, capability: tuple[int, int],
                      torch: tuple[int, ...]) -> str:
    """The loss a framework's default comes to on a GPU of this compute capability ((0, 0): not
    NVIDIA, none to compare) under this torch release: Unsloth's Cut Cross-Entropy falls back to
    its fused cross-entropy over materialised logits below capability 7.5 (V100, P100) or
    torch 2.4."""
    if name.strip().lower() != "unsloth" or loss != "cut":
        return loss
    old_gpu = capability != (0, 0) and capability < UNSLOTH_CCE_MIN_CAPABILITY
    return "fused" if old_gpu or torch < UNSLOTH_CCE_MIN_TORCH else loss
