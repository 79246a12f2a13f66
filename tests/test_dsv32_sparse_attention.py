"""DeepSeek-V3.2's sparse attention (indexer weights and cache) and gpt-oss's attention sinks."""

from __future__ import annotations

from pathlib import Path

import pytest

from vramest.api import estimate
from vramest.hardware.database import default_hardware
from vramest.inference.engines.startup import VLLMOptions, vllm_startup
from vramest.inference.memory import kv_bytes_per_token
from vramest.model.catalog import default_catalog
from vramest.model.shapes import shape_from_config
from vramest.validation.serving_architectures import serving_architecture_rows

REFERENCE = Path(__file__).resolve().parents[1] / "vramest" / "validation" / "reference"
V32 = default_catalog().find("deepseek-ai/DeepSeek-V3.2-Exp")
INDEXER_PER_LAYER = 1536 * 8192 + 7168 * 128 + 2 * 128 + 7168 * 64  # wq_b, wk, k_norm, weights


def test_indexer_weights_are_the_only_parameters_v32_adds():
    v3 = default_catalog().find("deepseek-ai/DeepSeek-V3").shape()
    assert V32.shape().param_count() - v3.param_count() == 61 * INDEXER_PER_LAYER
    assert V32.shape().param_count() == 671_877_929_216


def test_count_equals_transformers_on_the_meta_device():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "DeepseekV32Config"):
        pytest.skip("this transformers has no DeepSeek-V3.2")
    small = {**V32.config, "num_hidden_layers": 4, "first_k_dense_replace": 1}
    config = transformers.DeepseekV32Config(**{k: v for k, v in small.items() if k not in (
        "architectures", "model_type", "quantization_config")})
    with torch.device("meta"):
        model = transformers.DeepseekV32ForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == \
        shape_from_config(small, "small").param_count()


@pytest.mark.parametrize(("kv_bytes", "per_layer"), [
    (2, 576 * 2 + 132),  # bf16 latent + FP8 indexer key with its fp32 scale
    (1, 512 + 4 * 4 + 64 * 2 + 132),  # sparse FP8 latent (656 B) + indexer key
])
def test_kv_per_token_holds_the_indexer_keys(kv_bytes, per_layer):
    assert kv_bytes_per_token(V32.shape(), kv_bytes) == 61 * per_layer


def test_sglang_pools_match_their_logs():
    rows = [r for r in serving_architecture_rows(REFERENCE) if "dsv32" in r.record_id]
    assert len(rows) == 2
    for row in rows:
        assert abs(row.error) < 1e-3, (row.record_id, row.estimated, row.measured)


def test_the_indexer_cache_grows_with_the_context_and_vllm_budgets_it():
    short, long = (estimate(model="deepseek-v3.2-exp", ctx=n).memory.kv_cache.bytes
                   for n in (4096, 8192))
    assert long - short == 4096 * 61 * (576 * 2 + 132)
    start = vllm_startup(estimate(model="deepseek-v3.2-exp"), default_hardware().find("h200"), 8,
                         VLLMOptions(max_model_len=32768))
    assert start.kv_bytes_per_token == 61 * (576 * 2 + 132)  # MLA latent and indexer replicated


def test_gpt_oss_sinks_are_weights_not_cache():
    shape = default_catalog().find("openai/gpt-oss-20b").shape()
    assert shape.param_count() == 20_914_757_184  # transformers' GptOssForCausalLM on meta
    sinks = [t for t in shape.extra_tensors if t.role == "norm" and t.cols == shape.num_heads]
    assert sum(t.elements for t in sinks) == 64 * 24
    assert kv_bytes_per_token(shape, 2) == 2 * shape.num_kv_heads * shape.head_dim * 24 * 2
