"""Two config keys the parser read wrong, each checked against transformers' meta-device
build: Falcon's new decoder architecture keeps num_kv_heads even with multi_query set
(Falcon-180B: 8 KV heads, not 1), and StarCoder2's use_bias (default true) adds biases to
q/k/v/o and both MLP projections."""

from __future__ import annotations

import pytest
from meta_build import meta_count

import vramest
from vramest.model.shapes import shape_from_config

# StarCoder2-3B's shape (bigcode/starcoder2-3b config.json: hidden 3072, 30 layers, 24 heads,
# 2 KV heads, intermediate 12288, vocabulary 49152, tied embeddings), at a smaller depth
STARCODER2 = {"model_type": "starcoder2", "hidden_size": 3072, "num_hidden_layers": 2,
              "num_attention_heads": 24, "num_key_value_heads": 2, "intermediate_size": 12288,
              "vocab_size": 49152, "max_position_embeddings": 16384, "sliding_window": 4096,
              "tie_word_embeddings": True}



@pytest.mark.slow
@pytest.mark.parametrize("use_bias", [True, False])
def test_starcoder2_biases_follow_use_bias(use_bias: bool) -> None:
    config = {**STARCODER2, "use_bias": use_bias}
    assert shape_from_config(config, "x").param_count() == meta_count(config)


def test_falcon_180b_keeps_its_eight_kv_heads() -> None:
    # tiiuae/falcon-180B: multi_query true and new_decoder_architecture true, num_kv_heads 8;
    # transformers builds 178,557,088,768 parameters from the catalog's config
    est = vramest.estimate(model="tiiuae/falcon-180B", ctx=4096)
    assert est.model.shape.num_kv_heads == 8
    assert est.model.params == 178_557_088_768
    old_style = {"model_type": "falcon", "hidden_size": 4544, "num_hidden_layers": 2,
                 "num_attention_heads": 71, "vocab_size": 65024, "multi_query": True,
                 "new_decoder_architecture": False}
    assert shape_from_config(old_style, "x").num_kv_heads == 1  # Falcon-7B's multi-query
