"""Launch lines and model names as threads paste them, which a new user types unchanged: each
reads as the same setup written in vramest's own flags (tests/test_launch_line.py holds the
forms read before these)."""

from __future__ import annotations

import json

import pytest

import vramest
from vramest.cli import main
from vramest.errors import InputError


def answer(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_vllm_reads_underscores_in_a_flag_as_dashes(capsys: pytest.CaptureFixture[str]) -> None:
    """vLLM's FlexibleArgumentParser turns `--gpu_memory_utilization` into
    `--gpu-memory-utilization` (vllm/utils/argparse_utils.py); vllm-project/vllm #10034 pastes
    `--served_model_name ... --gpu_memory_utilization 0.7`."""
    pasted = answer(capsys, "docker", "run", "--gpus", "all", "vllm/vllm-openai:v0.6.2",
                    "--model", "meta-llama/Llama-3.1-8B", "--served_model_name", "llama",
                    "--max_model_len=4096", "--gpu_memory_utilization", "0.7",
                    "--download_dir", "/data", "--gpu", "a10")
    assert pasted == answer(capsys, "--model", "meta-llama/Llama-3.1-8B", "--engine",
                            "vllm==0.6.2", "--max-model-len", "4096",
                            "--gpu-memory-utilization", "0.7", "--gpu", "a10")


@pytest.mark.parametrize("program", [("./server",), ("./build/bin/main",), ("llama", "serve")])
def test_llama_cpp_programs_by_their_other_names(capsys: pytest.CaptureFixture[str],
                                                 program: tuple[str, ...]) -> None:
    """Before ggml-org/llama.cpp PR #7809 (2024-06) llama-server was `server` and llama-cli
    `main` (llama.cpp #3780 runs `./server -m ... -ngl 83`); a path names them, a bare word
    stays a model's name."""
    line = ("-m", "Qwen3-8B-Q4_K_M.gguf", "-c", "8192", "-ngl", "99", "--gpu", "rtx 4090")
    assert answer(capsys, *program, *line) == answer(capsys, "llama-server", *line)


def test_a_bare_server_is_not_a_program(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "--gpu", "rtx 4090"]) == 2
    assert "Unknown model 'server'" in capsys.readouterr().err


@pytest.mark.parametrize(("line", "inert"), [
    (("vllm", "serve", "Qwen/Qwen2.5-7B-Instruct", "--allowed-local-media-path", "/root"),
     "--allowed-local-media-path /root"),
    (("python", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen2.5-7B-Instruct",
      "--tokenizer-path", "Qwen/Qwen2.5-7B-Instruct", "--random-seed=1234"), "--random-seed=1234"),
    (("llama-server", "-m", "Qwen3-8B-Q4_K_M.gguf", "--rope-freq-base", "26000"),
     "--rope-freq-base 26000"),
])
def test_flags_that_change_no_memory_are_left_out(capsys: pytest.CaptureFixture[str],
                                                   line: tuple[str, ...], inert: str) -> None:
    assert main([*line, "--gpu", "h100", "--json"]) == 0
    assert inert in capsys.readouterr().err


def test_tgi_quantize_names_the_weights(capsys: pytest.CaptureFixture[str]) -> None:
    """TGI's `bitsandbytes` is 8-bit and `bitsandbytes-nf4`/`-fp4` 4-bit (its --quantize
    help). TGI #899: falcon-40b-instruct with bitsandbytes-fp4 ran out of memory on one A10 and
    started once --num-shard 4 spread it over four."""
    base = ("text-generation-launcher", "--model-id", "tiiuae/falcon-40b-instruct")
    for tgi, ours in (("bitsandbytes", "int8"), ("eetq", "int8"), ("bitsandbytes-nf4", "nf4")):
        assert answer(capsys, *base, "--quantize", tgi, "--gpu", "a100") == answer(
            capsys, *base, "--dtype", ours, "--gpu", "a100")
    one = answer(capsys, "CUDA_VISIBLE_DEVICES=0,1,2,3", *base, "--sharded", "true",
                 "--num-shard", "1", "--quantize", "bitsandbytes-fp4", "--gpu", "a10")
    four = answer(capsys, "CUDA_VISIBLE_DEVICES=0,1,2,3", *base, "--sharded", "true",
                  "--quantize", "bitsandbytes-fp4", "--gpu", "a10")
    fits = [(a["fit"]["num_gpus"], a["fit"]["fits"]) for a in (one, four)]  # type: ignore[index]
    assert fits == [(1, False), (4, True)]


@pytest.mark.parametrize(("argv", "says"), [
    (["text-generation-launcher", "--model-id", "tiiuae/falcon-7b", "--quantize", "exl2"],
     "vramest reads TGI's awq"),
    (["text-generation-launcher", "--model-id", "tiiuae/falcon-7b", "--quantize", "awq",
      "--dtype", "float16"], "refuses --dtype beside --quantize"),
    (["text-generation-launcher", "--model-id", "tiiuae/falcon-7b", "--sharded", "true"],
     "give --num-shard N"),
])
def test_tgi_lines_it_cannot_read_get_one_sentence(capsys: pytest.CaptureFixture[str],
                                                   argv: list[str], says: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


@pytest.mark.parametrize(("path", "model", "dtype"), [
    # SGLang #4895 and LLaMA-Factory #10367: a folder on the poster's machine
    ("/llm/model/google/gemma-3-27b-it-int4-awq/", "google/gemma-3-27b-it", "awq-int4"),
    ("/workspace/model/Qwen3.5-27B", "Qwen/Qwen3.5-27B", None),
    # vLLM #15015: a GGUF file under a folder; llama.cpp #9629: TheBloke's dotted file name
    ("/data/vLLM/model/QwQ-32B-Q4_1/qwq-32b-q4_k_m.gguf", "Qwen/QwQ-32B", "q4_k_m"),
    ("Mistral-Nemo-Instruct-2407.Q5_K_M.gguf", "mistralai/Mistral-Nemo-Base-2407", "q5_k_m"),
])
def test_a_path_that_is_not_here_is_read_by_its_name(path: str, model: str,
                                                     dtype: str | None) -> None:
    est = vramest.estimate(model=path)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    assert est.model.name == model and name in est.model.origin and " here" in est.model.origin
    if dtype is not None:
        assert est.settings.dtype == dtype


@pytest.mark.parametrize("path", ["/workspace/model", "./nosuchmodel/", "a/b/nosuchmodel-7b"])
def test_a_path_whose_name_says_nothing_known_is_still_refused(path: str) -> None:
    with pytest.raises(InputError):
        vramest.estimate(model=path)


def test_a_hub_id_is_not_read_as_a_folder() -> None:
    assert "no folder" not in vramest.estimate(model="Qwen/Qwen2.5-7B-Instruct").model.origin


def test_vllm_none_is_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    """vLLM reads "None" for an optional setting as unset (optional_type, engine/arg_utils.py);
    vllm-project/vllm #13074 pastes `--quantization None`."""
    line = ("vllm", "serve", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "a100")
    assert answer(capsys, *line, "--quantization", "None", "--max-model-len=None") == \
        answer(capsys, *line)


def test_vllm_dtype_leaves_a_quantized_checkpoint_as_stored(
        capsys: pytest.CaptureFixture[str]) -> None:
    """vLLM #14726 serves the FP8 DeepSeek-V3 with `--dtype half`: its weights load as FP8
    (the log's failure is in MLA's process_weights_after_loading, on 16 L40s), not as 16-bit;
    on a 16-bit checkpoint --dtype half is the weights' precision."""
    fp8 = ("vllm", "serve", "deepseek-ai/DeepSeek-V3", "-tp", "8", "-pp", "2",
           "--gpu", "l40", "--num-gpus", "16")
    assert answer(capsys, *fp8, "--dtype", "half") == answer(capsys, *fp8)
    plain = ("vllm", "serve", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "a10")
    assert answer(capsys, *plain, "--dtype", "half")["settings"]["dtype"] == "fp16"  # type: ignore[index]


def test_vllm_chunked_prefill_by_its_release(capsys: pytest.CaptureFixture[str]) -> None:
    """V1 always chunks, so the switch adds nothing; beside --max-num-batched-tokens it adds
    nothing in any release; a V0 release without the budget is refused in one sentence."""
    line = ("vllm", "serve", "meta-llama/Llama-3.1-8B", "--gpu", "a100")
    assert answer(capsys, *line, "--enable-chunked-prefill") == answer(capsys, *line)
    old = ("docker", "run", "vllm/vllm-openai:v0.6.3", "--model", "meta-llama/Llama-3.1-8B",
           "--gpu", "a100")
    assert answer(capsys, *old, "--enable-chunked-prefill", "--max-num-batched-tokens",
                  "2048") == answer(capsys, *old, "--max-num-batched-tokens", "2048")
    assert main([*old, "--enable-chunked-prefill"]) == 2
    err = capsys.readouterr().err
    assert "give them as --max-num-batched-tokens" in err and err.count("\n") == 1


def test_vllm_executor_backend_changes_no_memory(capsys: pytest.CaptureFixture[str]) -> None:
    line = ("vllm", "serve", "meta-llama/Llama-3.1-8B", "-tp", "2", "--gpu", "l40",
            "--num-gpus", "2")
    assert answer(capsys, *line, "--distributed-executor-backend", "ray") == \
        answer(capsys, *line)


def test_an_unread_engine_flag_says_whose_and_what_is_read(
        capsys: pytest.CaptureFixture[str]) -> None:
    """GLM-4.5 #3 pastes SGLang's --disable-shared-experts-fusion: the refusal names the engine
    and the SGLang settings vramest does read, in one sentence; a plain command keeps
    argparse's own."""
    assert main(["python3", "-m", "sglang.launch_server", "--model-path",
                 "Qwen/Qwen2.5-7B-Instruct", "--disable-shared-experts-fusion", "--gpu",
                 "h100"]) == 2
    err = capsys.readouterr().err
    assert "--disable-shared-experts-fusion: sglang's, not read" in err
    assert "--mem-fraction-static" in err and err.count("\n") == 1
    assert main(["--model", "Qwen/Qwen2.5-7B-Instruct", "--bogus"]) == 2
    assert "Unrecognized arguments: --bogus" in capsys.readouterr().err


def test_sglang_serve_is_its_launch_server(capsys: pytest.CaptureFixture[str]) -> None:
    """SGLang's launch_server.py warns that `sglang serve --model-path <model> [options]` is
    the recommended entrypoint (InferenceX #2128 pastes it)."""
    line = ("--model-path", "Qwen/Qwen2.5-7B-Instruct", "--tp", "2", "--mem-fraction-static",
            "0.8", "--gpu", "h100", "--num-gpus", "2")
    assert answer(capsys, "sglang", "serve", *line) == answer(
        capsys, "python", "-m", "sglang.launch_server", *line)


def test_an_unknown_program_keeps_argparse_words(capsys: pytest.CaptureFixture[str]) -> None:
    """A line whose program vramest does not know is not called an engine's."""
    assert main(["lms", "load", "qwen/qwen3-8b", "--gpu", "m3 max 128gb"]) == 2
    err = capsys.readouterr().err
    assert "Unrecognized arguments" in err and "not read by vramest" not in err


@pytest.mark.parametrize("flag", [("--cpu-moe",), ("-cmoe",), ("-ot", ".ffn_.*_exps.=CPU"),
                                  ("-ot", "exps=CPU"), ("--override-tensor",
                                                        "\\.ffn_(up|down|gate)_exps=CPU")])
def test_every_expert_on_the_cpu(capsys: pytest.CaptureFixture[str],
                                 flag: tuple[str, ...]) -> None:
    """llama.cpp's --cpu-moe is one override sending every expert tensor to the CPU
    (llm_ffn_exps_cpu_override, common/arg.cpp); an -ot pattern matching exactly those tensors
    does the same. Both are --n-cpu-moe over every layer."""
    line = ("llama-server", "-m", "Qwen3-30B-A3B-Q4_K_M.gguf", "-c", "32768", "-ngl", "99",
            "--gpu", "rtx 3090")
    assert answer(capsys, *line, *flag) == answer(capsys, *line, "--n-cpu-moe", "48")


@pytest.mark.parametrize("pattern", ["blk\\.(1[0-9])\\.ffn_.*_exps=CPU", ".ffn_.*=CPU",
                                     "exps=CUDA0", "exps=CPU,attn=CPU"])
def test_other_tensor_overrides_are_refused(capsys: pytest.CaptureFixture[str],
                                            pattern: str) -> None:
    assert main(["llama-server", "-m", "Qwen3-30B-A3B-Q4_K_M.gguf", "-ngl", "99", "-ot",
                 pattern, "--gpu", "rtx 3090"]) == 2
    err = capsys.readouterr().err
    assert "llamacpp's, not read by vramest" in err and err.count("\n") == 1


def test_an_old_main_chat_line_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    """llama.cpp #2048 (2023) runs `./main -t 8 -ngl 32 -m ... --color -c 4096 --temp 0.7
    --repeat_penalty 1.1 -n -1 --in-prefix-bos --in-prefix ' [INST] ' ... -i`: the prompt,
    interactive and sampler flags change no memory."""
    pasted = answer(capsys, "./main", "-t", "8", "-ngl", "32", "-m", "Llama-2-7b-chat.Q4_K_M.gguf",
                    "--color", "-c", "4096", "--temp", "0.7", "--repeat_penalty", "1.1", "-n",
                    "-1", "--in-prefix-bos", "--in-prefix", " [INST] ", "--in-suffix",
                    " [/INST]", "-i", "--gpu", "m1 pro 16gb")
    assert pasted == answer(capsys, "llama-cli", "-ngl", "32", "-m",
                            "Llama-2-7b-chat.Q4_K_M.gguf", "-c", "4096", "--gpu", "m1 pro 16gb")
