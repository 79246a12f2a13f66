"""Training estimates against published fine-tuning measurements (vramest/validation/reference).

`training_accuracy_report` prints predicted vs published for every `[MEASURED]` peak-memory
row of training.csv the tool can express, and says why the others cannot be; `bounds_checks`
holds the tool to each fits/OOM limit of training_bounds.csv. Torch-free.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from vramest.frozen import TYPE_CHECKING, frozen
from vramest.inference.placement import DEFAULT_RESERVE
from vramest.model.catalog import default_catalog
from vramest.model.resolve import ModelInfo
from vramest.model.shapes import shape_from_config
from vramest.training.constants import TRAINING_DEFAULTS
from vramest.training.estimate import estimate_training
from vramest.units import GIB, MIB
from vramest.validation import REFERENCE_DIR, read_rows

if TYPE_CHECKING:
    from typing import Any

DEFAULT_REFERENCE_DIR = REFERENCE_DIR
PEAK_METRICS = ("peak_memory", "memory_per_gpu")

# Reference rows name models in prose; catalog ids where the catalog has them.
_CATALOG_NAMES: tuple[tuple[str, str], ...] = (
    ("Mixtral-8x7B", "mistralai/Mixtral-8x7B-v0.1"),
    ("Mistral-7B", "mistralai/Mistral-7B-v0.1"),
    ("Llama-2-70b", "meta-llama/Llama-2-70b-hf"),
    ("Llama-2-70B", "meta-llama/Llama-2-70b-hf"),
    ("Llama2-70B", "meta-llama/Llama-2-70b-hf"),
    ("Llama 3.3 70B", "meta-llama/Llama-3.3-70B-Instruct"),
    ("Llama 3.1 8B", "meta-llama/Llama-3.1-8B"),
    ("llama-3.1-8b", "meta-llama/Llama-3.1-8B"),
    ("llama-3-8b", "meta-llama/Meta-Llama-3-8B"),
    ("Llama 3.2 3B", "meta-llama/Llama-3.2-3B"),
    ("Llama 2 13B", "meta-llama/Llama-2-13b-hf"),
    ("llama-13b", "meta-llama/Llama-2-13b-hf"),  # LLaMA-1 13B has Llama-2-13B's shape
    ("Llama 2 7B", "meta-llama/Llama-2-7b-hf"),
    ("Llama2-7B", "meta-llama/Llama-2-7b-hf"),
    ("LLaMA2-7B", "meta-llama/Llama-2-7b-hf"),
    ("Llama-2-7B", "meta-llama/Llama-2-7b-hf"),
    ("llama-2-7b", "meta-llama/Llama-2-7b-hf"),
    ("llama-7b", "meta-llama/Llama-2-7b-hf"),  # LLaMA-1 7B has Llama-2-7B's shape
    ("ChatGLM2-6B", "THUDM/chatglm3-6b"),  # ChatGLM3-6B reuses ChatGLM2-6B's architecture
    ("gemma-2-9b", "google/gemma-2-9b"),
)

# Models the catalog lacks: their Hugging Face config.json values (facts, with the repo).
_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "gpt_bigcode-santacoder": ("bigcode/gpt_bigcode-santacoder config.json", {
        "model_type": "gpt_bigcode", "n_embd": 2048, "n_head": 16, "n_layer": 24,
        "n_positions": 2048, "vocab_size": 49280, "multi_query": True}),
    "LLaMA 65B": ("huggyllama/llama-65b config.json", {
        "model_type": "llama", "hidden_size": 8192, "intermediate_size": 22016,
        "num_hidden_layers": 80, "num_attention_heads": 64, "vocab_size": 32000}),
    "33B": ("huggyllama/llama-30b config.json (the QLoRA paper's 33B)", {
        "model_type": "llama", "hidden_size": 6656, "intermediate_size": 17920,
        "num_hidden_layers": 60, "num_attention_heads": 52, "vocab_size": 32000}),
    "65B": ("huggyllama/llama-65b config.json", {
        "model_type": "llama", "hidden_size": 8192, "intermediate_size": 22016,
        "num_hidden_layers": 80, "num_attention_heads": 64, "vocab_size": 32000}),
    "bloomz-7b1": ("bigscience/bloomz-7b1 config.json", {
        "model_type": "bloom", "hidden_size": 4096, "n_layer": 30, "n_head": 32,
        "vocab_size": 250880}),
    "gemma-7b": ("google/gemma-7b config.json", {
        "model_type": "gemma", "hidden_size": 3072, "intermediate_size": 24576,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16,
        "head_dim": 256, "vocab_size": 256000}),
    "Falcon 40B": ("tiiuae/falcon-40b config.json", {
        "model_type": "falcon", "hidden_size": 8192, "num_attention_heads": 128,
        "num_kv_heads": 8, "num_hidden_layers": 60, "vocab_size": 65024,
        "new_decoder_architecture": True}),
}

# Every published run predates transformers 5: MoE experts were an nn.Linear each, which
# bitsandbytes quantized and PEFT adapted one by one.
PUBLISHED_STACK: dict[str, Any] = {"moe_experts": "separate"}


def reference_model(text: str) -> ModelInfo | None:
    """The shape a reference row's model name means, or None if vramest has none."""
    for needle, (origin, config) in _CONFIGS.items():
        if needle.lower() in text.lower() and not any(
                n.lower() in text.lower() for n, _ in _CATALOG_NAMES):
            shape = shape_from_config(config, needle, origin=origin)
            params = shape.param_count()
            return ModelInfo(name=needle, source="config", origin=origin, shape=shape,
                             params=params, active_params=shape.active_param_count())
    for needle, model_id in _CATALOG_NAMES:
        if needle.lower() in text.lower():
            entry = default_catalog().find(model_id)
            shape = entry.shape()
            return ModelInfo(name=entry.id, source="catalog", origin=entry.source, shape=shape,
                             params=shape.param_count(), active_params=shape.active_param_count())
    return None


def to_bytes(value: float, unit: str) -> float:
    """Units as published: bytes, MiB, MB, GiB, GB."""
    unit = unit.strip()
    for prefix, scale in (("bytes", 1), ("MiB", MIB), ("MB", 10**6), ("GiB", GIB), ("GB", 10**9)):
        if unit.startswith(prefix):
            return value * scale
    raise ValueError(f"unexpected unit {unit!r}")


def _counts_context(unit: str) -> bool:
    """nvidia-smi / NVML figures include the CUDA context; torch's allocator figures do not."""
    return "nvidia-smi" in unit or "NVML" in unit


# --- mapping a row to settings ---------------------------------------------------------------
@frozen
class Case:
    record_id: str
    model: ModelInfo
    settings: dict[str, Any]
    measured_bytes: float
    with_context: bool
    note: str


def _fms_case(row: dict[str, str]) -> Case | str:
    config = row["framework"].split("framework_config=")[-1].rstrip(")")
    if "foak" in config:
        return "fused Triton kernels (fms-acceleration foak: cross-entropy, RoPE, RMSNorm) are " \
               "not modelled"
    info = reference_model(row["model"])
    if info is None:
        return f"no shape for {row['model']}"
    method = row["method"]
    # fms-hf-tuning packs to min(max_seq_len, the model's max positions)
    seq = min(int(row["seq_len"]), info.shape.max_context or int(row["seq_len"]))
    settings: dict[str, Any] = dict(
        precision="bf16", seq=seq, micro_batch=int(row["micro_batch"]),
        grad_checkpointing=True, attention="flash", num_gpus=int(row["num_gpus"]),
        fsdp=int(row["num_gpus"]) > 1, lora_rank=int(row["lora_rank"] or 16), lora_dropout=True,
        lora_targets="qkv" if info.shape.fused_qkv else "q,k,v,o")
    if method.startswith("full"):
        settings["method"] = "full"
    elif "GPTQ" in method:
        settings.update(method="qlora", base_dtype="gptq-int4")
    elif method.startswith("qlora"):
        # the plugin's loader asks bitsandbytes for double quantization; with no_peft_model
        # (baseline-peft-bnb) TRL's SFTTrainer prepares the model: fp32 upcast, then embeddings
        # and head back to bf16; it skips both when FSDP shards the 4-bit weights
        # (fms_acceleration_peft/framework_plugin_bnb.py, trl SFTTrainer._prepare_peft_model)
        trl_prepares = config.startswith("baseline") and int(row["num_gpus"]) == 1
        settings.update(method="qlora", base_dtype="bnb-nf4-dq",
                        upcast_unquantized="trl" if trl_prepares else "none")
    else:
        settings["method"] = "lora"
    return Case(row["record_id"], info, settings, 0.0, False, f"fms {config}")


# torchtune v0.1 README table (Llama2-7B, batch 4, seq 2048): memory rows and their speed rows
_TORCHTUNE_V01 = {"TT-017": "qlora", "TT-019": "lora", "TT-021": "lora", "TT-020": "lora"}
# LLaMA-Factory's comparison of Hugging Face runs: memory and tokens per GPU per second
_LLAMA_FACTORY_HF = ("UNO-009", "UNO-011", "UNO-015", "LF-053", "UNO-008", "UNO-010", "UNO-014")


def measured_case(row: dict[str, str]) -> Case | str:
    """A [MEASURED] peak-memory row as settings, or the reason it cannot be expressed."""
    case = run_case(row)
    if isinstance(case, str):
        return case
    measured = to_bytes(float(row["value"]), row["unit"])
    return Case(case.record_id, case.model, case.settings, measured,
                _counts_context(row["unit"]), case.note)


def run_case(row: dict[str, str]) -> Case | str:
    """The settings of the run a [MEASURED] row comes from (its measured value left at 0), or
    the reason it cannot be expressed."""
    rid = row["record_id"]
    case: Case | str
    if row["framework"].startswith("fms-acceleration"):
        case = _fms_case(row)
    elif rid in _TORCHTUNE_V01:  # torchtune v0.1 table: Llama2-7B, batch 4, seq 2048
        case = Case(rid, reference_model(row["model"]), dict(  # type: ignore[arg-type]
            method=_TORCHTUNE_V01[rid], precision="bf16", seq=2048, micro_batch=4,
            grad_checkpointing=True, lora_rank=8, lora_targets="q,v",
            base_dtype="bnb-nf4-dq" if _TORCHTUNE_V01[rid] == "qlora" else "bf16",
            num_gpus=int(row["num_gpus"]),
            fsdp=int(row["num_gpus"]) > 1), 0.0, False,
            "torchtune llama2 7B_(q)lora configs: rank 8 on q,v, checkpointing on")
    elif rid == "TTO-003":  # torchtune's sweep, '+ Packed Dataset' row: nothing else switched on
        case = Case(rid, reference_model(row["model"]), dict(  # type: ignore[arg-type]
            method="full", precision="bf16", seq=4096, micro_batch=2), 0.0, False,
            "torchtune full_finetune_single_device, packed, bf16, AdamW")
    elif rid in _LLAMA_FACTORY_HF:
        qlora = row["method"] == "qlora"
        case = Case(rid, reference_model(row["model"]), dict(  # type: ignore[arg-type]
            method="qlora" if qlora else "lora", precision="bf16", seq=int(row["seq_len"]),
            micro_batch=int(row["micro_batch"]), grad_checkpointing=True,
            attention="flash" if "FA2" in row["framework"] else "sdpa",
            lora_rank=int(row["lora_rank"]), lora_targets="q,v,qkv"), 0.0, False,
            "LLaMA-Factory defaults: q,v (ChatGLM: query_key_value), checkpointing on")
    else:
        case = _unexpressed_reason(row)
    return case


def _unexpressed_reason(row: dict[str, str]) -> str:
    rid, model = row["record_id"], row["model"]
    if "bert" in model or "T0" in model or "mt0" in model:
        return "encoder or encoder-decoder model with a task head; vramest models decoder LMs"
    if rid.startswith("UNO-00") and not row["seq_len"]:
        return "batch, sequence length and rank not stated"
    if "Unsloth" in row["framework"]:
        return "Unsloth's custom kernels and offloaded checkpointing are not modelled"
    if rid.startswith("TTO-"):
        return "cumulative torchtune sweep row: compile, chunked cross-entropy, activation " \
               "offloading or optimizer-in-backward are switched on"
    if rid.startswith("TT-0") and rid < "TT-017":
        return "torchtune 2024 table: torch.compile, chunked cross-entropy and (full) " \
               "optimizer-in-backward with 8-bit paged AdamW are not modelled"
    if rid == "TT-018":
        return "torch.compile run ('**' in the torchtune table) is not modelled"
    if rid == "TT-022":
        return "two-GPU speed: per GPU or for both cards is not stated"
    if rid in ("TT-024", "TT-026"):
        return "torchtune full fine-tunes on 24 GB cards page AdamW states to the host " \
               "(speed bound by PCIe, not modelled)"
    if rid in ("TT-023", "TT-025", "TT-029"):
        return "torchtune full fine-tune runs fuse the optimizer step into backward"
    if "p-tuning" in row["method"]:
        return "prefix tuning (P-Tuning v2) is not a modelled method"
    if rid.startswith("PEFT-"):
        return "batch and sequence length not stated"
    return "batch or sequence length not stated (defaults of a config at an unknown version)"


# --- comparisons -----------------------------------------------------------------------------
@frozen
class Comparison:
    record_id: str
    predicted: float
    measured: float
    metric: str
    note: str

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1


def peak_comparisons(reference_dir: Path = DEFAULT_REFERENCE_DIR,
                     ) -> tuple[list[Comparison], list[tuple[str, str]]]:
    """Predicted vs published for every expressible [MEASURED] peak row; (id, reason) for the rest."""
    compared, skipped = [], []
    for row in read_rows(reference_dir / "training.csv"):
        if not row["notes"].startswith("[MEASURED]") or row["metric"] not in PEAK_METRICS:
            continue
        case = measured_case(row)
        if isinstance(case, str):
            skipped.append((row["record_id"], case))
            continue
        est = estimate_training(info=case.model, **{**PUBLISHED_STACK, **case.settings})
        predicted = est.total_bytes + (est.cuda_context_bytes if case.with_context else 0)
        compared.append(Comparison(case.record_id, predicted, case.measured_bytes,
                                   row["metric"] + (" +context" if case.with_context else ""),
                                   case.note))
    return compared, skipped


SPEED_METRIC = "tokens_per_s"


def speed_comparisons(reference_dir: Path = DEFAULT_REFERENCE_DIR,
                      ) -> tuple[list[Comparison], list[tuple[str, str]]]:
    """Predicted vs published training tokens/s per GPU for every expressible [MEASURED] row,
    on the row's GPU at the default flops_utilization; (id, reason) for the rest."""
    from vramest.hardware.database import load_hardware

    hardware = load_hardware(None)
    compared, skipped = [], []
    for row in read_rows(reference_dir / "training.csv"):
        if not row["notes"].startswith("[MEASURED]") or row["metric"] != SPEED_METRIC:
            continue
        case = run_case(row)
        if isinstance(case, str):
            skipped.append((row["record_id"], case))
            continue
        device = hardware.find(row["gpu"])
        est = estimate_training(info=case.model, gpu=device.name,
                                **{**PUBLISHED_STACK, **case.settings})
        assert est.throughput.tokens_per_s_per_gpu is not None
        compared.append(Comparison(case.record_id, est.throughput.tokens_per_s_per_gpu,
                                   float(row["value"]), f"{SPEED_METRIC} on {device.name}",
                                   case.note))
    return compared, skipped


# --- fits / OOM bounds -----------------------------------------------------------------------
@frozen
class BoundCheck:
    record_id: str
    expected_fit: bool
    predicted_fit: bool
    required_bytes: int
    capacity_bytes: int
    note: str

    @property
    def agrees(self) -> bool:
        return self.expected_fit == self.predicted_fit


_QLORA_PAPER = dict(method="qlora", base_dtype="bnb-nf4-dq", lora_rank=64,
                    lora_targets="all-linear", optimizer="paged-adamw", precision="bf16",
                    seq=512, micro_batch=1, grad_checkpointing=True)
# The blog's T4 table (HF blog "Making LLMs even more accessible with bitsandbytes, 4-bit
# quantization and QLoRA") names its benchmark gist, which is not stored. TRL's example script
# of the time (huggingface/trl@01d7738) cannot be it: it has no checkpointing, compute-dtype or
# nested-quantization switch and ignores its seq_length. So the adapters are inferred from the
# table itself: with PEFT's default Llama targets (q_proj, v_proj) the 13B NF4 run at 1024
# tokens would need 12.0 GB, 3 GB under the T4's limit, yet it ran out of memory while the same
# run with nested quantization (0.6 GB less) fitted. The recipe the blog announces, the QLoRA
# paper's r=64 on every linear layer, agrees with all ten 4-bit rows; batch 1 with 4
# accumulation steps and fp16 AMP are the blog's training notebook's; SFTTrainer ran
# prepare_model_for_int8_training (all that is not quantized in fp32); transformers 4.30 had
# only eager attention for Llama.
_T4_BLOG = dict(precision="mixed", seq=512, micro_batch=1, grad_accumulation=4,
                attention="eager", lora_rank=64, lora_targets="all-linear",
                upcast_unquantized=True)
_T4_BLOG_NOTE = "HF blog T4 runs (gist not stored): fp16 AMP, eager, QLoRA recipe r64 on all linear"
_PEFT_DEFAULT_TARGETS = "q,v"
# Settings each source states or implies (its paper, script or config), per bound row.
_BOUND_SETTINGS: dict[str, tuple[dict[str, Any], str]] = {
    # LLaMA-Factory's examples/extras/fsdp_qlora/sft.sh of the time: Llama-2-70B, q,v at its
    # default rank 8, cutoff 1024, batch 1 with 4 accumulation steps, fp16, 4-bit with its
    # default double quantization; its accelerate fsdp_config.yaml sets fsdp_offload_params
    "BND-002": (dict(method="qlora", base_dtype="bnb-nf4-dq", fsdp=True, num_gpus=2,
                     offload="params", precision="mixed", seq=1024, micro_batch=1,
                     grad_accumulation=4, grad_checkpointing=True, lora_rank=8,
                     lora_targets="q,v"),
                "LLaMA-Factory fsdp_qlora example: Llama-2-70B, seq 1024, LoRA r8 on q,v, "
                "parameters offloaded"),
    "BND-003": (dict(method="qlora", lora_rank=32, seq=512, micro_batch=1, precision="bf16",
                     grad_checkpointing=True, attention="flash", upcast_unquantized=True),
                "HF + PEFT QLoRA, shortest context tried"),
    "BND-004": (dict(method="qlora", lora_rank=32, seq=512, micro_batch=1, precision="bf16",
                     grad_checkpointing=True, attention="flash", upcast_unquantized=True),
                "HF + PEFT QLoRA, shortest context tried"),
    "BND-006": (_QLORA_PAPER, "QLoRA paper setup"),
    "BND-007": (_QLORA_PAPER, "QLoRA paper setup"),
    "BND-008": (_QLORA_PAPER, "QLoRA paper setup"),
    "BND-024": (dict(method="full", seq=128, micro_batch=8), "PEFT example, short tweets"),
}


# rows that name only a size: the model their source's own example trains
_BOUND_MODELS = {"BND-002": "meta-llama/Llama-2-70b-hf"}


def _bound_case(row: dict[str, str]) -> tuple[ModelInfo, dict[str, Any], str] | str:
    rid, method = row["record_id"], row["method"]
    info = reference_model(_BOUND_MODELS.get(rid, row["model"]))
    if info is None:
        return f"no decoder shape for {row['model']}"
    if rid in _BOUND_SETTINGS:
        settings, note = _BOUND_SETTINGS[rid]
        return info, dict(settings), note
    if row["framework"].startswith("TRL"):
        if "8-bit" in method:
            return "LLM.int8 training keeps extra int8/fp16 buffers in backward (not modelled)"
        gc = row["grad_checkpointing"] == "true"
        base = "bnb-nf4-dq" if "NQ" in method else "nf4"
        return info, dict(_T4_BLOG, method="qlora", base_dtype=base, seq=int(row["seq_len"]),
                          grad_checkpointing=gc, num_gpus=int(row["num_gpus"])), \
            _T4_BLOG_NOTE
    if row["framework"].startswith("LitGPT"):
        if int(row["num_gpus"]) > 1:
            return "LitGPT's multi-GPU strategy at that version (what it shards) is not stated"
        lora = method.startswith(("lora", "qlora"))
        settings = dict(
            method="qlora" if method.startswith("qlora") else ("lora" if lora else "full"),
            precision="bf16", micro_batch=int(row["micro_batch"] or 1),
            seq=int(row["seq_len"] or 1304), lora_rank=int(row["lora_rank"] or 8),
            lora_targets="q,v,qkv", num_gpus=int(row["num_gpus"]),
            fsdp=int(row["num_gpus"]) > 1,
            # lit-gpt's finetune/lora.py recomputes nothing; said outright, as a QLoRA run
            # without a framework is otherwise taken as PEFT's recipe (checkpointing on)
            grad_checkpointing=False)
        if "nf4-dq" in method:
            settings["base_dtype"] = "bnb-nf4-dq"
        return info, settings, "LitGPT: bf16-true, LoRA on query/value, Alpaca (longest 1304)"
    if "Megatron" in row["framework"]:
        return "Megatron-LM's in-place vocab-parallel cross-entropy is not transformers' loss"
    if "Unsloth" in row["framework"]:
        return "Unsloth's offloaded checkpointing and fused losses are not modelled"
    return "batch and sequence length not stated"


def bounds_checks(reference_dir: Path = DEFAULT_REFERENCE_DIR,
                  ) -> tuple[list[BoundCheck], list[tuple[str, str]]]:
    checks, skipped = [], []
    for row in read_rows(reference_dir / "training_bounds.csv"):
        case = _bound_case(row)
        if isinstance(case, str):
            skipped.append((row["record_id"], case))
            continue
        info, settings, note = case
        capacity = round(to_bytes(float(row["value"]), row["unit"]))
        # the card's capacity less the free share every fit keeps (placement.DEFAULT_RESERVE)
        usable = round(capacity * (1 - DEFAULT_RESERVE))
        est = estimate_training(info=info, gpu_memory=usable, **{**PUBLISHED_STACK, **settings})
        assert est.fit.fits is not None
        checks.append(BoundCheck(row["record_id"], row["metric"].startswith("fits"),
                                 est.fit.fits, est.fit.required_bytes, capacity, note))
    return checks, skipped


def _unexpressed_lines(skipped: list[tuple[str, str]]) -> list[str]:
    """The rows left out, grouped by reason, with a few ids of each."""
    by_reason: dict[str, list[str]] = {}
    for rid, reason in skipped:
        by_reason.setdefault(reason, []).append(rid)
    return [f"  not expressed: {len(skipped)} rows"] + [
        f"    {len(ids):>3} × {reason} ({', '.join(ids[:4])}{', ...' if len(ids) > 4 else ''})"
        for reason, ids in by_reason.items()]


# --- the report --------------------------------------------------------------------------------
def training_accuracy_report(reference_dir: Path | str | None = None) -> list[str]:
    """Lines for `make accuracy`: predicted vs published peaks, their errors, and the bounds."""
    ref = Path(reference_dir) if reference_dir else DEFAULT_REFERENCE_DIR
    compared, skipped = peak_comparisons(ref)
    lines = ["Training peak memory ([MEASURED] rows of training.csv; GB = 1e9 bytes)",
             f"  {'record':<9} {'predicted':>10} {'published':>10} {'error':>7}  metric / note"]
    for c in compared:
        lines.append(f"  {c.record_id:<9} {c.predicted / 1e9:>10.2f} {c.measured / 1e9:>10.2f} "
                     f"{c.error:>+7.1%}  {c.metric}; {c.note}")
    errors = [abs(c.error) for c in compared]
    if errors:
        lines.append(f"  {len(compared)} rows: median |error| {statistics.median(errors):.1%}, "
                     f"worst {max(errors):.1%}")
        for metric in sorted({c.metric for c in compared}):
            sub = [abs(c.error) for c in compared if c.metric == metric]
            lines.append(f"    {metric}: {len(sub)} rows, median {statistics.median(sub):.1%}, "
                         f"worst {max(sub):.1%}")
    lines += _unexpressed_lines(skipped)
    speeds, speed_skipped = speed_comparisons(ref)
    lines.append(f"Training speed ([MEASURED] tokens/s per GPU; flops_utilization "
                 f"{TRAINING_DEFAULTS.flops_utilization:g} of the datasheet bf16 FLOP/s)")
    lines.append(f"  {'record':<9} {'predicted':>10} {'published':>10} {'error':>7}  GPU / note")
    for c in speeds:
        lines.append(f"  {c.record_id:<9} {c.predicted:>10,.0f} {c.measured:>10,.0f} "
                     f"{c.error:>+7.1%}  {c.metric.removeprefix(SPEED_METRIC + ' on ')}; {c.note}")
    if speeds:
        speed_errors = [abs(c.error) for c in speeds]
        lines.append(f"  {len(speeds)} rows: median |error| {statistics.median(speed_errors):.1%}, "
                     f"worst {max(speed_errors):.1%}")
    lines += _unexpressed_lines(speed_skipped)
    checks, bound_skipped = bounds_checks(ref)
    agree = sum(c.agrees for c in checks)
    lines.append(f"Training fits/OOM bounds (training_bounds.csv): {agree}/{len(checks)} agree; "
                 f"CUDA context {TRAINING_DEFAULTS.cuda_context_bytes / GIB:g} GiB added")
    for check in checks:
        lines.append(f"  {check.record_id:<8} {'fits' if check.expected_fit else 'OOM ':<4} → predicted "
                     f"{'fits' if check.predicted_fit else 'OOM '} "
                     f"({check.required_bytes / 1e9:.1f} of {check.capacity_bytes / 1e9:.0f} GB)"
                     f"{'' if check.agrees else '  DISAGREES'}; {check.note}")
    for rid, reason in bound_skipped:
        lines.append(f"  {rid:<8} not expressed: {reason}")
    lines += _inferred_settings_lines(ref)
    return lines


def _inferred_settings_lines(reference_dir: Path) -> list[str]:
    """What the T4 blog rows need under the adapters the blog's table rules out (see _T4_BLOG)."""
    lines = [f"  HF blog T4 rows with PEFT's default Llama targets ({_PEFT_DEFAULT_TARGETS}) "
             "instead of every linear layer:"]
    for row in read_rows(reference_dir / "training_bounds.csv"):
        case = _bound_case(row)
        if isinstance(case, str) or case[2] != _T4_BLOG_NOTE:
            continue
        info, settings, _ = case
        usable = round(to_bytes(float(row["value"]), row["unit"]) * (1 - DEFAULT_RESERVE))
        est = estimate_training(info=info, gpu_memory=usable, **{
            **PUBLISHED_STACK, **settings, "lora_targets": _PEFT_DEFAULT_TARGETS})
        expected = row["metric"].startswith("fits")
        lines.append(f"    {row['record_id']:<8} {'fits' if expected else 'OOM '} → "
                     f"{'fits' if est.fit.fits else 'OOM '} ({est.fit.required_bytes / 1e9:.1f} GB)"
                     f"{'' if est.fit.fits == expected else '  would disagree'}")
    return lines
