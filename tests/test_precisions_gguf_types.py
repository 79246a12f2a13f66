"""llama.cpp file types as the quantizer writes them: per-tensor block types and spellings."""

from collections import Counter

import pytest

from vramest.errors import InputError
from vramest.model.catalog import default_catalog
from vramest.model.precisions import GGML_BLOCKS, TensorContext, ggml_bits, weight_format


def _matrix_types(model: str, ftype: str) -> Counter[str]:
    """The block type of each quantized 2-D tensor of the model's blocks, and of its head."""
    shape = default_catalog().find(model).shape()
    fmt = weight_format(ftype)
    assert fmt.gguf_rule is not None
    counts: Counter[str] = Counter()
    for layer in range(shape.num_layers):
        for t in shape.layer_tensors(layer):
            if t.role in ("norm", "bias"):
                continue
            counts[fmt.gguf_rule(t.role, TensorContext(
                t.layer, shape.num_layers, t.cols, shape.gqa_ratio, shape.num_experts,
                not shape.tie_embeddings))] += 1
    embed = next(t for t in shape.global_tensors() if t.role == "embedding")
    counts["embedding:" + fmt.gguf_rule("embedding", TensorContext(
        None, shape.num_layers, embed.cols, shape.gqa_ratio, shape.num_experts,
        not shape.tie_embeddings))] += 1
    return counts


# bartowski/Llama-3.2-1B-Instruct-GGUF (imatrix, llama.cpp b3821), tensor types as a public
# port of those files lists them: "IQ3_S x78 + Q4_K x34 + Q6_K embd", "Q3_K x64 + Q5_K x48 +
# Q6_K embd", "IQ4_XS x96 + Q5_K + Q6_K".
@pytest.mark.parametrize(("ftype", "expected"), [
    ("iq3_m", {"IQ3_S": 78, "Q4_K": 34, "embedding:Q6_K": 1}),
    ("q3_k_l", {"Q3_K": 64, "Q5_K": 48, "embedding:Q6_K": 1}),
    ("iq4_xs", {"IQ4_XS": 96, "Q5_K": 16, "embedding:Q6_K": 1}),
])
def test_llama32_1b_file_types_match_published_files(ftype: str, expected: dict[str, int]) -> None:
    assert dict(_matrix_types("meta-llama/Llama-3.2-1B", ftype)) == expected


def test_i_quant_block_sizes_are_ggml_structs() -> None:
    # ggml-common.h: IQ3_S 3.4375, IQ2_S 2.5625, IQ1_M 1.75, NVFP4 4.5, Q1_0 1.125 bits/weight
    assert ggml_bits("IQ3_S") == 3.4375
    assert ggml_bits("IQ2_S") == 2.5625
    assert ggml_bits("IQ1_M") == 1.75
    assert ggml_bits("NVFP4") == 4.5
    assert ggml_bits("Q1_0") == 1.125
    assert all(nbytes > 0 and elements > 0 for elements, nbytes in GGML_BLOCKS.values())


@pytest.mark.parametrize("name", ["iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m",
                                  "iq3_xxs", "iq3_xs", "iq3_s", "iq3_m", "iq4_xs", "iq4_nl",
                                  "q2_k_s", "IQ3_M", "iq3-m"])
def test_every_llama_cpp_file_type_is_accepted(name: str) -> None:
    assert weight_format(name).gguf_rule is not None


def test_file_types_order_by_size() -> None:
    """Each i-quant file is smaller than the next larger type, as llama-quantize lists them."""
    shape = default_catalog().find("meta-llama/Llama-3.1-8B").shape()
    from vramest.inference.memory import weight_bytes

    order = ["iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq3_xxs", "iq3_xs",
             "iq3_s", "iq3_m", "iq4_xs", "q4_k_m", "q5_k_m", "q6_k", "q8_0"]
    sizes = [weight_bytes(shape, weight_format(name)) for name in order]
    assert sizes == sorted(sizes)


def test_ggml_float_spellings() -> None:
    assert weight_format("f32").name == "fp32"
    assert weight_format("F16").name == "fp16"
    with pytest.raises(InputError, match="accepted"):
        weight_format("iq5_m")
