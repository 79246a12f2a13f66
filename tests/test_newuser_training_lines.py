"""LLaMA-Factory's own command pasted after `vramest train` (or first): its YAML with
overrides, its settings as --key value flags, and the scripts it ran before llamafactory-cli."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramest.cli import main


def answer(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


_YAML = """\
model_name_or_path: meta-llama/Llama-3.1-8B
stage: sft
do_train: true
finetuning_type: lora
lora_target: all
dataset: alpaca_en_demo
cutoff_len: 2048
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
bf16: true
"""


def test_the_cli_with_a_yaml_is_the_config(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    path = tmp_path / "llama3_lora_sft.yaml"
    path.write_text(_YAML)
    ours = answer(capsys, "train", "--config", str(path), "--gpu", "rtx 4090")
    assert answer(capsys, "llamafactory-cli", "train", str(path), "--gpu", "rtx 4090") == ours
    assert answer(capsys, "train", "llamafactory-cli", "train", str(path), "--gpu",
                  "rtx 4090") == ours
    # llamafactory-cli train x.yaml key=value: the value wins over the file's
    longer = answer(capsys, "llamafactory-cli", "train", str(path), "cutoff_len=4096", "--gpu",
                    "rtx 4090")
    assert longer == answer(capsys, "train", "--config", str(path), "--seq", "4096", "--gpu",
                            "rtx 4090")


def test_the_cli_with_flags_is_the_same_settings(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(_YAML)
    flags = ("--model_name_or_path", "meta-llama/Llama-3.1-8B", "--stage", "sft", "--do_train",
             "--finetuning_type", "lora", "--lora_target", "all", "--dataset",
             "alpaca_en_demo", "--cutoff_len", "2048", "--per_device_train_batch_size", "1",
             "--gradient_accumulation_steps", "8", "--bf16", "True")
    ours = answer(capsys, "train", "--config", str(path), "--gpu", "rtx 4090")
    assert answer(capsys, "llamafactory-cli", "train", *flags, "--gpu", "rtx 4090") == ours
    assert answer(capsys, "CUDA_VISIBLE_DEVICES=0", "python", "src/train_bash.py", *flags,
                  "--gpu", "rtx 4090") == ours


def test_finetuning_type_defaults_to_lora(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    """FinetuningArguments.finetuning_type defaults to "lora" in LLaMA-Factory, in a YAML as
    on its command line."""
    out = answer(capsys, "llamafactory-cli", "train", "--model_name_or_path",
                 "meta-llama/Llama-3.1-8B", "--cutoff_len", "1024", "--gpu", "h100")
    assert out["settings"]["method"] == "lora"  # type: ignore[index]
    path = tmp_path / "x.yaml"
    path.write_text(_YAML.replace("finetuning_type: lora\n", ""))
    out = answer(capsys, "train", "--config", str(path), "--gpu", "h100")
    assert out["settings"]["method"] == "lora"  # type: ignore[index]


def test_full_fine_tune_of_llama_7b_at_batch_4_does_not_fit_an_a100_80gb(
        capsys: pytest.CaptureFixture[str]) -> None:
    """hiyouga/LlamaFactory #46: `python src/train_sft.py --finetuning_type full
    --per_device_train_batch_size 4 --fp16` on one A100 80GB ran out of memory (LoRA ran)."""
    line = ("CUDA_VISIBLE_DEVICES=0", "python", "src/train_sft.py", "--model_name_or_path",
            "huggyllama/llama-7b", "--do_train", "--dataset", "alpaca_gpt4_en",
            "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
            "--fp16", "--gpu", "a100 sxm4 80gb")
    full = answer(capsys, *line, "--finetuning_type", "full")
    lora = answer(capsys, *line, "--finetuning_type", "lora")
    assert (full["fit"]["fits"], lora["fit"]["fits"]) == (False, True)  # type: ignore[index]


def test_a_word_it_cannot_place_is_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["llamafactory-cli", "train", "--stage", "sft", "stray", "words"]) == 2
    err = capsys.readouterr().err
    assert "--key value settings" in err and err.count("\n") == 1
