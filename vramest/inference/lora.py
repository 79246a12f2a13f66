"""LoRA adapters in serving: the GPU slots vLLM preallocates and the work they add to a step.

vLLM (`--enable-lora`) wraps every linear layer of the model in a LoRA layer at load time and
gives each `max_loras` zero-filled slots of the largest rank it accepts (`--max-lora-rank`),
in the model's dtype (`lora_dtype` "auto"), whatever rank the adapters really have:

- A column-parallel layer (q, k, v, gate, up: output split by tensor parallelism) keeps, per
  slot and per packed slice, A of max_lora_rank × its whole input and B of its output share
  on this rank × max_lora_rank; a row-parallel one (o, down: input split) keeps A of
  max_lora_rank × its input share and B of its whole output × max_lora_rank
  (vllm/lora/layers/base_linear.py `create_lora_weights` @01235a494f17,
  column_parallel_linear.py `MergedColumnParallelLinearWithLoRA` @0163de2b7c0f).
- The slots are made when the model loads (vllm/lora/model_manager.py `_create_lora_modules`
  @01533aa8f9c0), so vLLM's "Model loading took" includes them and the KV cache gets what is
  left. The profiling run activates `max_loras` dummy adapters built on the CPU and copied into
  these slots (`create_dummy_lora`, device "cpu"): no further GPU memory.
- Not counted, each under 10 MiB: the fp32 shrink buffer of a forward (slices ×
  max_num_batched_tokens × max_lora_rank × 4 B: 3 × 8192 × 64 × 4 B = 6 MiB) and the Punica
  wrapper's token-to-slot index tensors. Nor the second set of CUDA graphs captured with
  LoRA active (`cudagraph_specialize_lora`, default True: "slightly higher memory usage",
  vllm/config/compilation.py @002284db4c87); the graphs share one memory pool.
- `--max-cpu-loras` (default max_loras; at least max_loras, vllm/config/lora.py @01230b40128e)
  is an LRU cache of adapters in host memory, never on the GPU.
- The embedding and lm_head are adapted only where a model declares them and the release still
  supports extra vocabulary (deprecated, removed in v0.12); not counted here.

Per step, the Punica kernels (shrink x·Aᵀ, expand ·Bᵀ) read the slot of each distinct adapter
in the batch, padded to max_lora_rank, and do 2 × tokens × max_lora_rank × (in + out) FLOPs
per adapted matrix. llama.cpp (`--lora FILE`) keeps each adapter's tensors on the device
beside the model: one adapter adds its file's bytes (llama.cpp issue #19153).
"""

from __future__ import annotations

from functools import lru_cache

from vramest.errors import InputError, short
from vramest.frozen import frozen
from vramest.model.shapes import ModelShape

# vllm/config/lora.py @01230b40128e570a58e54e75f7e55c4d5cd9246d: MaxLoRARanks
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_RANK = 16  # LoRAConfig.max_lora_rank default (same file)
MAX_LORAS = 4096  # a bound on the input, far above any deployment

# Which side tensor parallelism splits, per tensor role (vLLM's layer classes): column-parallel
# layers split their output, row-parallel ones their input; the rest are replicated.
_COLUMN = frozenset({"attn_q", "attn_k", "attn_v", "attn_qkv", "attn_q_b", "attn_kv_b",
                     "ffn_gate", "ffn_up", "shared_gate", "shared_up", "expert_gate",
                     "expert_up"})
_ROW = frozenset({"attn_o", "ffn_down", "shared_down", "expert_down"})
_REPLICATED = frozenset({"attn_q_a", "attn_kv_a", "router"})


@frozen
class LoraServing:
    """vLLM's LoRA settings: --max-loras, --max-lora-rank, --max-cpu-loras."""

    max_loras: int = 1
    max_lora_rank: int = DEFAULT_RANK
    max_cpu_loras: int | None = None  # default: max_loras

    @property
    def cpu_loras(self) -> int:
        return self.max_cpu_loras or self.max_loras

    def to_json(self) -> dict[str, int]:
        return {"max_loras": self.max_loras, "max_lora_rank": self.max_lora_rank,
                "max_cpu_loras": self.cpu_loras}


def lora_serving(max_loras: object = None, max_lora_rank: object = None,
                 max_cpu_loras: object = None) -> LoraServing | None:
    """The settings checked (None when no LoRA flag was given): one sentence for a bad value."""
    if max_loras is None and max_lora_rank is None and max_cpu_loras is None:
        return None
    loras = _whole(max_loras, "--max-loras", 1, MAX_LORAS) if max_loras is not None else 1
    rank = _whole(max_lora_rank, "--max-lora-rank", 1, max(VLLM_RANKS)) \
        if max_lora_rank is not None else DEFAULT_RANK
    if rank not in VLLM_RANKS:
        raise InputError(f"--max-lora-rank {rank} is not one vLLM accepts; give one of "
                         f"{', '.join(map(str, VLLM_RANKS))}.")
    cpu = _whole(max_cpu_loras, "--max-cpu-loras", 1, 10**6) if max_cpu_loras is not None \
        else None
    if cpu is not None and cpu < loras:
        raise InputError(f"--max-cpu-loras {cpu} is below --max-loras {loras}; vLLM needs at "
                         "least as many host slots as GPU slots.")
    return LoraServing(loras, rank, cpu)


def _whole(value: object, flag: str, low: int, high: int) -> int:
    number = -1
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if not low <= number <= high:
        raise InputError(f"{flag} {short(value)} is not a whole number from {low} to {high}.")
    return number


@lru_cache(maxsize=1024)
def slot_elements(shape: ModelShape, rank: int, tp: int = 1) -> int:
    """Elements of one adapter slot on one GPU: A and B of every adapted matrix at `rank`."""
    total = 0
    for layer, repeat in shape.layer_groups():
        for t in shape.layer_tensors(layer):
            if t.role in _COLUMN:
                per = t.cols + -(-t.rows // tp)  # A: rank × whole input; B: output share × rank
            elif t.role in _ROW:
                per = -(-t.cols // tp) + t.rows  # A: rank × input share; B: whole output × rank
            elif t.role in _REPLICATED:
                per = t.cols + t.rows
            else:
                continue
            total += repeat * t.count * rank * per
    return total


def adapter_elements(shape: ModelShape, rank: int) -> int:
    """Elements of one adapter of `rank` on every linear layer (its file, unsharded)."""
    return slot_elements(shape, rank, 1)


def slots_bytes(shape: ModelShape, lora: LoraServing, dtype_bytes: float, tp: int = 1) -> int:
    """GPU bytes vLLM preallocates on each GPU for `max_loras` slots at `max_lora_rank`."""
    return round(lora.max_loras * slot_elements(shape, lora.max_lora_rank, tp) * dtype_bytes)


def host_bytes(shape: ModelShape, lora: LoraServing, dtype_bytes: float) -> int:
    """Host memory of the CPU adapter cache when it is full (`max_cpu_loras` adapters)."""
    return round(lora.cpu_loras * adapter_elements(shape, lora.max_lora_rank) * dtype_bytes)


@frozen
class LoraStepCost:
    """What the adapters add to one forward: bytes read and FLOPs, per GPU."""

    bytes_read: float
    flops: float


def step_cost(shape: ModelShape, lora: LoraServing, dtype_bytes: float, tokens: float,
              sequences: float, tp: int = 1) -> LoraStepCost:
    """A step of `tokens` tokens from `sequences` sequences reads the slot of each distinct
    adapter in it (at most max_loras, one per sequence at most; each padded to max_lora_rank)
    and multiplies every token through A and B."""
    per_gpu = slot_elements(shape, lora.max_lora_rank, tp)
    active = min(float(lora.max_loras), max(1.0, sequences))
    return LoraStepCost(bytes_read=active * per_gpu * dtype_bytes,
                        flops=2.0 * tokens * per_gpu)


def formula(shape: ModelShape, lora: LoraServing, dtype_bytes: float, tp: int = 1) -> str:
    per = slot_elements(shape, lora.max_lora_rank, tp)
    return (f"LoRA slots: {lora.max_loras} max_loras × {per:,} elements (rank "
            f"{lora.max_lora_rank} A and B of every linear layer{', per GPU' if tp > 1 else ''})"
            f" × {dtype_bytes:g} B = {slots_bytes(shape, lora, dtype_bytes, tp) / 2**20:,.1f} "
            "MiB, preallocated by vLLM at load (vllm/lora/layers/base_linear.py)")
