"""vLLM's pipeline stages (--pipeline-parallel-size) as it lays them out and sizes their KV.

Each stage builds only its own decoder layers (vllm/distributed/utils.py get_pp_indices via
make_layers), the first stage the input embedding and the last the final norm and lm_head
(a tied lm_head keeps the embedding on the last stage too: models/llama.py builds embed_tokens
"if get_pp_group().is_first_rank or (config.tie_word_embeddings and
get_pp_group().is_last_rank)"). Only the last stage samples, so only its profile holds the
logits. Every worker profiles its own stage, and the engine keeps the fewest blocks any worker
has (V0 executor: min of num_gpu_blocks over workers, noted in the review of PR #6115;
V1 kv_cache_utils: the same number of blocks on every worker): the fullest stage binds
("the current PP kv-cache capacity is limited by the smallest one of all PP stages, and this
is usually the first or the last stage because of embedding and LM head", PR #6920).

How the layers split when the stages do not divide them:
  PR #6115 (merged 2024-07-03, 0.5.1) until 0.7.3: every stage num_layers // pp, the last
      stage the remainder too (sglang's copy of that rule gave DeepSeek-R1 at PP 8
      "[7, 7, 7, 7, 7, 7, 7, 12]", sglang PR #6666);
  PR #13839 (merged 2025-02-25, first in 0.8.0): the remainder one layer each over the stages
      before the last, from the second-to-last backwards (DeepSeek-V3.1 at PP 4
      "[15,15,16,15]", vLLM PR #46217).
"""

from __future__ import annotations

from vramest.frozen import frozen
from vramest.inference.engines.versions import Release
from vramest.inference.memory import layer_weight_bytes, weight_bytes_by_group
from vramest.model.precisions import WeightFormat
from vramest.model.shapes import LAYER_FULL, LAYER_SLIDING, ModelShape

REMAINDER_BEFORE_LAST_SINCE = Release((0, 8))  # PR #13839


def stage_layer_counts(num_layers: int, pp: int, release: Release) -> tuple[int, ...]:
    """Decoder layers per stage, first to last, as vLLM's get_pp_indices splits them."""
    base, rest = divmod(num_layers, pp)
    counts = [base] * pp
    if release >= REMAINDER_BEFORE_LAST_SINCE:
        for i in range(2, rest + 2):
            counts[-i] += 1
    else:
        counts[-1] += rest
    return tuple(counts)


@frozen
class Stage:
    index: int
    layers: int
    # this stage's weights less an even split's (blocks / pp + the larger vocabulary table),
    # per GPU: what it adds to (or takes from) the evenly split figure
    weights_delta: float
    kv_fraction: float  # this stage's share of the model's KV layers
    samples: bool  # the last stage: the profile's logits and sampler are here


def stages(shape: ModelShape, fmt: WeightFormat, pp: int, tp: int, experts_tp: int,
           release: Release, *, scale: float = 1.0, pooling: bool = False,
           kinds: tuple[str, ...] = ()) -> tuple[Stage, ...]:
    """The pipeline stages of one replica: each one's weights against the even split, its KV
    layers and whether it samples. `shape` is the checkpoint's; `scale` carries exact stored
    bytes over the modelled ones; `experts_tp` is the GPUs the experts split over (tp x
    data-parallel engines); a pooling model loads no lm_head (vllm_pooling.py); `kinds`: the
    served layers' kinds, when they differ from the checkpoint's."""
    counts = stage_layer_counts(shape.num_layers, pp, release)
    per_layer = layer_weight_bytes(shape, fmt)
    groups = weight_bytes_by_group(shape, fmt)
    head = 0.0 if pooling else groups["lm_head"]
    # the even split, as startup.vllm_startup has it before the stages are told apart
    even = ((groups["layers"] / tp + groups["experts"] / experts_tp) / pp
            + max(groups["embedding"], groups["lm_head"]) / tp
            - (groups["lm_head"] - head) / (tp * pp))
    kv_layers = [k in (LAYER_FULL, LAYER_SLIDING) for k in (kinds or shape.kinds())]
    total_kv = sum(kv_layers) or 1
    out = []
    start = 0
    for i, n in enumerate(counts):
        mine = range(start, start + n)
        start += n
        held = sum(per_layer[j][1] / tp + per_layer[j][0] / experts_tp for j in mine)
        last = i == pp - 1
        if i == 0 or (last and shape.tie_embeddings and not pooling):
            held += groups["embedding"] / tp
        if last:
            held += head / tp
        out.append(Stage(i, n, (held - even) * scale, sum(kv_layers[j] for j in mine) / total_kv,
                         last))
    return tuple(out)


@frozen
class Binding:
    """The stage whose KV blocks are fewest, with its own figures per GPU."""

    stage: Stage
    weights_bytes: int
    activation_bytes: int
    kv_bytes_per_token: float  # its layers' KV per token, per GPU
    stage_weights_bytes: tuple[int, ...]  # every stage's weights per GPU, first to last
    stage_layers: tuple[int, ...]  # every stage's decoder layers, first to last

    def note(self, count: int) -> str:
        layers = "/".join(str(n) for n in self.stage_layers)
        each = ", ".join(f"{w / 2**30:.2f}" for w in self.stage_weights_bytes)
        return (f"Pipeline stages hold {layers} of the {count} layers (vllm/distributed/utils.py "
                f"get_pp_indices); weights per GPU by stage {each} GiB; stage "
                f"{self.stage.index} has the fewest KV blocks, and vLLM gives every stage that "
                "many: the figures above are that stage's.")


def binding_stage(all_stages: tuple[Stage, ...], *, budget: int, weights: int, activation: int,
                  sampler: int, fixed: int, kv_token_gpu: float, block_size: int) -> Binding:
    """The stage that binds the KV cache: each stage has the budget less its weights, its
    profile's peak (the sampler only on the last) and `fixed` (non-torch, graphs);
    `kv_token_gpu` is the whole model's KV per token per GPU of one stage's TP group."""
    def blocks(s: Stage) -> float:
        block = kv_token_gpu * s.kv_fraction * block_size
        room = budget - (weights + s.weights_delta) - own_activation(s) - fixed
        return room // block if block else float("inf")

    def own_activation(s: Stage) -> int:
        return activation if s.samples else activation - sampler

    chosen = min(all_stages, key=blocks)
    return Binding(chosen, round(weights + chosen.weights_delta), own_activation(chosen),
                   kv_token_gpu * chosen.kv_fraction,
                   tuple(round(weights + s.weights_delta) for s in all_stages),
                   tuple(s.layers for s in all_stages))
