"""The LoRA and speculative-decoding flags `estimate` and `serving` share, named as vLLM's."""

from __future__ import annotations

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from typing import Any


def add_extras_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LoRA adapters and speculative decoding (vLLM's names)")
    g.add_argument("--max-loras", help="LoRA adapters served at once (vLLM --enable-lora "
                   "--max-loras; each gets a GPU slot of every linear layer)")
    g.add_argument("--max-lora-rank", "--lora-rank", dest="max_lora_rank",
                   help="the largest adapter rank, which every slot is sized for: 1 8 16 32 64 "
                   "128 256 320 512 (vLLM's default 16)")
    g.add_argument("--max-cpu-loras", help="adapters cached in host memory (default --max-loras)")
    g.add_argument("--speculative", metavar="DRAFT|eagle|eagle3|mtp",
                   help="speculative decoding: a draft model's name, an EAGLE / EAGLE-3 head or "
                   "the model's MTP layers")
    g.add_argument("--num-speculative-tokens", help="tokens drafted per step (default 3; MTP 1)")
    g.add_argument("--acceptance-rate", help="probability a drafted token is accepted, 0 to 1")


def extras_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """`lora` and `speculation` for the API from the parsed flags (absent flags: None)."""
    def get(name: str) -> Any:
        return getattr(args, name, None)

    if all(get(n) is None for n in ("max_loras", "max_lora_rank", "max_cpu_loras",
                                    "speculative", "num_speculative_tokens", "acceptance_rate")):
        return {"lora": None, "speculation": None}  # without importing either module
    from vramest.inference.lora import lora_serving
    from vramest.inference.speculative import speculation

    return {"lora": lora_serving(get("max_loras"), get("max_lora_rank"), get("max_cpu_loras")),
            "speculation": speculation(get("speculative"), get("num_speculative_tokens"),
                                       get("acceptance_rate"))}
