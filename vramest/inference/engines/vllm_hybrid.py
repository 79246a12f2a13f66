"""vLLM V1's KV cache for models with recurrent state (Mamba, Mamba-2, gated DeltaNet): one
block pool shared by the attention layers' KV blocks and the state layers' states.

The rules, from vLLM's source:

- A state layer's page is one whole state of one request: conv window + SSM state, each
  `prod(shape) × dtype size` (vllm/v1/kv_cache_interface.py MambaSpec.page_size_bytes). The
  conv state is kept in the model dtype (mamba_cache_dtype "auto"), the SSM state in the conv
  state's dtype (mamba_ssm_cache_dtype "auto", vllm/model_executor/layers/mamba/mamba_utils.py),
  except Nemotron-H and Qwen3.5, whose config's SSM dtype vLLM follows (CONFIG_SSM_DTYPE).
  Under tensor parallelism each rank holds heads / TP of both (MambaStateShapeCalculator
  divides by tp_world_size).
- Attention and state pages must be the same size, so the attention block grows to hold a
  state: block = 16 × cdiv(state page, 16 × attention bytes per token), and the state page is
  padded up to that attention page (vllm/model_executor/models/config.py
  HybridAttentionMambaModelConfig.verify_and_update_config @0144dd5b, "Setting attention block
  size to %d tokens", "Padding mamba page size by %.2f%%"). Prefix caching is off for these
  models there ("disabling prefix caching since it is not yet supported").
- Layers are grouped by kind into groups of equal size: the smaller kind's count, or the
  larger's when it is under 1.5 times the smaller; a kind whose count is not a multiple is
  padded (vllm/v1/core/kv_cache_utils.py _get_kv_cache_groups_uniform_page_size @001cabc1).
  group_size tensors each hold num_blocks pages, one layer of every group sharing a tensor:
  num_blocks = available // page // group_size (get_kv_cache_config_from_groups,
  get_num_blocks).
- "GPU KV cache size" = num_blocks // groups × the smallest block size (_report_kv_cache_config);
  a request of L tokens needs cdiv(L, block) blocks in each attention group and one in each
  state group (MambaSpec.max_memory_usage_bytes is one page), and vLLM starts only if one
  max_model_len request fits (_max_memory_usage_bytes_from_groups).
- With prefix caching in "align" mode (--mamba-cache-mode align, PR #30877, Jan 2026; the
  default for hybrids from PR #50991, Aug 2026) a state group holds 2 blocks per request
  (MambaSpec.max_memory_usage_bytes: page_size_bytes × (2 + num_speculative_blocks)); the
  block size follows the same rule as without prefix caching. "all" mode is not modelled.
- A model with state layers only (Mamba, Mamba-2) has one group of every layer and no padding
  (MambaModelConfig); its state "block" spans max_model_len tokens (mamba_block_size defaults to
  max_model_len), which is the token count the log multiplies by.
"""

from __future__ import annotations

import math

from vramest.errors import InputError
from vramest.frozen import frozen
from vramest.model.shapes import LAYER_FULL, LAYER_SLIDING, ModelShape

KERNEL_BLOCK_ALIGNMENT = 16  # "FlashAttention (FA) requires block size to be multiple of 16"
GROUP_SIZE_SLACK = 1.5  # "1.5 is a heuristic to avoid too many padding layers"
# --mamba-ssm-cache-dtype (vllm/config/cache.py MambaDType): "auto" follows the conv state
SSM_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# families whose config's SSM state dtype vLLM follows when --mamba-ssm-cache-dtype is auto:
# Nemotron-H (models/config.py NemotronHForCausalLMConfig), Qwen3.5 (its mamba_ssm_dtype,
# float32 in the releases, through Qwen3_5ForConditionalGenerationConfig: vLLM PR #34489,
# 2026-02; the conv state stays in the model dtype)
CONFIG_SSM_DTYPE = frozenset({"nemotron_h", "qwen3_5", "qwen3_5_moe"})
# --mamba-cache-mode: the blocks one request's state takes in each state group
STATE_BLOCKS = {"none": 1, "align": 2}
# Recurrent families vLLM has no model class for (vllm/model_executor/models/registry.py
# @bf8e7624 lists FalconH1ForCausalLM, Zamba2ForCausalLM and GraniteMoeHybridForCausalLM, no
# RwkvForCausalLM)
VLLM_MISSING = {"rwkv": "RWKV-4 (RwkvForCausalLM)"}


@frozen
class HybridKV:
    """vLLM's pools for a model with recurrent state, per GPU."""

    attention_layers: int
    state_layers: int
    state_bytes: int  # one layer's state of one request, before padding
    page_bytes: int  # one block of one layer: the attention page = the padded state page
    block_size: int  # tokens per attention block (the model's max_model_len when none)
    group_size: int  # layers per group: the number of shared tensors
    attention_groups: int
    state_groups: int
    state_blocks: int = 1  # blocks a request's state takes per state group (STATE_BLOCKS)

    @property
    def groups(self) -> int:
        return self.attention_groups + self.state_groups

    @property
    def padding(self) -> float:
        """How much larger the padded state page is than the state: vLLM logs it in %."""
        return self.page_bytes / self.state_bytes - 1

    @property
    def padding_layers(self) -> int:
        return (self.attention_groups + self.state_groups) * self.group_size - (
            self.attention_layers + self.state_layers)

    def num_blocks(self, available: int) -> int:
        return max(0, available // self.page_bytes // self.group_size)

    def kv_cache_tokens(self, blocks: int) -> int:
        return blocks // self.groups * self.block_size

    def blocks_per_request(self, length: int) -> int:
        return (self.attention_groups * -(-length // self.block_size)
                + self.state_groups * self.state_blocks)

    def request_bytes(self, length: int) -> int:
        return self.group_size * self.page_bytes * self.blocks_per_request(length)

    def notes(self) -> tuple[str, ...]:
        if not self.attention_layers:
            return (f"{self.state_layers} recurrent layers keep one "
                    f"{self.state_bytes / 2**20:.2f} MiB state per request each; vLLM counts "
                    "each cached state as max_model_len tokens.",)
        out = [f"Setting attention block size to {self.block_size} tokens to ensure that "
               "attention page size is >= mamba page size.",
               f"Padding mamba page size by {100 * self.padding:.2f}% to ensure that mamba page "
               "size and attention page size are exactly equal.",
               f"KV cache groups: {self.attention_groups} attention + {self.state_groups} state, "
               f"{self.group_size} layers each; a request takes cdiv(length, "
               f"{self.block_size}) blocks per attention group and {self.state_blocks} per state "
               "group."]
        if self.padding_layers:
            out.append(f"Add {self.padding_layers} padding layers (vLLM's grouping).")
        return tuple(out)


def vllm_state_bytes(shape: ModelShape, model_dtype_bytes: float, tp: int,
                     ssm_dtype: str = "auto") -> int:
    """One recurrent layer's state for one request on one GPU, as vLLM keeps it."""
    if ssm_dtype != "auto" and ssm_dtype not in SSM_DTYPE_BYTES:
        raise InputError(f"mamba_ssm_cache_dtype {ssm_dtype!r} is not one vLLM takes; accepted: "
                         f"auto, {', '.join(SSM_DTYPE_BYTES)}.")
    ssm_bytes: float = SSM_DTYPE_BYTES.get(ssm_dtype, model_dtype_bytes)
    if ssm_dtype == "auto" and shape.family in CONFIG_SSM_DTYPE and shape.ssm_state_bytes:
        ssm_bytes = shape.ssm_state_bytes
    return math.ceil((shape.conv_state * model_dtype_bytes + shape.ssm_state * ssm_bytes) / tp)


def _groups(counts: list[int]) -> tuple[int, list[int]]:
    """Layers per group and the groups each kind gets (_get_kv_cache_groups_uniform_page_size)."""
    smallest, largest = min(counts), max(counts)
    size = largest if largest < smallest * GROUP_SIZE_SLACK else smallest
    return size, [-(-n // size) for n in counts]


def hybrid_kv(shape: ModelShape, model_dtype_bytes: float, token_bytes: float, tp: int,
              block_size: int, max_model_len: int, ssm_dtype: str = "auto",
              cache_mode: str = "none") -> HybridKV:
    """The pools of a model with recurrent layers. `token_bytes`: one attention layer's KV for
    one token on one GPU; `block_size`: --block-size (vLLM raises it, never lowers it)."""
    if shape.family in VLLM_MISSING:
        raise InputError(f"vLLM has no {VLLM_MISSING[shape.family]} model, so --engine vllm cannot "
                         "serve it; the estimate without --engine holds.")
    if cache_mode not in STATE_BLOCKS:
        raise InputError(f"mamba_cache_mode {cache_mode!r} is not modelled; accepted: "
                         f"{', '.join(STATE_BLOCKS)}.")
    counts = shape.layer_kind_counts
    attention = counts.get(LAYER_FULL, 0) + counts.get(LAYER_SLIDING, 0)
    state = vllm_state_bytes(shape, model_dtype_bytes, tp, ssm_dtype)
    if not attention:
        return HybridKV(0, shape.state_layers, state, state, max_model_len,
                        shape.state_layers, 0, 1, STATE_BLOCKS[cache_mode])
    per_token = math.ceil(token_bytes)
    needed = KERNEL_BLOCK_ALIGNMENT * -(-state // (KERNEL_BLOCK_ALIGNMENT * per_token))
    block = max(block_size, needed)
    size, (attention_groups, state_groups) = _groups([attention, shape.state_layers])
    return HybridKV(attention, shape.state_layers, state, block * per_token, block, size,
                    attention_groups, state_groups, STATE_BLOCKS[cache_mode])


def mamba_blocks_refusal(check: bool, attention_layers: int, enforce_eager: bool,
                         max_num_seqs: int, blocks: int) -> str:
    """vLLM's refusal when a hybrid model (attention and recurrent layers in one pool) has
    fewer pool blocks than max_num_seqs: each decoding sequence holds one state block, and the
    full decode CUDA graphs are captured for batches of up to max_num_seqs sequences (PR #38270;
    the same blocks the KV cache pool counts: vLLM recipes PR #551 logs 856 for Qwen3.6-27B-FP8
    on one H100 at 0.95). Without CUDA graphs nothing is captured, so nothing is checked.
    `attention_layers` is 0 for a model without attention (Mamba-only): the reports of the
    check are all of hybrids (Qwen3.5/3.6 gated DeltaNet, Nemotron-H), so it is not applied
    there."""
    if not check or not attention_layers or enforce_eager or max_num_seqs <= blocks:
        return ""
    return (f"max_num_seqs ({max_num_seqs}) exceeds available Mamba cache blocks ({blocks}). "
            "Each decode sequence requires one Mamba cache block, so CUDA graph capture cannot "
            f"proceed. Please lower max_num_seqs to at most {blocks} or increase "
            "gpu_memory_utilization.")
