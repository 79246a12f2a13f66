"""Fine-tuning as the frameworks run it: Unsloth's offloaded gradient checkpointing and fused
cross-entropy, and DPO's paired sequences and reference model (issue #18, item 8)."""

from __future__ import annotations

from vramest.training import estimate_training

LLAMA_70B = "meta-llama/Llama-3.3-70B-Instruct"


def _qlora_70b(**kw):
    # an A100 80GB holds 80 GiB (81,920 MiB)
    return estimate_training(model=LLAMA_70B, method="qlora", lora_rank=32, micro_batch=1,
                             attention="flash", seq=4096, gpu_memory="80GiB", **kw)


def test_unsloth_longest_context_matches_its_published_measurement():
    # Unsloth's blog (https://unsloth.ai/blog/llama3-3): Llama 3.3 70B, 4-bit QLoRA on all
    # linear layers, rank 32, batch 1, A100 80GB: 48,447 tokens before Apple's CCE ("Unsloth
    # (Old)": offloaded gradient checkpointing and its fused cross-entropy; Unsloth loads 4-bit
    # with double quantization, unsloth/models/llama.py).
    est = _qlora_70b(grad_checkpointing="offloaded", loss="fused", base_dtype="bnb-nf4-dq",
                     kernels="unsloth")
    assert abs(est.fit.max_seq / 48_447 - 1) < 0.03
    plain = _qlora_70b(grad_checkpointing="full")
    assert est.fit.max_seq > 4 * plain.fit.max_seq  # measured: 7x over HF + FA2's 6,916


def test_offloaded_checkpoints_move_to_the_host():
    kw = dict(model="meta-llama/Llama-3.1-8B", method="qlora", seq=8192, attention="flash")
    full = estimate_training(grad_checkpointing="full", **kw)
    offloaded = estimate_training(grad_checkpointing="offloaded", **kw)
    layers = full.model.shape.num_layers
    hidden = full.model.shape.hidden_size
    moved = 8192 * 2 * hidden * layers  # bf16 layer inputs
    assert offloaded.host_bytes - full.host_bytes == moved
    assert offloaded.total_bytes < full.total_bytes


def test_dpo_doubles_the_sequences_and_keeps_a_reference_only_without_peft():
    kw = dict(model="meta-llama/Llama-3.1-8B", seq=1024, micro_batch=2, attention="flash",
              grad_checkpointing=True)
    for method in ("lora", "full"):
        sft = estimate_training(method=method, **kw).to_json()["phases"]["loss"]
        dpo = estimate_training(method=method, objective="dpo", **kw).to_json()["phases"]["loss"]
        assert dpo["logits"] == 2 * sft["logits"]
        extra = dpo["frozen_weights"] - sft["frozen_weights"]
        if method == "lora":  # the reference is the base with the adapter disabled
            assert extra == 0
        else:  # a second copy of every weight in bf16
            params = estimate_training(method=method, **kw).model.params
            assert extra == 2 * params


def test_orpo_pairs_without_a_reference_and_kto_references_without_pairs():
    # TRL: ORPO concatenates chosen and rejected and has no reference model; KTO takes one
    # completion per example and a reference model, its KL completions run under no_grad
    kw = dict(model="meta-llama/Llama-3.1-8B", seq=1024, micro_batch=2, attention="flash",
              grad_checkpointing=True, method="full")

    def loss_phase(objective):
        return estimate_training(objective=objective, **kw).to_json()["phases"]["loss"]

    sft, dpo, orpo, kto = (loss_phase(o) for o in ("sft", "dpo", "orpo", "kto"))
    assert orpo["logits"] == dpo["logits"] == 2 * sft["logits"]
    assert orpo["frozen_weights"] == sft["frozen_weights"] < dpo["frozen_weights"]
    assert kto["logits"] == sft["logits"]
    assert kto["frozen_weights"] == dpo["frozen_weights"]
    lora_kto = estimate_training(objective="kto", **{**kw, "method": "lora"}).to_json()
    lora_sft = estimate_training(objective="sft", **{**kw, "method": "lora"}).to_json()
    assert lora_kto["phases"]["loss"] == lora_sft["phases"]["loss"]  # the adapter switched off


GiB = 1024**3
_QWEN3_NOTEBOOK = dict(model="Qwen/Qwen3-14B", framework="unsloth", unsloth="2025.6.1",
                       method="qlora", seq=2048, micro_batch=2, grad_accumulation=4,
                       lora_rank=32, lora_targets="all-linear", optimizer="adamw-8bit")


def test_unsloth_keeps_the_logits_below_compute_capability_7_5():
    # unslothai/unsloth#2700: the Qwen3 (14B) notebook's setup (max_seq_length 2048, batch 2,
    # r 32, adamw_8bit) trained on Colab's T4 and ran out of memory on a V100 16GB (Unsloth
    # 2025.6.1, 'CUDA: 7.0'). unsloth_zoo imports Cut Cross-Entropy only from compute
    # capability 7.5 ("Fix V100"), so on the V100 the 16-bit logits and accelerate's fp32 copy
    # of them are alive at the loss, and the step fills the card.
    t4 = estimate_training(gpu="t4", **_QWEN3_NOTEBOOK)
    v100 = estimate_training(gpu="tesla v100 pcie 16gb", **_QWEN3_NOTEBOOK)
    assert (t4.settings.loss, v100.settings.loss) == ("cut", "fused")
    assert v100.peak.name == "loss"
    assert v100.peak.get("logits") == 2 * 2048 * 151_936 * (2 + 4)
    assert t4.fit.fits  # trained
    assert v100.fit.headroom_bytes is not None and v100.fit.headroom_bytes < 0.5 * GiB  # OOM
    assert any("capability 7.5" in note for note in v100.assumptions)


def test_unsloth_fallback_leaves_explicit_choices_and_new_gpus_alone():
    explicit = estimate_training(gpu="tesla v100 pcie 16gb", loss="cut", **_QWEN3_NOTEBOOK)
    assert explicit.settings.loss == "cut"  # what the user names is what is estimated
    assert estimate_training(gpu="a100 sxm4 80gb", **_QWEN3_NOTEBOOK).settings.loss == "cut"
    # the same import also needs torch 2.4
    old_torch = estimate_training(gpu="a100 sxm4 80gb", torch="2.3", **_QWEN3_NOTEBOOK)
    assert old_torch.settings.loss == "fused"
    # other frameworks' defaults do not depend on the GPU
    trl = estimate_training(gpu="tesla v100 pcie 16gb", framework="trl", method="qlora",
                            model="Qwen/Qwen3-0.6B")
    assert trl.settings.loss == "standard"


def test_unsloth_loads_its_dynamic_4bit_checkpoint_at_its_published_size():
    # unslothai/notebooks@80f99e1e nb/Qwen3_(14B).ipynb (Unsloth 2025.4.5, Tesla T4):
    # model_name "unsloth/Qwen3-14B", load_in_4bit downloads three shards, 4.97G + 4.59G +
    # 1.56G (the Hub's decimal GB), the Dynamic 4-bit checkpoint the loader maps the name to;
    # plain NF4 of Qwen3-14B (every linear layer 4-bit, embeddings and head 16-bit) is 9.93 GB.
    t4 = estimate_training(gpu="t4", **{**_QWEN3_NOTEBOOK, "unsloth": "2025.4.5"})
    plain = estimate_training(gpu="t4", base_checkpoint="plain",
                              **{**_QWEN3_NOTEBOOK, "unsloth": "2025.4.5"})
    assert t4.settings.base_checkpoint == "unsloth-dynamic"
    published = (4.97 + 4.59 + 1.56) * 1e9
    assert abs(t4.peak.get("frozen_weights") - published) <= 0.015e9  # the bars' rounding
    assert abs(plain.peak.get("frozen_weights") - 9.93e9) < 0.01e9
    # the same notebook logged "Peak reserved memory = 14.066 GB" (GiB: max_memory_reserved /
    # 1024**3) after 30 steps; the dynamic checkpoint's 1.1 GiB bring the estimate nearer
    logged = 14.066 * GiB
    assert abs(t4.peak.total - logged) < abs(plain.peak.total - logged)
    assert t4.peak.total < logged and t4.fit.fits
    # a '-bnb-4bit' name is loaded as given (loader_utils.__get_model_name), and other frameworks
    # quantize the original checkpoint with BitsAndBytesConfig: plain NF4
    trl = estimate_training(gpu="t4", model="Qwen/Qwen3-14B", framework="trl", method="qlora")
    assert trl.settings.base_checkpoint == "plain"


def test_dynamic_checkpoint_needs_an_nf4_base_and_is_plain_where_its_size_is_unknown():
    import pytest

    from vramest.errors import InputError

    with pytest.raises(InputError, match="base-checkpoint"):
        estimate_training(model="Qwen/Qwen3-14B", method="qlora", base_dtype="int8",
                          base_checkpoint="unsloth-dynamic")
    unknown = estimate_training(model="Qwen/Qwen3-0.6B", framework="unsloth", method="qlora")
    plain = estimate_training(model="Qwen/Qwen3-0.6B", framework="unsloth", method="qlora",
                              base_checkpoint="plain")
    assert unknown.peak.get("frozen_weights") == plain.peak.get("frozen_weights")
    assert any("not in vramest's table" in note for note in unknown.assumptions)
