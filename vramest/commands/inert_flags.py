"""Engine flags that change no memory, taken out of a pasted launch command with a note.

A user pastes `vllm serve ... --port 8000 --enable-prefix-caching` or `llama-server ... -t 8
--jinja`; these flags set the server, the sampler or logging, not what the engine allocates on
the GPU, so the estimate is the same with or without them. Flags that do change memory are
vramest's own (--max-model-len, -ngl, ...) or refused as unknown, never dropped here.
"""

from __future__ import annotations

# flag → whether it takes a value. vLLM: vllm/entrypoints/openai/cli_args.py (server, API,
# parsers) and vllm/engine/arg_utils.py (tokenizer, load, logging, seed: read at load, no
# allocation of their own). Prefix caching shares blocks of the KV cache it sizes anyway
# (vllm/v1/core/kv_cache_manager.py), async scheduling overlaps CPU work, the swap space is
# host memory.
_VLLM = {"--host": True, "--port": True, "--served-model-name": True, "--api-key": True,
         "--chat-template": True, "--tool-call-parser": True, "--reasoning-parser": True,
         "--uvicorn-log-level": True, "--seed": True, "--download-dir": True,
         "--tokenizer": True, "--revision": True, "--tokenizer-revision": True,
         "--tokenizer-mode": True, "--response-role": True, "--root-path": True,
         "--swap-space": True, "--max-log-len": True, "--generation-config": True,
         "--trust-remote-code": False, "--enable-prefix-caching": False,
         "--no-enable-prefix-caching": False, "--disable-log-requests": False,
         "--disable-log-stats": False, "--enable-auto-tool-choice": False,
         "--async-scheduling": False, "--disable-fastapi-docs": False,
         # the folder `file://` images may be read from (ModelConfig.allowed_local_media_path)
         "--allowed-local-media-path": True,
         # how the workers are started, Ray or processes (ParallelConfig.distributed_executor_
         # backend): the same shards on the same GPUs
         "--distributed-executor-backend": True}
# SGLang (python/sglang/srt/server_args.py, as its ServerArgs(...) log line lists them): the
# tokenizer's path and the sampler's seed
_SGLANG = {"--tokenizer-path": True, "--random-seed": True}
# llama.cpp's llama-server and llama-cli (tools/server/README.md, common/arg.cpp): threads,
# sampling, chat template, logging and the HTTP server; --mlock and --no-mmap change how the
# host holds the file, not the GPU's buffers.
_LLAMACPP = {"-t": True, "--threads": True, "-tb": True, "--threads-batch": True,
             "--temp": True, "--top-k": True, "--top-p": True, "--min-p": True,
             "--repeat-penalty": True, "-a": True, "--alias": True, "--api-key": True,
             "--chat-template": True, "-s": True, "--seed": True, "--jinja": False,
             "--mlock": False, "--no-mmap": False, "--metrics": False, "-v": False,
             "--verbose": False, "--log-disable": False, "-cb": False,
             "--cont-batching": False, "--no-webui": False,
             # RoPE's base frequency and scale: numbers in the attention's rotation, no buffer
             "--rope-freq-base": True, "--rope-freq-scale": True,
             # tokens to predict, the prompt and the interactive chat of llama-cli (old ./main),
             # and the rest of the sampler (common/arg.cpp); the context is -c alone
             "-n": True, "--n-predict": True, "--predict": True, "-p": True, "-f": True,
             "--file": True, "-r": True, "--reverse-prompt": True, "--in-prefix": True,
             "--in-suffix": True, "--in-prefix-bos": False, "-i": False,
             "--interactive": False, "-if": False, "--interactive-first": False,
             "-cnv": False, "--conversation": False, "-no-cnv": False, "--color": False,
             "--keep": True, "--repeat-last-n": True, "--presence-penalty": True,
             "--frequency-penalty": True, "--typical": True, "--mirostat": True,
             "--mirostat-lr": True, "--mirostat-ent": True, "--log-file": True,
             "--reasoning-format": True, "--reasoning-budget": True,
             "--chat-template-file": True,
             # before llama.cpp's flags took dashes (2023 ./main), as threads of then paste them
             "--repeat_penalty": True, "--n_predict": True}
INERT: dict[str, bool] = {**_VLLM, **_SGLANG, **_LLAMACPP}


def without_inert(args: list[str]) -> tuple[list[str], list[str]]:
    """(the arguments without the inert flags and their values, those flags as written).
    A flag that takes a value but ends the line is left for argparse to refuse."""
    kept: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, _ = arg.partition("=")
        takes = INERT.get(flag)
        if takes is None or (eq and not takes):
            kept.append(arg)
        elif takes and not eq:
            if i + 1 >= len(args):
                kept.append(arg)
            else:
                dropped.append(f"{arg} {args[i + 1]}")
                i += 1
        else:
            dropped.append(arg)
        i += 1
    return kept, dropped
