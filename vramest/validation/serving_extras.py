"""LoRA slots and speculative decoding against the published rows of serving_extras.csv."""

from __future__ import annotations

import csv
from pathlib import Path

from vramest.frozen import frozen
from vramest.validation.accuracy import DEFAULT_REFERENCE_DIR


@frozen
class ExtrasComparison:
    id: str
    quantity: str
    published: float
    estimate: float
    note: str  # how the estimate was made, or why a row is a bound rather than a point

    @property
    def error(self) -> float:
        return self.estimate / self.published - 1 if self.published else 0.0


def _rows(reference: Path) -> dict[str, dict[str, str]]:
    with (reference / "serving_extras.csv").open(newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def comparisons(reference: Path = DEFAULT_REFERENCE_DIR) -> list[ExtrasComparison]:
    from vramest.inference.lora import adapter_elements, lora_serving
    from vramest.inference.serving_extras import ServingExtras
    from vramest.inference.speculative import Speculation, alpha_for_length
    from vramest.model.shapes import ModelShape
    from vramest.serving.api import serving

    rows = _rows(reference)
    out = []
    qwen = ModelShape(name="Qwen1.5-7B", family="qwen", num_layers=32, hidden_size=4096,
                      num_heads=32, num_kv_heads=32, head_dim=128, intermediate_size=11008,
                      vocab_size=151936)
    row = rows["trtllm-qwen15-7b-lora-r8-size"]
    out.append(ExtrasComparison(row["id"], "adapter elements", float(row["published"]),
                                adapter_elements(qwen, 8), "rank 8 on the 7 linear modules"))

    from vramest.api import estimate
    from vramest.inference.speculative import speculation

    row = rows["deepseek-v3-mtp-params"]
    mtp = estimate(model="deepseek-v3", speculation=speculation("mtp", 1, 0.8))
    out.append(ExtrasComparison(row["id"], "MTP module params", float(row["published"]),
                                mtp.to_json()["speculative"]["proposer_params"],
                                "one MoE layer like the last + eh_proj (2·hidden → hidden)"))

    run = {"model": "deepseek-v3", "gpu": "h200", "num_gpus": 8, "input_len": 1024,
           "output_len": 512, "concurrency": 8}
    base = serving(**run).tokens_per_s_per_user  # type: ignore[arg-type]
    spec = serving(**run, extras=ServingExtras(  # type: ignore[arg-type]
        speculation=Speculation("mtp", 1, 0.875))).tokens_per_s_per_user
    row = rows["deepseek-v3-mtp-speedup"]
    out.append(ExtrasComparison(row["id"], "MTP speedup", float(row["published"]),
                                spec / base, "k = 1 at α = 0.875 (the middle of 85-90%), 8 "
                                "requests on 8 H200 (the deployment is not published)"))

    run = {"model": "llama-3.1-8b", "gpu": "h100", "engine": "sglang", "input_len": 128,
           "output_len": 512, "concurrency": 1}
    base = serving(**run).tokens_per_s_per_user  # type: ignore[arg-type]
    length = float(rows["vllm-eagle3-llama31-8b-acceptance"]["published"])
    alpha = alpha_for_length(length, 7)
    spec = serving(**run, extras=ServingExtras(  # type: ignore[arg-type]
        speculation=Speculation("eagle3", 5, alpha))).tokens_per_s_per_user
    row = rows["sglang-llama31-8b-eagle3-h100"]
    out.append(ExtrasComparison(row["id"], "EAGLE-3 speedup", float(row["published"]),
                                spec / base, f"chain k = 5 at α = {alpha:.3f} (mean acceptance "
                                f"length {length:g} of 7 under vLLM)"))

    run = {"model": "meta-llama/Llama-2-7b-hf", "gpu": "a100-80gb", "input_len": 220,
           "output_len": 200}
    base = serving(**run).state.output_tokens_per_s  # type: ignore[arg-type]
    lora = serving(**run, extras=ServingExtras(  # type: ignore[arg-type]
        lora=lora_serving(1, 8))).state.output_tokens_per_s
    row = rows["vllm-v0-llama2-7b-lora-throughput"]
    out.append(ExtrasComparison(row["id"], "LoRA / base tokens/s", float(row["published"]),
                                lora / base, "roofline: adapter reads and FLOPs only (a lower "
                                "bound of the cost; V0's kernels cost more)"))
    return out


def report_lines(reference: Path = DEFAULT_REFERENCE_DIR) -> list[str]:
    lines = [f"  {'row':42} {'quantity':22} {'published':>12} {'estimate':>12} {'error':>7}"]
    for c in comparisons(reference):
        lines.append(f"  {c.id:42} {c.quantity:22} {c.published:12,.4g} {c.estimate:12,.4g} "
                     f"{c.error:+7.1%}  {c.note}")
    return lines
