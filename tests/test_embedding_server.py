"""Embedding servers: vLLM's pooling runner against published logs, and its rules as invariants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vramest.api import estimate
from vramest.errors import InputError
from vramest.hardware.database import default_hardware
from vramest.inference.engines.startup import VLLMOptions, parse_engine_options, vllm_startup
from vramest.model.catalog import default_catalog
from vramest.validation.serving_architectures import (
    serving_architecture_report,
    serving_architecture_rows,
)

REFERENCE = Path(__file__).resolve().parents[1] / "vramest" / "validation" / "reference"
H100 = default_hardware().find("h100")


def startup(model: str, runner: str = "auto"):
    return vllm_startup(estimate(model=model), H100, 1,
                        VLLMOptions(runner=runner, max_model_len=8192, version="0.10.1"))


def test_published_server_figures_within_a_tenth_of_a_percent():
    rows = serving_architecture_rows(REFERENCE)
    assert {r.record_id for r in rows} >= {"qwen3-embedding-1-weights", "gpustack-2793-kv-tokens"}
    for row in rows:
        assert abs(row.error) < 1e-3, (row.record_id, row.estimated, row.measured)
    assert len(serving_architecture_report(REFERENCE)) == len(rows) + 1


@pytest.mark.parametrize(("model", "published"), [
    ("Qwen/Qwen3-Embedding-0.6B", 595_776_512),  # keras-hub presets (PR #2455)
    ("Qwen/Qwen3-Embedding-4B", 4_021_774_336),
    ("Qwen/Qwen3-Embedding-8B", 8_188_515_328),
])
def test_qwen3_embedding_counts_equal_the_published_ones(model, published):
    entry = default_catalog().find(model)
    assert entry.published_params == published
    assert entry.shape().param_count() == published


def test_pooling_runner_drops_an_untied_head_only():
    head = 151_680 * 4096 * 2  # Qwen3-Embedding-8B's head, vocabulary padded to 64 rows, bf16
    generate, pooling = startup("Qwen/Qwen3-Embedding-8B", "generate"), \
        startup("Qwen/Qwen3-Embedding-8B", "pooling")
    assert generate.weights_bytes - pooling.weights_bytes == pytest.approx(head, rel=2e-3)
    tied = startup("Qwen/Qwen3-Embedding-0.6B", "generate"), \
        startup("Qwen/Qwen3-Embedding-0.6B", "pooling")
    assert tied[0].weights_bytes == tied[1].weights_bytes


def test_pooling_profile_runs_no_sampler_and_keeps_causal_kv():
    generate, pooling = startup("Qwen/Qwen3-Embedding-0.6B", "generate"), \
        startup("Qwen/Qwen3-Embedding-0.6B", "pooling")
    assert pooling.activation_peak_bytes < generate.activation_peak_bytes
    assert pooling.kv_bytes_per_token == generate.kv_bytes_per_token == 28 * 2 * 8 * 128 * 2
    assert pooling.kv_cache_tokens > generate.kv_cache_tokens


def test_a_bare_decoder_checkpoint_is_served_pooled_with_its_kv_cache():
    e5 = startup("intfloat/e5-mistral-7b-instruct")  # MistralModel: no head, auto -> pooling
    assert e5.kv_bytes_per_token == 32 * 2 * 8 * 128 * 2
    assert e5.kv_cache_tokens > 0 and any("Pooling runner" in n for n in e5.notes)
    with pytest.raises(InputError, match="pooling runner only"):
        startup("intfloat/e5-mistral-7b-instruct", "generate")


def test_encoder_only_models_are_refused_in_one_sentence():
    with pytest.raises(InputError, match="EncoderOnlyAttentionSpec"):
        startup("BAAI/bge-m3")


@pytest.mark.parametrize(("given", "runner"), [("embed", "pooling"), ("score", "pooling"),
                                               ("Pooling", "pooling"), ("generate", "generate")])
def test_runner_spellings(given, runner):
    assert parse_engine_options("vllm", {"runner": given}) == {"runner": runner}


def test_cli_bad_runner_exits_2_with_one_sentence():
    run = subprocess.run([sys.executable, "-m", "vramest", "--model", "qwen3-embedding",
                          "--engine", "vllm", "--gpu", "h100", "--task", "draw"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and "--runner" in run.stderr
