"""Speculative decoding: the proposer's memory and the decode speed it gives at an acceptance
rate.

Each step a proposer drafts k tokens per sequence (a small draft model run k times, an EAGLE /
EAGLE-3 head, or a model's own multi-token-prediction layers); the target verifies the k + 1
positions in one forward and keeps the longest accepted prefix plus one token of its own. With
each drafted token accepted independently with probability α, a step emits on average

    E = (1 − α^(k+1)) / (1 − α)     (k + 1 at α = 1)

tokens (Leviathan, Kalman & Matias 2023, "Fast Inference from Transformers via Speculative
Decoding", eq. 1). A step costs one target forward over k + 1 tokens per sequence (the weights
read once, the KV cache read once, k + 1 times the FLOPs) plus k proposer forwards of one token
per sequence, so the decode speed is E / (T_verify + k · T_draft): at α → 0 slower than without
speculation, at α → 1 up to k + 1 tokens per step.

Memory (vLLM `--speculative-config`, llama.cpp `-md`): a draft model's weights and its own KV
cache for every token; an EAGLE head is one decoder layer of the target's shape plus a fusion
layer (fc: 2·hidden → hidden), sharing the target's embedding and lm_head (vLLM
v1/spec_decode/eagle.py `load_model` shares them when their shapes match); EAGLE-3 takes three
hidden states (fc: 3·hidden → hidden), its attention reads 2·hidden (the embedding beside the
fused state), and it has its own lm_head over a smaller draft vocabulary (32,000 in
yuhuili/EAGLE3-LLaMA3.1-Instruct-8B's config, draft_vocab_size); an MTP module
(DeepSeek-V3, GLM-4.5, Qwen3-Next) is one decoder layer like the target's last plus an eh_proj
(2·hidden → hidden), sharing embedding and head. Each proposer layer keeps KV in the same
cache as the target (vLLM adds its attention layers to the KV cache spec), so every cached
token costs the draft's KV bytes too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from functools import lru_cache

from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.model.shapes import LAYER_FULL, ModelShape, TensorSpec

if TYPE_CHECKING:
    from typing import Any

METHODS = ("draft", "eagle", "eagle3", "mtp")
MAX_SPECULATIVE_TOKENS = 64
# yuhuili/EAGLE3-LLaMA3.1-Instruct-8B config.json "draft_vocab_size": 32000 (the EAGLE-3
# training script's default, SafeAILab/EAGLE)
EAGLE3_DRAFT_VOCAB = 32000


@frozen
class Speculation:
    """A proposer and its acceptance: `method` one of METHODS, `draft` the draft model's name
    (method "draft"), `k` drafted tokens per step, `alpha` the per-token acceptance rate."""

    method: str
    k: int
    alpha: float
    draft: str | None = None
    layers: int = 1  # MTP: the checkpoint's num_nextn_predict_layers

    @property
    def tokens_per_step(self) -> float:
        return expected_tokens(self.alpha, self.k)

    def to_json(self) -> dict[str, object]:
        return {"method": self.method, "draft_model": self.draft,
                "num_speculative_tokens": self.k, "acceptance_rate": self.alpha,
                "tokens_per_step": round(self.tokens_per_step, 4),
                "draft_acceptance_rate": round((self.tokens_per_step - 1) / self.k, 4)}


def expected_tokens(alpha: float, k: int) -> float:
    """Leviathan et al. 2023 eq. 1: tokens a step emits for k drafts at acceptance α."""
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def alpha_for_length(length: float, k: int) -> float:
    """The α whose expected tokens per step is `length` (a published mean acceptance length,
    bonus token included), by bisection: expected_tokens rises with α."""
    if not 1.0 <= length <= k + 1:
        raise InputError(f"A mean acceptance length of {length:g} is outside 1 to {k + 1} for "
                         f"{k} speculative tokens.")
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if expected_tokens(mid, k) < length else (low, mid)
    return (low + high) / 2


def speculation(method: object, k: object = None, alpha: object = None) -> Speculation | None:
    """The settings checked (None without --speculative). `method` is a method name or, for a
    draft model, its name (a catalog name or path)."""
    if method is None:
        if k is not None or alpha is not None:
            raise InputError("--num-speculative-tokens and --acceptance-rate need --speculative "
                             f"({', '.join(METHODS[1:])} or a draft model's name).")
        return None
    if not isinstance(method, str) or not method.strip():
        raise InputError(f"--speculative {short(method)} is not understood; give eagle, eagle3, "
                         "mtp or a draft model's name.")
    name = method.strip()
    kind = name.lower() if name.lower() in METHODS[1:] else "draft"
    tokens = 1 if kind == "mtp" else 3  # vLLM examples; MTP models ship one MTP layer
    if k is not None:
        tokens = _count(k)
    if alpha is None:
        raise InputError("--speculative needs --acceptance-rate: the probability that the target "
                         "accepts a drafted token (0 to 1); vLLM logs the mean acceptance length "
                         "it measured.")
    rate = _rate(alpha)
    return Speculation(kind, tokens, rate, name if kind == "draft" else None)


def _count(value: object) -> int:
    number = -1
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if not 1 <= number <= MAX_SPECULATIVE_TOKENS:
        raise InputError(f"--num-speculative-tokens {short(value)} is not a whole number from 1 "
                         f"to {MAX_SPECULATIVE_TOKENS}.")
    return number


def _rate(value: object) -> float:
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            number = float(value)
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise InputError(f"--acceptance-rate {short(value)} is not a probability; give a number "
                         "from 0 to 1 (such as 0.7).")
    return number


def mtp_layers(config: Mapping[str, Any], name: str) -> int:
    """The MTP layers a checkpoint ships (config `num_nextn_predict_layers`), or one sentence
    when it ships none."""
    layers = config.get("num_nextn_predict_layers") or config.get("mtp_num_hidden_layers") or 0
    if not isinstance(layers, int) or layers < 1:
        raise InputError(f"--speculative mtp needs a model whose checkpoint ships "
                         f"multi-token-prediction layers (num_nextn_predict_layers); {name} "
                         "has none: use eagle, eagle3 or a draft model's name.")
    return layers


@lru_cache(maxsize=256)
def head_shape(target: ModelShape, method: str, layers: int = 1) -> ModelShape:
    """An EAGLE / EAGLE-3 head or an MTP module as a one-layer model: the target's last layer
    kind, the fusion matrix as an extra tensor, and the lm_head it reads as a tied embedding
    (its own draft vocabulary for EAGLE-3)."""
    h = target.hidden_size
    last = target.num_layers - 1
    extra = [TensorSpec("ffn_up", None, h, (3 if method == "eagle3" else 2) * h)]
    if method == "eagle3" and not target.is_mla:  # q, k, v read [embedding; fused state]
        q_out = target.num_heads * target.head_dim
        extra.append(TensorSpec("attn_q", None, q_out + 2 * target.num_kv_heads * target.head_dim,
                                h))
    return replace(
        target, name=f"{target.name} {method} head", num_layers=layers,
        layer_kinds=(LAYER_FULL,) * layers if target.layer_kinds else (),
        moe_layers=(target.is_moe_layer(last),) * layers if target.moe_layers else (),
        explicit_layers=(target.explicit_layers[last],) * layers if target.explicit_layers
        else (),
        explicit_global=(), tie_embeddings=True, position_embeddings=0, extra_params=0,
        vocab_size=EAGLE3_DRAFT_VOCAB if method == "eagle3" else target.vocab_size,
        extra_tensors=tuple(extra), state_layers=0, encoder_layers=0)


def shares_embedding(method: str) -> bool:
    """Whether the proposer's embedding table is the target's (not counted again): the heads'
    and MTP's are; EAGLE-3's tied "embedding" here is its own draft lm_head."""
    return method in ("eagle", "mtp")


def spec_formula(spec: Speculation) -> str:
    e = spec.tokens_per_step
    return (f"Speculative decoding ({spec.method}{': ' + spec.draft if spec.draft else ''}): "
            f"E = (1 − α^(k+1)) / (1 − α) = (1 − {spec.alpha:g}^{spec.k + 1}) / "
            f"(1 − {spec.alpha:g}) = {e:.2f} tokens per target step (Leviathan et al. 2023); "
            f"decode tokens/s = E / (T_verify(k+1 tokens) + k × T_draft)")
