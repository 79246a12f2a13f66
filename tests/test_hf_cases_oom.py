"""transformers (--engine hf) cases from public threads where the user ran out of memory, or ran
the same setup on a larger card (real_cases.jsonl, fit split): the logged outcome is what each
test holds the estimate to."""

from __future__ import annotations

from functools import lru_cache

from vramest.frozen import replace
from vramest.validation.real_cases import Case, load_cases, replay


@lru_cache(maxsize=1)
def _cases() -> dict[str, Case]:
    return {c.id: c for c in load_cases()}


def _replayed(case_id: str):
    case = _cases()[case_id]
    assert case.split == "fit", case_id  # only the fit half is tuned against
    return replay(case)


def test_instruct_eval_float32_llama7b_oom_on_4090_runs_on_a100_40gb():
    # declare-lab/instruct-eval#29: LlamaForCausalLM.from_pretrained(path) with no torch_dtype
    # under transformers 4.29.0 (the repo's pin) loads float32; "on a single 4090 GPU ... will
    # cause out-of-memory", the same command ran on an A100 40GB
    oom = _replayed("hf-instructeval29-4090-llama7b-fp32")
    ran = _replayed("hf-instructeval29-a100-40gb-llama7b-fp32")
    assert oom.fits is False and ran.fits is True
    # the 4.x default dtype is what decides it: given torch_dtype=float16 the 4090 holds it
    half = replay(replace(_cases()["hf-instructeval29-4090-llama7b-fp32"], dtype="fp16"))
    assert half.fits is True


def test_mixtral_nf4_does_not_load_on_a_4090():
    # hiyouga/LlamaFactory#2373: --quantization_bit 4 (bitsandbytes nf4) on one RTX 4090 runs
    # out of memory; under 4.x each expert is its own nn.Linear and is quantized, and the
    # 4-bit weights with the 16-bit attention, router and embeddings still exceed 24 GB
    r = _replayed("hf-llamafactory2373-4090-mixtral-nf4")
    assert r.fits is False


def test_llama65b_fp16_on_one_a100_80gb_runs_out_of_memory():
    # EleutherAI/lm-evaluation-harness#1804: lm-eval's hf model (dtype "auto": float16) put
    # LLaMA-65B on one A100 80GB: out of memory while loading
    r = _replayed("hf-lmeval1804-a100-llama65b-fp16")
    assert r.fits is False


def test_accelerate_max_memory_maps_are_counted_not_expressible():
    # the BLOOM blog's accelerate runs pass a per-GPU max_memory map that --engine hf does not
    # take: kept, and counted with the reason rather than replayed on an even split
    r = _replayed("hf-bloomblog-8xa100-bloom-bf16-bs64")
    assert r.fits is None and "max_memory" in r.reason
