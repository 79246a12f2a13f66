"""A LLaMA-Factory or axolotl config given as it is answers as the same run in flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.cli import main
from vramest.commands.train_config import _parse
from vramest.errors import InputError

# LLaMA-Factory's examples/train_lora/llama3_lora_sft.yaml layout, with a ZeRO-3 config
LLAMAFACTORY = """\
### model
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 16
lora_target: all
lora_dropout: 0.05  # adapters with dropout
deepspeed: examples/deepspeed/ds_z3_config.json

### dataset
dataset: identity,alpaca_en_demo
template: qwen
cutoff_len: 2048
output_dir: saves/qwen2.5-7b/lora/sft
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
bf16: true
"""
# axolotl's examples/llama-2/qlora.yml layout
AXOLOTL = """\
base_model: NousResearch/Llama-2-7b-hf
load_in_4bit: true
strict: false
datasets:
  - path: mhenrichsen/alpaca_2k_test
    type: alpaca
adapter: qlora
sequence_len: 4096
sample_packing: true
lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_linear: true
micro_batch_size: 2
gradient_accumulation_steps: 4
optimizer: paged_adamw_32bit
bf16: auto
gradient_checkpointing: true
flash_attention: true
"""


def answer(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def config(tmp_path: Path, text: str, name: str = "run.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_llamafactory_config_is_its_flags(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    hw = ("--gpu", "rtx 4090", "--num-gpus", "2")
    from_file = answer(capsys, "train", "--config", config(tmp_path, LLAMAFACTORY), *hw)
    assert from_file == answer(
        capsys, "train", "--model", "Qwen/Qwen2.5-7B-Instruct", "--framework", "llamafactory",
        "--method", "lora", "--lora-rank", "16", "--lora-targets", "all-linear",
        "--lora-dropout", "--zero", "3", "--seq", "2048", "--micro-batch", "1",
        "--grad-accumulation", "8", *hw)


def test_axolotl_config_is_its_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from_file = answer(capsys, "train", "--config", config(tmp_path, AXOLOTL), "--gpu", "a10g")
    assert from_file == answer(
        capsys, "train", "--model", "NousResearch/Llama-2-7b-hf", "--framework", "axolotl",
        "--method", "qlora", "--lora-rank", "32", "--lora-targets", "all-linear",
        "--lora-dropout", "--seq", "4096", "--micro-batch", "2", "--grad-accumulation", "4",
        "--optimizer", "paged_adamw_32bit", "--attn", "flash", "--grad-checkpointing", "full",
        "--gpu", "a10g")


def test_a_flag_on_the_command_line_wins(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    path = config(tmp_path, LLAMAFACTORY)
    longer = answer(capsys, "train", "--config", path, "--cutoff_len", "8192", "--gpu", "h100")
    assert longer["settings"]["seq"] == 8192  # type: ignore[index]


def test_the_deepspeed_file_beside_it_is_read(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {
        "stage": 2, "offload_optimizer": {"device": "cpu"}, "overlap_comm": True}}))
    text = LLAMAFACTORY.replace("examples/deepspeed/ds_z3_config.json", "ds.json")
    out = answer(capsys, "train", "--config", config(tmp_path, text), "--gpu", "h100",
                 "--num-gpus", "2")
    settings_ = out["settings"]
    assert isinstance(settings_, dict)
    assert settings_["zero_stage"] == 2 and settings_["offload"] == "optimizer"
    assert settings_["overlap_comm"] is True


def test_keys_it_does_not_read_are_named(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    path = config(tmp_path, LLAMAFACTORY + "enable_liger_kernel: true\n")
    assert main(["train", "--config", path, "--gpu", "h100"]) == 0
    err = capsys.readouterr().err
    assert "enable_liger_kernel" in err and "learning_rate" not in err


@pytest.mark.parametrize(("text", "says"), [
    ("model_name_or_path: meta-llama/Llama-3.1-8B\ndataset:\n  - a\n  - b\n", None),
    ("  indented: first\n", "indented under no key"),
    ("just words\n", "not `key: value`"),
    ("model_name_or_path: meta-llama/Llama-3.1-8B\nfinetuning_type: prefix\n", "lora, qlora"),
    ("model_name_or_path: meta-llama/Llama-3.1-8B\nstage: ppo\n", "not modelled"),
    ("model_name_or_path: meta-llama/Llama-3.1-8B\ndeepspeed: my_ds.json\n", "give --zero N"),
])
def test_a_config_it_cannot_read_is_one_sentence(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path, text: str,
                                                 says: str | None) -> None:
    code = main(["train", "--config", config(tmp_path, text), "--gpu", "h100"])
    err = capsys.readouterr().err
    if says is None:
        assert code == 0
    else:
        assert code == 2 and says in err and "Traceback" not in err


def test_a_missing_or_binary_file_is_one_sentence(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    assert main(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00model")
    assert main(["train", "--config", str(tmp_path / "bin.yaml")]) == 2
    assert main(["train", "--config"]) == 2
    err = capsys.readouterr().err
    assert err.count("vramest:") == 3 and "Traceback" not in err


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_read_or_refused_in_one_sentence(text: str) -> None:
    try:
        out = _parse(text, "x.yaml")
    except InputError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(out, dict)
