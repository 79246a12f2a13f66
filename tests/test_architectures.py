"""Encoders, encoder-decoders and architectures the estimator does not know.

Parameter counts are checked against transformers' own modules built on the meta device (the
checkpoint classes the configs name); memory against invariants of each architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.api import estimate
from vramest.cli import main
from vramest.errors import InputError
from vramest.model.catalog import default_catalog
from vramest.model.shapes import ENCODER, ENCODER_DECODER, UnknownArchitecture, shape_from_config

CATALOG = default_catalog()
ENCODER_ENTRIES = [e for e in CATALOG.entries
                   if e.shape().architecture in (ENCODER, ENCODER_DECODER)]


def test_catalog_has_encoders_rerankers_and_encoder_decoders() -> None:
    kinds = {e.shape().architecture for e in ENCODER_ENTRIES}
    assert kinds == {ENCODER, ENCODER_DECODER}
    families = {e.family for e in ENCODER_ENTRIES}
    assert {"bert", "xlm-roberta", "deberta-v2", "t5", "bart", "whisper"} <= families


@pytest.mark.slow  # torch/transformers or seconds: make test runs it, test-fast does not
@pytest.mark.parametrize("entry", ENCODER_ENTRIES, ids=lambda e: e.id)
def test_count_equals_transformers_modules_on_the_meta_device(entry) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = dict(entry.config)
    values = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    hf_config = transformers.AutoConfig.for_model(config["model_type"], **values)
    # transformers 5 ties a T5's lm_head *and* both stacks' embeddings by one flag; the
    # released v1.1 / Flan checkpoints share the embeddings and store a separate lm_head (783M)
    untied_head = config["model_type"] == "t5" and config.get("tie_word_embeddings") is False
    if config["model_type"] == "t5":
        hf_config.tie_word_embeddings = True
    archs = config.get("architectures") or ["AutoModel"]  # deberta-v3: the base model
    with torch.device("meta"):
        model = (transformers.AutoModel.from_config(hf_config) if archs[0] == "AutoModel"
                 else getattr(transformers, archs[0])(hf_config))
    head = config["vocab_size"] * config["d_model"] if untied_head else 0
    assert entry.shape().param_count() == sum(p.numel() for p in model.parameters()) + head


def test_bert_large_is_no_longer_read_as_a_decoder() -> None:
    # issue 21: the decoder parse gave 465M (gated MLP and an untied head) for 335M
    shape = CATALOG.find("bert-large-uncased").shape()
    assert abs(shape.param_count() / 335_174_458 - 1) < 1e-9
    t5 = CATALOG.find("t5-v1_1-large").shape()
    assert t5.param_count() == 783_150_080  # the model page's 783M, head untied


@settings(max_examples=30, deadline=None)
@given(ctx=st.integers(8, 512), batch=st.integers(1, 64))
def test_an_encoder_keeps_no_kv_and_its_activations_grow_with_the_tokens(ctx: int,
                                                                          batch: int) -> None:
    one = estimate(model="bge-large-en-v1.5", ctx=ctx, batch=1, dtype="bf16")
    many = estimate(model="bge-large-en-v1.5", ctx=ctx, batch=batch, dtype="bf16")
    assert one.memory.kv_cache.bytes == many.memory.kv_cache.bytes == 0
    # no vocabulary logits: the transient is per token only
    assert many.memory.activations.bytes == batch * one.memory.activations.bytes


@settings(max_examples=20, deadline=None)
@given(ctx=st.integers(1, 448), batch=st.integers(1, 16))
def test_whisper_cross_attention_kv_is_fixed_by_its_1500_frames(ctx: int, batch: int) -> None:
    shape = CATALOG.find("whisper-large-v3").shape()
    est = estimate(model="whisper-large-v3", ctx=ctx, batch=batch, dtype="fp16")
    per_token_layer = 2 * shape.hidden_size * 2  # keys and values, fp16
    cross = shape.decoder_layers * 1500 * per_token_layer
    self_attention = shape.decoder_layers * ctx * per_token_layer
    assert est.memory.kv_cache.bytes == batch * (cross + self_attention)


def test_encoder_decoder_kv_counts_decoder_layers_only() -> None:
    shape = CATALOG.find("t5-v1_1-large").shape()
    assert shape.decoder_layers == 24 and shape.num_layers == 48
    small = estimate(model="t5-v1_1-large", ctx=512, dtype="bf16").memory.kv_cache.bytes
    large = estimate(model="t5-v1_1-large", ctx=1024, dtype="bf16").memory.kv_cache.bytes
    assert large == 2 * small  # self and cross KV both follow ctx when the input is ctx long


# Zamba2 is counted now (tests/test_hybrids_families.py); RWKV-7 has no transformers class
RECURRENT = {"architectures": ["RWKV7ForCausalLM"], "model_type": "rwkv7",
             "hidden_size": 2048, "num_hidden_layers": 24, "vocab_size": 65536}
UNKNOWN_DECODER = {"architectures": ["OlmoForCausalLM"], "model_type": "olmo",
                   "hidden_size": 256, "intermediate_size": 704, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "num_hidden_layers": 3, "vocab_size": 1000,
                   "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
                   "pad_token_id": 0}


def test_a_recurrent_config_is_refused_in_one_sentence(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(RECURRENT))
    code = main(["--model", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "rwkv7" in err and "state" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_unknown_decoder_is_refused_without_transformers(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vramest.model import meta_count

    monkeypatch.setattr(meta_count, "transformers_available", lambda: False)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(UNKNOWN_DECODER))
    with pytest.raises(UnknownArchitecture, match=r"olmo.*meta device"):
        estimate(model=str(path))
    with pytest.raises(InputError):
        shape_from_config(UNKNOWN_DECODER, "x")


def test_an_unknown_decoder_is_counted_on_the_meta_device(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(UNKNOWN_DECODER))
    est = estimate(model=str(path), ctx=1024)
    values = {k: v for k, v in UNKNOWN_DECODER.items() if k not in ("model_type", "architectures")}
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model("olmo", **values))
    assert est.model.params == sum(p.numel() for p in model.parameters())
    assert any("meta device" in a for a in est.assumptions)
    # the KV still follows the config's attention keys: 3 layers × 2 × 2 heads × 64 × 1024
    assert est.memory.kv_cache.bytes == 3 * 2 * 2 * 64 * 1024 * 2


# --- recurrent and hybrid models ----------------------------------------------------------
NEMOTRON_H_SMALL = {"model_type": "nemotron_h", "hybrid_override_pattern": "M-*-M-",
                    "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "head_dim": 64, "intermediate_size": 512, "mamba_num_heads": 8,
                    "mamba_head_dim": 64, "ssm_state_size": 32, "n_groups": 2,
                    "conv_kernel": 4, "vocab_size": 1000, "num_hidden_layers": 6,
                    "chunk_size": 64}
JAMBA_SMALL = {"model_type": "jamba", "hidden_size": 256, "num_hidden_layers": 4,
               "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 512,
               "num_experts": 4, "attn_layer_period": 2, "attn_layer_offset": 1,
               "vocab_size": 1000, "use_mamba_kernels": False}
QWEN3_NEXT_SMALL = {"model_type": "qwen3_next", "hidden_size": 256, "num_hidden_layers": 4,
                    "vocab_size": 1000, "intermediate_size": 512, "num_experts": 4,
                    "num_experts_per_tok": 2, "moe_intermediate_size": 64,
                    "shared_expert_intermediate_size": 64, "num_attention_heads": 4,
                    "num_key_value_heads": 2, "head_dim": 64, "linear_num_key_heads": 2,
                    "linear_num_value_heads": 4, "linear_key_head_dim": 32,
                    "linear_value_head_dim": 32, "mlp_only_layers": [0]}
GRANITE_HYBRID_SMALL = {"model_type": "granitemoehybrid", "hidden_size": 256,
                        "num_hidden_layers": 4, "vocab_size": 1000, "intermediate_size": 128,
                        "shared_intermediate_size": 512, "num_local_experts": 4,
                        "num_experts_per_tok": 2, "num_attention_heads": 4,
                        "num_key_value_heads": 2, "mamba_n_heads": 8, "mamba_d_state": 32,
                        "mamba_n_groups": 1, "mamba_d_head": 64,
                        "layer_types": ["mamba", "attention", "mamba", "mamba"]}
MAMBA2_SMALL = {"model_type": "mamba2", "hidden_size": 256, "num_heads": 8, "head_dim": 64,
                "expand": 2, "state_size": 32, "n_groups": 2, "num_hidden_layers": 3,
                "vocab_size": 1000, "conv_kernel": 4, "chunk_size": 64}


@pytest.mark.parametrize("config", [NEMOTRON_H_SMALL, MAMBA2_SMALL, JAMBA_SMALL,
                                    QWEN3_NEXT_SMALL, GRANITE_HYBRID_SMALL,
                                    {"model_type": "qwen3_next"},  # class defaults: the 80B
                                    {"model_type": "nemotron_h",  # class defaults: the 8B
                                     "hybrid_override_pattern": "M-M-M-M*-" + "M-M-M-M-M*-" * 3
                                     + "M-M-M-M-M-", "num_hidden_layers": 52}],
                         ids=["nemotron-h", "mamba2", "jamba", "qwen3-next", "granite-4-h",
                              "qwen3-next-80b", "nemotron-h-8b"])
def test_hybrid_count_equals_transformers_modules(config: dict) -> None:  # type: ignore[type-arg]
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    values = {k: v for k, v in config.items() if k != "model_type"}
    hf_config = transformers.AutoConfig.for_model(config["model_type"], **values)
    full = {**hf_config.to_dict(), **config}
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config)
    shape = shape_from_config(full, "x")
    assert shape.param_count() == sum(p.numel() for p in model.parameters())


def test_recurrent_state_is_constant_in_the_context() -> None:
    short = estimate(model="mamba-codestral-7b", ctx=1024, batch=2, dtype="bf16")
    long = estimate(model="mamba-codestral-7b", ctx=256 * 1024, batch=2, dtype="bf16")
    assert short.memory.kv_cache.bytes == long.memory.kv_cache.bytes
    # vLLM's mamba2_state_shape: conv (4 - 1) × (8192 + 2 × 8 × 128), ssm 128 × 64 × 128
    per_layer = 3 * (8192 + 2 * 8 * 128) + 128 * 64 * 128
    assert short.memory.kv_cache.bytes == 2 * 64 * per_layer * 2


def test_a_hybrid_keeps_kv_only_in_its_attention_layers() -> None:
    shape = shape_from_config(NEMOTRON_H_SMALL, "x")
    assert shape.layer_kind_counts["full"] == 1 and shape.state_layers == 2
    with pytest.raises(InputError, match="E"):
        shape_from_config({**NEMOTRON_H_SMALL, "hybrid_override_pattern": "M-*E"}, "x")


@pytest.mark.slow  # torch/transformers or seconds: make test runs it, test-fast does not
@pytest.mark.parametrize("config", [NEMOTRON_H_SMALL, MAMBA2_SMALL, JAMBA_SMALL,
                                    QWEN3_NEXT_SMALL, GRANITE_HYBRID_SMALL],
                         ids=["nemotron-h", "mamba2", "jamba", "qwen3-next", "granite-4-h"])
def test_traced_state_equals_what_transformers_holds(config: dict) -> None:  # type: ignore[type-arg]
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from vramest.tracing.inference import trace_config, transformers_prefill_kv_bytes

    shape = shape_from_config(config, "x")
    ctx, batch, steps = 256, 3, 2
    run = trace_config(config, dtype="bf16", ctx=ctx, batch=batch, attn="eager",
                       decode_steps=steps)
    decode = run.phase("decode")
    assert decode is not None
    assert decode.kv_cache_bytes == transformers_prefill_kv_bytes(
        shape, 2, ctx + steps, ctx + steps, batch)


def test_published_state_sizes_and_encoder_growth_are_reproduced() -> None:
    from vramest.validation import REFERENCE_DIR
    from vramest.validation.architectures import architecture_rows

    rows = {r.record_id: r for r in architecture_rows(REFERENCE_DIR)}
    states = [r for r in rows.values() if r.quantity == "recurrent_state"]
    assert len(states) >= 3
    for row in states:  # llama.cpp's recurrent cache: kernel - 1 conv window + SSM state, f32
        assert abs(row.error) < 0.005, row.record_id
    # a 2020 eager BERT forward: the published growth is 270 MiB; scores dominate it
    assert abs(rows["transformers-4850-bert-base"].error) < 0.10


def test_llamacpp_keeps_one_f32_state_per_sequence(capsys: pytest.CaptureFixture[str]) -> None:
    # llama.cpp PR 9126: Mamba-Codestral-7B takes 263.5 MiB (in F32) per sequence
    code = main(["--model", "mamba-codestral-7b", "--engine", "llamacpp", "--dtype", "q8_0",
                 "--ctx", "32k", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["engine"]["kv_cache_bytes"] == round(263.5 * 1024**2)


def test_vllm_emulation_refuses_what_it_does_not_model(capsys: pytest.CaptureFixture[str]) -> None:
    # recurrent state from 0.10 on (tests/test_vllm_hybrid.py); V0's Mamba cache is not modelled
    code = main(["--model", "mamba-codestral-7b", "--engine", "vllm", "--gpu", "h100",
                 "--engine-version", "vllm==0.8.5"])
    err = capsys.readouterr().err
    assert code == 2 and "recurrent state" in err and len(err.strip().splitlines()) == 1


# --- vision-language: image tokens in the context -------------------------------------------
def test_image_token_rules_of_the_processors() -> None:
    from vramest.model.vision import image_tokens

    qwen = {"model_type": "qwen2_5_vl", "vision_config": {"patch_size": 14,
                                                          "spatial_merge_size": 2}}
    assert image_tokens(qwen, 224, 224).per_image == 64 + 2  # 8 × 8 blocks of 28 px
    assert image_tokens(qwen, 1280, 720).per_image == 46 * 26 + 2  # 1288 × 728 after rounding
    big = image_tokens(qwen, 8000, 8000).per_image - 2  # capped at max_pixels = 1280 blocks
    assert big <= 1280
    llava = {"model_type": "llava", "vision_config": {"image_size": 336, "patch_size": 14}}
    assert image_tokens(llava, 640, 480).per_image == 576
    pixtral = {"model_type": "llava", "vision_config": {"model_type": "pixtral",
                                                        "image_size": 1024, "patch_size": 16}}
    assert image_tokens(pixtral, 1024, 1024).per_image == 64 * 64 + 64  # a break per row
    assert image_tokens(pixtral, 2048, 1024).per_image == 32 * 64 + 32  # fit within 1024


def test_images_add_their_tokens_to_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    plain = estimate(model="gemma-3-4b", ctx=2048, dtype="bf16")
    code = main(["--model", "gemma-3-4b", "--ctx", "2048", "--dtype", "bf16", "--images", "4",
                 "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["settings"]["ctx"] == 2048 + 4 * 258
    assert data["memory"]["kv_cache"] > plain.memory.kv_cache.bytes
    assert any("Images: 4" in a for a in data["assumptions"])
    assert main(["--params", "7B", "--images", "2"]) == 2
    assert main(["--model", "gemma-3-4b", "--images", "1", "--image-size", "big"]) == 2


def test_a_decoder_stored_without_its_head_is_an_embedding_model() -> None:
    est = estimate(model="e5-mistral-7b-instruct", ctx=4096, batch=8, dtype="bf16")
    assert est.model.params == 7_110_660_096  # the published total: Mistral-7B minus lm_head
    assert est.memory.kv_cache.bytes == 0
    qwen = dict(CATALOG.find("Qwen/Qwen3-8B").config, architectures=["Qwen3Model"])
    assert shape_from_config(qwen, "Qwen3-Embedding-8B").param_count() == 7_568_405_504


def test_traces_of_t5_mamba_hybrid_and_a_vlm_agree_within_two_percent() -> None:
    """Issue 21's bar: the analytic peak within 2% of every stored fake-tensor trace of
    Flan-T5 (relative position bias), Mamba-Codestral (the reference Mamba-2 chunked scan),
    Jamba (Mamba-1 selective scan beside attention and MoE) and Gemma 3 with a picture (its
    SigLIP tower; eager scores of 4096 patches)."""
    from vramest.tracing.inference import compare_traces, load_traces

    families = ("google/flan-t5-large", "mistralai/Mamba-Codestral-7B-v0.1",
                "ai21labs/Jamba-v0.1", "google/gemma-3-4b-it")
    rows = [r for r in load_traces() if r.model in families]
    assert {r.model for r in rows} == set(families) and any(r.images for r in rows)
    for c in compare_traces(rows):
        assert abs(c.error) < 0.02, f"{c.row.label}: {100 * c.error:+.2f}%"


def test_a_fixed_size_vision_tower_is_the_peak_under_eager_attention() -> None:
    """Gemma 3's SigLIP tower at 896 px under eager attention: 2,752,368,656 bytes live at one
    picture, twice that at two (fake-tensor trace, vramest/validation/traces)."""
    from vramest.model.vision import ImageRequest

    for batch, traced in ((1, 2_752_368_656), (2, 5_504_737_312)):
        est = estimate(model="gemma-3-4b", ctx=1024, batch=batch, dtype="bf16",
                       attention="eager", images=ImageRequest(1, 896, 896))
        assert est.memory.activations.bytes == pytest.approx(traced, rel=0.01)
    sdpa = estimate(model="gemma-3-4b", ctx=1024, dtype="bf16", images=ImageRequest(1, 896, 896))
    text = estimate(model="gemma-3-4b", ctx=1024 + 258, dtype="bf16")
    assert sdpa.memory.activations.bytes == text.memory.activations.bytes  # the text's is larger
