"""The training model's arithmetic, worked by hand on known shapes, and its invariants."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.cli import main
from vramest.errors import InputError
from vramest.inference.memory import weight_bytes
from vramest.model.precisions import weight_format
from vramest.model.resolve import resolve_model
from vramest.training import estimate_training
from vramest.training.memory import ZERO_BUCKET_ELEMENTS
from vramest.units import format_bytes

GPT2 = resolve_model(model="gpt2")  # 124,439,808 params, tied embeddings
LLAMA2_7B = resolve_model(model="llama-2-7b")
MISTRAL = resolve_model(model="mistral-7b")


def phase(est, name: str) -> dict[str, int]:
    return est.to_json()["phases"][name]


def test_mixed_precision_adamw_is_16_bytes_per_param_plus_the_step_temporary() -> None:
    """ZeRO paper accounting: 2 (bf16 weights) + 2 (bf16 grads) + 12 (fp32 master, m, v).
    torch's foreach AdamW also holds sqrt(v) for every fp32 master param during the step: +4."""
    n = GPT2.params
    step = phase(estimate_training(info=GPT2, method="full"), "optimizer_step")
    assert (step["trainable_weights"], step["gradients"]) == (2 * n, 2 * n)
    assert step["optimizer_states"] == 12 * n
    assert step["temporary"] == 4 * n
    assert step["total"] == 20 * n


def test_pure_bf16_adamw_full_finetune_matches_the_measured_mistral_peak() -> None:
    """bf16 weights 2 + grads 2 + bf16 moments 4 + sqrt(v) 2 = 10 B/param; Mistral-7B's
    7,241,732,096 params → 72.42 GB; fms-acceleration measured 72,434,837,504 B (FMS-025)."""
    est = estimate_training(info=MISTRAL, method="full", precision="bf16", seq=4096,
                            micro_batch=4, grad_checkpointing=True, attention="flash")
    assert est.peak.name == "optimizer_step"
    assert est.total_bytes == 10 * MISTRAL.params
    assert abs(est.total_bytes / 72_434_837_504 - 1) < 0.001


def test_lora_trainable_count_matches_litgpt_tables() -> None:
    """Rank 8 on query and value: 32 layers × 2 × 8 × (4096 in + 4096 out) = 4,194,304 for
    Llama-2-7B; 40 × 2 × 8 × (5120 + 5120) = 6,553,600 for 13B (LitGPT resource tables)."""
    seven = estimate_training(info=LLAMA2_7B, method="lora", lora_rank=8, lora_targets="q,v")
    assert seven.trainable_params == 4_194_304
    thirteen = estimate_training(model="llama-2-13b", method="lora", lora_rank=8,
                                 lora_targets="q_proj,v_proj")
    assert thirteen.trainable_params == 6_553_600


def test_lora_targets_follow_the_shape() -> None:
    """GQA: k and v are 1024 wide in Mistral, so all-linear at rank 16 is per layer
    16 × [(4096+4096)·2 + (4096+1024)·2 + 3 × (4096+14336)] = 1,146,880 → × 32 layers."""
    est = estimate_training(info=MISTRAL, method="lora", lora_rank=16, lora_targets="all-linear")
    assert est.trainable_params == 32 * 16 * ((4096 + 4096) * 2 + (4096 + 1024) * 2
                                              + 3 * (4096 + 14336))
    attention_only = estimate_training(info=MISTRAL, method="lora", lora_targets="attention")
    assert attention_only.trainable_params < est.trainable_params


def test_qlora_base_costs_its_true_storage() -> None:
    """NF4 stores 4 bits + an fp32 absmax per 64 (4.5 bits) on the linear layers; embeddings
    and lm_head stay 16-bit: exactly vramest.inference.memory.weight_bytes with the nf4 format."""
    est = estimate_training(info=LLAMA2_7B, method="qlora")
    assert phase(est, "loss")["frozen_weights"] == weight_bytes(LLAMA2_7B.shape,
                                                                weight_format("nf4"))
    dq = estimate_training(info=LLAMA2_7B, method="qlora", base_dtype="bnb-nf4-dq")
    assert phase(dq, "loss")["frozen_weights"] < phase(est, "loss")["frozen_weights"]


def test_optimizer_state_sizes() -> None:
    """Per trainable param under mixed precision (fp32 master 4 B counted with the states):
    adamw 8 + 4; sgd 0 + 4; sgd-momentum 4 + 4; adamw-8bit ≈ 2 × (1 + 4/256) + 4 for tensors of
    4096+ elements; adafactor rows + cols per matrix."""
    n = GPT2.params
    states = {opt: phase(estimate_training(info=GPT2, optimizer=opt), "optimizer_step")
              ["optimizer_states"] for opt in ("adamw", "sgd", "sgd-momentum", "adamw-8bit",
                                               "adafactor")}
    assert states["adamw"] == 12 * n
    assert states["sgd"] == 4 * n
    assert states["sgd-momentum"] == 8 * n
    assert 4 * n + 2 * n < states["adamw-8bit"] < 4 * n + 2.1 * n
    # gpt2: the 50257 × 768 embedding alone is factored into 50257 + 768 fp32 values
    assert 4 * n < states["adafactor"] < 4.1 * n


def test_logits_buffers_scale_with_vocab_and_tokens() -> None:
    """At the loss: 16-bit logits + three fp32 buffers = 14 B per token × vocab entry.
    Mistral, 2 × 1024 tokens: 2048 × 32000 × 14 = 917,504,000 B."""
    est = estimate_training(info=MISTRAL, method="lora", seq=1024, micro_batch=2)
    assert phase(est, "loss")["logits"] == 2048 * 32000 * 14


def test_checkpointing_keeps_only_layer_inputs() -> None:
    """Full checkpointing keeps each block's input (2 B × hidden per token) plus the final
    norm's and lm_head's input: 2 × 4096 × (32 + 2) = 278,528 B per token for Mistral."""
    est = estimate_training(info=MISTRAL, method="lora", seq=1000, grad_checkpointing=True)
    assert phase(est, "loss")["activations"] == 1000 * 2 * 4096 * 34
    without = estimate_training(info=MISTRAL, method="lora", seq=1000)
    assert phase(without, "loss")["activations"] > 5 * phase(est, "loss")["activations"]


def test_eager_attention_adds_quadratic_scores() -> None:
    flash = estimate_training(info=LLAMA2_7B, method="lora", seq=2048, attention="flash")
    eager = estimate_training(info=LLAMA2_7B, method="lora", seq=2048, attention="eager")
    # 32 layers × 32 heads × 2048 keys × (fp32 softmax 4 + bf16 copy 2) per token
    extra = phase(eager, "loss")["activations"] - phase(flash, "loss")["activations"]
    kv_repeat = 0  # Llama-2-7B has as many KV heads as heads: sdpa and flash store the same
    assert extra == 2048 * 32 * 32 * 2048 * 6 + kv_repeat


def test_zero_stages_shard_states_then_grads_then_params() -> None:
    """Rajbhandari et al. 2020: stage 1 divides the optimizer states by N, 2 also the
    gradients, 3 also the parameters."""
    n = GPT2.params
    steps = [phase(estimate_training(info=GPT2, zero=z, num_gpus=4), "optimizer_step")
             for z in range(4)]
    assert steps[0]["optimizer_states"] == 12 * n
    assert steps[1]["optimizer_states"] == 3 * n and steps[1]["gradients"] == 2 * n
    assert steps[2]["gradients"] == n // 2
    assert steps[3]["trainable_weights"] == n // 2
    fsdp = phase(estimate_training(info=GPT2, fsdp=True, num_gpus=4), "optimizer_step")
    for part in ("trainable_weights", "gradients", "optimizer_states", "activations"):
        assert fsdp[part] == steps[3][part]  # FSDP FULL_SHARD shards as stage 3
    # DeepSpeed's ZeRO-3 step makes the partition's gradients a new fp32 tensor beside its
    # 16-bit gradient buffer: 4 B more an element
    assert steps[3]["temporary"] - fsdp["temporary"] == 4 * n // 4


def test_zero3_updates_one_sub_group_at_a_time() -> None:
    """DeepSpeed ZeRO-3 steps sub_group_size (1e9) elements at a time: Yi-34B fully trained
    over 8 A100 80GB with ZeRO-3 ran (01-ai/Yi#246), where a whole-partition step would not
    fit (4.3e9 elements a GPU)."""
    from vramest.training.memory import ZERO3_SUB_GROUP_ELEMENTS

    est = estimate_training(model="01-ai/Yi-34B", method="full", seq=4096, zero=3, num_gpus=8,
                            attention="flash", grad_checkpointing=True, gpu="a100 sxm4 80gb")
    # foreach AdamW's sqrt(v) (4 B) and the sub group's fp32 gradients (4 B: ZeRO-3 keeps its
    # 16-bit gradient buffer)
    assert phase(est, "optimizer_step")["temporary"] == 8 * ZERO3_SUB_GROUP_ELEMENTS
    assert est.fit is not None and est.fit.fits


def test_fsdp_keeps_the_root_unit_gathered_at_the_loss() -> None:
    """torch FSDP does not reshard the root unit after forward: GPT-2's wte, wpe and ln_f
    (outside the wrapped blocks) are whole, in 16 bit, while the loss runs."""
    root = (50257 * 768 + 1024 * 768 + 2 * 768) * 2
    loss = phase(estimate_training(info=GPT2, fsdp=True, num_gpus=4), "loss")
    assert loss["temporary"] == root


def test_offload_moves_states_and_gradients_to_the_host() -> None:
    n = GPT2.params
    est = estimate_training(info=GPT2, zero=2, num_gpus=2, offload="optimizer")
    step = phase(est, "optimizer_step")
    assert step["optimizer_states"] == 0 and step["gradients"] == 0
    assert est.host_bytes == 2 * (12 * n // 2 + 2 * n // 2)


def test_fit_search_returns_the_boundary() -> None:
    est = estimate_training(info=LLAMA2_7B, method="qlora", seq=2048, grad_checkpointing=True,
                            gpu="RTX 4090")
    fit = est.fit
    assert fit.fits and fit.max_seq and fit.max_micro_batch
    at = estimate_training(info=LLAMA2_7B, method="qlora", seq=fit.max_seq,
                           grad_checkpointing=True, gpu="RTX 4090")
    beyond = estimate_training(info=LLAMA2_7B, method="qlora", seq=fit.max_seq + 1,
                               grad_checkpointing=True, gpu="RTX 4090")
    assert at.fit.fits and not beyond.fit.fits


def test_throughput_is_six_n_per_token_for_full_training() -> None:
    """Full training of gpt2 at short sequence: ~6 × 124M FLOPs per token (plus attention),
    at 0.5 of the A100's 312 dense bf16 TFLOP/s."""
    est = estimate_training(info=GPT2, seq=16, gpu="A100 80GB")
    t = est.throughput
    assert 5.9 * GPT2.params < t.flops_per_token < 6.1 * GPT2.params  # norms, positions: no matmul
    assert t.tokens_per_s_per_gpu == pytest.approx(0.5 * 312e12 / t.flops_per_token)
    checkpointed = estimate_training(info=GPT2, seq=16, gpu="A100 80GB", grad_checkpointing=True)
    assert checkpointed.throughput.flops_per_token == pytest.approx(t.flops_per_token * 8 / 6,
                                                                    rel=0.01)


@pytest.mark.parametrize("kwargs", [
    {"method": "dpo"}, {"optimizer": "lion"}, {"zero": 4}, {"offload": "optimizer"},
    {"offload": "params", "zero": 2}, {"method": "qlora", "base_dtype": "bf16"},
    {"lora_targets": "embeddings"}, {"seq": "0"}, {"fsdp": True, "zero": 2},
])
def test_bad_input_is_one_sentence(kwargs: dict) -> None:
    with pytest.raises(InputError) as err:
        estimate_training(info=GPT2, method=kwargs.pop("method", "lora"), **kwargs)
    assert str(err.value).endswith(".") and "\n" not in str(err.value)


def test_cli_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--model", "llama-3.1-8b", "--method", "qlora", "--seq", "4096",
                 "--micro-batch", "2", "--grad-checkpointing", "--gpu", "A100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    memory = out["memory"]
    for key in ("frozen_weights", "trainable_weights", "gradients", "optimizer_states",
                "activations", "logits", "temporary", "total", "host_bytes"):
        assert isinstance(memory[key], int), key
    assert memory["total"] == sum(memory[k] for k in ("frozen_weights", "trainable_weights",
                                                      "gradients", "optimizer_states",
                                                      "activations", "logits", "temporary"))
    assert set(out["fit"]) >= {"fits", "headroom", "max_seq", "max_micro_batch"}
    assert set(out["throughput"]) >= {"tokens_per_s_per_gpu", "step_time_s"}


def test_cli_bad_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--params", "7B", "--method", "nope"]) == 2
    assert main(["train", "--params", "7B", "--offload", "params", "--zero", "1"]) == 2
    assert "vramest:" in capsys.readouterr().err


# --- invariants ------------------------------------------------------------------------------
_methods = st.sampled_from(["full", "lora", "qlora", "freeze"])
_optimizers = st.sampled_from(["adamw", "adamw-8bit", "sgd", "adafactor", "paged-adamw-8bit"])
_ckpt = st.sampled_from(["none", "full", "selective"])
_attn = st.sampled_from(["sdpa", "flash", "eager"])


@settings(max_examples=60, deadline=None)
@given(method=_methods, optimizer=_optimizers, ckpt=_ckpt, attn=_attn,
       seq=st.integers(1, 16384), extra_seq=st.integers(0, 8192), batch=st.integers(1, 16),
       extra_batch=st.integers(0, 16))
def test_more_tokens_never_lower_memory(method: str, optimizer: str, ckpt: str, attn: str,
                                        seq: int, extra_seq: int, batch: int,
                                        extra_batch: int) -> None:
    common = dict(info=MISTRAL, method=method, optimizer=optimizer, grad_checkpointing=ckpt,
                  attention=attn)
    base = estimate_training(seq=seq, micro_batch=batch, **common).total_bytes
    assert estimate_training(seq=seq + extra_seq, micro_batch=batch, **common).total_bytes >= base
    assert estimate_training(seq=seq, micro_batch=batch + extra_batch,
                             **common).total_bytes >= base


# From two GPUs: on one, DeepSpeed's ZeRO-1/2 step still converts the whole 16-bit gradient
# partition to fp32, which a plain optimizer does not. Its 5e8-element gradient bucket is
# there whatever the model (a LoRA run shards less than that), so stage 1 may cost the bucket.
@settings(max_examples=40, deadline=None)
@given(method=_methods, optimizer=_optimizers, gpus=st.integers(2, 64), seq=st.integers(1, 8192))
def test_higher_zero_stage_never_raises_per_gpu_memory(method: str, optimizer: str, gpus: int,
                                                       seq: int) -> None:
    totals = [estimate_training(info=MISTRAL, method=method, optimizer=optimizer, zero=z,
                                num_gpus=gpus, seq=seq, grad_checkpointing=True).total_bytes
              for z in range(3)]
    assert totals[0] + ZERO_BUCKET_ELEMENTS * 2 >= totals[1] >= totals[2]
    # stage 3 gathers two blocks while they run: it lowers memory once shards beat that
    stage3 = estimate_training(info=MISTRAL, method=method, optimizer=optimizer, zero=3,
                               num_gpus=gpus, seq=seq, grad_checkpointing=True).total_bytes
    if gpus >= 4:
        assert stage3 <= totals[2]


def test_upcast_scope_is_validated_and_reported() -> None:
    peft = estimate_training(model="meta-llama/Llama-3.1-8B", method="qlora",
                             upcast_unquantized="peft")
    trl = estimate_training(model="meta-llama/Llama-3.1-8B", method="qlora",
                            upcast_unquantized="trl")
    assert trl.to_json()["settings"]["upcast_scope"] == "trl"
    assert any("TRL" in line for line in trl.assumptions)
    # the embeddings and head stay 16-bit: 2 bytes less for each of their parameters
    saved = peft.phases[0].get("frozen_weights") - trl.phases[0].get("frozen_weights")
    assert saved == 2 * 2 * 128256 * 4096
    with pytest.raises(InputError, match="--upcast-unquantized"):
        estimate_training(model="meta-llama/Llama-3.1-8B", method="qlora",
                          upcast_unquantized="everything")


def test_without_a_gpu_the_common_cards_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    """No --gpu: each common card gets the same fit and speed as naming it would give."""
    settings_ = dict(model="meta-llama/Llama-3.1-8B", method="qlora", seq=4096,
                     grad_checkpointing=True)
    est = estimate_training(**settings_)
    assert est.fit.fits is None and len(est.devices) >= 10
    by_name = {option.fit.device: option for option in est.devices}
    for gpu in ("4090", "a100-80gb", "l4"):
        named = estimate_training(gpu=gpu, **settings_)
        option = by_name[named.fit.device]
        assert option.fit == named.fit
        assert option.tokens_per_s_per_gpu == named.throughput.tokens_per_s_per_gpu
    assert estimate_training(gpu="4090", **settings_).devices == ()
    assert main(["train", "--model", "llama-3.1-8b", "--method", "qlora", "--json"]) == 0
    devices = json.loads(capsys.readouterr().out)["devices"]
    assert {"device", "fits", "max_seq", "tokens_per_s_per_gpu"} <= set(devices[0])
    assert main(["train", "--model", "llama-3.1-8b", "--method", "qlora"]) == 0
    assert "Where it fits" in capsys.readouterr().out


def test_fewest_fully_sharded_gpus_is_the_boundary() -> None:
    """The table's 'GPUs with ZeRO-3' is the first power of two at which --zero 3 fits."""
    settings_ = dict(model="meta-llama/Llama-3.1-70B", method="full", seq=4096,
                     grad_checkpointing=True)
    option = next(o for o in estimate_training(**settings_).devices
                  if o.fit.device == "NVIDIA A100 SXM4 80GB")
    n = option.fewest_gpus_zero3
    assert n is not None and n > 1
    assert estimate_training(gpu="a100-80gb", zero=3, num_gpus=n, **settings_).fit.fits
    assert not estimate_training(gpu="a100-80gb", zero=3, num_gpus=n // 2, **settings_).fit.fits


def test_sequence_parallel_splits_each_sequence() -> None:
    """Ulysses: a GPU holds seq/N tokens, so its sdpa activations and logits equal a 1-GPU run
    at seq/N, while eager scores (every key, 1/N of the heads) are N times that run's."""
    base = dict(model="meta-llama/Llama-3.1-8B", method="lora", grad_checkpointing=False,
                fsdp=True, num_gpus=4)
    def acts(seq: int, attention: str, sp: int = 1) -> int:
        est = estimate_training(seq=seq, sequence_parallel=sp, attention=attention, **base)
        return est.peak.get("activations")

    split = estimate_training(seq=8192, sequence_parallel=4, **base)
    short = estimate_training(seq=2048, **base)
    assert split.peak.get("activations") == short.peak.get("activations")
    assert split.peak.get("logits") == short.peak.get("logits")
    scores_short = acts(2048, "eager") - acts(2048, "sdpa")
    scores_split = acts(8192, "eager", 4) - acts(8192, "sdpa", 4)
    assert scores_short > 0 and abs(scores_split - 4 * scores_short) <= 4
    with pytest.raises(InputError, match="must divide --num-gpus"):
        estimate_training(seq=8192, sequence_parallel=3, **base)
    with pytest.raises(InputError, match="attention heads"):
        estimate_training(seq=8192, sequence_parallel=3, **{**base, "num_gpus": 3})


def test_a_step_that_does_not_fit_says_which_single_change_would():
    # a QLoRA run that turned PEFT's default checkpointing off
    kw = dict(model="meta-llama/Llama-3.1-8B", method="qlora", seq=2048, gpu="rtx 4090")
    est = estimate_training(**kw, grad_checkpointing="none")
    assert est.fit.verdict != "fits"
    changed = estimate_training(**kw, grad_checkpointing="full")
    assert changed.fit.verdict == "fits"
    line = next(a for a in est.fit.advice if a.startswith("--grad-checkpointing full"))
    assert line.endswith(f"headroom {format_bytes(changed.fit.headroom_bytes)}")
    assert est.to_json()["fit"]["advice"] == list(est.fit.advice)
    assert changed.fit.advice == ()  # nothing to change once it fits


def test_zero2_overlap_comm_buckets_match_deepspeed_and_a_reported_oom() -> None:
    """LLaMA-Factory issue #4133: Qwen1.5-7B full SFT, ZeRO-2 with the shipped ds_z2_config
    (overlap_comm true, 5e8-element buckets), cutoff 512, batch 1, fp16 on 8 x A100 40GB: out of
    memory. transformers' DeepSpeed guide: overlap_comm at 5e8 "requires a 9GB footprint"."""
    common = dict(model="Qwen/Qwen1.5-7B", gpu="a100 sxm4 40gb", num_gpus=8, method="full",
                  seq=512, zero=2, grad_checkpointing=True)
    overlapped = estimate_training(overlap_comm=True, **common)
    plain = estimate_training(**common)
    step = {p.name: p.bytes for p in overlapped.phases[-1].parts}
    plain_step = {p.name: p.bytes for p in plain.phases[-1].parts}
    assert step["temporary"] - plain_step["temporary"] == 9 * 10**9 - 10**9
    assert not overlapped.fit.fits
    with pytest.raises(InputError, match="ZeRO-1/2"):
        estimate_training(overlap_comm=True, **{**common, "zero": 3})


def test_a_qlora_run_without_a_framework_is_peft_s_recipe_with_checkpointing() -> None:
    """prepare_model_for_kbit_training turns gradient checkpointing on unless told not to
    (use_gradient_checkpointing=True): a QLoRA step nobody said more about has it on, and says
    so; a framework's own default, or the flag, decides otherwise."""
    from vramest.training.estimate import QLORA_CHECKPOINTING_NOTE

    plain = estimate_training(model="meta-llama/Llama-3.1-8B", method="qlora", gpu="rtx 3090")
    assert plain.settings.checkpointing == "full" and QLORA_CHECKPOINTING_NOTE in plain.assumptions
    off = estimate_training(model="meta-llama/Llama-3.1-8B", method="qlora", gpu="rtx 3090",
                            grad_checkpointing="none")
    assert off.settings.checkpointing == "none" and QLORA_CHECKPOINTING_NOTE not in off.assumptions
    lora = estimate_training(model="meta-llama/Llama-3.1-8B", method="lora", gpu="rtx 3090")
    assert lora.settings.checkpointing == "none"
