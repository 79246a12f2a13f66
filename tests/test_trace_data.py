"""The analytic estimate against stored fake-tensor traces (vramest/validation/traces/): no torch.

The traces are the exact peak of live tensor bytes of transformers' own code at full size
(regenerate with scripts/make_traces.py); the analytic weights + KV + activations must
stay within the agreed tolerance of them.
"""

from __future__ import annotations

import statistics

import pytest

from vramest.tracing.inference import (
    TRACE_DIR,
    StoredTrace,
    compare_traces,
    load_traces,
    trace_accuracy_report,
    transformers_prefill_kv_bytes,
)

ROWS = load_traces(TRACE_DIR)


def test_stored_traces_cover_the_grid() -> None:
    models = {row.model for row in ROWS}
    assert len(ROWS) >= 60
    assert {"meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B", "mistralai/Mixtral-8x7B-v0.1",
            "mistralai/Mistral-7B-v0.1", "deepseek-ai/DeepSeek-V2-Lite"} <= models
    for row in ROWS:
        assert row.prefill_peak_bytes == row.params_bytes + row.kv_cache_bytes + \
            row.activations_bytes, row.label


def test_median_error_on_total_peak_is_under_half_a_percent() -> None:
    errors = [abs(c.error) for c in compare_traces(ROWS)]
    assert statistics.median(errors) < 0.005  # the README states 0.01%


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_activations_alone_follow_the_traces(attention: str) -> None:
    """The activation part by itself (not drowned by the weights) is within 5% at the median,
    and within 12% on every row but two known gaps the formula does not model yet: GPT-2's
    eager attention (softmax in 16 bit, scores kept through the MLP) and chunked sdpa prefill
    (with a cache, transformers' sdpa path repeats the keys and values of the whole context
    to every head). A vision-language row (Gemma 3 with a picture) is compared on its total
    peak only: the text embeddings and their copy with the image features merged in stay live
    beside the MLP (about 2 × hidden per token, -13% of its activations, 0.2% of its peak)."""
    from vramest.api import estimate

    errors = []
    for row in ROWS:
        if row.attention != attention or not row.comparable or row.images:
            continue
        est = estimate(model=row.model, dtype=row.dtype, ctx=row.ctx, batch=row.batch,
                       attention=row.attention, prefill_chunk=row.prefill_chunk)
        error = est.memory.activations.bytes / row.activations_bytes - 1
        errors.append(abs(error))
        known_gap = (row.model == "openai-community/gpt2" and attention == "eager") or \
            (attention == "sdpa" and row.prefill_chunk < row.ctx)
        if not known_gap:
            assert abs(error) < 0.12, f"{row.label}: {100 * error:+.1f}%"
    assert statistics.median(errors) < 0.05


def _picture_tokens(row: StoredTrace) -> int:
    """Tokens a vision-language row's pictures add to its text context."""
    if not row.images:
        return 0
    from vramest.model.catalog import default_catalog
    from vramest.model.vision import image_tokens, native_side

    config = default_catalog().find(row.model).config
    side = native_side(config)
    return row.images * image_tokens(config, side, side).per_image


def test_kv_cache_matches_what_transformers_holds() -> None:
    from vramest.api import estimate
    from vramest.model.precisions import kv_format

    for row in ROWS:
        if row.images and row.kv_cache_bytes < 4096:
            continue  # the peak sat in the vision tower, before any layer wrote the cache
        ctx = row.ctx + _picture_tokens(row)
        est = estimate(model=row.model, dtype=row.dtype, ctx=ctx, batch=row.batch,
                       attention=row.attention, prefill_chunk=row.prefill_chunk)
        kv = transformers_prefill_kv_bytes(est.model.shape,
                                           kv_format(est.settings.kv_dtype).bytes_per_element,
                                           ctx, row.prefill_chunk, row.batch)
        # the peak may sit in a layer before the last, with fewer layers' KV written
        assert kv + 4096 >= row.kv_cache_bytes, row.label  # + small per-layer bookkeeping tensors
        assert kv - row.kv_cache_bytes <= kv * 0.05, row.label


def test_weights_match_the_traced_parameters() -> None:
    from vramest.api import estimate

    for row in ROWS:
        weights = estimate(model=row.model, dtype=row.dtype).memory.weights.bytes
        assert abs(weights - row.params_bytes) <= 1024**2, row.label  # rope buffers


def test_report_prints_rows_and_summary() -> None:
    lines = trace_accuracy_report(TRACE_DIR)
    assert len(lines) >= len(compare_traces(ROWS)) + 2
    assert any(line.startswith("analytic vs trace:") and "median" in line for line in lines)
