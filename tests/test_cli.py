"""The command line: output contract, exit codes, and a light import path."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vramest.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_headline_command_prints_the_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--params", "70B", "--dtype", "int4", "--ctx", "8192")
    assert code == 0
    for word in ("weights", "KV cache", "activations", "overhead", "total", "Assumptions"):
        assert word in out


def test_estimate_subcommand_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    _, implicit, _ = run_cli(capsys, "--params", "7B", "--json")
    _, explicit, _ = run_cli(capsys, "estimate", "--params", "7B", "--json")
    assert json.loads(implicit) == json.loads(explicit)


def test_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--model", "meta-llama/Llama-3.1-70B", "--dtype", "fp8",
                           "--ctx", "32k", "--batch", "4", "--json")
    assert code == 0
    data = json.loads(out)
    assert {"name", "source", "params", "shape"} <= set(data["model"])
    assert {"dtype", "kv_dtype", "ctx", "batch"} <= set(data["settings"])
    memory = data["memory"]
    for key in ("weights", "kv_cache", "activations", "overhead", "total"):
        assert isinstance(memory[key], int)
    assert memory["total"] == sum(memory[k] for k in ("weights", "kv_cache", "activations",
                                                      "overhead"))
    assert isinstance(data["assumptions"], list) and all(isinstance(a, str)
                                                         for a in data["assumptions"])
    assert data["settings"]["ctx"] == 32768 and data["settings"]["batch"] == 4


def test_catalog_aliases_are_case_insensitive(capsys: pytest.CaptureFixture[str]) -> None:
    _, a, _ = run_cli(capsys, "--model", "LLAMA-3.1-70B", "--json")
    _, b, _ = run_cli(capsys, "--model", "meta-llama/Llama-3.1-70B", "--json")
    assert json.loads(a)["memory"] == json.loads(b)["memory"]


def test_explain_shows_formulas(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(capsys, "--model", "llama-3.1-8b", "--explain")
    assert "kv_heads" in out and "params ×" in out and "Constants" in out


@pytest.mark.parametrize("args", [
    ["--params", "0"], ["--params", "-7B"], ["--params", "banana"], ["--params", "7B", "--ctx", "0"],
    ["--params", "7B", "--ctx", "8q"], ["--params", "7B", "--batch", "0"],
    ["--params", "7B", "--dtype", "int3"], ["--params", "7B", "--kv-dtype", "q3"],
    ["--model", "lama-3.1-8b"], ["--model", "./no/such/config.json"], [],
    ["--params", "7B", "--layers", "0"], ["--params", "7B", "--heads", "7", "--kv-heads", "2"],
    ["--params", "7B", "--family", "bert"], ["--params", "7B", "--bogus"],
    ["--params", "7B", "--active-params", "13B"], ["--params", "7B", "--attn", "magic"],
    # a bare number is neither a share nor a size; prefixes of long flags are not guessed
    ["--params", "7B", "--reserve", "2", "--gpu", "h100"], ["--params", "7B", "--gpu-mem", "0.5"],
    ["train", "--params", "7B", "--tokens", "lots"], ["train", "--params", "7B", "--reserve", "2"],
    ["train", "--params", "7B", "--gpu-memory", "0"],
    ["train", "--params", "7B", "--upcast-unquantized", "trl"],  # nothing is quantized
])
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                          args: list[str]) -> None:
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("vramest: ") and "Traceback" not in err


def test_unknown_model_suggests_the_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run_cli(capsys, "--model", "lama-3.1-8b")
    assert "llama-3.1-8b" in err


def test_models_lists_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "models", "--json")
    models = json.loads(out)["models"]
    assert code == 0 and len(models) >= 30
    families = {m["family"] for m in models}
    assert {"llama", "mixtral", "qwen2", "gemma2", "deepseek_v3", "gpt_oss"} <= families


def _loaded_after(commands: list[list[str]], modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh interpreter has loaded after running the CLI `commands`."""
    code = ("import sys, io, contextlib; from vramest.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            + "".join(f"    main({argv!r})\n" for argv in commands)
            + f"sys.stderr.write(repr(sorted(set({modules!r}) & set(sys.modules))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return ast.literal_eval(result.stderr)


def test_estimate_path_imports_no_heavy_library() -> None:
    """Principle 1: the estimate paths (serving and training) never import torch,
    transformers or numpy."""
    assert _loaded_after([["--params", "70B", "--dtype", "int4", "--json"],
                          ["train", "--model", "llama-3.1-8b", "--method", "qlora", "--json"]],
                         ("torch", "transformers", "numpy", "safetensors")) == []


def test_headline_imports_no_typing_and_no_dataclasses() -> None:
    """Issue #20's start-up budget: `typing` (and typing.NamedTuple compiling each field's
    annotation again) and `dataclasses` (which imports `inspect`) were a fifth of the headline
    command's instructions; the modules it runs take their names from vramest.frozen."""
    assert _loaded_after([["--params", "70B", "--dtype", "int4", "--ctx", "8192"]],
                         ("typing", "dataclasses", "inspect")) == []


def test_headline_decodes_its_rows_without_the_json_package() -> None:
    """The catalog entries and GPU rows the headline reads go through json's C scanner alone
    (vramest.data.shipped_object); --json output still loads the package."""
    argv = ["--params", "70B", "--dtype", "int4", "--ctx", "8192"]
    assert _loaded_after([argv], ("json", "json.decoder")) == []
    assert _loaded_after([[*argv, "--json"]], ("json",)) == ["json"]


def test_python_dash_m_works() -> None:
    result = subprocess.run([sys.executable, "-m", "vramest", "--params", "7B", "--json"],
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["memory"]["total"] > 0


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["--params", "7B", "--no-such-flag"],
    ["--params", "7B", "--dtype", "int3"],
    ["train", "--help"],
])
def test_the_program_prints_what_main_prints(argv: list[str]) -> None:
    """`python -m vramest` loads argparse with English strings and no gettext lookup (issue
    #20's start-up); what it prints and its exit status must be main()'s, and the English
    stand-in must not stay behind for anything imported later."""
    code = ("import io, sys, contextlib; from vramest.cli import main\n"
            "out, err = io.StringIO(), io.StringIO()\n"
            "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
            "    try:\n"
            f"        rc = main({argv!r})\n"
            "    except SystemExit as e:\n"
            "        rc = e.code\n"
            "sys.stdout.write(out.getvalue()); sys.stderr.write(err.getvalue()); sys.exit(rc)")
    env = {**os.environ, "COLUMNS": "100"}
    in_process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=env)
    program = subprocess.run([sys.executable, "-m", "vramest", *argv], capture_output=True,
                             text=True, env=env)
    assert (program.returncode, program.stdout, program.stderr) == (
        in_process.returncode, in_process.stdout, in_process.stderr)
    assert program.returncode in (0, 2) and "Traceback" not in program.stderr


def test_the_english_stand_in_leaves_gettext_alone() -> None:
    code = ("from vramest.cli import _argparse_in_english\n"
            "import sys; _argparse_in_english()\n"
            "assert 'gettext' not in sys.modules\n"
            "import gettext; assert hasattr(gettext, 'translation')")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("argv", [
    ("check", "{spec}", "--junit-xml", "{spec}"),
    ("check", "{spec}", "--baseline", "{spec}", "--update-baseline"),
    ("check", "{spec}", "--junit-xml", "{out}", "--html", "{out}"),
    ("report", "--model", "{config}", "--html", "{config}", "--no-accuracy"),
    ("plot", "--model", "{config}", "--out", "{config}"),
])
def test_an_output_never_replaces_an_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           argv: tuple[str, ...]) -> None:
    spec, config = tmp_path / "capacity.toml", tmp_path / "config.json"
    spec.write_text('[deployments.a]\nparams = "7B"\ndtype = "int4"\ngpu = "h100"\n')
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 2048, "vocab_size": 32000,
                                  "num_hidden_layers": 16, "num_attention_heads": 16,
                                  "intermediate_size": 8192}))
    before = {p: p.read_bytes() for p in (spec, config)}
    words = [w.format(spec=spec, config=config, out=tmp_path / "out.xml") for w in argv]
    code, _, err = run_cli(capsys, *words)
    assert code == 2 and err.count("\n") == 1 and "write" in err
    assert {p: p.read_bytes() for p in (spec, config)} == before
    assert not (tmp_path / "out.xml").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (("--params", "7B", "--layers", "-1"), "--layers '-1' is out of range"),
    (("--params", "7B", "--gpu", "h100", "--engine", "vllm", "--gpu-memory-utilization", "nan"),
     "--gpu-memory-utilization 'nan' is not a share of memory"),
    (("calibrate", "--max-minutes", "nan"), "--max-minutes 'nan' is not a number of minutes"),
    (("calibrate", "--max-minutes", "abc"), "--max-minutes 'abc' is not a number of minutes"),
    (("trace", "--model", "llama-3.2-1b", "--grad-checkpointing"),
     "--grad-checkpointing applies to --phase train only"),
    (("trace", "--model", "llama-3.2-1b", "--phase", "train", "--lora-rank", "8"),
     "--lora-rank applies to --method lora or qlora only"),
    (("trace", "--model", "llama-3.2-1b", "--phase", "train", "--decode-steps", "3"),
     "--decode-steps applies to the inference phases only"),
])
def test_a_bad_flag_value_gets_its_own_sentence(capsys: pytest.CaptureFixture[str],
                                                argv: tuple[str, ...], message: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and not out
    assert err.startswith(f"vramest: {message}") and err.count("\n") == 1
    assert "invalid" not in err and "Argument" not in err


def test_speed_heading_names_the_engine_with_pipeline_stages(capsys: pytest.CaptureFixture[str]) -> None:
    """The heading once showed the pipeline note where the engine belongs (--pp 2)."""
    assert main(["--model", "llama-3.1-70b", "--gpu", "h100", "--num-gpus", "4", "--pp", "2",
                 "--engine", "vllm"]) == 0
    heading = next(line for line in capsys.readouterr().out.splitlines()
                   if line.startswith("Speed ("))
    assert heading.startswith("Speed (roofline, vllm") and "pipeline" not in heading


def test_an_unquoted_gpu_name_is_answered_with_how_to_quote_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "qwen3-8b", "--gpu", "nvidia", "rtx", "3090", "--ctx", "4k"]) == 2
    err = capsys.readouterr().err
    assert '--gpu "nvidia rtx 3090"' in err and err.count("\n") == 1
