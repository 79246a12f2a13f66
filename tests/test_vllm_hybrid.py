"""vLLM V1's one block pool for models with recurrent state (vramest/inference/engines/
vllm_hybrid.py): checked against the block size vLLM published for Nemotron-Nano-9B-v2 and the
allocator's own invariants."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.api import estimate
from vramest.cli import main
from vramest.errors import InputError
from vramest.hardware.database import default_hardware
from vramest.inference.engines.startup import VLLMOptions, VLLMStartup, vllm_startup
from vramest.inference.engines.vllm_hybrid import hybrid_kv
from vramest.model.shapes import shape_from_config

H200 = default_hardware().find("h200")


def test_nemotron_nano_block_is_the_672_tokens_vllm_published() -> None:
    # vLLM issue #24280: "672 tokens for nvidia/NVIDIA-Nemotron-Nano-9B-v2"; 8 KV heads x 128
    # x K and V x 2 B = 4096 B per token, 27 Mamba-2 states of 2,695,168 B in 16 bits
    shape = estimate(model="nemotron-nano-9b-v2").model.shape
    pools = hybrid_kv(shape, 2, 8 * 128 * 2 * 2, 1, 16, 131072, ssm_dtype="float16")
    assert pools.block_size == 672
    assert pools.state_bytes == 3 * (10240 + 2 * 8 * 128) * 2 + 128 * 80 * 128 * 2
    # ~70 MiB of Mamba state per sequence (NVIDIA's sizing, video-search-and-summarization #1649)
    assert abs(27 * pools.state_bytes / 2**20 - 70) < 1
    # 4 attention + 27 Mamba layers: groups of 4, the last Mamba group padded by one layer
    assert (pools.group_size, pools.attention_groups, pools.state_groups) == (4, 1, 7)
    assert pools.padding_layers == 1
    # a float32 SSM state (vLLM's Nemotron-H default later) doubles most of the page
    assert hybrid_kv(shape, 2, 4096, 1, 16, 131072, ssm_dtype="float32").block_size == 1312


@settings(max_examples=60, deadline=None)
@given(attention=st.integers(1, 16), state=st.integers(1, 64),
       token=st.sampled_from([512, 1024, 2048, 4096, 8192]),
       conv=st.integers(1, 1 << 16), ssm=st.integers(1, 1 << 21),
       length=st.integers(1, 1 << 18), memory=st.integers(0, 1 << 36))
def test_pages_hold_a_state_and_requests_fit_their_blocks(attention: int, state: int,
                                                          token: int, conv: int, ssm: int,
                                                          length: int, memory: int) -> None:
    kinds = ["full"] * attention + ["none"] * state
    shape = shape_from_config({"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 4,
                               "num_attention_heads": 4, "intermediate_size": 512,
                               "vocab_size": 1000}, "x")
    from vramest.frozen import replace
    shape = replace(shape, num_layers=len(kinds), layer_kinds=tuple(kinds), state_layers=state,
                    conv_state=conv, ssm_state=ssm, family="test")
    pools = hybrid_kv(shape, 2, token, 1, 16, length)
    assert pools.block_size % 16 == 0 and pools.page_bytes == pools.block_size * token
    assert pools.state_bytes <= pools.page_bytes < pools.state_bytes + 16 * token
    assert pools.groups * pools.group_size >= attention + state  # every layer has a slot
    blocks = pools.num_blocks(memory)
    assert blocks * pools.page_bytes * pools.group_size <= memory
    # a request fits exactly when its blocks are in the pool
    assert (pools.request_bytes(length) <= memory) == (
        pools.blocks_per_request(length) <= memory // (pools.page_bytes * pools.group_size))


def test_jamba_starts_with_one_state_per_request_per_group() -> None:
    est = estimate(model="jamba", dtype="bf16")
    start = vllm_startup(est, H200, 1, VLLMOptions(version="0.11.0", max_model_len=65536))
    # 4 attention + 28 Mamba-1 layers: 8 groups of 4; 8 KV heads x 128 x 2 x 2 B per token;
    # Mamba-1 state (3 + 16) x 8192 x 2 B = 311,296 B -> 16 x cdiv(311296, 65536) = 80 tokens
    assert start.block_size == 80 and start.block_groups == 8
    per_request = -(-65536 // 80) + 7
    assert start.max_concurrency == pytest.approx(start.num_gpu_blocks / per_request)
    assert start.kv_cache_tokens == start.num_gpu_blocks // 8 * 80
    assert start.starts
    too_long = vllm_startup(est, H200, 1, VLLMOptions(version="0.11.0", max_model_len=262144,
                                                      gpu_memory_utilization=0.73))
    assert not too_long.starts and 0 < too_long.largest_model_len < 262144


def test_a_pure_mamba_model_counts_each_state_as_the_whole_length(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--model", "mamba-codestral-7b", "--engine", "vllm", "--gpu", "h100",
                 "--json"])
    data = json.loads(capsys.readouterr().out)["engine"]
    assert code == 0 and data["starts"]
    assert data["kv_cache_tokens"] == data["num_gpu_blocks"] * data["max_model_len"]


def test_releases_before_the_shared_pool_are_refused_in_one_sentence(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--model", "jamba", "--engine", "vllm", "--gpu", "h200",
                 "--engine-version", "vllm==0.9.2"])
    err = capsys.readouterr().err
    assert code == 2 and "0.10" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(InputError, match="mamba_ssm_cache_dtype"):
        hybrid_kv(estimate(model="jamba").model.shape, 2, 4096, 1, 16, 4096, ssm_dtype="fp4")


# --- Llama 4: chunked local attention on 3 of every 4 layers ------------------------------
def _scout(version: str) -> VLLMStartup:
    est = estimate(model="llama-4-scout", dtype="bf16")
    return vllm_startup(est, default_hardware().find("h100"), 4,
                        VLLMOptions(version=version, max_model_len=1_000_000))


def test_llama4_chunked_layers_keep_a_chunk_only_where_the_release_groups_them() -> None:
    shape = estimate(model="llama-4-scout").model.shape
    assert shape.chunked_attention and shape.sliding_window == 8192
    assert shape.layer_kind_counts == {"sliding": 36, "full": 12}
    # 2 KV heads per GPU at TP 4 x 128 x K and V x 2 B = 1 KiB per token and layer
    grouped, unified, restored = _scout("0.10.0"), _scout("0.11.0"), _scout("0.23.0")
    chunk_blocks = -(-(8192 + grouped.max_num_batched_tokens) // 16)  # no slack block
    assert grouped.request_bytes == (12 * 1_000_000 + 36 * chunk_blocks * 16) * 1024
    # 0.10.1 - 0.22: the hybrid manager is off for chunked attention (PR #21761): all full
    assert unified.request_bytes == 48 * 1_000_000 * 1024
    assert not unified.starts and grouped.starts and restored.starts
    assert "full attention" in " ".join(unified.notes)


def test_llamacpp_keeps_the_chunked_layers_in_its_swa_cache(
        capsys: pytest.CaptureFixture[str]) -> None:
    # llama.cpp runs Llama 4 as LLAMA_SWA_TYPE_CHUNKED with n_swa 8192 in the iSWA cache:
    # 8192 + n_ubatch 512 cells, padded to 256, for the 36 chunked layers; 65536 for the rest
    code = main(["--model", "llama-4-scout", "--engine", "llamacpp", "--dtype", "q4_k_m",
                 "--ctx", "65536", "--gpu", "h100", "--json"])
    data = json.loads(capsys.readouterr().out)["engine"]
    assert code == 0 and data["swa_cells"] == 8704
    assert data["kv_cache_bytes"] == (12 * 65536 + 36 * 8704) * 8 * 128 * 2 * 2


def test_a_published_v0_17_hybrid_log_is_reproduced_from_its_pools() -> None:
    # A vLLM v0.17.0 start-up of a 40-layer hybrid (10 full-attention layers, 2 KV heads x 256,
    # fp8 KV; 30 gated-DeltaNet layers), prefix caching in align mode, as a blog post quotes it
    # ("vLLM 로그의 KV cache size 는 용량이 아니다", 2026-08-30): "Setting attention block size
    # to 2096 tokens", KV 6.08 GiB, "GPU KV cache size: 159,296 tokens", "Maximum concurrency
    # for 65,536 tokens per request: 8.00x". A Qwen3-Next-style DeltaNet state (16 key heads,
    # 32 value heads of 128) with the SSM state in float32 fills 131 pages of 16 tokens.
    config = {"model_type": "qwen3_next", "hidden_size": 2048, "num_hidden_layers": 40,
              "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256,
              "intermediate_size": 512, "num_experts": 4, "num_experts_per_tok": 2,
              "moe_intermediate_size": 64, "shared_expert_intermediate_size": 64,
              "linear_num_key_heads": 16, "linear_num_value_heads": 32,
              "linear_key_head_dim": 128, "linear_value_head_dim": 128, "vocab_size": 1000,
              "full_attention_interval": 4}
    shape = shape_from_config(config, "x")
    pools = hybrid_kv(shape, 2, 2 * 2 * 256 * 1, 1, 16, 65536, ssm_dtype="float32",
                      cache_mode="align")
    assert pools.block_size == 2096
    assert (pools.group_size, pools.attention_groups, pools.state_groups) == (10, 1, 3)
    blocks = pools.num_blocks(round(6.08 * 2**30))
    assert blocks == 304
    assert pools.kv_cache_tokens(blocks) == 159_296
    assert f"{blocks / pools.blocks_per_request(65536):.2f}" == "8.00"


# --- catalog entries of the hybrid families ------------------------------------------------
def test_hybrid_catalog_entries_give_their_published_counts() -> None:
    from vramest.inference.speculative import head_shape
    from vramest.model.catalog import default_catalog

    catalog = default_catalog()
    nano = catalog.find("nemotron-nano-9b-v2")
    assert abs(nano.shape().param_count() - 8.89e9) <= 0.005e9  # the page's "8.89B"
    qwen = catalog.find("qwen3-next-80b-a3b")
    main_model = qwen.shape().param_count()
    assert main_model == 79_674_391_296
    # the page's 81.3B counts the checkpoint's multi-token-prediction layer too
    assert abs(main_model + head_shape(qwen.shape(), "mtp").param_count() - 81.3e9) <= 0.05e9
    shape = qwen.shape()
    assert (shape.state_layers, shape.layer_kind_counts["full"]) == (36, 12)


def test_qwen3_next_under_vllm_keeps_a_block_of_544_tokens() -> None:
    # TP 2, bf16: 1 KV head per GPU x 256 x K and V x 2 B = 1024 B per token; half the
    # DeltaNet state, (3 x 8192 + 32 x 128 x 128) x 2 B / 2 = 548,864 B = 33.5 pages of 16
    # tokens -> 34 x 16 = 544 tokens; 12 attention + 36 DeltaNet layers: 1 + 3 groups of 12
    est = estimate(model="qwen3-next-80b-a3b", dtype="bf16")
    start = vllm_startup(est, H200, 2, VLLMOptions(version="0.11.0", max_model_len=262144))
    assert start.block_size == 544
    assert start.block_groups == 4 and start.starts
