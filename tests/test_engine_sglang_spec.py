"""--engine sglang: speculative decoding's draft (sglang_spec.py, from SGLang's source at
v0.4.9.post6 and v0.5.14), the aiter backend's share on AMD GPUs and the default share of
v0.4.8-v0.5.3, each against a figure SGLang logged."""

from __future__ import annotations

import pytest

import vramest
from vramest.errors import InputError
from vramest.inference.engines import sglang_spec
from vramest.units import GIB

EAGLE_GLM = {"speculative_algorithm": "EAGLE", "speculative_num_steps": 3,
             "speculative_eagle_topk": 1, "speculative_num_draft_tokens": 4,
             "mem_fraction_static": 0.7}


def report(model: str, gpu: str, dtype: str, num_gpus: int, **options: object
           ) -> dict[str, object]:
    est = vramest.estimate(model=model, dtype=dtype, gpu=gpu, num_gpus=num_gpus,
                           engine="sglang", engine_options=options)
    assert est.engine_report is not None
    return est.engine_report.to_json()


def test_mtp_draft_weights_as_sglang_logs_them() -> None:
    # sgl-project/sglang PR #32468 (v0.5.19, Qwen3.8-27B INT4 at TP 2, its MTP head):
    # "Load weight end. type=Qwen3_5ForCausalLMMTP, ... mem usage=2.57 GB", of which the two
    # bf16 placeholder tables are 124,160 x 5,120 x 2 B each; Qwen3.6-27B has the same shape
    est = vramest.estimate(model="qwen/qwen3.6-27b", dtype="awq-int4")
    spec = sglang_spec.SpecOptions("EAGLE", 4, 1, 5, None, mtp=True)
    draft = sglang_spec.draft_memory(spec, est, 2, 2.0, 48, (0, 5, 19))
    assert draft.placeholder_bytes == 2 * 124_160 * 5_120 * 2
    assert (draft.weights_bytes + draft.placeholder_bytes) / GIB == pytest.approx(2.57, rel=0.06)


def test_glm45_air_eagle_drafts_with_its_own_mtp_layer() -> None:
    # zai-org/GLM-4.5 issue #3: the README's command on 4 H100s; SGLang sets the draft path to
    # the model itself and loads only its NextN layer (model_config.py at v0.4.9.post6:
    # Glm4MoeForCausalLM -> Glm4MoeForCausalLMNextN), not the model twice
    r = report("zai-org/GLM-4.5-Air", "h100", "fp8", 4, version="0.4.9", **EAGLE_GLM)
    spec = r["speculative"]
    assert isinstance(spec, dict) and spec["proposer"] == "mtp"
    assert int(spec["draft_weights_bytes"]) < 1 * GIB  # one MoE layer, FP8, a quarter per GPU
    assert r["max_running_requests"] == 48  # server_args.py: 48 under EAGLE
    # the draft's pool holds the target's tokens, one layer of 2 KV heads x 128 x K, V x 2 B
    assert spec["draft_kv_bytes_per_token"] == 1024


def test_before_0514_the_draft_comes_out_of_the_reserved_share() -> None:
    # sgl-project/sglang issue #6875: the target's pool is profiled before the draft is loaded
    plain = report("zai-org/GLM-4.5-Air", "h100", "fp8", 4, version="0.4.9",
                   mem_fraction_static=0.7)
    eagle = report("zai-org/GLM-4.5-Air", "h100", "fp8", 4, version="0.4.9", **EAGLE_GLM)
    extra = 48 * (3 * 1 + 4) + 100  # draft_runner_cache_size beyond the profile
    assert eagle["max_total_num_tokens"] == int(plain["max_total_num_tokens"]) + extra  # type: ignore[call-overload]
    spec = eagle["speculative"]
    assert isinstance(spec, dict) and spec["in_static_share"] is False
    assert int(eagle["runtime_headroom_bytes"]) < int(plain["runtime_headroom_bytes"])  # type: ignore[call-overload]


def test_from_0514_the_draft_shrinks_the_pool_instead() -> None:
    # PR #23862: both weights loaded before the profile, the cell scaled by the draft's layers
    old = report("zai-org/GLM-4.5-Air", "h100", "fp8", 4, version="0.4.9", **EAGLE_GLM)
    new = report("zai-org/GLM-4.5-Air", "h100", "fp8", 4, version="0.5.14", **EAGLE_GLM)
    spec = new["speculative"]
    assert isinstance(spec, dict) and spec["in_static_share"] is True
    rest = int(new["total_bytes"]) * 0.7 - int(new["weights_bytes"]) \
        - int(spec["draft_placeholder_bytes"])
    cell = float(new["kv_bytes_per_token"]) + float(spec["draft_kv_bytes_per_token"])
    assert new["max_total_num_tokens"] == pytest.approx(rest / cell, rel=0.001)
    assert int(new["max_total_num_tokens"]) < int(old["max_total_num_tokens"])  # type: ignore[call-overload]


def test_a_draft_that_does_not_fit_the_reserved_share_is_an_out_of_memory_error() -> None:
    # a whole 8B draft beside a 70B target at 0.95 on 4 H100s (STANDALONE, before 0.5.14)
    r = report("llama-3.1-70b", "h100", "bf16", 4, version="0.5.4", mem_fraction_static=0.95,
               speculative_algorithm="STANDALONE",
               speculative_draft_model_path="llama-3.1-8b")
    assert int(r["runtime_headroom_bytes"]) < 0  # type: ignore[call-overload]


def test_default_fraction_keeps_room_for_the_draft() -> None:
    plain = report("llama-3.1-8b", "h100", "bf16", 1, version="0.4.9")
    eagle = report("llama-3.1-8b", "h100", "bf16", 1, version="0.4.9",
                   speculative_algorithm="EAGLE3",
                   speculative_draft_model_path="jamesliu1/sglang-EAGLE3-Llama-3.1-Instruct-8B")
    delta = float(plain["mem_fraction_static"]) - float(eagle["mem_fraction_static"])  # type: ignore[arg-type]
    assert delta == pytest.approx(2 * 1024 / (int(plain["total_bytes"]) / 2**20), abs=0.002)


def test_speculative_options_are_checked() -> None:
    with pytest.raises(InputError, match="speculative_algorithm"):
        report("llama-3.1-8b", "h100", "bf16", 1, speculative_num_steps=3)
    with pytest.raises(InputError, match="multi-token-prediction"):
        report("llama-3.1-8b", "h100", "bf16", 1, speculative_algorithm="NEXTN")
    with pytest.raises(InputError, match="accepted"):
        report("llama-3.1-8b", "h100", "bf16", 1, speculative_algorithm="MEDUSA")


def test_aiter_on_amd_shrinks_the_share_and_refuses_deepseek_r1_bf16() -> None:
    # sgl-project/sglang issue #7691 (v0.4.8.post1 ROCm, 8 MI300X, --mem-fraction-static 0.95):
    # "max_total_tokens=131072 is larger than the profiled value -561981"; the aiter backend
    # takes 0.95 x 0.85 for a context above 8192 (model_runner.py model_specific_adjustment)
    r = report("deepseek-ai/DeepSeek-R1", "mi300x", "bf16", 8, version="0.4.8",
               mem_fraction_static=0.95, max_total_tokens=131072)
    assert r["mem_fraction_static"] == pytest.approx(0.95 * 0.85)
    assert r["starts"] is False
    before = report("deepseek-ai/DeepSeek-R1", "mi300x", "bf16", 8, version="0.4.6",
                    mem_fraction_static=0.95)
    assert before["starts"] is True  # the same share without the aiter rule leaves a pool


def test_default_share_of_048_to_053_is_by_the_gpus_memory() -> None:
    # server_args.py at v0.4.8.post1: H100 / A100 80 GB keep 9.5 GiB + 0.5 GiB per TP rank
    r = report("llama-3.1-8b", "h100", "bf16", 2, version="0.4.9")
    total_mib = 80 * 1024  # approximately what get_device_memory_capacity reads
    assert float(r["mem_fraction_static"]) == pytest.approx(  # type: ignore[arg-type]
        (total_mib - 10.5 * 1024) / total_mib, abs=0.005)


def test_the_estimates_speculative_flags_reach_sglang() -> None:
    # --speculative eagle3 --num-speculative-tokens 3 means SGLang's EAGLE3, 3 steps, topk 1
    est = vramest.estimate(model="llama-3.1-8b", gpu="h100", engine="sglang",
                           engine_options={"version": "0.4.9"},
                           speculation=vramest.speculation("eagle3", 3, 0.7))
    assert est.engine_report is not None
    spec = est.engine_report.to_json()["speculative"]
    assert isinstance(spec, dict)
    assert (spec["algorithm"], spec["num_steps"], spec["eagle_topk"], spec["num_draft_tokens"]) \
        == ("EAGLE3", 3, 1, 4)
