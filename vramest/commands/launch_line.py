"""A pasted launch line, read as the estimate of what it would start.

Users copy the line they ran, or the one a thread quotes: `vllm serve Qwen/Qwen2.5-7B-Instruct
--max-model-len 8192`, `python -m sglang.launch_server --model-path ... --mem-fraction-static
0.85`, `llama-server -m model.gguf -c 16384 -ngl 99`, `OLLAMA_NUM_PARALLEL=4 ollama run
llama3.1:8b`, `docker run --gpus all vllm/vllm-openai:v0.6.3 --model ...`. This turns such a
line into the estimate's own arguments: the program names the engine, a docker image's tag its
release, the program's model argument `--model`, and an engine setting written as the program's
own flag or environment variable an `--engine-option`. The flags vramest shares with the engine
(`--max-model-len`, `-ngl`, `-c`, ...) pass as they are; what is left is read as always (flags
that change no memory are left out with a note, anything else is refused in one sentence).
"""

from __future__ import annotations

import sys

from vramest.errors import InputError, short

# the programs: how the first word (a path's last part, without .exe) names the engine
_PROGRAMS = {"vllm": "vllm", "llama-server": "llamacpp", "llama-cli": "llamacpp",
             "ollama": "ollama", "text-generation-launcher": "tgi", "sglang": "sglang"}
# llama.cpp's binaries before ggml-org/llama.cpp PR #7809 (2024-06) renamed them llama-server
# and llama-cli; read only as a path (./server, ./build/bin/main), as threads of the time
# wrote them, since a bare word is a model's name
_OLD_LLAMACPP = ("server", "main")
# `python -m MODULE`: the engines' server modules
_MODULES = {"vllm.entrypoints.openai.api_server": "vllm", "vllm.entrypoints.api_server": "vllm",
            "sglang.launch_server": "sglang"}
# the engines' published images (a registry prefix such as docker.io/ is allowed)
_IMAGES = {"vllm/vllm-openai": "vllm", "huggingface/text-generation-inference": "tgi",
           "lmsysorg/sglang": "sglang", "ollama/ollama": "ollama"}
# the subcommand that names the model next (vllm serve MODEL, ollama run MODEL)
# (SGLang's own CLI, "the recommended entrypoint" its launch_server.py warns since 2025:
# `sglang serve --model-path <model> [options]`)
_SUBCOMMANDS = {"vllm": ("serve",), "ollama": ("run", "serve"), "sglang": ("serve",)}
# each engine's own spelling of a flag vramest has under another name; the sources are the
# engines' argument definitions: llama.cpp common/arg.cpp, SGLang server_args.py, TGI's
# launcher/src/main.rs
_RENAMED = {
    "llamacpp": {"-m": "--model", "-hf": "--model", "-hfr": "--model", "--hf-repo": "--model",
                 "--gpu-layers": "--n-gpu-layers", "-ub": "--ubatch", "--ubatch-size": "--ubatch",
                 "-ncmoe": "--n-cpu-moe", "--n-cpu-moe": "--n-cpu-moe"},
    "sglang": {"--model-path": "--model", "--tp": "--tensor-parallel-size",
               "--tp-size": "--tensor-parallel-size"},
    "tgi": {"--model-id": "--model", "--num-shard": "--num-gpus"},
}
# TGI's --quantize values -> the weights' precision (enum Quantization, launcher/src/main.rs:
# "bitsandbytes: Bitsandbytes 8bit", "eetq: 8 bit", "bitsandbytes-nf4/-fp4: 4bit", marlin reads
# GPTQ checkpoints); exl2 and compressed-tensors name no one precision
_TGI_QUANTIZE = {"awq": "awq-int4", "gptq": "gptq-int4", "marlin": "gptq-int4", "fp8": "fp8",
                 "eetq": "int8", "bitsandbytes": "int8", "bitsandbytes-nf4": "nf4",
                 "bitsandbytes-fp4": "nf4"}
# llama.cpp's -fa takes on/off/auto since b6325 (2025-09); before, -fa alone meant on
_FLASH = {"on": "--flash-attn", "1": "--flash-attn", "true": "--flash-attn",
          "off": "--no-flash-attn", "0": "--no-flash-attn", "false": "--no-flash-attn"}
# docker run's options without a value; every other option takes one
_DOCKER_SWITCHES = frozenset({"--rm", "-it", "-ti", "-i", "-t", "-d", "--detach",
                              "--privileged", "--init", "--interactive", "--tty"})
# vLLM's environment switches that are vramest flags
_VLLM_ENV = {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "--allow-long-max-model-len"}


def estimate_args(args: list[str]) -> list[str]:
    """The estimate's arguments (the command first) for a line that starts with a launch
    program, environment settings or `docker run`; or a model named first
    (`vramest Qwen/Qwen2.5-7B --gpu 4090`), which is --model."""
    env, rest = _environment(args)
    engine, version, rest, env = _program(rest, env)
    if engine is None:
        if env:
            raise InputError(f"{short(env[0])} reads as an environment setting, but no engine "
                             "program follows it (vllm serve, llama-server, ollama, "
                             "python -m sglang.launch_server, text-generation-launcher).")
        return ["estimate", *model_first(rest)]
    if engine == "tgi":
        rest = _tgi_quantize(_tgi_sharded(rest, env))
    out = ["estimate", *_own_flags(engine, rest)]
    out += _settings(engine, env)
    given = _given_engine(out)
    if given is None:
        out += ["--engine", engine]
    elif given != engine:
        raise InputError(f"The launch line is {engine}'s and --engine names {given}; give one.")
    if version is not None and not any(a.startswith("--engine-version") for a in out):
        out += ["--engine-version", version]
    if engine == "vllm":
        out = _vllm_dtype(_vllm_chunked_prefill(out))
    return out


def model_first(args: list[str]) -> list[str]:
    """A model named before any flag is --model, as the engines' own `serve MODEL` reads."""
    if args and args[0][:1] != "-" and not any(a.split("=")[0] == "--model" for a in args):
        return ["--model", *args]
    return args


def _environment(args: list[str]) -> tuple[list[str], list[str]]:
    """(KEY=VALUE settings written before the program, the rest)."""
    i = 0
    while i < len(args) and is_setting(args[i]):
        i += 1
    return args[:i], args[i:]


def is_setting(word: str) -> bool:
    """An environment setting written before a program: CUDA_VISIBLE_DEVICES=0,1."""
    key, eq, _ = word.partition("=")
    return bool(eq) and key.replace("_", "").isalnum() and key.isupper()


def _program(args: list[str], env: list[str],
             ) -> tuple[str | None, str | None, list[str], list[str]]:
    """(the engine, the release a docker tag names, the arguments after the program and its
    subcommand with the model as --model, the environment settings)."""
    if not args:
        return None, None, args, env
    word = args[0].replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".exe")
    if word == "docker" and args[1:2] == ["run"]:
        return _docker(args[2:], env)
    if word in ("python", "python3") and args[1:2] == ["-m"] and len(args) > 2:
        engine = _MODULES.get(args[2])
        if engine is None:
            raise InputError(f"python -m {short(args[2])} is not a server vramest reads; "
                             f"accepted: {', '.join(_MODULES)}.")
        return engine, None, args[3:], env
    engine = _PROGRAMS.get(word)
    if engine is None and word in _OLD_LLAMACPP and "/" in args[0].replace("\\", "/"):
        engine = "llamacpp"
    if word == "llama" and args[1:2] == ["serve"]:  # llama.cpp's one binary: `llama serve`
        return "llamacpp", None, model_first(args[2:]), env
    if engine is None:
        return None, None, args, env
    rest = args[1:]
    subcommands = _SUBCOMMANDS.get(engine, ())
    if subcommands:
        if not rest or rest[0] not in subcommands:
            raise InputError(f"{word} {short(rest[0]) if rest else ''} is not a command that "
                             f"starts a model; accepted: "
                             f"{', '.join(f'{word} {s}' for s in subcommands)}.")
        rest = rest[1:]
    return engine, None, model_first(rest), env


def _docker(args: list[str], env: list[str],
            ) -> tuple[str | None, str | None, list[str], list[str]]:
    i = 0
    env = list(env)
    while i < len(args) and args[i][:1] == "-":
        flag, eq, value = args[i].partition("=")
        if not eq and flag not in _DOCKER_SWITCHES:
            if i + 1 >= len(args):
                break
            value = args[i + 1]
            i += 1
        if flag in ("-e", "--env") and is_setting(value):
            env.append(value)
        i += 1
    if i >= len(args):
        raise InputError("docker run names no image; vramest reads the engines' images: "
                         f"{', '.join(_IMAGES)}.")
    image, _, tag = args[i].partition(":")
    engine = next((e for name, e in _IMAGES.items()
                   if image == name or image.endswith("/" + name)), None)
    if engine is None:
        raise InputError(f"The image {short(args[i])} is not an engine's image vramest reads; "
                         f"accepted: {', '.join(_IMAGES)}.")
    release = tag.removeprefix("v").split("-")[0]
    version = release if release[:1].isdigit() else None
    rest = args[i + 1:]
    if rest and rest[0][:1] != "-":  # the image's entrypoint overridden by a program
        inner, _, rest, env = _program(rest, env)
        if inner is not None and inner != engine:
            raise InputError(f"The image is {engine}'s and the program {short(args[i + 1])} "
                             f"is {inner}'s; give one.")
    return engine, version, rest, env


def _own_flags(engine: str, args: list[str]) -> list[str]:
    """The arguments with the engine's spellings renamed to vramest's, and the engine's own
    settings as --engine-option."""
    from vramest.commands.fast_parse import spellings
    from vramest.inference.engines import registry

    own = spellings("estimate")
    renamed = _RENAMED.get(engine, {})
    args = list(args)
    out: list[str] = []
    i = 0
    while i < len(args):
        if engine == "vllm":
            args[i] = _vllm_dashes(args[i])
        flag, eq, value = args[i].partition("=")
        following = args[i + 1] if i + 1 < len(args) else None
        takes_next = not eq and following is not None and following[:1] != "-"
        if engine == "vllm" and flag[:1] == "-" and (value if eq else following) == "None":
            # vLLM's optional settings read "None" as unset (optional_type,
            # vllm/engine/arg_utils.py): the default, as if the flag were not there
            print(f"vramest: note: {flag} None is vLLM's default; left out.", file=sys.stderr)
            i += 1 if eq else 2
            continue
        if engine == "llamacpp" and flag in ("-fa", "--flash-attn"):
            word = value if eq else following if takes_next else "on"
            if word is not None and word.lower() in _FLASH:
                out.append(_FLASH[word.lower()])
            elif word != "auto":
                raise InputError(f"{flag} {short(word)}: llama.cpp's flash attention is on, "
                                 "off or auto.")
            i += 2 if takes_next else 1
            continue
        if engine == "llamacpp" and flag in ("-cmoe", "--cpu-moe"):
            out += ["--n-cpu-moe", _ALL_LAYERS]  # every layer's experts on the host
            i += 1
            continue
        if engine == "llamacpp" and flag in ("-ot", "--override-tensor") and \
                (eq or takes_next) and _all_experts_on_cpu(value if eq else str(following)):
            out += ["--n-cpu-moe", _ALL_LAYERS]
            i += 1 if eq else 2
            continue
        if flag in renamed:
            out.append(renamed[flag] + ("=" + value if eq else ""))
        elif flag[:2] == "--" and flag not in own and registry.accepts(engine, flag):
            setting = value if eq else following if takes_next else "true"
            out += ["--engine-option", f"{registry.option_name(engine, flag)}={setting}"]
            i += 2 if takes_next else 1
            continue
        else:
            out.append(args[i])
        i += 1
    return out


def unread_flags(message: str, args: list[str]) -> str:
    """argparse's "Unrecognized arguments: ..." for a pasted line, saying whose flags they are
    and which of that engine's settings vramest reads; any other message as it is."""
    from vramest.inference.engines import registry

    head = "Unrecognized arguments: "
    if not message.startswith(head):
        return message
    flags = message[len(head):].partition("; see `vramest")[0]
    engine = _given_engine(args)
    if engine is None:  # not a launch line vramest recognised: argparse's words stand
        return message
    read = ", ".join("--" + k.replace("_", "-") for k in registry.settings(engine)
                     if k != "version")
    return (f"{flags}: {engine}'s, not read by vramest. A flag that changes no memory can be "
            "left out; one that does is not modelled yet. "
            + (f"{engine}'s settings vramest reads: {read}; " if read else "")
            + "`vramest estimate --help` lists the rest.")


# llama.cpp's --cpu-moe keeps every MoE expert tensor on the CPU (common/arg.cpp:
# llm_ffn_exps_cpu_override()): --n-cpu-moe over more layers than any model has
_ALL_LAYERS = "999"
# tensor names of one MoE layer and the rest of a GGUF, to test an -ot pattern against
# (a fused ffn_gate_up_exps, in GGUFs since b8301, is neither required nor excluded)
_EXPERTS = tuple(f"blk.{i}.ffn_{p}_exps.weight" for i in (0, 7, 23)
                 for p in ("up", "down", "gate"))
_OTHERS = (*(f"blk.{i}.{t}" for i in (0, 7, 23) for t in (
    "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "attn_norm.weight",
    "ffn_norm.weight", "ffn_gate_inp.weight", "ffn_up_shexp.weight", "ffn_down_shexp.weight",
    "ffn_gate_shexp.weight", "ffn_up.weight", "ffn_down.weight", "exp_probs_b.bias")),
    "token_embd.weight", "output.weight", "output_norm.weight")


def _all_experts_on_cpu(value: str) -> bool:
    """Whether an -ot value is one override that sends every layer's expert tensors, and only
    them, to the CPU (`.ffn_.*_exps.=CPU`, `exps=CPU`): what --cpu-moe does. llama.cpp matches
    each pattern with std::regex_search against the tensor names (parse_tensor_buffer_overrides,
    common/arg.cpp); other overrides are not modelled."""
    import re

    pattern, eq, buffer = value.strip().strip("'\"").rpartition("=")
    if not eq or "," in value or buffer.strip().upper() != "CPU":
        return False
    try:
        found = re.compile(pattern)
    except re.error:
        return False
    return all(found.search(t) for t in _EXPERTS) and not any(found.search(t) for t in _OTHERS)


def _tgi_sharded(args: list[str], env: list[str]) -> list[str]:
    """TGI's `--sharded true|false` as the shard count its launcher derives from it
    (find_num_shards, launcher/src/main.rs): beside --num-shard it only checks that count, so
    it is left out; alone, false is one shard and true is one per CUDA_VISIBLE_DEVICES entry."""
    out: list[str] = []
    sharded: str | None = None
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if flag != "--sharded":
            out.append(args[i])
        elif eq:
            sharded = value
        elif i + 1 < len(args) and args[i + 1][:1] != "-":
            sharded, i = args[i + 1], i + 1
        else:
            sharded = "true"
        i += 1
    if sharded is None:
        return out
    if sharded.lower() not in ("true", "false"):
        raise InputError(f"--sharded {short(sharded)}: TGI's --sharded is true or false.")
    if any(a.partition("=")[0] in ("--num-shard", "--num-gpus") for a in out):
        return out
    if sharded.lower() == "false":
        return [*out, "--num-gpus", "1"]
    devices = next((s.partition("=")[2] for s in env
                    if s.startswith(("CUDA_VISIBLE_DEVICES=", "NVIDIA_VISIBLE_DEVICES="))), None)
    if not devices:
        raise InputError("--sharded true shards over every visible GPU; give --num-shard N "
                         "(or CUDA_VISIBLE_DEVICES) to say how many.")
    return [*out, "--num-gpus", str(len(devices.split(",")))]


def _tgi_quantize(args: list[str]) -> list[str]:
    """TGI's `--quantize METHOD` as the weights' --dtype; TGI itself refuses --dtype beside it
    ("This option cannot be used with `--quantize`", its --dtype help)."""
    i = next((k for k, a in enumerate(args) if a.partition("=")[0] == "--quantize"), None)
    if i is None:
        return args
    _, eq, value = args[i].partition("=")
    if not eq:
        if i + 1 >= len(args):
            raise InputError("--quantize needs a method: " + ", ".join(_TGI_QUANTIZE) + ".")
        value = args[i + 1]
    rest = args[:i] + args[i + (1 if eq else 2):]
    dtype = _TGI_QUANTIZE.get(value.strip().lower())
    if dtype is None:
        raise InputError(f"--quantize {short(value)}: vramest reads TGI's "
                         f"{', '.join(_TGI_QUANTIZE)} (--dtype names any other precision).")
    if any(a.partition("=")[0] == "--dtype" for a in rest):
        raise InputError("TGI refuses --dtype beside --quantize; give one.")
    return [*rest, "--dtype", dtype]


def _vllm_chunked_prefill(args: list[str]) -> list[str]:
    """vLLM's --enable-chunked-prefill by what it does to the profiling forward, which is
    --max-num-batched-tokens tokens: beside that flag it adds nothing, and where the release
    always chunks (V1) it is what the release does anyway; a release that chunks only on
    request (V0) prefills its chunk budget instead of a whole prompt, which vramest reads
    through --max-num-batched-tokens. Turning chunking off is refused the same way."""
    from vramest.inference.engines.versions import parse_version, vllm_rules

    kept = [a for a in args if a.partition("=")[0] not in _CHUNKED]
    if len(kept) == len(args):
        return args
    flag = next(a for a in args if a.partition("=")[0] in _CHUNKED)
    name, _, value = flag.partition("=")
    on = name == "--enable-chunked-prefill" and value.strip().lower() not in ("false", "0")
    budget = any(a.partition("=")[0] == "--max-num-batched-tokens" for a in kept)
    try:
        always = vllm_rules(parse_version("vllm", _value(kept, "--engine-version"))
                            ).chunked_prefill == "always"
    except InputError:
        return args  # the release is refused in its own words later
    if on and (budget or always):
        print(f"vramest: note: {flag} changes no memory "
              f"{'beside --max-num-batched-tokens' if budget else 'in this release, which always chunks'}"
              "; left out.", file=sys.stderr)
        return kept
    raise InputError(f"{short(flag)} changes the tokens of vLLM's profiling forward; give them as "
                     "--max-num-batched-tokens N (the chunk budget, or --max-model-len's "
                     "value when prefill is not chunked).")


def _vllm_dtype(args: list[str]) -> list[str]:
    """vLLM's --dtype (half, bfloat16, ...) is the model's compute dtype: a checkpoint stored
    quantized (FP8, AWQ, GPTQ, MXFP4, GGUF) keeps its format, its quantization_config choosing
    the layers' method whatever --dtype says (vllm/config ModelConfig._verify_quantization);
    vramest's --dtype is the weights', so it is left out for such a checkpoint."""
    from vramest.commands.common import weight_dtype
    from vramest.model.resolve import resolve_model

    dtype, model = _value(args, "--dtype"), _value(args, "--model")
    if dtype is None or model is None or dtype.strip().lower() not in _VLLM_DTYPES or \
            _value(args, "--quantization") is not None or _value(args, "-q") is not None:
        return args
    try:
        stored = resolve_model(model=model).native_format
    except InputError:
        return args  # the model is refused in its own words later
    if stored is None or stored in ("bf16", "fp16", "fp32") or weight_dtype(dtype, None) is None:
        return args
    print(f"vramest: note: vLLM's --dtype {dtype} is the compute dtype; the checkpoint's "
          f"{stored} weights stay {stored}.", file=sys.stderr)
    k = next(k for k, a in enumerate(args) if a.partition("=")[0] == "--dtype")
    return args[:k] + args[k + (1 if "=" in args[k] else 2):]


# vLLM's --dtype choices (engine/arg_utils.py, ModelConfig.dtype)
_VLLM_DTYPES = frozenset({"half", "float16", "bfloat16", "float", "float32"})
# vLLM's switch for chunked prefill, as its arguments spell it (engine/arg_utils.py)
_CHUNKED = frozenset({"--enable-chunked-prefill", "--no-enable-chunked-prefill"})


def _vllm_dashes(arg: str) -> str:
    """vLLM's parser reads `--gpu_memory_utilization` as `--gpu-memory-utilization`: the
    underscores of a long flag's name (up to its first dot) become dashes
    (FlexibleArgumentParser.parse_args, vllm/utils/argparse_utils.py)."""
    if arg[:2] != "--":
        return arg
    key, eq, value = arg.partition("=")
    name, dot, rest = key[2:].partition(".")
    return "--" + name.replace("_", "-") + dot + rest + eq + value


def _settings(engine: str, env: list[str]) -> list[str]:
    from vramest.inference.engines import registry

    out: list[str] = []
    left: list[str] = []
    for setting in env:
        key, _, value = setting.partition("=")
        if engine == "vllm" and key in _VLLM_ENV:
            if value.strip().lower() in ("1", "true"):
                out.append(_VLLM_ENV[key])
        elif registry.accepts(engine, key):
            out += ["--engine-option", setting]
        else:
            left.append(setting)
    if left:
        devices = any(s.startswith(("CUDA_VISIBLE_DEVICES=", "HIP_VISIBLE_DEVICES="))
                      for s in left)
        print(f"vramest: note: {', '.join(left)} left out: no memory setting vramest reads"
              f"{' (--num-gpus says how many GPUs)' if devices else ''}.", file=sys.stderr)
    return out


def _given_engine(args: list[str]) -> str | None:
    from vramest.inference.engines.aliases import resolve_engine, split_release

    name = _value(args, "--engine")
    if name is None:
        return None
    key = split_release(name)[0].strip().lower()
    try:
        return resolve_engine(key)[0]
    except InputError:
        return key  # argparse refuses it in its own words


def _value(args: list[str], flag: str) -> str | None:
    """The value the first `flag` in the arguments is given (`--flag V` or `--flag=V`); None
    where the flag is not there or ends the line."""
    for k, arg in enumerate(args):
        name, eq, given = arg.partition("=")
        if name == flag:
            return given if eq else (args[k + 1] if k + 1 < len(args) else None)
    return None
