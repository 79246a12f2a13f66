"""llama.cpp deployments added from public threads (real_cases.jsonl, branch llamacppcases): the
fit-half outcomes and logged buffers the existing llama.cpp rules already reproduce, held so a
later change to those rules cannot lose them. Each row is a user's logged outcome or buffer."""

from __future__ import annotations

from functools import cache

from vramest.units import MIB
from vramest.validation.real_cases import Case, load_cases, replay


@cache
def _case(case_id: str) -> Case:
    return next(c for c in load_cases() if c.id == case_id)


def test_phi35_mini_at_its_128k_default_overflows_a_64gb_mac_through_kv_and_scores():
    # ggml-org/llama.cpp #9112: Phi-3.5-mini Q8_0 under llama-server (2024-08, n_ctx defaults to
    # the model's 131072, flash attention off) on a 64 GB Mac: "Metal KV buffer size = 49152.00
    # MiB", "Metal compute buffer size = 8484.00 MiB" against a 51539.61 MB working set, then
    # kIOGPUCommandBufferCallbackErrorOutOfMemory
    c = _case("llamacpp-9112-m2-64gb-phi35mini-q8-128k")
    assert c.split == "fit" and c.outcome == "oom"
    r = replay(c)
    assert r.fits is False
    assert r.measured == 8484.00 * MIB
    assert r.predicted is not None and abs(r.predicted / r.measured - 1) < 0.05


def test_gpt_oss_120b_with_22_expert_layers_on_the_host_fits_a_5090_at_64k_with_q4_cache():
    # LocalLLaMA 1ng0fmv: llama.cpp b6318, gpt-oss-120b F16 GGUF (MXFP4 experts), -ngl 999
    # --n-cpu-moe 22 -c 65536 -fa -ub 2048 -ctk q4_0 -ctv q4_0 on an RTX 5090: it loaded and ran
    c = _case("llamacpp-reddit1ng0fmv-5090-gptoss120b-ncmoe22-64k-q4kv")
    assert c.split == "fit" and c.outcome == "worked"
    assert replay(c).fits is True
