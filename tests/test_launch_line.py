"""A launch line pasted as a thread quotes it answers as the same setup in vramest's own flags."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.cli import main
from vramest.commands.launch_line import estimate_args
from vramest.errors import InputError


def answer(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("pasted", "ours"), [
    (("vllm", "serve", "meta-llama/Llama-3.1-8B", "--max-model-len", "8192", "--port", "8000"),
     ("--model", "meta-llama/Llama-3.1-8B", "--engine", "vllm", "--max-model-len", "8192")),
    (("python3", "-m", "vllm.entrypoints.openai.api_server", "--model",
      "meta-llama/Llama-3.1-8B", "-tp", "2"),
     ("--model", "meta-llama/Llama-3.1-8B", "--engine", "vllm", "--num-gpus", "2")),
    # the image's tag is the release
    (("docker", "run", "--runtime", "nvidia", "--gpus", "all", "-p", "8000:8000", "--ipc=host",
      "-e", "HF_TOKEN=hf_x", "vllm/vllm-openai:v0.6.3", "--model", "meta-llama/Llama-3.1-8B"),
     ("--model", "meta-llama/Llama-3.1-8B", "--engine", "vllm==0.6.3")),
    (("VLLM_ALLOW_LONG_MAX_MODEL_LEN=1", "vllm", "serve", "meta-llama/Llama-3.1-8B",
      "--max-model-len", "200000"),
     ("--model", "meta-llama/Llama-3.1-8B", "--engine", "vllm", "--max-model-len", "200000",
      "--allow-long-max-model-len")),
])
def test_vllm_lines(capsys: pytest.CaptureFixture[str], pasted: tuple[str, ...],
                    ours: tuple[str, ...]) -> None:
    gpu = ("--gpu", "a100 sxm4 80gb", "--num-gpus", "2") if "-tp" in pasted else ("--gpu", "a10g")
    assert answer(capsys, *pasted, *gpu) == answer(capsys, *ours, *gpu)


def test_sglang_line_settings_become_engine_options(capsys: pytest.CaptureFixture[str]) -> None:
    pasted = answer(capsys, "python", "-m", "sglang.launch_server", "--model-path",
                    "Qwen/Qwen2.5-7B-Instruct", "--tp", "2", "--mem-fraction-static", "0.8",
                    "--context-length", "8192", "--gpu", "rtx 4090", "--num-gpus", "2")
    ours = answer(capsys, "--model", "Qwen/Qwen2.5-7B-Instruct", "--engine", "sglang",
                  "--num-gpus", "2", "--engine-option", "mem_fraction_static=0.8",
                  "--engine-option", "context_length=8192", "--gpu", "rtx 4090")
    assert pasted == ours
    engine = pasted["engine"]
    assert isinstance(engine, dict) and engine["mem_fraction_static"] == 0.8


def test_sglang_image_running_its_server_module(capsys: pytest.CaptureFixture[str]) -> None:
    pasted = answer(capsys, "docker", "run", "--gpus", "all", "--shm-size", "32g",
                    "lmsysorg/sglang:v0.4.6.post1-cu124", "python3", "-m",
                    "sglang.launch_server", "--model-path", "Qwen/Qwen2.5-7B-Instruct",
                    "--gpu", "a10g")
    assert pasted == answer(capsys, "--model", "Qwen/Qwen2.5-7B-Instruct", "--engine",
                            "sglang==0.4.6.post1", "--gpu", "a10g")


def test_tgi_launcher_and_image(capsys: pytest.CaptureFixture[str]) -> None:
    ours = answer(capsys, "--model", "mistralai/Mistral-7B-v0.1", "--engine", "tgi==2.0.4",
                  "--num-gpus", "1", "--engine-option", "max_total_tokens=8192", "--gpu", "l4")
    launcher = ("text-generation-launcher", "--model-id", "mistralai/Mistral-7B-v0.1",
                "--num-shard", "1", "--max-total-tokens", "8192", "--gpu", "l4")
    assert answer(capsys, *launcher, "--engine-version", "2.0.4") == ours
    assert answer(capsys, "docker", "run", "--gpus", "all", "-v", "/data:/data",
                  "ghcr.io/huggingface/text-generation-inference:2.0.4", *launcher[1:]) == ours


@pytest.mark.parametrize(("fa", "ours"), [
    (("-fa", "on"), ("--flash-attn",)), (("-fa", "off"), ("--no-flash-attn",)),
    (("--flash-attn",), ("--flash-attn",)),  # before b6325: the bare flag meant on
    (("-fa", "auto"), ()),
])
def test_llama_server_line(capsys: pytest.CaptureFixture[str], fa: tuple[str, ...],
                           ours: tuple[str, ...]) -> None:
    pasted = answer(capsys, "./build/bin/llama-server", "-m", "Qwen3-8B-Q4_K_M.gguf", "-c",
                    "16384", *fa, "-ngl", "99", "-ub", "256", "--gpu", "rtx 4090")
    assert pasted == answer(capsys, "--model", "Qwen3-8B-Q4_K_M.gguf", "--engine", "llamacpp",
                            "-c", "16384", *ours, "-ngl", "99", "--ubatch", "256", "--gpu",
                            "rtx 4090")


def test_ollama_line_with_its_environment(capsys: pytest.CaptureFixture[str]) -> None:
    pasted = answer(capsys, "OLLAMA_NUM_PARALLEL=4", "OLLAMA_KV_CACHE_TYPE=q8_0", "ollama", "run",
                    "llama3.1:8b", "--gpu", "rtx 4090")
    assert pasted == answer(capsys, "--model", "llama3.1:8b", "--engine", "ollama",
                            "--engine-option", "OLLAMA_NUM_PARALLEL=4", "--engine-option",
                            "OLLAMA_KV_CACHE_TYPE=q8_0", "--gpu", "rtx 4090")
    engine = pasted["engine"]
    assert isinstance(engine, dict) and engine["num_parallel"] == 4


def test_a_model_named_first_is_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    ours = answer(capsys, "--model", "Qwen/Qwen2.5-7B", "--gpu", "rtx 4090")
    assert answer(capsys, "Qwen/Qwen2.5-7B", "--gpu", "rtx 4090") == ours
    assert answer(capsys, "estimate", "Qwen/Qwen2.5-7B", "--gpu", "rtx 4090") == ours
    assert answer(capsys, "train", "Qwen/Qwen2.5-7B", "--method", "lora", "--gpu", "h100") == \
        answer(capsys, "train", "--model", "Qwen/Qwen2.5-7B", "--method", "lora", "--gpu", "h100")


def test_devices_left_out_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["CUDA_VISIBLE_DEVICES=0,1", "vllm", "serve", "meta-llama/Llama-3.1-8B", "-tp",
                 "2", "--gpu", "rtx 4090", "--num-gpus", "2"]) == 0
    err = capsys.readouterr().err
    assert "CUDA_VISIBLE_DEVICES=0,1 left out" in err and "--num-gpus" in err


@pytest.mark.parametrize(("argv", "says"), [
    (["vllm", "run", "x"], "accepted: vllm serve"),
    (["docker", "run", "--gpus", "all", "nginx:latest"], "not an engine's image"),
    (["docker", "run", "--gpus", "all"], "names no image"),
    (["python", "-m", "http.server"], "not a server vramest reads"),
    (["vllm", "serve", "meta-llama/Llama-3.1-8B", "--engine", "llamacpp"], "give one"),
    (["FOO=1", "--gpu", "h100"], "no engine program follows"),
    (["llama-server", "-m", "Qwen3-8B-Q4_K_M.gguf", "-fa", "maybe"], "on, off or auto"),
    (["docker", "run", "vllm/vllm-openai", "llama-server", "-m", "x.gguf"], "give one"),
])
def test_lines_it_cannot_read_get_one_sentence(capsys: pytest.CaptureFixture[str],
                                               argv: list[str], says: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


_WORDS = st.sampled_from(["vllm", "serve", "ollama", "run", "docker", "-e", "A=1", "python", "-m",
                          "sglang.launch_server", "llama-server", "-fa", "on", "--model-id",
                          "--tp", "2", "--engine", "vllm", "x", "-", "=", "--mem-fraction-static",
                          "lmsysorg/sglang:v1", "OLLAMA_NUM_PARALLEL=2", "", "--"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORDS | st.text(max_size=12), max_size=8))
def test_any_words_read_or_refused_in_one_sentence(words: list[str]) -> None:
    try:
        out = estimate_args(words)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert out[0] == "estimate"
