"""Falcon-H1, Zamba2, Granite 4.0 hybrids and RWKV-4: counts against transformers' own modules on
the meta device, per-sequence state against the engines' published logs and rules, the stored
fake-tensor traces against the estimate, and the layouts that are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from meta_build import meta_count

from vramest.api import estimate
from vramest.cli import main
from vramest.errors import InputError
from vramest.inference.engines.startup import LlamaCppOptions, llamacpp_startup
from vramest.inference.engines.vllm_hybrid import hybrid_kv, vllm_state_bytes
from vramest.model.catalog import default_catalog
from vramest.model.shapes import LAYER_FULL, LAYER_NO_KV, shape_from_config

CATALOG = default_catalog()
FAMILIES = ("falcon_h1", "zamba2", "granitemoehybrid", "rwkv")
ENTRIES = [e for e in CATALOG.entries if e.family in FAMILIES]
MIB = 2**20



def test_catalog_carries_every_family() -> None:
    assert {e.family for e in ENTRIES} == set(FAMILIES)
    assert len(ENTRIES) >= 9


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_catalog_count_equals_transformers_on_the_meta_device(entry) -> None:  # type: ignore[no-untyped-def]
    assert entry.shape().param_count() == meta_count(dict(entry.config))


def test_counts_against_the_published_figures() -> None:
    counts = {e.id: e.shape().param_count() for e in ENTRIES}
    # IBM: 32B total (32.2B listed), 9B active
    small = CATALOG.find("granite-4.0-h-small").shape()
    assert abs(counts["ibm-granite/granite-4.0-h-small"] / 32.2e9 - 1) < 0.001
    assert abs(small.active_param_count() / 9e9 - 1) < 0.05
    # the names round: Falcon-H1 "7B/3B/1.5B", Zamba2 "2.7B", RWKV-4 "169M/14B", Granite "7B"
    named = {"tiiuae/Falcon-H1-7B-Instruct": 7.59e9, "tiiuae/Falcon-H1-3B-Instruct": 3.15e9,
             "tiiuae/Falcon-H1-1.5B-Instruct": 1.55e9, "Zyphra/Zamba2-2.7B": 2.66e9,
             "RWKV/rwkv-4-169m-pile": 169e6, "RWKV/rwkv-4-14b-pile": 14.15e9,
             "ibm-granite/granite-4.0-h-tiny": 6.94e9}
    for model, rounded in named.items():
        assert abs(counts[model] / rounded - 1) < 0.005, model


SMALL_FALCON = {"model_type": "falcon_h1", "hidden_size": 256, "num_hidden_layers": 3,
                "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 48,
                "intermediate_size": 512, "vocab_size": 1000, "mamba_d_ssm": 384,
                "mamba_n_heads": 6, "mamba_d_state": 16, "mamba_n_groups": 2, "mamba_d_conv": 4,
                "mamba_rms_norm": True, "mamba_proj_bias": True, "projectors_bias": True,
                "attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True}
# Zamba2's q/k/v adapters are as wide as the queries: its checkpoints (and transformers' forward)
# need as many KV heads as heads
SMALL_ZAMBA2 = {"model_type": "zamba2", "hidden_size": 256, "num_hidden_layers": 6,
                "mamba_d_state": 16, "n_mamba_heads": 8, "mamba_ngroups": 2,
                "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 512,
                "vocab_size": 1000, "num_mem_blocks": 2, "use_shared_attention_adapter": True,
                "adapter_rank": 8, "add_bias_linear": True, "tie_word_embeddings": True,
                "layers_block_type": ["mamba", "hybrid", "hybrid", "mamba", "hybrid", "hybrid"]}
SMALL_RWKV = {"model_type": "rwkv", "hidden_size": 128, "num_hidden_layers": 3,
              "vocab_size": 1000, "intermediate_size": 384, "context_length": 256}


@pytest.mark.parametrize("config", [SMALL_FALCON, SMALL_ZAMBA2, SMALL_RWKV],
                         ids=["falcon-h1-biases-norm", "zamba2-adapters-biases", "rwkv"])
def test_every_optional_tensor_is_counted(config: dict) -> None:  # type: ignore[type-arg]
    assert shape_from_config(config, "x").param_count() == meta_count(config)


@settings(max_examples=8, deadline=None)
@given(kinds=st.lists(st.sampled_from(["mamba", "hybrid"]), min_size=2, max_size=7),
       blocks=st.integers(1, 3), adapters=st.booleans())
def test_zamba2_stores_each_shared_block_once(kinds: list[str], blocks: int,
                                              adapters: bool) -> None:
    # transformers 5.24 ties the shared blocks only under tie_word_embeddings (its
    # get_expanded_tied_weights_keys returns nothing otherwise); the checkpoints set it
    config = {**SMALL_ZAMBA2, "num_hidden_layers": len(kinds), "layers_block_type": kinds,
              "num_mem_blocks": blocks, "use_shared_attention_adapter": adapters}
    shape = shape_from_config(config, "x")
    assert shape.param_count() == meta_count(config)
    assert shape.kinds() == tuple(LAYER_FULL if k == "hybrid" else LAYER_NO_KV for k in kinds)
    assert shape.state_layers == len(kinds)


# --- per-sequence state, per engine ---------------------------------------------------------
def test_falcon_h1_in_llamacpp_keeps_kv_and_state_in_every_layer() -> None:
    # https://github.com/GeniePod/genie-claw/issues/410, Falcon-H1-1.5B at 32768 cells:
    # "KV buffer size = 768.00 MiB (32768 cells, 24 layers, K 384 + V 384)"
    # "RS buffer size = 72.98 MiB (1 cells, 24 layers, R 0.98 + S 72.00)"
    est = estimate(model="falcon-h1-1.5b", dtype="q8_0", kv_dtype="fp16", ctx=32768)
    shape = est.model.shape
    rs = 24 * (shape.conv_state + shape.ssm_state) * 4
    assert round(24 * shape.conv_state * 4 / MIB, 2) == 0.98
    assert round(24 * shape.ssm_state * 4 / MIB, 2) == 72.00
    startup = llamacpp_startup(est, LlamaCppOptions(n_ctx=32768, n_parallel=1))
    assert startup.kv_cache_bytes == 768 * MIB + rs


def test_vllm_state_pages_of_the_new_hybrids() -> None:
    # Granite 4.0-H-Small: vLLM-Gaudi PR #1564, "the platform inflates cache_config.block_size
    # to 528 (no prefix caching) for mamba page alignment"; 8 KV heads x 128 x K,V x 2 B
    small = estimate(model="granite-4.0-h-small", dtype="bf16").model.shape
    pools = hybrid_kv(small, 2, 8 * 128 * 2 * 2, 1, 16, 131072)
    assert pools.block_size == 528
    assert pools.state_bytes == 3 * (8192 + 2 * 128) * 2 + 128 * 64 * 128 * 2
    # Falcon-H1 (vllm/model_executor/models/falcon_h1.py @59e45989): mamba2_state_shape with
    # intermediate_size = mamba_d_ssm; 44 attention + 44 Mamba layers, two groups of 44
    falcon = estimate(model="falcon-h1-7b", dtype="bf16").model.shape
    assert vllm_state_bytes(falcon, 2, 1) == 3 * (3072 + 2 * 256) * 2 + 24 * 128 * 256 * 2
    pools = hybrid_kv(falcon, 2, 2 * 128 * 2 * 2, 1, 16, 262144)
    assert (pools.attention_layers, pools.state_layers, pools.group_size) == (44, 44, 44)
    # Zamba2 (zamba2.py @18b31069): a state in all 54 layers, KV in the 9 hybrid ones
    zamba = estimate(model="zamba2-2.7b", dtype="bf16").model.shape
    pools = hybrid_kv(zamba, 2, 32 * 160 * 2 * 2, 1, 16, 4096)
    assert (pools.attention_layers, pools.state_layers) == (9, 54)
    assert pools.state_bytes == 3 * (5120 + 2 * 64) * 2 + 80 * 64 * 64 * 2


@settings(max_examples=30, deadline=None)
@given(ctx=st.integers(1, 1 << 18), batch=st.integers(1, 8))
def test_state_is_constant_and_kv_linear_in_the_context(ctx: int, batch: int) -> None:
    rwkv = estimate(model="rwkv-4-169m", dtype="bf16", ctx=ctx, batch=batch)
    # RwkvModel's state: 2 token shifts in the model dtype, 3 WKV vectors in fp32, per layer
    assert rwkv.memory.kv_cache.bytes == batch * 12 * 768 * (2 * 2 + 3 * 4)
    one = estimate(model="falcon-h1-1.5b", dtype="bf16", ctx=ctx, batch=batch)
    two = estimate(model="falcon-h1-1.5b", dtype="bf16", ctx=2 * ctx, batch=batch)
    per_token = 24 * 2 * 2 * 128 * 2  # every layer attends: 2 KV heads of 128, K and V, 2 B
    assert two.memory.kv_cache.bytes - one.memory.kv_cache.bytes == batch * ctx * per_token


# --- traces ---------------------------------------------------------------------------------
def test_traces_of_the_new_hybrids_agree_within_two_percent() -> None:
    from vramest.tracing.inference import compare_traces, load_traces

    models = ("tiiuae/Falcon-H1-1.5B-Instruct", "Zyphra/Zamba2-2.7B",
              "ibm-granite/granite-4.0-h-tiny", "RWKV/rwkv-4-169m-pile")
    rows = [r for r in load_traces() if r.model in models]
    assert {r.model for r in rows} == set(models)
    for c in compare_traces(rows):
        assert abs(c.error) < 0.02, f"{c.row.label}: {100 * c.error:+.2f}%"


def test_the_wide_state_scan_moment_matches_falcon_h1s_trace() -> None:
    """Falcon-H1's state of 256 makes the chunk-states einsum the scan's peak (memory.py
    SCAN_WIDE_STATE_MOMENT): 1,580 MiB traced at 4096 tokens, where the first moment gives 9%
    less."""
    est = estimate(model="falcon-h1-1.5b", dtype="bf16", ctx=4096)
    assert est.memory.activations.bytes == pytest.approx(1580.01 * MIB, rel=0.01)


@pytest.mark.slow  # torch/transformers or seconds: make test runs it, test-fast does not
@pytest.mark.parametrize("config", [SMALL_FALCON, SMALL_ZAMBA2, SMALL_RWKV],
                         ids=["falcon-h1", "zamba2", "rwkv"])
def test_traced_state_is_what_transformers_holds(config: dict) -> None:  # type: ignore[type-arg]
    """The KV and state transformers keeps after a prefill and two decode steps: Falcon-H1's
    KV and conv + fp32 SSM state in every layer, Zamba2's KV in its hybrid layers only, and
    RWKV-4's returned state list (token shifts in the model dtype, WKV in fp32)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from vramest.tracing.inference import trace_config, transformers_prefill_kv_bytes

    shape = shape_from_config(config, "x")
    ctx, batch, steps = 64, 2, 2
    run = trace_config(config, dtype="bf16", ctx=ctx, batch=batch, attn="eager",
                       decode_steps=steps)
    decode = run.phase("decode")
    assert decode is not None
    held = transformers_prefill_kv_bytes(shape, 2, ctx + steps, ctx + steps, batch)
    # the decode peak may sit in a layer whose attention has not yet appended the new token
    one_token = batch * 2 * shape.num_kv_heads * shape.head_dim * 2 if shape.kinds().count(
        LAYER_FULL) else 0
    assert held - one_token <= decode.kv_cache_bytes <= held


# --- what is refused ------------------------------------------------------------------------
@pytest.mark.parametrize("version", [5, 6, 7])
def test_rwkv_versions_transformers_lacks_are_refused(version: int, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = {"architectures": [f"RWKV{version}ForCausalLM"], "model_type": f"rwkv{version}",
              "vocab_size": 65536, "hidden_size": 2048, "num_hidden_layers": 24,
              "head_size": 64}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    assert main(["--model", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"RWKV-{version}" in err and "transformers" in err


@pytest.mark.parametrize(("model", "engine", "says"),
                         [("rwkv-4-169m", "vllm", "has no"), ("zamba2-2.7b", "llamacpp", "has no"),
                          ("rwkv-4-14b", "llamacpp", "has no"),
                          ("falcon-h1-7b", "tgi", "recurrent state"),
                          ("rwkv-4-169m", "tgi", "recurrent state")])  # was a ZeroDivisionError
def test_engines_without_the_architecture_refuse_it(model: str, engine: str, says: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", model, "--engine", engine, "--gpu", "h100"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err


@pytest.mark.parametrize("bad", [{"layers_block_type": ["mamba", "attention"]},
                                 {"layers_block_type": ["mamba"]}])
def test_a_zamba2_layout_it_cannot_read_is_refused(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError, match="layers_block_type"):
        shape_from_config({**SMALL_ZAMBA2, "num_hidden_layers": 2, **bad}, "x")


def test_zamba2_attention_adapters_with_fewer_kv_heads_are_refused() -> None:
    with pytest.raises(InputError, match="num_key_value_heads"):
        shape_from_config({**SMALL_ZAMBA2, "num_key_value_heads": 2}, "x")


def test_an_rwkv_state_wider_than_its_hidden_size_is_refused() -> None:
    with pytest.raises(InputError, match="attention_hidden_size"):
        shape_from_config({**SMALL_RWKV, "attention_hidden_size": 256}, "x")


@pytest.mark.parametrize("engine", ["sglang", "exllamav2"])
def test_engines_without_a_state_model_refuse_a_hybrid_in_one_sentence(engine: str) -> None:
    from vramest.cli import main

    assert main(["--model", "tiiuae/Falcon-H1-7B-Instruct", "--gpu", "h100",
                 "--engine", engine]) == 2
