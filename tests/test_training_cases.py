"""Training peaks as the frameworks ran them, against their published figures (issue #18,
item 8): torchtune's chunked loss and its memory table, Cut Cross-Entropy and Unsloth's LoRA
kernels, TRL's k-bit preparation of a 4-bit base."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.errors import InputError
from vramest.training import estimate_training
from vramest.units import GIB

LLAMA_8B = "meta-llama/Llama-3.1-8B"


def _torchtune_3b(**kw):
    # torchtune README at 1814feb: Llama 3.2 3B, batch 2, 4096 tokens packed, bf16, A100;
    # torch.optim.AdamW(fused=True) as its configs set it
    kw.setdefault("optimizer", "adamw-fused")
    return estimate_training(model="meta-llama/Llama-3.2-3B", precision="bf16", seq=4096,
                             micro_batch=2, **kw)


def test_torchtune_packed_full_finetune_matches_its_table():
    # "+ Packed Dataset | 60.0" GiB peak active: full, AdamW, no checkpointing, fp32 loss
    est = _torchtune_3b(method="full")
    assert abs(est.total_bytes / (60.0 * GIB) - 1) < 0.05


def test_torchtune_lora_with_its_chunked_loss_matches_its_table():
    # "LoRA | 8.5" GiB: q, v, output_proj and MLP at rank 64, compiled chunked cross-entropy,
    # activation checkpointing and offloading
    est = _torchtune_3b(method="lora", lora_rank=64, lora_targets="q,v,o,gate,up,down",
                        grad_checkpointing="offloaded", loss="chunked")
    assert abs(est.total_bytes / (8.5 * GIB) - 1) < 0.10
    standard = _torchtune_3b(method="lora", lora_rank=64, lora_targets="q,v,o,gate,up,down",
                             grad_checkpointing="offloaded")
    assert standard.total_bytes > 1.5 * est.total_bytes  # the fp32 logits dominate otherwise


def test_cut_cross_entropy_stores_no_logits():
    est = estimate_training(model=LLAMA_8B, method="qlora", seq=8192, loss="cut")
    assert all(phase.get("logits") == 0 for phase in est.phases)


@settings(max_examples=20, deadline=None)
@given(seq=st.integers(256, 65536))
def test_losses_order_by_what_they_keep(seq):
    # pure bf16: no autocast, so no fp32 copy of the returned logits (which only "fused"
    # returns; under mixed precision it then keeps more than the chunked loss)
    peaks = [estimate_training(model=LLAMA_8B, method="qlora", seq=seq, loss=loss,
                               precision="bf16",
                               grad_checkpointing="full").phases[0].get("logits")
             for loss in ("standard", "chunked", "fused", "cut")]
    assert peaks[0] > peaks[1] > peaks[2] > peaks[3] == 0


def test_unsloth_cce_longest_contexts_land_near_the_card():
    # https://unsloth.ai/docs/basics/unsloth-benchmarks: Llama 3.1 8B, 4-bit QLoRA rank 32, batch
    # 1: 2,972 tokens on 8 GB and 40,724 on 16 GB with Unsloth + Apple CCE
    for seq, card in ((2_972, 8), (40_724, 16)):
        est = estimate_training(model=LLAMA_8B, method="qlora", seq=seq, lora_rank=32,
                                grad_checkpointing="offloaded", loss="cut", kernels="unsloth",
                                attention="flash", base_dtype="bnb-nf4-dq")
        assert abs(est.fit.required_bytes / (card * GIB) - 1) < 0.15


def test_unsloth_before_cce_longest_contexts_land_near_the_card():
    # https://unsloth.ai/blog/llama3-3: Llama 3.3 70B, 4-bit QLoRA rank 32, batch 1, "Unsloth
    # (Old)" (fused cross-entropy over 16-bit logits): 48,447 tokens on 80 GB, 7,385 on 48 GB.
    # Under mixed precision the Trainer's accelerate wrapper also returns the logits in fp32.
    for seq, card in ((48_447, 80), (7_385, 48)):
        kw = dict(model="meta-llama/Llama-3.3-70B-Instruct", method="qlora", seq=seq,
                  lora_rank=32, grad_checkpointing="offloaded", loss="fused", kernels="unsloth",
                  attention="flash", base_dtype="bnb-nf4-dq")
        est = estimate_training(**kw)
        assert abs(est.fit.required_bytes / (card * GIB) - 1) < 0.05
        pure = estimate_training(precision="bf16", **kw)  # no autocast, no fp32 copy
        copy = est.phases[0].get("logits") - pure.phases[0].get("logits")
        assert copy == seq * 128_256 * 4


def test_unsloth_kernels_keep_less_than_peft_layers():
    kw = dict(model=LLAMA_8B, method="qlora", seq=4096, grad_checkpointing="offloaded", loss="cut")
    assert estimate_training(kernels="unsloth", **kw).total_bytes < \
        estimate_training(**kw).total_bytes


def test_unsloth_kernels_need_adapters():
    with pytest.raises(InputError, match="--kernels unsloth"):
        estimate_training(model=LLAMA_8B, method="full", kernels="unsloth")


def test_trl_kbit_preparation_at_the_longest_hf_context():
    # same page: Hugging Face + FA2 (TRL's SFTTrainer, which prepares a 4-bit base for k-bit
    # training and casts embeddings and head back to bf16) reaches 28,454 tokens on 80 GB
    est = estimate_training(model=LLAMA_8B, method="qlora", seq=28_454, lora_rank=32,
                            grad_checkpointing=True, attention="flash", upcast_unquantized="trl")
    plain = estimate_training(model=LLAMA_8B, method="qlora", seq=28_454, lora_rank=32,
                              grad_checkpointing=True, attention="flash")
    assert abs(est.fit.required_bytes / (80 * GIB) - 1) < 0.15
    assert est.fit.required_bytes > plain.fit.required_bytes


def test_torchtune_full_finetune_with_fused_adamw_matches_its_table():
    # "+ Activation Checkpointing | 24.9" GiB: full bf16, torch.optim.AdamW(fused=True) as
    # torchtune's configs set it; a foreach step's full-size sqrt temporary would not fit in it
    fused = _torchtune_3b(method="full", grad_checkpointing=True, loss="chunked")
    assert abs(fused.total_bytes / (24.9 * GIB) - 1) < 0.10
    foreach = _torchtune_3b(method="full", optimizer="adamw", grad_checkpointing=True,
                            loss="chunked")
    assert foreach.total_bytes > 1.15 * fused.total_bytes


def test_axolotl_keeps_a_prepared_base_in_16_bit():
    # axolotl#1144: Mistral-7B 4-bit at 4096 tokens, batch 1, flash attention: "about 9000 MB"
    # (axolotl 5f79b82 casts norms, embeddings and head back to bf16 after k-bit preparation)
    kw = dict(model="mistralai/Mistral-7B-v0.1", method="qlora", seq=4096, lora_rank=32,
              lora_dropout=True, grad_checkpointing=True, attention="flash",
              optimizer="adamw-8bit", gpu="rtx 3090 ti")
    axolotl = estimate_training(framework="axolotl", **kw)
    assert abs(axolotl.fit.required_bytes / (9000 * 2**20) - 1) < 0.10
    assert estimate_training(upcast_unquantized="peft", **kw).fit.required_bytes > \
        axolotl.fit.required_bytes


def test_llamafactory_defaults_fill_only_what_is_not_given():
    est = estimate_training(model=LLAMA_8B, method="qlora", framework="llamafactory", seq=2048)
    s = est.settings
    assert (s.lora_rank, s.checkpointing, s.base_dtype) == (8, "full", "bnb-nf4-dq")
    given = estimate_training(model=LLAMA_8B, method="qlora", framework="llamafactory", seq=2048,
                              lora_rank=16, grad_checkpointing=False)
    assert (given.settings.lora_rank, given.settings.checkpointing) == (16, "none")
    with pytest.raises(InputError, match="--framework"):
        estimate_training(model=LLAMA_8B, framework="megatron")


def test_hf_full_finetune_at_4k_runs_out_as_liger_reports():
    # Liger-Kernel README (ae14a87): Llama-3-8B, batch 8, bf16, AdamW, checkpointing, FSDP on
    # 8 A100s: "HuggingFace models start to OOM at a 4K context length"
    kw = dict(model="meta-llama/Meta-Llama-3-8B", method="full", micro_batch=8, fsdp=True,
              num_gpus=8, grad_checkpointing=True, gpu="a100 sxm4 80gb")
    assert estimate_training(seq=4096, **kw).fit.fits is False
    assert estimate_training(seq=2048, **kw).fit.fits is True


def test_bitsandbytes_4bit_linears_kept_their_inputs_before_0_43_2():
    # MatMul4Bit saved its input whenever an input gradient was needed until bitsandbytes PR
    # #1270 (0.43.2): without checkpointing a 4-bit base then kept more per token than the same
    # 16-bit base; from 0.43.2 it keeps only the weight, as a frozen nn.Linear keeps nothing
    kw = dict(model=LLAMA_8B, seq=1024, lora_targets="q,v", grad_checkpointing=False)

    def activations(method, **more):
        return estimate_training(method=method, **kw, **more).phases[0].get("activations")

    assert activations("qlora", bitsandbytes="0.43.1") > activations("lora")
    assert activations("qlora") == activations("qlora", bitsandbytes="0.43.2")
    assert activations("qlora") < activations("qlora", bitsandbytes="0.43.1")


def test_cli_framework_keeps_the_flags_given(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from vramest.cli import main

    code = main(["train", "--model", LLAMA_8B, "--method", "lora", "--framework", "llamafactory",
                 "--lora-rank", "16", "--json"])
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert code == 0
    assert (settings["lora_rank"], settings["grad_checkpointing"]) == (16, "full")


def test_bitsandbytes_qlora_rows_of_the_reference_set():
    # fms-acceleration's measured QLoRA peaks (torch peak allocated; training.csv, peft-bnb
    # rows; its benchmark requirements pin bitsandbytes 0.43.3, which keeps no inputs): with the
    # dequantized weights counted the median |error| of the 23 rows is 6.5% (7.0% before)
    import statistics

    from vramest.validation.training import peak_comparisons

    compared, _ = peak_comparisons()
    rows = [abs(c.error) for c in compared
            if "peft-bnb" in c.note and c.metric == "peak_memory"]
    assert len(rows) >= 20 and statistics.median(rows) <= 0.066


def _qwen_qlora(**kw):
    # QwenLM/Qwen README (03cd81f) profiling table: Q-LoRA on the GPTQ Int4 chat model, batch 1,
    # r=64 on every block linear, dropout 0.05, flash attention, gradient checkpointing, fp16
    # under DeepSpeed ds_config_zero2.json on one A100 80GB (overlap_comm, 2e8-element buckets)
    return estimate_training(model="Qwen/Qwen1.5-14B", gpu="a100 sxm4 80gb", method="qlora",
                             base_dtype="gptq-int4", seq=256, micro_batch=1, grad_accumulation=8,
                             grad_checkpointing=True, attention="flash", lora_rank=64,
                             lora_dropout=True, zero=2, overlap_comm=True, **kw)


def test_zero2_buckets_follow_the_configs_reduce_bucket_size():
    """DeepSpeed allocates each ZeRO-1/2 gradient bucket at reduce_bucket_size elements
    (stage_1_and_2.py setup_buckets: torch.empty(int(self.reduce_bucket_size)), a second with
    overlap_comm), so a config's own size sets them. Qwen-14B Q-LoRA at 256 tokens, 18.7 GB in
    Qwen's table with 2e8-element buckets: DeepSpeed's default 5e8 put the estimate 35% high."""
    measured = 18.7e9
    configured = _qwen_qlora(reduce_bucket_size="2e8")
    default = _qwen_qlora()
    assert abs(configured.fit.required_bytes / measured - 1) < 0.10
    assert default.fit.required_bytes / measured - 1 > 0.30
    # 4.5 x both buffers x 2 bytes per element less
    assert default.fit.required_bytes - configured.fit.required_bytes == round(4.5 * 2 * 3e8 * 2)
    assert configured.to_json()["settings"]["reduce_bucket_size"] == 200_000_000


def test_reduce_bucket_size_is_checked():
    with pytest.raises(InputError, match="ZeRO-1/2"):
        estimate_training(model=LLAMA_8B, method="lora", reduce_bucket_size=2e8)
    with pytest.raises(InputError, match="count of elements"):
        estimate_training(model=LLAMA_8B, method="lora", zero=2, reduce_bucket_size="lots")
    with pytest.raises(InputError, match="count of elements"):
        estimate_training(model=LLAMA_8B, method="lora", zero=2, reduce_bucket_size="2.5")


def test_a_models_own_16_bit_loss_under_deepspeed_keeps_no_fp32_logits():
    """DeepSpeed's fp16 engine runs the module in half precision with no autocast, and Qwen's
    modeling_qwen.py takes CrossEntropyLoss on the 16-bit lm_logits: Qwen-7B Q-LoRA at 8192
    tokens peaks at 23.5 GB in Qwen's table, where fp32 loss buffers would add 4 B per logit
    three times over (151,936 x 8,192 logits)."""
    common = dict(model="Qwen/Qwen1.5-7B", gpu="a100 sxm4 80gb", method="qlora",
                  base_dtype="gptq-int4", seq=8192, micro_batch=1, grad_accumulation=8,
                  grad_checkpointing=True, attention="flash", lora_rank=64, lora_dropout=True,
                  zero=2, overlap_comm=True, reduce_bucket_size="2e8", optimizer="adamw-fused")
    half = estimate_training(loss="half", **common)
    upcast = estimate_training(**common)
    assert abs(half.fit.required_bytes / 23.5e9 - 1) < 0.06
    assert upcast.fit.required_bytes / 23.5e9 - 1 > 0.2
    logits = 8192 * 151_936
    loss_phase = {p.name: p.bytes for p in half.phases[0].parts}
    assert loss_phase["logits"] == 2 * 5 * logits  # logits, shifted copy, 3 loss buffers
    assert "16 bit" in " ".join(half.assumptions)


def test_optimizer_in_backward_keeps_one_gradient_at_a_time():
    """torchtune's optimizer_in_bwd steps and zeroes each parameter in a post-accumulate-grad
    hook. Its README (1814feb) measures Llama 3.2 3B full, packed 2 x 4096, chunked loss and
    activation checkpointing at 24.9 GiB, and 23.1 GiB once the step is fused into backward."""
    common = dict(method="full", grad_checkpointing=True, loss="chunked")
    fused = _torchtune_3b(optimizer_in_backward=True, **common)
    plain = _torchtune_3b(**common)
    active = (fused.fit.required_bytes - fused.cuda_context_bytes) / GIB
    assert abs(active / 23.1 - 1) < 0.08
    assert fused.fit.required_bytes < plain.fit.required_bytes
    vocab_by_hidden = 128_256 * 3072  # the tied embedding, the largest tensor
    for phase in fused.phases:
        assert phase.get("gradients") <= 2 * vocab_by_hidden
    assert fused.phases[-1].get("gradients") == 0 and fused.phases[-1].get("temporary") == 0
    with pytest.raises(InputError, match="grad-accumulation 1"):
        _torchtune_3b(optimizer_in_backward=True, grad_accumulation=4, **common)


def test_cli_passes_deepspeed_buckets_loss_and_optimizer_in_backward(
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from vramest.cli import main

    code = main(["train", "--model", LLAMA_8B, "--method", "lora", "--zero", "2",
                 "--reduce-bucket-size", "2e8", "--loss", "half", "--json"])
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert code == 0
    assert (settings["reduce_bucket_size"], settings["loss"]) == (200_000_000, "half")
    code = main(["train", "--model", LLAMA_8B, "--method", "full", "--optimizer-in-backward",
                 "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["settings"]["optimizer_in_backward"]
    assert main(["train", "--model", LLAMA_8B, "--optimizer-in-backward",
                 "--grad-accumulation", "4"]) == 2
    assert "grad-accumulation 1" in capsys.readouterr().err
