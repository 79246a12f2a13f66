"""vramest train --model meta-llama/Llama-3.1-8B --method qlora --seq 4096 --micro-batch 2"""

from __future__ import annotations

import json

from vramest.commands.common import add_model_args
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from typing import Any


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    from vramest.commands.common import Spelled
    from vramest.training.frameworks import FRAMEWORKS
    from vramest.training.settings import (
        ATTENTIONS,
        BASE_CHECKPOINTS,
        CHECKPOINTING,
        EXPERT_LAYOUTS,
        KERNELS,
        LOSSES,
        METHODS,
        OPTIMIZERS,
        PRECISIONS,
        UPCAST_SCOPES,
        checkpointing_name,
        optimizer_name,
    )

    p = sub.add_parser("train", help=help_text, description=help_text)
    p.add_argument("--config", help="a LLaMA-Factory or axolotl training config (YAML): its "
                   "settings as these flags, a flag given here winning")
    add_model_args(p)
    g = p.add_argument_group("training")
    g.add_argument("--framework", choices=FRAMEWORKS,
                   help="fill what is not given with this framework's defaults (LLaMA-Factory: "
                   "checkpointing on, LoRA rank 8 on all linears; Unsloth: offloaded "
                   "checkpointing, its LoRA kernels, Cut Cross-Entropy; ...)")
    g.add_argument("--method", default="full", choices=METHODS, help="what is trained")
    g.add_argument("--precision", choices=PRECISIONS,
                   help="mixed (16-bit + fp32 master, default), bf16 (pure) or fp32")
    # the trainers' own flag names are accepted too (TrainingArguments, LLaMA-Factory,
    # axolotl), so a launch command can be pasted as it is
    g.add_argument("--optimizer", "--optim", dest="optimizer",
                   choices=Spelled(OPTIMIZERS, optimizer_name),
                   help="default adamw (transformers' names too: adamw_torch, paged_adamw_8bit)")
    g.add_argument("--seq", "--cutoff-len", "--cutoff_len", "--max-seq-length",
                   "--max_seq_length", "--sequence-len", "--sequence_len", dest="seq",
                   default="2048", help="tokens per sequence: 4096, 8k (default 2048)")
    g.add_argument("--micro-batch", "--per-device-train-batch-size",
                   "--per_device_train_batch_size", "--micro-batch-size", "--micro_batch_size",
                   dest="micro_batch", default="1", help="sequences per GPU per step (default 1)")
    g.add_argument("--grad-accumulation", "--gradient-accumulation-steps",
                   "--gradient_accumulation_steps", dest="grad_accumulation", default="1",
                   help="micro-batches per optimizer step")
    g.add_argument("--optimizer-in-backward", action="store_true", default=None,
                   help="step each parameter as soon as its gradient is ready (torchtune's "
                   "optimizer_in_bwd): gradients never pile up")
    g.add_argument("--grad-checkpointing", "--gradient-checkpointing", "--gradient_checkpointing",
                   dest="grad_checkpointing", nargs="?", const="full",
                   choices=Spelled(CHECKPOINTING, checkpointing_name),
                   help="recompute activations in backward (offloaded: Unsloth's, layer inputs "
                   "kept in host memory)")
    g.add_argument("--bitsandbytes", metavar="RELEASE",
                   help="the bitsandbytes release of a QLoRA run (default: a recent one); before "
                   "0.43.2 each 4-bit linear kept its input for backward")
    g.add_argument("--unsloth", metavar="RELEASE",
                   help="the Unsloth release of --kernels unsloth, year.month (default: a recent "
                   "one); before 2025.3 its LoRA matmuls added the adapter through a temporary")
    g.add_argument("--torch", metavar="RELEASE",
                   help="the PyTorch release (default: a recent one); before 2.0 AdamW stepped "
                   "one tensor at a time, two full-size temporaries under DeepSpeed's flat "
                   "partition")
    g.add_argument("--objective", default="sft", choices=("sft", "dpo", "orpo", "kto"),
                   help="sft; dpo (TRL: chosen and rejected sequences per example and a "
                   "reference model, the base itself under LoRA); orpo (the pair, no reference); "
                   "kto (one sequence, a reference model)")
    g.add_argument("--loss", choices=LOSSES,
                   help="cross-entropy: standard (fp32 log-softmax), fused (Unsloth's kernel: "
                   "16-bit logits, gradient in place), chunked (torchtune's chunked output "
                   "loss), cut (Apple's Cut Cross-Entropy, as Unsloth runs it: no logits) or "
                   "half (a model's own loss on 16-bit logits under DeepSpeed fp16/bf16, no "
                   "autocast)")
    g.add_argument("--kernels", choices=KERNELS,
                   help="layer kernels: torch (PEFT's LoRA layers) or unsloth (Unsloth's fused "
                   "LoRA autograd: fewer saved activations)")
    g.add_argument("--attn", choices=ATTENTIONS, help="attention implementation (default sdpa)")
    g.add_argument("--lora-rank", "--lora_rank", "--lora-r", "--lora_r", dest="lora_rank",
                   help="LoRA rank (default 16)")
    g.add_argument("--lora-targets",
                   help="all-linear (default), attention, qv, mlp or a list such as q,k,v,o")
    g.add_argument("--lora-dropout", action="store_true", default=None,
                   help="adapters use dropout (> 0)")
    g.add_argument("--base-dtype", help="frozen base precision (default bf16; qlora: nf4)")
    g.add_argument("--base-checkpoint", choices=BASE_CHECKPOINTS,
                   help="the 4-bit checkpoint loaded: plain NF4 or unsloth-dynamic (Unsloth's "
                   "'-unsloth-bnb-4bit', some modules 16-bit; --framework unsloth's default)")
    g.add_argument("--upcast-unquantized", nargs="?", const="peft",
                   choices=UPCAST_SCOPES,
                   help="what a quantized base keeps fp32: peft (prepare_model_for_kbit_training: "
                   "all that is not quantized) or trl (SFTTrainer with bf16: the same but the "
                   "embeddings and head, cast back to 16 bit)")
    g.add_argument("--trainable-layers", default="2", help="--method freeze: last N layers")
    g.add_argument("--zero", default="0", choices=("0", "1", "2", "3"), help="ZeRO stage")
    g.add_argument("--overlap-comm", action="store_true", default=None,
                   help="DeepSpeed overlap_comm under ZeRO-1/2: gradient buckets of 4.5 x 5e8 "
                   "elements each (about 9 GB at 16 bit)")
    g.add_argument("--reduce-bucket-size", default=None,
                   help="DeepSpeed ZeRO-1/2 reduce_bucket_size from your ds_config, in elements "
                   "(default 5e8, DeepSpeed's)")
    g.add_argument("--fsdp", action="store_true", help="FSDP FULL_SHARD (= ZeRO stage 3)")
    g.add_argument("--num-gpus", default="1", help="GPUs the step is sharded over")
    g.add_argument("--sequence-parallel", default="1",
                   help="GPUs each sequence is split over (DeepSpeed Ulysses / context "
                   "parallel); divides --num-gpus and the attention heads")
    g.add_argument("--offload", choices=("none", "optimizer", "params"), default="none")
    g.add_argument("--moe-experts", choices=EXPERT_LAYOUTS, default="fused",
                   help="how the model code holds MoE experts: fused 3-D parameters "
                   "(transformers 5, default), an nn.Linear each (transformers 4, others) or "
                   "fused parameters indexed expert by expert (transformers 4.55 gpt-oss)")
    h = p.add_argument_group("hardware")
    h.add_argument("--gpu", help="device name (A100, H100, RTX 4090; `vramest gpus` lists them)")
    h.add_argument("--gpu-memory", help="usable GPU memory instead of a device: 24GB, 80GiB")
    h.add_argument("--reserve", help="memory kept free per GPU: 10%%, 0.1 or 2GiB (default 5%%)")
    h.add_argument("--hardware-file", help="extra devices (JSON)")
    h.add_argument("--profile", help="calibration profile whose fitted training constants to "
                   "use (its FLOP utilisation only with --gpu local or the profile's device)")
    h.add_argument("--tokens", help="training tokens, for the total time: 1B, 500M")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--explain", action="store_true", help="show each part's formula")


def train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    from vramest.model.resolve import SHAPE_OVERRIDES, resolve_model

    info = resolve_model(params=args.params, model=args.model, family=args.family,
                         active_params=args.active_params,
                         overrides={k: getattr(args, k) for k in SHAPE_OVERRIDES})
    training = dict(
        method=args.method, precision=args.precision,
        optimizer=args.optimizer, seq=args.seq, micro_batch=args.micro_batch,
        grad_accumulation=args.grad_accumulation, grad_checkpointing=args.grad_checkpointing,
        optimizer_in_backward=args.optimizer_in_backward,
        objective=args.objective, loss=args.loss, kernels=args.kernels,
        bitsandbytes=args.bitsandbytes, unsloth=args.unsloth, torch=args.torch,
        attention=args.attn, lora_rank=args.lora_rank, lora_targets=args.lora_targets,
        lora_dropout=args.lora_dropout, base_dtype=args.base_dtype,
        upcast_unquantized=args.upcast_unquantized, base_checkpoint=args.base_checkpoint,
        trainable_layers=args.trainable_layers,
        zero=args.zero, overlap_comm=args.overlap_comm,
        reduce_bucket_size=args.reduce_bucket_size, fsdp=args.fsdp,
        num_gpus=args.num_gpus, offload=args.offload,
        moe_experts=args.moe_experts, sequence_parallel=args.sequence_parallel)
    # a flag not given stays out, so make_settings' default or --framework's fills it
    training = {k: v for k, v in training.items() if v is not None}
    return dict(info=info, gpu=args.gpu, gpu_memory=args.gpu_memory,
                hardware_file=args.hardware_file, reserve=args.reserve, profile=args.profile,
                tokens=args.tokens, framework=args.framework, **training)


def run(args: argparse.Namespace) -> int:
    from vramest.training.estimate import estimate_training
    from vramest.training.report import render_training

    result = estimate_training(**train_kwargs(args))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render_training(result, explain=args.explain))
    return 0
