"""Model names pasted from threads: a GGUF file's name with no such file here, an Unsloth mix
after a repository, a GGUF repository named without its file."""

from __future__ import annotations

import pytest

import vramest
from vramest.errors import InputError


@pytest.mark.parametrize(("name", "model", "dtype"), [
    ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "meta-llama/Llama-3.1-8B", "q4_k_m"),
    ("Qwen2.5-32B-Instruct-Q5_K_M-00001-of-00002.gguf", "Qwen/Qwen2.5-32B-Instruct", "q5_k_m"),
    # Unsloth's dynamic mixes in a file name, as its repositories name the files
    ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "Qwen/Qwen3-30B-A3B", "ud-q4_k_xl"),
    ("Qwen3-30B-A3B-UD-IQ1_S.gguf", "Qwen/Qwen3-30B-A3B", "ud-iq1_s"),
])
def test_a_gguf_file_name_with_no_file_here(name: str, model: str, dtype: str) -> None:
    est = vramest.estimate(model=name)
    assert (est.model.name, est.settings.dtype) == (model, dtype)
    assert f"no file {name} here" in est.model.origin


def test_a_file_name_that_names_nothing_known_is_still_no_such_file() -> None:
    with pytest.raises(InputError, match="No such file or folder"):
        vramest.estimate(model="nosuchmodel-Q4_K_M.gguf")


def test_a_real_file_is_read_not_its_name(tmp_path: object) -> None:
    """A path that exists is the file's own count, whatever its name says: the name rule is
    only for a file that is not here."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"
    path.write_bytes(b"not a gguf")
    with pytest.raises(InputError):
        vramest.estimate(model=str(path))


@pytest.mark.parametrize(("name", "dtype"), [
    ("unsloth/DeepSeek-R1-GGUF:UD-IQ1_S", "ud-iq1_s"),
    ("unsloth/Qwen3-30B-A3B-GGUF:UD-Q4_K_XL", "ud-q4_k_xl"),
    ("hf.co/unsloth/Qwen3-8B-GGUF:Q4_K_XL", "q4_k_xl"),
])
def test_an_unsloth_mix_after_its_repository_is_the_dtype_of_that_name(name: str,
                                                                       dtype: str) -> None:
    named = vramest.estimate(model=name)
    flagged = vramest.estimate(model=name.split(":")[0].removeprefix("hf.co/"), dtype=dtype)
    assert named.settings.dtype == dtype and named.memory == flagged.memory


def test_a_gguf_repository_without_its_file_is_its_q4_k_m_and_says_so() -> None:
    est = vramest.estimate(model="TheBloke/Mixtral-8x7B-Instruct-v0.1-GGUF")
    assert est.settings.dtype == "q4_k_m"
    assert "--dtype names yours" in est.model.origin
    assert vramest.estimate(model="ggml-org/gpt-oss-20b-GGUF").settings.dtype == "mxfp4_moe"


@pytest.mark.parametrize(("link", "model", "dtype"), [
    ("https://huggingface.co/bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/blob/main/"
     "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "meta-llama/Llama-3.1-8B", "q4_k_m"),
    ("https://huggingface.co/unsloth/Qwen3-30B-A3B-GGUF/resolve/main/Qwen3-30B-A3B-Q8_0.gguf"
     "?download=true", "Qwen/Qwen3-30B-A3B", "q8_0"),
    ("hf.co/unsloth/Qwen3-30B-A3B-GGUF/resolve/main/UD-Q4_K_XL/"
     "Qwen3-30B-A3B-UD-Q4_K_XL-00001-of-00002.gguf", "Qwen/Qwen3-30B-A3B", "ud-q4_k_xl"),
])
def test_a_hub_link_to_a_gguf_file_is_that_file_name(link: str, model: str, dtype: str) -> None:
    est = vramest.estimate(model=link)
    assert (est.model.name, est.settings.dtype) == (model, dtype)


def test_a_hub_link_to_an_unknown_file_is_still_no_such_file() -> None:
    with pytest.raises(InputError, match="No such file or folder"):
        vramest.estimate(model="https://huggingface.co/x/y/blob/main/nothing-known.gguf")
