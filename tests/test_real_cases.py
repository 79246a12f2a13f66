"""The real-world case set: integrity of the data, and the agreement it measures held as floors
(later mechanism fixes may only raise them)."""

from __future__ import annotations

import json
import statistics
from functools import lru_cache
from pathlib import Path

import pytest

from vramest.inference.verdict import BANDS, DOES_NOT_FIT, FITS, TIGHT, verdict
from vramest.validation import accuracy
from vramest.validation.real_cases import (
    DEFAULT_CASES,
    FIGURE_KINDS,
    OUTCOMES,
    load_cases,
    replay_all,
    score,
    split_of,
)


@lru_cache(maxsize=1)
def _replays():
    return replay_all(load_cases())


def test_every_case_is_sourced_and_complete():
    cases = load_cases()
    assert len(cases) >= 60
    assert len({c.id for c in cases}) == len(cases)
    for c in cases:
        assert c.url.startswith("https://"), c.id
        assert len(c.quote) > 20, c.id
        assert c.outcome in OUTCOMES, c.id
        assert c.split == split_of(c.id), c.id
        assert c.model and c.gpu and c.engine, c.id
        if c.figure:
            assert c.figure["metric"] in FIGURE_KINDS, c.id
            assert float(c.figure["value"]) > 0 or c.figure["metric"] == "kv_cache_bytes", c.id
    raw = [json.loads(line) for line in Path(DEFAULT_CASES).read_text().splitlines() if line]
    assert all({"url", "quote", "outcome", "split"} <= set(r) for r in raw)


def test_both_outcomes_and_both_splits_are_represented():
    cases = load_cases()
    assert sum(c.outcome == "worked" for c in cases) >= 25
    assert sum(c.outcome != "worked" for c in cases) >= 25
    for split in ("fit", "heldout"):
        assert sum(c.split == split for c in cases) >= 20


def test_unexpressible_cases_are_counted_with_a_reason():
    replays = _replays()
    missing = [r for r in replays if r.fits is None]
    assert missing and all(r.reason for r in missing)
    total = sum(sum(score(replays, s).not_expressible.values()) for s in ("fit", "heldout"))
    assert total == len(missing)


# Measured 2026-12-03 on this branch (before the engine-version, llama.cpp-split and catalog
# fixes of issue #18 were merged); floors, so a fix may only raise them.
# The catalog branch made four more held-out refusals expressible (RTX 2080 Ti, A800, Command-R,
# Ollama's own accounting): three agree; the fourth, vLLM V1 refusing Qwen3-8B on an A800 at
# 0.4 utilisation (vllm#17431), is the vLLM-version mechanism. Counts rose from 8/10 to 11/14.
# Treating llama.cpp's and Ollama's --num-gpus as the layer split it is (no head has to divide)
# made the three-GPU cases expressible: two disagree (a 3x P40 OOM on llama.cpp b1428 and an
# Ollama 0.11.3 regression over three mixed GPUs), so the shares fell while no case turned wrong.
# Taking fine-tune and Ollama names as the CLI does (vramest.model.names) made two held-out
# refusals expressible: Qwen1.5-14B-Chat agrees; deepseek-coder-6.7b on 2x T4 under vLLM 0.4
# (vllm#5248, 507 blocks, 1,054 estimated) does not, so the share fell from 11/15 to 12/17.
# The coverage branch made 12 more cases expressible (i-quants, f32, NVIDIA A2, exllama /
# aphrodite / llamafile / ik_llama.cpp, GLM-4-32B-0414, Qwen2.5-VL-72B). No case scored before
# changed its verdict; of the two new held-out refusals Qwen2.5-VL-72B on 4x A100-40GB agrees
# and Aphrodite on an RTX 4090 (a vLLM fork counted with vLLM 0.3.3's rules: +68% blocks) does
# not, so the held-out refusal share went from 12/17 to 13/19.
# The fine-tuning cases (issue #18 item 8) moved two shares down. Fit, worked side 27/28 ->
# 32/36: two published longest-context Unsloth runs sit at the card's limit, where an estimate
# within 2% still lands inside the 5% reserve; and Unsloth (Old) 70B at 48,447 tokens on an A100,
# replayed with PEFT's layers as its case states, went 1 GiB past the reserve when bitsandbytes'
# 4-bit matmuls started keeping their inputs (with Unsloth's own kernels the estimate allows
# twice that length, a gap not explained yet); all three flagged "tight". Held-out, OOM side
# 13/19 -> 14/21: the 8 GB HF + FA2 OOM agrees; LLaMA-Factory + Unsloth (May 2024, before Cut
# Cross-Entropy) QLoRA on Llama-3-8B at a 102,400 cutoff on an A100 80GB (LlamaFactory#3638)
# does not: the same run filled the card at 65,536 tokens, about three times what Unsloth's
# kernels and fused loss account for. The other two shares rose (fit OOM 13/15 -> 14/16,
# held-out worked 17/18 -> 32/33).
# Issue #18's vLLM side (19 cases added, 101 in all): the held-out refusal share rose from 13/19
# to 18/21 and the worked share from 17/18 to 23/23 (other processes' memory per vLLM release,
# V0 graph capture at TP > 1, the 0.2.5 profile's held all-reduce inputs, llama.cpp's old row
# split, 0.6.4's non-torch memory, RoPE-scaled max_model_len, float32 checkpoints in 16 bit).
# The fit worked share reads 31/33 after 27/28: of the five worked cases added to that split,
# vllm-2136-2x4090-codellama13b-025 (0.2.5, 112 blocks logged, 0 estimated) is wrong; every
# case scored before keeps its verdict or turns right.
# Both branches merged (127 cases): fit 21/23 and 36/41, held-out 19/23 and 38/38.
# Two Mac cases (a 34B Q5_K_M on a 32 GB M2 Max, a 16k-context 6.7B on a 16 GB M1) are OOMs
# past Metal's working set (two thirds of 32 and 16 GB); both agree. Counting bitsandbytes'
# saved 4-bit inputs only before 0.43.2 (the two Jan 2024 axolotl runs say so) turned one fit
# worked case right.
# Issue #18, 35 more cases (168 with main's 4): Mixtral/Gemma/DeepSeek/Yi/Qwen3 on consumer,
# AMD and Apple GPUs, over Ollama, TGI, SGLang, ExLlamaV2 and old vLLM releases. Main's code
# on the 168: fit 29/35 and 46/52, held-out 25/33 and 44/44. The rules added here (vLLM's
# --pp in its start-up figures, vLLM < 0.3 AWQ split-k outputs, DeepSpeed ZeRO-3 sub groups,
# axolotl's double-quantized QLoRA base) turned 3 verdicts right and none wrong. The held-out
# OOM share fell from 20/24 only by new held-out cases that fail (a ZeRO-2 run on 8 A100
# 40GB, an MI60 under Vulkan, a bitsandbytes model over vLLM V0 pipeline stages).
# Issue #18, 20 cases from 2026 threads (188 in all): Qwen3.5/3.6, Nemotron 3 Super, GLM-4.7-Flash
# and Qwen3-VL on RTX 5090/5080/4090/3090, RTX PRO 6000, H100, DGX Spark and Macs, over vLLM
# 0.2x, llama.cpp b8xxx, ik_llama.cpp and Ollama 0.17. No case scored before changed its verdict
# or its figure. Fit 32/38 and 51/55 (from 29/35 and 48/52); held-out 27/36 and 52/53: the new
# held-out cases that disagree are an OOM of vLLM on a DGX Spark at 0.92 of its unified memory,
# a llama.cpp b8284 cudaMalloc of 141 GiB for Qwen3.5-397B with every expert on the host (an
# engine bug report), and Qwen3.5-27B Q4_K_M at 120K tokens on one RTX 3090, whose 23.79 GiB in
# use the estimate puts at 23.68 GiB but past the card's usable share.
# Then held-out OOM 27/36 -> 31/36 by mechanisms (DGX Spark's OS share of unified memory,
# DeepSpeed ZeRO-2 buckets, accelerate's fp32 copy of Unsloth's logits, Vulkan's single
# allocations); fit OOM 34/40 with Strix Halo's Vulkan case (llama.cpp #15009) and the T4 whose
# OOM is accelerate's fp32 copy of the logits (unsloth #465); fit worked 52 -> 51:
# Unsloth's pre-CCE 70B run at its longest context (48,447 tokens) now lands 0.2% from the
# card, inside the tight band, and the boolean falls on the other side of the 5% reserve.
# Issue #18, 15 serving-engine cases (206 in all: TGI 6, SGLang 1, Ollama 5, vLLM 3), taken as
# found. Main's code on them: fit 35/45 and 52/57, held-out 33/40 and 56/57 (two held-out vLLM
# cases use data parallelism, not modelled, and one TGI model is not in the catalog). Ollama's
# context floor for gpt-oss and the architectures it runs without flash attention turned
# ollama#11711 right: fit 36/45. The OOM shares fell only by new cases that disagree: a Gemma 3
# TGI warm-up whose image takes SDPA's masked path, a GPTQ refusal at 7% memory use (engine
# bug), a Mistral AWQ warm-up whose cause the thread does not show, an SGLang ROCm DP-attention
# refusal its own log does not explain, and an Ollama 0.12.6 regression.
# Then 4 SGLang cases (210) and vLLM's data parallelism (--data-parallel-size: an engine's
# ranks split attention and the dense weights, every GPU an eighth of the experts): both
# DP 8 refusals of Qwen3-Coder-480B on 8 H20 (vLLM recipes PR #12) became expressible and agree
# (62.00 GiB needed, as logged; the available KV +6.1% and +5.4%). Held-out OOM 35/43; the fit
# share fell to 36/46 and held-out gained one disagreeing case, both new SGLang cases (a runtime
# OOM of a 1.5B whose allocation the thread does not show, EAGLE's draft model not modelled).
# Issue #18, 25 fine-tuning cases (235 in all with the serving cases above): the QwenLM/Qwen
# README's memory table (LoRA and GPTQ Q-LoRA of Qwen-7B/14B/72B at 256 and 8192 tokens, full
# ZeRO-2 on 2 A100s), two more rows of torchtune's table, ten axolotl example READMEs
# (Devstral/Magistral 24B QLoRA, Llama-2-7B QLoRA and 8-bit LoRA on an RTX 4090, gpt-oss-20b/120b
# LoRA and FSDP2 full fine-tunes) and axolotl PR #2412 (SmolLM2-1.7B full at 16,384 tokens, OOM
# on one H100). Mechanisms they showed: DeepSpeed's reduce_bucket_size from the config (2e8
# there, 5e8 assumed before), a model's own 16-bit loss under DeepSpeed's engine (no autocast,
# no fp32 logits) and torchtune's optimizer in backward. No verdict scored before changed. Two
# shares fall only by new cases that disagree: fit OOM 36/46 -> 36/47 (SmolLM2: estimated 61 GB
# of the H100's 81.6 usable, an OOM not explained); held-out worked 56/57 -> 68/71 (full
# Qwen-7B ZeRO-2 on 2 A100s at 69.6 and 81.0 GB per GPU, estimated 81.9, inside the tight band).
# The fit worked share rose, 52/57 -> 62/67.
# Issue #18, llama.cpp / KoboldCpp / ExLlama / transformers deployments (24 cases, 259 in all
# with the serving and fine-tuning cases above): llama-bench and llmfit speed rows on RTX
# 2080/2080 Ti/4090, RX 6800 XT/7900 XT (Vulkan, ROCm), KoboldCpp partial offload, a layer split
# over a 4070 Ti and a 3090 Ti, gpt-oss-120b row split, DeepSeek-V3 over llama-cpp-python,
# FastChat fp16/int8. Every new case agrees but one not expressible (Ministral-8B is not in the
# catalog). Mechanisms: -cmoe before b8301 leaves a fused GGUF's gate/up experts on the GPU
# (issue #20431 now agrees: 144817 MiB logged, 143923 estimated), DeepSeek's per-head KV before
# PR #12801 (llama-cpp-python #1944), EXL2 weights (exllamav2 #677 expressible, agrees; #761,
# QwQ-32B at 3 bits with a Q4 cache of 40960 tokens on a T4, agrees). Held-out OOM 35/43 ->
# 39/46, fit worked 62/67 -> 73/78, held-out worked 68/71 -> 78/81.
# Issue #18, serving mechanisms from the engines' source (sglang_spec.py, sglang.py, tgi.py):
# SGLang's aiter backend on AMD takes mem_fraction_static x 0.85 above 8192 tokens of context
# (issue #7691, DeepSeek-R1 bf16 on 8 MI300X, now refused as logged), TGI v3.2's image warm-up
# on Gemma 3 (issue #3130, now refused), SGLang's speculative draft (GLM-4.5-Air's EAGLE case
# still says fits: its draft is one NextN layer) and one more SGLang EAGLE case (PR #2150,
# worked, agrees). Held-out OOM 39/46 -> 40/46, fit OOM 36/47 -> 37/47, fit worked 73/78 -> 74/79.
# Models users name that the catalog lacked (catalog-gaps): Phi-3-small-128k on TGI (#2040, fit,
# worked, agrees) and Ministral-8B on llama.cpp (llmfit PR #773, held-out, worked, agrees; decode
# 68.2 vs 70.5 tok/s reported) are now replayed. Fit worked 74/79 -> 75/80, held-out 78/81 -> 79/82.
# Current releases (cases-recent): vLLM online FP8 on one 141 GB H20 (#31273: 0.12.0 loads, fit,
# agrees; 0.13.0 runs out of memory loading, fit, now agrees through the loading-peak rule) and
# Qwen3-VL-235B on 8 A100 80GB with vLLM 0.11.0 (Qwen3-VL #1684, both OOM, both still "fits":
# with the encoder profile modelled since, vLLM's own accounting still leaves room). The OOM ratios fall only
# because of these two honest misses: fit 37/47 -> 38/49, held-out 40/46 -> 40/47; fit worked
# 75/80 -> 76/81. Two 0.29 cases (#57475, Qwen3.8-27B) are counted as not expressible.
# Ollama over different GPUs (engines/ollama_mixed.py): the two #11744 cases now name their real
# GPUs (2x RTX 4090 + RTX 4070, not 3x 4090). 0.11.3's OOM now agrees (num_gpu 25 split 12,12,1
# in the ratio of the estimate, the 4090s 130 MiB over: "tight"); 0.11.2's run that worked is
# now a miss (split 4,4,0 -> 13,12 on the 4090s, 1.8 GiB over), the mechanism as read does not
# explain why 0.11.2 ran: fit OOM 40/52 -> 41/52, fit worked 78/83 -> 77/83.
# Issue #18, 35 serving-engine cases taken as found (branch cases-serving; 307 in all): vLLM 21
# (0.2.0-0.8.5, V0 and V1), TGI 8 (0.9.3-2.3.0), Ollama 4 (0.1.32-0.2.1), SGLang 2. No case scored
# before changed its verdict; the OOM shares fall only by new cases that disagree. Fit OOM/refused
# 41/52 -> 45/62 (new: 4 of 10 agree), fit worked 77/83 -> 83/89 (6 of 6); held-out 41/48 -> 48/61
# (7 of 13), held-out worked 79/82 -> 83/86 (4 of 4); every new Ollama case agrees. The new
# misses, by mechanism: TGI 0.9.4-1.1 GPTQ warm-ups on T4/L4 (#755, #1168, #940) and TGI 2.3's
# CUDA-graph warm-up for 405B FP8 (#2572); an int4 Gemma 3 checkpoint on V0 (#16199: 17.61 GiB of
# weights logged, 15.80 estimated, likely the parts it keeps in 16 bit; 3,584 KV tokens, 9,712
# estimated); vLLM 0.8.5 CUDA graphs for Qwen3-30B-A3B at TP 4 on A10s (#17469, works eager);
# early AWQ profiles with a long max_model_len on a 12 GB RTX 3060 (#1479, #1234); a garbage-
# collection-dependent peak (PR #9352, 69 vs 70 sequences); an SGLang runtime image OOM (#6082);
# Mistral Small 3.1 AWQ on a 24 GB card (#16128). Two TGI cases before v0.9.4 are not expressible.
# Issue #18, 36 local and fine-tuning cases (cases-local, 308 in all): llama.cpp (llama-bench and
# main logs of XiongjieDai/GPU-Benchmarks-on-LLM-Inference, ramalama, an Apertus ROCm OOM kept as
# not expressible), KoboldCpp, ExLlamaV2 (#47 and its README), FSDP-QLoRA (Answer.AI's benchmark
# notes), PEFT's DeepSpeed/FSDP guides and LLaMA-Factory/Unsloth threads, taken as found. No case
# scored before changed its verdict. Every share falls, only by new cases that disagree: fit OOM
# 41/52 -> 42/55 (LLaMA-Factory full fine-tunes under ZeRO-2 on 8 V100 and ZeRO-3 on 8 RTX 3090,
# both "tight"), fit worked 77/83 -> 84/93 (llama.cpp F16 8B at 4096 tokens on an RTX 4080 and
# Q4_K_M 8B on an 8 GB M1: buffers exact, but the 1 GiB runtime overhead and the 5% reserve put
# them over), held-out OOM 41/48 -> 47/56 (EXL2 70B at 4096 tokens on an A10G, "tight"; Unsloth
# Gemma-3-27B at 17,500 tokens on an H200), held-out worked 79/82 -> 92/96 (the M1 8 GB main run).
# Both branches together (343 cases): fit 46/65 and 90/99, held-out 54/69 and 96/100.
# Issue #18 item 8 (training mechanisms from the frameworks' source), on the 343 cases: Unsloth's
# LoRA matmuls before 2025.3 add the adapter's product through a temporary of the base output's
# size (kernels/utils.py matmul_lora `out += (X @ A) @ (s * B)`; in place since unsloth@4f16602),
# --unsloth RELEASE. The Llama 3.1 8B + CCE context table moved from -7..-19% to -2..-7% of its
# card sizes (the table is exactly linear, 18,876 tokens per 4 GB: a fitted line of Unsloth's
# own memory counter, whose slope the estimate now matches within 2-8%); with the gpt-oss rules
# below the training-peak medians fell, fit 6.9% -> 6.6%, held-out 13.2% -> 9.3%. Three
# "longest context that fills the card" rows now sit 2-3.5% under their card, inside the 5%
# reserve every fit keeps, so their boolean turns "does not fit" (all three 'tight'): fit worked
# 90/99 -> 88/99 (Llama 3.1 8B at 21,848 and 40,724 tokens on 12 and 16 GB), held-out worked
# 96/100 -> 95/100 (Llama 3.3 70B at 89,389 tokens on 80 GB). No OOM case changed its verdict.
# gpt-oss's indexing expert loop (transformers 4.55, --moe-experts indexed) and FSDP's unsharded
# gradients moved axolotl's logged FSDP2 peaks from -42/-23/-69% to -24/-9/-17% and changed no
# verdict.
# vLLM's model runner v2 (engines/vllm_runner.py: the sampler's warm-up and the CUDA graphs
# outside the budget, vLLM PRs #48601 and #57926): the PR #48601 case, whose command sets
# VLLM_USE_V2_MODEL_RUNNER=1, now runs out of memory as logged and its KV figure went from
# -11.6% to +1.2% (its profile holds the logits in the compute dtype, not their fp32 upcast);
# one more fit OOM case agrees, no other case changed.
# vLLM's pipeline stages each as get_pp_indices lays them out (engines/vllm_pipeline.py), the
# fullest binding the KV cache: DeepSeek-V3 at TP 8 x PP 4 on RTX 4090s (DeepSeek-V3#205) has
# 16.50 GiB per GPU on the first stage (16.97 logged by its driver) and 21.65 on the last,
# which has no room left: OOM as reported. One more fit OOM case agrees, no other case changed.
# vLLM V1 where its custom all-reduce is off (more than two GPUs without NVLink to every peer,
# startup.graph_peer_bytes): NCCL inside the captured graphs at V0's measured cost per peer.
# Qwen3-30B-A3B at TP 4 on four A10s (vllm#17469, 0.8.5) now runs out of memory with graphs and
# starts eager, as reported; no other case changed. The three together on the 343 cases: fit
# OOM 46/65 -> 48/65, held-out OOM 54/69 -> 55/69, the worked sides unchanged; vLLM KV median
# fit 8.4% -> 4.9%, held-out 5.2% unchanged.
# llama.cpp judged as the device sees it (engines/llamacpp_device.py, branch llamacpp-fit): the
# buffers plus the measured runtime hold (456 MiB, PR #15860; none on Metal) and, in builds that
# multiplied through cuBLAS in F16, ggml's pool (the F16 attention scores before PR #10015, the
# F16-dequantised weights before PR #8075), against the driver's total or Metal's working set;
# no blanket 1 GiB + 5%. Worked sides rise: fit 88 -> 91/99 (RTX 4080 F16 8B pp4096 and tg4096,
# M1 8 GB pp4096), held-out 95 -> 97/100 (M1 8 GB main, thinksmart Qwen3.5-27B 120k on a 3090).
# The OOM sides FALL by changed verdicts, which this table's rule forbids -- left for the lead
# to accept or refuse: fit 48 -> 47/65 (kaiwu RTX 5080 under Windows, "tight"), held-out
# 55 -> 53/69 (3x P40 b1428 row split, and KoboldCpp 1.50.1 on 2x 3060 under Windows replayed
# at today's llama.cpp rules, both "tight"). A desktop on the card is not modelled (--reserve).
# Issue #18, 41 cases from 2025-2026 sources (cases-recent2, 384 in all): vLLM 0.7.1-0.11.0 logs
# (dennislee22/vLLM-benchmarking, llm-d-benchmark's H100 table, vllm#22173, #15815), axolotl
# example READMEs, Unsloth notebook outputs and unsloth#2700, a llama.cpp b5489 Jetson log. No
# case scored before changed its verdict. On main after llamacpp-fit: fit 47/65 -> 50/70 and
# 91/99 -> 112/120; held-out 53/69 -> 54/71 and 97/100 -> 108/113 (the new cases: 3 of 5, 21 of
# 21, 1 of 2, 11 of 13). The OOM shares fall only by new cases that disagree: unsloth#2700's
# Qwen3 14B/1.7B/0.6B QLoRA OOMs on a V100 16GB (not explained by memory in the thread); held-out
# worked also has two new misses, vLLM 0.11.0 gpt-oss-120b and Qwen3-32B (16k) on one H100, both
# started with 3.3-4.5 GiB of KV (the estimate's non-torch 0.6 GiB vs 0.13 measured at TP 1,
# 0.10.1's MXFP4 weights for 0.11.0).
# Issue #18 item 8, the fit's rule and two DeepSpeed OOMs (branch train-fit): the training fit
# keeps its 5% (see vramest/training/estimate.py: the logs' driver-visible total less their
# non-PyTorch memory leaves about what 95% less the 1 GiB context does, and the card-edge Unsloth
# rows are over the card, not inside the reserve). torch's single-tensor AdamW before 2.0
# (--torch 1.13: two partition-sized temporaries) turns LLaMA-Factory #1221's ZeRO-2 OOM right,
# and ZeRO-3's step keeping its flat 16-bit gradient buffer beside the sub group's new fp32
# gradients (stage3.py grad_partitions_flat_buffer; 4 B, not 2, over the 16-bit ones) turns
# #5977's (Llama-3-8B on 8 RTX 3090): fit OOM 47/65 -> 49/65 after the rules above. No
# other verdict or figure changed; training-peak medians stay 6.6% (fit) and 9.3% (held-out).
# vllm-awq (on main's 384 cases): vLLM before 0.3 runs every AWQ layer through awq_gemm's
# split-k partials, and the caching allocator keeps the QKV partials' segment while the gate/up
# partials take their own (startup.awq_profile_resident_bytes): 7B AWQ at 16384 tokens on a
# 12 GB RTX 3060 runs out of memory in the profiling forward (vllm#1234, #1479), 2048 tokens
# still fits: held-out OOM 54/71 -> 56/71. The vllm#16199 cases name the checkpoint's group
# size (32; its logged 17.61 GiB of weights is that layout) and V0's multimodal profile runs 20
# one-picture sequences: the 4096-token launch is refused as logged (KV +171% -> +11%): fit OOM
# 50/70 -> 51/70. The RoPE caches V0 loads with the weights (vllm_rope.py) changed no verdict;
# vLLM KV median fit 3.6% -> 3.5%, held-out 5.4% unchanged. No worked case changed.
# All of the above on one tree (384 cases, after train-fit, vllm-awq and trt-serve merged): fit
# 53/70 and 112/120, held-out 56/71 and 108/113. Then vllm-v1: V1 non-torch memory from the
# start-up snapshot (0.13 GiB from 0.9.1, +0.41 per rank with the custom all-reduce) and V1's
# sampler run after the forward (the larger of the two peaks, 38.3 B per logit): Qwen3-32B at
# 16k on one H100 now starts (held-out 108 -> 109/113).
# --mxfp4-kernel triton for llm-d's vllm/vllm-openai image (triton_kernels installed: 64.38 GiB
# logged, Triton's layout 64.12, Marlin's 65.97) and its gpt-oss-120b row at the 0.95 its
# figures add up to: that run starts too (109 -> 110/113).
# llama-forks: a KoboldCpp release runs the rules of the llama.cpp build it merged
# (engines/llamacpp_forks.py): 1.50.1 is b1547, before PR #4766's layer split, so the 43
# offloaded layers of Yi-34B Q6_K are split by rows and CUDA0 holds the KV and compute buffer
# too (koboldcpp#544 runs out of memory, as logged): held-out OOM 56/71 -> 57/71. No other
# verdict changed (llamafile#372 now runs 0.8's b2701, still OOM missed); llama.cpp buffer
# medians unchanged (fit 0.7%, held-out 0.0%). Pascal's F16 scores in ggml's pool before PR
# #4682 (b1728) take the 3x P40 b1428 case (#3780) from 646 to 134 MiB headroom: still 'tight'.
FLOORS = {"fit": (53, 70, 112, 120), "heldout": (57, 71, 110, 113)}


@pytest.mark.parametrize("split", ["fit", "heldout"])
def test_verdict_agreement_does_not_fall(split):
    s = score(_replays(), split)
    failed_agree, failed_scored, worked_agree, worked_scored = FLOORS[split]
    assert s.failed_agree / max(s.failed_scored, 1) >= failed_agree / failed_scored - 1e-9
    assert s.worked_agree / max(s.worked_scored, 1) >= worked_agree / worked_scored - 1e-9
    assert s.failed_scored >= failed_scored and s.worked_scored >= worked_scored


def test_vllm_kv_error_on_heldout_does_not_grow():
    # vLLM's own runs: Aphrodite's figures (a fork counted with vLLM 0.3.3's rules by
    # assumption, +68% and +26% blocks) are in the report's median but not in this guard
    s = score((r for r in _replays() if r.case.engine == "vllm"), "heldout")
    median, rows = s.median_error["vLLM KV"]
    # 5.4% measured over vLLM's held-out figures with V1's multimodal profile and 0.8's own
    # batch defaults (Qwen2.5-VL-7B on 0.8.2: +10.4% before, -1.0% after); 5.7% before
    assert rows >= 12 and median <= 0.06


def test_a_measured_refusal_is_replayed_as_one():
    # vLLM 0.6 on an RTX 3090, Llama-3.1-8B at max_model_len 29000: refused with 23,648 tokens
    r = next(r for r in _replays() if r.case.id == "vllm-10517-3090-29k")
    assert r.fits is False
    assert r.error is not None and abs(r.error) < 0.06


# --- the error bands the three-valued verdict uses ------------------------------------------
def _p90(errors: list[float]) -> float:
    ordered = sorted(abs(e) for e in errors)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


@lru_cache(maxsize=1)
def _reference_rows():
    return accuracy.read_rows(accuracy.DEFAULT_REFERENCE_DIR / "memory.csv")


def test_bands_cover_the_measured_p90_error_of_their_kind():
    rows = _reference_rows()
    measured = {
        "vllm": [c.error for c in accuracy.vllm_engine_rows(rows)],
        "llamacpp": [c.error for c in accuracy.llamacpp_memory(rows)
                     + accuracy.llamacpp_engine_rows(rows)],
        "generic": [c.error for c in accuracy.transformers_peaks(rows)
                    + accuracy.hf_engine_rows(rows)],
    }
    for kind, errors in measured.items():
        p90 = _p90(errors)
        band = BANDS[kind].fraction
        assert p90 <= band <= p90 + 0.01, (kind, p90, band)  # derived, rounded up at most 1 pt
        assert statistics.median(abs(e) for e in errors) < band


def test_verdict_is_tight_inside_the_band_on_both_sides():
    assert verdict(10, 100) == TIGHT and verdict(-10, 100) == TIGHT
    assert verdict(101, 100) == FITS and verdict(-101, 100) == DOES_NOT_FIT


def test_json_keeps_fits_and_adds_verdict_and_band():
    from vramest.api import estimate

    # 70B int4 at 8k on one L40S: 42.1 GiB of 42.8 usable, inside the 6.5% band
    out = estimate(params="70B", dtype="int4", ctx=8192, gpu="l40s").to_json()["fit"]
    assert out["fits"] is True and out["verdict"] == "tight"
    assert out["error_band"]["fraction"] == BANDS["generic"].fraction
    assert out["error_band"]["source"] and out["error_band"]["bytes"] > abs(out["headroom_bytes"])
    assert any("--ctx" in change for change in out["what_to_change"])
    roomy = estimate(params="7B", dtype="int4", ctx=4096, gpu="h100").to_json()["fit"]
    assert roomy["verdict"] == "fits" and "what_to_change" not in roomy


def test_gpu_table_rows_carry_a_verdict():
    from vramest.api import estimate

    rows = estimate(params="70B", dtype="int4", ctx=8192, compare_gpus=True).to_json()["gpus"]
    assert {r["verdict"] for r in rows} <= {FITS, TIGHT, DOES_NOT_FIT}
    assert any(r["verdict"] == TIGHT for r in rows)


def test_vllm_tight_advice_names_a_max_model_len_that_starts():
    from vramest.api import estimate

    # at 0.9 of the card on vLLM 0.6.4, as vllm-10517 ran (the default is 0.92 from vLLM 0.20;
    # a V1 release from 0.9.1 counts 0.13 GiB of non-torch memory and starts this one roomily)
    options = {"gpu_memory_utilization": 0.9, "version": "0.6.4"}
    est = estimate(model="meta-llama/Llama-3.1-8B", gpu="rtx 3090", engine="vllm",
                   engine_options={"max_model_len": 32768, **options})
    plan = est.fit
    assert plan.verdict in (TIGHT, DOES_NOT_FIT)
    advised = next(c for c in plan.advice if c.startswith("--max-model-len"))
    tokens = int(advised.split()[1])
    after = estimate(model="meta-llama/Llama-3.1-8B", gpu="rtx 3090", engine="vllm",
                     engine_options={"max_model_len": tokens, **options})
    assert after.fit.verdict == FITS


def test_training_band_covers_the_measured_p90_of_training_peaks():
    from vramest.validation.training import peak_comparisons

    compared, _ = peak_comparisons()
    p90 = _p90([c.error for c in compared])
    assert p90 <= BANDS["training"].fraction <= p90 + 0.01


def test_training_fit_carries_the_verdict_and_its_band():
    from vramest.training import estimate_training

    fit = estimate_training(model="meta-llama/Llama-3.1-8B", method="qlora", seq=2048,
                            grad_checkpointing=True, gpu="rtx 4090").to_json()["fit"]
    assert fit["verdict"] in (FITS, TIGHT, DOES_NOT_FIT)
    assert fit["error_band"]["fraction"] == BANDS["training"].fraction
    unplaced = estimate_training(model="meta-llama/Llama-3.1-8B", method="qlora").to_json()["fit"]
    assert unplaced["verdict"] is None and unplaced["error_band"] is None


# --- engine rules the new cases exposed ------------------------------------------------------
def test_vllm_pipeline_stages_reach_the_start_up_figures():
    # DeepSeek-V3 over 4 nodes of 8 RTX 4090 (TP 8 x PP 4, vLLM 0.6.6): "Loading model
    # weights took 16.9687 GB" per GPU (DeepSeek-V3#205). Before, each GPU held all 61 layers'
    # share of TP 8 (84 GB, +362%).
    r = next(r for r in _replays() if r.case.id == "vllm-dsv3-205-32x4090-pp4")
    assert r.error is not None and abs(r.error) < 0.2
    from vramest.api import estimate

    one = estimate(model="meta-llama/Llama-3.1-70B", gpu="h100", num_gpus=4, engine="vllm",
                   profile="none").engine_report
    two = estimate(model="meta-llama/Llama-3.1-70B", gpu="h100", num_gpus=8, pp=2,
                   engine="vllm", profile="none").engine_report
    assert one is not None and two is not None
    assert two.weights_bytes < 0.55 * one.weights_bytes  # half the layers on each GPU


def test_vllm_before_030_holds_awq_split_k_outputs():
    """vLLM 0.2.x ran every AWQ layer through awq_gemm with split_k_iters 8; its profiling
    forward held 8 partial outputs of the widest layer. Mixtral AWQ on 2 x A10 (0.2.7,
    --enforce-eager, TP 2) went out of memory (vllm#2382)."""
    from vramest.api import estimate
    from vramest.inference.engines.startup import AWQ_SPLIT_K

    def report(version: str):
        return estimate(model="mistralai/Mixtral-8x7B-v0.1", dtype="awq-int4", gpu="a10",
                        num_gpus=2, engine="vllm", profile="none",
                        engine_options={"version": version, "enforce_eager": True}).engine_report

    old, new = report("0.2.7"), report("0.3.0")
    tokens = old.max_num_batched_tokens
    # 0.2.7's Mixtral keeps each expert whole on its rank: 14336 outputs wide, fp16
    assert old.activation_peak_bytes - new.activation_peak_bytes == AWQ_SPLIT_K * tokens * 14336 * 2
    assert not old.starts
    r = next(r for r in _replays() if r.case.id == "vllm-2382-2xa10-mixtral-awq")
    assert r.agrees


def test_vllm_default_utilization_follows_the_release():
    """vLLM PR #38284 raised --gpu-memory-utilization's default from 0.9 to 0.92 (first in
    0.20). Measured: Qwen3.6-27B-FP8 at TP 4 on H100s with no flag logs "Free memory on device
    (77.57/79.11 GiB) on startup. Desired GPU memory utilization is (0.92, 72.78 GiB)"
    (vLLM PR #48601)."""
    from vramest.api import estimate
    from vramest.units import GIB

    total = round(79.11 * GIB)

    def budget(**options):
        est = estimate(model="Qwen/Qwen3.6-27B", dtype="fp8", gpu="h100", num_gpus=4,
                       engine="vllm", profile="none",
                       engine_options={"total_memory_bytes": total, **options})
        assert est.engine_report is not None
        return est.engine_report.budget_bytes

    assert abs(budget() - 72.78 * GIB) < 0.01 * GIB  # the default release, 0.21
    assert abs(budget(version="0.20.0") - 72.78 * GIB) < 0.01 * GIB
    assert budget(version="0.19.1") == round(0.9 * total)
    assert budget(version="0.21.0", gpu_memory_utilization=0.85) == round(0.85 * total)
    r = next(r for r in _replays() if r.case.id == "vllm-pr48601-4xh100-qwen36-27b-fp8")
    assert r.error is not None and abs(r.error) < 0.12  # 63.25 GiB logged (model runner v2)


def test_vllm_model_runner_v2_leaves_the_sampler_warm_up_outside_the_budget():
    """VLLM_USE_V2_MODEL_RUNNER=1, Qwen3.6-27B-FP8 at TP 4 on H100s (vLLM PR #48601): the KV
    cache took 63.25 GiB of the 72.78 GiB budget with the CUDA graphs (2.04 GiB) and the
    sampler outside it, then the top-k/top-p warm-up ran out of memory."""
    from vramest.api import estimate
    from vramest.units import GIB

    def report(runner: str):
        est = estimate(model="Qwen/Qwen3.6-27B", dtype="fp8", gpu="h100", num_gpus=4,
                       engine="vllm", profile="none",
                       engine_options={"model_runner": runner,
                                       "total_memory_bytes": round(79.11 * GIB)})
        assert est.engine_report is not None
        return est.engine_report

    v1, v2 = report("v1"), report("v2")
    assert v1.starts and not v2.starts and "warm-up" in v2.refusal
    assert abs(v2.kv_cache_bytes / (63.25 * GIB) - 1) < 0.05  # logged 63.25 GiB
    assert v2.cuda_graph_bytes == 0 and v2.cuda_graph_capture_bytes > 0
    advice = estimate(model="Qwen/Qwen3.6-27B", dtype="fp8", gpu="h100", num_gpus=4,
                      engine="vllm", profile="none",
                      engine_options={"model_runner": "v2"}).fit.advice
    assert advice and advice[0].startswith("--model-runner v1")
    # the same deployment with few sequences leaves the warm-up room: not a blanket refusal
    small = estimate(model="Qwen/Qwen3.6-27B", dtype="fp8", gpu="h100", num_gpus=4,
                     engine="vllm", profile="none",
                     engine_options={"model_runner": "v2", "max_num_seqs": 64}).engine_report
    assert small is not None and small.starts
    r = next(r for r in _replays() if r.case.id == "vllm-pr48601-4xh100-qwen36-27b-fp8")
    assert r.agrees and r.error is not None and abs(r.error) < 0.05


def test_vllm_model_runner_v2_is_refused_for_v0_releases():
    from vramest.api import estimate
    from vramest.errors import InputError

    with pytest.raises(InputError, match="V1-engine runner"):
        estimate(model="meta-llama/Llama-3.1-8B", gpu="h100", engine="vllm",
                 engine_options={"model_runner": "v2", "version": "0.6.3"})
    with pytest.raises(InputError, match="not a vLLM model runner"):
        estimate(model="meta-llama/Llama-3.1-8B", gpu="h100", engine="vllm",
                 engine_options={"model_runner": "v3"})


def test_vllm_pipeline_stages_split_layers_as_get_pp_indices_does():
    from vramest.inference.engines.versions import Release
    from vramest.inference.engines.vllm_pipeline import stage_layer_counts

    old, new = Release((0, 6, 6)), Release((0, 8, 0))
    # before PR #13839 the last stage took the remainder (sglang PR #6666 quotes its copy:
    # DeepSeek-R1, 61 layers at PP 8, "[7, 7, 7, 7, 7, 7, 7, 12]")
    assert stage_layer_counts(61, 8, old) == (7, 7, 7, 7, 7, 7, 7, 12)
    # from 0.8 the stages before the last take it (vLLM PR #46217: "[15,15,16,15]" and
    # "[23,24,24,23]" for 61 and 94 layers at PP 4)
    assert stage_layer_counts(61, 4, new) == (15, 15, 16, 15)
    assert stage_layer_counts(94, 4, new) == (23, 24, 24, 23)
    assert stage_layer_counts(80, 4, old) == stage_layer_counts(80, 4, new) == (20,) * 4


def test_vllm_fullest_pipeline_stage_binds_the_kv_cache():
    """DeepSeek-V3 FP8 over 4 nodes of 8 RTX 4090 (TP 8 x PP 4, vLLM 0.6.6, DeepSeek-V3#205):
    the driver's node (stage 0: the embedding, 3 dense and 12 MoE layers) logged 16.97 GiB of
    weights per GPU; the last stage holds 16 MoE layers and lm_head, and ran out of memory."""
    r = next(r for r in _replays() if r.case.id == "vllm-dsv3-205-32x4090-pp4")
    assert r.agrees and r.error is not None and abs(r.error) < 0.05
    from vramest.api import estimate

    report = estimate(model="deepseek-ai/DeepSeek-V3", gpu="rtx 4090", num_gpus=32, pp=4,
                      engine="vllm", profile="none",
                      engine_options={"version": "0.6.6", "max_model_len": 128,
                                      "gpu_memory_utilization": 0.98,
                                      "enforce_eager": True}).engine_report
    assert report is not None and not report.starts
    first, *_, last = report.stage_weights_bytes
    assert report.weights_bytes == max(report.stage_weights_bytes) == last
    assert last - first > 4 * 2**30  # 4 more MoE layers, lm_head, no dense layers
    # a model whose stages hold the same layers and one vocabulary table each splits evenly
    even = estimate(model="meta-llama/Llama-3.1-70B", gpu="h100", num_gpus=8, pp=2,
                    engine="vllm", profile="none").engine_report
    assert even is not None
    assert len(set(even.stage_weights_bytes)) == 1


def test_vllm_v1_graphs_carry_nccl_where_the_custom_all_reduce_is_off():
    """vLLM 0.8.5, Qwen3-30B-A3B at TP 4 on four A10s (PCIe): out of memory with CUDA graphs,
    starts with --enforce-eager (vLLM issue #17469). Above two GPUs without NVLink between every
    pair vLLM turns its custom all-reduce off and NCCL runs inside the captured graphs."""
    from vramest.api import estimate
    from vramest.hardware.database import default_hardware
    from vramest.inference.engines.startup import graph_peer_bytes
    from vramest.inference.engines.versions import (
        V1_NCCL_GRAPH_PEER,
        parse_version,
        vllm_rules,
    )

    r = next(r for r in _replays() if r.case.id == "vllm-17469-4xa10-qwen3-30b-a3b-graphs")
    assert r.agrees

    def report(**extra):
        return estimate(model="Qwen/Qwen3-30B-A3B", gpu="a10", num_gpus=4, engine="vllm",
                        profile="none", engine_options={"version": "0.8.5", "max_model_len": 1024,
                                                        "max_num_seqs": 1, **extra}).engine_report

    assert not report().starts and report(enforce_eager=True).starts
    rules = vllm_rules(parse_version("vllm", "0.8.5"))
    db = default_hardware()
    a10, h100 = db.find("a10"), db.find("h100")
    assert graph_peer_bytes(rules, 4, a10) == 3 * V1_NCCL_GRAPH_PEER  # NCCL, per peer
    assert graph_peer_bytes(rules, 2, a10) == 0  # two PCIe GPUs keep the custom kernel
    assert graph_peer_bytes(rules, 8, h100) == 0  # NVLink to every peer
