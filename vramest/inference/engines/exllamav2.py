"""ExLlamaV2 (`--engine exllamav2`): its cache modes and what stays on the CPU.

turboderp-org/exllamav2 at da07facd (v0.3.2), exllamav2/cache.py: the cache holds
batch x max_seq_len tokens of K and V for every layer. FP16 stores 2 bytes an element; the
quantized caches (ExLlamaV2Cache_Q4/_Q6/_Q8) store packed values plus one fp16 scale per 32
elements (Q4: 2 values a byte for K and V; Q6: 1 a byte for K, 2 for V; Q8: 1 a byte), pad
max_seq_len to whole 512-element quantization blocks, and keep one layer's worth of FP16 K/V
per device to (de)quantize into. exllamav2/model.py loads the embedding table on the CPU
(embed_cpu=True). The dynamic generator prefills in chunks of max_chunk_size (2048) tokens.
"""

from __future__ import annotations

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.inference.engines import registry
from vramest.inference.memory import ffn_width, kv_widths, weight_bytes_by_group
from vramest.model.precisions import weight_format
from vramest.units import format_bytes

if TYPE_CHECKING:
    from vramest.inference.placement import FitPlan

SRC = "turboderp-org/exllamav2@da07facd:exllamav2/cache.py"
READ_AT = "exllamav2@da07facd"  # the release the rules are for: the commit they were read at
SCALE_BYTES_PER_ELEMENT = 2 / 32  # one fp16 scale per 32 elements (shape_s: head_dim // 32)
# bytes an element for K and for V (weights_per_byte_k / _v in cache.py)
CACHE_MODES: dict[str, tuple[float, float, bool]] = {  # (K, V, quantized with scales)
    "fp16": (2.0, 2.0, False), "fp8": (1.0, 1.0, False),
    "q8": (1.0, 1.0, True), "q6": (1.0, 0.5, True), "q4": (0.5, 0.5, True),
}
Q_BLOCK_ELEMENTS = 512  # Q_CACHE_BLOCKSIZE_Q: max_seq_len padded to whole blocks
MAX_CHUNK = 2048  # generator/dynamic.py max_chunk_size default
FP16 = 2


@frozen
class ExLlamaV2Startup:
    cache_mode: str
    max_seq_len: int
    batch_size: int
    weights_gpu_bytes: int
    embedding_host_bytes: int
    cache_bytes: int
    temp_bytes: int  # the FP16 working layer of a quantized (or FP8) cache
    activation_bytes: int
    context_bytes: int

    @property
    def gpu_total_bytes(self) -> int:
        return self.weights_gpu_bytes + self.cache_bytes + self.temp_bytes + \
            self.activation_bytes + self.context_bytes

    def to_json(self) -> dict[str, object]:
        return {"name": "exllamav2", "version": READ_AT, "cache_mode": self.cache_mode,
                "max_seq_len": self.max_seq_len, "batch_size": self.batch_size,
                "weights_gpu_bytes": self.weights_gpu_bytes,
                "embedding_host_bytes": self.embedding_host_bytes,
                "cache_bytes": self.cache_bytes, "cache_temp_bytes": self.temp_bytes,
                "activation_bytes": self.activation_bytes,
                "gpu_total_bytes": self.gpu_total_bytes}

    def log_lines(self) -> list[str]:
        return [f"{READ_AT} rules",
                f"weights on the GPU: {format_bytes(self.weights_gpu_bytes)} (embeddings on "
                f"the CPU: {format_bytes(self.embedding_host_bytes)})",
                f"ExLlamaV2Cache{'' if self.cache_mode == 'fp16' else '_' + self.cache_mode.upper()}"
                f" {self.batch_size} x {self.max_seq_len} tokens: "
                f"{format_bytes(self.cache_bytes)}"
                + (f" + {format_bytes(self.temp_bytes)} FP16 working layer" if self.temp_bytes
                   else ""),
                f"prefill chunk of {MAX_CHUNK} tokens: {format_bytes(self.activation_bytes)}",
                f"({SRC})"]

    def engine_fit(self, plan: FitPlan) -> FitPlan:
        from vramest.inference.placement import PerGPU

        per_gpu = PerGPU(self.weights_gpu_bytes, self.cache_bytes + self.temp_bytes,
                         self.activation_bytes, self.context_bytes)
        return replace(plan, per_gpu=per_gpu)


def compute(req: registry.StartupRequest) -> ExLlamaV2Startup:
    o, est = req.options, req.est
    if req.tp > 1:
        raise InputError("--engine exllamav2 is estimated on one GPU; its layer split over "
                         "several GPUs (gpu_split) is not modelled.")
    shape, c = est.model.shape, est.constants
    if shape.state_layers:  # ExLlamaV2 runs attention-only architectures
        raise InputError("--engine exllamav2 does not run models with recurrent layers (Mamba, "
                         "hybrid, RWKV): use --engine vllm or llamacpp for this model.")
    mode = str(o.get("cache_mode", "fp16"))
    if mode not in CACHE_MODES:
        raise InputError(f"cache_mode {mode!r} is not an ExLlamaV2 cache; accepted: "
                         f"{', '.join(CACHE_MODES)}.")
    k_bytes, v_bytes, scaled = CACHE_MODES[mode]
    seq = int(o.get("max_seq_len") or est.settings.ctx)  # type: ignore[call-overload]
    batch = int(o.get("batch_size") or est.settings.batch)  # type: ignore[call-overload]
    kv_dim, _ = kv_widths(shape)  # K and V alike: ExLlama has no latent (MLA) cache
    if scaled:
        q_block = 1
        while (kv_dim * q_block) % Q_BLOCK_ELEMENTS:
            q_block += 1
        seq = -(-seq // q_block) * q_block
        k_bytes += SCALE_BYTES_PER_ELEMENT
        v_bytes += SCALE_BYTES_PER_ELEMENT
    layers = sum(1 for kind in shape.kinds() if kind != "none")
    elements = batch * seq * kv_dim
    cache = round(layers * elements * (k_bytes + v_bytes))
    temp = 0 if mode == "fp16" else elements * FP16 * 2
    groups = weight_bytes_by_group(shape, weight_format(est.settings.dtype))
    scale = est.memory.weights.bytes / (sum(groups.values()) or 1.0)
    embedding = round(groups["embedding"] * scale)
    chunk = min(MAX_CHUNK, seq)
    activation = round(chunk * (c.activation_ffn_factor * ffn_width(shape)
                                + c.vllm_activation_hidden_factor * shape.hidden_size) * FP16
                       + batch * shape.vocab_size * 4)
    return ExLlamaV2Startup(cache_mode=mode, max_seq_len=seq, batch_size=batch,
                            # a tied head is the embedding table, also loaded on the GPU
                            weights_gpu_bytes=est.memory.weights.bytes - (
                                0 if shape.tie_embeddings else embedding),
                            embedding_host_bytes=embedding, cache_bytes=cache, temp_bytes=temp,
                            activation_bytes=activation, context_bytes=est.memory.overhead.bytes)


ENGINE = registry.StartupEngine(
    name="exllamav2",
    parsers={"cache_mode": registry.text, "max_seq_len": registry.tokens,
             "batch_size": lambda v, w: registry.whole(v, w, 4096)},
    compute=compute,
    spellings={"cache": "cache_mode", "kv_cache": "cache_mode", "max_batch_size": "batch_size"},
)
