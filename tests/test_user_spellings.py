"""Flags as users paste them from the engines' own command lines and their threads."""

from __future__ import annotations

import pytest

import vramest
from vramest.cli import main
from vramest.errors import InputError
from vramest.model.precisions import weight_format


@pytest.mark.parametrize(("engine", "release"), [
    ("vllm==0.6.3", "0.6.3"), ("vLLM@0.8.5", "0.8.5"), ("ollama==0.5.7", "0.5.7"),
])
def test_an_engine_named_with_its_release(engine: str, release: str) -> None:
    """pip's `vllm==0.6.3` is --engine vllm --engine-version 0.6.3, in the API and the CLI."""
    base = engine.replace("@", "==").split("==")[0].lower()
    gpu = "a10g" if base == "vllm" else "4090"
    named = vramest.estimate(model="llama-3.1-8b", engine=engine, gpu=gpu).to_json()
    flagged = vramest.estimate(model="llama-3.1-8b", engine=base, gpu=gpu,
                               engine_options={"version": release}).to_json()
    assert named == flagged


def test_a_release_in_both_places_must_agree(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match=r"names release 0\.6\.3 and --engine-version says 0\.5\.4"):
        vramest.estimate(model="llama-3.1-8b", engine="vllm==0.6.3", gpu="a10g",
                         engine_options={"version": "0.5.4"})
    assert main(["--model", "llama-3.1-8b", "--engine", "vllm==0.6.3", "--engine-version",
                 "0.6.3", "--gpu", "a10g"]) == 0
    assert main(["--model", "llama-3.1-8b", "--engine", "vllm==0.6.3", "--engine-version",
                 "0.5.4", "--gpu", "a10g"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("engine", ["vLLM", "Ollama", "SGLang", "TGI", "llama.cpp", "vllm==0.10.1"])
def test_the_cli_takes_engine_names_in_any_case(engine: str) -> None:
    assert main(["--model", "llama-3.1-8b", "--engine", engine, "--gpu", "h100"]) == 0


def test_an_unknown_engine_with_a_release_is_still_refused(capsys: pytest.CaptureFixture[str],
                                                           ) -> None:
    assert main(["--params", "7B", "--engine", "foo==1"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(("spelling", "name"), [
    ("4-bit", "int4"), ("4 bit", "int4"), ("8bit", "int8"), ("8-bit", "int8"),
    ("load_in_4bit", "nf4"), ("load_in_8bit", "int8"), ("bitsandbytes", "nf4"),
    ("fp8_e4m3", "fp8"), ("float8_e4m3fn", "fp8"),
])
def test_precisions_as_users_write_them(spelling: str, name: str) -> None:
    assert weight_format(spelling).name == name


def test_a_trainer_launch_command_pasted_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    """LLaMA-Factory's and transformers' own flag names and values read as vramest's."""
    import json

    pasted = ["train", "--model", "Qwen/Qwen3-8B", "--method", "lora", "--cutoff_len", "4096",
              "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "8",
              "--optim", "paged_adamw_8bit", "--lora_r", "16", "--gradient_checkpointing", "true",
              "--json"]
    own = ["train", "--model", "Qwen/Qwen3-8B", "--method", "lora", "--seq", "4096",
           "--micro-batch", "2", "--grad-accumulation", "8", "--optimizer", "paged-adamw-8bit",
           "--lora-rank", "16", "--grad-checkpointing", "full", "--json"]
    assert main(pasted) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(own) == 0
    assert first == json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("optim", "name"), [
    ("adamw_torch", "adamw"), ("adamw_torch_fused", "adamw-fused"), ("adamw_8bit", "adamw-8bit"),
    ("adamw_bnb_8bit", "adamw-8bit"), ("paged_adamw_8bit", "paged-adamw-8bit"),
    ("paged_adamw_32bit", "paged-adamw"),
])
def test_transformers_optimizer_names(optim: str, name: str) -> None:
    from vramest.training.settings import make_settings

    assert make_settings(optimizer=optim).optimizer == name


def test_a_pasted_launch_command_answers_as_without_its_server_flags(
        capsys: pytest.CaptureFixture[str]) -> None:
    core = ["--engine", "vllm", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "4090",
            "--max-model-len", "8192"]
    assert main(core) == 0
    plain = capsys.readouterr()
    pasted = [*core, "--enable-prefix-caching", "--port", "8000", "--host=0.0.0.0",
              "--trust-remote-code", "--served-model-name", "qwen"]
    assert main(pasted) == 0
    out = capsys.readouterr()
    assert out.out == plain.out and out.err.count("\n") == 1 and "change no memory" in out.err
    assert main(["--params", "7B", "--port"]) == 2  # a flag without its value is still refused


def test_no_inert_flag_is_one_of_vramests_own() -> None:
    from vramest.commands.fast_parse import _Record, define
    from vramest.commands.inert_flags import INERT

    top = _Record()
    define(top, only="estimate")
    own = {s for spellings, _, _ in top.commands["estimate"].calls for s in spellings}
    assert not own & set(INERT)


@pytest.mark.parametrize(("spelling", "name"), [("q4", "q4_k_m"), ("Q8", "q8_0"), ("q5", "q5_k_m"),
                                                ("q4_0", "q4_0")])
def test_a_gguf_size_class_is_its_usual_k_quant(spelling: str, name: str) -> None:
    assert weight_format(spelling).name == name


@pytest.mark.parametrize(("text", "tokens"), [("32,768", 32768), ("131,072", 131072),
                                              ("1,048,576", 1048576)])
def test_a_count_with_thousands_groups_as_logs_print_it(text: str, tokens: int) -> None:
    from vramest.units import parse_tokens

    assert parse_tokens(text) == tokens


@pytest.mark.parametrize("text", ["1,5", "32,76", "1,0000", ",768", "32,768,"])
def test_a_comma_that_is_not_a_thousands_group_is_refused(text: str) -> None:
    from vramest.units import parse_tokens

    with pytest.raises(InputError):
        parse_tokens(text)


def test_a_moe_named_total_dash_active() -> None:
    """Qwen's 30B-A3B: --params 30B --active-params 3B."""
    named = vramest.estimate(params="30B-A3B").to_json()
    flagged = vramest.estimate(params="30B", active_params="3B").to_json()
    assert named["model"] == flagged["model"] and named["memory"] == flagged["memory"]
