"""The few constants of the training model, each with where it comes from.

Everything else in the training estimate is counted from the model's tensors and the chosen
method, precision and optimizer; these are the numbers that are not.
"""

from __future__ import annotations

from vramest.frozen import fields, frozen


@frozen
class TrainingConstants:
    # fp32 buffers per logit alive at the loss peak (start of backward through cross-entropy):
    # the fp32 log-softmax saved for backward, its incoming gradient and the gradient it
    # produces; the 16-bit logits themselves are counted on top.
    loss_fp32_buffers: float = 3.0
    # torchtune's chunked cross-entropy splits the tokens into this many chunks
    chunked_loss_chunks: int = 8
    # Full-size temporaries of one optimizer step, in units of the (sharded) trainable
    # parameters at the state precision: torch's foreach AdamW allocates sqrt(v) for all
    # parameters at once before the update.
    adamw_step_temporaries: float = 1.0
    # torch's single-tensor AdamW (the default before torch 2.0): `(exp_avg_sq.sqrt() /
    # bias_correction2_sqrt)` holds the square root and the quotient at once, each the size of
    # the tensor stepped (under DeepSpeed ZeRO, the whole flat partition).
    adamw_single_tensor_temporaries: float = 2.0
    # bitsandbytes 8-bit optimizers: one fp32 absmax per block of this many state values, and
    # tensors smaller than min_8bit_size keep 32-bit states.
    bnb_block_size: int = 256
    bnb_min_8bit_size: int = 4096
    # Gradients of the widest per-token intermediate alive while one layer runs backward
    # (the MLP: grad of the product, of gate and of up), in compute-dtype copies of ffn width.
    backward_ffn_copies: float = 3.0
    # Unsloth's LoRA_MLP backward writes the SwiGLU derivatives into the saved gate and up in
    # place: only the gradient of down's input is new
    unsloth_backward_ffn_copies: float = 1.0
    # Share of the datasheet dense 16-bit FLOP/s reached by a training step, recomputation
    # counted as work done (hardware FLOPs utilisation).
    flops_utilization: float = 0.5
    # CUDA context and library workspaces that nvidia-smi counts and torch's allocator does not.
    cuda_context_bytes: int = 1024**3

    def as_dict(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


TRAINING_DEFAULTS = TrainingConstants()
# constants the estimate divides by: a profile may not set them to 0
TRAINING_DIVISORS = frozenset({"flops_utilization", "bnb_block_size", "chunked_loss_chunks"})

TRAINING_SOURCES: dict[str, str] = {
    "loss_fp32_buffers": "torch cross_entropy on fp32-upcast logits (transformers ForCausalLMLoss): "
    "log_softmax output + grad_output + grad_input; Mistral-7B LoRA batch 4->8 step in "
    "training.csv (fms-acceleration) grows by 14.8 B per token x vocab = 2 + 3 x 4",
    "chunked_loss_chunks": "torchtune@1814feb torchtune/modules/loss/ce_chunked_output_loss.py: "
    "CEWithChunkedOutputLoss(num_output_chunks=8)",
    "adamw_step_temporaries": "torch.optim.adamw _multi_tensor_adamw: exp_avg_sq_sqrt = "
    "_foreach_sqrt(exp_avg_sqs); fms-acceleration Mistral-7B full bf16 peaks at 10.0 B/param",
    "adamw_single_tensor_temporaries": "torch 2.13.0 torch/optim/adam.py _single_tensor_adam: "
    "denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps), the same line as torch "
    "1.13's AdamW; LLaMA-Factory #1221 (ZeRO-2, 8 x V100): 'Tried to allocate 3.14 GiB' at that "
    "line = 6.74e9 params / 8 x 4 B",
    "bnb_block_size": "bitsandbytes Optimizer2State.init_state (blockwise absmax, 256 values)",
    "bnb_min_8bit_size": "bitsandbytes Optimizer8bit default min_8bit_size=4096",
    "backward_ffn_copies": "autograd of a gated MLP: grads of down's input, of gate and of up",
    "unsloth_backward_ffn_copies": "unsloth/kernels/fast_lora.py LoRA_MLP.backward: DW = "
    "matmul_lora(dY, downW.t(), ...); swiglu_DWf_DW_dfg_kernel(DW, e, g) writes h, df, de into "
    "DW, e, g",
    "flops_utilization": "fms-acceleration A100-80GB tokens/s in training.csv imply 0.49-0.64 "
    "(Mistral-7B full and LoRA, Mixtral LoRA, Llama-2-70B QLoRA; recompute counted)",
    "cuda_context_bytes": "shared/reference/README.md: nvidia-smi includes a 0.5-1.3 GB CUDA "
    "context; the same 1 GiB default as vramest.inference.constants.runtime_overhead_bytes",
}
