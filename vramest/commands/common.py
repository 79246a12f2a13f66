"""Flags shared by several commands."""

from __future__ import annotations

import math
from collections.abc import Callable

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from typing import Any

SHAPE_FLAGS = (("--layers", "num_layers"), ("--hidden", "hidden_size"), ("--heads", "num_heads"),
               ("--kv-heads", "num_kv_heads"), ("--head-dim", "head_dim"),
               ("--intermediate", "intermediate_size"), ("--vocab", "vocab_size"))


def positive_int(flag: str, maximum: int = 10**7) -> Callable[[str], int]:
    def parse(text: str) -> int:
        from vramest.errors import InputError
        from vramest.units import parse_positive_int

        try:
            return parse_positive_int(text, what=flag, maximum=maximum)
        except InputError as exc:  # argparse would replace a ValueError's words with its own
            import argparse

            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def positive_float(flag: str, what: str, maximum: float = math.inf) -> Callable[[str], float]:
    """A flag's number above 0 (and at most `maximum`): nan, inf and junk get one sentence."""
    limit = "" if maximum == math.inf else f" and at most {maximum:g}"

    def parse(text: str) -> float:
        from vramest.errors import short

        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (0 < value <= maximum and math.isfinite(value)):
            import argparse

            raise argparse.ArgumentTypeError(
                f"{flag} {short(text)} is not {what}; give a number above 0{limit}.")
        return value
    return parse


def refuse_overwriting(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Stop before any work when a file to write is a file read, or two outputs are one file.

    `inputs` maps what each input is called in the message ("the spec") to its path.
    """
    from pathlib import Path

    from vramest.errors import InputError
    from vramest.files import check_path_text

    def real(path: str, flag: str) -> Path:
        try:
            return check_path_text(path, flag).resolve()
        except (OSError, RuntimeError):  # a name too long, a link loop: the reader or writer says
            return Path(path).absolute()

    def is_file(path: str) -> bool:
        try:
            return Path(path).is_file()
        except (OSError, ValueError):
            return False

    read = {real(path, flag): flag for flag, path in inputs.items() if path and is_file(path)}
    written: dict[Path, str] = {}
    for flag, path in outputs.items():
        if not path:
            continue
        target = real(path, flag)
        if target in read:
            raise InputError(f"{flag} {path} would overwrite {read[target]}, which this command "
                             "reads; write elsewhere.")
        if target in written:
            raise InputError(f"{written[target]} and {flag} both write {path}; give each its own "
                             "file.")
        written[target] = flag


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--params", help="parameter count: 7B, 70b, 1.5B, 560M, 1.2T or an integer")
    g.add_argument("--active-params", help="active parameters of a mixture of experts (13B)")
    g.add_argument("--model", help="catalog name (meta-llama/Llama-3.1-70B, llama-3.1-70b), "
                   "config.json, model folder, .gguf file, or a hub id when online")
    g.add_argument("--family", default="llama",
                   help="shape family borrowed for --params: llama, qwen, gemma, moe")
    for flag, dest in SHAPE_FLAGS:
        g.add_argument(flag, dest=dest, type=positive_int(flag), help="shape override")


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--dtype", help="weight precision: fp32 fp16 bf16 fp8 int8 int4 nf4 "
                   "bnb-nf4-dq gptq-int4 awq-int4 mxfp4 q8_0 q6_k q5_k_m q4_k_m q4_0 q2_k "
                   "iq4_xs ... (default: the model's own)")
    g.add_argument("--quantization", "-q", help="vLLM's spelling of the checkpoint's "
                   "format (awq, gptq, fp8, bitsandbytes, ...): the weight precision; a --dtype "
                   "of half/bfloat16/auto beside it is vLLM's activation dtype")
    # the engines' own spellings are accepted too, so a launch command can be pasted as it is
    g.add_argument("--kv-dtype", "--kv-cache-dtype", dest="kv_dtype", help="KV cache precision: "
                   "fp16 bf16 fp32 fp8 q8_0 q4_0 (default: the compute dtype)")
    g.add_argument("--ctx", help="context length in tokens per sequence: 8192, 8k, 128K "
                   "(default 4096)")
    g.add_argument("--batch", "--parallel", "-np", dest="batch", default="1",
                   help="concurrent sequences (default 1; llama.cpp's -np)")
    g.add_argument("--images", help="pictures in the context of a vision-language model")
    g.add_argument("--image-size", help="their size in pixels, WIDTHxHEIGHT (default 1024x1024)")
    g.add_argument("--prefill-chunk", help="tokens per prefill forward (default: the context)")
    g.add_argument("--attn", default="sdpa", choices=("sdpa", "flash", "eager"),
                   help="attention implementation (eager materialises the scores)")


def estimate_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    from vramest.model.resolve import SHAPE_OVERRIDES

    kwargs: dict[str, Any] = {
        "params": args.params, "model": args.model, "family": args.family,
        "active_params": args.active_params, "dtype": weight_dtype(args.dtype,
                                                                  getattr(args, "quantization",
                                                                          None)),
        "kv_dtype": args.kv_dtype,
        "ctx": args.ctx, "batch": args.batch, "prefill_chunk": args.prefill_chunk,
        "attention": args.attn,
    }
    kwargs.update({k: getattr(args, k) for k in SHAPE_OVERRIDES})
    n_ctx = getattr(args, "n_ctx", None)
    if n_ctx is not None and args.ctx is None:  # llama.cpp's -c splits over -np sequences
        from vramest.units import parse_positive_int, parse_tokens

        kwargs["ctx"] = max(1, parse_tokens(n_ctx, what="--ctx-size")
                            // parse_positive_int(args.batch, what="--batch"))
    # one KV precision everywhere: llama.cpp's -ctk/-ctv, when they agree, are the --kv-dtype
    k, v = getattr(args, "cache_type_k", None), getattr(args, "cache_type_v", None)
    if args.kv_dtype is None and k and k == (v or k) and \
            str(getattr(args, "engine", "")).startswith("llamacpp"):
        kwargs["kv_dtype"] = k
    if getattr(args, "images", None) or getattr(args, "image_size", None):
        from vramest.model.vision import parse_images

        kwargs["images"] = parse_images(args.images, args.image_size)
    return kwargs


def add_gpu_list_args(p: argparse.ArgumentParser, title: str, gpu_help: str,
                      prompt_help: str) -> None:
    """The hardware flags of the commands that draw several GPUs at once (plot, report)."""
    from vramest.inference.engines.speed import ENGINES

    h = p.add_argument_group(title)
    h.add_argument("--gpu", help=gpu_help)
    h.add_argument("--num-gpus", default="1", help="GPUs in total (memory is per GPU; tensor "
                   "parallel unless --pp)")
    h.add_argument("--pp", default="1", help="pipeline-parallel stages (default 1)")
    h.add_argument("--reserve", help="memory kept free per GPU: 10%%, 0.1 or 2GiB (default 5%%)")
    h.add_argument("--prompt", help=prompt_help)
    h.add_argument("--gen", default="128", help="generated tokens (default 128)")
    h.add_argument("--engine", default="generic", choices=sorted(ENGINES),
                   help="serving engine whose fixed costs the speed uses (default generic)")
    h.add_argument("--hardware-file", help="JSON file of devices to add or override")


# vLLM's --quantization methods -> the weight precision they load (vllm/model_executor/layers/
# quantization/__init__.py QUANTIZATION_METHODS; the *_marlin kernels read the same checkpoints)
_VLLM_QUANTIZATION = {"awq": "awq-int4", "awq_marlin": "awq-int4", "gptq": "gptq-int4",
                      "gptq_marlin": "gptq-int4", "fp8": "fp8", "fbgemm_fp8": "fp8",
                      "bitsandbytes": "nf4", "mxfp4": "mxfp4-experts", "modelopt_fp4": "nvfp4",
                      "gguf": None, "compressed-tensors": None}
# vLLM's --dtype values, which name the activations: the weights are the checkpoint's own
_ACTIVATION_DTYPES = frozenset({"auto", "half", "float16", "bfloat16", "float", "float32"})


def weight_dtype(dtype: str | None, quantization: str | None) -> str | None:
    """The weight precision a command line asks for: --dtype, or vLLM's --quantization, where a
    --dtype beside it is the activation dtype; `--dtype auto` is the model's own."""
    if quantization is not None:
        key = quantization.strip().lower()
        if key not in _VLLM_QUANTIZATION:
            from vramest.errors import InputError, short

            raise InputError(f"Unknown --quantization {short(quantization)}; accepted: "
                             f"{', '.join(_VLLM_QUANTIZATION)} (or --dtype with any precision).")
        named = _VLLM_QUANTIZATION[key]
        if named is not None or dtype is None or dtype.strip().lower() in _ACTIVATION_DTYPES:
            return named
    if dtype is not None and dtype.strip().lower() == "auto":
        return None
    return dtype


class Spelled(tuple[str, ...]):
    """A flag's choices that also take other spellings of them (transformers' adamw_torch for
    adamw): `normal` turns a spelling into the choice it means; help and errors list the
    choices themselves."""

    normal: Callable[[object], object]

    def __new__(cls, choices: tuple[str, ...], normal: Callable[[object], object]) -> Spelled:
        made = super().__new__(cls, choices)
        made.normal = normal
        return made

    def __contains__(self, value: object) -> bool:
        return tuple.__contains__(self, self.normal(value))


def engine_key(value: object) -> object:
    """An --engine name in any case, alone or with its release after it ("vLLM",
    "vllm==0.6.3"), as its choice."""
    if not isinstance(value, str):
        return value
    from vramest.inference.engines.aliases import split_release

    return split_release(value)[0].strip().lower()


def add_hardware_args(p: argparse.ArgumentParser) -> None:
    from vramest.inference.engines.speed import ENGINES

    g = p.add_argument_group("hardware and speed")
    g.add_argument("--gpu", help="a GPU to fit on (4090, h100, a100-80gb, m2-ultra, ...; "
                   "`vramest gpus` lists them), or 'local' for this machine's first GPU; without "
                   "it, a table of common GPUs")
    g.add_argument("--num-gpus", default="1", help="GPUs in total (tensor parallel unless --pp)")
    g.add_argument("--tensor-parallel-size", "-tp", help="vLLM's spelling: GPUs per pipeline "
                   "stage (--num-gpus is then this times --pp)")
    g.add_argument("--pp", "--pipeline-parallel-size", "-pp", dest="pp", default="1",
                   help="pipeline-parallel stages (default 1)")
    g.add_argument("--reserve", help="memory kept free per GPU: 10%%, 0.1 or 2GiB (default 5%%)")
    g.add_argument("--max-ctx", action="store_true", help="find the longest context that fits")
    g.add_argument("--max-batch", action="store_true", help="find the most sequences that fit")
    g.add_argument("--prompt", help="prompt tokens for the speed estimate (default: --ctx)")
    g.add_argument("--gen", default="128", help="generated tokens (default 128)")
    from vramest.inference.engines.aliases import ALIASES, REFUSED

    g.add_argument("--engine", default="generic",
                   choices=Spelled(tuple(sorted({*ENGINES, *ALIASES, *REFUSED})), engine_key),
                   help="serving engine whose fixed costs the speed uses (default generic); "
                   "with its release, vllm==0.6.3, as --engine-version takes it")
    g.add_argument("--engine-version", help="the engine release the start-up accounting is "
                   "for: vllm==0.6.3, 0.10.1, llamacpp==b4000, transformers==4.46 (default: a "
                   "recent release, named in the output)")
    g.add_argument("--hardware-file", help="JSON file of devices to add or override")
    g.add_argument("--host-memory", help="system memory that layers left on the host stream "
                   "from (llama.cpp -ngl, Ollama's partial offload, --n-cpu-moe): a CPU row of "
                   "`vramest gpus`, e.g. \"CPU DDR4-3200 2-channel\" (default DDR5-5600 2-channel)")
    g.add_argument("--no-gpus", action="store_true", help="memory only, no GPU table")
    g.add_argument("--profile", help="calibration profile (vramest calibrate) whose constants to use; "
                   "default: a stored profile of this machine, if any; 'none' for the shipped ones")
    v = p.add_argument_group("vLLM (--engine vllm)")
    v.add_argument("--gpu-memory-utilization",
                   type=positive_float("--gpu-memory-utilization", "a share of memory", 1.0),
                   help="share of GPU memory vLLM may use (default 0.9)")
    v.add_argument("--max-model-len", help="longest sequence (default: the model's context)")
    v.add_argument("--max-num-batched-tokens", help="tokens per profiling forward")
    v.add_argument("--max-num-seqs", help="sequences sampled together (default 256)")
    v.add_argument("--block-size", help="tokens per KV block (default 16)")
    v.add_argument("--data-parallel-size", "-dp", dest="data_parallel_size",
                   help="vLLM engines over the --num-gpus GPUs (attention per engine, the "
                   "experts of a MoE over all GPUs; default 1)")
    v.add_argument("--enforce-eager", action="store_true", default=None,
                   help="no CUDA graphs (their memory is not reserved)")
    v.add_argument("--kv-cache-memory-bytes", help="the KV cache pinned at this size per GPU, "
                   "e.g. 6GiB (vLLM 0.10.1+; --gpu-memory-utilization is then ignored)")
    v.add_argument("--gpu-memory-in-use", help="memory other processes already hold on each "
                   "GPU, e.g. 20GiB (each vLLM release treats it differently)")
    v.add_argument("--limit-mm-per-prompt", help="a vision model's items per prompt, as vLLM "
                   "takes it: '{\"image\": 10, \"video\": 0}' or image=10,video=0 (0 turns a "
                   "modality, and with all 0 the start-up encoder profile, off)")
    v.add_argument("--mm-processor-kwargs", help="the image processor's settings; its "
                   "max_pixels sizes the largest picture vLLM profiles: '{\"max_pixels\": N}'")
    v.add_argument("--skip-mm-profiling", action="store_true", default=None,
                   help="no multimodal encoder profile at start-up (vLLM 0.10.1 and later)")
    v.add_argument("--allow-long-max-model-len", action="store_true", default=None,
                   help="VLLM_ALLOW_LONG_MAX_MODEL_LEN=1: a --max-model-len beyond the model's "
                   "own length (refused otherwise)")
    v.add_argument("--entrypoint", choices=("serve", "llm"), help="vllm serve (default) or the "
                   "offline LLM class, whose batch defaults are larger")
    v.add_argument("--mxfp4-kernel", choices=("auto", "marlin", "triton"), help="vLLM's MXFP4 "
                   "MoE kernel on Hopper: triton where triton_kernels is installed (the "
                   "vllm/vllm-openai images), marlin for a pip install; auto: the release's rule")
    v.add_argument("--model-runner", choices=("v1", "v2"), help="vLLM's model runner: v2 is "
                   "VLLM_USE_V2_MODEL_RUNNER=1 (its sampler warm-up and CUDA graphs fall outside "
                   "--gpu-memory-utilization)")
    v.add_argument("--runner", "--task", dest="runner", help="vLLM's runner: generate, or "
                   "pooling for an embedding/rerank server (--task embed, classify, score); "
                   "default auto: pooling for a checkpoint without an LM head")
    p.add_argument_group("ollama, sglang, tgi, exllamav2 (--engine ...)").add_argument(
        "--engine-option", action="append", metavar="KEY=VALUE",
        help="an engine setting, repeatable: num_ctx=8192, OLLAMA_NUM_PARALLEL=4, "
             "OLLAMA_KV_CACHE_TYPE=q8_0, version=0.6.2, mem_fraction_static=0.85 ...")
    ll = p.add_argument_group("llama.cpp (--engine llamacpp)")
    ll.add_argument("--n-gpu-layers", "-ngl", help="layers offloaded to the GPU (default all)")
    ll.add_argument("--ctx-size", "-c", dest="n_ctx", help="llama.cpp's n_ctx: the context of "
                    "all --batch (-np) sequences together; --ctx is then n_ctx / --batch")
    ll.add_argument("--ubatch", help="physical batch size (default 512)")
    ll.add_argument("--flash-attn", action="store_true", default=None,
                    help="flash attention: no KQ matrix in the compute buffer")
    ll.add_argument("--no-flash-attn", dest="flash_attn", action="store_false",
                    help="-fa off (llama-bench's default): the KQ scores are materialised")
    ll.add_argument("--cache-type-k", "-ctk", help="K cache type: f16, q8_0, q4_0 ...")
    ll.add_argument("--cache-type-v", "-ctv", help="V cache type: f16, q8_0, q4_0 ...")
    ll.add_argument("--split-mode", "-sm", choices=("layer", "row", "none"),
                    help="how --num-gpus GPUs share the model (default layer: whole layers "
                    "per GPU)")
    ll.add_argument("--tensor-split", "-ts", help="share of the layers per GPU, e.g. 3,1")
    ll.add_argument("--n-cpu-moe", help="keep the expert tensors of the first N layers on the "
                    "host")
    ll.add_argument("--fused-gate-up-exps", action="store_true", default=None,
                    help="the GGUF fuses gate and up experts (ffn_gate_up_exps): builds before "
                    "b8301 keep them on the GPU under --n-cpu-moe")
    ll.add_argument("--fit", action="store_true", default=None,
                    help="offload the most layers that fit on --gpu")
    ll.add_argument("--backend", choices=("cuda", "rocm", "metal", "vulkan"),
                    help="llama.cpp's GPU backend (default: the GPU vendor's usual one); vulkan "
                    "copies the KQ mask to the GPU and caps each allocation")
    ll.add_argument("--max-allocation", dest="max_allocation_bytes",
                    help="Vulkan's largest single allocation (default 4GiB; AMD's Windows "
                    "driver 2GiB)")


def hardware_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    num_gpus = args.num_gpus
    if args.tensor_parallel_size is not None:
        from vramest.units import parse_positive_int

        tp = parse_positive_int(args.tensor_parallel_size, what="--tensor-parallel-size",
                                maximum=4096)
        pp = parse_positive_int(args.pp, what="--pp", maximum=4096)
        if num_gpus != "1" and parse_positive_int(num_gpus, what="--num-gpus") != tp * pp:
            from vramest.errors import InputError

            raise InputError(f"--num-gpus {num_gpus} is not --tensor-parallel-size {tp} x --pp "
                             f"{pp}; give one or make them agree.")
        num_gpus = str(tp * pp)
    return {"gpu": args.gpu, "num_gpus": num_gpus, "pp": args.pp, "reserve": args.reserve,
            "max_ctx": args.max_ctx, "max_batch": args.max_batch, "prompt": args.prompt,
            "gen": args.gen, "engine": args.engine, "hardware_file": args.hardware_file,
            "host_memory": args.host_memory, "compare_gpus": args.gpu is None and not args.no_gpus,
            "engine_options": _engine_options(args), "profile": args.profile}


_OPTION_FLAGS = {"n_ubatch": "--ubatch", "version": "--engine-version",
                 "memory_in_use_bytes": "--gpu-memory-in-use",
                 "max_allocation_bytes": "--max-allocation",
                 "mm_max_pixels": "--mm-processor-kwargs"}  # the rest: --key-name


def _flag(option: str) -> str:
    return _OPTION_FLAGS.get(option, "--" + option.replace("_", "-"))


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    from vramest.inference.engines.aliases import OWN_ACCOUNTING, resolve_engine

    engine = resolve_engine(args.engine)[0]  # an alias takes its engine's options
    if engine in OWN_ACCOUNTING:
        from vramest.inference.engines.registry import parse_pairs

        pairs = parse_pairs(args.engine_option)
        if args.engine_version is not None:  # one flag for every engine's release
            given = pairs.setdefault("version", args.engine_version)
            if given != args.engine_version:
                from vramest.errors import InputError, short

                raise InputError(f"--engine-version {short(args.engine_version)} and "
                                 f"--engine-option version={short(given)} disagree; give one.")
        return pairs
    if args.engine_option:
        from vramest.errors import InputError

        raise InputError(f"--engine-option applies to --engine {' or '.join(OWN_ACCOUNTING)}.")
    raw: dict[str, object] | None = None
    if engine == "vllm":
        raw = {"gpu_memory_utilization": args.gpu_memory_utilization,
               "max_model_len": args.max_model_len,
               "max_num_batched_tokens": args.max_num_batched_tokens,
               "max_num_seqs": args.max_num_seqs, "block_size": args.block_size,
               "enforce_eager": args.enforce_eager, "version": args.engine_version,
               "memory_in_use_bytes": args.gpu_memory_in_use, "runner": args.runner,
               "data_parallel_size": args.data_parallel_size,
               "kv_cache_memory_bytes": args.kv_cache_memory_bytes,
               "limit_mm_per_prompt": args.limit_mm_per_prompt,
               "mm_max_pixels": args.mm_processor_kwargs,
               "skip_mm_profiling": args.skip_mm_profiling, "entrypoint": args.entrypoint,
               "model_runner": args.model_runner, "mxfp4_kernel": args.mxfp4_kernel,
               "allow_long_max_model_len": args.allow_long_max_model_len}
    elif engine.startswith("llamacpp"):
        raw = {"n_gpu_layers": args.n_gpu_layers, "n_ctx": args.n_ctx, "n_ubatch": args.ubatch,
               "flash_attn": args.flash_attn, "cache_type_k": args.cache_type_k,
               "cache_type_v": args.cache_type_v, "fit": args.fit,
               "version": args.engine_version, "split_mode": args.split_mode,
               "tensor_split": args.tensor_split, "n_cpu_moe": args.n_cpu_moe,
               "backend": args.backend, "max_allocation_bytes": args.max_allocation_bytes,
               "fused_gate_up_exps": args.fused_gate_up_exps}
    elif engine == "hf":
        raw = {"version": args.engine_version}
    if raw is not None:  # each option's one parser (the API's and the spec's), named by flag
        from vramest.inference.engines.startup import parse_engine_options

        return parse_engine_options(engine, raw, shown=_flag)
    given = [flag for flag, value in (("--gpu-memory-utilization", args.gpu_memory_utilization),
                                      ("--max-model-len", args.max_model_len),
                                      ("--n-gpu-layers", args.n_gpu_layers),
                                      ("--ctx-size", args.n_ctx),
                                      ("--ubatch", args.ubatch), ("--fit", args.fit),
                                      ("--enforce-eager", args.enforce_eager),
                                      ("--gpu-memory-in-use", args.gpu_memory_in_use),
                                      ("--runner", args.runner),
                                      ("--engine-version", args.engine_version))
             if value is not None]
    if given:
        from vramest.errors import InputError

        raise InputError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} "
                         "--engine vllm or --engine llamacpp"
                         + (" (or hf, sglang, tgi, ollama)." if given == ["--engine-version"]
                            else "."))
    return {}
