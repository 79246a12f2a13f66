"""Ollama (`--engine ollama`): its defaults by release, then llama.cpp's buffers underneath.

Ollama runs llama.cpp (its own runner up to 0.2x, upstream llama-server from 0.30), so the
buffers are llama.cpp's (`llamacpp_startup`); what Ollama decides is the context, the number
of parallel sequences, the KV cache type, flash attention and how many layers go to the GPU.
Every rule names the file and release tag of ollama/ollama it was read from.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.inference.engines import registry
from vramest.inference.engines.llamacpp_device import runtime_spread_bytes
from vramest.inference.engines.startup import (
    DeviceBuffers,
    LlamaCppOptions,
    LlamaCppStartup,
    _backend,
    llamacpp_startup,
)
from vramest.inference.memory import layer_weight_bytes, weight_bytes_by_group, weight_bytes_by_role
from vramest.model.precisions import weight_format
from vramest.model.shapes import LAYER_FULL, LAYER_SLIDING
from vramest.units import GIB, MIB, format_bytes

if TYPE_CHECKING:
    from vramest.hardware.database import Device
    from vramest.inference.estimate import Estimate
    from vramest.inference.placement import FitPlan, PerGPU
    from vramest.model.shapes import ModelShape

Version = tuple[int, ...]
Options = Mapping[str, object]
Buffers = Callable[[int, int], LlamaCppStartup]  # (parallel sequences, GPU layers) -> buffers
LATEST: Version = (0, 32, 15)  # newest release tag read (commit b7871fc0)
SRC = "ollama/ollama@v{}:{}"  # a source: release tag and file

# num_ctx when neither the request nor OLLAMA_CONTEXT_LENGTH sets it
CTX_2048_UNTIL: Version = (0, 6, 7)  # api/types.go DefaultOptions NumCtx 2048; 4096 from v0.6.7
CTX_BY_VRAM_FROM: Version = (0, 15, 5)  # envconfig ContextLength default 0: the VRAM tier
# server/routes.go (v0.15.5+): summed TotalMemory - OLLAMA_GPU_OVERHEAD >= 47 GiB -> 262144,
# >= 23 GiB -> 32768, else 4096
VRAM_TIERS = ((47 * GIB, 262_144), (23 * GIB, 32_768), (0, 4096))
CLAMP_TO_TRAINED_FROM: Version = (0, 9, 3)  # llm/server.go: num_ctx > n_ctx_train is cut
# server/routes.go scheduleRunner (v0.11.0 .. v0.15.4): gpt-oss gets num_ctx of at least 8192;
# from v0.11.4 only when the GPUs' summed total less OLLAMA_GPU_OVERHEAD is 20 GiB or more
# (lowVRAMThreshold), and from v0.13.0 Qwen3-VL too; v0.15.5 replaced it by the VRAM tiers
MIN_CTX = 8192
MIN_CTX_FROM: Version = (0, 11, 0)
MIN_CTX_UNTIL: Version = (0, 15, 5)
MIN_CTX_LOW_VRAM_FROM: Version = (0, 11, 4)
LOW_VRAM = 20 * GIB
MIN_CTX_FAMILIES = ((MIN_CTX_FROM, ("gpt_oss",)), ((0, 13, 0), ("qwen3_vl", "qwen3_vl_moe")))
# OLLAMA_NUM_PARALLEL unset: 1 before v0.2.0; then "auto": server/sched.go defaultParallel
# (4, 2 from v0.6.7) when the model fits whole on one GPU with that many contexts, else 1;
# 1 again from v0.10.0
AUTO_PARALLEL = (((0, 2, 0), 4), ((0, 6, 7), 2), ((0, 10, 0), 1))
KV_TYPES_FROM: Version = (0, 5, 0)  # OLLAMA_KV_CACHE_TYPE (f16, q8_0, q4_0), needs flash attn
# flash attention: off unless OLLAMA_FLASH_ATTENTION=1; from v0.12.4 on by default for these
# architectures (fs/ggml/ggml.go GGML.FlashAttention); from v0.30 "auto" wherever supported
FA_FAMILIES_FROM: Version = (0, 12, 4)
FA_FAMILIES = ("gpt_oss", "qwen3", "qwen3_moe")
# fs/ggml/ggml.go SupportsFlashAttention: architectures Ollama runs without flash attention
# whatever OLLAMA_FLASH_ATTENTION says ("flash attention enabled but not supported by model",
# llm/server.go), so with an f16 cache: gpt-oss in v0.11.0-v0.11.4, gemma2 in v0.11.11-v0.2x
NO_FLASH_MODELS = (("gpt_oss", (0, 11, 0), (0, 11, 5)), ("gemma2", (0, 11, 11), (0, 30, 0)))
LLAMA_SERVER_FROM: Version = (0, 30, 0)  # llm/llama_server.go: upstream llama-server
# server/sched.go (v0.30+): automatic num_batch (= -b and -ub) by context: 512, 1024 above
# 4096, 2048 above 32768; 256 on CUDA cards of at most 8 GiB without flash attention
BATCH_BY_CTX = ((32_768, 2048), (4096, 1024), (0, 512))
# Ollama's own estimator (llm/memory.go, v0.1.33-v0.12.10) reserves this per CUDA/ROCm GPU
# (discover/gpu.go cudaMinimumMemory) in place of the CUDA context
MINIMUM_MEMORY = 457 * MIB
OWN_ESTIMATOR_UNTIL: Version = (0, 12, 11)
# llm/memory.go EstimateGPULayers deals the blocks to several GPUs one at a time, each at its own
# size (blk.i's tensors and its KV): to the (i mod j)-th of the j GPUs still with space, a GPU
# without room for the block leaving the list (gpusWithSpace, ollama/ollama@v0.1.45 to v0.12.10);
# from layer 0 up until 0.7.0, from the last layer down after (ollama/ollama commit 0478d440f,
# "Fixed over vram allocation due to small initial layer sizes", first in v0.7.0)
ROUND_ROBIN_FROM: Version = (0, 1, 45)
LAST_LAYER_FIRST_FROM: Version = (0, 7, 0)
# fs/ggml/ggml.go GraphSize returns each layer's KV from v0.6.3; before, the total, which
# EstimateGPULayers spreads evenly over the blocks ("KV is proportional to the number of layers")
KV_BY_LAYER_FROM: Version = (0, 6, 3)
# CUDA flash attention needs compute capability >= 7.0 (ml/device.go): not Pascal or older
_NO_FLASH = re.compile(r"GTX 10\d0|Tesla P\d|Quadro P\d|TITAN X|Tesla [KM]\d", re.I)


@frozen
class OllamaStartup:
    version: Version
    num_ctx: int  # per sequence
    num_parallel: int
    num_batch: int
    flash_attention: bool
    kv_cache_type: str
    layers_total: int  # blocks + the output layer, as Ollama counts num_gpu
    offloaded: int  # of layers_total
    buffers: LlamaCppStartup  # as llama.cpp allocates them for the layers placed
    full: LlamaCppStartup  # every layer on the GPUs: what "fits" is judged on
    gpus: int  # llama.cpp splits the layers over them (-sm layer), each with its own buffers
    rules: tuple[str, ...]  # what was decided and the source of each rule
    placed: bool = False  # num_gpu given: the layers asked for are judged, not the whole model
    # every layer on the GPUs as Ollama's own estimator sizes it (before 0.12.11): the model
    # fits whole only if the estimator places every layer and llama.cpp's buffers then fit
    estimated_full: LlamaCppStartup | None = None
    # layers per GPU as Ollama's estimator dealt them (its log's layers.split), several GPUs only
    tensor_split: tuple[int, ...] | None = None

    @property
    def context_tokens(self) -> int:
        return self.num_ctx * self.num_parallel

    @property
    def fully_offloaded(self) -> bool:
        return self.offloaded >= self.layers_total

    # what Ollama's log shows, for the real-case figures: "offloaded N/M layers to GPU", the
    # first GPU's "CUDA0 model buffer size" (or the new engine's "model weights" CUDA0 line),
    # and the busiest GPU's "compute buffer size", all for the layers placed
    @property
    def layers_offloaded(self) -> int:
        return self.offloaded

    @property
    def model_buffer_gpu_bytes(self) -> int:
        return self.buffers.devices[0].model_bytes if self.buffers.devices else 0

    @property
    def compute_buffer_gpu_bytes(self) -> int:
        return self.buffers.compute_buffer_gpu_bytes

    def to_json(self) -> dict[str, object]:
        return {"name": "ollama", "version": ".".join(map(str, self.version)),
                "num_ctx": self.num_ctx, "num_parallel": self.num_parallel,
                "context_tokens": self.context_tokens, "num_batch": self.num_batch,
                "flash_attention": self.flash_attention, "kv_cache_type": self.kv_cache_type,
                "layers_total": self.layers_total, "layers_offloaded": self.offloaded,
                "fully_offloaded": self.fully_offloaded,
                **({"tensor_split": list(self.tensor_split)} if self.tensor_split else {}),
                **{k: v for k, v in self.buffers.to_json().items() if k not in ("name", "version")},
                "rules": list(self.rules)}

    def log_lines(self) -> list[str]:
        version = ".".join(map(str, self.version))
        return [f"ollama {version}: num_ctx {self.num_ctx} x OLLAMA_NUM_PARALLEL "
                f"{self.num_parallel} = {self.context_tokens} tokens of context, num_batch "
                f"{self.num_batch}, flash attention {'on' if self.flash_attention else 'off'}, "
                f"KV {self.kv_cache_type}",
                f"offloaded {self.offloaded}/{self.layers_total} layers to GPU"
                + ("" if self.fully_offloaded else " (the rest run on the CPU)"),
                *(line for line in self.buffers.log_lines()[1:]  # its own count is above
                  if not line.startswith("offloaded ")), *self.rules]

    def engine_fit(self, plan: FitPlan) -> FitPlan:
        """Whether the whole model fits on the GPUs: Ollama still runs one that does not, with
        layers on the CPU (`layers_offloaded`), but much slower; that counts as not fitting.
        With num_gpu given, whether the layers asked for fit."""

        from vramest.inference.verdict import BANDS

        host = "" if self.fully_offloaded or plan.device.kind != "gpu" else \
            f"{self.layers_total - self.offloaded} of {self.layers_total} layers"  # as Ollama counts
        judged = self.buffers if self.placed else max(
            (b for b in (self.full, self.estimated_full) if b is not None),
            key=per_gpu_need)
        # placed, the runner's own hold is llama.cpp's, with its spread (engine_fit.py)
        spread = runtime_spread_bytes(_backend(plan.device)) if self.placed and judged.devices \
            else 0
        return replace(plan, per_gpu=_busiest(judged), band=BANDS["llamacpp"],
                       band_extra_bytes=spread, on_host=host)

    def what_to_change(self, est: Estimate, plan: FitPlan, options: Options) -> tuple[str, ...]:
        """Ollama's own knobs, each checked to get the whole model on the GPUs with the error
        band free (num_ctx is --ctx where no num_ctx is given, run_flags.py)."""
        band = plan.band.fraction  # of each trial's own need, as the verdict takes it
        out = []
        if not self.fully_offloaded:
            out.append(f"as it is, Ollama runs it with {self.offloaded} of {self.layers_total} "
                       "layers on the GPU and the rest on the CPU (see the speed)")

        def fits(changed: Mapping[str, object]) -> bool:
            trial = registry.startup("ollama", est, {**options, **changed}, plan.device,
                                     self.gpus, plan.usable_bytes)
            assert isinstance(trial, OllamaStartup)
            need = max(per_gpu_need(b) for b in (trial.full, trial.estimated_full)
                       if b is not None)
            return need * (1 + band) <= plan.usable_bytes

        step = 256
        if fits({"num_ctx": step}) and not fits({"num_ctx": self.num_ctx}):
            low, high = 1, -(-self.num_ctx // step)  # in steps: low fits, high does not
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (mid, high) if fits({"num_ctx": mid * step}) else (low, mid)
            low *= step
            out.append(f"num_ctx {low} (--engine-option num_ctx={low}; "
                       f"OLLAMA_CONTEXT_LENGTH={low} or /set parameter num_ctx {low}): the "
                       "longest context that fits whole with the error band to spare")
        if self.kv_cache_type in ("f16", "fp16", "bf16") and self.version >= KV_TYPES_FROM:
            need_fa = "" if self.flash_attention else " with OLLAMA_FLASH_ATTENTION=1"
            if fits({"kv_cache_type": "q8_0", "flash_attention": True}):
                out.append(f"OLLAMA_KV_CACHE_TYPE=q8_0{need_fa}: half the KV cache, and it fits")
            else:
                out.append(f"OLLAMA_KV_CACHE_TYPE=q8_0{need_fa}: half the KV cache")
        return tuple(out)


# Ollama's own engine runs these vision models (from 0.6.0) and reserves, with the output
# layer, a worst-case graph for one picture: fs/ggml/ggml.go VisionGraphSize (v0.9.2), 4 bytes
# each of the image, the patch embedding and every head's patch-by-patch attention scores
VISION_FROM: Version = (0, 6, 0)
# Gemma 3's SigLIP tower, google/gemma-3-27b-it config.json vision_config (the catalog keeps
# only the tower's parameter count)
GEMMA3_VISION = {"image_size": 896, "patch_size": 14, "num_attention_heads": 16,
                 "hidden_size": 1152}
QWEN25VL_MAX_PIXELS = 28 * 28 * 1280  # VisionGraphSize's default vision.max_pixels


def _vision_graph(est: Estimate, version: Version) -> int:
    """The vision graph Ollama places with the output layer; 0 for a text model."""
    shape = est.model.shape
    if version < VISION_FROM or not shape.extra_params:
        return 0
    from vramest.model.catalog import default_catalog

    entry = default_catalog().get(est.model.name)
    config = dict(entry.config.get("vision_config") or {}) if entry is not None else {}
    family = shape.family
    if family.startswith("gemma3"):
        config = {**GEMMA3_VISION, **config}
    try:
        patch = int(config["patch_size"])
        heads = int(config.get("num_attention_heads") or config["num_heads"])
        width = int(config["hidden_size"])
        if family.startswith("qwen2"):
            patches = QWEN25VL_MAX_PIXELS // (patch * patch)
            return 4 * (2 * QWEN25VL_MAX_PIXELS * 3 + patches * 3 * patch * patch
                        + patches * patches * heads + width * patches)
        if family.startswith(("gemma3", "mistral")):
            side = int(config["image_size"])
            patches = (side // patch) ** 2
            return 4 * (side * side * 3 + width * patch + patches * patches * heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return 0
    return 0  # llama4: "negligible"; others run in llama.cpp's runner with an mmproj file


# Llama 3.2 Vision (mllama) ran in llama.cpp's runner with a separate projector file from v0.4.0
# until v0.7.0 made it an Ollama-engine model (fs/ggml/ggml.go OllamaEngineRequired). There the
# estimator charges the projector's weights and graph to the first GPU before any layer
# ("Projectors loaded into GPU0 only": gpuZeroOverhead = projectorWeights + projectorGraph,
# ollama/ollama@v0.4.0:llm/memory.go EstimateGPULayers; same through v0.6.8)
PROJECTOR_GPU0_FROM: Version = (0, 4, 0)
MLLAMA_OWN_ENGINE_FROM: Version = (0, 7, 0)
# projectorMemoryRequirements' mllama graph (ollama/ollama@v0.4.0:llm/memory.go) reads these from
# the projector's GGUF, the vision_config of meta-llama/Llama-3.2-11B-Vision config.json
MLLAMA_VISION = {"image_size": 560, "patch_size": 14, "max_num_tiles": 4, "hidden_size": 1280,
                 "attention_heads": 16, "num_channels": 3}


def _projector_gpu0(est: Estimate, version: Version) -> int:
    """What Ollama's estimator reserves on the first GPU for a projector file: the tower's
    weights (16 bit) and projectorMemoryRequirements' graph; 0 where no projector is loaded."""
    shape = est.model.shape
    if not (PROJECTOR_GPU0_FROM <= version < MLLAMA_OWN_ENGINE_FROM) \
            or not shape.family.startswith("mllama") or not shape.extra_params:
        return 0
    v = MLLAMA_VISION
    side, tiles, width, heads = v["image_size"], v["max_num_tiles"], v["hidden_size"], \
        v["attention_heads"]
    patches = (side // v["patch_size"]) ** 2 + 1  # + the class embedding (v.class_embd)
    padded = patches + 8 - (patches % 8) % 8  # as the source writes it
    graph = 4 * (8 + side * side * v["num_channels"] * tiles + width * patches * tiles
                 + 9 * width * padded * tiles + padded * tiles * padded * tiles * heads)
    return shape.extra_params * 2 + graph


# Ollama's own estimator (before 0.12.11, llm/memory.go EstimateGPULayers at v0.9.2) places
# the layers against its own graph sizes (fs/ggml/ggml.go GraphSize, per architecture), the
# larger of the partial- and full-offload graph on every GPU (the partial one alone on several
# GPUs), and keeps one more layer's weights and KV free on each GPU ("add one layer worth of
# memory as a buffer"). The architectures below are llama.cpp's GGUF names for our families.
_ESTIMATOR_ARCH = {"llama": "llama", "mistral": "llama", "mixtral": "llama",
                   "llama4_text": "llama", "gemma": "gemma", "gemma2": "gemma",
                   "gemma3_text": "gemma3", "gemma3": "gemma3", "cohere": "command-r",
                   "qwen2": "qwen2", "phi": "phi2", "gpt_oss": "gptoss"}
_GEMMA3_GLOBAL_EVERY = 6  # GraphSize: every 6th Gemma 3 layer keeps the whole context
_GPTOSS_SLIDING_CELLS = 4096  # GraphSize: gpt-oss's even layers keep numParallel x 4096 + batch
_KV_BYTES = {"f16": 2.0, "fp16": 2.0, "bf16": 2.0, "q8_0": 1.0, "q4_0": 0.5}


def _estimator_arch(shape: ModelShape) -> str:
    """GraphSize's architecture for this shape: Mistral's vision models (Mistral Small 3.1 on)
    are "mistral3" in Ollama's files, which GraphSize has no branch for (ollama/ollama@v0.6.8
    to v0.12.10:fs/ggml/ggml.go), where the text-only ones are "llama"."""
    if shape.family == "mistral" and shape.extra_params:
        return "mistral3"
    return _ESTIMATOR_ARCH.get(shape.family, "")


GPTOSS_PARTIAL_EQUALS_FULL: Version = (0, 11, 3)  # was 2 x full (v0.11.2 -> v0.11.3 diff)
GPTOSS_HALF_GRAPH: Version = (0, 11, 5)


def _estimator_graph(shape: ModelShape, context: int, batch: int, parallel: int,
                     kv_type: str, gpus: int, *, metal: bool = False,
                     version: Version = LATEST) -> int | None:
    """The graph Ollama's estimator reserves on each GPU; None where the estimator's inputs
    differ from this shape's (recurrent state: llama.cpp's compute buffer stands). DeepSeek's
    MLA models are sized as Ollama's GGUFs describe them: every head its own K and V."""
    if any(k not in (LAYER_FULL, LAYER_SLIDING) for k in shape.kinds()):
        return None
    arch = _estimator_arch(shape)
    emb, heads, heads_kv = shape.hidden_size, shape.num_heads, max(1, shape.num_kv_heads)
    head, head_k, vocab = emb // heads, shape.head_dim, shape.vocab_size
    kv_total = sum(_estimator_kv(shape, context, batch, parallel, kv_type))
    b, c = batch, context
    partial = full = 0
    # GraphSize's deepseek2 branch (ollama/ollama@v0.5.7:llm/ggml.go, unchanged to v0.12.10), with
    # the heads' K and V as the GGUFs converted before llama.cpp stored MLA's latent describe them
    if shape.is_mla:
        full = max(4 * b * (3 * emb + vocab),
                   4 * b * (3 * emb + 2 + c * (1 + heads_kv) + 2 * head_k * heads_kv))
        partial = max(4 * b * (3 * emb + vocab) + emb * vocab * 105 // 128,
                      4 * b * (2 * emb + 1 + 2 * head_k * heads_kv + c + c * heads_kv)
                      + 4 * head_k * c * heads_kv + emb * head_k * heads_kv * 9 // 16)
    elif arch == "llama":
        full = max(4 * b * (1 + 4 * emb + c * (1 + heads)), 4 * b * (emb + vocab))
        partial = 4 * b * emb + max(
            4 * b * (1 + emb + max(c, emb)) + emb * emb * 9 // 16
            + 4 * c * (b * heads + head * heads_kv),
            4 * b * (emb + vocab) + emb * vocab * 105 // 128)
        if shape.is_moe:  # the merged-experts ("mixtral 8x22b") branch
            gate_bytes = shape.num_experts * shape.moe_intermediate_size * emb * 9 // 16
            partial = max(3 * gate_bytes + 4 * b * (2 * shape.moe_intermediate_size + heads_kv
                                                    + emb + c + head * heads_kv),
                          4 * (c * b * heads + c * head * heads_kv + b * 1024 + head * heads_kv * b))
    elif arch in ("gemma", "gemma3"):
        full = max(4 * b * (emb + vocab),
                   4 * b * (2 + c + c * heads + 2 * emb + 2 * head_k * heads))
        partial = max(4 * emb * b + emb * vocab * 105 // 128 + 4 * vocab * b,
                      4 * b * (2 * emb + 1 + 2 * head_k * heads + c + c * heads)
                      + 4 * head_k * c * 8 + emb * head_k * heads * 9 // 16)
    elif arch == "command-r":
        full = max(4 * b * (emb + vocab), 4 * b * (2 + 4 * emb + c * (1 + heads)))
        partial = max(4 * b * (emb + vocab) + emb * vocab * 105 // 128,
                      4 * b * (1 + 2 * emb + c * (1 + heads)) + 4 * emb * c + emb * emb * 9 // 16)
    elif arch == "qwen2":
        full = max(4 * b * (emb + vocab), 4 * b * (1 + 2 * emb + c + c * heads))
        partial = max(4 * b * (emb + vocab) + emb * vocab * 105 // 128,
                      4 * (b * (1 + 2 * emb + c * (1 + heads)) + emb * (1 + c)))
    elif arch == "phi2":
        full = max(4 * b * (emb + vocab), 4 * b * (1 + 4 * emb + c + c * heads))
        partial = max(4 * b * (2 * emb + vocab) + emb * vocab * 105 // 128,
                      4 * b * (2 + 3 * emb + c + c * heads))
    elif arch == "gptoss":  # GraphSize's gpt-oss rule changed twice
        # its kvTotal is summed before the even layers are cut to their window: every layer at
        # the whole context (v0.11.2 fs/ggml/ggml.go GraphSize)
        unwindowed = shape.num_layers * int(c * 2 * shape.head_dim * heads_kv
                                            * _KV_BYTES.get(kv_type, 2.0))
        full = 4 * heads // heads_kv * unwindowed // 6  # v0.11.0-0.11.4
        partial = 2 * full if version < GPTOSS_PARTIAL_EQUALS_FULL else full
        if version >= GPTOSS_HALF_GRAPH:  # v0.11.5 on: half that, and no full-offload figure
            partial, full = 2 * heads // heads_kv * unwindowed // 6, 0
    if partial == 0:  # every other architecture: GQA x the KV cache / 6
        partial = heads // heads_kv * round(kv_total) // 6
    if full == 0:
        full = partial
    if metal:  # "on metal there's no partial offload overhead"
        partial = full
    elif gpus > 1:  # "multigpu should always use the partial graph size"
        full = partial
    return int(max(partial, full))


def _estimator_kv(shape: ModelShape, context: int, batch: int, parallel: int,
                  kv_type: str) -> list[float]:
    """Each layer's KV as GraphSize counts it: context x (K + V width) x KV heads, Gemma 3's
    sliding layers and gpt-oss's even layers only their window per sequence plus a batch."""
    arch = _estimator_arch(shape)
    width = shape.head_dim + (shape.v_head_dim or shape.head_dim)  # K + V (DeepSeek: 192 + 128)
    per_cell = width * max(1, shape.num_kv_heads) * _KV_BYTES.get(kv_type, 2.0)
    cells = []
    for i in range(shape.num_layers):
        if arch == "gemma3" and (i + 1) % _GEMMA3_GLOBAL_EVERY and shape.sliding_window:
            cells.append(parallel * shape.sliding_window + batch)
        elif arch == "gptoss" and i % 2 == 0:
            cells.append(parallel * _GPTOSS_SLIDING_CELLS + batch)
        else:
            cells.append(context)
    return [n * per_cell for n in cells]


def _layer_buffer(est: Estimate, context: int, batch: int, parallel: int, kv_type: str) -> int:
    """One layer's weights and KV (the first layer's: blk.0 and kv[0]), which Ollama's
    estimator keeps free on each GPU; the vision tower's tensors (v.blk.N) are not blk.0's."""
    shape = est.model.shape
    fmt = weight_format(est.settings.dtype)
    groups = weight_bytes_by_group(shape, fmt)
    scale = est.memory.weights.bytes / (sum(groups.values()) or 1.0)
    first = layer_weight_bytes(shape, fmt)  # blk.0's own tensors: a dense first layer of an
    block = sum(first[0]) * scale if first else 0.0  # MoE model (DeepSeek) is the small one
    kv = _estimator_kv(shape, context, batch, parallel, kv_type)
    return round(block + (kv[0] if kv else 0.0))


def _estimator_blocks(est: Estimate, context: int, batch: int, parallel: int, kv_type: str,
                      version: Version) -> tuple[tuple[int, int], ...]:
    """Each block as EstimateGPULayers weighs it: (blk.i's tensors, its KV), the KV per layer
    from GraphSize (from v0.6.3) or the total spread evenly over the blocks (before)."""
    shape = est.model.shape
    fmt = weight_format(est.settings.dtype)
    groups = weight_bytes_by_group(shape, fmt)
    scale = est.memory.weights.bytes / (sum(groups.values()) or 1.0)
    kv = _estimator_kv(shape, context, batch, parallel, kv_type)
    if version < KV_BY_LAYER_FROM:
        kv = [sum(kv) / max(1, len(kv))] * len(kv)
    return tuple((round(sum(w) * scale), round(k))
                 for w, k in zip(layer_weight_bytes(shape, fmt), kv, strict=False))


@frozen
class Deal:
    """EstimateGPULayers over several GPUs: layers per GPU (the output layer counted on the GPU
    that took it) and each GPU's weights and KV as the estimator adds them up."""

    counts: tuple[int, ...]
    weights: tuple[int, ...]
    kv: tuple[int, ...]
    output_on: int | None = None  # the GPU that took the output layer


def deal_layers(budgets: Sequence[int], blocks: Sequence[tuple[int, int]], buffer: int,
                output: int, graph: int, *, gpu0: int = 0, last_first: bool,
                limit: int | None = None) -> Deal:
    """llm/memory.go EstimateGPULayers (ollama/ollama@v0.5.7, v0.7.1): a GPU takes part with room
    for the graph, 457 MiB, the first GPU's projector and two layer buffers (blk.0 and its KV);
    each holds 457 MiB and one buffer; block i, at its own size, goes to the (i mod j)-th of the
    j GPUs still with space, and one without room for it leaves the list; then the output layer
    to the (count mod j)-th GPU that has room for it. `budgets`: free memory less
    OLLAMA_GPU_OVERHEAD; `limit`: num_gpu."""
    n = len(budgets)
    weights, kv, counts = [0] * n, [0] * n, [0] * n
    alloc = [0] * n
    room: list[int] = []
    for g, free in enumerate(budgets):
        gzo = gpu0 if not room else 0
        if free < gzo + graph + MINIMUM_MEMORY + 2 * buffer:
            continue
        room.append(g)
        alloc[g] = MINIMUM_MEMORY + buffer + gzo
    placed = 0
    order = range(len(blocks) - 1, -1, -1) if last_first else range(len(blocks))
    for i in order:
        if limit is not None and placed >= limit:
            continue
        w, k = blocks[i]
        for j in range(len(room), 0, -1):
            g = room[i % j]
            if budgets[g] > alloc[g] + graph + w + k:
                alloc[g] += w + k
                weights[g] += w
                kv[g] += k
                counts[g] += 1
                placed += 1
                break
            del room[i % j]
    output_on = None
    if output and (limit is None or placed < limit):
        for j in range(len(room), 0, -1):
            g = room[placed % j]
            if budgets[g] > alloc[g] + graph + output:
                weights[g] += output
                counts[g] += 1
                output_on = g
                break
    return Deal(tuple(counts), tuple(weights), tuple(kv), output_on)


def _deal(est: Estimate, version: Version, gpus: int, budget: int, parallel: int, num_ctx: int,
          batch: int, kv_type: str, layers_total: int, projector: int, vision_graph: int,
          buffers: Callable[..., LlamaCppStartup],
          limit: int | None) -> tuple[tuple[int, ...], LlamaCppStartup]:
    """EstimateGPULayers over `gpus` GPUs with `budget` each: the layers per GPU it passes as
    --tensor-split, and the whole model as it deals it with no limit on memory, as the
    estimator's per-GPU need (it places every layer only if that fits: the same checks, in the
    same order)."""
    ctx = num_ctx * parallel
    shape = est.model.shape
    blocks = _estimator_blocks(est, ctx, batch, parallel, kv_type, version)
    buffer = sum(blocks[0]) if blocks else 0  # "add one layer worth of memory as a buffer"
    whole = buffers(parallel, layers_total, estimator=False)
    graph = _estimator_graph(shape, ctx, batch, parallel, kv_type, gpus, version=version)
    if graph is None:
        graph = whole.compute_buffer_gpu_bytes
    # the output layer (output_norm, output or token_embd), with the vision tower where it
    # goes with it, as llama.cpp's buffers count it, and the vision graph
    output = whole.model_buffer_gpu_bytes - buffers(
        parallel, layers_total - 1, estimator=False).model_buffer_gpu_bytes + vision_graph
    last_first = version >= LAST_LAYER_FIRST_FROM
    if vision_graph and not last_first:  # VisionGraphSize's weights and graph: first GPU
        tower = shape.extra_params * 2  # (gpuZeroOverhead, ollama/ollama@v0.6.8:llm/memory.go)
        output -= tower + vision_graph
        projector += tower + vision_graph
    deal = deal_layers([budget] * gpus, blocks, buffer, output, graph, gpu0=projector,
                       last_first=last_first, limit=limit)
    free = deal_layers([1 << 62] * gpus, blocks, buffer, output, graph, gpu0=projector,
                       last_first=last_first)
    devices = tuple(DeviceBuffers(layers=n - (g == free.output_on), model_bytes=w, kv_bytes=k,
                                  compute_bytes=graph + (projector if g == 0 else 0))
                    for g, (n, w, k) in enumerate(zip(free.counts, free.weights, free.kv,
                                                      strict=True)))
    estimated = replace(whole, devices=devices, cuda_context_bytes=MINIMUM_MEMORY + buffer,
                        compute_buffer_gpu_bytes=max(d.compute_bytes for d in devices))
    return deal.counts, estimated


def _tower_bytes(est: Estimate) -> float:
    """The vision tower's bytes as llama.cpp's buffers spread them over the blocks: in the
    file's own format (a Q4_0 file: Q4_0), where Ollama's files keep the tower 16 bit."""
    shape = est.model.shape
    fmt = weight_format(est.settings.dtype)
    roles = weight_bytes_by_role(shape, fmt)
    scale = est.memory.weights.bytes / (sum(roles.values()) or 1.0)
    return roles.get("extra", 0.0) * scale


def _vision_with_output(b: LlamaCppStartup, weights: int, graph: int, output_on_gpu: bool,
                        blocks: int, spread: float) -> LlamaCppStartup:
    """The vision tower's weights (`weights`, 16 bit) and its graph go with the output layer
    (llm/memory.go memoryLastLayer), not spread over the blocks as llama.cpp's buffers count
    them (`spread`, in the file's format); with the output layer on the CPU, so are they."""
    devices = [replace(d, model_bytes=d.model_bytes - round(spread * d.layers / blocks))
               for d in b.devices]
    if output_on_gpu:
        last = devices[-1]
        devices[-1] = replace(last, model_bytes=last.model_bytes + weights,
                              compute_bytes=last.compute_bytes + graph)
    gpu = sum(d.model_bytes for d in devices)
    total = b.model_buffer_host_bytes + b.model_buffer_gpu_bytes + weights - spread
    return replace(b, devices=tuple(devices), model_buffer_gpu_bytes=gpu,
                   model_buffer_host_bytes=round(total - gpu),
                   compute_buffer_gpu_bytes=max(d.compute_bytes for d in devices))


def _busiest(b: LlamaCppStartup) -> PerGPU:
    """The busiest GPU's buffers, as per_gpu_need counts them."""
    from vramest.inference.placement import PerGPU

    busiest = max(b.devices, key=lambda d: d.total(b.cuda_context_bytes), default=None)
    if busiest is None:
        return PerGPU(0, 0, 0, 0)
    return PerGPU(busiest.model_bytes, busiest.kv_bytes, busiest.compute_bytes,
                  b.cuda_context_bytes)


def compute(req: registry.StartupRequest) -> OllamaStartup:
    o, est, device = req.options, req.est, req.device
    version: Version = o.get("version", LATEST)  # type: ignore[assignment]
    shape = est.model.shape
    rules: list[str] = []
    num_ctx = _num_ctx(o, version, device, req.tp, rules)
    num_ctx = _min_ctx(num_ctx, version, shape.family, o, device, req.tp, rules)
    trained = shape.max_context or 0
    if version >= CLAMP_TO_TRAINED_FROM and trained and num_ctx > trained:
        rules.append(f"num_ctx {num_ctx} cut to the model's trained {trained} "
                     f"({SRC.format('0.9.3', 'llm/server.go')})")
        num_ctx = trained
    flash = _flash_attention(o, version, shape.family, device, rules)
    kv_type = _kv_type(o, version, flash, rules)
    batch = _num_batch(o, version, num_ctx, flash, device)
    layers_total = shape.num_layers + 1

    def buffers(parallel: int, gpu_layers: int, estimator: bool = True,
                split: tuple[int, ...] | None = None) -> LlamaCppStartup:
        """llama.cpp's buffers for this placement; with `estimator`, as Ollama's own estimator
        (before 0.12.11) sizes them to decide the placement; `split`: --tensor-split."""
        ctx = num_ctx * parallel
        ratios = tuple(float(n) for n in split) if split else _ollama_split(
            version, gpu_layers, layers_total, gpus)
        opts = LlamaCppOptions(n_gpu_layers=gpu_layers, n_ctx=ctx, n_ubatch=min(batch, ctx),
                               flash_attn=flash, cache_type_k=kv_type, cache_type_v=kv_type,
                               backend=runner_backend, n_gpus=gpus, tensor_split=ratios)
        startup = llamacpp_startup(est, opts)
        if estimator and version < OWN_ESTIMATOR_UNTIL and device is not None:
            graph = _estimator_graph(shape, ctx, min(batch, ctx), parallel, kv_type, gpus,
                                     metal=device.kind == "apple", version=version)
            reserve = MINIMUM_MEMORY + _layer_buffer(est, ctx, min(batch, ctx), parallel,
                                                     kv_type)
            startup = replace(startup, cuda_context_bytes=reserve)
            if graph is not None and startup.devices:
                startup = replace(startup, devices=tuple(
                    replace(d, compute_bytes=graph) for d in startup.devices),
                    compute_buffer_gpu_bytes=graph)
            if projector and startup.devices:  # the first GPU only
                first = startup.devices[0]
                startup = replace(startup, devices=(
                    replace(first, compute_bytes=first.compute_bytes + projector),
                    *startup.devices[1:]))
        if vision_graph and startup.devices:
            startup = _vision_with_output(startup, vision_weights, vision_graph,
                                          gpu_layers >= layers_total, layers_total - 1,
                                          _tower_bytes(est))
        return startup

    vision_graph = _vision_graph(est, version)
    projector = _projector_gpu0(est, version) if version < OWN_ESTIMATOR_UNTIL else 0
    if projector:
        rules.append(f"projector {format_bytes(projector)} (weights and graph) reserved on the "
                     f"first GPU before any layer ({SRC.format('0.4.0', 'llm/memory.go')} "
                     "EstimateGPULayers, projectorMemoryRequirements)")
    vision_weights = shape.extra_params * 2  # the tower's tensors, 16 bit in Ollama's files
    if vision_graph:
        rules.append(f"vision graph {format_bytes(vision_graph)} placed with the output layer "
                     f"({SRC.format('0.9.2', 'fs/ggml/ggml.go')} VisionGraphSize)")

    gpus = max(req.tp, 1)
    # num_gpu given: Ollama passes it on as --n-gpu-layers and no estimate of its own changes
    # it (llm/server.go, v0.1.3x-v0.5.x: "case opts.NumGPU < 0 && estimate.Layers > 0: opts.NumGPU
    # = estimate.Layers"; "if opts.NumGPU >= 0 { params = append(params, "--n-gpu-layers", ...) }"),
    # so the run is its llama.cpp runner's: the buffers and what llama.cpp's backend holds beyond
    # them (engines/llamacpp_device.py RUNTIME_BYTES; nothing on Metal), against the driver's
    # total (deploy.py, as for --engine llamacpp)
    placed = o.get("num_gpu") is not None
    runner_backend = _backend(device).lower() if placed and device is not None else None
    budget = None
    if device is not None and req.usable_bytes is not None:
        budget = req.usable_bytes - int(o.get("gpu_overhead", 0))  # type: ignore[call-overload]
    parallel = _num_parallel(o, version, budget, layers_total, buffers, rules)
    requested = o.get("num_gpu")
    limit = None if requested is None else int(requested)  # type: ignore[call-overload]
    split: tuple[int, ...] | None = None
    estimated_full = None
    if gpus > 1 and budget is not None and ROUND_ROBIN_FROM <= version < OWN_ESTIMATOR_UNTIL:
        split, estimated_full = _deal(est, version, gpus, budget, parallel, num_ctx,
                                      min(batch, num_ctx * parallel), kv_type, layers_total,
                                      projector, vision_graph, buffers, limit)
        down = version >= LAST_LAYER_FIRST_FROM
        rules.append("layers dealt to the GPUs in turn, each at its own size, from "
                     + ("the last layer down" if down else "layer 0 up")
                     + f": {','.join(map(str, split))}, passed as --tensor-split "
                     f"({SRC.format('0.7.1' if down else '0.5.7', 'llm/memory.go')} "
                     "EstimateGPULayers)")
        if not any(split):
            split = None  # no layer placed: no --tensor-split
    if estimated_full is not None and limit is None:
        gpu_layers = sum(split) if split else 0
    elif requested is not None:
        gpu_layers = int(requested)  # type: ignore[call-overload]
        rules.append(f"num_gpu {gpu_layers} as given")
    elif budget is None:
        gpu_layers = layers_total  # no GPU named: everything offloaded, as on a big card
    else:
        gpu_layers = _layers_that_fit(budget, layers_total,
                                      lambda n: buffers(parallel, n))
        who = ("llama-server's own fit (-ngl auto)" if version >= LLAMA_SERVER_FROM
               else "Ollama's layer estimate (llm/memory.go EstimateGPULayers: 457 MiB minimum "
               "per GPU, then layers with their KV from the last down, then the output layer)"
               if version < OWN_ESTIMATOR_UNTIL else "the runner's measured fit")
        rules.append(f"layers on the GPU: the most that fit in {format_bytes(budget)}, as "
                     f"{who} decides")
    gpu_layers = min(gpu_layers, layers_total)
    whole_dealt = split is not None and sum(split) >= layers_total  # the estimate placed all
    if num_ctx * parallel != est.settings.ctx:
        rules.append(f"the memory table above is for --ctx {est.settings.ctx}; Ollama allocates "
                     f"{num_ctx * parallel} tokens of KV cache (num_ctx x parallel)")
    return OllamaStartup(version=version, num_ctx=num_ctx, num_parallel=parallel,
                         num_batch=min(batch, num_ctx * parallel), flash_attention=flash,
                         kv_cache_type=kv_type, layers_total=layers_total, offloaded=gpu_layers,
                         buffers=buffers(parallel, gpu_layers, estimator=False, split=split),
                         full=buffers(parallel, layers_total, estimator=False,
                                      split=split if whole_dealt else None), gpus=gpus,
                         rules=tuple(rules), placed=placed,
                         estimated_full=None if whole_dealt else estimated_full
                         if estimated_full is not None else buffers(parallel, layers_total),
                         tensor_split=split)


def _num_ctx(o: Options, version: Version, device: Device | None, tp: int,
             rules: list[str]) -> int:
    given = o.get("num_ctx")
    if isinstance(given, int):
        return given
    if version < CTX_2048_UNTIL:
        rules.append(f"num_ctx 2048 by default ({SRC.format('0.6.6', 'api/types.go')})")
        return 2048
    if version < CTX_BY_VRAM_FROM:
        rules.append(f"num_ctx 4096 by default ({SRC.format('0.6.7', 'envconfig/config.go')})")
        return 4096
    if device is None:
        rules.append("num_ctx: the default follows the GPUs' memory (4k/32k/256k); without "
                     "--gpu 4096 is assumed")
        return 4096
    total = _gpus_total(o, device, tp)
    ctx = next(c for threshold, c in VRAM_TIERS if total >= threshold)
    rules.append(f"num_ctx {ctx} by default for {format_bytes(total)} of GPU memory "
                 f"({SRC.format('0.15.5', 'server/routes.go')}: >= 47 GiB 256k, >= 23 GiB 32k, "
                 "else 4k)")
    return ctx


def _gpus_total(o: Options, device: Device, tp: int) -> int:
    """The GPUs' summed total memory as the driver reports it; different GPUs in one machine
    (ollama_mixed.py) pass their sum."""
    given = o.get("gpus_total_bytes")
    return given if isinstance(given, int) else device.addressable_bytes * max(tp, 1)


def _min_ctx(num_ctx: int, version: Version, family: str, o: Options, device: Device | None,
             tp: int, rules: list[str]) -> int:
    """The context floor Ollama sets for the models it deems to need one (gpt-oss, later
    Qwen3-VL), whatever num_ctx asked for; not on a small-memory machine from v0.11.4."""
    if num_ctx >= MIN_CTX or not MIN_CTX_FROM <= version < MIN_CTX_UNTIL:
        return num_ctx
    if not any(version >= since and family in names for since, names in MIN_CTX_FAMILIES):
        return num_ctx
    if version >= MIN_CTX_LOW_VRAM_FROM:
        if device is None:
            return num_ctx
        overhead = int(o.get("gpu_overhead", 0))  # type: ignore[call-overload]
        if _gpus_total(o, device, tp) - overhead < LOW_VRAM:
            rules.append(f"num_ctx {num_ctx} kept: under 20 GiB of GPU memory Ollama does not "
                         f"raise {family}'s context ({SRC.format('0.11.4', 'server/routes.go')})")
            return num_ctx
    rules.append(f"num_ctx {num_ctx} raised to {MIN_CTX} for {family} "
                 f"({SRC.format('0.11.0', 'server/routes.go')} scheduleRunner)")
    return MIN_CTX


def _flash_attention(o: Options, version: Version, family: str,
                     device: Device | None, rules: list[str]) -> bool:
    supported = device is None or not (device.vendor == "nvidia" and _NO_FLASH.search(device.name))
    given = o.get("flash_attention")
    if any(family == name and since <= version < until for name, since, until in NO_FLASH_MODELS):
        if given:
            rules.append(f"flash attention requested but Ollama does not run {family} with it in "
                         f"this release ({SRC.format('.'.join(map(str, version)), 'fs/ggml/ggml.go')}"
                         " SupportsFlashAttention): off")
        return False
    if isinstance(given, bool):
        if given and not supported:
            rules.append(f"flash attention requested but {device.name if device else ''} "
                         "cannot run it (CUDA compute capability below 7.0): off")
        return given and supported
    if not supported:
        return False
    if version >= LLAMA_SERVER_FROM:
        rules.append(f"flash attention auto: on where supported "
                     f"({SRC.format('0.30.0', 'llm/llama_server.go')})")
        return True
    if version >= FA_FAMILIES_FROM and family in FA_FAMILIES:
        rules.append(f"flash attention on by default for {family} "
                     f"({SRC.format('0.12.4', 'fs/ggml/ggml.go')})")
        return True
    return False


def _kv_type(o: Options, version: Version, flash: bool, rules: list[str]) -> str:
    asked = str(o.get("kv_cache_type") or "f16")
    if asked in ("f16", "fp16"):
        return "f16"
    if version < KV_TYPES_FROM:
        rules.append("OLLAMA_KV_CACHE_TYPE does not exist before 0.5.0: f16")
        return "f16"
    if not flash:
        rules.append(f"OLLAMA_KV_CACHE_TYPE={asked} ignored: a quantized cache needs flash "
                     f"attention ({SRC.format('0.12.4', 'llm/server.go')})")
        return "f16"
    return asked


def _num_batch(o: Options, version: Version, num_ctx: int, flash: bool,
               device: Device | None) -> int:
    given = o.get("num_batch")
    if isinstance(given, int):
        return given
    if version < LLAMA_SERVER_FROM:
        return 512  # api/types.go DefaultOptions NumBatch
    small_cuda = device is not None and device.vendor == "nvidia" and \
        device.memory_bytes <= 8 * GIB
    if not flash and device is not None and device.vendor == "nvidia":
        return 256 if small_cuda and num_ctx > 4096 else 512
    # the larger batches step down when the prediction leaves too little room; the
    # prediction is not modelled, so the context's batch is kept
    return next(b for threshold, b in BATCH_BY_CTX if num_ctx > threshold or threshold == 0)


def _num_parallel(o: Options, version: Version, budget: int | None, layers_total: int,
                  buffers: Buffers, rules: list[str]) -> int:
    given = o.get("num_parallel")
    if isinstance(given, int):
        return given
    default = 1
    for since, value in AUTO_PARALLEL:
        if version >= since:
            default = value
    if default == 1:
        return 1
    if budget is not None and per_gpu_need(buffers(default, layers_total)) > budget:
        rules.append(f"OLLAMA_NUM_PARALLEL auto: {default} contexts do not fit whole on the "
                     f"GPU, so 1 ({SRC.format('0.9.0', 'server/sched.go')})")
        return 1
    rules.append(f"OLLAMA_NUM_PARALLEL auto: {default} parallel contexts "
                 f"({SRC.format('0.9.0', 'server/sched.go')} defaultParallel)")
    return default


def _ollama_split(version: Version, gpu_layers: int, layers_total: int,
                  gpus: int) -> tuple[float, ...] | None:
    """Ollama's own estimator (before 0.12.11) deals the repeating layers out to the GPUs in
    turn, then puts the output layer on top of one of them (llm/memory.go EstimateGPULayers,
    v0.9.2: `gpusWithSpace[layerCount%j]`, then memoryLastLayer), where llama.cpp's default
    split would count the output layer as one more share. As -ts ratios for those buffers."""
    if gpus < 2 or version >= OWN_ESTIMATOR_UNTIL:
        return None
    blocks = min(gpu_layers, layers_total - 1)
    shares = [blocks // gpus + (1 if i < blocks % gpus else 0) for i in range(gpus)]
    shares[-1] += 1 if gpu_layers >= layers_total else 0
    return tuple(float(n) for n in shares) if sum(shares) else None


def per_gpu_need(b: LlamaCppStartup) -> int:
    """The busiest GPU of the layer split: its layers with their KV (the last GPU also the
    output layer and what goes with it), its compute buffer and the CUDA context."""
    return max((d.total(b.cuda_context_bytes) for d in b.devices if d.layers), default=0)


def _layers_that_fit(budget: int, layers_total: int,
                     buffers: Callable[[int], LlamaCppStartup]) -> int:
    """The most layers (the output layer last) whose buffers fit in `budget` on each GPU."""
    for layers in range(layers_total, -1, -1):
        if per_gpu_need(buffers(layers)) <= budget:
            return layers
    return 0


def _num_gpu(value: object, what: str) -> int:
    return registry.count_or_zero(value, what)


ENGINE = registry.StartupEngine(
    name="ollama",
    parsers={"version": registry.version, "num_ctx": registry.tokens,
             "num_parallel": lambda v, w: registry.whole(v, w, 1024),
             "kv_cache_type": registry.text, "flash_attention": registry.switch,
             "num_gpu": _num_gpu, "num_batch": lambda v, w: registry.whole(v, w, 1 << 20),
             "gpu_overhead": registry.size},
    compute=compute,
    spellings={"ollama_context_length": "num_ctx", "ollama_num_parallel": "num_parallel",
               "ollama_kv_cache_type": "kv_cache_type",
               "ollama_flash_attention": "flash_attention", "ollama_gpu_overhead": "gpu_overhead",
               "engine_version": "version"},
)

