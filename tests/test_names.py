"""Names users type for catalog models: fine-tunes, quantized releases, Ollama tags."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vramest
from vramest.cli import main
from vramest.errors import InputError
from vramest.model.catalog import default_catalog
from vramest.model.names import catalog_match
from vramest.model.resolve import _native_format


def _weights(**kwargs: object) -> int:
    return vramest.estimate(**kwargs).memory.weights.bytes  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "base"), [
    ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B"),
    ("meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B"),
    ("meta-llama/Llama-2-7b-chat-hf", "meta-llama/Llama-2-7b-hf"),
    ("google/gemma-2-9b-it", "google/gemma-2-9b"),
    ("Qwen/Qwen1.5-14B-Chat", "Qwen/Qwen1.5-14B"),
])
def test_a_fine_tune_is_counted_with_its_base_config(name: str, base: str) -> None:
    by_tune, by_base = vramest.estimate(model=name), vramest.estimate(model=base)
    assert by_tune.model.params == by_base.model.params
    assert by_tune.memory.total == by_base.memory.total
    assert any(name in a and "keeps its base's config" in a for a in by_tune.assumptions)


@pytest.mark.parametrize(("name", "base", "dtype"), [
    ("Qwen/Qwen2.5-7B-Instruct-AWQ", "Qwen/Qwen2.5-7B", "awq-int4"),
    ("Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4", "Qwen/Qwen2.5-72B", "gptq-int4"),
    ("TheBloke/Llama-2-7B-Chat-GPTQ", "meta-llama/Llama-2-7b-hf", "gptq-int4"),
    ("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "meta-llama/Llama-3.3-70B-Instruct", "fp8"),
    ("unsloth/Llama-3.3-70B-Instruct-bnb-4bit", "meta-llama/Llama-3.3-70B-Instruct",
     "bnb-nf4-dq"),
    ("bartowski/Meta-Llama-3.1-8B-Instruct-Q5_K_M-GGUF", "meta-llama/Llama-3.1-8B", "q5_k_m"),
])
def test_a_quantized_release_is_its_base_in_the_format_its_name_says(name: str, base: str,
                                                                     dtype: str) -> None:
    assert _weights(model=name) == _weights(model=base, dtype=dtype)
    assert _weights(model=name, dtype="bf16") == _weights(model=base, dtype="bf16")  # --dtype wins


@pytest.mark.parametrize(("tag", "base", "dtype"), [
    ("llama3.1:8b", "meta-llama/Llama-3.1-8B", "q4_k_m"),  # the library's default
    ("qwen2.5:32b-instruct-q8_0", "Qwen/Qwen2.5-32B", "q8_0"),
    ("llama3.3:70b-instruct-fp16", "meta-llama/Llama-3.3-70B-Instruct", "gguf-f16"),
    ("gpt-oss:20b", "openai/gpt-oss-20b", None),  # Ollama ships its MXFP4 as it is
    ("qwen3:30b-a3b-instruct-2507-q4_K_M", "Qwen/Qwen3-30B-A3B", "q4_k_m"),
])
def test_an_ollama_tag_is_the_library_model(tag: str, base: str, dtype: str | None) -> None:
    assert _weights(model=tag) == _weights(model=base, dtype=dtype)


def test_ollama_without_a_dtype_takes_the_library_quantization() -> None:
    plain = vramest.estimate(model="meta-llama/Llama-3.1-8B", engine="ollama", gpu="rtx 3060")
    assert plain.memory.weights.bytes == _weights(model="meta-llama/Llama-3.1-8B", dtype="q4_k_m")
    assert any("Ollama's library" in a for a in plain.assumptions)
    given = vramest.estimate(model="meta-llama/Llama-3.1-8B", engine="ollama", dtype="q8_0",
                             gpu="rtx 3060")
    assert given.memory.weights.bytes == _weights(model="meta-llama/Llama-3.1-8B", dtype="q8_0")
    assert not any("Ollama's library" in a for a in given.assumptions)


@pytest.mark.parametrize("name", ["mistralai/Mistral-7B-Instruct-v0.9", "not-a-model:7b",
                                  "someone/Llama-3.1-9B-Instruct", "Llama-3.1-8B-Instruct-1M"])
def test_no_guess_by_size(name: str) -> None:
    assert catalog_match(name) is None


def test_a_path_is_read_as_a_path_not_matched_by_its_name(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: object) -> None:
    assert main(["--model", f"{tmp_path}/Llama-3.1-8B-Instruct/config.json"]) == 2
    assert "No such file" in capsys.readouterr().err


def test_an_unknown_tag_is_refused_in_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "not-a-model:7b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vramest: Unknown model") and err.count("\n") == 1
    with pytest.raises(InputError):
        vramest.estimate(model="not-a-model:7b")


_PLAIN = [e for e in default_catalog().entries if "quantization_config" not in e.config]
_TUNES = ["", "-Instruct", "-Chat", "-it", "-hf", "-Instruct-hf"]
# a GGUF repository named without its file: the Q4_K_M users pull by default, said as assumed
_QUANTS = {"": None, "-AWQ": "awq-int4", "-GPTQ-Int4": "gptq-int4", "-FP8": "fp8",
           "-bnb-4bit": "bnb-nf4-dq", "-Q4_K_M-GGUF": "q4_k_m", "-GGUF": "q4_k_m"}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_PLAIN), st.sampled_from(_TUNES), st.sampled_from(sorted(_QUANTS)),
       st.booleans())
def test_any_spelling_of_a_catalog_model_keeps_its_shape(entry: object, tune: str, quant: str,
                                                          keep_org: bool) -> None:
    name = entry.id if keep_org else entry.id.split("/")[-1]  # type: ignore[attr-defined]
    match = catalog_match(name + tune + quant)
    assert match is not None
    if match.reason:  # a spelling, not a catalog release of its own (an official AWQ may pad)
        assert match.entry.shape().param_count() == \
            entry.shape().param_count()  # type: ignore[attr-defined]
    # an exact catalog name of a quantized release carries its format in its config
    own = _native_format(match.entry.config) if "quantization_config" in match.entry.config \
        else None
    assert (match.precision or own) == _QUANTS[quant]


def test_gemma_3_qat_releases_are_q4_0_with_a_16_bit_embedding_table() -> None:
    """Google's QAT GGUFs keep every matrix in Q4_0 and the token embeddings in F16: the 27B
    file is 17.2 GB where the same weights with llama.cpp's Q6_K table take 15.6 GB
    (huggingface.co/stduhpf/google-gemma-3-27b-it-qat-q4_0-gguf-small); Ollama's
    gemma3:*-it-qat tags are that file, and the "-unquantized" repositories hold 16-bit weights."""
    assert catalog_match("gemma3:27b-it-qat").precision == "q4_0-qat"
    assert catalog_match("google/gemma-3-27b-it-qat-q4_0-gguf").precision == "q4_0-qat"
    unquantized = catalog_match("google/gemma-3-27b-it-qat-q4_0-unquantized")
    assert unquantized.entry.id == "google/gemma-3-27b-it" and unquantized.precision is None
    assert catalog_match("gemma3:27b").precision == "q4_k_m"
    qat = vramest.estimate(model="google/gemma-3-27b-it", dtype="q4_0-qat").memory.weights.bytes
    plain = vramest.estimate(model="google/gemma-3-27b-it", dtype="q4_0").memory.weights.bytes
    assert 1.45e9 < qat - plain < 1.75e9  # 17.2 - 15.6 GB, to the files' 0.1 GB rounding
