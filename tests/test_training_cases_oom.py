"""Fine-tuning out-of-memory reports (real_cases.jsonl, branch traincases): the outcomes the
estimator's existing rules already call, held so a later change to those rules cannot lose them.
Each row is a user's logged outcome; the assertions say which rule decides it."""

from __future__ import annotations

from functools import cache

from vramest.training import estimate_training
from vramest.validation.real_cases import load_cases, replay

GIB = 1024**3


@cache
def _case(case_id: str):
    return next(c for c in load_cases() if c.id == case_id)


def _estimate(case_id: str):
    c = _case(case_id)
    return estimate_training(model=c.model, gpu=c.gpu, num_gpus=c.num_gpus, **c.training)


def _part(est, name: str) -> int:
    return next(p.bytes for p in est.peak.parts if p.name == name)


def test_dpo_at_32k_runs_out_on_its_logits_whatever_zero3_offloads():
    # LLaMA-Factory #7938: Qwen2.5-7B DPO LoRA at cutoff 32768 on 64 A100 80GB with ZeRO-3
    # offload, Liger on and Unsloth's offloaded checkpointing: OOM. ZeRO-3 offload leaves no
    # weights on the GPU, but DPO runs chosen and rejected as one batch of 2 x 32768 tokens and
    # LLaMA-Factory's DPO keeps the logits (Liger's fused cross-entropy is off outside pt/sft)
    case_id = "train-lf7938-64xa100-qwen25-7b-dpo-lora-32k"
    assert _case(case_id).outcome == "oom"
    r = replay(_case(case_id))
    assert r.fits is False
    est = _estimate(case_id)
    assert _part(est, "frozen_weights") == 0
    assert _part(est, "logits") > est.fit.usable_bytes  # the logits alone exceed the card


def test_zero2_keeps_a_whole_16bit_base_on_every_gpu():
    # LLaMA-Factory #1409: Qwen-14B LoRA (c_attn) under ZeRO-2 on 8 RTX 3090 at cutoff 1024:
    # OOM. ZeRO-2 partitions optimizer states and gradients, not the frozen fp16 weights, so each
    # 24 GB card holds all 14B of them
    case_id = "train-lf1409-8x3090-qwen-14b-lora-z2-1k"
    assert _case(case_id).outcome == "oom"
    assert replay(_case(case_id)).fits is False
    est = _estimate(case_id)
    assert _part(est, "frozen_weights") > 26 * GIB > est.fit.usable_bytes


def test_dpo_quick_start_in_bf16_fits_an_a100():
    # TRL #3168: the DPOTrainer quick start (Qwen2.5-0.5B, DPOConfig defaults: 8 pairs of up
    # to 1024 tokens, no gradient checkpointing, a reference copy) ran once the model was
    # loaded in bf16
    case_id = "train-trl3168-a100-qwen25-0.5b-dpo-full-bf16"
    assert _case(case_id).outcome == "worked"
    assert replay(_case(case_id)).fits is True
    est = _estimate(case_id)
    # the reference copy is counted: frozen weights are a whole second 0.5B model in bf16
    assert _part(est, "frozen_weights") == _part(est, "trainable_weights")
