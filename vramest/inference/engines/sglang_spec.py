"""SGLang's speculative decoding at start-up (`--speculative-algorithm EAGLE|EAGLE3|NEXTN|MTP|
STANDALONE`): where the draft's weights and its KV pool come from.

The draft (an EAGLE / EAGLE-3 head, the checkpoint's own MTP layers, or a whole draft model
for STANDALONE) is the proposer of `vramest/inference/speculative.py`, one formula for its
weights and KV. SGLang keeps a KV pool for the draft with as many tokens as the target's, each
token costing the draft's layers (sglang/srt/model_executor/model_runner.py init_memory_pool at
v0.4.9.post6: the draft worker's max_total_num_tokens = draft_runner_cache_size).

Until 0.5.13 the target profiles its pool before the draft exists, so the draft's weights, its
KV pool and the target's extra tokens
    draft_runner_cache_size = max_total_num_tokens + reqs × (steps × topk + draft_tokens) + 100
all come out of the reserved share total × (1 − mem_fraction_static) (sgl-project/sglang issue
#6875; the default fraction leaves 2 GiB more for it, 4 GiB from 0.5.10, server_args.py).
From 0.5.14 (PR #23862) both weights are loaded before the profile and the per-token cell is
scaled by (target layers + draft layers) / target layers (pool_configurator.py at v0.5.14), so
the draft is inside the static share and its weights can refuse the start.

An EAGLE / MTP draft is built with its own bf16 embed_tokens and lm_head (an EAGLE-3 draft with
its own embedding), never loaded, and only freed when set_embed_and_head hands it the target's:
before 0.5.14 they are resident while the draft's pool is allocated (eagle_worker.py at
v0.4.9.post6: super().__init__ then set_embed_and_head), and from 0.5.14 while the pool is
profiled (sgl-project/sglang issue #36452, PR #32468: "Load weight end. type=Qwen3_5ForCausalLMMTP
... mem usage=2.57 GB", of which 124,160 x 5,120 x 2 B twice are the two placeholders at TP 2).
"""

from __future__ import annotations

from collections.abc import Mapping

from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING, frozen
from vramest.inference.engines import registry

if TYPE_CHECKING:
    from vramest.inference.estimate import Estimate

SRC = "sgl-project/sglang@v0.4.9.post6:python/sglang/srt/"
ALGORITHMS = ("EAGLE", "EAGLE3", "NEXTN", "MTP", "STANDALONE")
# server_args.py auto_choose_speculative_params (v0.4.9.post6): (steps, topk, draft tokens)
DEEPSEEK_DEFAULTS = (3, 1, 4)  # DeepseekV3ForCausalLM, DeepseekV2ForCausalLM
OTHER_DEFAULTS = (5, 4, 8)  # Llama and every other architecture
DEEPSEEK_ARCHS = ("DeepseekV3ForCausalLM", "DeepseekV2ForCausalLM")
# server_args.py (v0.4.9.post6): "if self.max_running_requests is None:
# self.max_running_requests = 48" under EAGLE / EAGLE3
MAX_RUNNING_REQUESTS = 48
BF16_BYTES = 2
POOL_BUFFER_TOKENS = 100  # model_runner.py init_memory_pool: draft_runner_cache_size "+ 100"
BUDGETED_SINCE = (0, 5, 14)  # PR #23862: draft weights and KV inside mem_fraction_static
# the default mem_fraction_static's extra reservation for a draft, MiB (server_args.py):
# 2 GiB for EAGLE from v0.4.8 (6 GiB for STANDALONE from v0.5.2), 4 GiB for EAGLE in
# v0.5.10-v0.5.13, none from v0.5.14 (the draft is budgeted)
RESERVE_EAGLE_MIB = 2 * 1024
RESERVE_EAGLE_MIB_0510 = 4 * 1024
RESERVE_STANDALONE_MIB = 6 * 1024


@frozen
class SpecOptions:
    algorithm: str  # EAGLE, EAGLE3 or STANDALONE (NEXTN and MTP run as EAGLE)
    steps: int
    topk: int
    draft_tokens: int
    draft_model: str | None = None
    mtp: bool = False  # the checkpoint's own next-token layers draft (no separate head)


@frozen
class DraftMemory:
    """What the draft holds on each GPU, and whether SGLang budgets it in the static share."""

    weights_bytes: int
    kv_bytes_per_token: float
    extra_tokens: int  # draft_runner_cache_size beyond the profiled pool (before 0.5.14)
    budgeted: bool
    method: str  # the proposer as speculative.py names it
    placeholder_bytes: int = 0  # the draft's own bf16 embedding / head until it shares the target's

    def out_of_reserve(self, pool_tokens: int, target_cell: float) -> int:
        """Bytes the draft takes from the reserved share once the target pool holds
        `pool_tokens` (0 when the draft is inside the static share)."""
        if self.budgeted:
            return 0
        return round(self.weights_bytes + (pool_tokens + self.extra_tokens) * self.kv_bytes_per_token
                     + self.extra_tokens * target_cell)


PARSERS = {
    "speculative_algorithm": registry.text,
    "speculative_num_steps": lambda v, w: registry.whole(v, w, 64),
    "speculative_eagle_topk": lambda v, w: registry.whole(v, w, 64),
    "speculative_num_draft_tokens": lambda v, w: registry.whole(v, w, 1024),
    "speculative_draft_model_path": lambda v, w: _path(v, w),
}


def _path(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what} {short(value)} is not a model name or path.")
    return value.strip()


def spec_options(options: Mapping[str, object], config: Mapping[str, object]) -> SpecOptions | None:
    """SGLang's speculative settings with its defaults filled in (server_args.py
    __post_init__ at v0.4.9.post6), or None without --speculative-algorithm."""
    raw = options.get("speculative_algorithm")
    given = [k for k in PARSERS if k != "speculative_algorithm" and k in options]
    if raw is None:
        if given:
            raise InputError(f"{', '.join(given)} need speculative_algorithm (one of "
                             f"{', '.join(ALGORITHMS)}).")
        return None
    algorithm = str(raw).upper()
    if algorithm not in ALGORITHMS:
        raise InputError(f"speculative_algorithm {raw} is not one vramest models; accepted: "
                         f"{', '.join(ALGORITHMS)}.")
    draft = options.get("speculative_draft_model_path")
    draft = str(draft) if draft else None
    arch = (config.get("architectures") or [""])[0]  # type: ignore[index]
    nextn = nextn_layers(config)
    # NEXTN shares EAGLE's implementation; DeepSeek-V3/R1 and GLM-4.5 draft with their own
    # MTP layers when no draft path is given (server_args.py: "Auto set draft_model_path")
    mtp = algorithm in ("NEXTN", "MTP") or (algorithm == "EAGLE" and nextn > 0 and draft is None)
    if mtp and not nextn:
        raise InputError(f"speculative_algorithm {algorithm} drafts with the checkpoint's "
                         "multi-token-prediction layers, and this model ships none "
                         "(num_nextn_predict_layers); use EAGLE or EAGLE3 with a draft model path.")
    if algorithm == "STANDALONE" and draft is None:
        raise InputError("speculative_algorithm STANDALONE needs speculative_draft_model_path "
                         "(the draft model).")
    steps, topk, tokens = DEEPSEEK_DEFAULTS if arch in DEEPSEEK_ARCHS else OTHER_DEFAULTS
    if "speculative_num_steps" in options:
        steps = int(options["speculative_num_steps"])  # type: ignore[call-overload]
        topk = int(options.get("speculative_eagle_topk", 1))  # type: ignore[call-overload]
        tokens = int(options.get("speculative_num_draft_tokens", steps + 1))  # type: ignore[call-overload]
    if topk == 1:  # "speculative_num_draft_tokens is adjusted to speculative_num_steps + 1"
        tokens = steps + 1
    name = "STANDALONE" if algorithm == "STANDALONE" else (
        "EAGLE3" if algorithm == "EAGLE3" else "EAGLE")
    return SpecOptions(name, steps, topk, tokens, draft, mtp)


def with_flags(options: Mapping[str, object], flags: object) -> Mapping[str, object]:
    """The engine options, with `--speculative METHOD --num-speculative-tokens K` (the
    estimate's own flags, vLLM's names) as SGLang spells them when no engine option says
    otherwise: a chain of K draft steps (topk 1)."""
    if "speculative_algorithm" in options or not isinstance(flags, Mapping):
        return options
    method = str(flags.get("method"))
    algorithm = {"eagle": "EAGLE", "eagle3": "EAGLE3", "mtp": "NEXTN"}.get(method, "STANDALONE")
    out = {**options, "speculative_algorithm": algorithm,
           "speculative_num_steps": int(flags.get("num_speculative_tokens") or 1),
           "speculative_eagle_topk": 1}
    if algorithm == "STANDALONE" and flags.get("draft_model"):
        out["speculative_draft_model_path"] = str(flags["draft_model"])
    return out


def nextn_layers(config: Mapping[str, object]) -> int:
    """The MTP layers a checkpoint ships (DeepSeek / GLM: num_nextn_predict_layers; Qwen3.5:
    mtp_num_hidden_layers, in text_config for the multimodal configs), 0 when none."""
    text = config.get("text_config")
    for source in (config, text if isinstance(text, Mapping) else {}):
        for key in ("num_nextn_predict_layers", "mtp_num_hidden_layers"):
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return 0


def reserve_mib(spec: SpecOptions | None, version: tuple[int, ...] | None) -> float:
    """What the default mem_fraction_static keeps back for the draft (server_args.py)."""
    if spec is None or (version is not None and version >= BUDGETED_SINCE):
        return 0.0
    if spec.algorithm == "STANDALONE":
        return RESERVE_STANDALONE_MIB
    if version is not None and version >= (0, 5, 10):
        return RESERVE_EAGLE_MIB_0510
    return RESERVE_EAGLE_MIB


def draft_memory(spec: SpecOptions, est: Estimate, tp: int, kv_bytes: float, reqs: int,
                 version: tuple[int, ...] | None) -> DraftMemory:
    """The draft's weights on each GPU and its KV bytes per pooled token on each GPU, from
    speculative.py's proposer (EAGLE head, EAGLE-3 head, MTP layers or a draft model)."""
    from vramest.inference.engines.startup import _kv_share
    from vramest.inference.serving_extras import proposer
    from vramest.inference.speculative import Speculation

    method = "mtp" if spec.mtp else {"EAGLE3": "eagle3", "STANDALONE": "draft"}.get(
        spec.algorithm, "eagle")
    if method == "eagle" and spec.draft_model:
        from vramest.model.resolve import catalog_name

        if catalog_name(spec.draft_model) is not None:  # a whole model of the catalog drafts
            method = "draft"
    shape = est.model.shape
    layers = 1
    if method == "mtp":
        layers = nextn_layers(registry.catalog_config(est)) or 1
    prop = proposer(shape, est.settings.dtype,
                    Speculation(method, spec.draft_tokens, 0.0,
                                spec.draft_model if method == "draft" else None, layers))
    per_token = prop.kv_elements_per_token * kv_bytes * _kv_share(prop.shape, tp)
    budgeted = version is not None and version >= BUDGETED_SINCE
    extra = 0 if budgeted else reqs * (spec.steps * spec.topk + spec.draft_tokens) \
        + POOL_BUFFER_TOKENS
    # VocabParallelEmbedding / ParallelLMHead: the vocabulary split over the TP ranks, bf16
    tables = {"eagle": 2, "mtp": 2, "eagle3": 1}.get(method, 0)
    placeholders = tables * -(-shape.vocab_size // tp) * shape.hidden_size * BF16_BYTES
    return DraftMemory(round(prop.weights_bytes / tp), per_token, extra, budgeted, method,
                       placeholders)
