"""`vramest train --config FILE`: a LLaMA-Factory or axolotl training config read as flags.

Threads about a fine-tuning OOM quote the YAML the user ran. This reads the top-level settings
that decide memory and turns them into `vramest train` flags; a flag given on the command line
wins over the file. What the file sets that changes no memory (datasets, logging, output,
learning rate) is left out; any other key it does not read is named in a note, so nothing is
dropped unseen. The YAML read is the flat subset these configs use (`key: value`, `key:` with a `- item`
list or an indented map under it); anything else is one sentence.
Keys: LLaMA-Factory's src/llamafactory/hparams/*.py, axolotl's docs/config.qmd.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from vramest.errors import InputError, short
from vramest.files import read_json, read_text

_MAX_BYTES = 256 * 1024  # the longest example configs are a few KB
_NO_MEMORY = frozenset({
    # data, prompt formatting, logging, output, schedule, evaluation, hub: no memory of their own
    "dataset", "datasets", "dataset_dir", "template", "eval_dataset", "test_datasets",
    "val_set_size", "dataset_prepared_path", "chat_template", "overwrite_cache",
    "preprocessing_num_workers", "dataloader_num_workers", "max_samples", "output_dir",
    "logging_steps", "save_steps", "save_strategy", "plot_loss", "overwrite_output_dir",
    "save_only_model", "report_to", "run_name", "learning_rate", "num_train_epochs",
    "num_epochs", "lr_scheduler_type", "lr_scheduler", "warmup_ratio", "warmup_steps",
    "weight_decay", "max_grad_norm", "ddp_timeout", "resume_from_checkpoint", "eval_steps",
    "eval_strategy", "evaluation_strategy", "per_device_eval_batch_size", "eval_batch_size",
    "do_train", "do_eval", "seed", "trust_remote_code", "wandb_project", "wandb_entity",
    "wandb_name", "wandb_watch", "wandb_log_model", "hub_model_id", "push_to_hub",
    "strict", "logging_dir", "saves_per_epoch", "evals_per_epoch", "special_tokens",
    "tokenizer_type", "model_type", "train_on_inputs", "group_by_length", "packing",
    "sample_packing", "pad_to_sequence_len", "neat_packing", "tf32", "lora_alpha",
    "lora_model_dir", "early_stopping_patience",
    "debug", "deepspeed_config", "gradient_checkpointing_kwargs", "lora_fan_in_fan_out",
    "ddp_find_unused_parameters", "use_reentrant", "pref_beta", "adapter_name_or_path",
    "create_new_adapter", "loss_watchdog_threshold", "loss_watchdog_patience",
    "auto_resume_from_checkpoints",
})
_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False,
          "null": None, "~": None, "": None}


def expand(args: list[str]) -> list[str]:
    """`train ... --config FILE ...` with the file's settings as flags before the command
    line's own, so a flag given there wins (the last of a flag is the one read)."""
    rest: list[str] = []
    paths: list[str] = []
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if flag == "--config":
            if not eq and i + 1 >= len(args):
                raise InputError("--config takes a file: a LLaMA-Factory or axolotl training "
                                 "config (YAML).")
            paths.append(value if eq else args[i + 1])
            i += 1 if eq else 2
            continue
        rest.append(args[i])
        i += 1
    if len(paths) != 1:
        raise InputError("--config is given more than once; give one training config.")
    text = read_text(paths[0], what="--config", limit=_MAX_BYTES,
                     missing="; expected a LLaMA-Factory or axolotl training config (YAML)")
    from_file, unread = _flags(_parse(text, paths[0]), Path(paths[0]).parent)
    if unread:
        print(f"vramest: note: --config's {', '.join(unread)} not read (vramest models no "
              "memory for them; give a flag where one changes it).", file=sys.stderr)
    return [rest[0], *from_file, *rest[1:]]


def launch_line(words: list[str]) -> list[str] | None:
    """`train` with LLaMA-Factory's own command pasted after it (or first): `llamafactory-cli
    train CONFIG.yaml [key=value ...]`, or its settings as flags, `llamafactory-cli train
    --stage sft --model_name_or_path ... --cutoff_len 4096`, and the scripts it had before the
    CLI (`python src/train_bash.py`, `src/train_sft.py`, `src/train.py`, under `deepspeed` or
    `torchrun` too). The flags are the YAML's keys (LLaMA-Factory's HfArgumentParser reads
    either); vramest's own flags (--gpu, --num-gpus) stay as they are. None: not such a line."""
    i = 0
    from vramest.commands.launch_line import is_setting

    while i < len(words) and is_setting(words[i]):
        i += 1  # CUDA_VISIBLE_DEVICES=0 and the like
    start = _program_end(words, i)
    if start is None:
        return None
    rest = words[start:]
    if rest and rest[0][:1] != "-" and rest[0].lower().endswith((".yaml", ".yml", ".json")):
        overrides = [w for w in rest[1:] if w[:1] != "-" and "=" in w]
        from_file = _parse(read_text(
            rest[0], what="The LLaMA-Factory config", limit=_MAX_BYTES,
            missing="; expected a LLaMA-Factory training config (YAML)"), rest[0])
        for word in overrides:  # llamafactory-cli train x.yaml key=value: the value wins
            key, _, value = word.partition("=")
            from_file[key] = _scalar(value)
        return _as_flags(from_file, Path(rest[0]).parent,
                         [w for w in rest[1:] if w not in overrides])
    from vramest.commands.fast_parse import spellings

    own_flags = spellings("train")
    cfg: dict[str, object] = {}
    own: list[str] = []
    k = 0
    while k < len(rest):
        word = rest[k]
        flag, eq, value = word.partition("=")
        following = rest[k + 1] if k + 1 < len(rest) else None
        takes = eq or (following is not None and following[:1] != "-")
        if flag in own_flags and ("-" in flag[2:] or flag in _OWN_WORDS):
            own += rest[k:k + (1 if eq or not takes else 2)]  # --gpu "A100 80GB"
            k += 1 if eq or not takes else 2
            continue
        if flag[:2] != "--":
            raise InputError(f"{short(word)}: after LLaMA-Factory's command vramest reads its "
                             "--key value settings and its own flags (--gpu, --num-gpus).")
        cfg[flag[2:].replace("-", "_")] = _scalar(value if eq else following or "") \
            if takes else True
        k += 1 if eq or not takes else 2
    return _as_flags(cfg, Path.cwd(), own)


# vramest's one-word train flags that LLaMA-Factory's arguments lack (its --optim, --fsdp,
# --deepspeed and --seed are its own keys there)
_OWN_WORDS = frozenset({"--gpu", "--json", "--explain", "--reserve", "--profile", "--tokens"})
# LLaMA-Factory's entry points before llamafactory-cli (its README until 0.5/0.6), by file name
_SCRIPTS = ("train_bash.py", "train_sft.py", "train_pt.py", "train_rm.py", "train_ppo.py",
            "train_dpo.py", "train_web.py", "train.py")


def _program_end(words: list[str], i: int) -> int | None:
    """Where LLaMA-Factory's arguments start after its program, or None."""
    if words[i:i + 2] == ["llamafactory-cli", "train"] or words[i:i + 2] == ["lmf", "train"]:
        return i + 2
    if i < len(words) and words[i] in ("python", "python3", "deepspeed", "torchrun",
                                       "accelerate"):
        k = i + 1
        while k < len(words) and (words[k][:1] == "-" or words[k] == "launch" or
                                  (k > 0 and words[k - 1].startswith("--") and
                                   "=" not in words[k - 1] and words[k][:1] != "-" and
                                   not words[k].endswith(".py"))):
            k += 1  # the launcher's own options: --num_gpus 8, --nproc_per_node=4
        if k < len(words) and words[k].replace("\\", "/").rsplit("/", 1)[-1] in _SCRIPTS:
            return k + 1
    return None


def _as_flags(cfg: dict[str, object], folder: Path, own: list[str]) -> list[str]:
    from_config, unread = _flags(cfg, folder)
    if unread:
        print(f"vramest: note: {', '.join(unread)} not read (vramest models no memory for "
              "them; give a flag where one changes it).", file=sys.stderr)
    return ["train", *from_config, *own]


def _parse(text: str, path: str) -> dict[str, object]:
    out: dict[str, object] = {}
    key: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = _without_comment(raw).rstrip()
        if not line.strip() or line.strip() == "---":
            continue
        if line[:1] in (" ", "\t", "-"):
            item = line.strip()
            if key is None:
                raise InputError(f"--config {short(path)} line {number} is indented under no "
                                 "key; expected the flat `key: value` YAML of a training config.")
            held = out.get(key)
            if item.startswith("- "):
                out[key] = [*(held if isinstance(held, list) else []), _scalar(item[2:])]
            elif ":" in item:
                sub, _, value = item.partition(":")
                out[key] = {**(held if isinstance(held, dict) else {}),
                            sub.strip(): _scalar(value)}
            continue
        name, colon, value = line.partition(":")
        if not colon or not re.fullmatch(r"[A-Za-z_][\w.\-]*", name.strip()):
            raise InputError(f"--config {short(path)} line {number} is not `key: value`; "
                             "expected the flat YAML of a LLaMA-Factory or axolotl config.")
        key = name.strip()
        out[key] = _scalar(value)
    return out


def _without_comment(line: str) -> str:
    quote = None
    for i, char in enumerate(line):
        if char in "\"'" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _scalar(text: str) -> object:
    value = text.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    if value.startswith("[") and value.endswith("]"):
        return [_scalar(part) for part in value[1:-1].split(",") if part.strip()]
    if value.lower() in _WORDS:
        return _WORDS[value.lower()]
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def _flags(cfg: dict[str, object], folder: Path) -> tuple[list[str], list[str]]:
    """(the flags, the keys neither read nor known to hold no memory)."""
    args: list[str] = []
    read: set[str] = set()

    def take(key: str) -> object:
        read.add(key)
        return cfg.get(key)

    def put(flag: str, value: object = True) -> None:
        args.extend([flag] if value is True else [flag, str(value)])

    axolotl = "base_model" in cfg
    put("--framework", "axolotl" if axolotl else "llamafactory")
    model = take("base_model") if axolotl else take("model_name_or_path")
    if model:
        put("--model", model)
    # what is trained
    adapter, finetuning = take("adapter"), take("finetuning_type")
    if not axolotl and finetuning is None:  # FinetuningArguments.finetuning_type's default
        finetuning = "lora"  # (src/llamafactory/hparams/finetuning_args.py)
    bits = take("quantization_bit")
    four, eight = take("load_in_4bit") is True or bits == 4, take("load_in_8bit") is True or bits == 8
    lora = adapter in ("lora", "qlora") or finetuning == "lora"
    if adapter == "qlora" or (lora and four):
        put("--method", "qlora")
    elif lora:
        put("--method", "lora")
        if eight:
            put("--base-dtype", "int8")
    elif finetuning in ("full", "freeze"):
        put("--method", finetuning)
    elif finetuning is not None or adapter is not None:
        raise InputError(f"--config: finetuning_type/adapter {short(finetuning or adapter)} is not "
                         "a method vramest models; accepted: lora, qlora, full, freeze.")
    rank = take("lora_r") if axolotl else take("lora_rank")
    if rank is not None:
        put("--lora-rank", rank)
    target = take("lora_target")
    if take("lora_target_linear") is True or target in ("all", "all-linear"):
        put("--lora-targets", "all-linear")
    elif target is not None:
        put("--lora-targets", ",".join(map(str, target)) if isinstance(target, list) else target)
    elif axolotl and take("lora_target_modules") is not None:
        modules = cfg["lora_target_modules"]
        put("--lora-targets", ",".join(map(str, modules)) if isinstance(modules, list) else modules)
    dropout = take("lora_dropout")
    if isinstance(dropout, (int, float)) and dropout > 0:
        put("--lora-dropout")
    # the step's shape
    for keys, flag in ((("cutoff_len", "sequence_len", "max_seq_length"), "--seq"),
                       (("per_device_train_batch_size", "micro_batch_size"), "--micro-batch"),
                       (("gradient_accumulation_steps",), "--grad-accumulation")):
        for key in keys:
            if take(key) is not None:
                put(flag, cfg[key])
                break
    # precision, optimizer, attention, checkpointing
    if take("pure_bf16") is True:
        put("--precision", "bf16")
    take("bf16"), take("fp16")  # mixed precision is the default either way
    optim = take("optim") if "optim" in cfg else take("optimizer")
    if optim is not None:
        put("--optimizer", optim)
    attention = take("flash_attn")
    if take("flash_attention") is True or attention == "fa2":
        put("--attn", "flash")
    elif take("sdp_attention") is True or attention == "sdpa":
        put("--attn", "sdpa")
    elif attention in ("disabled", "eager") or take("eager_attention") is True:
        put("--attn", "eager")
    checkpointing = take("gradient_checkpointing")
    if take("disable_gradient_checkpointing") is True or checkpointing is False:
        put("--grad-checkpointing", "none")
    elif checkpointing in ("unsloth", "offload"):
        put("--grad-checkpointing", "offloaded")
    elif checkpointing is True:
        put("--grad-checkpointing", "full")
    if take("use_unsloth") is True:
        put("--kernels", "unsloth")
    # the objective
    stage, rl, pref_loss = take("stage"), take("rl"), take("pref_loss")
    objective = rl if rl is not None else stage
    if objective in ("dpo", "orpo", "kto", "sft"):
        put("--objective", "orpo" if pref_loss == "orpo" else objective)
    elif objective not in (None, "pt"):
        raise InputError(f"--config: stage/rl {short(objective)} is not modelled; accepted: sft, "
                         "pt, dpo, orpo, kto.")
    # sharding
    deepspeed = take("deepspeed")
    if deepspeed is not None:
        args += _deepspeed(str(deepspeed), folder)
    fsdp = take("fsdp")
    if fsdp or take("fsdp_config") is not None:
        put("--fsdp")
    return args, sorted(k for k in cfg if k not in read and k not in _NO_MEMORY)


def _deepspeed(name: str, folder: Path) -> list[str]:
    """The ZeRO stage and offload of a DeepSpeed config: the file's own settings where it is
    found beside the config, else its name as LLaMA-Factory and axolotl ship them
    (ds_z3_offload_config.json, zero3_bf16_cpuoffload_all.json)."""
    path = Path(name) if Path(name).is_absolute() else folder / name
    if path.is_file():
        config = read_json(path, what="The DeepSpeed config")
        zero = config.get("zero_optimization", {}) if isinstance(config, dict) else {}
        if not isinstance(zero, dict):
            zero = {}
        stage = zero.get("stage", 0)
        out = ["--zero", str(stage)] if stage in (0, 1, 2, 3) else []
        if isinstance(zero.get("offload_param"), dict) and \
                zero["offload_param"].get("device") == "cpu":
            out += ["--offload", "params"]
        elif isinstance(zero.get("offload_optimizer"), dict) and \
                zero["offload_optimizer"].get("device") == "cpu":
            out += ["--offload", "optimizer"]
        if zero.get("overlap_comm") is True and stage in (1, 2):
            out.append("--overlap-comm")
        if isinstance(zero.get("reduce_bucket_size"), (int, float)) and stage in (1, 2):
            out += ["--reduce-bucket-size", str(int(zero["reduce_bucket_size"]))]
        return out
    found = re.search(r"(?:z|zero)_?([0-3])", Path(name).name.lower())
    if found is None:
        raise InputError(f"--config's deepspeed {short(name)} is neither a file beside the config "
                         "nor named by its ZeRO stage (ds_z3_config.json, zero2.json); give "
                         "--zero N.")
    out = ["--zero", found.group(1)]
    if "offload" in name.lower():  # a stage-3 offload config moves the parameters too
        out += ["--offload", "params" if found.group(1) == "3" and "optim" not in name.lower()
                else "optimizer"]
    return out
