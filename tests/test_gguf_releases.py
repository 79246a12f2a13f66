"""GGUF release names: Unsloth's dynamic quants (UD-IQ1_S, UD-Q4_K_XL) and GGUF repositories, against
the file sizes published for them."""

from __future__ import annotations

import pytest

from vramest.api import estimate


@pytest.mark.parametrize(("dtype", "published_gb"), [
    # unsloth.ai/blog/deepseekr1-dynamic: DeepSeek-R1's dynamic GGUFs
    ("UD-IQ1_S", 131), ("UD-IQ1_M", 158), ("UD-IQ2_XXS", 183), ("UD-Q2_K_XL", 212),
])
def test_unsloth_dynamic_quants_count_near_their_published_files(dtype: str,
                                                                 published_gb: float) -> None:
    est = estimate(model="deepseek-ai/DeepSeek-R1", dtype=dtype, profile="none")
    assert est.memory.weights.bytes / 1e9 == pytest.approx(published_gb, rel=0.16)
    assert any("Unsloth Dynamic" in line for line in est.assumptions)


def test_a_gguf_repository_of_an_mxfp4_release_is_llamacpps_mxfp4_moe_file() -> None:
    # ggml-org/gpt-oss-20b-GGUF: "MXFP4 (gpt-oss 20B MXFP4 MoE, 11.27 GiB)"
    # (ggml-org/llama.cpp benches/dgx-spark.md)
    est = estimate(model="unsloth/gpt-oss-20b-GGUF", profile="none")
    assert est.settings.dtype == "mxfp4_moe"
    assert est.memory.weights.bytes / 2**30 == pytest.approx(11.27, rel=0.005)
