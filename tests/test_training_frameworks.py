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
